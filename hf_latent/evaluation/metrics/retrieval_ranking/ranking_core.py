"""TREC-style ranking metrics (nDCG, recall, MRR, MAP, precision at k) over a run and qrels.

This file is the single implementation of the retrieval metrics. It is imported by the public module
`hf_latent.evaluation.retrieval_metrics` and, as a sibling file, by the `retrieval_ranking` evaluate script:
`evaluate.load` copies the files a script imports with a relative import of the same folder (`from .x import y`) into
its module cache, but nothing outside that folder. So this file must stay self-contained: standard library only, and
no import from `hf_latent`.

Conventions (the ones of `pytrec_eval` / `trec_eval`, as used by BEIR and BRIGHT):

- `run` maps query id -> doc id -> score; `qrels` maps query id -> doc id -> graded relevance. A judgment > 0 is
  relevant; 0 or less is not relevant and carries no gain.
- Documents are ranked by score, descending; ties are broken by doc id, ascending, so rankings are deterministic.
  (`trec_eval` breaks ties by doc id descending: results differ from it only on tied scores.)
- Per query, the BRIGHT protocol first drops from the ranking the doc ids in `excluded_ids[query_id]` (the sentinel
  `"N/A"` is ignored) and, with `remove_self=True`, the doc whose id equals the query id. The qrels are unchanged.
- nDCG@k: gain = relevance (linear, like `ndcg_cut`), discount log2(rank + 1); the ideal DCG ranks every judged
  relevant doc of the query by relevance and is cut at k.
- recall@k = |relevant in top k| / |relevant|.
- precision@k = |relevant in top k| / k, even when fewer than k docs are ranked (like `P_k`).
- MRR@k = 1 / rank of the first relevant doc in the top k, 0 if there is none.
- MAP@k = (sum of precision@rank over the ranks <= k of relevant docs) / |relevant|: the denominator is the total
  number of relevant docs of the query, as `map_cut` does (not min(k, |relevant|)).
- Scores are macro-averaged over the evaluated queries: the queries of `qrels` with at least one relevant doc. Queries
  of `qrels` without any are skipped (not counted as 0) and counted under `"num_skipped_queries"`; queries of `qrels`
  missing from `run` score 0; queries only in `run` are ignored.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Literal, overload


EXCLUDED_ID_SENTINEL = "N/A"
METRIC_NAMES = ("ndcg", "recall", "mrr", "map", "precision")
DEFAULT_K_VALUES = (1, 5, 10, 100)


def ranking_to_run(rankings: Mapping[str, Sequence[str]]) -> dict[str, dict[str, float]]:
    """Turn ordered doc id lists into a run whose scores reproduce that order.

    Args:
        rankings (`Mapping[str, Sequence[str]]`):
            Query id -> doc ids, best first. A doc id listed twice keeps its first (best) position.

    Returns:
        `dict[str, dict[str, float]]`: query id -> doc id -> score, with strictly decreasing scores down each list.
    """
    run: dict[str, dict[str, float]] = {}
    for query_id, doc_ids in rankings.items():
        scores: dict[str, float] = {}
        for position, doc_id in enumerate(doc_ids):
            scores.setdefault(doc_id, float(len(doc_ids) - position))
        run[query_id] = scores
    return run


def rank_documents(
    query_id: str,
    doc_scores: Mapping[str, float],
    excluded_ids: Iterable[str] = (),
    remove_self: bool = True,
) -> list[str]:
    """Rank one query's documents, after the BRIGHT exclusions.

    Args:
        query_id (`str`):
            The query id, compared to doc ids when `remove_self=True`.
        doc_scores (`Mapping[str, float]`):
            Doc id -> score.
        excluded_ids (`Iterable[str]`, *optional*):
            Doc ids to drop from the ranking; the sentinel `"N/A"` is ignored.
        remove_self (`bool`, *optional*, defaults to `True`):
            Drop the doc whose id equals `query_id`.

    Returns:
        `list[str]`: doc ids by score descending, ties broken by doc id ascending.
    """
    dropped = {doc_id for doc_id in excluded_ids if doc_id != EXCLUDED_ID_SENTINEL}
    if remove_self:
        dropped.add(query_id)
    kept = [(doc_id, score) for doc_id, score in doc_scores.items() if doc_id not in dropped]
    kept.sort(key=lambda item: (-item[1], item[0]))
    return [doc_id for doc_id, _ in kept]


def _ndcg(ranking: Sequence[str], relevance: Mapping[str, int], k: int) -> float:
    dcg = sum(max(relevance.get(doc_id, 0), 0) / math.log2(rank + 1) for rank, doc_id in enumerate(ranking[:k], 1))
    ideal_gains = sorted((rel for rel in relevance.values() if rel > 0), reverse=True)[:k]
    ideal_dcg = sum(gain / math.log2(rank + 1) for rank, gain in enumerate(ideal_gains, 1))
    return dcg / ideal_dcg


def _query_scores(ranking: Sequence[str], relevance: Mapping[str, int], k_values: Sequence[int]) -> dict[str, float]:
    num_relevant = sum(1 for rel in relevance.values() if rel > 0)
    hit_ranks = [rank for rank, doc_id in enumerate(ranking, 1) if relevance.get(doc_id, 0) > 0]
    scores: dict[str, float] = {}
    for k in k_values:
        ranks = [rank for rank in hit_ranks if rank <= k]
        scores[f"ndcg@{k}"] = _ndcg(ranking, relevance, k)
        scores[f"recall@{k}"] = len(ranks) / num_relevant
        scores[f"mrr@{k}"] = 1.0 / ranks[0] if ranks else 0.0
        # The i-th hit (1-based) at rank r contributes precision@r = i / r.
        scores[f"map@{k}"] = sum(hit / rank for hit, rank in enumerate(ranks, 1)) / num_relevant
        scores[f"precision@{k}"] = len(ranks) / k
    return scores


def _check_k_values(k_values: Iterable[int]) -> tuple[int, ...]:
    checked = tuple(dict.fromkeys(k_values))
    if not checked or any(isinstance(k, bool) or not isinstance(k, int) or k < 1 for k in checked):
        raise ValueError(f"`k_values` must be a non-empty collection of positive integers, got {checked}.")
    return checked


def per_query_scores(
    run: Mapping[str, Mapping[str, float]],
    qrels: Mapping[str, Mapping[str, int]],
    k_values: Iterable[int] = DEFAULT_K_VALUES,
    excluded_ids: Mapping[str, Iterable[str]] | None = None,
    remove_self: bool = True,
) -> dict[str, dict[str, float]]:
    """Score each evaluated query (see the module docstring for the conventions); arguments as in [`evaluate_run`].

    Returns:
        `dict[str, dict[str, float]]`: query id -> `"ndcg@k"`, `"recall@k"`, `"mrr@k"`, `"map@k"`, `"precision@k"`
        for every k, for the queries of `qrels` with at least one relevant doc.
    """
    checked_k_values = _check_k_values(k_values)
    excluded_ids = excluded_ids or {}
    scores: dict[str, dict[str, float]] = {}
    for query_id, relevance in qrels.items():
        if not any(rel > 0 for rel in relevance.values()):
            continue
        ranking = rank_documents(query_id, run.get(query_id, {}), excluded_ids.get(query_id, ()), remove_self)
        scores[query_id] = _query_scores(ranking, relevance, checked_k_values)
    return scores


@overload
def evaluate_run(
    run: Mapping[str, Mapping[str, float]],
    qrels: Mapping[str, Mapping[str, int]],
    k_values: Iterable[int] = ...,
    excluded_ids: Mapping[str, Iterable[str]] | None = ...,
    remove_self: bool = ...,
    per_query: Literal[False] = ...,
) -> dict[str, float]: ...


@overload
def evaluate_run(
    run: Mapping[str, Mapping[str, float]],
    qrels: Mapping[str, Mapping[str, int]],
    k_values: Iterable[int] = ...,
    excluded_ids: Mapping[str, Iterable[str]] | None = ...,
    remove_self: bool = ...,
    *,
    per_query: Literal[True],
) -> tuple[dict[str, float], dict[str, dict[str, float]]]: ...


def evaluate_run(
    run: Mapping[str, Mapping[str, float]],
    qrels: Mapping[str, Mapping[str, int]],
    k_values: Iterable[int] = DEFAULT_K_VALUES,
    excluded_ids: Mapping[str, Iterable[str]] | None = None,
    remove_self: bool = True,
    per_query: bool = False,
) -> dict[str, float] | tuple[dict[str, float], dict[str, dict[str, float]]]:
    """Macro-average nDCG, recall, MRR, MAP and precision at each k over the queries of `qrels`.

    The conventions (tie-breaking, gains, MAP denominator, skipped queries, BRIGHT exclusions) are listed in the module
    docstring; they follow `pytrec_eval` (`ndcg_cut`, `recall`, `map_cut`, `P`).

    Args:
        run (`Mapping[str, Mapping[str, float]]`):
            Query id -> doc id -> score.
        qrels (`Mapping[str, Mapping[str, int]]`):
            Query id -> doc id -> graded relevance (0 = not relevant).
        k_values (`Iterable[int]`, *optional*, defaults to `(1, 5, 10, 100)`):
            The cutoffs k.
        excluded_ids (`Mapping[str, Iterable[str]]`, *optional*):
            Query id -> doc ids dropped from that query's ranking before scoring (`"N/A"` is ignored).
        remove_self (`bool`, *optional*, defaults to `True`):
            Drop from each ranking the doc whose id equals the query id.
        per_query (`bool`, *optional*, defaults to `False`):
            Also return the scores of each evaluated query.

    Returns:
        `dict[str, float]`: `"ndcg@k"`, `"recall@k"`, `"mrr@k"`, `"map@k"`, `"precision@k"` for every k, in [0, 1],
        plus `"num_skipped_queries"`. With `per_query=True`, a tuple of that dict and the output of
        [`per_query_scores`].

    Raises:
        `ValueError`: if no query of `qrels` has a relevant doc, or a k is not a positive integer.
    """
    checked_k_values = _check_k_values(k_values)
    scores = per_query_scores(run, qrels, checked_k_values, excluded_ids, remove_self)
    if not scores:
        raise ValueError("No query of `qrels` has a relevant document (relevance > 0): nothing to evaluate.")
    keys = [f"{name}@{k}" for name in METRIC_NAMES for k in checked_k_values]
    results: dict[str, float] = {key: math.fsum(query[key] for query in scores.values()) / len(scores) for key in keys}
    results["num_skipped_queries"] = len(qrels) - len(scores)
    if per_query:
        return results, scores
    return results


_AT_K_DOC = """{summary}

    Args:
        run (`Mapping[str, Mapping[str, float]]`):
            Query id -> doc id -> score.
        qrels (`Mapping[str, Mapping[str, int]]`):
            Query id -> doc id -> graded relevance (0 = not relevant).
        k (`int`, *optional*, defaults to 10):
            The cutoff.
        excluded_ids (`Mapping[str, Iterable[str]]`, *optional*):
            Query id -> doc ids dropped from that query's ranking (`"N/A"` is ignored).
        remove_self (`bool`, *optional*, defaults to `True`):
            Drop from each ranking the doc whose id equals the query id.

    Returns:
        `float`: the macro-averaged {label}, in [0, 1].
    """


def _mean_at_k(name: str, label: str, summary: str) -> Callable[..., float]:
    """The public `<name>_at_k` function: one metric of [`evaluate_run`] at one cutoff k."""

    def mean_at_k(
        run: Mapping[str, Mapping[str, float]],
        qrels: Mapping[str, Mapping[str, int]],
        k: int = 10,
        excluded_ids: Mapping[str, Iterable[str]] | None = None,
        remove_self: bool = True,
    ) -> float:
        return evaluate_run(run, qrels, (k,), excluded_ids, remove_self)[f"{name}@{k}"]

    mean_at_k.__name__ = mean_at_k.__qualname__ = f"{name}_at_k"
    mean_at_k.__doc__ = _AT_K_DOC.format(summary=summary, label=label)
    return mean_at_k


ndcg_at_k = _mean_at_k("ndcg", "nDCG@k", "Mean nDCG@k (linear gain, log2(rank + 1) discount).")
recall_at_k = _mean_at_k("recall", "recall@k", "Mean recall@k = |relevant in top k| / |relevant|.")
mrr_at_k = _mean_at_k("mrr", "MRR@k", "Mean reciprocal rank of the first relevant doc in the top k (0 if none).")
map_at_k = _mean_at_k(
    "map", "MAP@k", "Mean average precision cut at k, divided by the number of relevant docs (`map_cut`)."
)
precision_at_k = _mean_at_k("precision", "precision@k", "Mean precision@k = |relevant in top k| / k (`P_k`).")
