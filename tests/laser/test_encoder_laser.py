"""Tests for `hf_latent/laser/encoder_laser.py`: LaserModel as a retrieval TextEncoder."""

import numpy as np

from hf_latent.laser import LaserEncoder, LaserModel
from hf_latent.retrieval import DenseIndex


DOCS = ["Paris is on the Seine.", "Berlin is in Germany and has many museums.", "The book was written in 1998."]


def test_encoder_equals_model_encode_and_searches_an_index(qwen3_tokenizer, tiny_lm_factory):
    model = LaserModel.from_backbone(tiny_lm_factory("qwen3"), num_latent_steps=3)
    encoder = LaserEncoder(model, qwen3_tokenizer, "tiny-laser", instruction="Find it.", passage_max_length=30)
    assert encoder.embedding_dim == 64
    # Length-sorted batches of 2 give the model's own vectors, in input order.
    expected = model.encode(DOCS, qwen3_tokenizer, max_length=30)
    np.testing.assert_allclose(encoder.encode(DOCS, batch_size=2), expected, atol=1e-5)
    query = model.encode(["Which river?"], qwen3_tokenizer, is_query=True, instruction="Find it.")
    np.testing.assert_allclose(encoder.encode(["Which river?"], is_query=True), query, atol=1e-5)
    # The instruction and K are per encoder; changing them changes the query vector.
    encoder.instruction, encoder.num_latent_steps = "Something else.", 1
    assert not np.allclose(encoder.encode(["Which river?"], is_query=True), query, atol=1e-3)
    index = DenseIndex.from_corpus(DOCS, ["a", "b", "c"], encoder, show_progress_bar=False)
    _, ids = index.search_texts(["Which river?"], encoder, k=2)
    assert len(ids[0]) == 2 and index.encoder_name == "tiny-laser"
