"""Retrieval metrics as pure functions over a run and qrels: nDCG, recall, MRR, MAP and precision at k.

The conventions (those of `pytrec_eval`: linear-gain nDCG, MAP divided by the number of relevant docs, ties broken by
doc id, skipped queries, BRIGHT exclusions) are documented in [`evaluate_run`] and its module. The implementation lives
in `hf_latent/evaluation/metrics/retrieval_ranking/ranking_core.py`, the one file shared with the `retrieval_ranking`
evaluate module (`evaluate.load` can only copy files of the module's own folder); this module is its public path.
"""

from __future__ import annotations

from .metrics.retrieval_ranking.ranking_core import (
    DEFAULT_K_VALUES,
    EXCLUDED_ID_SENTINEL,
    evaluate_run,
    map_at_k,
    mrr_at_k,
    ndcg_at_k,
    per_query_scores,
    precision_at_k,
    rank_documents,
    ranking_to_run,
    recall_at_k,
)


__all__ = [
    "DEFAULT_K_VALUES",
    "EXCLUDED_ID_SENTINEL",
    "evaluate_run",
    "map_at_k",
    "mrr_at_k",
    "ndcg_at_k",
    "per_query_scores",
    "precision_at_k",
    "rank_documents",
    "ranking_to_run",
    "recall_at_k",
]
