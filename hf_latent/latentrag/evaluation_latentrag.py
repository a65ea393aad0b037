"""Evaluation of LatentRAG and its comparison systems: EM/F1, retrieval success, latency (specs §10–§11).

- [`evaluate_system`] runs any system (`question -> LatentRAGResult`, e.g. a [`LatentRAGPipeline`], a [`NaiveRAG`] or
  an [`ExplicitAgenticRAG`]) on a question set, one question at a time, and aggregates answer quality, retrieval
  success and the latency / forward-pass breakdown of the [`LatentRAGTrace`]s.
- [`write_results`] writes `results.json`, a Markdown table (`results.md`) and the latency-vs-EM plot
  (`latency_vs_em.png`).

**Retrieval success rate** (§10 [D], as in the issue): the share of retrieval steps whose retrieved documents contain
a gold answer (normalised, token-aligned substring of any alias, `hf_latent.evaluation.answer_in_text`, over title
and text) **or** a supporting paragraph of the question. Also reported separately: the answer-only rate (the paper's
definition) and the supporting-paragraph-only rate.

**Latency** (§11): per question the trace's `total_ms` (question in → answer out); for systems that decode latents
(`decode_latents=True`), the decoding time is added by default (`include_decoding=True`), since the decoded texts are
part of that system's output (paper Table 2). Forward passes likewise include the decoding passes.
"""

from __future__ import annotations

import json
import logging
import math
import os
import statistics
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from ..evaluation import answer_in_text, exact_match, token_f1
from .inference import STAGES, CorpusLookup, LatentRAGResult


logger = logging.getLogger(__name__)

RESULTS_JSON = "results.json"
RESULTS_MARKDOWN = "results.md"
LATENCY_PLOT = "latency_vs_em.png"

# Columns of the Markdown table: (key in the summary, header, format).
TABLE_COLUMNS = (
    ("system", "System", "{}"),
    ("num_questions", "Questions", "{:d}"),
    ("exact_match", "EM", "{:.2f}"),
    ("f1", "F1", "{:.2f}"),
    ("retrieval_success_rate", "Retrieval success", "{:.2f}"),
    ("mean_retrievals", "Retrievals / q", "{:.2f}"),
    ("mean_forward_passes", "Forward passes / q", "{:.1f}"),
    ("mean_latency_ms", "Mean latency (ms)", "{:.0f}"),
    ("median_latency_ms", "Median latency (ms)", "{:.0f}"),
)


def _question_fields(row: Any) -> tuple[str, list[str], list[str], str | None]:
    if isinstance(row, str):
        raise TypeError("evaluate_system needs questions with gold answers: dicts with `question` and `answers`.")
    question = row["question"]
    answers = row.get("answers") if isinstance(row, Mapping) else None
    if answers is None:
        answers = [row["answer"]] if "answer" in row else None
    if not answers:
        raise ValueError(f"Question {question!r} has no gold answers.")
    answers = [answers] if isinstance(answers, str) else list(answers)
    return question, answers, list(row.get("supporting_ids") or []), row.get("id")


def retrieval_step_success(
    retrieved_ids: Sequence[str],
    answers: Sequence[str],
    supporting_ids: Sequence[str],
    corpus: Mapping[str, Mapping[str, Any]] | None,
) -> dict[str, bool]:
    """Whether one retrieval step found a gold answer (in a document's title or text) and/or a supporting paragraph.

    Returns:
        `{"answer": bool, "support": bool, "success": answer or support}`.
    """
    supporting = set(supporting_ids)
    found_support = any(doc_id in supporting for doc_id in retrieved_ids)
    found_answer = False
    if corpus is not None:
        for doc_id in retrieved_ids:
            doc = corpus.get(doc_id) if hasattr(corpus, "get") else corpus[doc_id]
            if doc is None:
                continue
            text = f"{doc.get('title', '')}\n{doc.get('text', '')}"
            if answer_in_text(answers, text):
                found_answer = True
                break
    return {"answer": found_answer, "support": found_support, "success": found_answer or found_support}


def _mean(values: Sequence[float]) -> float:
    return float(sum(values) / len(values)) if values else float("nan")


def summarize_records(records: Sequence[Mapping[str, Any]], system: str) -> dict[str, Any]:
    """Aggregate per-question records (as produced by [`evaluate_system`]) into the summary metrics."""
    if not records:
        raise ValueError("No records to summarise.")
    latencies = [r["latency_ms"] for r in records]
    steps = [step for r in records for step in r["retrieval_steps"]]
    stage_ms = {}
    stages = list(STAGES) + sorted({k for r in records for k in r["stage_ms"]} - set(STAGES))
    for stage in stages:
        stage_ms[stage] = _mean([r["stage_ms"].get(stage, 0.0) for r in records])
    passes_by_stage = {}
    for stage in sorted({k for r in records for k in r["forward_passes"]}):
        passes_by_stage[stage] = _mean([r["forward_passes"].get(stage, 0) for r in records])
    sorted_latencies = sorted(latencies)
    p90 = sorted_latencies[min(len(latencies) - 1, math.ceil(0.9 * len(latencies)) - 1)]
    return {
        "system": system,
        "num_questions": len(records),
        "exact_match": _mean([r["exact_match"] for r in records]),
        "f1": _mean([r["f1"] for r in records]),
        "retrieval_success_rate": _mean([float(s["success"]) for s in steps]),
        "retrieval_answer_rate": _mean([float(s["answer"]) for s in steps]),
        "retrieval_support_rate": _mean([float(s["support"]) for s in steps]),
        "num_retrieval_steps": len(steps),
        "mean_retrievals": _mean([r["num_retrievals"] for r in records]),
        "forced_answer_rate": _mean([float(r["forced_answer"]) for r in records]),
        "mean_forward_passes": _mean([r["num_forward_passes"] for r in records]),
        "mean_generated_tokens": _mean([r["num_generated_tokens"] for r in records]),
        "mean_latency_ms": _mean(latencies),
        "median_latency_ms": float(statistics.median(latencies)),
        "p90_latency_ms": float(p90),
        "stage_ms": stage_ms,
        "forward_passes_by_stage": passes_by_stage,
    }


def evaluate_system(
    system: Callable[[str], LatentRAGResult],
    questions: Iterable[Mapping[str, Any]],
    corpus: Mapping[str, Mapping[str, Any]] | Any = None,
    *,
    name: str | None = None,
    include_decoding: bool = True,
    show_progress_bar: bool = True,
    keep_records: bool = True,
) -> dict[str, Any]:
    """Run `system` on every question (batch size 1, §11) and aggregate answer quality, retrieval and latency.

    Args:
        system (`Callable[[str], LatentRAGResult]`): answers one question and returns its trace (LatentRAG pipeline,
            `NaiveRAG`, `ExplicitAgenticRAG`, or a closure around `run_latentrag`).
        questions: rows with `question`, `answers` (gold aliases) and optionally `supporting_ids` and `id` (a
            `datasets.Dataset` of a `MultiHopQA` works).
        corpus (*optional*): a mapping id → {title, text} or a `datasets.Dataset`; needed for the answer-in-document
            half of the retrieval success (without it only supporting ids count).
        name (`str`, *optional*): system name in the results; defaults to the trace's `system`.
        include_decoding (`bool`, *optional*, defaults to `True`): add the latent-decoding time and passes
            (`stage_ms["decoding"]`, `forward_passes["decoding"]`) to the latency and pass counts.
        show_progress_bar (`bool`, *optional*, defaults to `True`): a tqdm bar.
        keep_records (`bool`, *optional*, defaults to `True`): include the per-question records under `"records"`.

    Returns:
        `dict`: `system`, `num_questions`, `exact_match`, `f1` (fractions in [0, 1]), `retrieval_success_rate` (answer
        or supporting paragraph), `retrieval_answer_rate`, `retrieval_support_rate`, `num_retrieval_steps`,
        `mean_retrievals`, `forced_answer_rate`, `mean_forward_passes`, `mean_generated_tokens`, `mean_latency_ms`,
        `median_latency_ms`, `p90_latency_ms`, `stage_ms` (mean per stage), `forward_passes_by_stage` (mean per
        stage), `wall_time_s` and, with `keep_records`, `records`.
    """
    from tqdm.auto import tqdm

    lookup = CorpusLookup(corpus) if corpus is not None else None
    rows = list(questions)
    if not rows:
        raise ValueError("No questions to evaluate.")
    records = []
    started = time.perf_counter()
    system_name = name
    for row in tqdm(rows, desc=name or "evaluate", unit="question", disable=not show_progress_bar):
        question, answers, supporting, question_id = _question_fields(row)
        result = system(question)
        trace = result.trace
        system_name = system_name or trace.system
        decoding_ms = trace.stage_ms.get("decoding", 0.0) if include_decoding else 0.0
        decoding_passes = trace.forward_passes.get("decoding", 0) if include_decoding else 0
        steps = [retrieval_step_success(ids, answers, supporting, lookup) for ids in trace.retrieved_ids]
        records.append(
            {
                "id": question_id,
                "question": question,
                "answers": answers,
                "prediction": result.answer,
                "exact_match": exact_match(result.answer, answers),
                "f1": token_f1(result.answer, answers),
                "retrieved_ids": [list(ids) for ids in trace.retrieved_ids],
                "retrieval_steps": steps,
                "num_retrievals": trace.num_retrievals,
                "forced_answer": bool(trace.forced_answer),
                "latency_ms": float(trace.total_ms + decoding_ms),
                "stage_ms": {k: float(v) for k, v in trace.stage_ms.items()},
                "num_forward_passes": int(trace.num_forward_passes + decoding_passes),
                "forward_passes": dict(trace.forward_passes),
                "num_generated_tokens": int(trace.num_generated_tokens),
                "decoded_thoughts": trace.decoded_thoughts,
                "decoded_subqueries": trace.decoded_subqueries,
                "queries": list(trace.queries),
            }
        )
    summary = summarize_records(records, system_name or "system")
    summary["wall_time_s"] = time.perf_counter() - started
    if keep_records:
        summary["records"] = records
    return summary


def _as_list(results: Mapping[str, Mapping[str, Any]] | Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    if isinstance(results, Mapping) and "system" in results:
        return [results]
    if isinstance(results, Mapping):
        return [{**value, "system": value.get("system", key)} for key, value in results.items()]
    return list(results)


def results_table(results: Mapping[str, Mapping[str, Any]] | Sequence[Mapping[str, Any]]) -> str:
    """A Markdown table of the summaries (EM and F1 and rates in %, latency in ms) plus a per-stage latency table."""
    results = _as_list(results)
    percent = {"exact_match", "f1", "retrieval_success_rate"}
    lines = ["| " + " | ".join(header for _, header, _ in TABLE_COLUMNS) + " |"]
    lines.append("|" + "|".join("---" for _ in TABLE_COLUMNS) + "|")
    for result in results:
        cells = []
        for key, _, fmt in TABLE_COLUMNS:
            value = result.get(key)
            if value is None or (isinstance(value, float) and math.isnan(value)):
                cells.append("–")
            else:
                cells.append(fmt.format(100 * value if key in percent else value))
        lines.append("| " + " | ".join(cells) + " |")
    stages = []
    for result in results:
        stages += [s for s in result.get("stage_ms", {}) if s not in stages]
    if stages:
        lines += ["", "Mean latency per stage (ms):", ""]
        lines.append("| System | " + " | ".join(stages) + " |")
        lines.append("|---|" + "|".join("---" for _ in stages) + "|")
        for result in results:
            values = [result.get("stage_ms", {}).get(stage) for stage in stages]
            lines.append(
                f"| {result['system']} | " + " | ".join("–" if v is None else f"{v:.0f}" for v in values) + " |"
            )
    return "\n".join(lines) + "\n"


def plot_latency_vs_em(
    results: Mapping[str, Mapping[str, Any]] | Sequence[Mapping[str, Any]], path: str | os.PathLike
) -> Path:
    """Scatter plot of mean latency (ms, log scale) against EM (%), one labelled point per system (Agg backend)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    results = _as_list(results)
    figure, axis = plt.subplots(figsize=(6, 4))
    for result in results:
        x, y = result["mean_latency_ms"], 100 * result["exact_match"]
        axis.scatter([x], [y], s=50)
        axis.annotate(result["system"], (x, y), textcoords="offset points", xytext=(5, 5), fontsize=8)
    if all(result["mean_latency_ms"] > 0 for result in results):
        axis.set_xscale("log")
    axis.set_xlabel("Mean latency per question (ms)")
    axis.set_ylabel("Exact match (%)")
    axis.set_title("Latency vs. EM")
    axis.grid(True, alpha=0.3)
    figure.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path


def latency_ratio(results: Sequence[Mapping[str, Any]] | Mapping[str, Any], numerator: str, denominator: str) -> float:
    """`mean_latency_ms` of one system divided by another's (e.g. LatentRAG / explicit agentic RAG)."""
    by_name = {result["system"]: result for result in _as_list(results)}
    return by_name[numerator]["mean_latency_ms"] / by_name[denominator]["mean_latency_ms"]


def _json_safe(value: Any) -> Any:
    """NaN / inf (e.g. the retrieval success of a system that never retrieved) become `null` in the JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {key: _json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(item) for item in value]
    return value


def write_results(
    results: Mapping[str, Mapping[str, Any]] | Sequence[Mapping[str, Any]],
    out_dir: str | os.PathLike,
    metadata: Mapping[str, Any] | None = None,
) -> dict[str, Path]:
    """Write `results.json` (summaries with per-question records, plus `metadata`), `results.md` (the table) and
    `latency_vs_em.png` into `out_dir`.

    Returns:
        `{"json": path, "markdown": path, "plot": path}`.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    results = _as_list(results)
    payload = {"metadata": dict(metadata or {}), "results": results}
    paths = {
        "json": out_dir / RESULTS_JSON,
        "markdown": out_dir / RESULTS_MARKDOWN,
        "plot": out_dir / LATENCY_PLOT,
    }
    text = json.dumps(_json_safe(payload), indent=2, ensure_ascii=False, default=str, allow_nan=False)
    paths["json"].write_text(text + "\n", encoding="utf-8")
    paths["markdown"].write_text(results_table(results), encoding="utf-8")
    plot_latency_vs_em(results, paths["plot"])
    return paths


__all__ = [
    "LATENCY_PLOT",
    "RESULTS_JSON",
    "RESULTS_MARKDOWN",
    "evaluate_system",
    "latency_ratio",
    "plot_latency_vs_em",
    "results_table",
    "retrieval_step_success",
    "summarize_records",
    "write_results",
]
