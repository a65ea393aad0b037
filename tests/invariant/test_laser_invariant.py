"""Invariant test (STYLE §8): the first 20 losses of a seeded tiny LaSER run on CPU are pinned.

`laser_losses.json` holds, per optimizer step, the total loss, its four components, the mean number of CoT segments
and the gradient norm of `LaserTrainer` with the paper's defaults (τ 0.02 / 0.02 / 0.05, λ 1 / 10 / 0.1, K 3, G 2,
lr 1e-4 with 10% warmup) on the demo corpus and a tiny random Qwen3. A change to the latent loop, the explicit view,
the collator, the losses or the trainer that moves these numbers fails here.

Regenerate only on purpose, and review the diff: `HF_LATENT_UPDATE_INVARIANTS=1 pytest tests/invariant`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
import transformers


GOLDEN = Path(__file__).with_name("laser_losses.json")
NUM_STEPS = 20
RELATIVE_TOLERANCE = 1e-4
KEYS = (
    "loss",
    "loss/latent_contrastive",
    "loss/explicit_contrastive",
    "loss/output_kl",
    "loss/trajectory_kl",
    "num_segments",
    "grad_norm",
)
CONFIG = {
    "backbone": "build_tiny_causal_lm(qwen3 tokenizer, 'qwen3', seed=0)",
    "data": "laser_rows_from_multihop(load_demo_corpus())",
    "loss_variant": "laser",
    "per_device_train_batch_size": 4,
    "max_steps": NUM_STEPS,
    "seed": 42,
}


def _run(output_dir: str) -> list[dict[str, float]]:
    from hf_latent.data import load_demo_corpus
    from hf_latent.laser import LaserModel
    from hf_latent.laser.data_laser import laser_rows_from_multihop
    from hf_latent.laser.trainer_laser import LaserTrainer
    from hf_latent.laser.training_args_laser import LaserTrainingArguments
    from hf_latent.testing_utils import QWEN3_TEMPLATE, build_tiny_causal_lm, build_tiny_tokenizer

    tokenizer = build_tiny_tokenizer(extra_special_tokens=("<think>", "</think>"), chat_template=QWEN3_TEMPLATE)
    model = LaserModel.from_backbone(build_tiny_causal_lm(tokenizer, "qwen3", seed=0))
    args = LaserTrainingArguments(
        output_dir=output_dir,
        use_cpu=True,
        bf16=False,
        report_to="none",
        save_strategy="no",
        per_device_train_batch_size=CONFIG["per_device_train_batch_size"],
        max_steps=NUM_STEPS,
        logging_steps=1,
        seed=CONFIG["seed"],
        disable_tqdm=True,
    )
    trainer = LaserTrainer(
        model, args, train_dataset=laser_rows_from_multihop(load_demo_corpus()), processing_class=tokenizer
    )
    trainer.train()
    history = [entry for entry in trainer.state.log_history if "loss" in entry]
    return [{"step": entry["step"], **{key: float(entry[key]) for key in KEYS}} for entry in history]


def test_laser_losses_match_the_golden_file(tmp_path):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny model: one thread is fastest, especially on a shared CPU
    try:
        steps = _run(str(tmp_path))
    finally:
        torch.set_num_threads(threads)
    assert len(steps) == NUM_STEPS
    if os.environ.get("HF_LATENT_UPDATE_INVARIANTS") == "1":
        payload = {
            "description": __doc__.split("\n\n")[1].replace("\n", " "),
            "config": CONFIG,
            "versions": {"torch": torch.__version__, "transformers": transformers.__version__},
            "steps": steps,
        }
        GOLDEN.write_text(json.dumps(payload, indent=1) + "\n")
        pytest.skip(f"Regenerated {GOLDEN.name}; review the diff before committing.")
    if not GOLDEN.exists():
        pytest.fail(f"{GOLDEN} is missing; create it with HF_LATENT_UPDATE_INVARIANTS=1.")
    golden = json.loads(GOLDEN.read_text())["steps"]
    assert [step["step"] for step in steps] == [step["step"] for step in golden]
    for observed, expected in zip(steps, golden):
        for key in KEYS:
            assert observed[key] == pytest.approx(expected[key], rel=RELATIVE_TOLERANCE, abs=1e-7), (
                f"step {expected['step']}, {key}: {observed[key]} != golden {expected[key]}"
            )
