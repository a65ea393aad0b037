"""Training-step time of LaSER vs basic contrastive training, side by side (specs/laser.md §6, §7).

Same backbone (default SmolLM2-135M-Instruct), same LoRA (r 64, α 32, dropout 0.1 on q, k, v, o, gate, up, down),
same HotpotQA-500 training rows (oracle rationales), same batches, same optimizer:

- `laser`: the full objective, K latent steps on queries and passages plus one explicit-view (teacher) pass over
  `[query; rationale; EOS]`: 2K + 1 forward calls per step;
- `basic_contrastive`: the paper's "fair baseline", K = 1 and latent InfoNCE only: 2 forward calls per step.

Each measured step is `LaserTrainer.training_step` (forward, loss, backward) plus `optimizer.step()`; collation
(tokenisation) is timed separately. The two methods alternate step by step on the *same* batch (their order swapped
every round), after `--warmup` untimed rounds; medians are reported. Writes `results.json` and `results.md` to
`--output-dir`.

Usage: `python benchmarks/bench_laser_training.py [--batch-size 4] [--group-size 2] [--steps 5] [--warmup 1]`.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path

import torch
from transformers import AutoTokenizer

from hf_latent import default_backbone
from hf_latent.data import load_hotpotqa
from hf_latent.laser import LaserModel
from hf_latent.laser.data_laser import laser_rows_from_multihop
from hf_latent.laser.trainer_laser import LaserTrainer, laser_lora_config
from hf_latent.laser.training_args_laser import LaserTrainingArguments


METHODS = ("basic_contrastive", "laser")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbone", default=None, help="causal LM (default: SmolLM2-135M-Instruct)")
    parser.add_argument("--batch-size", type=int, default=4, help="queries per step (B)")
    parser.add_argument("--group-size", type=int, default=2, help="passages per query (G)")
    parser.add_argument("--k", type=int, default=3, help="LaSER latent steps")
    parser.add_argument("--steps", type=int, default=5, help="timed steps per method")
    parser.add_argument("--warmup", type=int, default=1, help="untimed rounds first")
    # Shorter than the paper's 512 / 512 / 1024 so a CPU run takes minutes (a 464-token HotpotQA passage batch of
    # 4 x 2 needs ~13 GB of activations on SmolLM2 at full length); pass the paper's values on a GPU.
    parser.add_argument("--query-max-length", type=int, default=128)
    parser.add_argument("--passage-max-length", type=int, default=128)
    parser.add_argument("--explicit-max-length", type=int, default=256)
    parser.add_argument("--no-lora", action="store_true", help="full fine-tuning instead of LoRA")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--output-dir", default="results/bench_laser_training")
    return parser.parse_args()


def build_trainer(variant: str, path: str, tokenizer, rows, options, output_dir: str) -> LaserTrainer:
    args = LaserTrainingArguments(
        output_dir=output_dir,
        loss_variant=variant,
        num_latent_steps=None if variant == "basic_contrastive" else options.k,
        train_group_size=options.group_size,
        per_device_train_batch_size=options.batch_size,
        query_max_length=options.query_max_length,
        passage_max_length=options.passage_max_length,
        explicit_max_length=options.explicit_max_length,
        use_cpu=not torch.cuda.is_available(),
        bf16=False,
        report_to="none",
        save_strategy="no",
        disable_tqdm=True,
    )
    peft_config = None if options.no_lora else laser_lora_config()
    model = LaserModel.from_backbone(path)
    trainer = LaserTrainer(model, args, train_dataset=rows, processing_class=tokenizer, peft_config=peft_config)
    trainer.create_optimizer()
    trainer.current_gradient_accumulation_steps = 1  # normally set by the training loop
    trainer.model.train()
    return trainer


def forward_calls(trainer: LaserTrainer) -> int:
    """Forward calls per step: K per latent batch (released loop), plus one explicit-view pass."""
    k = trainer.num_latent_steps
    return k + (k if trainer._needs_latent_query else 0) + int(trainer._needs_explicit)


def timed_step(trainer: LaserTrainer, batch: dict) -> float:
    inputs = trainer._prepare_inputs(batch)
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    start = time.perf_counter()
    trainer.training_step(trainer.model, inputs)
    trainer.optimizer.step()
    trainer.optimizer.zero_grad(set_to_none=True)
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - start


def main() -> None:
    options = parse_args()
    if options.threads:
        torch.set_num_threads(options.threads)
    torch.manual_seed(0)
    path = options.backbone or default_backbone()
    tokenizer = AutoTokenizer.from_pretrained(path)
    rows = laser_rows_from_multihop(load_hotpotqa(), split="train")
    num_batches = options.warmup + options.steps
    batches_rows = [
        [rows[(step * options.batch_size + i) % len(rows)] for i in range(options.batch_size)]
        for step in range(num_batches)
    ]
    trainers = {
        variant: build_trainer(variant, path, tokenizer, rows, options, tempfile.mkdtemp()) for variant in METHODS
    }

    collate_s = {variant: [] for variant in METHODS}
    batches = {variant: [] for variant in METHODS}
    for variant, trainer in trainers.items():
        for chunk in batches_rows:
            start = time.perf_counter()
            batches[variant].append(trainer.data_collator(chunk))
            collate_s[variant].append(time.perf_counter() - start)

    step_s = {variant: [] for variant in METHODS}
    losses = {variant: [] for variant in METHODS}
    for round_index in range(num_batches):
        order = METHODS if round_index % 2 == 0 else METHODS[::-1]
        for variant in order:
            seconds = timed_step(trainers[variant], batches[variant][round_index])
            if round_index >= options.warmup:
                step_s[variant].append(seconds)
                metrics = trainers[variant]._metrics["train"]
                losses[variant].append({key: values[-1] for key, values in metrics.items()})

    first_batch = batches["laser"][0]
    results = {
        "backbone": str(path),
        "backbone_name": Path(str(path)).name,
        "device": torch.cuda.get_device_name() if torch.cuda.is_available() else platform.processor() or "cpu",
        "torch_threads": torch.get_num_threads(),
        "lora": not options.no_lora,
        "batch_size": options.batch_size,
        "group_size": options.group_size,
        "k": options.k,
        "steps": options.steps,
        "warmup": options.warmup,
        "sequence_lengths": {
            "query": int(first_batch["query_input_ids"].shape[1]),
            "passage": int(first_batch["passage_input_ids"].shape[1]),
            "explicit": int(first_batch["explicit_input_ids"].shape[1]),
        },
        "methods": {},
    }
    for variant in METHODS:
        trainer = trainers[variant]
        seconds = sorted(step_s[variant])
        results["methods"][variant] = {
            "num_latent_steps": trainer.num_latent_steps,
            "forward_calls_per_step": forward_calls(trainer),
            "median_step_s": statistics.median(seconds),
            "min_step_s": seconds[0],
            "max_step_s": seconds[-1],
            "median_collate_s": statistics.median(collate_s[variant]),
            "step_s": step_s[variant],
            "last_logged_terms": losses[variant][-1] if losses[variant] else {},
        }
    base = results["methods"]["basic_contrastive"]["median_step_s"]
    for variant in METHODS:
        results["methods"][variant]["ratio_vs_basic"] = results["methods"][variant]["median_step_s"] / base

    lines = [
        f"Training step time on {results['device']} ({results['torch_threads']} threads), {results['backbone_name']}, "
        f"{'LoRA r64' if results['lora'] else 'full FT'}, batch {options.batch_size} x group {options.group_size}, "
        f"HotpotQA rows (query {results['sequence_lengths']['query']}, passage "
        f"{results['sequence_lengths']['passage']}, explicit {results['sequence_lengths']['explicit']} tokens), "
        f"median of {options.steps} interleaved steps after {options.warmup} warmup.",
        "",
        "| method | K | forward calls / step | step s (median) | min-max s | collate s | x basic |",
        "|---|---|---|---|---|---|---|",
    ]
    for variant in METHODS:
        m = results["methods"][variant]
        lines.append(
            f"| {variant} | {m['num_latent_steps']} | {m['forward_calls_per_step']} | {m['median_step_s']:.2f} | "
            f"{m['min_step_s']:.2f}-{m['max_step_s']:.2f} | {m['median_collate_s']:.3f} | {m['ratio_vs_basic']:.2f} |"
        )
    markdown = "\n".join(lines) + "\n"
    output_dir = Path(options.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    (output_dir / "results.md").write_text(markdown)
    print(markdown)


if __name__ == "__main__":
    main()
