from __future__ import annotations

import json

import numpy as np
import pytest
from datasets import Dataset

from hf_latent.evaluation.retrieval_eval import evaluate_retrieval, write_reports
from hf_latent.evaluation.retrieval_tasks import RetrievalTask, load_retrieval_task
from hf_latent.retrieval import CallableEncoder


def _bag_of_letters(texts, is_query=False):
    """Deterministic toy embedding: letter counts of a-h."""
    return np.array([[text.lower().count(c) + 0.01 for c in "abcdefgh"] for text in texts], dtype=np.float32)


def _toy_task():
    corpus = Dataset.from_dict({"id": ["d1", "d2", "d3"], "title": ["", "", ""], "text": ["aaaa", "bbbb", "hhhh"]})
    return RetrievalTask(
        name="toy",
        query_ids=["q1", "q2"],
        queries=["aa", "bb"],
        reasonings=["", ""],
        corpus=corpus,
        qrels={"q1": {"d1": 1}, "q2": {"d1": 1, "d2": 1}},
        excluded_ids={"q2": ["d2"]},
    )


def test_evaluate_retrieval_scores_and_exclusions(tmp_path):
    encoder = CallableEncoder("letters", 8, _bag_of_letters)
    report, rankings = evaluate_retrieval(encoder, _toy_task(), k_values=(1, 3), show_progress_bar=False)
    assert rankings["q1"][0] == "d1"
    # q1: d1 at rank 1 -> ndcg@1 = 1. q2: d2 is excluded, so d1 (relevant) ranks first among d1/d3 and
    # recall@3 = 1/2 (d2 can never be retrieved).
    assert report.metrics["ndcg@1"] == pytest.approx(1.0)
    assert report.metrics["recall@3"] == pytest.approx((1.0 + 0.5) / 2)
    assert report.num_queries == 2 and report.num_documents == 3
    path = write_reports([report], tmp_path)
    assert json.loads(path.read_text())[0]["metrics"]["ndcg@1"] == pytest.approx(1.0)
    assert "| toy | letters |" in (tmp_path / "retrieval.md").read_text()


def test_task_names():
    task = load_retrieval_task("hotpotqa-dev-second_hop")
    assert task.name == "hotpotqa-dev-second_hop" and len(task.queries) == 100
    assert all(len(docs) == 1 for docs in task.qrels.values())
    assert load_retrieval_task("hotpotqa").name == "hotpotqa-test-both"
    assert len(task.subset(7).queries) == 7
    pooled, own = load_retrieval_task("hotpotqa-test"), load_retrieval_task("hotpotqa-test-both-split_corpus")
    assert own.name == "hotpotqa-test-both-split_corpus" and own.qrels == pooled.qrels
    # The test split's own paragraphs: every relevant paragraph is kept, the rest of the 4,858 pool is dropped.
    own_ids = set(own.corpus["id"])
    assert {pid for docs in own.qrels.values() for pid in docs} <= own_ids < set(pooled.corpus["id"])
    assert len(own_ids) == 1000 and len(pooled.corpus) == 4858
    with pytest.raises(ValueError, match="Unknown retrieval task 'msmarco'"):
        load_retrieval_task("msmarco")
    with pytest.raises(ValueError, match="no queries"):
        RetrievalTask("empty", [], [], [], Dataset.from_dict({"id": [], "title": [], "text": []}), {})
