"""Output-level distillation, `L_kl^out` (specs/laser.md §4, term 3)."""

from __future__ import annotations

from torch import Tensor

from ._utils import (
    PoolLossBase,
    check_passage_pool,
    check_same_shape,
    check_vectors,
    pool_distillation_kl,
    teacher_passage_pool,
)


class OutputDistillationLoss(PoolLossBase):
    r"""KL from the teacher's in-batch score distribution to the student's, teacher detached.

    `L_kl^out = (1/B) Σ_i KL( softmax(sg(S^E_i)/τ_kd) ‖ softmax(S^L_i/τ_kd) )` with `S^L = Q P^T` and
    `S^E = Q* P^T`, over all B·G passages of the pool. This is forward KL with the teacher as the target, i.e.
    `kl_div(log_softmax(S^L/τ_kd), softmax(sg(S^E)/τ_kd), reduction="batchmean")`. Gradient reaches Q and, through
    S^L, P; Q* gets none (its scores are detached). No τ² factor (as in the released code).

    Args:
        temperature (`float`, *optional*, defaults to `0.02`):
            τ_kd, applied to both score matrices. Must be > 0.
        group_size (`int`, *optional*):
            G, only used to validate the pool size (see [`LatentContrastiveLoss`]); `None` infers it.

    References:
        - LaSER, Eqs. 9–10, arXiv 2603.01425; specs/laser.md §4 term 3 [P, C]. The paper writes a 1/N prefactor
          over documents; we follow the released code's per-query mean (spec §4).

    Requirements:
        1. Latent-view Q and explicit-view Q* for the same B queries, plus the latent-view passage pool P, all
           L2-normalised by the caller.
        2. Optionally, for the "w/o co-learning" ablation (spec §7, stage 2), `teacher_passage_embeddings`: a
           frozen teacher's own encodings of the same pool, so that `S^E = Q* P_teacher^T`.

    Inputs:
        | name | shape | meaning |
        |---|---|---|
        | `query_embeddings` | `(batch, hidden)` | Q, latent-view query vectors (student, receive gradient) |
        | `teacher_query_embeddings` | `(batch, hidden)` | Q*, explicit-view query vectors (teacher, detached) |
        | `passage_embeddings` | `(batch * group_size, hidden)` | P, passage pool, scored by both sides |
        | `teacher_passage_embeddings` | `(batch * group_size, hidden)` | optional teacher-side pool (frozen teacher) |

    Relations:
        - The student scores are those of [`LatentContrastiveLoss`], the teacher scores those of
          [`ExplicitContrastiveLoss`]; the KL math is shared with [`TrajectoryAlignmentLoss`].
        - In [`LaserLoss`] its weight is `output_kl_weight` (λ2 = 10); λ2 = 0 gives "no_output_distillation",
          and it is off in "basic_contrastive" and "no_explicit_view" (spec §7).

    Example:

        ```python
        >>> import torch
        >>> import torch.nn.functional as F
        >>> from hf_latent.laser.losses import OutputDistillationLoss
        >>> q, q_star = F.normalize(torch.randn(2, 8), dim=-1), F.normalize(torch.randn(2, 8), dim=-1)
        >>> p = F.normalize(torch.randn(4, 8), dim=-1)
        >>> loss = OutputDistillationLoss(temperature=0.02)(
        ...     query_embeddings=q, teacher_query_embeddings=q_star, passage_embeddings=p
        ... )
        ```
    """

    def __init__(self, temperature: float = 0.02, group_size: int | None = None) -> None:
        super().__init__(temperature, group_size)

    def forward(
        self,
        query_embeddings: Tensor,
        teacher_query_embeddings: Tensor,
        passage_embeddings: Tensor,
        teacher_passage_embeddings: Tensor | None = None,
    ) -> Tensor:
        """Return the scalar loss; shapes as in the Inputs table of the class docstring."""
        name = type(self).__name__
        check_vectors("query_embeddings", query_embeddings, name)
        check_vectors("teacher_query_embeddings", teacher_query_embeddings, name)
        check_same_shape(
            "query_embeddings", query_embeddings, "teacher_query_embeddings", teacher_query_embeddings, name
        )
        num_queries, hidden_size = query_embeddings.shape
        check_passage_pool(num_queries, passage_embeddings, hidden_size, self.group_size, name)
        teacher_passages = teacher_passage_pool(passage_embeddings, teacher_passage_embeddings, name)
        # S^L = Q P^T against sg(S^E) = sg(Q* P^T): no graph is built for the teacher side.
        return pool_distillation_kl(
            query_embeddings, teacher_query_embeddings, passage_embeddings, teacher_passages, self.temperature
        )
