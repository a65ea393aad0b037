"""Evaluate any text encoder on a [`RetrievalTask`]: index the corpus, search, score, time the queries."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..retrieval import DenseIndex
from .retrieval_metrics import evaluate_run
from .retrieval_tasks import RetrievalTask


@dataclass
class RetrievalReport:
    """Metrics and timings of one encoder on one task.

    Attributes:
        task / encoder: names.
        metrics: `ndcg@k`, `recall@k`, `mrr@k`, `map@k`, `precision@k` (fractions in [0, 1]).
        query_ms_per_query: wall time to encode the queries, per query (ms), at `batch_size`.
        corpus_seconds: wall time to encode and index the corpus (s).
        num_queries / num_documents: sizes.
        extra: anything the encoder reports (e.g. forward calls per text).
    """

    task: str
    encoder: str
    metrics: dict[str, float]
    query_ms_per_query: float
    corpus_seconds: float
    num_queries: int
    num_documents: int
    batch_size: int
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


def evaluate_retrieval(
    encoder,
    task: RetrievalTask,
    k_values: Sequence[int] = (1, 5, 10, 100),
    batch_size: int = 8,
    index: DenseIndex | None = None,
    show_progress_bar: bool = True,
) -> tuple[RetrievalReport, dict[str, list[str]]]:
    """Encode the corpus into an exact inner-product index, search every query, and score the run.

    Args:
        encoder: any [`~hf_latent.retrieval.TextEncoder`]-like object (`name`, `embedding_dim`, `encode`).
        task: the benchmark.
        k_values: cut-offs of the metrics; the run keeps the top `max(k_values)` documents.
        batch_size: encoding batch size for corpus and queries.
        index: a prebuilt index of `task.corpus` for this encoder (skips corpus encoding).
        show_progress_bar: progress bars for corpus and query encoding.

    Returns:
        `(report, rankings)` with `rankings` mapping query id -> ranked document ids.
    """
    start = time.perf_counter()
    if index is None:
        index = DenseIndex.from_corpus(
            task.document_texts,
            list(task.corpus["id"]),
            encoder,
            batch_size=batch_size,
            show_progress_bar=show_progress_bar,
        )
    corpus_seconds = time.perf_counter() - start
    index.check_encoder(encoder)
    start = time.perf_counter()
    query_embeddings = encoder.encode(
        task.queries, batch_size=batch_size, show_progress_bar=show_progress_bar, is_query=True
    )
    query_seconds = time.perf_counter() - start
    # Excluded ids and the query itself are removed after search, so fetch a few extra.
    depth = max(k_values) + max((len(ids) for ids in task.excluded_ids.values()), default=0) + 1
    scores, ids = index.search(query_embeddings, k=min(depth, len(index)))
    run = {qid: dict(zip(doc_ids, map(float, row))) for qid, doc_ids, row in zip(task.query_ids, ids, scores)}
    metrics = evaluate_run(run, task.qrels, k_values=tuple(k_values), excluded_ids=task.excluded_ids)
    report = RetrievalReport(
        task=task.name,
        encoder=encoder.name,
        metrics=metrics,
        query_ms_per_query=1000.0 * query_seconds / len(task.queries),
        corpus_seconds=corpus_seconds,
        num_queries=len(task.queries),
        num_documents=len(index),
        batch_size=batch_size,
    )
    return report, {qid: doc_ids for qid, doc_ids in zip(task.query_ids, ids)}


def reports_to_markdown(
    reports: Sequence[RetrievalReport], metric_names: Sequence[str] = ("ndcg@10", "recall@10")
) -> str:
    """A Markdown table: one row per (task, encoder), metric columns in percent, query latency in ms."""
    header = ["task", "encoder", *metric_names, "query ms/q"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for report in reports:
        cells = [report.task, report.encoder]
        cells += [f"{100 * report.metrics[name]:.1f}" if name in report.metrics else "-" for name in metric_names]
        cells.append(f"{report.query_ms_per_query:.1f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_reports(reports: Sequence[RetrievalReport], output_dir: str | Path, stem: str = "retrieval") -> Path:
    """Write `{stem}.json` and `{stem}.md` into `output_dir` and return the JSON path."""
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    path = output_dir / f"{stem}.json"
    path.write_text(json.dumps([r.to_dict() for r in reports], indent=2))
    (output_dir / f"{stem}.md").write_text(reports_to_markdown(reports) + "\n")
    return path
