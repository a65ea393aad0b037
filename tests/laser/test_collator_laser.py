"""Tests for hf_latent/laser/collator_laser.py: layout, sampling, formatting and the bad-data behaviour (spec §3, §5)."""

from __future__ import annotations

import logging

import pytest
import torch

from hf_latent.laser import LaserConfig, build_explicit_inputs, build_latent_inputs
from hf_latent.laser.collator_laser import LaserDataCollator, row_key, select_passages


def _rows():
    return [
        {
            "query": "Which river flows through Tarnwick?",
            "reasoning": "Step 1: find the town.\n\nStep 2: find the river.\n\nSo the answer is: Selwen.",
            "positive": ["Tarnwick\nTarnwick lies on the Selwen River.", "Selwen\nThe Selwen is a river."],
            "negatives": ["Ostbridge\nA town with a bridge.", "Calder\nA bay.", "Paris\nThe capital of France."],
            "instruction": "Given a multi-hop question, retrieve passages.",
        },
        {
            "query": "Who invented the copper lantern?",
            "reasoning": "The lantern was invented by Hedda Vorlund.",
            "positive": "Hedda Vorlund\nShe invented the copper lantern.",
            "negatives": ["Berlin\nThe capital of Germany."],
            "instruction": None,
        },
    ]


def _decode(tokenizer, ids, mask):
    return tokenizer.decode(ids[mask.bool()])


def test_output_shapes_and_passage_layout(qwen3_tokenizer):
    collator = LaserDataCollator(qwen3_tokenizer, train_group_size=3, pad_to_multiple_of=16, seed=0)
    batch = collator(_rows())
    assert set(batch) == {
        "query_input_ids",
        "query_attention_mask",
        "passage_input_ids",
        "passage_attention_mask",
        "explicit_input_ids",
        "explicit_attention_mask",
        "explicit_cot_start",
        "explicit_cot_end",
    }
    assert batch["query_input_ids"].shape[0] == 2 and batch["passage_input_ids"].shape[0] == 2 * 3
    for key in ("query_input_ids", "passage_input_ids", "explicit_input_ids"):
        assert batch[key].shape[1] % 16 == 0
        assert all(isinstance(value, torch.Tensor) for value in batch.values())
    passages = [
        _decode(qwen3_tokenizer, ids, mask)
        for ids, mask in zip(batch["passage_input_ids"], batch["passage_attention_mask"])
    ]
    # [pos_0, neg_0, neg_0', pos_1, neg_1, neg_1'] with negatives = the first G-1; a short list is sampled.
    assert any(p in passages[0] for p in ("Tarnwick lies", "The Selwen is"))
    assert "Ostbridge" in passages[1] and "Calder" in passages[2]
    assert "Hedda Vorlund" in passages[3] and "Berlin" in passages[4] and "Berlin" in passages[5]


def test_formatting_is_the_model_modules(qwen3_tokenizer):
    config = LaserConfig(default_instruction="Default instruction.")
    rows = _rows()
    batch = LaserDataCollator(qwen3_tokenizer, config=config, train_group_size=2, pad_to_multiple_of=None)(rows)
    instructions = [row["instruction"] for row in rows]
    queries = build_latent_inputs(
        qwen3_tokenizer,
        [row["query"] for row in rows],
        is_query=True,
        instruction=instructions,
        max_length=512,
        config=config,
    )
    torch.testing.assert_close(batch["query_input_ids"], queries["input_ids"])
    explicit = build_explicit_inputs(
        qwen3_tokenizer,
        [row["query"] for row in rows],
        [row["reasoning"] for row in rows],
        instruction=instructions,
        max_length=1024,
        config=config,
    )
    torch.testing.assert_close(batch["explicit_input_ids"], explicit["input_ids"])
    torch.testing.assert_close(batch["explicit_cot_start"], explicit["cot_start"])
    text = _decode(qwen3_tokenizer, batch["query_input_ids"][1], batch["query_attention_mask"][1])
    assert "Instruct: Default instruction.\nQuery: Who invented" in text  # a None instruction uses the default
    assert "<think>\n\n</think>\n\n" in text  # the latent view's template suffix


def test_positive_rotates_with_the_epoch_and_sampling_is_deterministic():
    row = _rows()[0]
    chosen = {epoch: select_passages(row, 2, seed=42, epoch=epoch)[0] for epoch in range(4)}
    assert chosen[0] != chosen[1] and chosen[0] == chosen[2]  # (key + seed + epoch) % n_pos
    assert chosen[0] == row["positive"][(row_key(row) + 42) % 2]
    assert select_passages({**row, "index": 7}, 2, seed=0)[0] == row["positive"][1]  # an explicit index wins
    few = {"query": "q", "positive": "p", "negatives": ["a", "b"]}
    sampled = select_passages(few, 6, seed=1, epoch=0)
    assert len(sampled) == 6 and set(sampled[1:]) <= {"a", "b"}
    assert sampled == select_passages(few, 6, seed=1, epoch=0)  # same row, seed and epoch: same draw
    assert select_passages(few, 3) == ["p", "a", "b"]  # enough negatives: the first G-1, in order


def test_no_explicit_view_when_not_needed(qwen3_tokenizer):
    batch = LaserDataCollator(qwen3_tokenizer, include_explicit=False)(_rows())
    assert not any(key.startswith("explicit_") for key in batch)


def test_group_size_one_needs_no_negatives(qwen3_tokenizer):
    rows = [{"query": "q one", "positive": "p one"}, {"query": "q two", "positive": ["p two"], "negatives": []}]
    batch = LaserDataCollator(qwen3_tokenizer, train_group_size=1, include_explicit=False)(rows)
    assert batch["passage_input_ids"].shape[0] == 2


def test_missing_positive_or_negatives_raise_clear_errors(qwen3_tokenizer):
    collator = LaserDataCollator(qwen3_tokenizer, train_group_size=2)
    with pytest.raises(ValueError, match=r"no positive passage \(row 1\)"):
        collator([_rows()[0], {**_rows()[1], "positive": []}])
    with pytest.raises(ValueError, match="no negatives .* train_group_size=2"):
        collator([{**_rows()[0], "negatives": []}])
    with pytest.raises(ValueError, match="no query"):
        collator([{**_rows()[0], "query": "  "}])


def test_empty_or_short_rationale_falls_back_to_the_query(qwen3_tokenizer):
    collator = LaserDataCollator(qwen3_tokenizer, pad_to_multiple_of=None)
    row = _rows()[1]
    expected = collator([{**row, "reasoning": row["query"]}])
    for reasoning in ("", None, "ok", "   "):
        batch = collator([{**row, "reasoning": reasoning}])
        torch.testing.assert_close(batch["explicit_input_ids"], expected["explicit_input_ids"])
    without_column = {key: value for key, value in row.items() if key != "reasoning"}
    torch.testing.assert_close(collator([without_column])["explicit_input_ids"], expected["explicit_input_ids"])


def test_long_rationale_is_truncated_with_one_warning(qwen3_tokenizer, caplog):
    collator = LaserDataCollator(qwen3_tokenizer, explicit_max_length=64, pad_to_multiple_of=None)
    row = {**_rows()[0], "reasoning": "A long thought about rivers.\n\n" * 100}
    with caplog.at_level(logging.WARNING, logger="hf_latent.laser.collator_laser"):
        first = collator([row, _rows()[1]])
        collator([row])
    warnings = [r for r in caplog.records if "explicit_max_length=64" in r.getMessage()]
    assert len(warnings) == 1
    lengths = first["explicit_attention_mask"].sum(dim=1)
    assert lengths[0] == 64 + 1  # truncated to the limit, then one EOS
    assert first["explicit_input_ids"][0, -1] == qwen3_tokenizer.eos_token_id
    assert first["explicit_cot_end"][0] == first["explicit_input_ids"].shape[1] - 1
