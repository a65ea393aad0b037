"""Shared math and input checks for the LaSER loss terms (specs/laser.md §4).

The base class and the scalar checks come from [`hf_latent.core.losses`] (shared with LatentRAG); `check_temperature`
and `check_weight` are re-exported here for the loss modules. Each loss module is a thin, documented wrapper around one
of the two functions here, so InfoNCE and the teacher-to-student KL are written once:

- [`info_nce`]: `(1/B) Σ_i CE(Q_i P^T / τ, y_i)` with `y_i = i·G` (terms 1 and 2 of §4).
- [`teacher_student_kl`]: `(1/N) Σ_n KL(softmax(sg(t_n)/τ) ‖ softmax(s_n/τ))` (terms 3 and 4 of §4), applied to
  pool scores by [`pool_distillation_kl`]; [`PoolLossBase`] holds the τ and G of the terms over the passage pool.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from ...core.losses import LossBase, check_temperature, check_tensor, check_weight


LASER_ARXIV_ID = "2603.01425"

LASER_CITATION = """@misc{jin2026laser,
    title = {LaSER: Internalizing Explicit Reasoning into Latent Space for Dense Retrieval},
    author = {Jin and Zhang and Li and Long and Xie and Zhu and Dou},
    year = {2026},
    eprint = {2603.01425},
    archivePrefix = {arXiv},
    primaryClass = {cs.IR},
    url = {https://arxiv.org/abs/2603.01425},
}"""


class LaserLossBase(LossBase):
    """Common surface of the LaSER loss modules: `get_config_dict()` (for the model card), `citation`, and a repr."""

    CITATION = LASER_CITATION


def check_group_size(group_size: int | None) -> int | None:
    """Return `group_size`, or raise `ValueError` unless it is `None` or an integer ≥ 1."""
    if group_size is not None and (isinstance(group_size, bool) or not isinstance(group_size, int) or group_size < 1):
        raise ValueError(f"group_size must be None or an integer >= 1, got {group_size!r}.")
    return group_size


class PoolLossBase(LaserLossBase):
    """A LaSER term over the in-batch passage pool: a temperature τ and an optional group size G (`None` = inferred)."""

    def __init__(self, temperature: float, group_size: int | None = None) -> None:
        super().__init__()
        self.temperature = check_temperature("temperature", temperature)
        self.group_size = check_group_size(group_size)

    def get_config_dict(self) -> dict[str, Any]:
        config: dict[str, Any] = {"temperature": self.temperature}
        if self.group_size is not None:
            config["group_size"] = self.group_size
        return config


def check_passage_pool(
    num_queries: int, passage_embeddings: Tensor, hidden_size: int, group_size: int | None, loss_name: str
) -> int:
    """Validate the passage pool `P` of shape `(batch * group_size, hidden)` and return the group size `G`.

    `P` is laid out `[pos_0, neg_0, ..., pos_1, neg_1, ...]`, `G` rows per query. With `group_size=None`, `G` is
    inferred as `P.shape[0] // num_queries` and the rows must divide evenly; otherwise `P` must have exactly
    `num_queries * group_size` rows.
    """
    check_tensor("passage_embeddings", passage_embeddings, 2, "(batch * group_size, hidden)", loss_name)
    if num_queries < 1:
        raise ValueError(f"{loss_name}: need at least one query, got a batch of {num_queries}.")
    num_passages, passage_hidden = passage_embeddings.shape
    if passage_hidden != hidden_size:
        raise ValueError(
            f"{loss_name}: passage_embeddings has hidden size {passage_hidden}, but the query-side vectors have "
            f"hidden size {hidden_size}."
        )
    if group_size is None:
        if num_passages == 0 or num_passages % num_queries != 0:
            raise ValueError(
                f"{loss_name}: passage_embeddings has {num_passages} rows, which is not a positive multiple of the "
                f"batch size {num_queries}; expected batch * group_size rows laid out [pos_0, neg_0, ..., pos_1, ...]."
            )
        return num_passages // num_queries
    if num_passages != num_queries * group_size:
        raise ValueError(
            f"{loss_name}: passage_embeddings has {num_passages} rows, expected batch * group_size = "
            f"{num_queries} * {group_size} = {num_queries * group_size}."
        )
    return group_size


def check_vectors(name: str, tensor: Tensor, loss_name: str) -> None:
    """Raise unless `tensor` is 2-D `(batch, hidden)`."""
    check_tensor(name, tensor, 2, "(batch, hidden)", loss_name)


def check_steps(name: str, tensor: Tensor, loss_name: str) -> None:
    """Raise unless `tensor` is 3-D `(batch, num_latent_steps, hidden)`."""
    check_tensor(name, tensor, 3, "(batch, num_latent_steps, hidden)", loss_name)


def check_same_shape(name_a: str, a: Tensor, name_b: str, b: Tensor, loss_name: str) -> None:
    """Raise `ValueError` when `a` and `b` differ in shape."""
    if a.shape != b.shape:
        raise ValueError(
            f"{loss_name}: {name_a} and {name_b} must have the same shape, got {tuple(a.shape)} and {tuple(b.shape)}."
        )


def upcast(tensor: Tensor) -> Tensor:
    """`tensor` in at least float32 precision (bf16/fp16 are upcast; float32 and float64 are kept)."""
    if tensor.is_floating_point() and torch.finfo(tensor.dtype).bits < 32:
        return tensor.float()
    return tensor


def similarity(queries: Tensor, passages: Tensor) -> Tensor:
    """Dot-product scores `queries @ passages.T`, shape `(num_queries, num_passages)`, in at least float32.

    The inputs are expected L2-normalised (so this is cosine similarity). The upcast of half-precision inputs keeps
    the 1/τ = 50 scaling of §4 precise under a bf16 backbone; it is differentiable, so gradients flow back in the
    input dtype.
    """
    queries, passages = upcast(queries), upcast(passages)
    return queries @ passages.to(queries.dtype).transpose(0, 1)


def info_nce(queries: Tensor, passages: Tensor, temperature: float, group_size: int) -> Tensor:
    """InfoNCE over the in-batch pool: `(1/B) Σ_i CE(queries_i passages^T / τ, i·G)` (specs/laser.md §4, Eq. 8).

    Args:
        queries (`Tensor` of shape `(batch, hidden)`): query vectors, expected L2-normalised.
        passages (`Tensor` of shape `(batch * group_size, hidden)`): passage pool `[pos_0, neg_0, ..., pos_1, ...]`.
        temperature (`float`): τ; the scores are divided by it.
        group_size (`int`): G, the number of passages per query; the positive of query `i` is row `i·G`.

    Returns:
        `Tensor`: scalar loss (float32, or float64 for float64 inputs).
    """
    scores = similarity(queries, passages) / temperature
    targets = torch.arange(queries.shape[0], device=scores.device) * group_size
    return F.cross_entropy(scores, targets, reduction="mean")


def teacher_passage_pool(
    passage_embeddings: Tensor, teacher_passage_embeddings: Tensor | None, loss_name: str
) -> Tensor:
    """The pool the teacher scores against: `teacher_passage_embeddings` (a frozen teacher's, same shape as P) or P."""
    if teacher_passage_embeddings is None:
        return passage_embeddings
    check_same_shape(
        "passage_embeddings", passage_embeddings, "teacher_passage_embeddings", teacher_passage_embeddings, loss_name
    )
    return teacher_passage_embeddings


def pool_distillation_kl(
    student: Tensor, teacher: Tensor, passages: Tensor, teacher_passages: Tensor, temperature: float
) -> Tensor:
    """[`teacher_student_kl`] of the scores `student @ passages.T` against `sg(teacher @ teacher_passages.T)`.

    Args:
        student, teacher (`Tensor` of shape `(rows, hidden)`): query-side vectors; the teacher side is detached
            before the matmul, so no graph is built for it.
        passages, teacher_passages (`Tensor` of shape `(batch * group_size, hidden)`): the pool of each side.
        temperature (`float`): τ of both softmaxes.
    """
    student_scores = similarity(student, passages)
    teacher_scores = similarity(teacher.detach(), teacher_passages.detach())
    return teacher_student_kl(student_scores, teacher_scores, temperature)


def teacher_student_kl(student_logits: Tensor, teacher_logits: Tensor, temperature: float) -> Tensor:
    """Row-mean forward KL from a detached teacher to the student: `(1/N) Σ_n KL(softmax(sg(t_n)/τ) ‖ softmax(s_n/τ))`.

    Equivalent to `kl_div(log_softmax(s/τ), softmax(sg(t)/τ), reduction="batchmean")` (specs/laser.md §4, terms 3
    and 4); the teacher is passed as log-probabilities (`log_target=True`) so that teacher probabilities that
    underflow to zero stay exact. No τ² factor is applied (the released code has none, unlike Hinton-style KD).

    Args:
        student_logits (`Tensor` of shape `(num_rows, num_candidates)`): student scores `s`, receive gradient.
        teacher_logits (`Tensor` of shape `(num_rows, num_candidates)`): teacher scores `t`, detached here.
        temperature (`float`): τ applied to both sides.

    Returns:
        `Tensor`: scalar loss (at least float32); 0 when the two score matrices are equal.
    """
    student_log_probs = F.log_softmax(upcast(student_logits) / temperature, dim=-1)
    teacher_log_probs = F.log_softmax(
        upcast(teacher_logits.detach()).to(student_log_probs.dtype) / temperature, dim=-1
    )
    return F.kl_div(student_log_probs, teacher_log_probs, reduction="batchmean", log_target=True)


__all__ = [
    "LASER_ARXIV_ID",
    "LASER_CITATION",
    "LaserLossBase",
    "PoolLossBase",
    "check_group_size",
    "check_passage_pool",
    "check_same_shape",
    "check_steps",
    "check_temperature",
    "check_tensor",
    "check_vectors",
    "check_weight",
    "info_nce",
    "pool_distillation_kl",
    "similarity",
    "teacher_passage_pool",
    "teacher_student_kl",
    "upcast",
]
