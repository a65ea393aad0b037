"""Retrieval alignment `L_ret` (Eqs. 7–8) and its ablation forms, plus the in-batch candidate pool (§7.2, §9)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from ._utils import LatentRAGLossBase, check_temperature, check_tensor


RETRIEVAL_ALIGNMENT_MODES = ("kl", "cosine", "infonce")


def build_candidate_pool(pseudo_relevant_ids: Sequence[Sequence[str]]) -> tuple[list[str], list[list[int]]]:
    """The in-batch candidate set D_B: the union of every sub-query's pseudo-relevant documents (spec §7.2).

    Args:
        pseudo_relevant_ids (`list[list[str]]`):
            One list per teacher sub-query s_t in the batch (the set E_s): the ids of its top-10 documents under the
            frozen reference retriever, best first (precomputed during data conversion).

    Returns:
        `tuple[list[str], list[list[int]]]`: `doc_ids`, the union deduplicated in first-seen order (row i of the
        `document_embeddings` passed to [`RetrievalAlignmentLoss`] must be the index embedding of `doc_ids[i]`),
        and for each sub-query the positions of its own pseudo-relevant documents in `doc_ids` (in its order).

    Example:

        ```python
        >>> build_candidate_pool([["a", "b"], ["b", "c"]])
        (['a', 'b', 'c'], [[0, 1], [1, 2]])
        ```
    """
    if isinstance(pseudo_relevant_ids, str):
        raise TypeError("pseudo_relevant_ids must be a list of id lists (one per sub-query), got a string.")
    position: dict[str, int] = {}
    per_subquery: list[list[int]] = []
    for row, ids in enumerate(pseudo_relevant_ids):
        if isinstance(ids, str):
            raise TypeError(f"pseudo_relevant_ids[{row}] must be a list of ids, got the string {ids!r}.")
        indices = []
        for doc_id in ids:
            if doc_id not in position:
                position[doc_id] = len(position)
            indices.append(position[doc_id])
        per_subquery.append(indices)
    return list(position), per_subquery


class RetrievalAlignmentLoss(LatentRAGLossBase):
    r"""Align the latent sub-query's retrieval distribution over D_B with the teacher text sub-query's (KL, Eqs. 7–8).

    With all vectors L2-normalised (so dot products are cosines) and d_i the **frozen** index embeddings of D_B:

    ```
    p_i(s_t) = softmax_i(cos(v*_t, d_i) / β)        teacher, constant (v* and d detached here)
    q_i(s_t) = softmax_i(cos(v^s_t, d_i) / β)       student
    mode="kl":      L = (1/|E_s|) Σ_t Σ_i p_i log(p_i / q_i)                                  (paper, Eq. 8)
    mode="cosine":  L = (1/|E_s|) Σ_t (1 − cos(v^s_t, v*_t))                                 (ablation, §9)
    mode="infonce": L = −(1/|E_s|) Σ_t log(Σ_{i∈P_t} exp(cos(v^s_t, d_i)/β) / Σ_{j∈D_B} exp(cos(v^s_t, d_j)/β))
                    with P_t the teacher's top-`num_positives` documents of D_B (by p)       (ablation, §9)
    ```

    Gradient flows only into `latent_query_embeddings` (v^s → θ_ret → `Proj_ret` → LLM). The reference vectors and
    the document embeddings are detached inside, whatever their `requires_grad`.

    Args:
        temperature (`float`, *optional*, defaults to `0.03`):
            β, shared by p and q (and by InfoNCE). The paper picks it so the teacher's top-3 documents hold ≈0.5 of
            p; see [`calibrate_retrieval_temperature`]. Unused by `mode="cosine"`.
        mode (`str`, *optional*, defaults to `"kl"`):
            `"kl"` (the paper's loss), `"cosine"` or `"infonce"` (the ablations of spec §9).
        num_positives (`int`, *optional*, defaults to `3`):
            Size of the InfoNCE positive set P_t (teacher top-k in D_B); capped at `N_d`. Only for `"infonce"`.

    References:
        - LatentRAG, Eqs. 7–8 (retrieval alignment) and Table 3 (ablations), arXiv 2605.06285;
          specs/latentrag.md §7.2 and §9 (cosine/InfoNCE forms [D]).

    Requirements:
        1. v^s from the trainable retriever path (`f_ret(Proj_ret(H^s_t); θ_ret)`, Eq. 5) and v* from the frozen
           reference path (`f_ret(s_t; θ*_ret)`, Eq. 6) on the teacher's text sub-query, row-aligned.
        2. `document_embeddings` = the frozen index vectors of D_B, built with [`build_candidate_pool`] from each
           sub-query's top-10 pseudo-relevant ids (one shared pool for the whole batch, others' documents are
           in-batch negatives). Vectors need not be normalised; they are normalised here.

    Inputs:
        | name | shape | meaning |
        |---|---|---|
        | `latent_query_embeddings` | `(num_subqueries, dim)` | v^s_t, student latent sub-query vectors (grad) |
        | `reference_query_embeddings` | `(num_subqueries, dim)` | v*_t, frozen reference vectors (detached) |
        | `document_embeddings` | `(num_candidates, dim)` | d_i for D_B, frozen (detached); optional for `"cosine"` |

    Relations:
        - Weighted by `retrieval_weight` (λ_ret = 1) in [`LatentRAGLoss`]; variants "kl", "cosine" and "infonce" of
          `LATENTRAG_LOSS_VARIANTS` choose `mode`. "no_pretrained_retriever" keeps `mode="kl"` and changes only the
          model (v^s = normalised mean of the 16 projected vectors, no f_ret).
        - β comes from [`calibrate_retrieval_temperature`] (fallback 0.03).

    Example:

        ```python
        >>> import torch
        >>> from hf_latent.latentrag.losses import RetrievalAlignmentLoss
        >>> v_s, v_star, docs = torch.randn(4, 8, requires_grad=True), torch.randn(4, 8), torch.randn(20, 8)
        >>> loss = RetrievalAlignmentLoss(temperature=0.03)(
        ...     latent_query_embeddings=v_s, reference_query_embeddings=v_star, document_embeddings=docs
        ... )
        >>> float(RetrievalAlignmentLoss()(v_star, v_star, docs))  # student == teacher
        0.0
        ```
    """

    def __init__(self, temperature: float = 0.03, mode: str = "kl", num_positives: int = 3) -> None:
        super().__init__()
        if mode not in RETRIEVAL_ALIGNMENT_MODES:
            raise ValueError(
                f"RetrievalAlignmentLoss: unknown mode {mode!r}; choose one of {RETRIEVAL_ALIGNMENT_MODES}."
            )
        if isinstance(num_positives, bool) or not isinstance(num_positives, int) or num_positives < 1:
            raise ValueError(f"RetrievalAlignmentLoss: num_positives must be an integer >= 1, got {num_positives!r}.")
        self.temperature = check_temperature("temperature", temperature)
        self.mode = mode
        self.num_positives = num_positives

    def _check_inputs(self, latent: Tensor, reference: Tensor, documents: Tensor | None) -> None:
        name = type(self).__name__
        check_tensor("latent_query_embeddings", latent, 2, "(num_subqueries, dim)", name)
        check_tensor("reference_query_embeddings", reference, 2, "(num_subqueries, dim)", name)
        if latent.shape != reference.shape:
            raise ValueError(
                f"{name}: latent_query_embeddings {tuple(latent.shape)} and reference_query_embeddings "
                f"{tuple(reference.shape)} must have the same shape (one row per teacher sub-query)."
            )
        if latent.shape[0] == 0:
            raise ValueError(f"{name}: got 0 sub-queries; skip the term for a batch without retrieval steps.")
        if documents is None:
            if self.mode != "cosine":
                raise ValueError(f"{name}: mode={self.mode!r} needs document_embeddings (the D_B candidates).")
            return
        check_tensor("document_embeddings", documents, 2, "(num_candidates, dim)", name)
        if documents.shape[0] == 0:
            raise ValueError(f"{name}: document_embeddings is empty; D_B needs at least one candidate.")
        if documents.shape[1] != latent.shape[1]:
            raise ValueError(
                f"{name}: document_embeddings has dim {documents.shape[1]}, but the query vectors have dim "
                f"{latent.shape[1]} (both must live in the index's embedding space)."
            )

    def forward(
        self,
        latent_query_embeddings: Tensor,
        reference_query_embeddings: Tensor,
        document_embeddings: Tensor | None = None,
    ) -> Tensor:
        """Return the scalar float32 loss; shapes as in the Inputs table of the class docstring."""
        self._check_inputs(latent_query_embeddings, reference_query_embeddings, document_embeddings)
        student = F.normalize(latent_query_embeddings.float(), dim=-1)
        teacher = F.normalize(reference_query_embeddings.detach().float(), dim=-1)
        if self.mode == "cosine":
            return (1.0 - (student * teacher).sum(dim=-1)).mean()
        documents = F.normalize(document_embeddings.detach().float(), dim=-1)
        student_logits = student @ documents.transpose(0, 1) / self.temperature
        teacher_logits = teacher @ documents.transpose(0, 1) / self.temperature
        student_log_probs = F.log_softmax(student_logits, dim=-1)
        if self.mode == "kl":
            teacher_log_probs = F.log_softmax(teacher_logits, dim=-1)
            # Σ_i p_i (log p_i − log q_i), mean over sub-queries; p given as log-probabilities so underflow stays exact.
            return F.kl_div(student_log_probs, teacher_log_probs, reduction="batchmean", log_target=True)
        num_positives = min(self.num_positives, documents.shape[0])
        positives = torch.topk(teacher_logits, num_positives, dim=-1).indices
        return -torch.logsumexp(student_log_probs.gather(1, positives), dim=-1).mean()

    def get_config_dict(self) -> dict[str, Any]:
        config: dict[str, Any] = {"temperature": self.temperature, "mode": self.mode}
        if self.mode == "infonce":
            config["num_positives"] = self.num_positives
        return config
