"""Tests for hf_latent/laser/losses: each term against a hand computation, gradient flow, variants, validation."""

from __future__ import annotations

import math
from unittest import mock

import pytest
import torch
import torch.nn.functional as F

from hf_latent.laser.losses import (
    LOSS_VARIANTS,
    ExplicitContrastiveLoss,
    LaserLoss,
    LaserLossOutput,
    LaserLossVariant,
    LatentContrastiveLoss,
    OutputDistillationLoss,
    TrajectoryAlignmentLoss,
)


B, G, K, D = 2, 2, 3, 8
TAU, TAU_KD, TAU_MID = 0.02, 0.02, 0.05
ALL_TERMS = {"latent_contrastive", "explicit_contrastive", "output_kl", "trajectory_kl"}


@pytest.fixture
def inputs() -> dict[str, torch.Tensor]:
    """Seeded float64 leaf tensors (B=2, G=2, K=3, d=8); Q, Q*, P normalised, H and T not."""
    generator = torch.Generator().manual_seed(0)

    def leaf(*shape: int, normalize: bool = False) -> torch.Tensor:
        tensor = torch.randn(*shape, generator=generator, dtype=torch.float64)
        if normalize:
            tensor = F.normalize(tensor, dim=-1)
        return tensor.requires_grad_()

    return {
        "query_embeddings": leaf(B, D, normalize=True),
        "teacher_query_embeddings": leaf(B, D, normalize=True),
        "passage_embeddings": leaf(B * G, D, normalize=True),
        "latent_states": leaf(B, K, D),
        "teacher_segment_states": leaf(B, K, D),
    }


# ---- hand computations: plain Python floats, explicit loops, no torch.nn.functional ----


def _rows(tensor: torch.Tensor) -> list[list[float]]:
    return tensor.detach().double().tolist()


def _dot(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b))


def _normalize(a: list[float]) -> list[float]:
    norm = math.sqrt(sum(x * x for x in a))
    return [x / norm for x in a]


def _log_softmax(logits: list[float]) -> list[float]:
    top = max(logits)
    log_sum = top + math.log(sum(math.exp(z - top) for z in logits))
    return [z - log_sum for z in logits]


def hand_info_nce(queries: torch.Tensor, passages: torch.Tensor, tau: float, group_size: int) -> float:
    q, p = _rows(queries), _rows(passages)
    total = 0.0
    for i, q_i in enumerate(q):
        logits = [_dot(q_i, p_j) / tau for p_j in p]
        total += -_log_softmax(logits)[i * group_size]  # CE(z, y) = -log softmax(z)_y with y_i = i·G
    return total / len(q)


def hand_kl(student_rows: list[list[float]], teacher_rows: list[list[float]], tau: float) -> float:
    """(1/N) Σ_n KL(softmax(t_n/τ) ‖ softmax(s_n/τ)) = (1/N) Σ_n Σ_j p_j (log p_j - log q_j)."""
    total = 0.0
    for s_n, t_n in zip(student_rows, teacher_rows):
        log_q = _log_softmax([s / tau for s in s_n])
        log_p = _log_softmax([t / tau for t in t_n])
        total += sum(math.exp(lp) * (lp - lq) for lp, lq in zip(log_p, log_q))
    return total / len(student_rows)


def hand_output_kl(q: torch.Tensor, q_star: torch.Tensor, p: torch.Tensor, tau: float) -> float:
    passages = _rows(p)
    student = [[_dot(q_i, p_j) for p_j in passages] for q_i in _rows(q)]
    teacher = [[_dot(q_i, p_j) for p_j in passages] for q_i in _rows(q_star)]
    return hand_kl(student, teacher, tau)


def hand_trajectory_kl(h: torch.Tensor, t: torch.Tensor, p: torch.Tensor, tau: float) -> float:
    passages = _rows(p)
    student, teacher = [], []
    for h_i, t_i in zip(h.detach().double().tolist(), t.detach().double().tolist()):
        for h_ik, t_ik in zip(h_i, t_i):
            student.append([_dot(_normalize(h_ik), p_j) for p_j in passages])
            teacher.append([_dot(_normalize(t_ik), p_j) for p_j in passages])
    assert len(student) == B * K
    return hand_kl(student, teacher, tau)


def _grads(inputs: dict[str, torch.Tensor], loss: torch.Tensor) -> dict[str, torch.Tensor | None]:
    """Gradient of `loss` w.r.t. each input (`None` when it does not depend on it), leaving .grad untouched."""
    names = list(inputs)
    grads = torch.autograd.grad(loss, [inputs[n] for n in names], allow_unused=True)
    return dict(zip(names, grads))


def _is_nonzero(grad: torch.Tensor | None) -> bool:
    return grad is not None and bool(grad.abs().sum() > 0)


# ---- each term == hand computation ----


def test_latent_contrastive_matches_hand_computation(inputs):
    loss = LatentContrastiveLoss(temperature=TAU)(inputs["query_embeddings"], inputs["passage_embeddings"])
    expected = hand_info_nce(inputs["query_embeddings"], inputs["passage_embeddings"], TAU, G)
    assert loss.ndim == 0
    assert loss.item() == pytest.approx(expected, abs=1e-5, rel=1e-5)


def test_explicit_contrastive_matches_hand_computation(inputs):
    loss = ExplicitContrastiveLoss(temperature=TAU, group_size=G)(
        teacher_query_embeddings=inputs["teacher_query_embeddings"], passage_embeddings=inputs["passage_embeddings"]
    )
    expected = hand_info_nce(inputs["teacher_query_embeddings"], inputs["passage_embeddings"], TAU, G)
    assert loss.item() == pytest.approx(expected, abs=1e-5, rel=1e-5)


def test_output_distillation_matches_hand_computation(inputs):
    q, q_star, p = inputs["query_embeddings"], inputs["teacher_query_embeddings"], inputs["passage_embeddings"]
    loss = OutputDistillationLoss(temperature=TAU_KD)(q, q_star, p)
    assert loss.item() == pytest.approx(hand_output_kl(q, q_star, p, TAU_KD), abs=1e-5, rel=1e-5)
    # Direction: KL(teacher ‖ student), not the reverse (the two differ on these inputs).
    reverse = hand_output_kl(q_star, q, p, TAU_KD)
    assert abs(reverse - loss.item()) > 1e-3


def test_trajectory_alignment_matches_hand_computation(inputs):
    h, t, p = inputs["latent_states"], inputs["teacher_segment_states"], inputs["passage_embeddings"]
    loss = TrajectoryAlignmentLoss(temperature=TAU_MID)(h, t, p)
    assert loss.item() == pytest.approx(hand_trajectory_kl(h, t, p, TAU_MID), abs=1e-5, rel=1e-5)
    assert abs(hand_trajectory_kl(t, h, p, TAU_MID) - loss.item()) > 1e-3


def test_float32_inputs_match_hand_computation(inputs):
    q, p = inputs["query_embeddings"].float(), inputs["passage_embeddings"].float()
    loss = LatentContrastiveLoss()(q, p)
    assert loss.dtype == torch.float32
    assert loss.item() == pytest.approx(hand_info_nce(q, p, TAU, G), abs=1e-5, rel=1e-5)


def test_bfloat16_inputs_are_scored_in_float32(inputs):
    q = inputs["query_embeddings"].detach().bfloat16().requires_grad_()
    p = inputs["passage_embeddings"].detach().bfloat16()
    loss = LatentContrastiveLoss()(q, p)
    assert loss.dtype == torch.float32
    loss.backward()
    assert q.grad is not None and q.grad.dtype == torch.bfloat16


def test_laser_loss_total_is_weighted_sum_of_hand_computations(inputs):
    output = LaserLoss()(**inputs)
    assert isinstance(output, LaserLossOutput)
    loss, components = output  # unpacks as a tuple
    q, q_star, p = inputs["query_embeddings"], inputs["teacher_query_embeddings"], inputs["passage_embeddings"]
    expected = {
        "latent_contrastive": hand_info_nce(q, p, TAU, G),
        "explicit_contrastive": hand_info_nce(q_star, p, TAU, G),
        "output_kl": hand_output_kl(q, q_star, p, TAU_KD),
        "trajectory_kl": hand_trajectory_kl(inputs["latent_states"], inputs["teacher_segment_states"], p, TAU_MID),
    }
    assert set(components) == ALL_TERMS
    for name, value in expected.items():
        assert components[name].item() == pytest.approx(value, abs=1e-5, rel=1e-5), name
        assert not components[name].requires_grad
    total = (
        expected["latent_contrastive"]
        + 1.0 * expected["explicit_contrastive"]
        + 10.0 * expected["output_kl"]
        + 0.1 * expected["trajectory_kl"]
    )
    assert loss.item() == pytest.approx(total, abs=1e-5, rel=1e-5)
    assert loss.requires_grad


# ---- KL = 0 when teacher == student ----


def test_output_kl_is_zero_when_teacher_equals_student(inputs):
    q, p = inputs["query_embeddings"], inputs["passage_embeddings"]
    loss = OutputDistillationLoss()(q, q.detach().clone(), p)
    assert loss.item() == pytest.approx(0.0, abs=1e-10)
    grad_q, grad_p = torch.autograd.grad(loss, [q, p])
    assert grad_q.abs().max() < 1e-10 and grad_p.abs().max() < 1e-10


def test_trajectory_kl_is_zero_when_teacher_equals_student(inputs):
    h, p = inputs["latent_states"], inputs["passage_embeddings"]
    # T = 3·H: the rows are normalised, so the scale does not matter.
    loss = TrajectoryAlignmentLoss()(h, 3.0 * h.detach(), p)
    assert loss.item() == pytest.approx(0.0, abs=1e-10)


# ---- gradient flow (spec §4): which tensors each term trains ----


def test_contrastive_terms_gradient_flow(inputs):
    latent = _grads(inputs, LatentContrastiveLoss()(inputs["query_embeddings"], inputs["passage_embeddings"]))
    assert _is_nonzero(latent["query_embeddings"]) and _is_nonzero(latent["passage_embeddings"])
    explicit = _grads(
        inputs, ExplicitContrastiveLoss()(inputs["teacher_query_embeddings"], inputs["passage_embeddings"])
    )
    assert _is_nonzero(explicit["teacher_query_embeddings"]) and _is_nonzero(explicit["passage_embeddings"])
    assert explicit["query_embeddings"] is None


def test_output_kl_detaches_teacher(inputs):
    loss = OutputDistillationLoss()(
        inputs["query_embeddings"], inputs["teacher_query_embeddings"], inputs["passage_embeddings"]
    )
    grads = _grads(inputs, loss)
    assert _is_nonzero(grads["query_embeddings"])
    assert _is_nonzero(grads["passage_embeddings"])  # through S^L
    assert grads["teacher_query_embeddings"] is None  # sg(S^E)


def test_output_kl_passage_gradient_comes_from_student_scores_only(inputs):
    q, q_star, p = inputs["query_embeddings"], inputs["teacher_query_embeddings"], inputs["passage_embeddings"]
    (grad_p,) = torch.autograd.grad(OutputDistillationLoss()(q, q_star, p), [p])
    # Same loss with the teacher scores built from a detached copy of P: identical P-gradient.
    (grad_p_ref,) = torch.autograd.grad(OutputDistillationLoss()(q, q_star, p, p.detach().clone()), [p])
    torch.testing.assert_close(grad_p, grad_p_ref)


def test_trajectory_kl_detaches_teacher(inputs):
    loss = TrajectoryAlignmentLoss()(
        inputs["latent_states"], inputs["teacher_segment_states"], inputs["passage_embeddings"]
    )
    grads = _grads(inputs, loss)
    assert _is_nonzero(grads["latent_states"])
    assert _is_nonzero(grads["passage_embeddings"])  # through A^L
    assert grads["teacher_segment_states"] is None


def test_laser_loss_gradient_flow_matches_spec(inputs):
    """Q, H ← latent InfoNCE + output KL + trajectory KL; P ← all four; Q* ← explicit InfoNCE only; T ← none."""
    grads = _grads(inputs, LaserLoss()(**inputs).loss)
    assert grads["teacher_segment_states"] is None
    q, q_star, p = inputs["query_embeddings"], inputs["teacher_query_embeddings"], inputs["passage_embeddings"]
    h, t = inputs["latent_states"], inputs["teacher_segment_states"]
    # Q* receives exactly λ1 × the explicit-InfoNCE gradient.
    (q_star_grad_explicit,) = torch.autograd.grad(ExplicitContrastiveLoss()(q_star, p), [q_star])
    torch.testing.assert_close(grads["teacher_query_embeddings"], q_star_grad_explicit)
    # Q receives exactly the latent InfoNCE + λ2 × output-KL gradient.
    (q_grad_ref,) = torch.autograd.grad(
        LatentContrastiveLoss()(q, p) + 10.0 * OutputDistillationLoss()(q, q_star, p), [q]
    )
    torch.testing.assert_close(grads["query_embeddings"], q_grad_ref)
    # H receives exactly λ3 × the trajectory gradient.
    (h_grad_ref,) = torch.autograd.grad(0.1 * TrajectoryAlignmentLoss()(h, t, p), [h])
    torch.testing.assert_close(grads["latent_states"], h_grad_ref)
    # P receives the sum over all four terms.
    (p_grad_ref,) = torch.autograd.grad(
        LatentContrastiveLoss()(q, p)
        + ExplicitContrastiveLoss()(q_star, p)
        + 10.0 * OutputDistillationLoss()(q, q_star, p)
        + 0.1 * TrajectoryAlignmentLoss()(h, t, p),
        [p],
    )
    torch.testing.assert_close(grads["passage_embeddings"], p_grad_ref)


# ---- variants (spec §7) ----

EXPECTED_VARIANTS = {
    # name: (weights (L^L, λ1, λ2, λ3), num_latent_steps, terms computed with every input given)
    "laser": ((1.0, 1.0, 10.0, 0.1), None, ALL_TERMS),
    "basic_contrastive": ((1.0, 0.0, 0.0, 0.0), 1, {"latent_contrastive"}),
    "no_explicit_view": ((1.0, 0.0, 0.0, 0.0), None, {"latent_contrastive"}),
    "no_latent_view": ((1.0, 1.0, 10.0, 0.0), 1, {"latent_contrastive", "explicit_contrastive", "output_kl"}),
    "no_output_distillation": (
        (1.0, 1.0, 0.0, 0.1),
        None,
        {"latent_contrastive", "explicit_contrastive", "trajectory_kl"},
    ),
    "no_process_alignment": ((1.0, 1.0, 10.0, 0.0), None, {"latent_contrastive", "explicit_contrastive", "output_kl"}),
    "no_co_learning_stage1": ((0.0, 1.0, 0.0, 0.0), None, {"explicit_contrastive"}),
    "no_co_learning_stage2": ((1.0, 0.0, 10.0, 0.1), None, {"latent_contrastive", "output_kl", "trajectory_kl"}),
}


def test_variant_table_is_complete():
    assert set(LOSS_VARIANTS) == set(EXPECTED_VARIANTS)
    for name, variant in LOSS_VARIANTS.items():
        assert isinstance(variant, LaserLossVariant) and variant.name == name and variant.description


@pytest.mark.parametrize("name", sorted(EXPECTED_VARIANTS))
def test_variant_enables_exactly_the_expected_terms(inputs, name):
    weights, num_latent_steps, expected_terms = EXPECTED_VARIANTS[name]
    variant = LOSS_VARIANTS[name]
    actual_weights = (
        variant.latent_contrastive_weight,
        variant.explicit_contrastive_weight,
        variant.output_kl_weight,
        variant.trajectory_kl_weight,
    )
    assert actual_weights == weights
    assert variant.num_latent_steps == num_latent_steps
    assert variant.single_pass == (num_latent_steps == 1)
    assert variant.needs_explicit_view == bool(expected_terms - {"latent_contrastive"})
    assert variant.needs_segment_states == ("trajectory_kl" in expected_terms)

    loss_fn = LaserLoss.for_variant(name)
    assert loss_fn.variant == name and set(loss_fn.active_terms) == expected_terms
    extra = {"teacher_passage_embeddings": inputs["passage_embeddings"].detach()} if variant.frozen_teacher else {}
    # Disabled terms are never computed: their forward would raise.
    disabled = ALL_TERMS - expected_terms
    for term in disabled:
        getattr(loss_fn, term).forward = mock.Mock(side_effect=AssertionError(f"{term} computed"))
    loss, components = loss_fn(**inputs, **extra)
    assert set(components) == expected_terms
    expected_total = sum(
        weight * components[term].item()
        for term, weight in zip(["latent_contrastive", "explicit_contrastive", "output_kl", "trajectory_kl"], weights)
        if term in expected_terms
    )
    assert loss.item() == pytest.approx(expected_total, rel=1e-10)


def test_no_explicit_view_needs_no_teacher_inputs(inputs):
    loss, components = LaserLoss.for_variant("no_explicit_view")(
        query_embeddings=inputs["query_embeddings"], passage_embeddings=inputs["passage_embeddings"]
    )
    assert set(components) == {"latent_contrastive"}
    assert loss.item() == pytest.approx(components["latent_contrastive"].item())


def test_no_latent_view_runs_at_k_equals_1(inputs):
    loss_fn = LaserLoss.for_variant("no_latent_view")
    assert LOSS_VARIANTS["no_latent_view"].num_latent_steps == 1
    _, components = loss_fn(
        inputs["query_embeddings"], inputs["passage_embeddings"], inputs["teacher_query_embeddings"]
    )
    assert set(components) == {"latent_contrastive", "explicit_contrastive", "output_kl"}


def test_frozen_teacher_scores_its_own_passages(inputs):
    q, q_star, p = inputs["query_embeddings"], inputs["teacher_query_embeddings"], inputs["passage_embeddings"]
    h, t = inputs["latent_states"], inputs["teacher_segment_states"]
    teacher_p = F.normalize(
        torch.randn(B * G, D, dtype=torch.float64, generator=torch.Generator().manual_seed(1)), dim=-1
    )
    teacher_p.requires_grad_()
    loss_fn = LaserLoss.for_variant("no_co_learning_stage2")
    with pytest.raises(ValueError, match="teacher_passage_embeddings"):
        loss_fn(q, p, q_star, h, t)
    loss, components = loss_fn(q, p, q_star, h, t, teacher_passage_embeddings=teacher_p)
    student = [[_dot(q_i, p_j) for p_j in _rows(p)] for q_i in _rows(q)]
    teacher = [[_dot(q_i, p_j) for p_j in _rows(teacher_p)] for q_i in _rows(q_star)]
    assert components["output_kl"].item() == pytest.approx(hand_kl(student, teacher, TAU_KD), abs=1e-5, rel=1e-5)
    grads = torch.autograd.grad(loss, [q_star, t, teacher_p, q, h], allow_unused=True)
    assert grads[0] is None and grads[1] is None and grads[2] is None  # the frozen teacher gets nothing
    assert _is_nonzero(grads[3]) and _is_nonzero(grads[4])


def test_frozen_teacher_rejects_explicit_contrastive():
    with pytest.raises(ValueError, match="frozen_teacher"):
        LaserLoss(frozen_teacher=True)


def test_teacher_passages_only_with_frozen_teacher(inputs):
    with pytest.raises(ValueError, match="frozen_teacher"):
        LaserLoss()(**inputs, teacher_passage_embeddings=inputs["passage_embeddings"])


def test_unknown_variant():
    with pytest.raises(ValueError, match="Unknown LaSER variant"):
        LaserLoss.for_variant("nope")


def test_for_variant_forwards_kwargs():
    loss_fn = LaserLoss.for_variant("no_process_alignment", temperature=0.05, group_size=2)
    config = loss_fn.get_config_dict()
    assert config["variant"] == "no_process_alignment"
    assert config["temperature"] == 0.05 and config["group_size"] == 2 and config["trajectory_kl_weight"] == 0.0


# ---- skipping ----


def test_terms_with_missing_inputs_are_skipped(inputs):
    loss, components = LaserLoss()(inputs["query_embeddings"], inputs["passage_embeddings"])
    assert set(components) == {"latent_contrastive"}
    loss, components = LaserLoss()(
        inputs["query_embeddings"], inputs["passage_embeddings"], inputs["teacher_query_embeddings"]
    )
    assert set(components) == {"latent_contrastive", "explicit_contrastive", "output_kl"}


def test_no_computable_term_raises(inputs):
    with pytest.raises(ValueError, match="no term could be computed"):
        LaserLoss.for_variant("no_co_learning_stage1")(inputs["query_embeddings"], inputs["passage_embeddings"])


def test_zero_weight_terms_are_not_computed(inputs):
    loss_fn = LaserLoss(output_kl_weight=0.0)
    loss_fn.output_kl.forward = mock.Mock(side_effect=AssertionError("computed"))
    _, components = loss_fn(**inputs)
    assert "output_kl" not in components


# ---- validation ----


@pytest.mark.parametrize(
    "cls", [LatentContrastiveLoss, ExplicitContrastiveLoss, OutputDistillationLoss, TrajectoryAlignmentLoss]
)
@pytest.mark.parametrize("temperature", [0.0, -0.1, float("inf"), float("nan")])
def test_temperature_must_be_positive(cls, temperature):
    with pytest.raises(ValueError, match="temperature"):
        cls(temperature=temperature)


@pytest.mark.parametrize("kwarg", ["temperature", "kd_temperature", "trajectory_temperature"])
def test_laser_loss_temperatures_must_be_positive(kwarg):
    with pytest.raises(ValueError, match=kwarg):
        LaserLoss(**{kwarg: 0.0})


def test_weights_must_be_non_negative_and_not_all_zero():
    with pytest.raises(ValueError, match="output_kl_weight"):
        LaserLoss(output_kl_weight=-1.0)
    with pytest.raises(ValueError, match="at least one"):
        LaserLoss(
            latent_contrastive_weight=0, explicit_contrastive_weight=0, output_kl_weight=0, trajectory_kl_weight=0
        )


@pytest.mark.parametrize("group_size", [0, -1, 1.5, True])
def test_group_size_must_be_positive_int(group_size):
    with pytest.raises(ValueError, match="group_size"):
        LatentContrastiveLoss(group_size=group_size)


def test_passage_pool_not_divisible_by_batch(inputs):
    p = inputs["passage_embeddings"][:3]
    with pytest.raises(ValueError, match="not a positive multiple"):
        LatentContrastiveLoss()(inputs["query_embeddings"], p)
    with pytest.raises(ValueError, match="not a positive multiple"):
        TrajectoryAlignmentLoss()(inputs["latent_states"], inputs["teacher_segment_states"], p)


def test_passage_pool_must_match_group_size(inputs):
    with pytest.raises(ValueError, match=r"batch \* group_size = 2 \* 3 = 6"):
        ExplicitContrastiveLoss(group_size=3)(inputs["teacher_query_embeddings"], inputs["passage_embeddings"])


def test_hidden_size_mismatch(inputs):
    with pytest.raises(ValueError, match="hidden size"):
        LatentContrastiveLoss()(inputs["query_embeddings"], inputs["passage_embeddings"][:, :4])


def test_wrong_ranks(inputs):
    with pytest.raises(ValueError, match=r"query_embeddings must have shape \(batch, hidden\)"):
        LatentContrastiveLoss()(inputs["latent_states"], inputs["passage_embeddings"])
    with pytest.raises(ValueError, match=r"latent_states must have shape \(batch, num_latent_steps, hidden\)"):
        TrajectoryAlignmentLoss()(
            inputs["query_embeddings"], inputs["teacher_segment_states"], inputs["passage_embeddings"]
        )


def test_query_and_teacher_shapes_must_match(inputs):
    with pytest.raises(ValueError, match="same shape"):
        OutputDistillationLoss()(
            inputs["query_embeddings"], inputs["teacher_query_embeddings"][:1], inputs["passage_embeddings"]
        )


def test_latent_and_segment_states_must_match(inputs):
    with pytest.raises(ValueError, match="same shape"):
        TrajectoryAlignmentLoss()(
            inputs["latent_states"], inputs["teacher_segment_states"][:, :2], inputs["passage_embeddings"]
        )


def test_teacher_passages_must_match_passages(inputs):
    with pytest.raises(ValueError, match="same shape"):
        OutputDistillationLoss()(
            inputs["query_embeddings"],
            inputs["teacher_query_embeddings"],
            inputs["passage_embeddings"],
            inputs["passage_embeddings"][:2],
        )


# ---- model-card surface ----


def test_config_dicts_and_citation():
    assert LatentContrastiveLoss().get_config_dict() == {"temperature": 0.02}
    assert OutputDistillationLoss(group_size=2).get_config_dict() == {"temperature": 0.02, "group_size": 2}
    assert TrajectoryAlignmentLoss().get_config_dict() == {"temperature": 0.05}
    assert LaserLoss().get_config_dict() == {
        "temperature": 0.02,
        "kd_temperature": 0.02,
        "trajectory_temperature": 0.05,
        "latent_contrastive_weight": 1.0,
        "explicit_contrastive_weight": 1.0,
        "output_kl_weight": 10.0,
        "trajectory_kl_weight": 0.1,
    }
    for cls in (LatentContrastiveLoss, ExplicitContrastiveLoss, OutputDistillationLoss, TrajectoryAlignmentLoss):
        citation = cls().citation
        assert "2603.01425" in citation and "LaSER: Internalizing Explicit Reasoning" in citation
    assert LaserLoss().citation == LatentContrastiveLoss().citation
    assert "temperature=0.05" in repr(TrajectoryAlignmentLoss())
