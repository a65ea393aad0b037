"""Tests for `hf_latent/latentrag/training_args_latentrag.py`."""

from __future__ import annotations

import dataclasses
import logging

import pytest
from transformers import HfArgumentParser, TrainingArguments

from hf_latent.latentrag.losses import LATENTRAG_LOSS_VARIANTS
from hf_latent.latentrag.training_args_latentrag import AUTO_TEMPERATURE, LatentRAGTrainingArguments


def make(**kwargs) -> LatentRAGTrainingArguments:
    kwargs.setdefault("output_dir", "unused")
    return LatentRAGTrainingArguments(**kwargs)


def test_defaults_follow_the_paper_and_are_cpu_sane():
    args = make()
    # §8.2 [P] and [D] values.
    assert args.learning_rate == 1e-4 and args.weight_decay == 0.01
    assert args.warmup_steps == 0.03 and args.lr_scheduler_type == "linear"
    assert args.num_train_epochs == 5
    assert (args.generator_lora_rank, args.generator_lora_alpha, args.generator_lora_dropout) == (16, 64, 0.1)
    assert (args.retriever_lora_rank, args.retriever_lora_alpha, args.retriever_lora_dropout) == (16, 64, 0.0)
    assert args.retrieval_temperature == 0.03 and isinstance(args.retrieval_temperature, float)
    assert args.num_pseudo_relevant == 10 and args.max_length == 3000 and args.num_length_bins == 200
    assert args.loss_variant == "kl" and args.loss_weights == {"retrieval_weight": 1.0, "decoding_weight": 1.0}
    # Explicit CPU-sane settings (STYLE §2).
    assert args.bf16 is False
    assert args.activation_checkpointing is False and args.gradient_checkpointing is False
    assert args.remove_unused_columns is False
    assert args.report_to in ("none", [], ["none"])


@pytest.mark.parametrize("variant", sorted(LATENTRAG_LOSS_VARIANTS))
def test_variant_weights_and_precedence(variant):
    args = make(loss_variant=variant)
    expected = LATENTRAG_LOSS_VARIANTS[variant]
    assert args.loss_weights == {
        "retrieval_weight": expected.retrieval_weight,
        "decoding_weight": expected.decoding_weight,
    }
    assert args.uses_pretrained_retriever == expected.use_pretrained_retriever
    explicit = make(loss_variant=variant, retrieval_weight=0.5, decoding_weight=2.0)
    assert explicit.loss_weights == {"retrieval_weight": 0.5, "decoding_weight": 2.0}
    assert explicit.loss_kwargs()["retrieval_weight"] == 0.5


def test_no_decoding_variant_zeroes_only_the_decoding_weight():
    assert make(loss_variant="no_decoding").loss_weights == {"retrieval_weight": 1.0, "decoding_weight": 0.0}


def test_temperature_auto_and_strings():
    auto = make(retrieval_temperature="auto")
    assert auto.retrieval_temperature == AUTO_TEMPERATURE and auto.calibrates_temperature
    with pytest.raises(ValueError, match="calibrated"):
        auto.loss_kwargs()
    assert auto.loss_kwargs(0.05)["retrieval_temperature"] == 0.05
    assert make(retrieval_temperature="0.05").retrieval_temperature == 0.05
    assert make(retrieval_temperature=0.02).loss_kwargs()["retrieval_temperature"] == 0.02


@pytest.mark.parametrize(
    "kwargs",
    [
        {"loss_variant": "nope"},
        {"retrieval_temperature": 0.0},
        {"retrieval_temperature": "warm"},
        {"retrieval_weight": -1.0},
        {"decoding_weight": float("inf")},
        {"num_pseudo_relevant": 0},
        {"num_infonce_positives": 0},
        {"max_length": 0},
        {"num_length_bins": -1},
        {"temperature_calibration_batches": 0},
        {"generator_lora_rank": -1},
        {"generator_lora_alpha": 0.0},
        {"generator_lora_dropout": 1.0},
        {"retriever_lora_dropout": -0.1},
        {"generator_lora_target_modules": []},
    ],
)
def test_validation(kwargs):
    with pytest.raises(ValueError):
        make(**kwargs)


def test_remove_unused_columns_is_forced_off(caplog):
    with caplog.at_level(logging.WARNING):
        args = make(remove_unused_columns=True)
    assert args.remove_unused_columns is False and "remove_unused_columns" in caplog.text


def test_deprecated_gradient_checkpointing_alias_is_honoured():
    assert make(gradient_checkpointing=True).activation_checkpointing is True


def test_hf_argument_parser_accepts_auto_and_variants():
    parser = HfArgumentParser(LatentRAGTrainingArguments)
    (args,) = parser.parse_args_into_dataclasses(
        ["--output_dir", "x", "--retrieval_temperature", "auto", "--loss_variant", "cosine", "--max_length", "1024"]
    )
    assert args.calibrates_temperature and args.loss_variant == "cosine" and args.max_length == 1024
    (args,) = parser.parse_args_into_dataclasses(["--output_dir", "x", "--retrieval_temperature", "0.05"])
    assert args.retrieval_temperature == 0.05


def test_docstring_and_help_cover_every_own_field():
    parent = {f.name: f for f in dataclasses.fields(TrainingArguments)}
    doc = LatentRAGTrainingArguments.__doc__
    for f in dataclasses.fields(LatentRAGTrainingArguments):
        if f.name in parent and f.default == parent[f.name].default and f.metadata == parent[f.name].metadata:
            continue  # inherited unchanged
        assert f"{f.name} (`" in doc, f"{f.name} is not documented"
        assert f.metadata.get("help"), f"{f.name} has no help"
    assert "2605.06285" in doc
