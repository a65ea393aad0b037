"""Calibrate the retrieval-alignment temperature β: the teacher's top-3 documents should hold ≈0.5 of p (§7.2)."""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor


logger = logging.getLogger(__name__)

# The paper's value "in most cases" and our fallback when bisection cannot bracket the target (spec §7.2).
DEFAULT_RETRIEVAL_TEMPERATURE = 0.03


def _candidate_scores(
    reference_query_embeddings: Tensor,
    document_embeddings: Tensor,
    candidate_index_lists: Sequence[Sequence[int]] | None,
    top_k: int,
) -> Tensor:
    """Cosine scores `(num_subqueries, max_candidates)` in float64, padded with −inf where a pool is shorter."""
    if not isinstance(reference_query_embeddings, Tensor) or reference_query_embeddings.ndim != 2:
        raise ValueError("reference_query_embeddings must be a Tensor of shape (num_subqueries, dim).")
    if not isinstance(document_embeddings, Tensor) or document_embeddings.ndim != 2:
        raise ValueError("document_embeddings must be a Tensor of shape (num_documents, dim).")
    if reference_query_embeddings.shape[0] == 0:
        raise ValueError("reference_query_embeddings is empty; need at least one sub-query.")
    if reference_query_embeddings.shape[1] != document_embeddings.shape[1]:
        raise ValueError(
            f"reference_query_embeddings has dim {reference_query_embeddings.shape[1]} but document_embeddings has "
            f"dim {document_embeddings.shape[1]}."
        )
    if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
        raise ValueError(f"top_k must be an integer >= 1, got {top_k!r}.")
    queries = F.normalize(reference_query_embeddings.detach().double(), dim=-1)
    documents = F.normalize(document_embeddings.detach().to(queries.device).double(), dim=-1)
    num_documents = documents.shape[0]
    if candidate_index_lists is None:
        if num_documents <= top_k:
            raise ValueError(f"need more than top_k={top_k} documents to calibrate, got {num_documents}.")
        return queries @ documents.transpose(0, 1)
    if len(candidate_index_lists) != queries.shape[0]:
        raise ValueError(
            f"candidate_index_lists has {len(candidate_index_lists)} entries but there are {queries.shape[0]} "
            "sub-queries (one candidate list per sub-query)."
        )
    width = max(len(indices) for indices in candidate_index_lists)
    scores = torch.full((queries.shape[0], width), -math.inf, dtype=torch.float64, device=queries.device)
    for row, indices in enumerate(candidate_index_lists):
        index = torch.as_tensor(list(indices), dtype=torch.long, device=queries.device)
        if index.numel() <= top_k:
            raise ValueError(
                f"candidate_index_lists[{row}] has {index.numel()} candidates; need more than top_k={top_k} (with at "
                "most top_k candidates the top-k mass is 1 at every β)."
            )
        if int(index.min()) < 0 or int(index.max()) >= num_documents:
            raise ValueError(f"candidate_index_lists[{row}] has an index outside [0, {num_documents}).")
        scores[row, : index.numel()] = documents[index] @ queries[row]
    return scores


def _mass(scores: Tensor, temperature: float, top_k: int) -> float:
    probabilities = torch.softmax(scores / temperature, dim=-1)
    return float(torch.topk(probabilities, top_k, dim=-1).values.sum(dim=-1).mean())


def top_k_mass(
    reference_query_embeddings: Tensor,
    document_embeddings: Tensor,
    temperature: float,
    candidate_index_lists: Sequence[Sequence[int]] | None = None,
    top_k: int = 3,
) -> float:
    """Mean over sub-queries of the probability mass of the teacher's top-k candidates, `p = softmax(cos(v*, d)/β)`.

    Args:
        reference_query_embeddings (`Tensor` of shape `(num_subqueries, dim)`):
            v*_t, the frozen reference retriever's vectors of the teacher sub-queries (normalised here).
        document_embeddings (`Tensor` of shape `(num_documents, dim)`):
            Index vectors of every candidate document (normalised here).
        temperature (`float`):
            β.
        candidate_index_lists (`list[list[int]]`, *optional*):
            For each sub-query, the rows of `document_embeddings` that form its candidate set D_B (e.g. its batch's
            pool from `build_candidate_pool`). `None`: all documents form one D_B shared by every sub-query.
        top_k (`int`, *optional*, defaults to `3`):
            k.

    Returns:
        `float` in `(k/N_d, 1]`: the mean top-k mass. It decreases monotonically as β grows.
    """
    if not temperature > 0:
        raise ValueError(f"temperature must be positive, got {temperature}.")
    scores = _candidate_scores(reference_query_embeddings, document_embeddings, candidate_index_lists, top_k)
    return _mass(scores, float(temperature), top_k)


def calibrate_retrieval_temperature(
    reference_query_embeddings: Tensor,
    document_embeddings: Tensor,
    candidate_index_lists: Sequence[Sequence[int]] | None = None,
    target_top3_mass: float = 0.5,
    top_k: int = 3,
    bounds: tuple[float, float] = (1e-3, 1.0),
    tol: float = 1e-4,
    max_iterations: int = 100,
    fallback: float = DEFAULT_RETRIEVAL_TEMPERATURE,
) -> float:
    """β such that the teacher's top-k documents hold `target_top3_mass` of p on average (spec §7.2, §13.4).

    Bisection on log β within `bounds`: the mean top-k mass ([`top_k_mass`]) falls monotonically from ≈1 (β → 0) to
    k/N_d (β → ∞), so one root exists whenever `mass(bounds[0]) ≥ target ≥ mass(bounds[1])`. If the target is not
    bracketed (e.g. all candidates score alike, or the bounds are too narrow), a warning is logged and `fallback`
    (0.03, the paper's value) is returned. Recalibrate per retriever: anisotropic retrievers such as e5 need a
    different β.

    To calibrate over many training batches, concatenate their v* rows and document rows and give each sub-query
    the row indices of its own batch's pool in `candidate_index_lists`.

    Args:
        reference_query_embeddings (`Tensor` of shape `(num_subqueries, dim)`): v*_t.
        document_embeddings (`Tensor` of shape `(num_documents, dim)`): candidate document vectors.
        candidate_index_lists (`list[list[int]]`, *optional*): per-sub-query D_B rows; `None` = all documents.
        target_top3_mass (`float`, *optional*, defaults to `0.5`): the mass to hit, in (0, 1).
        top_k (`int`, *optional*, defaults to `3`): k.
        bounds (`tuple[float, float]`, *optional*, defaults to `(1e-3, 1.0)`): search interval for β.
        tol (`float`, *optional*, defaults to `1e-4`): stop when |mass − target| ≤ tol.
        max_iterations (`int`, *optional*, defaults to `100`): bisection steps at most.
        fallback (`float`, *optional*, defaults to `0.03`): returned when the target is not bracketed.

    Returns:
        `float`: β.

    Example:

        ```python
        >>> import torch
        >>> from hf_latent.latentrag.losses import calibrate_retrieval_temperature, top_k_mass
        >>> v_star, docs = torch.randn(16, 32), torch.randn(200, 32)
        >>> beta = calibrate_retrieval_temperature(v_star, docs)
        >>> round(top_k_mass(v_star, docs, beta), 2)
        0.5
        ```
    """
    low, high = float(bounds[0]), float(bounds[1])
    if not 0.0 < low < high < math.inf:
        raise ValueError(f"bounds must satisfy 0 < low < high, got {bounds}.")
    if not 0.0 < target_top3_mass < 1.0:
        raise ValueError(f"target_top3_mass must lie in (0, 1), got {target_top3_mass}.")
    scores = _candidate_scores(reference_query_embeddings, document_embeddings, candidate_index_lists, top_k)
    mass_low, mass_high = _mass(scores, low, top_k), _mass(scores, high, top_k)
    if not mass_low >= target_top3_mass >= mass_high:
        logger.warning(
            "calibrate_retrieval_temperature: top-%d mass %.4f is not bracketed by β in [%g, %g] (masses %.4f and "
            "%.4f); falling back to β = %g.",
            top_k,
            target_top3_mass,
            low,
            high,
            mass_low,
            mass_high,
            fallback,
        )
        return float(fallback)
    log_low, log_high = math.log(low), math.log(high)
    beta = math.exp(0.5 * (log_low + log_high))
    for _ in range(max_iterations):
        log_mid = 0.5 * (log_low + log_high)
        beta = math.exp(log_mid)
        mass = _mass(scores, beta, top_k)
        if abs(mass - target_top3_mass) <= tol:
            break
        if mass > target_top3_mass:  # too peaked: raise β
            log_low = log_mid
        else:
            log_high = log_mid
    return beta
