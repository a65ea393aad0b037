"""HotpotQA-500 (IRCoT's sub-sample of the distractor dev set) as a closed corpus of about 4,900 passages."""

from __future__ import annotations

import os
from pathlib import Path

from datasets import Dataset

from .jsonl import DataFormatError, read_jsonl
from .multihop import MultiHopQA, passage_id, split_by_id, title_overlap
from .paths import require_file, shared_data_dir


HOTPOTQA_FILE = Path("hotpotqa") / "dev_subsampled_500.jsonl"


def load_hotpotqa(path: str | os.PathLike | None = None) -> MultiHopQA:
    """Load HotpotQA-500 with every paragraph pooled into one deduplicated corpus.

    Each question keeps its two supporting paragraphs in hop order: the first hop is the supporting paragraph
    whose title overlaps the question most; the second hop (the bridge, which needs the first to be found) is
    the other one. The 8 distractors become `negative_ids`. Splits are 300/100/100 by question id.

    Args:
        path: the JSONL file; defaults to `shared/data/hotpotqa/dev_subsampled_500.jsonl`.

    Raises:
        FileNotFoundError: when the file is missing.
        DataFormatError: on a malformed line, a missing field, or a question without exactly 2 supporting
            paragraphs (the message names the line).
    """
    path = require_file(path or shared_data_dir() / HOTPOTQA_FILE, "HotpotQA-500 file")
    passages: dict[str, dict] = {}
    questions = []
    required = ("question_id", "question_text", "answers_objects", "contexts")
    for line_number, row in read_jsonl(path, required=required):
        supporting, negatives = [], []
        for context in row["contexts"]:
            try:
                title, text, is_supporting = context["title"], context["paragraph_text"], context["is_supporting"]
            except KeyError as error:
                raise DataFormatError(f"{path}:{line_number}: a context lacks field {error}.") from error
            pid = passage_id("hotpotqa", title, text)
            passages.setdefault(pid, {"id": pid, "title": title, "text": text})
            (supporting if is_supporting else negatives).append((pid, title))
        if len(supporting) != 2:
            raise DataFormatError(f"{path}:{line_number}: expected 2 supporting paragraphs, got {len(supporting)}.")
        question = row["question_text"]
        # Stable sort: on equal overlap the file order decides.
        supporting.sort(key=lambda item: -title_overlap(item[1], question))
        answers = [span for obj in row["answers_objects"] for span in obj.get("spans", []) if span.strip()]
        if not answers:
            raise DataFormatError(f"{path}:{line_number}: question {row['question_id']} has no answer span.")
        questions.append(
            {
                "id": row["question_id"],
                "question": question,
                "answers": answers,
                "supporting_ids": [pid for pid, _ in supporting],
                "negative_ids": [pid for pid, _ in negatives if pid not in {s for s, _ in supporting}],
                "reasoning": "",
            }
        )
    splits = split_by_id([q["id"] for q in questions])
    for question in questions:
        question["split"] = splits[question["id"]]
    return MultiHopQA(
        corpus=Dataset.from_list(list(passages.values())), questions=Dataset.from_list(questions), name="hotpotqa"
    )
