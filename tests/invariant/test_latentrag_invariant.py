"""Invariant test (TRL style): the first 20 LatentRAG losses of a seeded tiny run are pinned.

`latentrag_losses.json` holds the total loss and its components (L_gen, L_ret, L_dec and the two halves of L_dec) of
every optimizer step of a seeded run of [`LatentRAGTrainer`] on a tiny random Qwen2 generator and a tiny random BERT
retriever over the demo corpus (CPU, one thread). They are compared with a relative tolerance of 1e-4. Regenerate the
file only on purpose, and review the diff:

```
HF_LATENT_UPDATE_INVARIANTS=1 python -m pytest tests/invariant/test_latentrag_invariant.py
```
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from hf_latent.data import load_demo_corpus
from hf_latent.latentrag import LatentRAGModel
from hf_latent.latentrag.collator_latentrag import reference_search_fn
from hf_latent.latentrag.trainer_latentrag import LatentRAGTrainer
from hf_latent.latentrag.training_args_latentrag import LatentRAGTrainingArguments
from hf_latent.latentrag.trajectories import attach_pseudo_relevant_ids, trajectories_from_multihop
from hf_latent.testing_utils import (
    build_tiny_causal_lm,
    build_tiny_encoder,
    build_tiny_encoder_tokenizer,
    build_tiny_tokenizer,
)


GOLDEN = Path(__file__).with_name("latentrag_losses.json")
UPDATE = os.environ.get("HF_LATENT_UPDATE_INVARIANTS") == "1"
NUM_STEPS = 20
KEYS = (
    "loss",
    "loss/generation",
    "loss/retrieval_alignment",
    "loss/latent_decoding",
    "loss/latent_decoding_thought",
    "loss/latent_decoding_subquery",
)
SETTINGS = {
    "generator": "build_tiny_causal_lm(qwen2, seed 0)",
    "retriever": "build_tiny_encoder(seed 0)",
    "data": "demo train split, num_distractors_per_step=0, 5 pseudo-relevant ids",
    "loss_variant": "kl",
    "retrieval_temperature": 0.05,
    "learning_rate": 1e-3,
    "per_device_train_batch_size": 2,
    "max_steps": NUM_STEPS,
    "num_length_bins": 200,
    "seed": 0,
    "torch_threads": 1,
}


def run_losses(tmp_path) -> list[dict[str, float]]:
    tokenizer, retriever_tokenizer = build_tiny_tokenizer(), build_tiny_encoder_tokenizer()
    model = LatentRAGModel.from_components(
        generator=build_tiny_causal_lm(tokenizer, architecture="qwen2", seed=0),
        retriever=build_tiny_encoder(retriever_tokenizer, seed=0),
        generator_tokenizer=tokenizer,
        retriever_tokenizer=retriever_tokenizer,
        retriever_name="tiny-bert:mean",
    )
    demo = load_demo_corpus()
    index = model.build_index(demo.corpus, show_progress_bar=False)
    trajectories, _ = trajectories_from_multihop(demo, split="train", num_distractors_per_step=0)
    trajectories = attach_pseudo_relevant_ids(trajectories, reference_search_fn(model, index, k=5), k=5)
    args = LatentRAGTrainingArguments(
        output_dir=str(tmp_path),
        use_cpu=True,
        bf16=False,
        report_to="none",
        save_strategy="no",
        disable_tqdm=True,
        logging_steps=1,
        max_steps=NUM_STEPS,
        per_device_train_batch_size=2,
        learning_rate=1e-3,
        retrieval_temperature=0.05,
        seed=0,
    )
    trainer = LatentRAGTrainer(model, args, train_dataset=trajectories, index=index)
    trainer.train()
    logs = [row for row in trainer.state.log_history if "loss" in row]
    return [{key: float(row[key]) for key in KEYS} for row in logs]


def test_latentrag_losses_match_the_golden_file(tmp_path):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        losses = run_losses(tmp_path)
    finally:
        torch.set_num_threads(threads)
    assert len(losses) == NUM_STEPS
    if UPDATE:
        GOLDEN.write_text(
            json.dumps({"settings": SETTINGS, "keys": list(KEYS), "steps": losses}, indent=2) + "\n", encoding="utf-8"
        )
        pytest.skip(f"Wrote {GOLDEN.name}; review the diff before committing.")
    if not GOLDEN.is_file():
        pytest.fail(f"{GOLDEN.name} is missing; create it with HF_LATENT_UPDATE_INVARIANTS=1.")
    golden = json.loads(GOLDEN.read_text(encoding="utf-8"))
    assert golden["settings"] == SETTINGS, "The run settings changed: regenerate the golden file on purpose."
    assert len(golden["steps"]) == len(losses)
    for step, (expected, actual) in enumerate(zip(golden["steps"], losses), start=1):
        for key in KEYS:
            assert actual[key] == pytest.approx(expected[key], rel=1e-4, abs=1e-6), f"step {step}, {key}"
