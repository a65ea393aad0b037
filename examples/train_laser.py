"""Train a LaSER retriever (dual-view self-distillation, arXiv 2603.01425) and evaluate it on held-out questions.

Steps:

1. Training rows: `--dataset demo` (shipped demo corpus, real rationales), `hotpotqa` (HotpotQA-500; oracle rationales
   built from the gold paragraphs, see `hf_latent.laser.data_laser.oracle_rationale`), a local `.json` / `.jsonl`
   file, or a `datasets.load_dataset` name (needs the Hub). Files and Hub sets need the columns `query`, `positive`,
   and optionally `negatives`, `reasoning`, `instruction`; the released LaSER data's names (`reasoning_query`,
   `positive_passages`, ...) are mapped automatically.
2. The model: `--model_name_or_path` (a causal LM, default SmolLM2-135M-Instruct, or a saved LaSER folder) wrapped as
   a `LaserModel`; LoRA by default (the paper's r 64 / α 32 / dropout 0.1 on q, k, v, o, gate, up, down), or full
   fine-tuning with `--use_lora false`.
3. `LaserTrainer` with every `LaserTrainingArguments` field as a flag (`--loss_variant basic_contrastive`,
   `--num_latent_steps 3`, `--train_group_size 2`, ...).
4. Saving: with LoRA and `--merge_lora true` (default, like the released checkpoints, spec §6) the adapter goes to
   `output_dir/adapter` and the merged full model to `output_dir`; with `--merge_lora false` `output_dir` holds the
   LaSER config plus the adapter (`LaserModel.from_pretrained(output_dir)` reloads it on its base model). Either
   way `output_dir` also gets the tokenizer.
5. A quick retrieval evaluation on the held-out split (`--eval_split`, demo/hotpotqa only) with
   `hf_latent.evaluation.retrieval_eval.evaluate_retrieval`. It goes to `output_dir/train_results.json` together
   with the training metrics and every logged loss term (`log_history`, for training curves).

Example (a small CPU run, a few minutes):

```
python examples/train_laser.py --output_dir outputs/laser-demo --dataset demo --max_steps 30 \
    --per_device_train_batch_size 4 --learning_rate 2e-4 --logging_steps 5
python examples/train_laser.py --output_dir outputs/laser-hotpotqa --dataset hotpotqa --num_train_epochs 1 \
    --per_device_train_batch_size 8 --eval_max_queries 100
```
"""

from __future__ import annotations

import json
import logging
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path


os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

from transformers import AutoTokenizer, HfArgumentParser  # noqa: E402

from hf_latent.data import load_demo_corpus, load_hotpotqa  # noqa: E402
from hf_latent.evaluation.retrieval_eval import evaluate_retrieval, reports_to_markdown  # noqa: E402
from hf_latent.evaluation.retrieval_tasks import HOTPOTQA_INSTRUCTION, RetrievalTask, hotpotqa_task  # noqa: E402
from hf_latent.laser import LaserEncoder, LaserModel  # noqa: E402
from hf_latent.laser.data_laser import (  # noqa: E402
    RATIONALE_MODES,
    laser_rows_from_multihop,
    standardize_laser_columns,
)
from hf_latent.laser.trainer_laser import LASER_LORA_TARGET_MODULES, LaserTrainer, laser_lora_config  # noqa: E402
from hf_latent.laser.training_args_laser import LaserTrainingArguments  # noqa: E402
from hf_latent.resources import default_backbone  # noqa: E402


logger = logging.getLogger("train_laser")

MULTIHOP_DATASETS = {"demo": load_demo_corpus, "hotpotqa": load_hotpotqa}


@dataclass
class ScriptArguments:
    """Arguments of this script (the training arguments are [`LaserTrainingArguments`], K included)."""

    model_name_or_path: str = field(
        default="default",
        metadata={"help": "Causal LM (Hub id or folder) or a saved LaSER folder; 'default' = SmolLM2-135M-Instruct."},
    )
    dataset: str = field(
        default="demo",
        metadata={"help": "'demo', 'hotpotqa', a local .json/.jsonl file, or a datasets.load_dataset name (Hub)."},
    )
    dataset_split: str = field(default="train", metadata={"help": "Split to train on."})
    eval_split: str | None = field(
        default="test", metadata={"help": "Held-out split for the retrieval evaluation (demo/hotpotqa); None skips."}
    )
    rationale: str = field(
        default="auto",
        metadata={
            "help": "Explicit-view rationales for demo/hotpotqa: 'auto' (the data's own, else oracle), 'reasoning', "
            "'oracle', 'none' ('generated' needs the Python API).",
            "choices": [mode for mode in RATIONALE_MODES if mode != "generated"],
        },
    )
    num_negatives: int | None = field(
        default=None, metadata={"help": "Keep at most this many hard negatives per row."}
    )
    max_train_samples: int | None = field(default=None, metadata={"help": "Train on the first N rows only."})
    use_lora: bool = field(default=True, metadata={"help": "Train a LoRA adapter on the backbone (else full FT)."})
    lora_r: int = field(default=64, metadata={"help": "LoRA rank (paper: 64)."})
    lora_alpha: int = field(default=32, metadata={"help": "LoRA alpha (paper: 32)."})
    lora_dropout: float = field(default=0.1, metadata={"help": "LoRA dropout (paper: 0.1)."})
    lora_target_modules: list[str] = field(
        default_factory=lambda: list(LASER_LORA_TARGET_MODULES),
        metadata={"help": "Modules that get LoRA (paper: q, k, v, o, gate, up, down projections)."},
    )
    merge_lora: bool = field(
        default=True, metadata={"help": "Save the merged full model to output_dir (adapter in output_dir/adapter)."}
    )
    teacher_model_name_or_path: str | None = field(
        default=None,
        metadata={
            "help": "Frozen teacher for --loss_variant no_co_learning_stage2: the stage-1 LaSER folder (trained with "
            "--loss_variant no_co_learning_stage1)."
        },
    )
    eval_max_queries: int | None = field(default=None, metadata={"help": "Evaluate on the first N queries only."})
    eval_batch_size: int = field(default=8, metadata={"help": "Encoding batch size of the evaluation."})


def load_rows(script_args: ScriptArguments):
    """The training rows and, for demo/hotpotqa, the held-out retrieval task."""
    name = script_args.dataset
    if name in MULTIHOP_DATASETS:
        qa = MULTIHOP_DATASETS[name]()
        rows = laser_rows_from_multihop(
            qa,
            split=script_args.dataset_split,
            num_negatives=script_args.num_negatives,
            rationale=script_args.rationale,
            instruction=HOTPOTQA_INSTRUCTION,
        )
        task = None
        if script_args.eval_split:
            if name == "hotpotqa":
                task = hotpotqa_task(script_args.eval_split)
            else:
                questions = qa.split(script_args.eval_split)
                task = RetrievalTask(
                    name=f"{name}-{script_args.eval_split}",
                    query_ids=list(questions["id"]),
                    queries=list(questions["question"]),
                    reasonings=list(questions["reasoning"]),
                    corpus=qa.corpus,
                    qrels={row["id"]: dict.fromkeys(row["supporting_ids"], 1) for row in questions},
                    instruction=HOTPOTQA_INSTRUCTION,
                )
            task = task.subset(script_args.eval_max_queries)
    else:
        from datasets import load_dataset

        if Path(name).suffix in (".json", ".jsonl"):
            rows = load_dataset("json", data_files=name, split="train")
        else:
            rows = load_dataset(name, split=script_args.dataset_split)
        rows, task = standardize_laser_columns(rows), None
    if script_args.max_train_samples is not None:
        rows = rows.select(range(min(script_args.max_train_samples, len(rows))))
    return rows, task


def evaluate(model: LaserModel, tokenizer, task: RetrievalTask, batch_size: int, name: str):
    encoder = LaserEncoder(model, tokenizer, name, instruction=task.instruction)
    report, _ = evaluate_retrieval(encoder, task, k_values=(1, 5, 10), batch_size=batch_size, show_progress_bar=False)
    return report


def main(argv: list[str] | None = None) -> dict:
    parser = HfArgumentParser((ScriptArguments, LaserTrainingArguments))
    script_args, training_args = parser.parse_args_into_dataclasses(args=argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")

    path = default_backbone() if script_args.model_name_or_path in ("", "default") else script_args.model_name_or_path
    tokenizer = AutoTokenizer.from_pretrained(path)
    rows, task = load_rows(script_args)
    logger.info(f"{len(rows)} training rows from {script_args.dataset!r}; variant {training_args.loss_variant!r}.")
    peft_config = None
    if script_args.use_lora:
        peft_config = laser_lora_config(
            r=script_args.lora_r,
            lora_alpha=script_args.lora_alpha,
            lora_dropout=script_args.lora_dropout,
            target_modules=script_args.lora_target_modules,
        )
    trainer = LaserTrainer(
        model=path,
        args=training_args,
        train_dataset=rows,
        processing_class=tokenizer,
        peft_config=peft_config,
        teacher_model=script_args.teacher_model_name_or_path,
    )
    train_output = trainer.train()

    output_dir = Path(training_args.output_dir)
    model = trainer.accelerator.unwrap_model(trainer.model)
    if script_args.use_lora and script_args.merge_lora:
        trainer.save_model(str(output_dir / "adapter"))
        if trainer.args.should_save:
            model = model.merge_and_unload()
            model.save_pretrained(output_dir)
            tokenizer.save_pretrained(output_dir)
    else:
        trainer.save_model(str(output_dir))
    log_history = [row for row in trainer.state.log_history if "loss" in row]
    results = {"train": train_output.metrics, "loss_variant": training_args.loss_variant, "log_history": log_history}

    if task is not None and trainer.args.should_save:
        model.eval()
        report = evaluate(model, tokenizer, task, script_args.eval_batch_size, f"laser-{training_args.loss_variant}")
        results["eval"] = report.to_dict()
        print(reports_to_markdown([report]))
    if trainer.args.should_save:
        (output_dir / "train_results.json").write_text(json.dumps(results, indent=2) + "\n")
    return results


if __name__ == "__main__":
    main(sys.argv[1:])
