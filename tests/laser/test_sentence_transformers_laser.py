"""Tests for `hf_latent/sentence_transformers_interop.py`: LaSER through sentence-transformers equals
`LaserModel.encode` (specs/laser.md §2.2 formatting), works with ST evaluators and MTEB-style calls, and saves to a
folder that `SentenceTransformer(path, trust_remote_code=True)` and `AutoModel` both load."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch


pytest.importorskip("sentence_transformers")

from sentence_transformers import SentenceTransformer  # noqa: E402
from sentence_transformers.sentence_transformer.evaluation import InformationRetrievalEvaluator  # noqa: E402
from transformers import AutoModel  # noqa: E402

from hf_latent.laser import LaserModel  # noqa: E402
from hf_latent.sentence_transformers_interop import (  # noqa: E402
    MODULE_REFERENCE,
    LaserSentenceEncoder,
    laser_to_sentence_transformer,
    save_laser_sentence_transformer,
)


QUERIES = [
    "What is the capital of France?",
    "Which river flows through the town where the inventor was born?",
    "Who wrote the book?",
]
DOCUMENTS = [
    "Paris is the capital of France.",
    "The river Seine flows through Paris.",
    "Dense retrieval encodes queries and documents into vectors and ranks documents by cosine similarity.",
    "Berlin is the capital of Germany.",
]
INSTRUCTION = "Given a web search query, retrieve relevant passages that answer the query"
ATOL = 1e-5


@pytest.fixture(scope="module")
def laser(tiny_lm_factory):
    return LaserModel.from_backbone(tiny_lm_factory("qwen3")).eval()


@pytest.fixture(scope="module")
def st_model(laser, qwen3_tokenizer):
    return laser_to_sentence_transformer(laser, qwen3_tokenizer)


@pytest.fixture(scope="module")
def expected(laser, qwen3_tokenizer):
    """`LaserModel.encode` outputs, the reference of every comparison."""
    return {
        "queries": laser.encode(QUERIES, qwen3_tokenizer, is_query=True),
        "documents": laser.encode(DOCUMENTS, qwen3_tokenizer),
    }


def test_queries_and_documents_equal_laser_encode(laser, st_model, expected):
    queries, documents = expected["queries"], expected["documents"]
    assert st_model.prompts == {"query": laser.config.default_instruction, "document": ""}
    np.testing.assert_allclose(st_model.encode(QUERIES, prompt_name="query", batch_size=2), queries, atol=ATOL)
    np.testing.assert_allclose(st_model.encode_query(QUERIES), queries, atol=ATOL)
    np.testing.assert_allclose(st_model.encode(DOCUMENTS), documents, atol=ATOL)
    np.testing.assert_allclose(st_model.encode_document(DOCUMENTS), documents, atol=ATOL)
    np.testing.assert_allclose(st_model.encode(DOCUMENTS, prompt_name="document"), documents, atol=ATOL)
    assert st_model.get_embedding_dimension() == documents.shape[1] == 64
    similarity = st_model.similarity(st_model.encode_query(QUERIES), st_model.encode_document(DOCUMENTS))
    np.testing.assert_allclose(similarity.numpy(), queries @ documents.T, atol=ATOL)


def test_instructions_single_texts_and_latent_steps(laser, qwen3_tokenizer, st_model, expected):
    instructed = laser.encode(QUERIES, qwen3_tokenizer, is_query=True, instruction=INSTRUCTION)
    assert not np.allclose(instructed, expected["queries"], atol=1e-3)  # the instruction matters
    np.testing.assert_allclose(st_model.encode(QUERIES, prompt=INSTRUCTION), instructed, atol=ATOL)
    np.testing.assert_allclose(st_model.encode_query(QUERIES, prompt=INSTRUCTION), instructed, atol=ATOL)
    np.testing.assert_allclose(st_model.encode(QUERIES, instruction=INSTRUCTION), instructed, atol=ATOL)
    np.testing.assert_allclose(st_model.encode(QUERIES[0], prompt_name="query"), expected["queries"][0], atol=ATOL)
    k1 = laser.encode(DOCUMENTS, qwen3_tokenizer, num_latent_steps=1)
    np.testing.assert_allclose(st_model.encode(DOCUMENTS, num_latent_steps=1), k1, atol=ATOL)
    assert not np.allclose(k1, expected["documents"], atol=1e-3)  # K really changed
    tensors = st_model.encode(DOCUMENTS, convert_to_tensor=True)
    assert isinstance(tensors, torch.Tensor) and tensors.dtype == torch.float32


def test_mteb_style_call(st_model, expected):
    """MTEB's sentence-transformers wrapper calls `encode(sentences, prompt_name=..., **kwargs)`."""
    kwargs = {"batch_size": 2, "show_progress_bar": False, "convert_to_numpy": True}
    out = st_model.encode(QUERIES, prompt_name="query", **kwargs)
    np.testing.assert_allclose(out, expected["queries"], atol=ATOL)
    with pytest.raises(ValueError, match="not found"):
        st_model.encode(QUERIES, prompt_name="BrightBiology")


def test_information_retrieval_evaluator(st_model, expected):
    evaluator = InformationRetrievalEvaluator(
        queries={f"q{i}": query for i, query in enumerate(QUERIES)},
        corpus={f"d{i}": document for i, document in enumerate(DOCUMENTS)},
        relevant_docs={"q0": {"d0"}, "q1": {"d1"}, "q2": {"d2"}},
        name="tiny",
        show_progress_bar=False,
    )
    metrics = evaluator(st_model)
    assert 0.0 <= metrics["tiny_cosine_ndcg@10"] <= 1.0
    # The same ranking from LaserModel.encode directly.
    scores = expected["queries"] @ expected["documents"].T
    ranks = [int((row > row[i]).sum()) + 1 for i, row in enumerate(scores)]
    assert metrics["tiny_cosine_mrr@10"] == pytest.approx(np.mean([1.0 / rank for rank in ranks]))


def test_saved_folder_loads_with_sentence_transformers_and_auto_model(
    laser, qwen3_tokenizer, st_model, expected, tmp_path
):
    folder = save_laser_sentence_transformer(st_model, tmp_path / "st")
    modules = json.loads((folder / "modules.json").read_text())
    assert modules == [{"idx": 0, "name": "0", "path": "", "type": MODULE_REFERENCE}]
    assert (folder / "sentence_transformers_interop.py").is_file() and (folder / "modeling_laser.py").is_file()
    assert json.loads((folder / "config.json").read_text())["model_type"] == "laser"

    reloaded = SentenceTransformer(str(folder), trust_remote_code=True)
    assert type(reloaded[0]).__module__.startswith("transformers_modules.")
    assert reloaded.prompts["query"] == laser.config.default_instruction
    assert reloaded.similarity_fn_name == "cosine"
    np.testing.assert_allclose(reloaded.encode(QUERIES, prompt_name="query"), expected["queries"], atol=ATOL)
    np.testing.assert_allclose(reloaded.encode(DOCUMENTS), expected["documents"], atol=ATOL)

    as_laser = AutoModel.from_pretrained(folder)  # the same folder is a plain LaSER checkpoint
    np.testing.assert_allclose(
        as_laser.encode(QUERIES, qwen3_tokenizer, is_query=True), expected["queries"], atol=ATOL
    )
    with pytest.raises(ValueError, match="trust_remote_code"):
        SentenceTransformer(str(folder))


def test_rejects_other_models(tiny_lm_factory, qwen3_tokenizer):
    with pytest.raises(TypeError, match="LaserModel"):
        LaserSentenceEncoder(tiny_lm_factory("qwen3"), qwen3_tokenizer)
    module = LaserSentenceEncoder(LaserModel.from_backbone(tiny_lm_factory("qwen3")), qwen3_tokenizer)
    with pytest.raises(ValueError, match="task"):
        module.preprocess(QUERIES, task="classification")
