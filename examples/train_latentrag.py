"""Train LatentRAG (and optionally the explicit agentic baseline) on teacher-style multi-hop trajectories.

Steps (specs/latentrag.md §8):

1. Build trajectories from a multi-hop QA source (`trajectories_from_multihop`): HotpotQA-500 (`--dataset hotpotqa`,
   templated thoughts), the shipped demo corpus (`demo`) or IRCoT-annotated HotpotQA (`ircot`).
2. Assemble an untrained LatentRAG model from the generator and retriever (defaults: SmolLM2-135M-Instruct and
   all-MiniLM-L6-v2), build the document index with the pretrained (= frozen reference) retriever and attach each
   sub-query's top-10 pseudo-relevant document ids with it.
3. Train with [`LatentRAGTrainer`] and save the model (`AutoModel.from_pretrained(output_dir)` reloads it), the index
   (`output_dir/index`) and the trajectories (`output_dir/trajectories.jsonl`).
4. With `--train_explicit_baseline`, SFT the Search-R1-style explicit baseline on the same trajectories with TRL's
   `SFTTrainer` + LoRA and save it to `output_dir/explicit_baseline`.

Every [`LatentRAGTrainingArguments`] field is a flag (`--loss_variant cosine`, `--retrieval_temperature auto`, ...).

Example (a small CPU run; on CPU use one trajectory per micro-batch plus gradient accumulation: padded batches of
~1k-token trajectories take several GB of activations per row, and an unpadded row lets SDPA use its causal kernel):

```
python examples/train_latentrag.py --output_dir outputs/latentrag --dataset hotpotqa --max_train_trajectories 64 \
    --num_train_epochs 1 --per_device_train_batch_size 1 --gradient_accumulation_steps 4 --learning_rate 5e-4 \
    --use_cpu --num_threads 1 --train_explicit_baseline
python examples/eval_latentrag.py --model_path outputs/latentrag \
    --explicit_model_path outputs/latentrag/explicit_baseline --max_questions 20 --max_step_tokens 128
```
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path


os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

import torch  # noqa: E402
from transformers import HfArgumentParser  # noqa: E402

from hf_latent.data import load_demo_corpus, load_hotpotqa, load_ircot_hotpotqa  # noqa: E402
from hf_latent.latentrag import LatentRAGModel  # noqa: E402
from hf_latent.latentrag.collator_latentrag import reference_search_fn  # noqa: E402
from hf_latent.latentrag.explicit_sft import explicit_sft_config, train_explicit_baseline  # noqa: E402
from hf_latent.latentrag.trainer_latentrag import LatentRAGTrainer  # noqa: E402
from hf_latent.latentrag.training_args_latentrag import LatentRAGTrainingArguments  # noqa: E402
from hf_latent.latentrag.trajectories import (  # noqa: E402
    attach_pseudo_relevant_ids,
    trajectories_from_multihop,
    trajectories_to_dataset,
)
from hf_latent.retrieval import DenseIndex  # noqa: E402


logger = logging.getLogger("train_latentrag")

DATASETS = {"hotpotqa": load_hotpotqa, "demo": load_demo_corpus, "ircot": load_ircot_hotpotqa}


@dataclass
class ScriptArguments:
    """Arguments of this script (the training arguments are [`LatentRAGTrainingArguments`])."""

    generator: str = field(
        default="default", metadata={"help": "Causal LM (Hub id or folder); 'default' = SmolLM2-135M-Instruct."}
    )
    retriever: str = field(
        default="default", metadata={"help": "Dense retriever (Hub id or folder); 'default' = all-MiniLM-L6-v2."}
    )
    dataset: str = field(
        default="hotpotqa",
        metadata={"help": "Trajectory source: 'hotpotqa', 'demo' or 'ircot'.", "choices": sorted(DATASETS)},
    )
    split: str = field(default="train", metadata={"help": "Question split to build trajectories from."})
    max_train_trajectories: int | None = field(
        default=None, metadata={"help": "Use only the first N trajectories (small runs)."}
    )
    num_distractors_per_step: int = field(
        default=2, metadata={"help": "Distractors after the supporting paragraph in each step (top-3 in total)."}
    )
    corpus_scope: str = field(
        default="full",
        metadata={
            "help": "'full': index the whole corpus; 'questions': only the passages shown with the training questions "
            "(supporting + negatives), for quick runs.",
            "choices": ["full", "questions"],
        },
    )
    index_batch_size: int = field(default=64, metadata={"help": "Documents per retriever pass when indexing."})
    index_path: str | None = field(
        default=None,
        metadata={
            "help": "Reuse a saved DenseIndex (e.g. <output_dir>/index of an earlier run) when it covers the corpus and "
            "was built with the same retriever; else the index is built."
        },
    )
    train_latentrag: bool = field(
        default=True, metadata={"help": "Train LatentRAG (false: only the explicit baseline, with the flag below)."}
    )
    train_explicit_baseline: bool = field(
        default=False,
        metadata={"help": "Also SFT the explicit agentic (Search-R1-style) baseline on the same trajectories."},
    )
    explicit_max_steps: int | None = field(
        default=None, metadata={"help": "max_steps of the explicit SFT (defaults to the LatentRAG run's max_steps)."}
    )
    num_threads: int | None = field(default=None, metadata={"help": "torch.set_num_threads (CPU runs)."})


def restrict_corpus(qa, question_rows) -> dict:
    """The passages shown with the given questions (supporting + negatives), as a mapping id -> row."""
    passages = qa.passages_by_id()
    wanted = {pid for row in question_rows for pid in [*row["supporting_ids"], *(row.get("negative_ids") or [])]}
    return {pid: passages[pid] for pid in sorted(wanted) if pid in passages}


def load_or_build_index(model: LatentRAGModel, corpus, script_args: ScriptArguments, timings: dict) -> DenseIndex:
    """The saved index of `--index_path` when it matches the corpus and the retriever, else a new one."""
    doc_ids = set(corpus) if isinstance(corpus, dict) else set(corpus["id"])
    if script_args.index_path and Path(script_args.index_path).is_dir():
        index = DenseIndex.load(script_args.index_path)
        if set(index.doc_ids) == doc_ids and index.encoder_name == model.retriever_name:
            logger.info("Reusing the index at %s (%d documents).", script_args.index_path, len(index))
            return index
        logger.info(
            "The index at %s does not match the corpus or the retriever; building one.", script_args.index_path
        )
    tick = time.perf_counter()
    index = model.build_index(corpus, batch_size=script_args.index_batch_size)
    timings["index_s"] = time.perf_counter() - tick
    return index


def train_latentrag(script_args, training_args, qa, trajectories, output_dir: Path, timings: dict) -> dict:
    """Steps 2 and 3: model, index, pseudo-relevant ids, LatentRAGTrainer; saves model, index and trajectories."""
    model = LatentRAGModel.from_components(
        generator=script_args.generator,
        retriever=script_args.retriever,
        use_pretrained_retriever=training_args.uses_pretrained_retriever,
        use_latent_decoding=training_args.loss_weights["decoding_weight"] > 0,
    )
    if script_args.corpus_scope == "questions":
        ids = {t.question_id for t in trajectories}
        corpus = restrict_corpus(qa, [row for row in qa.questions if row["id"] in ids])
    else:
        corpus = qa.corpus
    index = load_or_build_index(model, corpus, script_args, timings)
    index.save(output_dir / "index")
    trajectories = attach_pseudo_relevant_ids(
        trajectories,
        reference_search_fn(model, index, k=training_args.num_pseudo_relevant),
        k=training_args.num_pseudo_relevant,
    )
    with open(output_dir / "trajectories.jsonl", "w", encoding="utf-8") as handle:
        for trajectory in trajectories:
            handle.write(json.dumps(trajectory.to_dict(), ensure_ascii=False) + "\n")

    trainer = LatentRAGTrainer(
        model=model, args=training_args, train_dataset=trajectories_to_dataset(trajectories), index=index
    )
    tick = time.perf_counter()
    train_output = trainer.train()
    timings["latentrag_train_s"] = time.perf_counter() - tick
    trainer.save_model(str(output_dir))
    losses = [row for row in trainer.state.log_history if "loss" in row]
    return {
        "num_dropped_trajectories": trainer.num_dropped_trajectories,
        "retrieval_temperature": trainer.retrieval_temperature,
        "loss_variant": training_args.loss_variant,
        "train_loss": train_output.training_loss,
        "first_log": losses[0] if losses else None,
        "last_log": losses[-1] if losses else None,
        "log_history": losses,
    }


def main(argv: list[str] | None = None) -> dict:
    parser = HfArgumentParser((ScriptArguments, LatentRAGTrainingArguments))
    script_args, training_args = parser.parse_args_into_dataclasses(args=argv)
    logging.basicConfig(
        format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO, stream=sys.stdout
    )
    if script_args.num_threads:
        torch.set_num_threads(script_args.num_threads)
    output_dir = Path(training_args.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    started = time.perf_counter()

    # 1. Trajectories.
    qa = DATASETS[script_args.dataset]()
    trajectories, skipped = trajectories_from_multihop(
        qa, split=script_args.split, num_distractors_per_step=script_args.num_distractors_per_step
    )
    if script_args.max_train_trajectories is not None:
        trajectories = trajectories[: script_args.max_train_trajectories]
    logger.info(
        "%d trajectories from %s/%s (%d rows skipped).", len(trajectories), qa.name, script_args.split, len(skipped)
    )

    summary: dict = {"dataset": qa.name, "num_trajectories": len(trajectories)}
    if script_args.train_latentrag:
        summary.update(train_latentrag(script_args, training_args, qa, trajectories, output_dir, timings))

    # 4. Explicit agentic baseline on the same trajectories.
    if script_args.train_explicit_baseline:
        explicit = LatentRAGModel.from_components(generator=script_args.generator, retriever=script_args.retriever)
        max_steps = script_args.explicit_max_steps
        sft_args = explicit_sft_config(
            str(output_dir / "explicit_sft"),
            learning_rate=training_args.learning_rate,
            weight_decay=training_args.weight_decay,
            num_train_epochs=training_args.num_train_epochs,
            max_steps=max_steps if max_steps is not None else training_args.max_steps,
            per_device_train_batch_size=training_args.per_device_train_batch_size,
            gradient_accumulation_steps=training_args.gradient_accumulation_steps,
            logging_steps=training_args.logging_steps,
            seed=training_args.seed,
            use_cpu=training_args.use_cpu,
            disable_tqdm=training_args.disable_tqdm,
        )
        tick = time.perf_counter()
        explicit, sft_trainer = train_explicit_baseline(
            explicit, trajectories, args=sft_args, max_length=training_args.max_length
        )
        timings["explicit_train_s"] = time.perf_counter() - tick
        explicit.save_pretrained(output_dir / "explicit_baseline")
        sft_losses = [row for row in sft_trainer.state.log_history if "loss" in row]
        summary["explicit_first_log"] = sft_losses[0] if sft_losses else None
        summary["explicit_last_log"] = sft_losses[-1] if sft_losses else None
        summary["explicit_log_history"] = sft_losses

    timings["total_s"] = time.perf_counter() - started
    summary["timings"] = timings
    (output_dir / "train_summary.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
    logger.info("Done: %s", json.dumps(summary, default=str))
    return summary


if __name__ == "__main__":
    main()
