"""Evaluation: TREC-style retrieval metrics, SQuAD-style QA metrics and their offline `evaluate` modules."""

from __future__ import annotations

from .metrics import load_metric, metric_path
from .qa_metrics import answer_in_text, evaluate_answers, exact_match, normalize_answer, token_f1
from .retrieval_metrics import (
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
    "answer_in_text",
    "evaluate_answers",
    "evaluate_run",
    "exact_match",
    "load_metric",
    "map_at_k",
    "metric_path",
    "mrr_at_k",
    "ndcg_at_k",
    "normalize_answer",
    "per_query_scores",
    "precision_at_k",
    "rank_documents",
    "ranking_to_run",
    "recall_at_k",
    "token_f1",
]
