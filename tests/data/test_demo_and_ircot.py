from __future__ import annotations

from collections import Counter

from hf_latent.data import load_demo_corpus, load_ircot_hotpotqa
from hf_latent.evaluation.qa_metrics import normalize_answer


def test_demo_corpus_is_consistent():
    demo = load_demo_corpus()
    assert demo.corpus.num_rows == 48 and demo.questions.num_rows == 24
    passages = demo.passages_by_id()
    for row in demo.questions:
        assert len(row["supporting_ids"]) == 2 and len(row["hops"]) == 2
        answer_passage = passages[row["supporting_ids"][1]]["text"]
        assert normalize_answer(row["answers"][0]) in normalize_answer(answer_passage)
        assert "\n\n" in row["reasoning"]
    assert Counter(demo.questions["split"]) == {"train": 14, "dev": 5, "test": 5}


def test_ircot_annotations():
    ircot = load_ircot_hotpotqa()
    assert ircot.questions.num_rows == 29
    passages = ircot.passages_by_id()
    row = next(r for r in ircot.questions if r["id"] == "5a835abe5542996488c2e426")
    assert row["answers"] == ["Scott Glenn"]
    assert [h["sub_query"] for h in row["hops"]] == ["Vertical Limit", "Scott Glenn"]
    assert [passages[pid]["title"] for pid in row["supporting_ids"]] == ["Vertical Limit", "Scott Glenn"]
    assert row["reasoning"].endswith("So the answer is: Scott Glenn.")
    assert all(len(ids) == 2 for ids in ircot.questions["supporting_ids"])
