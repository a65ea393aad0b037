"""The demo corpus shipped with the package: original text written for hf_latent (Apache-2.0)."""

from __future__ import annotations

import json
from pathlib import Path

from datasets import Dataset

from .multihop import MultiHopQA, split_by_id


DEMO_CORPUS_FILE = Path(__file__).with_name("demo_corpus.json")


def load_demo_corpus() -> MultiHopQA:
    """48 passages about an invented region and 24 two-hop questions with rationales and per-hop thoughts.

    Questions carry `hops` (`thought` and `sub_query` text per hop) besides the common columns; splits are
    60/20/20 by question id.
    """
    data = json.loads(DEMO_CORPUS_FILE.read_text(encoding="utf-8"))
    passage_ids = {passage["id"] for passage in data["passages"]}
    splits = split_by_id([question["id"] for question in data["questions"]])
    questions = []
    for question in data["questions"]:
        supporting = question["supporting_ids"]
        questions.append(
            {
                "id": question["id"],
                "question": question["question"],
                "answers": question["answers"],
                "supporting_ids": supporting,
                # Every other passage is a candidate negative; the demo corpus is small enough.
                "negative_ids": sorted(passage_ids - set(supporting)),
                "reasoning": question["reasoning"],
                "hops": question["hops"],
                "split": splits[question["id"]],
            }
        )
    return MultiHopQA(corpus=Dataset.from_list(data["passages"]), questions=Dataset.from_list(questions), name="demo")
