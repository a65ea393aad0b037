"""Tests for `hf_latent/latentrag/baselines.py` (naive RAG and Search-R1-style explicit agentic RAG)."""

from __future__ import annotations

import contextlib

import pytest
import torch

from hf_latent.latentrag import ExplicitAgenticRAG, NaiveRAG


QUESTION = "Which river flows through the town where the inventor of the copper lantern was born?"


@pytest.fixture(scope="module")
def model(build_tiny_latentrag):
    return build_tiny_latentrag(max_answer_tokens=16)


@contextlib.contextmanager
def scripted_generation(model, text):
    """Make every generator pass predict the next token of `text` (tags tokenised as plain text)."""
    script = model.generator_tokenizer(text, add_special_tokens=False, split_special_tokens=True)["input_ids"]
    script = script + [model.generator_tokenizer.eos_token_id]
    calls = []

    def hook(module, inputs, output):
        output = output.clone()
        output[..., script[min(len(calls), len(script) - 1)]] += 1e4
        calls.append(1)
        return output

    handle = model.generator.get_output_embeddings().register_forward_hook(hook)
    try:
        yield script, calls
    finally:
        handle.remove()


def test_naive_rag(model, corpus, index):
    rag = NaiveRAG(model, index, corpus)
    with scripted_generation(model, " Selwen River") as (script, calls):
        result = rag(QUESTION)
    trace = result.trace
    assert result.answer == "Selwen River"
    assert trace.system == "naive_rag" and trace.queries == [QUESTION] and len(trace.retrieved_ids) == 1
    assert len(trace.retrieved_ids[0]) == 3 and trace.actions == ["query", "answer"]
    # One prefill, then one pass per generated token except the final EOS.
    assert trace.forward_passes == {"prefill": 1, "answer": len(script) - 1}
    assert trace.num_forward_passes == len(calls) == len(script)
    assert trace.stage_ms["retrieval"] > 0 and trace.total_ms > 0
    # Same retrieval as a plain text-query search with the reference retriever.
    vector = model.encode_text_queries([QUESTION], reference=True).numpy()
    assert index.search(vector, k=3)[1][0] == trace.retrieved_ids[0]


def test_naive_rag_plain_text_prompt_stops_at_newline(corpus, build_tiny_latentrag):
    plain = build_tiny_latentrag(chat_template=False, max_answer_tokens=8)
    index = plain.build_index(corpus, show_progress_bar=False)
    with scripted_generation(plain, " Selwen\nmore text"):
        result = NaiveRAG(plain, index, corpus)(QUESTION)
    assert result.answer == "Selwen"


def test_baselines_never_emit_latentrag_tokens(model, corpus, index):
    handle = model.generator.get_output_embeddings().register_forward_hook(
        lambda module, inputs, output: output.index_fill(-1, torch.tensor([model.config.answer_start_token_id]), 1e4)
    )
    try:
        result = NaiveRAG(model, index, corpus, max_answer_tokens=3)(QUESTION)
    finally:
        handle.remove()
    assert model.config.answer_start_token_id not in result.trace.answer_token_ids


def test_explicit_agentic_rag_search_then_answer(model, corpus, index):
    text = "<think> who </think><search> the lamp </search><think> ok </think><answer> Paris </answer>"
    rag = ExplicitAgenticRAG(model, index, corpus, top_k=2)
    with scripted_generation(model, text) as (script, calls):
        result = rag(QUESTION)
    trace = result.trace
    assert result.answer == "Paris"
    assert trace.queries == ["the lamp"] and trace.actions == ["query", "answer"]
    assert len(trace.retrieved_ids) == 1 and not trace.forced_answer
    assert "<information>Doc 1 (Title: " in trace.generated_text
    # Every generated token costs a pass, except the last; the token closing </search> joins the information pass.
    script_without_eos = len(script) - 1
    assert trace.num_forward_passes == len(calls) == 1 + script_without_eos - 1
    assert trace.num_generated_tokens == script_without_eos
    assert trace.forward_passes["prefill"] == 1 and trace.forward_passes["subqueries"] >= 2
    assert trace.forward_passes["answer"] >= 1 and trace.stage_ms["retrieval"] > 0


def test_explicit_agentic_rag_search_cap_forces_the_answer(model, corpus, index):
    text = "<search> first </search><search> second </search> Paris </answer>"
    rag = ExplicitAgenticRAG(model, index, corpus, max_searches=1, top_k=1)
    with scripted_generation(model, text):
        result = rag(QUESTION)
    assert result.trace.forced_answer and result.trace.queries == ["first"]
    assert result.trace.actions == ["query", "answer"] and result.answer == "Paris"
    # A turn that never closes is cut at max_step_tokens and answered.
    with scripted_generation(model, "la " * 50):
        capped = ExplicitAgenticRAG(model, index, corpus, max_step_tokens=5, max_answer_tokens=3)(QUESTION)
    assert capped.trace.forced_answer and capped.trace.retrieved_ids == []
    assert capped.trace.num_generated_tokens <= 5 + 3


def test_baselines_reject_bad_inputs(model, corpus, index):
    with pytest.raises(ValueError):
        NaiveRAG(model, index, corpus)("")
    with pytest.raises(ValueError):
        ExplicitAgenticRAG(model, index, corpus, max_step_tokens=0)
    results = NaiveRAG(model, index, corpus, max_answer_tokens=2).answer_questions([QUESTION, "Who?"], False)
    assert len(results) == 2
