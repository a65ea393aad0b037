"""The in-memory shape shared by every multi-hop QA source: a passage corpus plus questions over it."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from datasets import Dataset


SPLITS = ("train", "dev", "test")


@dataclass
class MultiHopQA:
    """A closed-corpus multi-hop QA set.

    Attributes:
        corpus: `Dataset` with columns `id`, `title`, `text` (each passage once).
        questions: `Dataset` with columns `id`, `question`, `answers` (gold aliases), `supporting_ids` (passage
            ids in hop order: first hop, then the hop that holds the answer), `negative_ids` (other passages
            shown with the question: hard negatives), `reasoning` (an explicit rationale, `""` if none),
            `split` (`train`, `dev` or `test`).
        name: short name of the source.
    """

    corpus: Dataset
    questions: Dataset
    name: str

    def split(self, split: str) -> Dataset:
        """The questions of one split (`train`, `dev` or `test`)."""
        if split not in SPLITS:
            raise ValueError(f"Unknown split {split!r}; choose one of {SPLITS}.")
        return self.questions.filter(lambda row: row["split"] == split)

    def passages_by_id(self) -> dict[str, dict]:
        """Map passage id -> `{"id", "title", "text"}`."""
        return {row["id"]: row for row in self.corpus}


def passage_id(prefix: str, title: str, text: str) -> str:
    """Content-derived passage id, stable across runs: `{prefix}-{sha1(title, text)[:12]}`."""
    digest = hashlib.sha1(f"{title}\n{text}".encode()).hexdigest()[:12]
    return f"{prefix}-{digest}"


def split_by_id(ids: list[str], fractions: tuple[float, float, float] = (0.6, 0.2, 0.2)) -> dict[str, str]:
    """Deterministic train/dev/test assignment by question id (never by passage).

    Ids are ordered by the SHA-1 of the id, then cut at the cumulative fractions, so the split sizes are exact
    and do not depend on file order.
    """
    if abs(sum(fractions) - 1.0) > 1e-9 or min(fractions) < 0:
        raise ValueError(f"fractions must be non-negative and sum to 1, got {fractions}.")
    ordered = sorted(ids, key=lambda qid: hashlib.sha1(qid.encode()).hexdigest())
    n_train = round(fractions[0] * len(ordered))
    n_dev = round(fractions[1] * len(ordered))
    assignment = {}
    for position, qid in enumerate(ordered):
        assignment[qid] = "train" if position < n_train else "dev" if position < n_train + n_dev else "test"
    return assignment


_WORD = re.compile(r"\w+")


def title_overlap(title: str, question: str) -> float:
    """Share of the title's lower-cased word tokens that also occur in the question (0 for an empty title)."""
    title_words = set(_WORD.findall(title.lower()))
    if not title_words:
        return 0.0
    return len(title_words & set(_WORD.findall(question.lower()))) / len(title_words)
