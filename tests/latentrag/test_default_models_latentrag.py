"""Slow tests of LatentRAG with the default models (SmolLM2-135M-Instruct + all-MiniLM-L6-v2) on HotpotQA-500.

Untrained, so only the plumbing and the latency breakdown are checked, not the answers. Run with
`pytest -m slow tests/latentrag -s` to see the per-stage latencies.
"""

from __future__ import annotations

import pytest
import torch

from hf_latent.latentrag import ExplicitAgenticRAG, LatentRAGModel, NaiveRAG, run_latentrag


pytestmark = pytest.mark.slow

NUM_OTHER_PASSAGES = 200


@pytest.fixture(scope="module")
def model():
    return LatentRAGModel.from_components(max_answer_tokens=16, max_decoding_tokens=16)


@pytest.fixture(scope="module")
def hotpot_setup(model):
    from hf_latent.data import load_hotpotqa

    data = load_hotpotqa()
    question = data.questions[0]
    own = set(question["supporting_ids"]) | set(question["negative_ids"])
    passages = data.passages_by_id()
    others = [doc_id for doc_id in passages if doc_id not in own][:NUM_OTHER_PASSAGES]
    corpus = {doc_id: passages[doc_id] for doc_id in [*sorted(own), *others]}
    index = model.build_index(corpus, batch_size=64, show_progress_bar=False)
    return question, corpus, index


def _report(name, trace):
    stages = ", ".join(f"{stage} {ms:.0f}" for stage, ms in trace.stage_ms.items())
    print(
        f"\n[{name}] total {trace.total_ms:.0f} ms | {stages} | passes {trace.num_forward_passes} "
        f"{trace.forward_passes} | retrievals {trace.num_retrievals} | context {trace.num_context_tokens} tokens"
    )


def test_default_model_wiring(model):
    from hf_latent import default_retriever
    from hf_latent.retrieval import HFEncoder

    assert model.retriever_name == "sentence-transformers/all-MiniLM-L6-v2:mean"
    assert model.retrieval_dim == 384 and model.retrieval_projector.output_size == 384
    assert model.retrieval_projector.num_heads == 4  # 576 / 128 -> 4 heads of 144
    # Spec §13.2 on the real retriever: real token embeddings through the replaced span give f_ret(text) ...
    texts = ["who invented the copper lantern", "Which river flows through Tarnwick?"]
    tokenizer = model.retriever_tokenizer
    table = model.retriever.get_input_embeddings()
    for text in texts:
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        with torch.no_grad():
            span_vector = model.encode_query_embeddings(table(torch.tensor([ids])), reference=True)
        torch.testing.assert_close(span_vector, model.encode_text_queries([text]), atol=1e-5, rtol=1e-5)
    # ... which is also what the shared retrieval toolkit computes, in the same named space.
    encoder = HFEncoder.from_pretrained(default_retriever())
    assert encoder.name == model.retriever_name
    expected = torch.from_numpy(encoder.encode(texts, is_query=True, show_progress_bar=False))
    torch.testing.assert_close(model.encode_text_queries(texts), expected, atol=1e-5, rtol=1e-5)


def test_three_systems_on_one_hotpotqa_question(model, hotpot_setup):
    question, corpus, index = hotpot_setup
    latent = run_latentrag(model, question["question"], index, corpus)
    trace = latent.trace
    _report("latentrag", trace)
    r = trace.num_retrievals
    assert 0 <= r <= 4 and len(trace.actions) == r + 1
    assert trace.forward_passes["prefill"] + trace.forward_passes["thoughts"] == r + 1
    assert trace.forward_passes["subqueries"] == r
    assert trace.num_forward_passes == 2 * r + 1 + trace.forward_passes["answer"]

    naive = NaiveRAG(model, index, corpus)(question["question"])
    _report("naive_rag", naive.trace)
    assert naive.trace.num_retrievals == 1 and len(naive.trace.retrieved_ids[0]) == 3

    explicit = ExplicitAgenticRAG(model, index, corpus, max_step_tokens=48)(question["question"])
    _report("explicit_agentic_rag", explicit.trace)
    assert explicit.trace.num_retrievals <= 4
    assert explicit.trace.num_forward_passes >= explicit.trace.num_generated_tokens
    print(f"\nanswers: latent={latent.answer!r} naive={naive.answer!r} explicit={explicit.answer!r}")


def test_latent_decoding_with_default_models(model, hotpot_setup):
    question, corpus, index = hotpot_setup
    result = run_latentrag(model, question["question"], index, corpus, max_retrievals=2, decode_latents=True)
    _report("latentrag+decoding", result.trace)
    assert len(result.trace.decoded_thoughts) == result.trace.num_retrievals + 1
    assert len(result.trace.decoded_subqueries) == result.trace.num_retrievals
