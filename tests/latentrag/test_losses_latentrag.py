"""Tests for hf_latent.latentrag.losses: every term against a hand computation in plain Python (specs §7, §9, §13)."""

from __future__ import annotations

import logging
import math

import pytest
import torch

from hf_latent.latentrag.losses import (
    LATENTRAG_ARXIV_ID,
    LATENTRAG_LOSS_VARIANTS,
    GenerationLoss,
    LatentDecodingLoss,
    LatentRAGLoss,
    RetrievalAlignmentLoss,
    build_candidate_pool,
    calibrate_retrieval_temperature,
    top_k_mass,
)


TOL = 1e-5


# ------------------------------------------------------------------------------------------------ hand computations


def hand_token_ce(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """Token-mean CE where logits[b][t-1] predicts labels[b][t], by explicit loops."""
    logits, labels = logits.tolist(), labels.tolist()
    total, count = 0.0, 0
    for row_logits, row_labels in zip(logits, labels):
        for t in range(1, len(row_labels)):
            if row_labels[t] == -100:
                continue
            scores = row_logits[t - 1]
            log_normaliser = math.log(sum(math.exp(x) for x in scores))
            total += log_normaliser - scores[row_labels[t]]
            count += 1
    return total / count


def unit(vector: list[float]) -> list[float]:
    norm = math.sqrt(sum(x * x for x in vector))
    return [x / norm for x in vector]


def cos(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(unit(a), unit(b)))


def softmax(scores: list[float]) -> list[float]:
    top = max(scores)
    exps = [math.exp(x - top) for x in scores]
    return [e / sum(exps) for e in exps]


def hand_kl(student, teacher, documents, beta) -> float:
    total = 0.0
    for v_s, v_t in zip(student.tolist(), teacher.tolist()):
        p = softmax([cos(v_t, d) / beta for d in documents.tolist()])
        q = softmax([cos(v_s, d) / beta for d in documents.tolist()])
        total += sum(p_i * math.log(p_i / q_i) for p_i, q_i in zip(p, q))
    return total / student.shape[0]


def hand_cosine(student, teacher) -> float:
    values = [1.0 - cos(a, b) for a, b in zip(student.tolist(), teacher.tolist())]
    return sum(values) / len(values)


def hand_infonce(student, teacher, documents, beta, num_positives=3) -> float:
    total = 0.0
    docs = documents.tolist()
    for v_s, v_t in zip(student.tolist(), teacher.tolist()):
        teacher_scores = [cos(v_t, d) for d in docs]
        positives = sorted(range(len(docs)), key=lambda i: -teacher_scores[i])[:num_positives]
        exps = [math.exp(cos(v_s, d) / beta) for d in docs]
        total -= math.log(sum(exps[i] for i in positives) / sum(exps))
    return total / student.shape[0]


def hand_top_k_mass(teacher, documents, beta, candidate_lists=None, k=3) -> float:
    masses = []
    docs = documents.tolist()
    for row, v_t in enumerate(teacher.tolist()):
        indices = range(len(docs)) if candidate_lists is None else candidate_lists[row]
        p = softmax([cos(v_t, docs[i]) / beta for i in indices])
        masses.append(sum(sorted(p, reverse=True)[:k]))
    return sum(masses) / len(masses)


# ---------------------------------------------------------------------------------------------------------- fixtures


@pytest.fixture
def lm_batch():
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 6, 11, generator=generator)
    labels = torch.tensor([[-100, -100, 3, 4, -100, 10], [-100, 7, -100, -100, 2, -100]])
    return logits, labels


@pytest.fixture
def retrieval_batch():
    generator = torch.Generator().manual_seed(1)
    # Deliberately not normalised: the loss normalises (cosine).
    student = 3.0 * torch.randn(4, 8, generator=generator)
    teacher = 0.5 * torch.randn(4, 8, generator=generator)
    documents = 2.0 * torch.randn(12, 8, generator=generator)
    return student, teacher, documents


@pytest.fixture
def decode_batches():
    generator = torch.Generator().manual_seed(2)
    thought_logits = torch.randn(3, 7, 11, generator=generator)
    thought_labels = torch.full((3, 7), -100)
    thought_labels[:, 4:] = torch.randint(0, 11, (3, 3), generator=generator)
    subquery_logits = torch.randn(2, 5, 11, generator=generator)
    subquery_labels = torch.full((2, 5), -100)
    subquery_labels[0, 3:] = torch.tensor([1, 2])
    subquery_labels[1, 4] = 9
    return thought_logits, thought_labels, subquery_logits, subquery_labels


# ------------------------------------------------------------------------------------------------------ generation


def test_generation_loss_matches_hand_computation(lm_batch):
    logits, labels = lm_batch
    loss = GenerationLoss()(logits=logits, labels=labels)
    assert loss.shape == ()
    assert loss.item() == pytest.approx(hand_token_ce(logits, labels), abs=TOL)


def test_generation_loss_shift_convention(lm_batch):
    logits, labels = lm_batch
    loss = GenerationLoss()(logits, labels)
    # The last position predicts nothing and labels[:, 0] is never a target (labels aligned with input_ids).
    changed_logits = logits.clone()
    changed_logits[:, -1] += 5.0
    changed_labels = labels.clone()
    changed_labels[:, 0] = 1
    assert GenerationLoss()(changed_logits, changed_labels).item() == pytest.approx(loss.item(), abs=1e-7)


def test_generation_loss_num_items_in_batch(lm_batch):
    logits, labels = lm_batch
    count = int((labels[:, 1:] != -100).sum())
    summed = hand_token_ce(logits, labels) * count
    assert GenerationLoss()(logits, labels, num_items_in_batch=10).item() == pytest.approx(summed / 10, abs=TOL)


def test_generation_loss_validation(lm_batch):
    logits, labels = lm_batch
    loss = GenerationLoss()
    with pytest.raises(ValueError, match=r"logits must have shape \(batch, seq_len, vocab_size\)"):
        loss(logits[0], labels)
    with pytest.raises(ValueError, match="must agree on"):
        loss(logits, labels[:, :-1])
    with pytest.raises(TypeError, match="integer token ids"):
        loss(logits, labels.float())
    with pytest.raises(ValueError, match="outside"):
        loss(logits, torch.where(labels == 10, torch.tensor(11), labels))
    with pytest.raises(ValueError, match="no target token"):
        loss(logits, torch.full_like(labels, -100))
    with pytest.raises(TypeError, match="torch.Tensor"):
        loss(logits.tolist(), labels)


# ------------------------------------------------------------------------------------------------- latent decoding


def test_latent_decoding_is_sum_of_two_token_means(decode_batches):
    thought_logits, thought_labels, subquery_logits, subquery_labels = decode_batches
    loss_fn = LatentDecodingLoss()
    thought = hand_token_ce(thought_logits, thought_labels)
    subquery = hand_token_ce(subquery_logits, subquery_labels)
    total = loss_fn(thought_logits, thought_labels, subquery_logits, subquery_labels)
    assert total.item() == pytest.approx(thought + subquery, abs=TOL)
    # Each half is its own token mean: not the pooled mean over both batches.
    pooled = (thought * 9 + subquery * 3) / 12
    assert abs(total.item() - pooled) > 1e-3
    halves = loss_fn.components(thought_logits, thought_labels, subquery_logits, subquery_labels)
    assert halves["thought"].item() == pytest.approx(thought, abs=TOL)
    assert halves["subquery"].item() == pytest.approx(subquery, abs=TOL)


def test_latent_decoding_skips_missing_half(decode_batches):
    thought_logits, thought_labels, subquery_logits, subquery_labels = decode_batches
    loss_fn = LatentDecodingLoss()
    only_subquery = loss_fn(subquery_logits=subquery_logits, subquery_labels=subquery_labels)
    assert only_subquery.item() == pytest.approx(hand_token_ce(subquery_logits, subquery_labels), abs=TOL)
    assert list(loss_fn.components(thought_logits=thought_logits, thought_labels=thought_labels)) == ["thought"]
    with pytest.raises(ValueError, match="subquery_labels is None but its partner is given"):
        loss_fn(subquery_logits=subquery_logits)
    with pytest.raises(ValueError, match="pass thought_logits"):
        loss_fn()
    with pytest.raises(ValueError, match=r"thought_labels .* must agree"):
        loss_fn(thought_logits, thought_labels[:, :3])


# --------------------------------------------------------------------------------------------- retrieval alignment


@pytest.mark.parametrize("beta", [0.03, 0.2])
def test_retrieval_kl_matches_hand_computation(retrieval_batch, beta):
    student, teacher, documents = retrieval_batch
    loss = RetrievalAlignmentLoss(temperature=beta)(student, teacher, documents)
    assert loss.item() == pytest.approx(hand_kl(student, teacher, documents, beta), rel=TOL, abs=TOL)


def test_retrieval_cosine_matches_hand_computation(retrieval_batch):
    student, teacher, documents = retrieval_batch
    loss_fn = RetrievalAlignmentLoss(mode="cosine")
    expected = hand_cosine(student, teacher)
    assert loss_fn(student, teacher, documents).item() == pytest.approx(expected, abs=TOL)
    assert loss_fn(student, teacher).item() == pytest.approx(expected, abs=TOL)  # documents optional


@pytest.mark.parametrize("beta", [0.03, 0.2])
def test_retrieval_infonce_matches_hand_computation(retrieval_batch, beta):
    student, teacher, documents = retrieval_batch
    loss = RetrievalAlignmentLoss(temperature=beta, mode="infonce")(student, teacher, documents)
    assert loss.item() == pytest.approx(hand_infonce(student, teacher, documents, beta), rel=TOL, abs=TOL)
    one = RetrievalAlignmentLoss(temperature=beta, mode="infonce", num_positives=1)(student, teacher, documents)
    assert one.item() == pytest.approx(hand_infonce(student, teacher, documents, beta, 1), rel=TOL, abs=TOL)


@pytest.mark.parametrize("mode", ["kl", "cosine"])
def test_retrieval_loss_is_zero_when_student_equals_teacher(retrieval_batch, mode):
    _, teacher, documents = retrieval_batch
    loss_fn = RetrievalAlignmentLoss(mode=mode)
    assert loss_fn(teacher.clone(), teacher, documents).item() == pytest.approx(0.0, abs=1e-6)
    # Cosine geometry: a rescaled copy of the teacher is the same query.
    assert loss_fn(7.0 * teacher, teacher, documents).item() == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize("mode", ["kl", "cosine", "infonce"])
def test_retrieval_gradients_reach_only_the_student(retrieval_batch, mode):
    student, teacher, documents = (tensor.clone().requires_grad_(True) for tensor in retrieval_batch)
    RetrievalAlignmentLoss(mode=mode)(student, teacher, documents).backward()
    assert student.grad is not None and student.grad.abs().sum() > 0
    assert teacher.grad is None
    assert documents.grad is None


def test_total_loss_gradients_reach_only_the_student(lm_batch, retrieval_batch, decode_batches):
    logits, labels = lm_batch
    student, teacher, documents = (tensor.clone().requires_grad_(True) for tensor in retrieval_batch)
    thought_logits, thought_labels, subquery_logits, subquery_labels = decode_batches
    logits = logits.clone().requires_grad_(True)
    loss, _ = LatentRAGLoss()(
        logits, labels, student, teacher, documents, thought_logits, thought_labels, subquery_logits, subquery_labels
    )
    loss.backward()
    assert logits.grad is not None and student.grad is not None
    assert teacher.grad is None and documents.grad is None


def test_retrieval_validation(retrieval_batch):
    student, teacher, documents = retrieval_batch
    loss_fn = RetrievalAlignmentLoss()
    with pytest.raises(ValueError, match="must have the same shape"):
        loss_fn(student, teacher[:2], documents)
    with pytest.raises(ValueError, match=r"latent_query_embeddings must have shape \(num_subqueries, dim\)"):
        loss_fn(student[0], teacher, documents)
    with pytest.raises(ValueError, match="document_embeddings has dim 5"):
        loss_fn(student, teacher, documents[:, :5])
    with pytest.raises(ValueError, match="needs document_embeddings"):
        loss_fn(student, teacher)
    with pytest.raises(ValueError, match="0 sub-queries"):
        loss_fn(student[:0], teacher[:0], documents)
    with pytest.raises(ValueError, match="unknown mode"):
        RetrievalAlignmentLoss(mode="mse")
    with pytest.raises(ValueError, match="temperature must be a positive"):
        RetrievalAlignmentLoss(temperature=0.0)
    with pytest.raises(ValueError, match="num_positives"):
        RetrievalAlignmentLoss(mode="infonce", num_positives=0)


def test_build_candidate_pool():
    doc_ids, indices = build_candidate_pool([["a", "b", "c"], ["c", "d"], [], ["b", "e", "a"]])
    assert doc_ids == ["a", "b", "c", "d", "e"]
    assert indices == [[0, 1, 2], [2, 3], [], [1, 4, 0]]
    for row, ids in zip(indices, [["a", "b", "c"], ["c", "d"], [], ["b", "e", "a"]]):
        assert [doc_ids[i] for i in row] == ids
    with pytest.raises(TypeError, match="list of ids"):
        build_candidate_pool(["abc"])


# ----------------------------------------------------------------------------------------------------- temperature


@pytest.fixture
def calibration_batch():
    generator = torch.Generator().manual_seed(3)
    teacher = torch.randn(16, 32, generator=generator)
    documents = torch.randn(160, 32, generator=generator)
    # Make each sub-query's 10 pseudo-relevant documents close to it, like top-10 retrieval results.
    for row in range(16):
        documents[row * 10 : row * 10 + 10] = teacher[row] + 1.5 * torch.randn(10, 32, generator=generator)
    return teacher, documents


def test_top_k_mass_matches_hand_computation(calibration_batch):
    teacher, documents = calibration_batch
    for beta in (0.01, 0.05, 0.3):
        assert top_k_mass(teacher, documents, beta) == pytest.approx(
            hand_top_k_mass(teacher, documents, beta), abs=TOL
        )
    lists = [list(range(row * 5, row * 5 + 40)) for row in range(16)]
    assert top_k_mass(teacher, documents, 0.05, lists) == pytest.approx(
        hand_top_k_mass(teacher, documents, 0.05, lists), abs=TOL
    )


def test_calibration_hits_target_mass(calibration_batch):
    teacher, documents = calibration_batch
    beta = calibrate_retrieval_temperature(teacher, documents)
    assert 1e-3 < beta < 1.0
    assert hand_top_k_mass(teacher, documents, beta) == pytest.approx(0.5, abs=0.02)
    # Per-sub-query pools (e.g. several batches concatenated), and another target.
    lists = [list(range(row * 5, row * 5 + 40)) for row in range(16)]
    beta_lists = calibrate_retrieval_temperature(teacher, documents, candidate_index_lists=lists, target_top3_mass=0.6)
    assert hand_top_k_mass(teacher, documents, beta_lists, lists) == pytest.approx(0.6, abs=0.02)


def test_calibration_falls_back_when_not_bracketed(calibration_batch, caplog):
    teacher, _ = calibration_batch
    identical = teacher[:1].repeat(20, 1)  # every candidate scores alike: mass 3/20 at every β
    with caplog.at_level(logging.WARNING, logger="hf_latent.latentrag.losses.temperature"):
        assert calibrate_retrieval_temperature(teacher, identical) == 0.03
    assert "not bracketed" in caplog.text
    with pytest.raises(ValueError, match="one candidate list per sub-query"):
        calibrate_retrieval_temperature(teacher, identical, candidate_index_lists=[[0, 1, 2, 3]])
    with pytest.raises(ValueError, match="need more than top_k=3"):
        calibrate_retrieval_temperature(teacher[:1], identical, candidate_index_lists=[[0, 1, 2]])
    with pytest.raises(ValueError, match="bounds"):
        calibrate_retrieval_temperature(teacher, identical, bounds=(1.0, 0.1))


# ---------------------------------------------------------------------------------------------------------- total


def test_total_is_weighted_sum_with_detached_components(lm_batch, retrieval_batch, decode_batches):
    logits, labels = lm_batch
    student, teacher, documents = retrieval_batch
    thought_logits, thought_labels, subquery_logits, subquery_labels = decode_batches
    loss_fn = LatentRAGLoss(retrieval_weight=0.5, decoding_weight=2.0, retrieval_temperature=0.05)
    loss, components = loss_fn(
        logits=logits,
        labels=labels,
        latent_query_embeddings=student,
        reference_query_embeddings=teacher,
        document_embeddings=documents,
        thought_logits=thought_logits,
        thought_labels=thought_labels,
        subquery_logits=subquery_logits,
        subquery_labels=subquery_labels,
    )
    generation = hand_token_ce(logits, labels)
    retrieval = hand_kl(student, teacher, documents, 0.05)
    decoding = hand_token_ce(thought_logits, thought_labels) + hand_token_ce(subquery_logits, subquery_labels)
    assert loss.item() == pytest.approx(generation + 0.5 * retrieval + 2.0 * decoding, rel=TOL, abs=TOL)
    assert components["generation"].item() == pytest.approx(generation, abs=TOL)
    assert components["retrieval_alignment"].item() == pytest.approx(retrieval, rel=TOL, abs=TOL)
    assert components["latent_decoding"].item() == pytest.approx(decoding, abs=TOL)
    assert all(not value.requires_grad for value in components.values())


def test_total_skips_terms_without_inputs(lm_batch, retrieval_batch):
    logits, labels = lm_batch
    student, teacher, documents = retrieval_batch
    loss_fn = LatentRAGLoss()
    loss, components = loss_fn(logits, labels)
    assert list(components) == ["generation"]
    assert loss.item() == pytest.approx(hand_token_ce(logits, labels), abs=TOL)
    _, components = loss_fn(logits, labels, student[:0], teacher[:0], documents)  # no retrieval step in the batch
    assert list(components) == ["generation"]
    with pytest.raises(ValueError, match="together"):
        loss_fn(logits, labels, latent_query_embeddings=student)
    with pytest.raises(ValueError, match="retrieval_weight must be a non-negative"):
        LatentRAGLoss(retrieval_weight=-1.0)
    with pytest.raises(ValueError, match="unknown retrieval_mode"):
        LatentRAGLoss(retrieval_mode="l2")


EXPECTED_VARIANTS = {
    "kl": ("kl", ("generation", "retrieval_alignment", "latent_decoding"), True),
    "cosine": ("cosine", ("generation", "retrieval_alignment", "latent_decoding"), True),
    "infonce": ("infonce", ("generation", "retrieval_alignment", "latent_decoding"), True),
    "no_pretrained_retriever": ("kl", ("generation", "retrieval_alignment", "latent_decoding"), False),
    "no_decoding": ("kl", ("generation", "retrieval_alignment"), True),
}


@pytest.mark.parametrize("name", sorted(EXPECTED_VARIANTS))
def test_variants_enable_expected_terms(name, lm_batch, retrieval_batch, decode_batches):
    mode, terms, pretrained = EXPECTED_VARIANTS[name]
    variant = LATENTRAG_LOSS_VARIANTS[name]
    assert variant.retrieval_mode == mode
    assert variant.use_pretrained_retriever is pretrained
    assert variant.enabled_terms == terms
    loss_fn = LatentRAGLoss.for_variant(name)
    assert loss_fn.retrieval_alignment_loss.mode == mode
    assert loss_fn.get_config_dict()["variant"] == name
    _, components = loss_fn(*lm_batch, *retrieval_batch, *decode_batches)
    assert tuple(components) == terms


def test_variant_registry_and_equivalences(lm_batch, retrieval_batch, decode_batches):
    assert set(LATENTRAG_LOSS_VARIANTS) == set(EXPECTED_VARIANTS)
    inputs = (*lm_batch, *retrieval_batch, *decode_batches)
    full = LatentRAGLoss.for_variant("kl")(*inputs).loss
    assert LatentRAGLoss.for_variant("no_pretrained_retriever")(*inputs).loss.item() == pytest.approx(full.item())
    assert LatentRAGLoss(decoding_weight=0.0)(*inputs).loss.item() == pytest.approx(
        LatentRAGLoss.for_variant("no_decoding")(*inputs).loss.item()
    )
    with pytest.raises(ValueError, match="Unknown LatentRAG variant"):
        LatentRAGLoss.for_variant("w/o everything")


def test_config_and_citation():
    loss_fn = LatentRAGLoss.for_variant("infonce", retrieval_temperature=0.05)
    assert loss_fn.get_config_dict() == {
        "variant": "infonce",
        "retrieval_weight": 1.0,
        "decoding_weight": 1.0,
        "retrieval_temperature": 0.05,
        "retrieval_mode": "infonce",
        "num_positives": 3,
        "ignore_index": -100,
    }
    assert RetrievalAlignmentLoss().get_config_dict() == {"temperature": 0.03, "mode": "kl"}
    assert GenerationLoss().get_config_dict() == {"ignore_index": -100}
    for module in (GenerationLoss(), RetrievalAlignmentLoss(), LatentDecodingLoss(), loss_fn):
        citation = module.citation
        assert "LatentRAG: Latent Reasoning and Retrieval for Efficient Agentic RAG" in citation
        assert LATENTRAG_ARXIV_ID in citation and "Zheng and Worring" in citation
        assert "note = {title as listed on arXiv 2605.06285}" in citation
