from __future__ import annotations

import json
from collections import Counter

import pytest

from hf_latent.data import DataFormatError, load_hotpotqa
from hf_latent.data.multihop import split_by_id, title_overlap


def test_loads_500_questions_and_pooled_corpus(hotpotqa):
    assert hotpotqa.questions.num_rows == 500
    # 4,931 paragraphs in the file, 4,858 distinct (title, text) pairs.
    assert hotpotqa.corpus.num_rows == 4858
    ids = hotpotqa.corpus["id"]
    assert len(set(ids)) == len(ids)
    supporting = Counter(pid for row in hotpotqa.questions["supporting_ids"] for pid in row)
    corpus_ids = Counter(ids)
    assert all(corpus_ids[pid] == 1 for pid in supporting)
    assert all(len(row) == 2 for row in hotpotqa.questions["supporting_ids"])


def test_split_is_deterministic_by_question_id(hotpotqa):
    assert Counter(hotpotqa.questions["split"]) == {"train": 300, "dev": 100, "test": 100}
    again = load_hotpotqa()
    assert again.questions["split"] == hotpotqa.questions["split"]
    assert hotpotqa.split("test").num_rows == 100
    with pytest.raises(ValueError, match="Unknown split"):
        hotpotqa.split("validation")


def test_first_hop_overlaps_question_at_least_as_much(hotpotqa):
    passages = hotpotqa.passages_by_id()
    row = hotpotqa.questions[0]
    first, second = (passages[pid]["title"] for pid in row["supporting_ids"])
    assert (first, second) == ("Kiss and Tell (1945 film)", "Shirley Temple")
    for row in hotpotqa.questions.select(range(50)):
        first, second = (passages[pid]["title"] for pid in row["supporting_ids"])
        assert title_overlap(first, row["question"]) >= title_overlap(second, row["question"])


def test_answers_and_negatives(hotpotqa):
    row = hotpotqa.questions[0]
    assert row["answers"] == ["Chief of Protocol"]
    assert len(row["negative_ids"]) == 8
    assert not set(row["negative_ids"]) & set(row["supporting_ids"])


def test_split_by_id_sizes_and_validation():
    assignment = split_by_id([f"q{i}" for i in range(10)])
    assert Counter(assignment.values()) == {"train": 6, "dev": 2, "test": 2}
    with pytest.raises(ValueError, match="sum to 1"):
        split_by_id(["a"], fractions=(0.5, 0.5, 0.5))


def _write(path, lines):
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_missing_file_names_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="HotpotQA-500 file not found at .*nope.jsonl"):
        load_hotpotqa(tmp_path / "nope.jsonl")


def test_malformed_line_names_file_and_line(tmp_path):
    good = {
        "question_id": "q1",
        "question_text": "Who?",
        "answers_objects": [{"spans": ["A"]}],
        "contexts": [
            {"id": "0", "title": "T1", "paragraph_text": "x", "is_supporting": True},
            {"id": "1", "title": "T2", "paragraph_text": "y", "is_supporting": True},
        ],
    }
    path = _write(tmp_path / "bad.jsonl", [json.dumps(good), '{"question_id": "q2", '])
    with pytest.raises(DataFormatError, match=r"bad.jsonl:2: malformed JSON"):
        load_hotpotqa(path)
    path = _write(tmp_path / "missing.jsonl", [json.dumps({k: v for k, v in good.items() if k != "contexts"})])
    with pytest.raises(DataFormatError, match=r"missing.jsonl:1: missing field\(s\) \['contexts'\]"):
        load_hotpotqa(path)
    one_support = dict(good, contexts=good["contexts"][:1])
    path = _write(tmp_path / "one.jsonl", [json.dumps(one_support)])
    with pytest.raises(DataFormatError, match=r"one.jsonl:1: expected 2 supporting paragraphs, got 1"):
        load_hotpotqa(path)
