"""Retrieval evaluation tasks: queries, a corpus, graded qrels and excluded ids, ready for any encoder.

- `hotpotqa`: HotpotQA-500 questions against the pooled 4,858-passage corpus. `relevance="both"` counts both
  supporting paragraphs; `relevance="second_hop"` only the one whose title overlaps the question least (the
  bridge hop that needs reasoning to find).
- `bright-se-proxy`: the 749 posts of BRIGHT's seven StackExchange tasks, each retrieving its own accepted answer
  among all of them (out of domain; BRIGHT's documents are not available offline).
- `bright/<task>`: BRIGHT proper through `load_dataset("xlang-ai/BRIGHT", ...)`, for machines with Hub access.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from datasets import Dataset

from ..data import load_bright, load_bright_qrels, load_bright_stackexchange_proxy, load_hotpotqa
from ..data.bright import normalize_task


HOTPOTQA_INSTRUCTION = "Given a multi-hop question, retrieve Wikipedia passages that help answer the question."
# The string the released LaSER BRIGHT evaluation ran with for every subset (specs/laser.md §8).
BRIGHT_INSTRUCTION = "Given a post, retrieve relevant passages that help answer the post."


@dataclass
class RetrievalTask:
    """One retrieval benchmark.

    Attributes:
        name: task name, e.g. `hotpotqa-test-both`.
        query_ids / queries / reasonings: parallel lists; `reasonings` holds an explicit rationale per query
            (empty string when none), used by rewrite-style baselines and LaSER's explicit view.
        corpus: `Dataset` with `id`, `title`, `text`.
        qrels: query id -> document id -> relevance.
        excluded_ids: query id -> ids to drop from its ranking (BRIGHT protocol).
        instruction: the query instruction for instruction-following encoders.
    """

    name: str
    query_ids: list[str]
    queries: list[str]
    reasonings: list[str]
    corpus: Dataset
    qrels: dict[str, dict[str, int]]
    excluded_ids: dict[str, list[str]] = field(default_factory=dict)
    instruction: str = HOTPOTQA_INSTRUCTION

    def __post_init__(self):
        if not (len(self.query_ids) == len(self.queries) == len(self.reasonings)):
            raise ValueError("query_ids, queries and reasonings must have the same length.")
        if not self.query_ids:
            raise ValueError(f"Retrieval task {self.name!r} has no queries.")

    @property
    def document_texts(self) -> list[str]:
        """Documents as encoded: `"{title}\\n{text}"` when a title exists, else the text."""
        return [f"{row['title']}\n{row['text']}" if row["title"] else row["text"] for row in self.corpus]

    def subset(self, max_queries: int | None) -> RetrievalTask:
        """The first `max_queries` queries (the corpus is kept whole)."""
        if max_queries is None or max_queries >= len(self.query_ids):
            return self
        if max_queries < 1:
            raise ValueError(f"max_queries must be >= 1, got {max_queries}.")
        keep = self.query_ids[:max_queries]
        return RetrievalTask(
            name=f"{self.name}[:{max_queries}]",
            query_ids=keep,
            queries=self.queries[:max_queries],
            reasonings=self.reasonings[:max_queries],
            corpus=self.corpus,
            qrels={qid: self.qrels[qid] for qid in keep if qid in self.qrels},
            excluded_ids={qid: self.excluded_ids[qid] for qid in keep if qid in self.excluded_ids},
            instruction=self.instruction,
        )


def hotpotqa_task(split: str = "test", relevance: str = "both", split_corpus: bool = False) -> RetrievalTask:
    """HotpotQA-500 retrieval: one split's questions against the whole pooled corpus (or the split's own pool).

    Args:
        split: `train`, `dev` or `test`.
        relevance: `both` (the two supporting paragraphs) or `second_hop` (the bridge paragraph alone).
        split_corpus: search only the split's own paragraphs (its questions' supporting paragraphs and distractors,
            1,000 for the 100 test questions) instead of all 4,858; a cheaper, easier task for CPU comparisons.
    """
    if relevance not in {"both", "second_hop"}:
        raise ValueError(f"relevance must be 'both' or 'second_hop', got {relevance!r}.")
    qa = load_hotpotqa()
    questions = qa.split(split)
    corpus = qa.corpus
    if split_corpus:
        pool = {pid for row in questions for pid in (*row["supporting_ids"], *row["negative_ids"])}
        corpus = corpus.filter(lambda row: row["id"] in pool)
    qrels = {
        row["id"]: {pid: 1 for pid in (row["supporting_ids"] if relevance == "both" else row["supporting_ids"][1:])}
        for row in questions
    }
    return RetrievalTask(
        name=f"hotpotqa-{split}-{relevance}" + ("-split_corpus" if split_corpus else ""),
        query_ids=list(questions["id"]),
        queries=list(questions["question"]),
        reasonings=list(questions["reasoning"]),
        corpus=corpus,
        qrels=qrels,
    )


def bright_stackexchange_proxy_task() -> RetrievalTask:
    """BRIGHT StackExchange proxy: each post retrieves its accepted answer among all 749 answers."""
    queries, corpus, qrels = load_bright_stackexchange_proxy()
    return RetrievalTask(
        name="bright-se-proxy",
        query_ids=list(queries["id"]),
        queries=list(queries["query"]),
        reasonings=list(queries["reasoning"]),
        corpus=corpus,
        qrels=qrels,
        instruction=BRIGHT_INSTRUCTION,
    )


def bright_task(task: str, long_documents: bool = False) -> RetrievalTask:  # pragma: no cover - needs the Hub
    """BRIGHT proper for one task, with documents from the Hub (`xlang-ai/BRIGHT`).

    Queries, excluded ids and qrels come from the local topic files; documents need
    `load_dataset("xlang-ai/BRIGHT", "documents" or "long_documents", split=task)` and so Hub access.
    """
    from datasets import load_dataset

    task = normalize_task(task)
    topics = load_bright(task)
    documents = load_dataset(
        "xlang-ai/BRIGHT", "long_documents" if long_documents else "documents", split=task.replace("-", "_")
    )
    corpus = Dataset.from_dict({"id": documents["id"], "title": [""] * len(documents), "text": documents["content"]})
    return RetrievalTask(
        name=f"bright-{task}",
        query_ids=list(topics["id"]),
        queries=list(topics["query"]),
        reasonings=list(topics["reasoning"]),
        corpus=corpus,
        qrels=load_bright_qrels(task),
        excluded_ids=dict(zip(topics["id"], topics["excluded_ids"])),
        instruction=BRIGHT_INSTRUCTION,
    )


def load_retrieval_task(name: str) -> RetrievalTask:
    """Build a task by name: `hotpotqa[-<split>][-second_hop][-split_corpus]`, `bright-se-proxy` or `bright/<task>`."""
    if name == "bright-se-proxy":
        return bright_stackexchange_proxy_task()
    if name.startswith("bright/"):
        return bright_task(name.split("/", 1)[1])
    if name.startswith("hotpotqa"):
        parts = name.split("-")[1:]
        split = next((p for p in parts if p in {"train", "dev", "test"}), "test")
        relevance = "second_hop" if "second_hop" in parts else "both"
        unknown = [p for p in parts if p not in {"train", "dev", "test", "second_hop", "both", "split_corpus"}]
        if not unknown:
            return hotpotqa_task(split, relevance, split_corpus="split_corpus" in parts)
    raise ValueError(
        f"Unknown retrieval task {name!r}. Use hotpotqa[-train|-dev|-test][-both|-second_hop][-split_corpus], "
        "bright-se-proxy, "
        "or bright/<task> (needs Hub access)."
    )
