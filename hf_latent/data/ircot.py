"""IRCoT's hand-written HotpotQA chain-of-thought annotations (Apache-2.0), as explicit multi-hop fixtures."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from datasets import Dataset

from .jsonl import DataFormatError
from .multihop import MultiHopQA, passage_id, split_by_id
from .paths import require_file, shared_data_dir


ANNOTATIONS_FILE = Path("ircot") / "hotpotqa.annotations.jsonnet"
CONTEXTS_FILE = Path("ircot") / "hotpotqa.gold_with_3_distractors_cot.txt"
_ANSWER = re.compile(r"So the answer is:\s*(.+?)\.?\s*$")


def _parse_contexts(path: Path) -> dict[str, list[tuple[str, str]]]:
    """qid -> [(title, paragraph text)] from the "Wikipedia Title: ..." blocks of the rendered prompt file."""
    contexts: dict[str, list[tuple[str, str]]] = {}
    for block in path.read_text(encoding="utf-8").split("# METADATA: ")[1:]:
        header, _, body = block.partition("\n")
        qid = json.loads(header)["qid"]
        paragraphs = []
        for chunk in body.split("Wikipedia Title: ")[1:]:
            title, _, text = chunk.partition("\n")
            text = text.split("\n\nQ: ")[0].strip()
            paragraphs.append((title.strip(), text))
        contexts[qid] = paragraphs
    return contexts


def load_ircot_hotpotqa(data_dir: str | os.PathLike | None = None) -> MultiHopQA:
    """The 29 IRCoT-annotated HotpotQA questions, with their gold and distractor paragraphs as a corpus.

    Each question gets `reasoning` (the CoT sentences, one per paragraph, joined by blank lines) and `hops`:
    one `{"thought", "sub_query"}` per step that reads a paragraph, where the thought is IRCoT's CoT sentence
    and the sub-query is the title of the paragraph that step reads (IRCoT writes no search queries).

    Raises:
        FileNotFoundError: when a file is missing. DataFormatError: when an annotation names a paragraph title
            that the context file lacks, or has no "So the answer is:" sentence.
    """
    import _jsonnet  # the annotations are Jsonnet (comments, single quotes, trailing commas)

    folder = Path(data_dir) if data_dir is not None else shared_data_dir()
    annotations_path = require_file(folder / ANNOTATIONS_FILE, "IRCoT HotpotQA annotations")
    contexts = _parse_contexts(require_file(folder / CONTEXTS_FILE, "IRCoT HotpotQA context file"))
    annotations = json.loads(_jsonnet.evaluate_file(str(annotations_path)))
    passages: dict[str, dict] = {}
    questions = []
    for annotation in annotations:
        qid = annotation["question_id"]
        if qid not in contexts:
            raise DataFormatError(f"{annotations_path}: question {qid} has no paragraphs in {CONTEXTS_FILE}.")
        by_title = {}
        for title, text in contexts[qid]:
            pid = passage_id("ircot", title, text)
            passages.setdefault(pid, {"id": pid, "title": title, "text": text})
            by_title[title] = pid
        sentences = [step["cot_sent"].strip() for step in annotation["reasoning_steps"]]
        hops, supporting = [], []
        for step, sentence in zip(annotation["reasoning_steps"], sentences):
            title = step["paragraphs"][0]["title"]
            if title is None:
                continue
            if title not in by_title:
                raise DataFormatError(f"{annotations_path}: question {qid} cites {title!r}, absent from its context.")
            hops.append({"thought": sentence, "sub_query": title})
            supporting.append(by_title[title])
        match = _ANSWER.search(sentences[-1])
        if match is None:
            raise DataFormatError(f"{annotations_path}: question {qid} has no 'So the answer is:' sentence.")
        questions.append(
            {
                "id": qid,
                "question": annotation["question_text"],
                "answers": [match.group(1).strip()],
                "supporting_ids": supporting,
                "negative_ids": [pid for pid in by_title.values() if pid not in supporting],
                "reasoning": "\n\n".join(sentences),
                "hops": hops,
            }
        )
    splits = split_by_id([q["id"] for q in questions])
    for question in questions:
        question["split"] = splits[question["id"]]
    return MultiHopQA(
        corpus=Dataset.from_list(list(passages.values())),
        questions=Dataset.from_list(questions),
        name="ircot-hotpotqa",
    )
