"""Tests of the retrieval metrics: hand-computed cases, a numpy reference implementation and `pytrec_eval`."""

from __future__ import annotations

import math

import numpy as np
import pytest

from hf_latent.evaluation import (
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


# --- hand-computed cases ---------------------------------------------------------------------------------------------


def test_ties_are_broken_by_doc_id_ascending() -> None:
    run = {"q": {"b": 1.0, "a": 1.0, "c": 2.0, "d": 1.0}}
    assert rank_documents("q", run["q"]) == ["c", "a", "b", "d"]
    # "a" and "b" tie at rank 2; "a" wins the tie, so a relevant "a" is found at rank 2, a relevant "b" at rank 3.
    assert mrr_at_k(run, {"q": {"a": 1}}, k=10) == 0.5
    assert mrr_at_k(run, {"q": {"b": 1}}, k=10) == pytest.approx(1 / 3)
    assert recall_at_k(run, {"q": {"a": 1}}, k=2) == 1.0
    assert recall_at_k(run, {"q": {"b": 1}}, k=2) == 0.0


def test_graded_relevance() -> None:
    run = {"q": {"d3": 0.9, "d1": 0.8, "d2": 0.7}}
    qrels = {"q": {"d1": 0, "d2": 2, "d3": 1}}
    # Ranking d3 (rel 1), d1 (rel 0), d2 (rel 2).
    # DCG@3 = 1 / log2(2) + 0 / log2(3) + 2 / log2(4) = 1 + 0 + 1 = 2.
    # Ideal order d2, d3: IDCG@3 = 2 / log2(2) + 1 / log2(3) = 2 + 0.6309... -> nDCG@3 = 2 / 2.6309... = 0.7602...
    # nDCG@1 = (1 / 1) / (2 / 1) = 0.5.
    # MAP@3: hits at ranks 1 and 3 -> (1/1 + 2/3) / 2 relevant docs = 5/6.
    # MAP@2: (1/1) / 2 = 1/2 (the denominator stays the 2 relevant docs).
    results = evaluate_run(run, qrels, k_values=(1, 2, 3))
    assert results["ndcg@3"] == pytest.approx(2 / (2 + 1 / math.log2(3)), abs=1e-12)
    assert results["ndcg@3"] == pytest.approx(0.76018, abs=1e-5)
    assert results["ndcg@1"] == pytest.approx(0.5, abs=1e-12)
    assert results["map@3"] == pytest.approx(5 / 6, abs=1e-12)
    assert results["map@2"] == pytest.approx(0.5, abs=1e-12)
    assert results["recall@2"] == 0.5
    assert results["precision@2"] == 0.5
    assert results["mrr@1"] == 1.0
    assert results["num_skipped_queries"] == 0


def test_ideal_dcg_counts_relevant_docs_never_retrieved() -> None:
    # Only d1 (rel 1) is retrieved; d9 (rel 3) is judged but missing: nDCG@2 = 1 / (3 + 1 / log2(3)).
    run = {"q": {"d1": 1.0}}
    qrels = {"q": {"d1": 1, "d9": 3}}
    assert ndcg_at_k(run, qrels, k=2) == pytest.approx(1 / (3 + 1 / math.log2(3)), abs=1e-12)
    # precision@k divides by k even when fewer than k docs are ranked.
    assert precision_at_k(run, qrels, k=5) == pytest.approx(0.2)
    assert map_at_k(run, qrels, k=5) == pytest.approx(0.5)


def test_queries_without_relevant_docs_are_skipped() -> None:
    run = {"q1": {"a": 1.0}, "q2": {"x": 1.0}, "q3": {"y": 1.0}, "only_in_run": {"z": 1.0}}
    qrels = {"q1": {"a": 1}, "q2": {"x": 0}, "q3": {}}
    results = evaluate_run(run, qrels, k_values=(1,))
    # q2 and q3 have no relevant doc: skipped, not averaged in as 0; "only_in_run" is ignored.
    assert results["ndcg@1"] == 1.0
    assert results["num_skipped_queries"] == 2
    with pytest.raises(ValueError, match="nothing to evaluate"):
        evaluate_run(run, {"q2": {"x": 0}})


def test_query_missing_from_run_scores_zero() -> None:
    run = {"q1": {"a": 1.0}}
    qrels = {"q1": {"a": 1}, "q2": {"b": 1}}
    results = evaluate_run(run, qrels, k_values=(10,))
    for name in ("ndcg", "recall", "mrr", "map"):
        assert results[f"{name}@10"] == 0.5
    assert results["num_skipped_queries"] == 0


def test_excluded_ids_and_sentinel() -> None:
    run = {"q": {"d1": 0.9, "d2": 0.8, "d3": 0.7, "N/A": 0.95}}
    qrels = {"q": {"d3": 1}}
    assert mrr_at_k(run, qrels, k=10) == 0.25
    # d1 and "N/A" would be dropped, but "N/A" is the BRIGHT sentinel for "nothing excluded" and is ignored.
    assert mrr_at_k(run, qrels, k=10, excluded_ids={"q": ["d1", "N/A"]}) == pytest.approx(1 / 3)
    assert mrr_at_k(run, qrels, k=10, excluded_ids={"q": ["N/A"]}) == 0.25
    # Exclusions of other queries do not apply.
    assert mrr_at_k(run, qrels, k=10, excluded_ids={"other": ["d1", "d2"]}) == 0.25


def test_remove_self() -> None:
    run = {"q1": {"q1": 0.99, "d1": 0.5}}
    qrels = {"q1": {"d1": 1}}
    assert mrr_at_k(run, qrels, k=1) == 1.0
    assert mrr_at_k(run, qrels, k=1, remove_self=False) == 0.0
    assert mrr_at_k(run, qrels, k=2, remove_self=False) == 0.5


def test_ranking_to_run_keeps_list_order() -> None:
    run = ranking_to_run({"q": ["z", "a", "m", "a"]})
    assert rank_documents("q", run["q"]) == ["z", "a", "m"]
    assert run["q"]["a"] == 3.0  # the first occurrence wins
    assert mrr_at_k(run, {"q": {"m": 1}}, k=3) == pytest.approx(1 / 3)


def test_per_query_and_wrappers_agree_with_evaluate_run() -> None:
    run = {"q1": {"a": 0.3, "b": 0.2}, "q2": {"c": 0.9, "d": 0.1}}
    qrels = {"q1": {"b": 2}, "q2": {"c": 1, "d": 1}, "q3": {"e": 0}}
    results, scores = evaluate_run(run, qrels, k_values=(1, 2), per_query=True)
    assert scores == per_query_scores(run, qrels, k_values=(1, 2))
    assert set(scores) == {"q1", "q2"}
    assert scores["q1"]["mrr@2"] == 0.5
    assert scores["q2"]["recall@1"] == 0.5
    for key, value in results.items():
        if key != "num_skipped_queries":
            assert value == pytest.approx((scores["q1"][key] + scores["q2"][key]) / 2, abs=1e-15)
    functions = {
        "ndcg": ndcg_at_k,
        "recall": recall_at_k,
        "mrr": mrr_at_k,
        "map": map_at_k,
        "precision": precision_at_k,
    }
    for name, function in functions.items():
        assert function(run, qrels, k=2) == results[f"{name}@2"]


@pytest.mark.parametrize("k_values", [(), (0,), (5, -1), (2.0,), (True,)])
def test_invalid_k_values(k_values: tuple) -> None:
    with pytest.raises(ValueError, match="positive integers"):
        evaluate_run({"q": {"a": 1.0}}, {"q": {"a": 1}}, k_values=k_values)


# --- independent reference implementation ----------------------------------------------------------------------------


def _reference_scores(
    query_id: str,
    doc_scores: dict[str, float],
    relevance: dict[str, int],
    k_values: tuple[int, ...],
    excluded: list[str],
    remove_self: bool,
) -> dict[str, float]:
    """Straightforward numpy version: mask the exclusions, lexsort, then vectorised cumulative sums."""
    doc_ids = np.array(list(doc_scores), dtype=str)
    scores = np.array(list(doc_scores.values()), dtype=float)
    dropped = set(excluded) - {"N/A"} | ({query_id} if remove_self else set())
    keep = np.array([doc_id not in dropped for doc_id in doc_ids], dtype=bool)
    doc_ids, scores = doc_ids[keep], scores[keep]
    order = np.lexsort((doc_ids, -scores))  # primary key: -score; secondary: doc id
    rels = np.array([relevance.get(doc_id, 0) for doc_id in doc_ids[order]], dtype=float)
    gains = np.clip(rels, 0, None)
    hits = (rels > 0).astype(float)
    ranks = np.arange(1, len(rels) + 1)
    ideal = np.sort(np.array([rel for rel in relevance.values() if rel > 0], dtype=float))[::-1]
    num_relevant = len(ideal)
    out = {}
    for k in k_values:
        discount = 1 / np.log2(np.arange(2, k + 2))
        dcg = float(np.dot(gains[:k], discount[: len(gains[:k])]))
        idcg = float(np.dot(ideal[:k], discount[: len(ideal[:k])]))
        top_hits = hits[:k]
        first = np.flatnonzero(top_hits)
        out[f"ndcg@{k}"] = dcg / idcg
        out[f"recall@{k}"] = top_hits.sum() / num_relevant
        out[f"mrr@{k}"] = 1 / (first[0] + 1) if len(first) else 0.0
        out[f"map@{k}"] = float(np.sum(np.cumsum(top_hits) / ranks[:k] * top_hits)) / num_relevant
        out[f"precision@{k}"] = top_hits.sum() / k
    return out


def _random_case(rng: np.random.Generator, num_queries: int, ties: bool):
    pool = [f"d{i:02d}" for i in range(40)]
    run, qrels, excluded = {}, {}, {}
    for i in range(num_queries):
        query_id = f"q{i}"
        candidates = [*pool, query_id]  # the query's own id can be retrieved (remove_self)
        retrieved = rng.choice(candidates, size=rng.integers(0, 30), replace=False)
        # Integer scores create many ties; continuous scores none.
        values = rng.integers(0, 4, size=len(retrieved)) if ties else rng.random(len(retrieved))
        if rng.random() > 0.05:  # about 5% of the queries are missing from the run
            run[query_id] = {str(doc): float(value) for doc, value in zip(retrieved, values)}
        judged = rng.choice(candidates, size=rng.integers(0, 12), replace=False)
        qrels[query_id] = {str(doc): int(rng.integers(0, 4)) for doc in judged}
        excluded[query_id] = [str(doc) for doc in rng.choice(pool, size=rng.integers(0, 4))] + ["N/A"]
    return run, qrels, excluded


@pytest.mark.parametrize("remove_self", [True, False])
def test_matches_numpy_reference_on_random_runs(remove_self: bool) -> None:
    rng = np.random.default_rng(1234)
    run, qrels, excluded = _random_case(rng, num_queries=300, ties=True)
    k_values = (1, 3, 5, 10, 100)
    results, scores = evaluate_run(run, qrels, k_values, excluded, remove_self, per_query=True)
    evaluated = [query_id for query_id, rels in qrels.items() if any(rel > 0 for rel in rels.values())]
    assert set(scores) == set(evaluated)
    assert results["num_skipped_queries"] == len(qrels) - len(evaluated) > 0
    reference = {
        query_id: _reference_scores(
            query_id, run.get(query_id, {}), qrels[query_id], k_values, excluded[query_id], remove_self
        )
        for query_id in evaluated
    }
    for query_id in evaluated:
        assert scores[query_id] == pytest.approx(reference[query_id], abs=1e-9, rel=0)
    for key in reference[evaluated[0]]:
        assert results[key] == pytest.approx(np.mean([ref[key] for ref in reference.values()]), abs=1e-9, rel=0)


def test_matches_pytrec_eval() -> None:
    pytrec_eval = pytest.importorskip("pytrec_eval")
    rng = np.random.default_rng(7)
    run, qrels, _ = _random_case(rng, num_queries=300, ties=False)
    # pytrec_eval drops queries with no retrieved doc and breaks ties differently (no ties here): compare the rest.
    qrels = {q: rels for q, rels in qrels.items() if run.get(q) and any(rel > 0 for rel in rels.values())}
    k_values = (1, 5, 10, 100)
    cutoffs = ",".join(map(str, k_values))
    measures = {f"ndcg_cut.{cutoffs}", f"recall.{cutoffs}", f"map_cut.{cutoffs}", f"P.{cutoffs}", "recip_rank"}
    expected = pytrec_eval.RelevanceEvaluator(qrels, measures).evaluate(run)
    _, scores = evaluate_run(run, qrels, k_values, remove_self=False, per_query=True)
    assert set(scores) == set(expected) and len(scores) > 200
    names = {"ndcg": "ndcg_cut_{}", "recall": "recall_{}", "map": "map_cut_{}", "precision": "P_{}"}
    for query_id, theirs in expected.items():
        for k in k_values:
            for ours, template in names.items():
                assert scores[query_id][f"{ours}@{k}"] == pytest.approx(theirs[template.format(k)], abs=1e-9, rel=0)
        # Rankings hold fewer than 100 docs, so MRR@100 is the uncut reciprocal rank.
        assert scores[query_id]["mrr@100"] == pytest.approx(theirs["recip_rank"], abs=1e-9, rel=0)
