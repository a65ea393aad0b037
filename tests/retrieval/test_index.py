from __future__ import annotations

import json
import logging

import numpy as np
import pytest
import torch

from hf_latent.retrieval import CallableEncoder, DenseIndex, HFEncoder
from hf_latent.testing_utils import build_tiny_encoder, build_tiny_encoder_tokenizer


def _random_unit(n: int, d: int, seed: int) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _brute_force(docs: np.ndarray, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    scores = queries @ docs.T
    top = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(scores, top, axis=1), top


@pytest.fixture(scope="module")
def data():
    docs, queries = _random_unit(600, 32, seed=0), _random_unit(25, 32, seed=1)
    return docs, queries, [f"doc-{i}" for i in range(len(docs))]


@pytest.fixture(scope="module")
def encoder():
    tokenizer = build_tiny_encoder_tokenizer()
    return HFEncoder(build_tiny_encoder(tokenizer), tokenizer, name="tiny-bert:mean")


CORPUS = [
    "Paris is the capital of France.",
    "Berlin is the capital of Germany.",
    "The river Seine flows through Paris.",
    "The quick brown fox jumps over the lazy dog.",
    "A latent thought is a continuous vector, not a word.",
    "Dense retrieval ranks documents by cosine similarity.",
    "Who wrote the book?",
    "When was the bridge built?",
]
CORPUS_IDS = [f"p{i}" for i in range(len(CORPUS))]


def test_flat_search_equals_brute_force(data):
    docs, queries, ids = data
    index = DenseIndex.build(docs, ids, encoder_name="random")
    scores, found = index.search(queries, k=10, batch_size=7)
    expected_scores, expected_top = _brute_force(docs, queries, 10)
    assert scores.shape == (len(queries), 10) and scores.dtype == np.float32
    assert found == [[ids[j] for j in row] for row in expected_top]
    np.testing.assert_allclose(scores, expected_scores, atol=1e-5)
    # A single 1-D query and a torch tensor work too.
    one_scores, one_ids = index.search(torch.from_numpy(queries[0]), k=3)
    assert one_ids == [found[0][:3]] and one_scores.shape == (1, 3)


def test_ivf_exact_with_full_probe_and_hnsw_recall(data):
    docs, queries, ids = data
    _, expected_top = _brute_force(docs, queries, 10)
    expected = [{ids[j] for j in row} for row in expected_top]

    ivf = DenseIndex.build(docs, ids, "random", index_type="ivf", nlist=8, nprobe=8)
    assert ivf.search(queries, k=10)[1] == [[ids[j] for j in row] for row in expected_top]
    default_ivf = DenseIndex.build(docs, ids, "random", index_type="ivf")
    assert default_ivf.config.nlist == 15 and default_ivf.config.nprobe == 15  # min(sqrt(600)=24, 600//39=15)

    hnsw = DenseIndex.build(docs, ids, "random", index_type="hnsw", hnsw_m=16, hnsw_ef_search=64)
    found = hnsw.search(queries, k=10)[1]
    recall = np.mean([len(set(row) & exp) / 10 for row, exp in zip(found, expected)])
    assert recall >= 0.9


def test_l2_metric_scores_are_negated_distances(data):
    docs, queries, ids = data
    index = DenseIndex.build(docs * 2.0, ids, "random", metric="l2")
    scores, found = index.search(queries, k=5)
    distances = ((queries[:, None, :] - 2.0 * docs[None]) ** 2).sum(-1)
    top = np.argsort(distances, axis=1, kind="stable")[:, :5]
    assert found == [[ids[j] for j in row] for row in top]
    np.testing.assert_allclose(scores, -np.take_along_axis(distances, top, axis=1), atol=1e-4)


def test_ties_follow_corpus_order():
    docs = _random_unit(50, 8, seed=2)
    docs[[10, 3, 40, 7]] = docs[20]
    ids = [f"d{i}" for i in range(50)]
    index = DenseIndex.build(docs, ids, "random")
    scores, found = index.search(docs[20], k=5)
    assert found[0] == ["d3", "d7", "d10", "d20", "d40"]  # stable, like np.argsort(kind="stable")
    assert found[0] == [ids[j] for j in _brute_force(docs, docs[20:21], 5)[1][0]]
    np.testing.assert_allclose(scores, 1.0, atol=1e-6)


@pytest.mark.parametrize("index_type", ["flat", "ivf", "hnsw"])
def test_save_load_round_trip(data, tmp_path, index_type):
    docs, queries, ids = data
    index = DenseIndex.build(docs, ids, "random", index_type=index_type, nlist=8 if index_type == "ivf" else None)
    index.save(tmp_path / "index")
    assert sorted(p.name for p in (tmp_path / "index").iterdir()) == [
        "doc_ids.json",
        "index.faiss",
        "index_config.json",
    ]
    config = json.loads((tmp_path / "index" / "index_config.json").read_text())
    assert config["encoder_name"] == "random" and config["num_docs"] == 600 and config["embedding_dim"] == 32
    assert config["index_type"] == index_type and config["metric"] == "ip" and "hf_latent_version" in config

    loaded = DenseIndex.load(tmp_path / "index")
    assert loaded.config == index.config and loaded.doc_ids == ids
    before, after = index.search(queries, k=10), loaded.search(queries, k=10)
    np.testing.assert_array_equal(before[0], after[0])
    assert before[1] == after[1]
    np.testing.assert_array_equal(loaded.get_embeddings(ids[:5]), docs[:5])


def test_load_missing_files(data, tmp_path):
    docs, _, ids = data
    with pytest.raises(FileNotFoundError, match="not found"):
        DenseIndex.load(tmp_path / "nothing")
    folder = DenseIndex.build(docs, ids, "random").save(tmp_path / "index")
    (folder / "doc_ids.json").unlink()
    with pytest.raises(FileNotFoundError, match="missing doc_ids.json"):
        DenseIndex.load(folder)


def test_build_validation(data):
    docs, _, ids = data
    with pytest.raises(ValueError, match="Duplicate doc ids"):
        DenseIndex.build(docs[:3], ["a", "b", "a"], "random")
    with pytest.raises(ValueError, match="3 embeddings but 2 doc ids"):
        DenseIndex.build(docs[:3], ["a", "b"], "random")
    with pytest.raises(ValueError, match="0 embeddings"):
        DenseIndex.build(np.empty((0, 32), dtype=np.float32), [], "random")
    with pytest.raises(ValueError, match="2-D"):
        DenseIndex.build(docs[0], ["a"], "random")
    with pytest.raises(ValueError, match="NaN"):
        DenseIndex.build(np.full((2, 4), np.nan), ["a", "b"], "random")
    with pytest.raises(ValueError, match="real numbers"):
        DenseIndex.build(np.array([["a", "b"]]), ["a"], "random")
    with pytest.raises(TypeError, match="str"):
        DenseIndex.build(docs[:2], [1, 2], "random")
    with pytest.raises(ValueError, match="index_type"):
        DenseIndex.build(docs, ids, "random", index_type="pq")
    float64 = DenseIndex.build(docs[:4].astype(np.float64), ids[:4], "random")
    assert float64.get_embeddings(ids[:1]).dtype == np.float32


def test_k_validation_and_clamp(data, caplog):
    docs, queries, ids = data
    index = DenseIndex.build(docs[:5], ids[:5], "random")
    for k in (0, -1, 2.5):
        with pytest.raises(ValueError, match="k must be a positive integer"):
            index.search(queries, k=k)
    with caplog.at_level(logging.WARNING, logger="hf_latent.retrieval.index"):
        scores, found = index.search(queries, k=50)
    assert scores.shape == (len(queries), 5) and all(len(row) == 5 for row in found)
    assert any("larger than the index" in r.getMessage() for r in caplog.records)
    with pytest.raises(ValueError, match="dimension 16"):
        index.search(queries[:, :16], k=1)


@pytest.mark.parametrize("index_type", ["flat", "ivf", "hnsw"])
def test_get_embeddings(data, index_type):
    docs, _, ids = data
    index = DenseIndex.build(docs, ids, "random", index_type=index_type)
    np.testing.assert_array_equal(index.get_embeddings(["doc-7", "doc-3", "doc-7"]), docs[[7, 3, 7]])
    assert index.get_embeddings([]).shape == (0, 32)
    with pytest.raises(KeyError, match="'doc-x'"):
        index.get_embeddings(["doc-1", "doc-x"])
    assert "doc-1" in index and len(index) == 600


def test_search_texts_checks_the_encoder(encoder, caplog):
    index = DenseIndex.from_corpus(CORPUS, CORPUS_IDS, encoder, show_progress_bar=False)
    scores, found = index.search_texts(CORPUS[:2], encoder, k=1)
    assert found == [["p0"], ["p1"]]  # a document's own text is its nearest neighbour

    renamed = HFEncoder(encoder.model, encoder.tokenizer, name="other-model:mean")
    with pytest.raises(ValueError, match="Encoder name mismatch.*'tiny-bert:mean'.*'other-model:mean'"):
        index.search_texts(["Paris"], renamed)
    with caplog.at_level(logging.WARNING, logger="hf_latent.retrieval.index"):
        assert index.search_texts(CORPUS[:1], renamed, k=1, allow_encoder_mismatch=True)[1] == [["p0"]]
    assert any("mismatch" in r.getMessage() for r in caplog.records)

    wrong_dim = CallableEncoder("tiny-bert:mean", 8, lambda texts, is_query: np.ones((len(texts), 8)))
    with pytest.raises(ValueError, match="embedding_dim 8"):
        index.search_texts(["Paris"], wrong_dim, allow_encoder_mismatch=True)


@pytest.mark.parametrize("index_type", ["flat", "ivf"])
def test_from_corpus_streams_chunks_like_build(encoder, index_type):
    embeddings = encoder.encode(CORPUS)
    kwargs = {"index_type": index_type, "nlist": 2, "nprobe": 2} if index_type == "ivf" else {}
    built = DenseIndex.build(embeddings, CORPUS_IDS, encoder.name, **kwargs)
    streamed = DenseIndex.from_corpus(
        (text for text in CORPUS), CORPUS_IDS, encoder, batch_size=2, chunk_size=3, show_progress_bar=False, **kwargs
    )
    assert streamed.encoder_name == "tiny-bert:mean" and streamed.embedding_dim == 64
    np.testing.assert_allclose(streamed.get_embeddings(CORPUS_IDS), embeddings, atol=1e-6)
    assert streamed.search(embeddings, k=3)[1] == built.search(embeddings, k=3)[1]
    with pytest.raises(ValueError, match="8 texts but 7 doc ids"):
        DenseIndex.from_corpus(CORPUS, CORPUS_IDS[:7], encoder)
    with pytest.raises(ValueError, match="Got 7 texts but 8 doc ids"):
        DenseIndex.from_corpus(iter(CORPUS[:7]), CORPUS_IDS, encoder, show_progress_bar=False)


def test_from_dataset_and_datasets_faiss_integration(encoder):
    from datasets import Dataset

    dataset = Dataset.from_dict({"text": CORPUS, "doc_id": list(range(100, 100 + len(CORPUS)))})
    index = DenseIndex.from_dataset(dataset, "text", "doc_id", encoder, chunk_size=3, show_progress_bar=False)
    assert index.doc_ids == [str(i) for i in range(100, 108)]
    np.testing.assert_allclose(index.get_embeddings(["103"]), encoder.encode([CORPUS[3]]), atol=1e-6)
    with pytest.raises(KeyError, match="title"):
        DenseIndex.from_dataset(dataset, "title", "doc_id", encoder)

    # The same index answers `datasets`' own search API.
    queries = encoder.encode(["capital of Germany", "a fox"], is_query=True)
    scores, ids = index.search(queries, k=3)
    index.to_dataset_index(dataset, "embeddings", id_column="doc_id")
    batch = dataset.search_batch("embeddings", queries, k=3)
    assert [[str(dataset[int(i)]["doc_id"]) for i in row] for row in batch.total_indices] == ids
    np.testing.assert_allclose(np.asarray(batch.total_scores), scores, atol=1e-6)
    with pytest.raises(ValueError, match="rows"):
        index.to_dataset_index(Dataset.from_dict({"text": CORPUS[:3]}))


@pytest.mark.slow
def test_hotpotqa_paragraphs_retrieve_themselves():
    from hf_latent import DefaultModelNotFoundError, default_retriever
    from hf_latent.data.paths import shared_data_dir

    hotpotqa = shared_data_dir() / "hotpotqa" / "dev_subsampled_500.jsonl"  # CI has the data: no skip
    try:
        path = default_retriever()
    except DefaultModelNotFoundError as error:
        pytest.skip(str(error))
    texts, ids, seen = [], [], set()
    with hotpotqa.open() as file:
        for line in file:
            example = json.loads(line)
            for context in example["contexts"]:
                # Unique texts: duplicates would tie at rank 1 by construction.
                if context["paragraph_text"] not in seen and len(texts) < 200:
                    seen.add(context["paragraph_text"])
                    texts.append(context["paragraph_text"])
                    ids.append(f"{example['question_id']}-{context['id']}")
            if len(texts) >= 200:
                break
    encoder = HFEncoder.from_pretrained(path, device="cpu")
    index = DenseIndex.from_corpus(texts, ids, encoder, batch_size=32, show_progress_bar=False)
    embeddings = index.get_embeddings(ids)
    np.testing.assert_allclose(np.linalg.norm(embeddings, axis=1), 1.0, atol=1e-5)
    scores, found = index.search(embeddings, k=5)
    assert [row[0] for row in found] == ids
    np.testing.assert_allclose(scores[:, 0], 1.0, atol=1e-5)
    assert index.search_texts(texts[:20], encoder, k=1)[1] == [[i] for i in ids[:20]]
