"""Explicit-view InfoNCE, `L_cl^E` (specs/laser.md §4, term 2)."""

from __future__ import annotations

from typing import Any

from torch import Tensor

from ._utils import LaserLossBase, check_group_size, check_passage_pool, check_temperature, check_vectors, info_nce


class ExplicitContrastiveLoss(LaserLossBase):
    r"""InfoNCE of the explicit-view (teacher, query + CoT) vectors against the in-batch passage pool.

    `L_cl^E = (1/B) Σ_i CE(S^E_i / τ, y_i)` with `S^E = Q* P^T` and `y_i = i·G`. This is the **only** LaSER term
    that sends gradient into the teacher path (Q*); it also trains the passages P, as every term does.

    Args:
        temperature (`float`, *optional*, defaults to `0.02`):
            τ; the cosine scores are divided by it. Must be > 0.
        group_size (`int`, *optional*):
            G, the number of passages per query. When `None`, it is inferred as `passage_embeddings.shape[0] //
            batch`; when set, the pool must have exactly `batch * G` rows.

    References:
        - LaSER, §3 "explicit view" and Eq. 13 (the λ1 term), arXiv 2603.01425; specs/laser.md §4 term 2 [P, C].

    Requirements:
        1. Explicit-view query vectors `v* = normalize(h_EOS)` of `[query; CoT; EOS]` (spec §3.1) and the same
           latent-view passage pool as [`LatentContrastiveLoss`], both L2-normalised by the caller.
        2. The pool laid out `[pos_0, neg_0, ..., pos_1, neg_1, ...]`, G rows per query (positive first).

    Inputs:
        | name | shape | meaning |
        |---|---|---|
        | `teacher_query_embeddings` | `(batch, hidden)` | Q*, explicit-view query vectors (teacher) |
        | `passage_embeddings` | `(batch * group_size, hidden)` | P, passage pool; the positive of query i is row i·G |

    Relations:
        - Same math as [`LatentContrastiveLoss`] (shared `info_nce`), on Q* instead of Q.
        - In [`LaserLoss`] its weight is `explicit_contrastive_weight` (λ1 = 1). It is off (λ1 = 0) in
          "basic_contrastive", "no_explicit_view" and stage 2 of "w/o co-learning" (the teacher is frozen there),
          and it is the only term of stage 1 of "w/o co-learning" (spec §7).

    Example:

        ```python
        >>> import torch
        >>> import torch.nn.functional as F
        >>> from hf_latent.laser.losses import ExplicitContrastiveLoss
        >>> q_star = F.normalize(torch.randn(2, 8), dim=-1)
        >>> p = F.normalize(torch.randn(4, 8), dim=-1)
        >>> loss = ExplicitContrastiveLoss()(teacher_query_embeddings=q_star, passage_embeddings=p)
        ```
    """

    def __init__(self, temperature: float = 0.02, group_size: int | None = None) -> None:
        super().__init__()
        self.temperature = check_temperature("temperature", temperature)
        self.group_size = check_group_size(group_size)

    def forward(self, teacher_query_embeddings: Tensor, passage_embeddings: Tensor) -> Tensor:
        """Return the scalar loss for Q* `(batch, hidden)` and P `(batch * group_size, hidden)`."""
        name = type(self).__name__
        check_vectors("teacher_query_embeddings", teacher_query_embeddings, name)
        group_size = check_passage_pool(
            teacher_query_embeddings.shape[0],
            passage_embeddings,
            teacher_query_embeddings.shape[1],
            self.group_size,
            name,
        )
        return info_nce(teacher_query_embeddings, passage_embeddings, self.temperature, group_size)

    def get_config_dict(self) -> dict[str, Any]:
        config: dict[str, Any] = {"temperature": self.temperature}
        if self.group_size is not None:
            config["group_size"] = self.group_size
        return config
