"""Tests for `hf_latent/core/training.py`: the training-argument checks shared by LaSER and LatentRAG."""

import logging
import math
from types import SimpleNamespace

import pytest

from hf_latent.core import (
    apply_trainer_defaults,
    check_int_fields,
    check_loss_variant,
    check_positive_fields,
    check_weight_fields,
    resolve_loss_weights,
    trainer_arguments,
)


def test_field_checks_name_the_first_bad_field():
    args = SimpleNamespace(tau=0.5, bad_tau=math.inf, w=None, bad_w=-1.0, n=1, bad_n=True, opt=None, zero=0)
    check_positive_fields(args, "tau")
    check_weight_fields(args, "w")
    check_int_fields(args, "n")
    check_int_fields(args, "opt", optional=True)
    check_int_fields(args, "zero", minimum=0)
    with pytest.raises(ValueError, match=r"`bad_tau` must be a positive finite number, got inf\."):
        check_positive_fields(args, "tau", "bad_tau")
    with pytest.raises(ValueError, match="`bad_w` must be None or a non-negative finite number"):
        check_weight_fields(args, "w", "bad_w")
    with pytest.raises(ValueError, match="`bad_n` must be an integer >= 1, got True"):
        check_int_fields(args, "n", "bad_n")
    with pytest.raises(ValueError, match="`zero` must be None or an integer >= 1"):
        check_int_fields(args, "zero", optional=True)


def test_loss_variant_and_weight_precedence():
    variants = {"a": SimpleNamespace(x=1, y=0.5)}
    check_loss_variant("a", variants)
    with pytest.raises(ValueError, match=r"Unknown `loss_variant` 'b'; expected one of \['a'\]"):
        check_loss_variant("b", variants)
    assert resolve_loss_weights(SimpleNamespace(x=None, y=2), variants["a"], ("x", "y")) == {"x": 1.0, "y": 2.0}


def test_trainer_defaults(caplog):
    args = SimpleNamespace(remove_unused_columns=True, activation_checkpointing=None, gradient_checkpointing=None)
    with caplog.at_level(logging.WARNING):
        apply_trainer_defaults(args, "text", "MyCollator", logging.getLogger("test"))
    assert "drop the text columns MyCollator needs" in caplog.text
    assert args.remove_unused_columns is False and args.activation_checkpointing is False


def test_trainer_arguments(tmp_path):
    from transformers import TrainingArguments

    from hf_latent.latentrag import LatentRAGTrainingArguments

    args = trainer_arguments(None, LatentRAGTrainingArguments, str(tmp_path / "out"), "needs more; got {got}.")
    assert isinstance(args, LatentRAGTrainingArguments) and trainer_arguments(args, type(args), "x", "") is args
    with pytest.raises(TypeError, match="^needs more; got TrainingArguments.$"):
        trainer_arguments(
            TrainingArguments(output_dir=str(tmp_path)), LatentRAGTrainingArguments, "x", "needs more; got {got}."
        )
    with pytest.raises(TypeError, match="args must be LatentRAGTrainingArguments, got dict"):
        trainer_arguments({}, LatentRAGTrainingArguments, "x", "")
