"""BRIGHT topic and qrels files (evaluation only: BRIGHT's authors ask that it not be used for training).

The documents are only on the Hugging Face Hub (`xlang-ai/BRIGHT`); here the queries serve the evaluation
protocol (excluded ids, qrels) and the StackExchange proxy task of [`load_bright_stackexchange_proxy`].
"""

from __future__ import annotations

import os
from pathlib import Path

from datasets import Dataset

from .jsonl import DataFormatError, read_jsonl
from .paths import require_file, shared_data_dir


BRIGHT_TASKS = (
    "aops",
    "biology",
    "earth-science",
    "economics",
    "leetcode",
    "pony",
    "psychology",
    "robotics",
    "stackoverflow",
    "sustainable-living",
    "theoremqa-questions",
    "theoremqa-theorems",
)
STACKEXCHANGE_TASKS = (
    "biology",
    "earth-science",
    "economics",
    "psychology",
    "robotics",
    "stackoverflow",
    "sustainable-living",
)
EXCLUDED_SENTINEL = "N/A"
_FIELDS = ("id", "query", "reasoning", "excluded_ids", "gold_ids", "gold_ids_long", "gold_answer")


def normalize_task(task: str) -> str:
    """Accept `earth_science` as well as `earth-science`; raise a `ValueError` listing the tasks otherwise."""
    name = task.strip().lower().replace("_", "-")
    if name not in BRIGHT_TASKS:
        raise ValueError(f"Unknown BRIGHT task {task!r}. Known tasks: {', '.join(BRIGHT_TASKS)}.")
    return name


def _bright_dir(data_dir: str | os.PathLike | None) -> Path:
    return Path(data_dir) if data_dir is not None else shared_data_dir() / "bright"


def load_bright(tasks: str | list[str] | None = None, data_dir: str | os.PathLike | None = None) -> Dataset:
    """BRIGHT queries as one `Dataset`.

    Args:
        tasks: one task, a list, or `None` for all 12.
        data_dir: folder with `<task>.jsonl.gz`; defaults to `shared/data/bright`.

    Returns:
        Columns `task`, `id`, `query`, `reasoning`, `excluded_ids` (the `"N/A"` sentinel removed), `gold_ids`,
        `gold_ids_long`, `gold_answer` (`"N/A"` where absent). 1,384 rows for all tasks.
    """
    tasks = BRIGHT_TASKS if tasks is None else [tasks] if isinstance(tasks, str) else tasks
    rows = []
    for task in map(normalize_task, tasks):
        path = require_file(_bright_dir(data_dir) / f"{task}.jsonl.gz", f"BRIGHT topic file for {task!r}")
        for line_number, row in read_jsonl(path, required=_FIELDS):
            if not isinstance(row["excluded_ids"], list):
                raise DataFormatError(f"{path}:{line_number}: excluded_ids must be a list.")
            rows.append(
                {
                    "task": task,
                    **{field: row[field] for field in _FIELDS},
                    "id": str(row["id"]),
                    "excluded_ids": [doc for doc in row["excluded_ids"] if doc != EXCLUDED_SENTINEL],
                }
            )
    return Dataset.from_list(rows)


def load_bright_qrels(task: str, data_dir: str | os.PathLike | None = None) -> dict[str, dict[str, int]]:
    """TREC qrels of one task: query id -> document id -> relevance.

    Raises:
        DataFormatError: on a line that is not `qid 0 docid rel` (names file and line).
    """
    task = normalize_task(task)
    path = require_file(_bright_dir(data_dir) / f"qrels.{task}.txt", f"BRIGHT qrels for {task!r}")
    qrels: dict[str, dict[str, int]] = {}
    with open(path, encoding="utf-8") as handle:
        for line_number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            parts = line.split()
            if len(parts) != 4 or not parts[3].lstrip("-").isdigit():
                raise DataFormatError(f"{path}:{line_number}: expected 'qid 0 docid relevance', got {line!r}.")
            qrels.setdefault(parts[0], {})[parts[2]] = int(parts[3])
    return qrels


def load_bright_stackexchange_proxy(
    data_dir: str | os.PathLike | None = None,
) -> tuple[Dataset, Dataset, dict[str, dict[str, int]]]:
    """The StackExchange proxy task: retrieve each post's accepted answer among all 7 tasks' answers.

    BRIGHT's documents are not available offline, but its 7 StackExchange tasks carry each post's
    `gold_answer`. Pooling those answers gives a corpus of 749 documents in which every query has exactly one
    relevant document, its own answer; the other tasks' answers make it cross-domain.

    Returns:
        `(queries, corpus, qrels)`: queries with `id` (`"{task}/{id}"`), `query`, `reasoning`, `task`; corpus with
        `id` (`"{task}/{id}/answer"`), `title` (empty) and `text`; qrels mapping query id -> {answer id: 1}.
    """
    topics = load_bright(list(STACKEXCHANGE_TASKS), data_dir=data_dir)
    queries, corpus, qrels = [], [], {}
    for row in topics:
        if row["gold_answer"] in ("", EXCLUDED_SENTINEL):
            continue
        qid, doc_id = f"{row['task']}/{row['id']}", f"{row['task']}/{row['id']}/answer"
        queries.append({"id": qid, "query": row["query"], "reasoning": row["reasoning"], "task": row["task"]})
        corpus.append({"id": doc_id, "title": "", "text": row["gold_answer"]})
        qrels[qid] = {doc_id: 1}
    return Dataset.from_list(queries), Dataset.from_list(corpus), qrels
