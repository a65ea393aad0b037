"""Tests for `hf_latent/latentrag/inference.py` (the agentic loop of spec §4) on tiny random components."""

from __future__ import annotations

import contextlib

import numpy as np
import pytest
import torch
from transformers import AutoModel

from hf_latent.latentrag import (
    LatentRAGPipeline,
    answer_questions,
    encode_prompt,
    encode_trajectory,
    run_latentrag,
)
from hf_latent.retrieval import DenseIndex


QUESTION = "Which river flows through the town where the inventor of the copper lantern was born?"


@pytest.fixture(scope="module")
def model(build_tiny_latentrag):
    return build_tiny_latentrag(max_answer_tokens=4)


@contextlib.contextmanager
def biased_logits(model, token_id, value=1e4):
    """Add `value` to one LM-head column (a bias on that row), to force an action."""
    head = model.generator.get_output_embeddings()

    def hook(module, inputs, output):
        output = output.clone()
        output[..., token_id] += value
        return output

    handle = head.register_forward_hook(hook)
    try:
        yield
    finally:
        handle.remove()


@contextlib.contextmanager
def count_generator_passes(model):
    """Count calls of the generator's decoder body (every prefill and every decoding step)."""
    calls = []
    handle = model.generator.get_decoder().register_forward_pre_hook(
        lambda module, args, kwargs: calls.append(1), with_kwargs=True
    )
    try:
        yield calls
    finally:
        handle.remove()


def test_end_to_end_with_faiss_and_forward_pass_accounting(model, corpus, index):
    """Spec §13.5: passes = (r+1) thought passes + r sub-query passes + answer steps; the cap of 4 forces ⟨answer⟩."""
    with biased_logits(model, model.config.query_action_token_id), count_generator_passes(model) as calls:
        result = run_latentrag(model, QUESTION, index, corpus)
    trace = result.trace
    r = trace.num_retrievals
    assert r == 4 and trace.actions == ["query"] * 4 + ["answer"] and trace.forced_answer
    assert all(len(ids) == 3 and set(ids) <= set(corpus["id"]) for ids in trace.retrieved_ids)
    assert all(len(scores) == 3 and scores == sorted(scores, reverse=True) for scores in trace.retrieval_scores)
    passes = trace.forward_passes
    assert passes["prefill"] + passes["thoughts"] == r + 1
    assert passes["subqueries"] == r
    assert 1 <= passes["answer"] <= model.config.max_answer_tokens
    assert len(calls) == (r + 1) + r + passes["answer"] == trace.num_forward_passes
    assert set(trace.stage_ms) >= {"prefill", "thoughts", "subqueries", "retrieval", "answer"}
    assert all(value >= 0 for value in trace.stage_ms.values()) and trace.total_ms > 0
    assert isinstance(result.answer, str) and trace.to_dict()["system"] == "latentrag"


def test_retrieval_cap_and_direct_answer(model, corpus, index):
    with biased_logits(model, model.config.query_action_token_id):
        capped = run_latentrag(model, QUESTION, index, corpus, max_retrievals=2, top_k=2)
    assert capped.trace.actions == ["query", "query", "answer"] and capped.trace.forced_answer
    assert [len(ids) for ids in capped.trace.retrieved_ids] == [2, 2]
    with biased_logits(model, model.config.answer_start_token_id), count_generator_passes(model) as calls:
        direct = run_latentrag(model, QUESTION, index, corpus)
    assert direct.trace.actions == ["answer"] and not direct.trace.forced_answer
    assert direct.trace.retrieved_ids == [] and len(calls) == 1 + direct.trace.forward_passes["answer"]


def test_action_argmax_is_restricted_to_the_two_action_ids(model, corpus, index):
    config = model.config
    logits = torch.zeros(len(model.generator_tokenizer))
    logits[model.generator_tokenizer.eos_token_id] = 100.0
    logits[config.answer_start_token_id] = 2.0
    logits[config.query_action_token_id] = 1.0
    assert int(model.select_action(logits)) == 1
    logits[config.query_action_token_id] = 3.0
    assert int(model.select_action(logits)) == 0
    # A huge non-action logit never becomes an action in the loop.
    with biased_logits(model, model.generator_tokenizer.eos_token_id, 1e6):
        result = run_latentrag(model, QUESTION, index, corpus, max_retrievals=1)
    assert set(result.trace.actions) <= {"query", "answer"} and result.trace.actions[-1] == "answer"


def test_cached_loop_equals_single_teacher_forced_pass(model, corpus, index):
    """Spec §13.1: the incremental KV-cache loop and one forward pass give the same H^τ_t and H^s_t."""
    with biased_logits(model, model.config.query_action_token_id):
        result = run_latentrag(model, QUESTION, index, corpus, max_retrievals=2, return_latents=True)
    lookup = {row["id"]: row for row in corpus}
    documents = [[lookup[doc_id] for doc_id in ids] for ids in result.trace.retrieved_ids]
    # The training-side sequence builder produces exactly the loop's context (up to the answer).
    rebuilt = encode_trajectory(model.generator_tokenizer, model.config, QUESTION, documents)["input_ids"]
    assert result.context_ids[: len(rebuilt)] == rebuilt
    assert result.context_ids[len(rebuilt)] == model.config.answer_start_token_id
    with torch.no_grad():
        out = model(torch.tensor([result.context_ids]))
    torch.testing.assert_close(out.subquery_states, result.subquery_states, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(out.thought_states, result.thought_states, atol=1e-4, rtol=1e-4)
    assert result.subquery_states.shape == (2, model.config.num_subquery_tokens, model.hidden_size)


def test_decoded_latents_in_the_trace(model, corpus, index):
    with biased_logits(model, model.config.query_action_token_id):
        result = run_latentrag(model, QUESTION, index, corpus, max_retrievals=1, decode_latents=True)
    trace = result.trace
    assert len(trace.decoded_thoughts) == 2 and len(trace.decoded_subqueries) == 1
    assert trace.forward_passes["decoding"] >= 1 and "decoding" in trace.stage_ms
    assert trace.num_forward_passes == 1 + 1 + 1 + trace.forward_passes["answer"]  # decoding not included


def test_bad_inputs(model, corpus, index):
    with pytest.raises(ValueError, match="non-empty"):
        run_latentrag(model, "   ", index, corpus)
    embeddings = np.random.default_rng(0).standard_normal((4, model.retrieval_dim)).astype(np.float32)
    other_space = DenseIndex.build(embeddings, ["a", "b", "c", "d"], encoder_name="another-encoder:mean")
    with pytest.raises(ValueError, match="another-encoder"):
        run_latentrag(model, QUESTION, other_space, corpus)
    wrong_dim = DenseIndex.build(embeddings[:, :16], ["a", "b", "c", "d"], encoder_name=model.retriever_name)
    with pytest.raises(ValueError, match="16-d"):
        run_latentrag(model, QUESTION, wrong_dim, corpus)
    missing = {row["id"]: row for row in corpus}
    with biased_logits(model, model.config.query_action_token_id):
        top_id = run_latentrag(model, QUESTION, index, corpus, max_retrievals=1).trace.retrieved_ids[0][0]
        del missing[top_id]
        with pytest.raises(KeyError, match=top_id):
            run_latentrag(model, QUESTION, index, missing, max_retrievals=1)
    with pytest.raises(ValueError):
        LatentRAGPipeline(model, other_space, corpus)


def test_chat_template_and_plain_text_fallback(corpus, build_tiny_latentrag):
    plain = build_tiny_latentrag(chat_template=False, max_answer_tokens=2)
    assert plain.generator_tokenizer.chat_template is None
    ids = encode_prompt(plain.generator_tokenizer, plain.config, QUESTION)
    text = plain.generator_tokenizer.decode(ids)
    assert text.startswith(plain.config.instruction) and f"Question: {QUESTION}\n<think_1>" in text
    index = plain.build_index(corpus, show_progress_bar=False)
    assert isinstance(run_latentrag(plain, QUESTION, index, corpus).answer, str)  # no error without a template

    templated = build_tiny_latentrag(chat_template=True)
    text = templated.generator_tokenizer.decode(
        encode_prompt(templated.generator_tokenizer, templated.config, QUESTION)
    )
    assert text.startswith("<|im_start|>user\n") and text.endswith(
        "<|im_start|>assistant\n" + "".join(templated.config.thought_tokens)
    )
    templated.config.use_chat_template = False  # base-LLM layout on request
    text = templated.generator_tokenizer.decode(
        encode_prompt(templated.generator_tokenizer, templated.config, QUESTION)
    )
    assert text.startswith(templated.config.instruction)


def test_pipeline_and_batched_api(model, corpus, index):
    as_dict = {row["id"]: {"title": row["title"], "text": row["text"]} for row in corpus}
    with biased_logits(model, model.config.query_action_token_id):
        rag = LatentRAGPipeline(model, index, corpus, max_retrievals=1)
        single = rag(QUESTION)
        many = rag([QUESTION, "Who founded Ostbridge?"], show_progress_bar=False)
        from_dict = answer_questions(model, [QUESTION], index, as_dict, show_progress_bar=False, max_retrievals=1)
        built = LatentRAGPipeline(model, None, as_dict, max_retrievals=1)(QUESTION)
    assert len(many) == 2 and many[0].answer == single.answer
    assert from_dict[0].trace.retrieved_ids == single.trace.retrieved_ids == built.trace.retrieved_ids


def test_saved_model_reproduces_answers_and_traces(model, corpus, index, tmp_path):
    model.save_pretrained(tmp_path)
    loaded = AutoModel.from_pretrained(tmp_path)
    for bias_id in (model.config.query_action_token_id, None):
        runs = []
        for candidate in (model, loaded):
            context = biased_logits(candidate, bias_id) if bias_id is not None else contextlib.nullcontext()
            with context:
                runs.append(run_latentrag(candidate, QUESTION, index, corpus, max_retrievals=2))
        assert runs[0].answer == runs[1].answer
        assert runs[0].trace.actions == runs[1].trace.actions
        assert runs[0].trace.retrieved_ids == runs[1].trace.retrieved_ids
        assert runs[0].trace.forward_passes == runs[1].trace.forward_passes
