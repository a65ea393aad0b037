from __future__ import annotations

from collections import Counter

import pytest

from hf_latent.data import (
    BRIGHT_TASKS,
    DataFormatError,
    load_bright,
    load_bright_qrels,
    load_bright_stackexchange_proxy,
)


def test_all_tasks_give_1384_queries():
    queries = load_bright()
    assert queries.num_rows == 1384
    counts = Counter(queries["task"])
    assert set(counts) == set(BRIGHT_TASKS)
    assert counts["biology"] == 103 and counts["theoremqa-questions"] == 194


def test_excluded_ids_drop_the_sentinel():
    aops = load_bright("aops")
    assert all("N/A" not in row for row in aops["excluded_ids"])
    assert aops[0]["excluded_ids"][:2] == ["aops_2019_AMC_12A_Problems/Problem_17", "camel_0"]
    biology = load_bright("biology")
    assert all(row == [] for row in biology["excluded_ids"])


def test_task_names_accept_underscores_and_reject_unknown():
    assert load_bright("earth_science").num_rows == 116
    with pytest.raises(ValueError, match="Unknown BRIGHT task 'chemistry'. Known tasks: aops, biology"):
        load_bright("chemistry")


def test_qrels_match_gold_ids():
    queries = load_bright("biology")
    qrels = load_bright_qrels("biology")
    assert sum(len(docs) for docs in qrels.values()) == 393
    first = queries[0]
    assert set(qrels[first["id"]]) == set(first["gold_ids"])


def test_qrels_bad_line(tmp_path):
    (tmp_path / "qrels.pony.txt").write_text("1 0 doc 1\nbroken line\n")
    with pytest.raises(DataFormatError, match=r"qrels.pony.txt:2: expected 'qid 0 docid relevance'"):
        load_bright_qrels("pony", data_dir=tmp_path)


def test_missing_topic_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="BRIGHT topic file for 'pony' not found"):
        load_bright("pony", data_dir=tmp_path)


def test_stackexchange_proxy():
    queries, corpus, qrels = load_bright_stackexchange_proxy()
    assert queries.num_rows == corpus.num_rows == len(qrels) == 749
    assert set(queries["task"]) == {
        "biology",
        "earth-science",
        "economics",
        "psychology",
        "robotics",
        "stackoverflow",
        "sustainable-living",
    }
    assert all(len(docs) == 1 for docs in qrels.values())
    assert len(set(corpus["id"])) == 749
