"""Tables, plots and the README of `examples/reproduce.py`, rebuilt from whatever stages have finished.

Writes into the results folder: `README.md` (every table, the wall time of each stage), `results.json` (all stage
results in one file), `laser_ndcg.png` (nDCG@10 per encoder and task), `laser_training_curves.png` and
`latentrag_training_curves.png` (every logged loss term per step), `latentrag_latency_em.png` (latency vs EM).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path


LASER_TASK_LABELS = {
    "hotpotqa-test-both-split_corpus": "HotpotQA both",
    "hotpotqa-test-second_hop-split_corpus": "HotpotQA 2nd hop",
    "bright-se-proxy": "BRIGHT SE proxy",
}
LASER_ROWS = {
    "untrained_k1": "untrained backbone, plain (K=1)",
    "untrained_k3": "untrained backbone, LaSER loop (K=3)",
    "minilm": "MiniLM (plain dense retriever)",
    "basic_contrastive": "basic contrastive (K=1)",
    "laser": "LaSER (K=3)",
    "no_explicit_view": "w/o explicit view",
    "no_latent_view": "w/o latent view (K=1)",
    "no_output_distillation": "w/o output distillation",
    "no_process_alignment": "w/o process alignment",
    "no_co_learning_stage1": "w/o co-learning, stage 1 (teacher only)",
    "no_co_learning_stage2": "w/o co-learning (frozen teacher)",
}
REWRITE_ROWS = {
    "rewrite_base": "basic contrastive, first queries of each task (no rewrite)",
    "rewrite": "rewrite-then-retrieve, same queries (backbone rationale + basic contrastive)",
}
LASER_TERMS = ("loss/latent_contrastive", "loss/explicit_contrastive", "loss/output_kl", "loss/trajectory_kl")
LATENTRAG_TERMS = ("loss/generation", "loss/retrieval_alignment", "loss/latent_decoding")


def load_results(results_dir: Path, stage_names: Sequence[str]) -> dict[str, dict]:
    results = {}
    for name in stage_names:
        path = results_dir / name / "result.json"
        if path.is_file():
            results[name] = json.loads(path.read_text())
    return results


def _by_task(reports: Sequence[dict]) -> dict[str, dict]:
    """Reports keyed by task name without the query-subset suffix (`bright-se-proxy[:100]` -> `bright-se-proxy`)."""
    return {report["task"].split("[")[0]: report for report in reports}


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}"


def laser_table(results: dict[str, dict]) -> str:
    header = ["encoder"]
    for label in LASER_TASK_LABELS.values():
        header += [f"{label} nDCG@10", f"{label} R@10"]
    header += ["query ms/q", "train s"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    rows = [(name, f"laser_eval_{name}", "reports") for name in LASER_ROWS]
    rows += [("rewrite_base", "laser_rewrite", "baseline_reports"), ("rewrite", "laser_rewrite", "reports")]
    for name, stage, key in rows:
        if stage not in results or key not in results[stage]:
            continue
        reports = _by_task(results[stage][key])
        label = LASER_ROWS.get(name) or REWRITE_ROWS[name]
        cells = [label]
        for task in LASER_TASK_LABELS:
            report = reports.get(task)
            metrics = report["metrics"] if report else {}
            cells += [_pct(metrics.get("ndcg@10")), _pct(metrics.get("recall@10"))]
        latencies = [report["query_ms_per_query"] for report in reports.values()]
        cells.append(f"{sum(latencies) / len(latencies):.0f}" if latencies else "-")
        train = results.get(f"laser_train_{name}")
        cells.append(f"{train['wall_seconds']:.0f}" if train else "-")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def latency_table(results: dict[str, dict]) -> str:
    latency = results.get("laser_latency")
    if not latency:
        return ""
    plain = latency["plain_ms_per_query"]
    rows = [
        ("plain retriever (K=1)", plain),
        (f"LaSER (K={latency['k']})", latency["laser_ms_per_query"]),
        (
            f"rewrite-then-retrieve ({latency['rewrite_generated_tokens_mean']:.0f} generated tokens)",
            latency["rewrite_ms_per_query"],
        ),
    ]
    lines = ["| query encoder | ms / query | vs plain |", "|---|---|---|"]
    lines += [f"| {name} | {value:.1f} | {value / plain:.2f}x |" for name, value in rows]
    lines.append("")
    lines.append(
        f"LaSER / plain = **{latency['laser_over_plain']:.2f}x**, LaSER / rewrite-then-retrieve = "
        f"**{100 * latency['laser_over_rewrite']:.2f}%** (paper: ~1.7x and ~0.3%)."
    )
    return "\n".join(lines)


def latentrag_rows(results: dict[str, dict]) -> list[dict]:
    rows = []
    main = results.get("latentrag_eval")
    if main:
        rows += [dict(row, label=row["system"]) for row in main["results"]]
    for stage, result in results.items():
        if stage.startswith("latentrag_eval_"):
            ablation = stage.removeprefix("latentrag_eval_")
            rows += [dict(row, label=f"latentrag ({ablation})") for row in result["results"]]
    return rows


def latentrag_table(results: dict[str, dict]) -> str:
    rows = latentrag_rows(results)
    if not rows:
        return ""
    header = ["system", "EM", "F1", "retrieval success", "retrievals", "LLM forward passes", "latency ms", "stages ms"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        stages = ", ".join(f"{key} {value:.0f}" for key, value in row.get("stage_ms", {}).items())
        lines.append(
            f"| {row['label']} | {_pct(row['exact_match'])} | {_pct(row['f1'])} | {_pct(row['retrieval_success_rate'])}"
            f" | {row['mean_retrievals']:.2f} | {row['mean_forward_passes']:.1f} | {row['mean_latency_ms']:.0f}"
            f" | {stages} |"
        )
    main = results.get("latentrag_eval", {}).get("metadata", {})
    ratio = main.get("latency_ratio_latentrag_over_explicit")
    if ratio is not None:
        lines.append("")
        change = f"{100 * (1 - ratio):.0f}% lower" if ratio <= 1 else f"{ratio:.1f}x slower"
        decoding = main.get("latency_ratio_latentrag_decoding_over_explicit", float("nan"))
        lines.append(
            f"Latency LatentRAG / explicit agentic RAG = **{ratio:.2f}** ({change}; paper: ~90% lower). "
            f"With latent decoding: {decoding:.2f}."
        )
    return "\n".join(lines)


def stage_table(results: dict[str, dict], stage_names: Sequence[str]) -> tuple[str, float]:
    lines = ["| stage | minutes |", "|---|---|"]
    total = 0.0
    for name in stage_names:
        if name in results:
            minutes = results[name]["wall_seconds"] / 60
            total += minutes
            lines.append(f"| {name} | {minutes:.1f} |")
        else:
            lines.append(f"| {name} | not run |")
    lines.append(f"| **total** | **{total:.1f}** |")
    return "\n".join(lines), total


def _plot_curves(histories: dict[str, list[dict]], terms: Sequence[str], path: Path, title: str) -> bool:
    histories = {name: rows for name, rows in histories.items() if rows}
    if not histories:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    terms = [term for term in ("loss", *terms) if any(term in row for rows in histories.values() for row in rows)]
    colors = {name: f"C{i % 10}" for i, name in enumerate(histories)}  # one colour per run in every panel
    figure, axes = plt.subplots(1, len(terms), figsize=(3.6 * len(terms), 3.2), squeeze=False)
    for axis, term in zip(axes[0], terms):
        for name, rows in histories.items():
            points = [(row["step"], row[term]) for row in rows if term in row]
            if points:
                axis.plot(*zip(*points), label=name, linewidth=1.2, color=colors[name])
        axis.set_title(term, fontsize=9)
        axis.set_xlabel("step")
    handles = [plt.Line2D([], [], color=colors[name], label=name) for name in histories]
    axes[0][0].legend(handles=handles, fontsize=6)
    figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return True


def _plot_ndcg(results: dict[str, dict], path: Path) -> bool:
    names = [name for name in LASER_ROWS if f"laser_eval_{name}" in results]
    if not names:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    figure, axis = plt.subplots(figsize=(9, 4))
    width = 0.8 / len(LASER_TASK_LABELS)
    for offset, (task, label) in enumerate(LASER_TASK_LABELS.items()):
        values = []
        for name in names:
            reports = _by_task(results[f"laser_eval_{name}"]["reports"])
            values.append(100 * reports[task]["metrics"]["ndcg@10"] if task in reports else 0)
        axis.bar(np.arange(len(names)) + offset * width, values, width, label=label)
    axis.set_xticks(np.arange(len(names)) + width, [LASER_ROWS[n] for n in names], rotation=35, ha="right", fontsize=7)
    axis.set_ylabel("nDCG@10 (%)")
    axis.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return True


def _plot_latency_em(results: dict[str, dict], path: Path) -> bool:
    rows = latentrag_rows(results)
    if not rows:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(6, 4))
    for row in rows:
        axis.scatter(row["mean_latency_ms"] / 1000, 100 * row["exact_match"])
        axis.annotate(row["label"], (row["mean_latency_ms"] / 1000, 100 * row["exact_match"]), fontsize=7)
    axis.set_xlabel("mean latency per question (s, CPU)")
    axis.set_ylabel("EM (%)")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return True


def _without_records(value):
    """The results without per-question records (questions, gold answers and predictions stay in the stage folders,
    so the summary that is kept in git holds no text from the data sets)."""
    if isinstance(value, dict):
        return {key: _without_records(item) for key, item in value.items() if key != "records"}
    if isinstance(value, list):
        return [_without_records(item) for item in value]
    return value


def build_report(results_dir: Path, stage_names: Sequence[str]) -> Path:
    """Rebuild `README.md`, `results.json` and the plots in `results_dir`; returns the README path."""
    results_dir.mkdir(parents=True, exist_ok=True)
    results = load_results(results_dir, stage_names)
    (results_dir / "results.json").write_text(json.dumps(_without_records(results), indent=2, default=str) + "\n")
    laser_histories = {
        stage.removeprefix("laser_train_"): result.get("log_history", [])
        for stage, result in results.items()
        if stage.startswith("laser_train_")
    }
    latentrag_histories = {}
    for stage, result in results.items():
        if stage.startswith("latentrag_train_"):
            latentrag_histories[stage.removeprefix("latentrag_train_")] = result.get("log_history", [])
            if result.get("explicit_log_history"):
                latentrag_histories["explicit SFT"] = result["explicit_log_history"]
    plots = {
        "laser_ndcg.png": _plot_ndcg(results, results_dir / "laser_ndcg.png"),
        "laser_training_curves.png": _plot_curves(
            laser_histories, LASER_TERMS, results_dir / "laser_training_curves.png", "LaSER training (SmolLM2 LoRA)"
        ),
        "latentrag_training_curves.png": _plot_curves(
            latentrag_histories,
            LATENTRAG_TERMS,
            results_dir / "latentrag_training_curves.png",
            "LatentRAG training (SmolLM2 LoRA + MiniLM)",
        ),
        "latentrag_latency_em.png": _plot_latency_em(results, results_dir / "latentrag_latency_em.png"),
    }
    stages, total = stage_table(results, stage_names)
    sections = [
        "# Reproduction results (CPU, small scale)",
        "",
        "Written by `examples/reproduce.py`; rebuilt after every stage. Stage wall time on this machine:",
        "",
        stages,
        "",
        "## LaSER retrieval (nDCG@10 / Recall@10, %)",
        "",
        laser_table(results) or "No LaSER stage has finished yet.",
        "",
        "## LaSER encode latency (side by side, one run)",
        "",
        latency_table(results) or "The latency stage has not finished yet.",
        "",
        "## LatentRAG on HotpotQA-500 test",
        "",
        latentrag_table(results) or "No LatentRAG evaluation has finished yet.",
        "",
    ]
    for name, written in plots.items():
        if written:
            sections.append(f"![{name}]({name})")
    path = results_dir / "README.md"
    path.write_text("\n".join(sections) + "\n")
    return path
