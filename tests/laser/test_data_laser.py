"""Tests for hf_latent/laser/data_laser.py: rows from multi-hop QA, rationales, column aliases and validation."""

from __future__ import annotations

import logging

import pytest
from datasets import Dataset

from hf_latent.data import load_demo_corpus
from hf_latent.evaluation.retrieval_tasks import HOTPOTQA_INSTRUCTION, RetrievalTask
from hf_latent.laser.data_laser import (
    LASER_COLUMNS,
    first_sentence,
    laser_rows_from_multihop,
    make_rationale_generator,
    oracle_rationale,
    standardize_laser_columns,
    validate_laser_dataset,
)
from hf_latent.testing_utils import build_tiny_causal_lm


@pytest.fixture(scope="module")
def demo():
    return load_demo_corpus()


def test_rows_from_the_demo_corpus(demo):
    rows = laser_rows_from_multihop(demo)
    train = demo.split("train")
    assert len(rows) == len(train)
    assert set(LASER_COLUMNS) | {"id"} == set(rows.column_names)
    passages = demo.passages_by_id()
    first = train[0]
    row = rows[0]
    assert row["query"] == first["question"]
    assert row["reasoning"] == first["reasoning"]  # the demo's real rationale is kept
    assert row["instruction"] == HOTPOTQA_INSTRUCTION
    assert len(row["positive"]) == len(first["supporting_ids"])
    assert (
        row["positive"][0]
        == f"{passages[first['supporting_ids'][0]]['title']}\n{passages[first['supporting_ids'][0]]['text']}"
    )
    assert not set(row["positive"]) & set(row["negatives"])
    assert len(laser_rows_from_multihop(demo, num_negatives=3)[0]["negatives"]) == 3
    validate_laser_dataset(rows)


def test_passages_are_formatted_like_the_evaluation(demo):
    rows = laser_rows_from_multihop(demo, split=None)
    task = RetrievalTask("demo", ["q"], ["q"], [""], demo.corpus, {"q": {}})
    documents = set(task.document_texts)
    assert all(p in documents for row in rows for p in row["positive"] + row["negatives"])


def test_rationale_modes(demo):
    oracle = laser_rows_from_multihop(demo, rationale="oracle", max_rows=2)
    text = oracle[0]["reasoning"]
    assert text.startswith("To answer this I need ") and "\n\nThen " in text and "So the answer is: " in text
    assert text.count("\n\n") == 2  # one segment per hop plus the answer
    assert laser_rows_from_multihop(demo, rationale="none", max_rows=2)[0]["reasoning"] == ""
    generated = laser_rows_from_multihop(
        demo, rationale="generated", rationale_fn=lambda questions: [f"Think: {q}" for q in questions], max_rows=3
    )
    assert generated["reasoning"] == [f"Think: {q}" for q in generated["query"]]
    with pytest.raises(ValueError, match="rationale_fn"):
        laser_rows_from_multihop(demo, rationale="generated")
    with pytest.raises(ValueError, match="rationale must be one of"):
        laser_rows_from_multihop(demo, rationale="gpt")


def test_hotpotqa_rows_get_oracle_rationales(hotpotqa):
    rows = laser_rows_from_multihop(hotpotqa, max_rows=20)
    assert len(rows) == 20
    for row, question in zip(rows, hotpotqa.split("train").select(range(20))):
        assert question["reasoning"] == ""  # HotpotQA-500 ships none ...
        assert row["reasoning"].startswith("To answer this I need ")  # ... so the oracle one is built
        assert f"So the answer is: {question['answers'][0].rstrip('.')}." in row["reasoning"]
        assert len(row["positive"]) == 2 and len(row["negatives"]) >= 1
    validate_laser_dataset(rows)


def test_rows_without_distractors_are_topped_up_from_the_corpus(hotpotqa):
    questions = hotpotqa.split("train")
    empty = [i for i, ids in enumerate(questions["negative_ids"]) if not ids]
    assert empty  # HotpotQA-500 has train questions without distractors
    rows = laser_rows_from_multihop(hotpotqa)
    again = laser_rows_from_multihop(hotpotqa)
    passages = hotpotqa.passages_by_id()
    for i in empty:
        supporting = {f"{passages[p]['title']}\n{passages[p]['text']}" for p in questions[i]["supporting_ids"]}
        assert len(rows[i]["negatives"]) == 1 and not set(rows[i]["negatives"]) & supporting
        assert rows[i]["negatives"] == again[i]["negatives"]  # deterministic
    validate_laser_dataset(rows)  # every row works with train_group_size=2
    kept = laser_rows_from_multihop(hotpotqa, min_negatives=0)
    assert all(kept[i]["negatives"] == [] for i in empty)


def test_oracle_rationale_and_first_sentence():
    assert first_sentence("One two.  Three four. Five.") == "One two."
    assert first_sentence("no end") == "no end"
    assert oracle_rationale(["A", "B"], ["a one. a two.", "b one."], "X.") == (
        "To answer this I need A: a one.\n\nThen B: b one.\n\nSo the answer is: X."
    )


def test_generated_rationales_with_a_causal_lm(qwen3_tokenizer, demo):
    model = build_tiny_causal_lm(qwen3_tokenizer, "qwen3")
    generate = make_rationale_generator(model, qwen3_tokenizer, max_new_tokens=4, batch_size=2)
    rows = laser_rows_from_multihop(demo, rationale="generated", rationale_fn=generate, max_rows=3)
    assert len(rows["reasoning"]) == 3 and all(isinstance(text, str) for text in rows["reasoning"])


def test_standardize_laser_columns():
    released = Dataset.from_list(
        [
            {
                "query": "q",
                "reasoning_query": "because",
                "prompt": "Given a post, retrieve.",
                "positive_passages": [{"title": "T", "text": "pos"}],
                "negative_passages": [{"title": "", "text": "neg"}],
            }
        ]
    )
    rows = standardize_laser_columns(released)
    assert {"query", "reasoning", "instruction", "positive", "negatives"} <= set(rows.column_names)
    assert rows[0]["positive"] == ["T\npos"] and rows[0]["negatives"] == ["neg"]
    validate_laser_dataset(rows)


def test_validation_names_the_bad_rows(caplog):
    good = {"query": "q", "positive": ["p"], "negatives": ["n"], "reasoning": "a real rationale"}
    with pytest.raises(ValueError, match=r"row 1: no positive passage"):
        validate_laser_dataset([good, {**good, "positive": []}])
    with pytest.raises(ValueError, match=r"row 0: `query` must be a non-empty string"):
        validate_laser_dataset([{**good, "query": ""}])
    with pytest.raises(ValueError, match=r"row 2: no hard negatives, but train_group_size=2"):
        validate_laser_dataset([good, good, {**good, "negatives": []}])
    validate_laser_dataset([{**good, "negatives": []}], train_group_size=1)
    with pytest.raises(ValueError, match="lacks the column"):
        validate_laser_dataset(Dataset.from_list([{"question": "q", "positive": "p"}]))
    with pytest.raises(ValueError, match=r"3 problem\(s\) \(and 1 more\)"):
        validate_laser_dataset([{**good, "positive": None}] * 3, max_errors=2)
    with caplog.at_level(logging.INFO, logger="hf_latent.laser.data_laser"):
        stats = validate_laser_dataset(
            [good, {**good, "reasoning": ""}, {**good, "negatives": ["n"]}], train_group_size=3, needs_rationale=True
        )
    assert stats == {"num_rows": 3, "rows_with_few_negatives": 3, "rows_without_rationale": 1}
    assert any("uses the query text" in record.getMessage() for record in caplog.records)
