"""Reproduce both papers' comparisons at small scale on a CPU, in one resumable command.

```
python examples/reproduce.py                      # or: make reproduce
python examples/reproduce.py --list               # the stages and whether each is done
python examples/reproduce.py --force laser_eval_laser   # rerun one stage (and nothing else that is done)
```

Default models: SmolLM2-135M-Instruct (LoRA r 64 / α 32) as the backbone of both methods, all-MiniLM-L6-v2 as
LatentRAG's retriever and as the plain dense baseline. Data: HotpotQA-500 (train split for training, test split for
results) and the BRIGHT StackExchange proxy (out of domain, never trained on), read from `../shared/data`.

Stages run in the order below, each in its own process; each writes `<results>/<stage>/result.json` when it
finishes, and a rerun skips every stage that has one. A failing stage is reported and the others still run.
After every stage the summary (`<results>/README.md`, `results.json`, plots) is rebuilt from what is done.

LaSER (paper Table 2/5 at small scale; every trained variant: same rows, steps, seed, batch and lengths):
- `laser_eval_untrained_k1`, `laser_eval_untrained_k3`, `laser_eval_minilm`: no training.
- `laser_train_<variant>` + `laser_eval_<variant>` for `basic_contrastive`, `laser`, and the Table 5 ablations
  `no_explicit_view`, `no_latent_view`, `no_output_distillation`, `no_process_alignment`,
  `no_co_learning_stage1` then `no_co_learning_stage2` (the frozen stage-1 teacher).
- `laser_rewrite`: rewrite-then-retrieve as in the paper (the untrained backbone writes a rationale, the basic
  contrastive retriever reads query + rationale as its query) on the first `--rewrite-queries` queries of each
  task, next to the same retriever without the rewrite on the same queries.
- `laser_latency`: encode latency of the plain retriever (K = 1), LaSER (K = 3) and rewrite-then-retrieve, side by
  side (`benchmarks/bench_retrieval_latency.py`).
Retrieval tasks: the HotpotQA-500 test questions against the test split's own 1,000 paragraphs, with both supporting
paragraphs relevant and with the second-hop paragraph alone; the BRIGHT proxy (first `--bright-queries` posts
against all 749 answers). Documents are cut to `--passage-max-length` tokens for every encoder.

LatentRAG (paper Table 1/3 at small scale, HotpotQA-500, all 4,858 paragraphs indexed with MiniLM):
- `latentrag_train_kl` (+ the explicit agentic baseline SFT on the same trajectories), `latentrag_train_cosine`,
  `latentrag_train_infonce`, `latentrag_train_no_decoding`.
- `latentrag_eval`: LatentRAG with and without latent decoding, naive RAG and the explicit agentic baseline;
  `latentrag_eval_<ablation>`: each ablation's LatentRAG.

Each trained checkpoint gets a model card with its results. The numbers are what this scale gives; the README
says where the papers' claims are not reproduced.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path


os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "examples"
BENCHMARKS = REPO / "benchmarks"
logger = logging.getLogger("reproduce")

LASER_VARIANTS = (
    "basic_contrastive",
    "laser",
    "no_explicit_view",
    "no_latent_view",
    "no_output_distillation",
    "no_process_alignment",
    "no_co_learning_stage1",
    "no_co_learning_stage2",
)
LATENTRAG_ABLATIONS = ("cosine", "infonce", "no_decoding")
LASER_TASKS = ("hotpotqa-test-both-split_corpus", "hotpotqa-test-second_hop-split_corpus", "bright-se-proxy")


@dataclass
class Stage:
    name: str
    description: str
    needs: tuple[str, ...] = ()


def build_stages() -> list[Stage]:
    """All stages in run order (most informative first, so that a cut-short run still says the most)."""
    stages = [
        Stage("laser_eval_untrained_k1", "untrained backbone, plain last-token retriever (K = 1)"),
        Stage("laser_eval_untrained_k3", "untrained backbone with LaSER's latent loop (K = 3)"),
        Stage("laser_eval_minilm", "plain MiniLM retriever"),
    ]
    for variant in ("basic_contrastive", "laser"):
        stages.append(Stage(f"laser_train_{variant}", f"train LaSER variant {variant}"))
        stages.append(Stage(f"laser_eval_{variant}", f"evaluate {variant}", (f"laser_train_{variant}",)))
    stages += [
        Stage("latentrag_train_kl", "train LatentRAG (full method) and the explicit agentic baseline"),
        Stage("latentrag_eval", "LatentRAG (± decoding), naive RAG, explicit agentic RAG", ("latentrag_train_kl",)),
        Stage("laser_latency", "encode latency: plain vs LaSER vs rewrite-then-retrieve"),
        Stage("laser_rewrite", "rewrite-then-retrieve quality", ("laser_eval_basic_contrastive",)),
    ]
    for variant in LASER_VARIANTS[2:]:
        needs = ("laser_train_no_co_learning_stage1",) if variant == "no_co_learning_stage2" else ()
        stages.append(Stage(f"laser_train_{variant}", f"train LaSER ablation {variant}", needs))
        stages.append(Stage(f"laser_eval_{variant}", f"evaluate {variant}", (f"laser_train_{variant}",)))
    for ablation in LATENTRAG_ABLATIONS:
        stages.append(
            Stage(f"latentrag_train_{ablation}", f"train LatentRAG ablation {ablation}", ("latentrag_train_kl",))
        )
        stages.append(
            Stage(
                f"latentrag_eval_{ablation}",
                f"evaluate LatentRAG ablation {ablation}",
                (f"latentrag_train_{ablation}",),
            )
        )
    return stages


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--results-dir", default="results/reproduce", help="where every stage writes (resumable)")
    parser.add_argument("--stage", default=None, help="run this one stage in this process (used internally)")
    parser.add_argument("--only", nargs="+", default=None, help="run only these stages (if not done)")
    parser.add_argument("--force", nargs="+", default=(), help="rerun these stages even if done")
    parser.add_argument("--list", action="store_true", help="list the stages and whether each is done")
    parser.add_argument("--summary-only", action="store_true", help="rebuild README/plots from finished stages")
    parser.add_argument("--threads", type=int, default=2, help="torch threads per stage (default 2)")
    parser.add_argument("--seed", type=int, default=42)
    # LaSER scale.
    parser.add_argument("--laser-steps", type=int, default=12, help="optimizer steps per LaSER variant (default 12)")
    parser.add_argument("--laser-batch-size", type=int, default=4, help="queries per LaSER step (default 4)")
    parser.add_argument("--laser-lr", type=float, default=2e-4)
    parser.add_argument("--passage-max-length", type=int, default=96, help="document tokens (train and eval)")
    parser.add_argument("--query-max-length", type=int, default=192, help="query tokens (train and eval)")
    parser.add_argument("--explicit-max-length", type=int, default=256, help="explicit-view tokens (training)")
    parser.add_argument("--bright-queries", type=int, default=100, help="BRIGHT proxy posts evaluated (of 749)")
    parser.add_argument("--rewrite-queries", type=int, default=20, help="queries per task for rewrite-then-retrieve")
    parser.add_argument("--rewrite-max-new-tokens", type=int, default=64, help="rationale length of the rewriter")
    # LatentRAG scale.
    parser.add_argument("--latentrag-steps", type=int, default=8, help="optimizer steps per LatentRAG run (default 8)")
    parser.add_argument("--latentrag-grad-accum", type=int, default=4, help="trajectories per LatentRAG step")
    parser.add_argument("--latentrag-lr", type=float, default=5e-4)
    parser.add_argument("--latentrag-questions", type=int, default=20, help="HotpotQA test questions evaluated")
    return parser.parse_args(argv)


# ----------------------------------------------------------------------------------------------------------------------
# Driver
# ----------------------------------------------------------------------------------------------------------------------


def stage_dir(args, name: str) -> Path:
    return Path(args.results_dir) / name


def is_done(args, name: str) -> bool:
    return (stage_dir(args, name) / "result.json").is_file()


def forwarded_flags(args) -> list[str]:
    flags = []
    for key, value in vars(args).items():
        if key in {"stage", "only", "force", "list", "summary_only"}:
            continue
        flags += [f"--{key.replace('_', '-')}", str(value)]
    return flags


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", stream=sys.stdout)
    stages = build_stages()
    by_name = {stage.name: stage for stage in stages}
    if args.stage:
        return run_stage(args, by_name[args.stage])
    if args.list:
        for stage in stages:
            print(f"{'done' if is_done(args, stage.name) else '    '}  {stage.name:40s} {stage.description}")
        return 0
    unknown = [name for name in (*(args.only or ()), *args.force) if name not in by_name]
    if unknown:
        raise SystemExit(f"Unknown stage(s) {unknown}; see --list.")
    if not args.summary_only:
        started = time.perf_counter()
        for stage in stages:
            if args.only and stage.name not in args.only:
                continue
            if is_done(args, stage.name) and stage.name not in args.force:
                logger.info("%s: done, skipped", stage.name)
                continue
            missing = [need for need in stage.needs if not is_done(args, need)]
            if missing:
                logger.warning("%s: skipped, needs %s", stage.name, missing)
                continue
            folder = stage_dir(args, stage.name)
            folder.mkdir(parents=True, exist_ok=True)
            logger.info("%s: %s ...", stage.name, stage.description)
            tick = time.perf_counter()
            with open(folder / "log.txt", "w") as log:
                code = subprocess.call(
                    [sys.executable, __file__, "--stage", stage.name, *forwarded_flags(args)],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    cwd=REPO,
                )
            elapsed = time.perf_counter() - tick
            if code != 0:
                logger.error(
                    "%s: FAILED after %.0f s (exit %d); see %s", stage.name, elapsed, code, folder / "log.txt"
                )
            else:
                logger.info("%s: finished in %.0f s", stage.name, elapsed)
            write_summary(args, stages)
        logger.info("All stages attempted in %.1f min.", (time.perf_counter() - started) / 60)
    write_summary(args, stages)
    return 0


def run_stage(args, stage: Stage) -> int:
    import torch

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    folder = stage_dir(args, stage.name)
    folder.mkdir(parents=True, exist_ok=True)
    tick = time.perf_counter()
    try:
        run = run_laser if stage.name.startswith("laser_") else run_latentrag
        result = run(args, stage, folder)
    except Exception:
        traceback.print_exc()
        return 1
    result["wall_seconds"] = time.perf_counter() - tick
    result["stage"] = stage.name
    (folder / "result.json").write_text(json.dumps(result, indent=2, default=str) + "\n")
    return 0


# ----------------------------------------------------------------------------------------------------------------------
# LaSER stages
# ----------------------------------------------------------------------------------------------------------------------


def laser_tasks(args):
    from hf_latent.evaluation.retrieval_tasks import load_retrieval_task

    tasks = [load_retrieval_task(name) for name in LASER_TASKS]
    tasks[2] = tasks[2].subset(args.bright_queries)
    return tasks


def laser_encoder(model, tokenizer, name: str, args):
    """A `LaserEncoder` with the run's length limits; each task sets its query instruction on it."""
    from hf_latent.laser import LaserEncoder

    return LaserEncoder(
        model, tokenizer, name, query_max_length=args.query_max_length, passage_max_length=args.passage_max_length
    )


def evaluate_on_laser_tasks(encoder, args, folder: Path, batch_size: int = 16) -> dict:
    """Evaluate one encoder on the three tasks; both HotpotQA tasks share one index. Saves the indexes."""
    from hf_latent.evaluation.retrieval_eval import evaluate_retrieval, write_reports
    from hf_latent.laser import LaserEncoder
    from hf_latent.retrieval import DenseIndex

    reports, index = [], None
    for task in laser_tasks(args):
        if isinstance(encoder, LaserEncoder):  # MiniLM reads queries as they are
            encoder.instruction = task.instruction
        if task.name.startswith("hotpotqa") and index is None or task.name.startswith("bright"):
            index = DenseIndex.from_corpus(
                task.document_texts, list(task.corpus["id"]), encoder, batch_size=batch_size, show_progress_bar=True
            )
            index.save(folder / f"index-{task.name.split('-')[0]}")
        report, _ = evaluate_retrieval(encoder, task, k_values=(1, 5, 10, 100), batch_size=batch_size, index=index)
        reports.append(report)
    write_reports(reports, folder)
    return {"reports": [report.to_dict() for report in reports]}


def run_laser(args, stage: Stage, folder: Path) -> dict:
    if stage.name.startswith("laser_train_"):
        return laser_train(args, stage.name.removeprefix("laser_train_"), folder)
    if stage.name.startswith("laser_eval_"):
        return laser_eval(args, stage.name.removeprefix("laser_eval_"), folder)
    if stage.name == "laser_rewrite":
        return laser_rewrite(args, folder)
    if stage.name == "laser_latency":
        return laser_latency(args, folder)
    raise ValueError(stage.name)


def laser_train(args, variant: str, folder: Path) -> dict:
    sys.path.insert(0, str(EXAMPLES))
    import train_laser

    argv = [
        "--dataset", "hotpotqa", "--eval_split", "", "--output_dir", str(folder / "model"), "--loss_variant", variant,
        "--max_steps", str(args.laser_steps), "--per_device_train_batch_size", str(args.laser_batch_size),
        "--train_group_size", "2", "--learning_rate", str(args.laser_lr), "--warmup_steps", "2",
        "--query_max_length", str(args.query_max_length), "--passage_max_length", str(args.passage_max_length),
        "--explicit_max_length", str(args.explicit_max_length), "--logging_steps", "1", "--seed", str(args.seed),
        "--save_strategy", "no", "--report_to", "none", "--disable_tqdm", "true",
    ]  # fmt: skip
    if variant == "no_co_learning_stage2":
        argv += ["--teacher_model_name_or_path", str(stage_dir(args, "laser_train_no_co_learning_stage1") / "model")]
    results = train_laser.main(argv)
    return {"variant": variant, "train": results["train"], "log_history": results["log_history"]}


def laser_eval(args, name: str, folder: Path) -> dict:
    from transformers import AutoTokenizer

    from hf_latent import default_backbone, default_retriever
    from hf_latent.laser import LaserModel
    from hf_latent.retrieval import HFEncoder

    if name == "minilm":
        encoder = HFEncoder.from_pretrained(default_retriever(), pooling="mean", max_length=args.passage_max_length)
        return evaluate_on_laser_tasks(encoder, args, folder, batch_size=64) | {"encoder": "minilm"}
    if name.startswith("untrained_k"):
        path, k = default_backbone(), int(name.removeprefix("untrained_k"))
        model = LaserModel.from_backbone(path, num_latent_steps=k).eval()
    else:
        path = stage_dir(args, f"laser_train_{name}") / "model"
        model = LaserModel.from_pretrained(path).eval()
    tokenizer = AutoTokenizer.from_pretrained(path)
    encoder = laser_encoder(model, tokenizer, f"smollm2:{name}:K{model.config.num_latent_steps}", args)
    result = evaluate_on_laser_tasks(encoder, args, folder)
    return result | {"encoder": name, "num_latent_steps": model.config.num_latent_steps}


def laser_rewrite(args, folder: Path) -> dict:
    """Rewrite-then-retrieve as in the paper (§4.2): the untrained backbone writes a rationale, the basic-contrastive
    (Fair Baseline) retriever reads `query + rationale` as its query. The same retriever without the rewrite, on the
    same queries, is reported next to it."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from hf_latent import default_backbone
    from hf_latent.evaluation.retrieval_eval import evaluate_retrieval, write_reports
    from hf_latent.laser import LaserModel
    from hf_latent.laser.rewrite import RewriteThenRetrieveEncoder
    from hf_latent.retrieval import DenseIndex

    path = stage_dir(args, "laser_train_basic_contrastive") / "model"
    model = LaserModel.from_pretrained(path).eval()
    model.config.query_max_length = args.query_max_length + args.rewrite_max_new_tokens
    tokenizer = AutoTokenizer.from_pretrained(path)
    rewriter = AutoModelForCausalLM.from_pretrained(default_backbone()).eval()
    eval_folder = stage_dir(args, "laser_eval_basic_contrastive")
    reports, baseline_reports, rationales = [], [], {}
    for task in laser_tasks(args):
        task = task.subset(args.rewrite_queries)
        index = DenseIndex.load(eval_folder / f"index-{task.name.split('-')[0]}")
        encoder = RewriteThenRetrieveEncoder(
            model,
            tokenizer,
            index.encoder_name,
            task.instruction,
            args.rewrite_max_new_tokens,
            rewriter=rewriter,
            query_view="query",
        )
        report, _ = evaluate_retrieval(encoder, task, k_values=(1, 5, 10, 100), batch_size=1, index=index)
        report.encoder = "rewrite-then-retrieve (basic contrastive retriever)"
        timings = encoder.timings
        report.extra = {
            "generation_ms_per_query": sum(timings.generation_ms) / len(timings.generation_ms),
            "generated_tokens_mean": sum(timings.generated_tokens) / len(timings.generated_tokens),
        }
        reports.append(report)
        rationales[task.name] = encoder.rationales
        plain = laser_encoder(model, tokenizer, index.encoder_name, args)
        plain.instruction = task.instruction
        baseline, _ = evaluate_retrieval(plain, task, k_values=(1, 5, 10, 100), batch_size=8, index=index)
        baseline_reports.append(baseline)
    write_reports(reports + baseline_reports, folder)
    (folder / "rationales.json").write_text(json.dumps(rationales, indent=2, ensure_ascii=False))
    return {
        "reports": [report.to_dict() for report in reports],
        "baseline_reports": [report.to_dict() for report in baseline_reports],
    }


def laser_latency(args, folder: Path) -> dict:
    command = [
        sys.executable, str(BENCHMARKS / "bench_retrieval_latency.py"), "--num-queries", "16", "--batch-size", "8",
        "--repeats", "3", "--max-new-tokens", str(args.rewrite_max_new_tokens), "--query-max-length",
        str(args.query_max_length), "--output-dir", str(folder),
    ]  # fmt: skip
    subprocess.run(command, check=True, env=os.environ | {"OMP_NUM_THREADS": str(args.threads)})
    return json.loads((folder / "results.json").read_text())


# ----------------------------------------------------------------------------------------------------------------------
# LatentRAG stages
# ----------------------------------------------------------------------------------------------------------------------


def run_latentrag(args, stage: Stage, folder: Path) -> dict:
    if stage.name.startswith("latentrag_train_"):
        return latentrag_train(args, stage.name.removeprefix("latentrag_train_"), folder)
    return latentrag_eval(args, stage.name.removeprefix("latentrag_eval").lstrip("_") or "kl", folder)


def latentrag_train(args, variant: str, folder: Path) -> dict:
    sys.path.insert(0, str(EXAMPLES))
    import train_latentrag

    argv = [
        "--output_dir", str(folder / "model"), "--dataset", "hotpotqa", "--loss_variant", variant,
        "--max_train_trajectories", str(args.latentrag_steps * args.latentrag_grad_accum),
        "--max_steps", str(args.latentrag_steps), "--per_device_train_batch_size", "1",
        "--gradient_accumulation_steps", str(args.latentrag_grad_accum), "--learning_rate", str(args.latentrag_lr),
        "--logging_steps", "1", "--seed", str(args.seed), "--save_strategy", "no", "--report_to", "none",
        "--use_cpu", "true", "--num_threads", str(args.threads), "--disable_tqdm", "true",
    ]  # fmt: skip
    if variant == "kl":
        argv += ["--train_explicit_baseline", "true"]
    else:
        argv += ["--index_path", str(stage_dir(args, "latentrag_train_kl") / "model" / "index")]
    summary = train_latentrag.main(argv)
    return {"variant": variant, **summary}


def latentrag_eval(args, variant: str, folder: Path) -> dict:
    sys.path.insert(0, str(EXAMPLES))
    import eval_latentrag

    model = stage_dir(args, f"latentrag_train_{variant}") / "model"
    argv = [
        "--model_path", str(model), "--max_questions", str(args.latentrag_questions), "--max_step_tokens", "128",
        "--output_dir", str(folder), "--num_threads", str(args.threads),
        "--index_path", str(stage_dir(args, "latentrag_train_kl") / "model" / "index"),
    ]  # fmt: skip
    if variant == "kl":
        argv += ["--explicit_model_path", str(model / "explicit_baseline")]
    else:
        argv += ["--systems", "latentrag"]
    eval_latentrag.main(argv)
    return {"variant": variant, **json.loads((folder / "results.json").read_text())}


# ----------------------------------------------------------------------------------------------------------------------
# Summary: tables, plots, README
# ----------------------------------------------------------------------------------------------------------------------


def write_summary(args, stages: list[Stage]) -> None:
    from reproduce_report import build_report

    build_report(Path(args.results_dir), [stage.name for stage in stages])
    write_cards(args)


def write_cards(args) -> list[Path]:
    """(Re)write the model card of every trained checkpoint whose evaluation has finished: results + loss curves."""
    from hf_latent.evaluation.retrieval_eval import RetrievalReport
    from hf_latent.hub import write_model_card
    from hf_latent.hub.model_card import TRAINING_CURVE_FILE, plot_training_curve, summarize_log_history

    written = []
    checkpoints = [
        (f"laser_train_{v}", f"laser_eval_{v}", f"laser-{v}-smollm2-135m-hotpotqa500") for v in LASER_VARIANTS
    ]
    checkpoints += [
        (f"latentrag_train_{v}", "latentrag_eval" + ("" if v == "kl" else f"_{v}"), f"latentrag-{v}-smollm2-minilm")
        for v in ("kl", *LATENTRAG_ABLATIONS)
    ]
    for train_stage, eval_stage, name in checkpoints:
        model = stage_dir(args, train_stage) / "model"
        if not (is_done(args, train_stage) and is_done(args, eval_stage) and model.is_dir()):
            continue
        train = json.loads((stage_dir(args, train_stage) / "result.json").read_text())
        evaluation = json.loads((stage_dir(args, eval_stage) / "result.json").read_text())
        if train_stage.startswith("laser"):
            eval_results = [RetrievalReport(**report) for report in evaluation["reports"]]
        else:
            eval_results = stage_dir(args, eval_stage) / "results.json"
        log_history = train.get("log_history") or []
        plot_training_curve(summarize_log_history(log_history)["curve"], model / TRAINING_CURVE_FILE)
        write_model_card(model, eval_results=eval_results, log_history=log_history, model_name=name)
        written.append(model / "README.md")
    return written


if __name__ == "__main__":
    sys.path.insert(0, str(EXAMPLES))
    sys.exit(main())
