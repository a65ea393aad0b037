"""Process-level (trajectory) alignment, `L_kl^mid` (specs/laser.md §4, term 4)."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from ._utils import (
    PoolLossBase,
    check_passage_pool,
    check_same_shape,
    check_steps,
    pool_distillation_kl,
    teacher_passage_pool,
    upcast,
)


class TrajectoryAlignmentLoss(PoolLossBase):
    r"""Aligns each latent thinking step with a CoT segment boundary through their score distributions over the pool.

    H and T are reshaped to `(B·K, d)` and their rows L2-normalised (this loss does that itself), then
    `A^L = norm(H) P^T`, `A^E = norm(T) P^T` and
    `L_kl^mid = (1/(B·K)) Σ_{i,k} KL( softmax(sg(A^E_ik)/τ_mid) ‖ softmax(A^L_ik/τ_mid) )`:
    forward KL, teacher as target and detached. Gradient reaches H and (through A^L) P; T gets none.

    Args:
        temperature (`float`, *optional*, defaults to `0.05`):
            τ_mid, applied to both sides. Must be > 0. The paper gives no value; 0.05 is the released code's [C].
        group_size (`int`, *optional*):
            G, only used to validate the pool size (see [`LatentContrastiveLoss`]); `None` infers it.

    References:
        - LaSER, Eq. 12, arXiv 2603.01425; specs/laser.md §4 term 4 [P, C] and §3.3 (how T is built).

    Requirements:
        1. H: the last-layer hidden states of the K latent steps of each query, **un-normalised**; T: the K
           downsampled CoT segment-boundary states of the explicit view (spec §3.3), **un-normalised**, with
           target k paired with step k. Both from the same B queries.
        2. The latent-view passage pool P, L2-normalised by the caller.
        3. K ≥ 2 for the term to be meaningful: at K = 1 ("no_latent_view", "basic_contrastive") it is switched
           off (λ3 = 0), as alignment is undefined without latent steps (spec §7).

    Inputs:
        | name | shape | meaning |
        |---|---|---|
        | `latent_states` | `(batch, num_latent_steps, hidden)` | H, latent step states (student) |
        | `teacher_segment_states` | `(batch, num_latent_steps, hidden)` | T, segment-boundary states (teacher) |
        | `passage_embeddings` | `(batch * group_size, hidden)` | P, passage pool, scored by both sides |
        | `teacher_passage_embeddings` | `(batch * group_size, hidden)` | optional teacher-side pool (frozen teacher) |

    Relations:
        - Same KL math as [`OutputDistillationLoss`] (shared `teacher_student_kl`), per latent step instead of on
          the pooled query vector.
        - In [`LaserLoss`] its weight is `trajectory_kl_weight` (λ3 = 0.1); λ3 = 0 gives
          "no_process_alignment", and it is off in "no_latent_view", "basic_contrastive" and "no_explicit_view".

    Example:

        ```python
        >>> import torch
        >>> import torch.nn.functional as F
        >>> from hf_latent.laser.losses import TrajectoryAlignmentLoss
        >>> h, t = torch.randn(2, 3, 8), torch.randn(2, 3, 8)  # (batch, K, hidden), un-normalised
        >>> p = F.normalize(torch.randn(4, 8), dim=-1)
        >>> loss = TrajectoryAlignmentLoss(temperature=0.05)(
        ...     latent_states=h, teacher_segment_states=t, passage_embeddings=p
        ... )
        ```
    """

    def __init__(self, temperature: float = 0.05, group_size: int | None = None) -> None:
        super().__init__(temperature, group_size)

    def forward(
        self,
        latent_states: Tensor,
        teacher_segment_states: Tensor,
        passage_embeddings: Tensor,
        teacher_passage_embeddings: Tensor | None = None,
    ) -> Tensor:
        """Return the scalar loss; shapes as in the Inputs table of the class docstring."""
        name = type(self).__name__
        check_steps("latent_states", latent_states, name)
        check_steps("teacher_segment_states", teacher_segment_states, name)
        check_same_shape("latent_states", latent_states, "teacher_segment_states", teacher_segment_states, name)
        num_queries, num_steps, hidden_size = latent_states.shape
        if num_steps < 1:
            raise ValueError(
                f"{name}: latent_states needs at least one latent step, got shape {tuple(latent_states.shape)}."
            )
        check_passage_pool(num_queries, passage_embeddings, hidden_size, self.group_size, name)
        teacher_passages = teacher_passage_pool(passage_embeddings, teacher_passage_embeddings, name)
        # Rows (i, k) flattened i-major, so row i·K + k is step k of query i; normalised here (spec §4 term 4).
        student_states = F.normalize(upcast(latent_states.reshape(num_queries * num_steps, hidden_size)), dim=-1)
        teacher_states = F.normalize(
            upcast(teacher_segment_states.detach().reshape(num_queries * num_steps, hidden_size)), dim=-1
        )
        # A^L = norm(H) P^T against sg(A^E) = sg(norm(T) P^T).
        return pool_distillation_kl(
            student_states, teacher_states, passage_embeddings, teacher_passages, self.temperature
        )
