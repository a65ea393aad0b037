from __future__ import annotations

import numpy as np
import pytest

from hf_latent.laser import LaserModel
from hf_latent.laser.rewrite import RewriteThenRetrieveEncoder
from hf_latent.retrieval import CallableEncoder, DenseIndex


@pytest.fixture
def rewriter(qwen3_tokenizer, tiny_lm_factory):
    model = LaserModel.from_backbone(tiny_lm_factory("qwen3"), num_latent_steps=2)
    return RewriteThenRetrieveEncoder(model, qwen3_tokenizer, name="tiny-laser", max_new_tokens=6)


def test_queries_are_rewritten_then_encoded_by_the_explicit_view(rewriter):
    queries = ["Which river flows through Paris?", "Who wrote the book?"]
    vectors = rewriter.encode(queries, is_query=True)
    assert vectors.shape == (2, 64) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert len(rewriter.rationales) == 2 and rewriter.timings.generated_tokens == [6, 6]
    assert all(ms > 0 for ms in rewriter.timings.generation_ms + rewriter.timings.encoding_ms)
    # The same rationale, encoded directly, gives the same vector: the rationale is what changed the query.
    direct = rewriter.encode_with_rationales(queries[:1], rewriter.rationales[:1])
    np.testing.assert_allclose(direct[0], vectors[0], atol=1e-5)
    without = rewriter.encode_with_rationales(queries[:1], ["A different rationale entirely."])
    assert not np.allclose(without[0], vectors[0], atol=1e-3)


def test_documents_use_the_latent_view_and_share_the_index(rewriter, qwen3_tokenizer):
    docs = ["Paris is on the Seine.", "Berlin is in Germany.", "The book was written in 1998."]
    latent = CallableEncoder(
        "tiny-laser",
        64,
        lambda texts, is_query=False: rewriter.model.encode(texts, qwen3_tokenizer, is_query=is_query),
    )
    np.testing.assert_allclose(rewriter.encode(docs), latent.encode(docs), atol=1e-6)
    index = DenseIndex.from_corpus(docs, ["a", "b", "c"], latent, show_progress_bar=False)
    scores, ids = index.search_texts(["Which river flows through Paris?"], rewriter, k=2)
    assert len(ids[0]) == 2


def test_bad_arguments(rewriter):
    with pytest.raises(ValueError, match="max_new_tokens must be >= 1"):
        RewriteThenRetrieveEncoder(rewriter.model, rewriter.tokenizer, name="x", max_new_tokens=0)
    with pytest.raises(ValueError, match="must contain '\\{query\\}'"):
        RewriteThenRetrieveEncoder(rewriter.model, rewriter.tokenizer, name="x", prompt="no placeholder")
    with pytest.raises(ValueError, match="query_view must be 'explicit' or 'query'"):
        RewriteThenRetrieveEncoder(rewriter.model, rewriter.tokenizer, name="x", query_view="teacher")


def test_query_view_reads_query_and_rationale_as_one_query(rewriter, qwen3_tokenizer):
    """The paper's setting: the rewrite goes through the retriever's ordinary query encoding."""
    as_query = RewriteThenRetrieveEncoder(
        rewriter.model,
        qwen3_tokenizer,
        name="tiny-laser",
        max_new_tokens=6,
        instruction="Find it.",
        query_view="query",
    )
    query, rationale = "Which river flows through Paris?", "The Seine flows through Paris."
    expected = rewriter.model.encode([f"{query}\n{rationale}"], qwen3_tokenizer, is_query=True, instruction="Find it.")
    np.testing.assert_allclose(as_query.encode_with_rationales([query], [rationale]), expected, atol=1e-5)
    vectors = as_query.encode([query], is_query=True)  # generates, then the same encoding
    np.testing.assert_allclose(vectors, as_query.encode_with_rationales([query], as_query.rationales), atol=1e-5)
    # An empty rationale leaves the query as it is.
    plain = rewriter.model.encode(["Who?"], qwen3_tokenizer, is_query=True, instruction="Find it.")
    np.testing.assert_allclose(as_query.encode_with_rationales(["Who?"], [""]), plain, atol=1e-6)
