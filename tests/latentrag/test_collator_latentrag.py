"""Tests for `hf_latent/latentrag/collator_latentrag.py` on tiny random components and the demo corpus."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from hf_latent.latentrag.collator_latentrag import LatentRAGDataCollator, LengthBinnedSampler, reference_search_fn
from hf_latent.latentrag.losses import build_candidate_pool
from hf_latent.latentrag.trajectories import (
    attach_pseudo_relevant_ids,
    tokenize_latent_trajectory,
    trajectories_from_multihop,
    trajectories_to_dataset,
)


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def model(build_tiny_latentrag):
    return build_tiny_latentrag()


@pytest.fixture(scope="module")
def index(model, demo):
    return model.build_index(demo.corpus, show_progress_bar=False)


@pytest.fixture(scope="module")
def trajectories(model, demo, index):
    trajectories, _ = trajectories_from_multihop(demo, split="train", num_distractors_per_step=1)
    return attach_pseudo_relevant_ids(trajectories, reference_search_fn(model, index, k=5), k=5)


@pytest.fixture(scope="module")
def collator(model, index):
    return LatentRAGDataCollator(model.generator_tokenizer, model.config, index=index, num_pseudo_relevant=4)


def test_batch_tensors_match_the_single_trajectory_tokenisation(model, collator, trajectories):
    rows = trajectories[:3]
    batch = collator(rows)
    tokenizer = model.generator_tokenizer
    encoded = [tokenize_latent_trajectory(t, tokenizer, model.config) for t in rows]
    length = max(len(e["input_ids"]) for e in encoded)
    assert batch["input_ids"].shape == batch["labels"].shape == batch["attention_mask"].shape == (3, length)
    for row, item in enumerate(encoded):
        size = len(item["input_ids"])
        assert batch["input_ids"][row, :size].tolist() == item["input_ids"]
        assert batch["labels"][row, :size].tolist() == item["labels"]  # §7.1 mask, unchanged
        assert batch["attention_mask"][row].tolist() == [1] * size + [0] * (length - size)
        assert (batch["labels"][row, size:] == -100).all()
        assert (batch["input_ids"][row, size:] == tokenizer.pad_token_id).all()
    # Texts are flattened in the order of the placeholder blocks (sequence, then position).
    assert batch["thoughts"] == [step.thought for t in rows for step in t.steps]
    assert batch["sub_queries"] == [step.sub_query for t in rows for step in t.retrieval_steps]
    assert batch["subquery_batch_index"].tolist() == [i for i, t in enumerate(rows) for _ in t.retrieval_steps]
    assert batch["thought_batch_index"].tolist() == [i for i, t in enumerate(rows) for _ in t.steps]
    assert batch["action_labels"].tolist() == [a for t in rows for a in [0] * t.num_retrievals + [1]]
    assert batch["question_ids"] == [t.question_id for t in rows]


def test_placeholder_positions_agree_with_the_model(model, collator, trajectories):
    batch = collator(trajectories[:2])
    config = model.config
    rows = batch["thought_batch_index"][:, None]
    assert (batch["input_ids"][rows, batch["thought_positions"]] == torch.tensor(config.thought_token_ids)).all()
    rows = batch["subquery_batch_index"][:, None]
    assert (batch["input_ids"][rows, batch["subquery_positions"]] == torch.tensor(config.subquery_token_ids)).all()
    with torch.no_grad():
        outputs = model(batch["input_ids"], batch["attention_mask"], return_logits=False)
    assert torch.equal(outputs.thought_positions, batch["thought_positions"])
    assert torch.equal(outputs.subquery_positions, batch["subquery_positions"])
    assert torch.equal(outputs.subquery_batch_index, batch["subquery_batch_index"])


def test_candidate_pool_and_frozen_document_embeddings(collator, trajectories, index):
    batch = collator(trajectories[:3])
    pseudo = [list(step.pseudo_relevant_ids)[:4] for t in trajectories[:3] for step in t.retrieval_steps]
    assert batch["pseudo_relevant_ids"] == pseudo
    doc_ids, indices = build_candidate_pool(pseudo)
    assert batch["candidate_doc_ids"] == doc_ids and batch["candidate_indices"] == indices
    assert len(set(doc_ids)) == len(doc_ids)  # deduplicated union (§7.2)
    documents = batch["document_embeddings"]
    assert documents.dtype == torch.float32 and not documents.requires_grad
    np.testing.assert_array_equal(documents.numpy(), index.get_embeddings(doc_ids))


def test_dataset_rows_and_dicts_collate_like_trajectories(collator, trajectories):
    dataset = trajectories_to_dataset(trajectories[:2])
    from_objects = collator(trajectories[:2])
    for rows in ([dataset[0], dataset[1]], [t.to_dict() for t in trajectories[:2]]):
        batch = collator(rows)
        assert torch.equal(batch["input_ids"], from_objects["input_ids"])
        assert batch["candidate_doc_ids"] == from_objects["candidate_doc_ids"]


def test_missing_pseudo_relevant_ids_warn_and_give_no_pool(model, demo, caplog):
    trajectories, _ = trajectories_from_multihop(demo, split="train", num_distractors_per_step=0)
    collator = LatentRAGDataCollator(model.generator_tokenizer, model.config)
    with caplog.at_level(logging.WARNING):
        batch = collator(trajectories[:1])
    assert batch["document_embeddings"] is None and batch["candidate_doc_ids"] == []
    assert "pseudo_relevant_ids" in caplog.text


def test_pad_to_multiple_of(model, index, trajectories):
    collator = LatentRAGDataCollator(model.generator_tokenizer, model.config, index=index, pad_to_multiple_of=64)
    assert collator(trajectories[:2])["input_ids"].shape[1] % 64 == 0


def test_reference_search_fn_uses_the_frozen_reference_retriever(model, index):
    queries = ["copper lantern inventor", "Tarnwick river"]
    with torch.no_grad():
        vectors = model.encode_text_queries(queries, reference=True).numpy()
    _, expected = index.search(vectors, k=3)
    # A non-zero retriever adapter must not change the pseudo-relevant documents (they come from θ*_ret).
    adapter = model.retriever_adapter_parameters()
    saved = [p.detach().clone() for p in adapter]
    with torch.no_grad():
        for p in adapter:
            p.add_(0.5)
    try:
        assert reference_search_fn(model, index, k=3)(queries) == expected
    finally:
        with torch.no_grad():
            for p, value in zip(adapter, saved):
                p.copy_(value)


def test_length_binned_sampler_batches_come_from_one_bin():
    lengths = [10] * 5 + [500] * 6 + [990] * 3 + [11, 12]
    sampler = LengthBinnedSampler(lengths, batch_size=2, num_bins=10, max_length=1000, seed=3)
    batches = sampler.batches(epoch=0)
    assert sorted(i for batch in batches for i in batch) == list(range(len(lengths)))
    assert all(len(batch) == 2 for batch in batches[:-1])
    bins = [{sampler.bin_of(lengths[i]) for i in batch} for batch in batches]
    # Bins with 7, 6 and 3 rows: 3 + 3 + 1 full single-bin batches, then the leftovers of bins 0 and 9.
    assert sum(len(b) == 1 for b in bins) == 7 and all(len(b) <= 2 for b in bins)
    assert sampler.batches(epoch=0) == batches and sampler.batches(epoch=1) != batches
    # A DataLoader with the same batch size sees exactly these batches.
    loader = DataLoader(list(range(len(lengths))), batch_size=2, sampler=sampler)
    first_epoch = sampler.batches(epoch=0)
    assert [b.tolist() for b in loader] == first_epoch
    assert [b.tolist() for b in loader] == sampler.batches(epoch=1)  # moves on by itself without set_epoch


def test_length_binned_sampler_validates():
    with pytest.raises(ValueError):
        LengthBinnedSampler([1, 2], batch_size=0)
    with pytest.raises(ValueError):
        LengthBinnedSampler([1, 2], batch_size=1, num_bins=0)
    assert len(LengthBinnedSampler([1, 2, 3], batch_size=2)) == 3
