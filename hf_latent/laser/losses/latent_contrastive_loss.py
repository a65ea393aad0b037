"""Latent-view InfoNCE, `L_cl^L` (specs/laser.md §4, term 1)."""

from __future__ import annotations

from typing import Any

from torch import Tensor

from ._utils import LaserLossBase, check_group_size, check_passage_pool, check_temperature, check_vectors, info_nce


class LatentContrastiveLoss(LaserLossBase):
    r"""InfoNCE of the latent-view (student) query vectors against the in-batch passage pool.

    `L_cl^L = (1/B) Σ_i CE(S^L_i / τ, y_i)` with `S^L = Q P^T` and `y_i = i·G`: each query's own positive is the
    target; its own hard negatives and every other query's passages are negatives.

    Args:
        temperature (`float`, *optional*, defaults to `0.02`):
            τ; the cosine scores are divided by it. Must be > 0.
        group_size (`int`, *optional*):
            G, the number of passages per query (`train_group_size`, 2 in the paper). When `None`, it is inferred
            as `passage_embeddings.shape[0] // batch`; when set, the pool must have exactly `batch * G` rows.

    References:
        - LaSER, Eq. 8, arXiv 2603.01425; specs/laser.md §4 term 1 [P, C].

    Requirements:
        1. Latent-view query vectors and a passage pool encoded in the latent view, both L2-normalised by the
           caller (the loss does not normalise them; any vectors work, but τ = 0.02 assumes cosine scores).
        2. The pool laid out `[pos_0, neg_0, ..., pos_1, neg_1, ...]`, G rows per query (positive first).
        3. Under data parallelism, pass the vectors gathered across processes
           ([`hf_latent.laser.distributed.gather_with_grad`]) so B is the global per-micro-step batch.

    Inputs:
        | name | shape | meaning |
        |---|---|---|
        | `query_embeddings` | `(batch, hidden)` | Q, latent-view query vectors (student) |
        | `passage_embeddings` | `(batch * group_size, hidden)` | P, passage pool; the positive of query i is row i·G |

    Relations:
        - [`ExplicitContrastiveLoss`] is the same InfoNCE on the explicit-view (teacher) vectors Q*.
        - [`OutputDistillationLoss`] reuses the same scores S^L as its student side.
        - [`LaserLoss`] adds this term with weight `latent_contrastive_weight` (1 in every variant except the
          first stage of "w/o co-learning"); it is the *only* term of the "basic_contrastive" and
          "no_explicit_view" ablations (spec §7).

    Example:

        ```python
        >>> import torch
        >>> import torch.nn.functional as F
        >>> from hf_latent.laser.losses import LatentContrastiveLoss
        >>> q = F.normalize(torch.randn(2, 8), dim=-1)
        >>> p = F.normalize(torch.randn(4, 8), dim=-1)  # [pos_0, neg_0, pos_1, neg_1]
        >>> loss = LatentContrastiveLoss(temperature=0.02)(query_embeddings=q, passage_embeddings=p)
        >>> loss.shape
        torch.Size([])
        ```
    """

    def __init__(self, temperature: float = 0.02, group_size: int | None = None) -> None:
        super().__init__()
        self.temperature = check_temperature("temperature", temperature)
        self.group_size = check_group_size(group_size)

    def forward(self, query_embeddings: Tensor, passage_embeddings: Tensor) -> Tensor:
        """Return the scalar loss for Q `(batch, hidden)` and P `(batch * group_size, hidden)`."""
        name = type(self).__name__
        check_vectors("query_embeddings", query_embeddings, name)
        group_size = check_passage_pool(
            query_embeddings.shape[0], passage_embeddings, query_embeddings.shape[1], self.group_size, name
        )
        return info_nce(query_embeddings, passage_embeddings, self.temperature, group_size)

    def get_config_dict(self) -> dict[str, Any]:
        config: dict[str, Any] = {"temperature": self.temperature}
        if self.group_size is not None:
            config["group_size"] = self.group_size
        return config
