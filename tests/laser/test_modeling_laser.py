"""Tests for `hf_latent/laser/modeling_laser.py` (specs/laser.md §2, §3, §12), on tiny random backbones.

The equivalence tests compare the model's cached, batched latent loop with `reference_latent_embeddings`, an
independent cache-free recomputation written here: one unpadded example at a time, a full forward of the causal LM
over the prompt embeddings plus the soft tokens so far, with `softmax(logits) @ E` computed by hand.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import textwrap

import pytest
import torch
import torch.nn.functional as F
from transformers import AutoModel, AutoTokenizer

from hf_latent.laser import (
    LaserConfig,
    LaserModel,
    build_explicit_inputs,
    build_latent_inputs,
    downsample_segments,
    format_latent_text,
    format_query,
    get_segment_separator_ids,
    modeling_laser,
    pad_left,
    tokenize_latent_texts,
)
from hf_latent.laser.modeling_laser import _decoder, _separator_ends
from hf_latent.testing_utils import CHATML_TEMPLATE, build_tiny_causal_lm, build_tiny_encoder, build_tiny_tokenizer


ARCHITECTURES = ["llama", "qwen3", "gpt2"]
TEXTS = [
    "What is the capital of France?",
    "Dense retrieval encodes queries and documents into vectors and ranks documents by cosine similarity.",
    "Who wrote the book?",
]
QWEN3_SUFFIX = "<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n"
LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


# ----------------------------------------------------------------------------------------------------------------------
# Independent references
# ----------------------------------------------------------------------------------------------------------------------


@torch.no_grad()
def reference_latent_embeddings(causal_lm, input_ids, attention_mask, num_latent_steps, latent_variant="released"):
    """Cache-free LaSER loop, example by example, without padding; returns (embeddings, latent_states)."""
    table = causal_lm.get_input_embeddings().weight
    all_embeddings, all_states = [], []
    for ids, mask in zip(input_ids, attention_mask):
        sequence = table[ids[mask.bool()]].unsqueeze(0)
        output = causal_lm(inputs_embeds=sequence, output_hidden_states=True, use_cache=False)
        states = [output.hidden_states[-1][0, -1]] if latent_variant == "released" else []
        num_soft_tokens = num_latent_steps - 1 if latent_variant == "released" else num_latent_steps
        for _ in range(num_soft_tokens):
            soft_token = torch.softmax(output.logits[0, -1].float(), dim=-1) @ table.float()
            sequence = torch.cat([sequence, soft_token.to(table.dtype)[None, None]], dim=1)
            output = causal_lm(inputs_embeds=sequence, output_hidden_states=True, use_cache=False)
            states.append(output.hidden_states[-1][0, -1])
        states = torch.stack(states)
        all_states.append(states)
        all_embeddings.append(F.normalize(states.mean(0), dim=-1))
    return torch.stack(all_embeddings), torch.stack(all_states)


@torch.no_grad()
def card_procedure_embeddings(causal_lm, input_ids, attention_mask, num_thinking_steps=3):
    """The released model-card loop on a left-padded batch: full CausalLM, KV cache, default positions."""
    table = causal_lm.get_input_embeddings().weight
    output = causal_lm(input_ids=input_ids, attention_mask=attention_mask, use_cache=True, output_hidden_states=True)
    states = [output.hidden_states[-1][:, -1]]
    for _ in range(num_thinking_steps - 1):
        soft_token = torch.softmax(output.logits[:, -1].float(), dim=-1).to(table.dtype) @ table
        attention_mask = torch.cat([attention_mask, attention_mask.new_ones((len(attention_mask), 1))], dim=1)
        output = causal_lm(
            inputs_embeds=soft_token[:, None],
            attention_mask=attention_mask,
            past_key_values=output.past_key_values,
            use_cache=True,
            output_hidden_states=True,
        )
        states.append(output.hidden_states[-1][:, -1])
    return F.normalize(torch.stack(states, 1).mean(1), dim=-1)


def right_pad(batch, pad_token_id):
    """Turn a left-padded batch into the same rows right-padded."""
    input_ids = torch.full_like(batch["input_ids"], pad_token_id)
    attention_mask = torch.zeros_like(batch["attention_mask"])
    for row, (ids, mask) in enumerate(zip(batch["input_ids"], batch["attention_mask"])):
        real = ids[mask.bool()]
        input_ids[row, : len(real)] = real
        attention_mask[row, : len(real)] = 1
    return {"input_ids": input_ids, "attention_mask": attention_mask}


def count_decoder_calls(model):
    calls = []
    handle = _decoder(model.backbone).register_forward_hook(lambda *args: calls.append(1))
    return calls, handle


@pytest.fixture(scope="module")
def batches(qwen3_tokenizer):
    left = build_latent_inputs(qwen3_tokenizer, TEXTS, is_query=True)
    return {
        "left": dict(left),
        "right": right_pad(left, qwen3_tokenizer.pad_token_id),
        "single": dict(build_latent_inputs(qwen3_tokenizer, TEXTS[:1], is_query=True)),
    }


# ----------------------------------------------------------------------------------------------------------------------
# Latent loop equivalences (specs/laser.md §12)
# ----------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("latent_variant", ["released", "paper"])
@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_cached_loop_matches_cache_free_reference(tiny_lm_factory, batches, architecture, latent_variant):
    causal_lm = tiny_lm_factory(architecture)
    model = LaserModel.from_backbone(causal_lm, latent_variant=latent_variant)
    _check_against_reference(model, batches, latent_variant)


def _check_against_reference(model, batches, latent_variant, max_steps=4, state_atol=1e-4):
    """Every batch layout and K = 1..max_steps against one reference run (a K-step run is a prefix of a longer one)."""
    left = batches["left"]
    _, reference_states = reference_latent_embeddings(
        model.backbone, left["input_ids"], left["attention_mask"], max_steps, latent_variant
    )
    rows = {"left": slice(None), "right": slice(None), "single": slice(0, 1)}  # same texts, same order
    calls, handle = count_decoder_calls(model)
    try:
        for padding, batch in batches.items():
            for num_latent_steps in range(1, max_steps + 1):
                expected_states = reference_states[rows[padding], :num_latent_steps]
                expected = F.normalize(expected_states.mean(1), dim=-1)
                calls.clear()
                with torch.no_grad():
                    output = model(**batch, num_latent_steps=num_latent_steps, latent_variant=latent_variant)
                expected_calls = num_latent_steps if latent_variant == "released" else num_latent_steps + 1
                assert len(calls) == expected_calls, (padding, num_latent_steps)
                hidden = model.config.backbone_config.hidden_size
                assert output.embeddings.shape == (len(batch["input_ids"]), hidden)
                assert output.latent_states.shape == (len(batch["input_ids"]), num_latent_steps, hidden)
                torch.testing.assert_close(output.embeddings, expected, atol=1e-4, rtol=0)
                # Un-normalised states: relative to each state's norm (SmolLM2's states have norms around 50; the
                # soft-token softmax amplifies fp32 summation-order noise over 30 layers to ~1e-4 relative).
                error = (output.latent_states - expected_states).norm(dim=-1) / expected_states.norm(dim=-1)
                assert float(error.max()) < 1e-3, (padding, num_latent_steps, error)
                if state_atol is not None:
                    torch.testing.assert_close(output.latent_states, expected_states, atol=state_atol, rtol=0)
    finally:
        handle.remove()


@pytest.mark.parametrize("latent_variant", ["released", "paper"])
def test_uncached_path_matches_cached_path(tiny_lm_factory, batches, latent_variant):
    model = LaserModel.from_backbone(tiny_lm_factory("qwen3"), latent_variant=latent_variant)
    calls, handle = count_decoder_calls(model)
    with torch.no_grad():
        for num_latent_steps in (1, 3):
            cached = model(**batches["left"], num_latent_steps=num_latent_steps, use_cache=True)
            calls.clear()
            uncached = model(**batches["left"], num_latent_steps=num_latent_steps, use_cache=False)
            assert len(calls) == num_latent_steps + (latent_variant == "paper")
            torch.testing.assert_close(uncached.latent_states, cached.latent_states, atol=1e-5, rtol=0)
    handle.remove()


def test_gradient_checkpointing_uses_the_uncached_path_and_backpropagates(qwen3_tokenizer, batches):
    causal_lm = build_tiny_causal_lm(qwen3_tokenizer, "qwen3")
    model = LaserModel.from_backbone(causal_lm)
    with torch.no_grad():
        expected = model(**batches["left"]).latent_states
    if hasattr(model, "activation_checkpointing_enable"):  # transformers >= 5 name
        model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    assert causal_lm.is_activation_checkpointing
    model.train()  # dropout is 0 in the tiny config, so train and eval outputs agree
    output = model(**batches["left"])
    torch.testing.assert_close(output.latent_states, expected, atol=1e-5, rtol=0)
    output.embeddings.sum().backward()
    assert causal_lm.model.layers[0].self_attn.q_proj.weight.grad is not None
    # Nothing in the loop is detached: the (tied) embedding table gets gradient through the soft tokens too.
    assert causal_lm.get_input_embeddings().weight.grad.abs().sum() > 0


def test_num_latent_steps_one_is_last_token_pooling_on_the_post_norm_state(tiny_lm_factory, batches):
    causal_lm = tiny_lm_factory("qwen3")
    model = LaserModel.from_backbone(causal_lm)
    with torch.no_grad():
        output = model(**batches["left"], num_latent_steps=1)
        for row, (ids, mask) in enumerate(zip(batches["left"]["input_ids"], batches["left"]["attention_mask"])):
            plain = causal_lm(input_ids=ids[mask.bool()][None], output_hidden_states=True)
            last_state = plain.hidden_states[-1][0, -1]
            # The last `hidden_states` entry is what the LM head sees (post final norm), spec §2.1.
            torch.testing.assert_close(causal_lm.lm_head(last_state), plain.logits[0, -1], atol=1e-5, rtol=0)
            torch.testing.assert_close(output.latent_states[row, 0], last_state, atol=1e-5, rtol=0)
            torch.testing.assert_close(output.embeddings[row], F.normalize(last_state, dim=-1), atol=1e-5, rtol=0)


def test_soft_token_is_the_probability_weighted_input_embedding(tiny_lm_factory):
    causal_lm = build_tiny_causal_lm(build_tiny_tokenizer(("<think>", "</think>")), "qwen3", tie_word_embeddings=False)
    model = LaserModel.from_backbone(causal_lm)
    hidden = torch.randn(2, 64)
    table, head = causal_lm.get_input_embeddings().weight, causal_lm.get_output_embeddings()
    assert not torch.equal(table, head.weight)  # untied: E must be the *input* table
    with torch.no_grad():
        soft_token = model._soft_token(hidden, head, table)
        torch.testing.assert_close(soft_token[:, 0], torch.softmax(head(hidden), -1) @ table, atol=1e-6, rtol=0)
        head.weight.mul_(1e4)  # a very sharp LM head: the mix tends to the argmax token's embedding
        sharp = model._soft_token(hidden, head, table)
    torch.testing.assert_close(sharp[:, 0], table[head(hidden).argmax(-1)], atol=1e-4, rtol=0)


def test_card_procedure_parity_on_a_released_style_checkpoint(tiny_lm_factory, qwen3_tokenizer, tmp_path):
    """A released checkpoint is a plain Qwen3ForCausalLM: wrapped with defaults, it encodes as the card loop does."""
    causal_lm = tiny_lm_factory("qwen3")
    causal_lm.save_pretrained(tmp_path)
    model = LaserModel.from_backbone(str(tmp_path), attn_implementation="eager")
    assert (model.config.num_latent_steps, model.config.latent_variant) == (3, "released")
    instruction = "Given a post, retrieve relevant passages that help answer the post."
    # The authors' evaluation formatting, written out by hand.
    prompts = [f"<|im_start|>user\nInstruct: {instruction}\nQuery: {text}" + QWEN3_SUFFIX for text in TEXTS[:2]] + [
        f"<|im_start|>user\n{TEXTS[2]}" + QWEN3_SUFFIX
    ]
    encoded = [qwen3_tokenizer(prompt, add_special_tokens=False)["input_ids"] for prompt in prompts]
    batch = pad_left(encoded, qwen3_tokenizer.pad_token_id)
    expected = card_procedure_embeddings(causal_lm, batch["input_ids"], batch["attention_mask"])
    queries = model.encode(TEXTS[:2], qwen3_tokenizer, is_query=True, instruction=instruction, convert_to_numpy=False)
    document = model.encode(TEXTS[2:], qwen3_tokenizer, convert_to_numpy=False)
    torch.testing.assert_close(torch.cat([queries, document]), expected, atol=1e-4, rtol=0)


# ----------------------------------------------------------------------------------------------------------------------
# Formatting (specs/laser.md §2.2, §6)
# ----------------------------------------------------------------------------------------------------------------------


def test_qwen3_template_string_is_pinned(qwen3_tokenizer):
    rendered = format_latent_text(qwen3_tokenizer, "{text}")
    assert rendered == "<|im_start|>user\n{text}<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n"
    assert rendered.count("<think>") == 1
    query = format_query("why is the sky blue?")
    assert query == "Instruct: Retrieval relevant passage for the given query.\nQuery: why is the sky blue?"
    assert format_query("q", "Find the answer.") == "Instruct: Find the answer.\nQuery: q"


def test_latent_ids_are_the_joint_tokenisation_without_eos(qwen3_tokenizer):
    ids = tokenize_latent_texts(qwen3_tokenizer, TEXTS, is_query=True)
    for text, row in zip(TEXTS, ids):
        rendered = format_latent_text(qwen3_tokenizer, format_query(text))
        assert row == qwen3_tokenizer(rendered, add_special_tokens=False)["input_ids"]
        assert qwen3_tokenizer.decode(row).endswith("</think>\n\n")  # no EOS appended (§2.2)
        assert row[-1] != qwen3_tokenizer.eos_token_id


def test_templates_without_thinking_or_without_chat_template():
    chatml = build_tiny_tokenizer(chat_template=CHATML_TEMPLATE)
    assert format_latent_text(chatml, "hi") == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
    raw = build_tiny_tokenizer(chat_template=None)
    assert format_latent_text(raw, "hi") == "hi"
    assert tokenize_latent_texts(raw, ["hi"]) == [raw("hi", add_special_tokens=False)["input_ids"]]
    assert format_latent_text(chatml, "hi", use_chat_template=False) == "hi"


def test_build_latent_inputs_pads_left(qwen3_tokenizer):
    batch = build_latent_inputs(qwen3_tokenizer, TEXTS, pad_to_multiple_of=16)
    assert batch["input_ids"].shape[1] % 16 == 0
    assert bool(batch["attention_mask"][:, -1].all())
    assert not bool(batch["attention_mask"][:, 0].all())
    assert int((batch["input_ids"][batch["attention_mask"] == 0] != qwen3_tokenizer.pad_token_id).sum()) == 0


def test_long_text_is_truncated_inside_the_content_with_one_warning(
    qwen3_tokenizer, tiny_lm_factory, caplog, monkeypatch
):
    monkeypatch.setattr(modeling_laser, "_TRUNCATION_WARNED", set())
    long_text = " ".join(["The quick brown fox jumps over the lazy dog."] * 40)
    max_length = 48
    with caplog.at_level(logging.WARNING):
        ids = tokenize_latent_texts(qwen3_tokenizer, [long_text, "short", long_text], is_query=True, max_length=48)
    warnings = [record for record in caplog.records if "truncated" in record.getMessage()]
    assert len(warnings) == 1 and "2 of 3" in warnings[0].getMessage()
    for row in (ids[0], ids[2]):
        assert len(row) == max_length
        assert qwen3_tokenizer.decode(row).endswith(QWEN3_SUFFIX)  # the template suffix survives
        assert qwen3_tokenizer.decode(row).startswith("<|im_start|>user\nInstruct: ")
    model = LaserModel.from_backbone(tiny_lm_factory("qwen3"))
    caplog.clear()
    with caplog.at_level(logging.INFO):
        embeddings = model.encode([long_text, "short"], qwen3_tokenizer, max_length=max_length)
    assert embeddings.shape == (2, 64)
    # Warned once per max_length: a corpus encoded batch by batch does not repeat the warning for every batch.
    levels = [record.levelno for record in caplog.records if "truncated" in record.getMessage()]
    assert levels == [logging.INFO]
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        model.encode([long_text], qwen3_tokenizer, max_length=max_length + 1)
    assert sum("truncated" in record.getMessage() for record in caplog.records) == 1
    with pytest.raises(ValueError, match="max_length"):
        tokenize_latent_texts(qwen3_tokenizer, [long_text], max_length=5)


@pytest.mark.parametrize("bad", ["", "   \n "])
def test_empty_text_raises_naming_the_index(qwen3_tokenizer, tiny_lm_factory, bad):
    model = LaserModel.from_backbone(tiny_lm_factory("qwen3"))
    with pytest.raises(ValueError, match="index 1 is empty"):
        model.encode(["fine", bad], qwen3_tokenizer)
    with pytest.raises(ValueError, match="index 0 is empty"):
        build_explicit_inputs(qwen3_tokenizer, [bad], ["a long enough rationale"])


def test_tokenizer_without_pad_token_pads_with_eos(qwen3_tokenizer, tiny_lm_factory):
    model = LaserModel.from_backbone(tiny_lm_factory("qwen3"))
    no_pad = build_tiny_tokenizer(("<think>", "</think>"), chat_template=qwen3_tokenizer.chat_template)
    no_pad.pad_token = None
    assert no_pad.pad_token_id is None
    batch = build_latent_inputs(no_pad, TEXTS)
    assert int(batch["input_ids"][0, 0]) == no_pad.eos_token_id
    torch.testing.assert_close(
        torch.from_numpy(model.encode(TEXTS, no_pad)), torch.from_numpy(model.encode(TEXTS, qwen3_tokenizer))
    )
    no_pad.eos_token = None
    with pytest.raises(ValueError, match="neither a pad token nor an EOS token"):
        model.encode(TEXTS, no_pad)


# ----------------------------------------------------------------------------------------------------------------------
# encode()
# ----------------------------------------------------------------------------------------------------------------------


def test_encode_is_independent_of_batching_and_restores_order(qwen3_tokenizer, tiny_lm_factory):
    model = LaserModel.from_backbone(tiny_lm_factory("llama"))
    texts = TEXTS + ["Paris", "Berlin is the capital of Germany."]
    together = model.encode(texts, qwen3_tokenizer, is_query=True, batch_size=3)
    alone = [model.encode(text, qwen3_tokenizer, is_query=True) for text in texts]
    assert together.shape == (5, 64) and together.dtype.name == "float32" and alone[0].shape == (64,)
    for row, embedding in enumerate(alone):
        torch.testing.assert_close(torch.from_numpy(together[row]), torch.from_numpy(embedding), atol=1e-5, rtol=0)
    as_tensor = model.encode(texts, qwen3_tokenizer, is_query=True, convert_to_numpy=False, show_progress_bar=True)
    assert isinstance(as_tensor, torch.Tensor) and as_tensor.dtype == torch.float32
    # Queries and documents are formatted differently.
    documents = model.encode(texts, qwen3_tokenizer, is_query=False)
    assert not torch.allclose(torch.from_numpy(documents), as_tensor)
    torch.testing.assert_close(
        torch.from_numpy(model.encode_document(texts, qwen3_tokenizer)), torch.from_numpy(documents)
    )


def test_encode_restores_training_mode(qwen3_tokenizer, tiny_lm_factory):
    model = LaserModel.from_backbone(tiny_lm_factory("qwen3")).train()
    model.encode(["x y"], qwen3_tokenizer)
    assert model.training
    model.eval()


# ----------------------------------------------------------------------------------------------------------------------
# Bad inputs and backbones
# ----------------------------------------------------------------------------------------------------------------------


def test_num_latent_steps_below_one_raises(tiny_lm_factory, batches):
    model = LaserModel.from_backbone(tiny_lm_factory("qwen3"))
    with pytest.raises(ValueError, match="num_latent_steps"):
        model(**batches["left"], num_latent_steps=0)
    with pytest.raises(ValueError, match="num_latent_steps"):
        LaserModel.from_backbone(tiny_lm_factory("qwen3"), num_latent_steps=0)


def test_backbone_without_lm_head_raises(tiny_lm_factory):
    with pytest.raises(TypeError, match="ForCausalLM"):
        LaserModel.from_backbone(build_tiny_encoder())
    with pytest.raises(TypeError, match="ForCausalLM"):
        LaserModel.from_backbone(tiny_lm_factory("llama").model)  # the bare decoder, no head


def test_backbone_without_inputs_embeds_raises(qwen3_tokenizer):
    causal_lm = build_tiny_causal_lm(qwen3_tokenizer, "llama")
    decoder_forward = causal_lm.model.forward

    def forward(input_ids=None, attention_mask=None):  # a decoder that cannot take soft tokens
        return decoder_forward(input_ids=input_ids, attention_mask=attention_mask)

    causal_lm.model.forward = forward
    with pytest.raises(TypeError, match="inputs_embeds"):
        LaserModel.from_backbone(causal_lm)


def test_all_padding_row_raises(tiny_lm_factory, batches):
    model = LaserModel.from_backbone(tiny_lm_factory("qwen3"))
    batch = {key: value.clone() for key, value in batches["right"].items()}
    batch["attention_mask"][1] = 0
    with pytest.raises(ValueError, match="all zeros"):
        model(**batch)


# ----------------------------------------------------------------------------------------------------------------------
# Explicit view (specs/laser.md §3)
# ----------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("num_segments", "num_steps", "released", "paper"),
    [(4, 3, [0, 1, 3], [0, 1, 3]), (10, 3, [0, 4, 9], [2, 5, 9]), (2, 3, [0, 1, 1], [0, 0, 1])],
)
def test_segment_downsampling_table(num_segments, num_steps, released, paper):
    assert downsample_segments(num_segments, num_steps, "linspace") == released
    assert downsample_segments(num_segments, num_steps, "paper") == paper


def test_segment_downsampling_edge_cases():
    assert downsample_segments(0, 3) == []
    assert downsample_segments(1, 3) == [0, 0, 0]
    assert downsample_segments(7, 1) == [0]
    assert downsample_segments(7, 7) == list(range(7))
    with pytest.raises(ValueError, match="segment_downsampling"):
        downsample_segments(4, 3, "uniform")


def _explicit_reference(causal_lm, ids, cot_start, cot_end, separator_ids, num_steps, mode="linspace"):
    """Unpadded single-row recomputation of the teacher outputs."""
    with torch.no_grad():
        hidden = causal_lm(input_ids=ids[None], output_hidden_states=True).hidden_states[-1][0]
    length = len(separator_ids)
    boundaries = [
        p
        for p in range(cot_start + length - 1, cot_end)
        if tuple(ids[p - length + 1 : p + 1].tolist()) == separator_ids
    ]
    if cot_end > cot_start and cot_end - 1 not in boundaries:
        boundaries.append(cot_end - 1)
    indices = downsample_segments(len(boundaries), num_steps, mode)
    segments = hidden[[boundaries[i] for i in indices]] if indices else hidden[-1].expand(num_steps, -1)
    return F.normalize(hidden[-1], dim=-1), segments, len(boundaries)


def test_build_explicit_inputs_layout(qwen3_tokenizer):
    queries = ["What is the capital of France?", "Who wrote the book?"]
    rationales = ["Step 1: find the bridge entity.\n\nStep 2: look up the answer.\n\nSo the answer is: Paris.", "ok"]
    batch = build_explicit_inputs(qwen3_tokenizer, queries, rationales, instruction="Find it.")
    eos = qwen3_tokenizer.eos_token_id
    assert bool((batch["input_ids"][:, -1] == eos).all()) and bool(batch["attention_mask"][:, -1].all())
    for row, (query, rationale) in enumerate(zip(queries, rationales)):
        start, end = int(batch["cot_start"][row]), int(batch["cot_end"][row])
        query_ids = tokenize_latent_texts(qwen3_tokenizer, [query], is_query=True, instruction="Find it.")[0]
        cot = rationale if len(rationale) >= 5 else query  # "ok" is too short: the query stands in (§3.1)
        assert batch["input_ids"][row, start - len(query_ids) : start].tolist() == query_ids
        assert batch["input_ids"][row, start:end].tolist() == qwen3_tokenizer.encode(cot, add_special_tokens=False)
        assert end == batch["input_ids"].shape[1] - 1  # EOS right after the CoT
    # Right truncation to max_length, then one EOS: at most max_length + 1 tokens.
    truncated = build_explicit_inputs(qwen3_tokenizer, queries[:1], rationales[:1], max_length=40)
    assert truncated["input_ids"].shape[1] == 41 and int(truncated["cot_end"][0]) == 40
    # The query fills the whole budget: empty CoT span.
    filled = build_explicit_inputs(qwen3_tokenizer, queries[:1], rationales[:1], max_length=10)
    assert int(filled["cot_start"][0]) == int(filled["cot_end"][0]) == 10


@pytest.mark.parametrize("mode", ["linspace", "paper"])
def test_encode_explicit_matches_reference(qwen3_tokenizer, tiny_lm_factory, mode):
    causal_lm = tiny_lm_factory("qwen3")
    model = LaserModel.from_backbone(causal_lm)
    separator_id = get_segment_separator_ids(qwen3_tokenizer)
    newline = qwen3_tokenizer.convert_tokens_to_ids("Ċ")
    assert separator_id == (newline, newline)  # byte-level BPE: "\n\n" before a word is two "\n" tokens
    queries = ["What is the capital of France?", "Who wrote the book?", "Why?"]
    rationales = [
        "Step 1: find the bridge entity.\n\nStep 2: look up the answer.\n\nSo the answer is: Paris.",
        "A latent thought is a continuous vector, not a word.",
        "Step 1: find it.\n\n" * 6,
    ]
    batch = build_explicit_inputs(qwen3_tokenizer, queries, rationales, max_length=80)
    padded_right = right_pad(batch, qwen3_tokenizer.pad_token_id)
    shift = batch["attention_mask"].shape[1] - batch["attention_mask"].sum(-1)
    for inputs, starts, ends in (
        (batch, batch["cot_start"], batch["cot_end"]),
        (padded_right, batch["cot_start"] - shift, batch["cot_end"] - shift),
    ):
        with torch.no_grad():
            output = model.encode_explicit(
                inputs["input_ids"], inputs["attention_mask"], starts, ends, separator_id, segment_downsampling=mode
            )
        assert output.explicit_embeddings.shape == (3, 64) and output.segment_states.shape == (3, 3, 64)
        for row in range(3):
            mask = batch["attention_mask"][row].bool()
            offset = int(shift[row])
            expected = _explicit_reference(
                causal_lm,
                batch["input_ids"][row][mask],
                int(batch["cot_start"][row]) - offset,
                int(batch["cot_end"][row]) - offset,
                separator_id,
                3,
                mode,
            )
            torch.testing.assert_close(output.explicit_embeddings[row], expected[0], atol=1e-4, rtol=0)
            torch.testing.assert_close(output.segment_states[row], expected[1], atol=1e-4, rtol=0)
            assert int(output.num_segments[row]) == expected[2]
    # Paragraph breaks + the final CoT position; the third CoT is truncated after its fourth break.
    assert output.num_segments.tolist() == [3, 1, 5]


def _qwen_style_tokenizer():
    """A byte-level BPE with Qwen2's pre-tokeniser regex, which keeps "\n\n" (and ".\n\n") as one piece."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    qwen_regex = (
        r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+"
        r"|\s+(?!\S)|\s+"
    )
    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Split(Regex(qwen_regex), behavior="isolated"), pre_tokenizers.ByteLevel(use_regex=False)]
    )
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=300, initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    backend.train_from_iterator(["First step\n\nSecond step.\n\nThird step\n\n"] * 8, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=backend)


def test_segment_separator_ids_follow_the_tokenizer(qwen3_tokenizer):
    qwen_style = _qwen_style_tokenizer()
    # Qwen: the released rule, the last id of encode("\n\n"), a standalone merged token.
    merged = qwen_style.encode("\n\n", add_special_tokens=False)
    assert get_segment_separator_ids(qwen_style) == (merged[-1],) and len(merged) == 1
    ids = torch.tensor([qwen_style.encode("First step\n\nSecond step.\n\nThird step")])
    # ".\n\n" is one merged token there and, as in the released code, not a boundary (spec §3.2 caveat).
    span = torch.tensor([0])
    assert _separator_ends(ids, get_segment_separator_ids(qwen_style), span).sum() == 1
    # Byte-level GPT-2 regex (SmolLM2): two "\n" tokens in text, every paragraph break found once.
    ids = torch.tensor([qwen3_tokenizer.encode("First step\n\nSecond step.\n\nThird step")])
    ends = _separator_ends(ids, get_segment_separator_ids(qwen3_tokenizer), span)
    assert ends.sum() == 2 and [qwen3_tokenizer.decode(ids[0, : p + 1])[-2:] for p in ends[0].nonzero()[:, 0]] == [
        "\n\n",
        "\n\n",
    ]
    # A match must start inside the span; an empty separator is refused.
    assert _separator_ends(ids, get_segment_separator_ids(qwen3_tokenizer), torch.tensor([8])).sum() == 1
    with pytest.raises(ValueError, match="empty"):
        _separator_ends(ids, (), span)
    with pytest.raises(ValueError, match="tokenises to nothing"):
        get_segment_separator_ids(qwen3_tokenizer, "")


@pytest.mark.slow
def test_segment_separator_ids_on_smollm2():
    from transformers import AutoTokenizer

    from hf_latent.resources import default_backbone

    tokenizer = AutoTokenizer.from_pretrained(default_backbone())
    separator = get_segment_separator_ids(tokenizer)
    assert tokenizer.decode(list(separator)) == "\n\n" and len(separator) == 2
    batch = build_explicit_inputs(tokenizer, ["Who?"], ["Find the film.\n\nFind its director.\n\nSo: X."])
    ends = _separator_ends(batch["input_ids"], separator, batch["cot_start"])
    assert int(ends.sum()) == 2


def test_encode_explicit_empty_cot_repeats_the_final_state(qwen3_tokenizer, tiny_lm_factory):
    model = LaserModel.from_backbone(tiny_lm_factory("qwen3"))
    batch = build_explicit_inputs(qwen3_tokenizer, ["What is the capital of France?"], ["Paris."], max_length=10)
    with torch.no_grad():
        output = model.encode_explicit(**batch, separator_token_ids=get_segment_separator_ids(qwen3_tokenizer))
        final = _decoder(model.backbone)(**{k: batch[k] for k in ("input_ids", "attention_mask")}).last_hidden_state
    assert int(output.num_segments[0]) == 0
    torch.testing.assert_close(output.segment_states[0], final[0, -1].expand(3, -1), atol=1e-5, rtol=0)


# ----------------------------------------------------------------------------------------------------------------------
# Save / load (registered Auto classes, trust_remote_code) and dtype
# ----------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("tie_word_embeddings", [True, False])
def test_save_and_load_with_auto_model(tiny_lm_factory, batches, tmp_path, tie_word_embeddings):
    model = LaserModel.from_backbone(tiny_lm_factory("qwen3", tie_word_embeddings), num_latent_steps=2)
    model.save_pretrained(tmp_path)
    assert (tmp_path / "modeling_laser.py").is_file() and (tmp_path / "configuration_laser.py").is_file()
    reloaded = AutoModel.from_pretrained(tmp_path, attn_implementation="eager")
    assert isinstance(reloaded, LaserModel) and reloaded.config.num_latent_steps == 2
    assert reloaded.config.auto_map["AutoModel"] == "modeling_laser.LaserModel"
    with torch.no_grad():
        assert torch.equal(reloaded(**batches["left"]).embeddings, model(**batches["left"]).embeddings)
    tied = reloaded.backbone.lm_head.weight is reloaded.backbone.get_input_embeddings().weight
    assert tied == tie_word_embeddings


def test_trust_remote_code_loads_without_hf_latent(tiny_lm_factory, qwen3_tokenizer, tmp_path):
    model = LaserModel.from_backbone(tiny_lm_factory("gpt2"))
    model.save_pretrained(tmp_path / "model")
    qwen3_tokenizer.save_pretrained(tmp_path / "model")
    expected = model.encode(TEXTS, qwen3_tokenizer, is_query=True)
    code = textwrap.dedent(
        f"""
        import sys
        sys.modules["hf_latent"] = None  # make `import hf_latent` fail
        import numpy as np
        from transformers import AutoModel, AutoTokenizer
        path = {str(tmp_path / "model")!r}
        model = AutoModel.from_pretrained(path, trust_remote_code=True, attn_implementation="eager")
        assert "hf_latent" not in type(model).__module__, type(model).__module__
        tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=True)
        np.save({str(tmp_path / "remote.npy")!r}, model.encode({TEXTS!r}, tokenizer, is_query=True))
        """
    )
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    env.update(HF_HOME=str(tmp_path / "hf_home"), HF_HUB_OFFLINE="1")
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    import numpy as np

    np.testing.assert_array_equal(np.load(tmp_path / "remote.npy"), expected)


def test_from_backbone_forwards_loading_kwargs(tiny_lm_factory, qwen3_tokenizer, tmp_path):
    tiny_lm_factory("llama").save_pretrained(tmp_path)
    model = LaserModel.from_backbone(str(tmp_path), dtype=torch.bfloat16, num_latent_steps=2, latent_variant="paper")
    assert model.backbone.dtype == torch.bfloat16
    assert (model.config.num_latent_steps, model.config.latent_variant) == (2, "paper")
    embeddings = model.encode(TEXTS, qwen3_tokenizer, convert_to_numpy=False)
    assert embeddings.dtype == torch.float32 and embeddings.shape == (3, 64)
    instance = LaserModel.from_backbone(build_tiny_causal_lm(qwen3_tokenizer, "llama"), dtype="bfloat16")
    assert instance.backbone.dtype == torch.bfloat16
    with pytest.raises(TypeError, match="device_map"):
        LaserModel.from_backbone(tiny_lm_factory("llama"), device_map="cpu")


def test_laser_config_built_directly_gives_a_random_backbone(tiny_lm_factory, batches):
    config = LaserConfig(backbone_config=tiny_lm_factory("qwen3").config.to_dict(), num_latent_steps=2)
    model = LaserModel(config).eval()
    with torch.no_grad():
        assert model(**batches["left"]).latent_states.shape == (3, 2, 64)


# ----------------------------------------------------------------------------------------------------------------------
# PEFT (LoRA)
# ----------------------------------------------------------------------------------------------------------------------


def _lora_config():
    peft = pytest.importorskip("peft")
    # Paper: r 64, alpha 32, dropout 0.1; small r here. Random B so that the adapter changes the outputs.
    return peft.LoraConfig(r=4, lora_alpha=8, lora_dropout=0.1, target_modules=LORA_TARGETS, init_lora_weights=False)


def test_lora_on_the_backbone_saves_reloads_and_merges(qwen3_tokenizer, batches, tmp_path):
    from peft import get_peft_model

    build_tiny_causal_lm(qwen3_tokenizer, "qwen3").save_pretrained(tmp_path / "base")
    model = LaserModel.from_backbone(str(tmp_path / "base"), attn_implementation="eager", num_latent_steps=2)
    with torch.no_grad():
        base = model(**batches["left"]).embeddings
    model.backbone = get_peft_model(model.backbone, _lora_config())
    model.eval()
    with torch.no_grad():
        adapted = model(**batches["left"]).embeddings
    assert (adapted - base).abs().max() > 1e-3

    model.save_pretrained(tmp_path / "adapter")
    saved = sorted(path.name for path in (tmp_path / "adapter").iterdir())
    assert {"adapter_config.json", "adapter_model.safetensors", "config.json"} <= set(saved)
    assert "model.safetensors" not in saved  # adapter only, next to the LaSER config

    reloaded = LaserModel.from_pretrained(tmp_path / "adapter", attn_implementation="eager").eval()
    assert reloaded.config.num_latent_steps == 2
    with torch.no_grad():
        torch.testing.assert_close(reloaded(**batches["left"]).embeddings, adapted, atol=1e-6, rtol=0)
        merged = reloaded.merge_and_unload()
        assert not hasattr(merged.backbone, "peft_config")
        torch.testing.assert_close(merged(**batches["left"]).embeddings, adapted, atol=1e-5, rtol=0)

    # The merged model is a plain causal LM again, saved and loaded like any LaSER model.
    merged.save_pretrained(tmp_path / "merged")
    with torch.no_grad():
        again = LaserModel.from_pretrained(tmp_path / "merged", attn_implementation="eager")(**batches["left"])
    torch.testing.assert_close(again.embeddings, adapted, atol=1e-5, rtol=0)


def test_lora_on_the_whole_model(qwen3_tokenizer, batches, tmp_path):
    from peft import PeftModel, get_peft_model

    def fresh():
        return LaserModel.from_backbone(build_tiny_causal_lm(qwen3_tokenizer, "llama"), num_latent_steps=2)

    wrapped = get_peft_model(fresh(), _lora_config()).eval()
    with torch.no_grad():
        adapted = wrapped(**batches["left"]).embeddings
    wrapped.save_pretrained(tmp_path)
    reloaded = PeftModel.from_pretrained(fresh(), tmp_path).eval()
    with torch.no_grad():
        torch.testing.assert_close(reloaded(**batches["left"]).embeddings, adapted, atol=1e-6, rtol=0)
        merged = reloaded.merge_and_unload()
        assert isinstance(merged, LaserModel)
        torch.testing.assert_close(merged(**batches["left"]).embeddings, adapted, atol=1e-5, rtol=0)


# ----------------------------------------------------------------------------------------------------------------------
# Slow: the real default backbone (SmolLM2-135M-Instruct)
# ----------------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def smollm2():
    from hf_latent.resources import DefaultModelNotFoundError, default_backbone

    try:
        path = default_backbone()
    except DefaultModelNotFoundError as error:
        pytest.skip(str(error))
    tokenizer = AutoTokenizer.from_pretrained(path)
    # Eager attention: SDPA picks different kernels for the one-position cached steps and the full re-run, which
    # under load drifted past 1e-4 on a few of 1,728 coordinates; the comparison is about the loop, not the kernel.
    return LaserModel.from_backbone(None, attn_implementation="eager"), tokenizer


@pytest.mark.slow
@pytest.mark.parametrize("latent_variant", ["released", "paper"])
def test_smollm2_cached_loop_matches_reference(smollm2, latent_variant):
    model, tokenizer = smollm2
    left = build_latent_inputs(tokenizer, TEXTS, is_query=True, config=model.config)
    batch_variants = {
        "left": dict(left),
        "right": right_pad(left, tokenizer.pad_token_id),
        "single": dict(build_latent_inputs(tokenizer, TEXTS[:1], is_query=True, config=model.config)),
    }
    _check_against_reference(model, batch_variants, latent_variant, state_atol=None)


@pytest.mark.slow
def test_smollm2_chatml_template_is_used_as_is(smollm2):
    model, tokenizer = smollm2
    rendered = format_latent_text(tokenizer, format_query("why is the sky blue?"))
    # SmolLM2's ChatML template injects its default system prompt; we keep the template as it is.
    assert rendered.startswith("<|im_start|>system\n")
    assert rendered.endswith(
        "<|im_start|>user\n" + format_query("why is the sky blue?") + "<|im_end|>\n<|im_start|>assistant\n"
    )
    embeddings = model.encode(["why is the sky blue?", "Rayleigh scattering"], tokenizer, is_query=True)
    assert embeddings.shape == (2, model.config.backbone_config.hidden_size)
