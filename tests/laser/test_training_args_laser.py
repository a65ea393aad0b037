"""Tests for hf_latent/laser/training_args_laser.py: defaults, precedence, validation, self-documentation (STYLE §2)."""

from __future__ import annotations

import dataclasses
import re

import pytest
from transformers import HfArgumentParser, TrainingArguments

from hf_latent.laser.losses import LOSS_VARIANTS
from hf_latent.laser.training_args_laser import LaserTrainingArguments


def _args(tmp_path, **kwargs) -> LaserTrainingArguments:
    return LaserTrainingArguments(output_dir=str(tmp_path), **kwargs)


def test_defaults_follow_the_paper_and_are_cpu_sane(tmp_path):
    args = _args(tmp_path)
    assert (args.temperature, args.kd_temperature, args.trajectory_temperature) == (0.02, 0.02, 0.05)
    assert args.loss_weights == {
        "latent_contrastive_weight": 1.0,
        "explicit_contrastive_weight": 1.0,
        "output_kl_weight": 10.0,
        "trajectory_kl_weight": 0.1,
    }
    assert (args.train_group_size, args.query_max_length, args.passage_max_length, args.explicit_max_length) == (
        2,
        512,
        512,
        1024,
    )
    assert args.segment_separator == "\n\n" and args.segment_downsampling == "linspace"
    assert args.gather_across_devices and args.pad_to_multiple_of == 16
    assert args.bf16 is False and args.activation_checkpointing is False and args.gradient_checkpointing is False
    assert args.remove_unused_columns is False and args.report_to in ("none", [], ["none"])
    assert (args.learning_rate, args.warmup_steps, args.weight_decay, args.max_grad_norm, args.seed) == (
        1e-4,
        0.1,
        0.0,
        1.0,
        42,
    )
    assert args.lr_scheduler_type == "linear"
    assert args.get_warmup_steps(1276) == 128  # 10% warmup


def test_variant_sets_weights_and_k_unless_given_explicitly(tmp_path):
    baseline = _args(tmp_path, loss_variant="basic_contrastive")
    assert baseline.loss_weights["output_kl_weight"] == 0.0
    assert baseline.resolve_num_latent_steps(3) == 1  # single pass
    assert _args(tmp_path, loss_variant="no_process_alignment").loss_weights["trajectory_kl_weight"] == 0.0
    # explicit field > variant > model config
    overridden = _args(tmp_path, loss_variant="no_process_alignment", trajectory_kl_weight=0.5, num_latent_steps=4)
    assert overridden.loss_weights["trajectory_kl_weight"] == 0.5 and overridden.resolve_num_latent_steps(3) == 4
    assert _args(tmp_path).resolve_num_latent_steps(5) == 5
    assert _args(tmp_path).num_latent_steps is None and _args(tmp_path).output_kl_weight is None  # kept as passed
    assert _args(tmp_path, loss_variant="no_co_learning_stage2").uses_frozen_teacher
    kwargs = _args(tmp_path, loss_variant="no_latent_view", train_group_size=3).loss_kwargs()
    assert kwargs["group_size"] == 3 and kwargs["trajectory_kl_weight"] == 0.0 and kwargs["frozen_teacher"] is False


def test_every_variant_is_accepted(tmp_path):
    for name, variant in LOSS_VARIANTS.items():
        args = _args(tmp_path, loss_variant=name)
        assert args.loss_weights == {
            field: getattr(variant, field)
            for field in (
                "latent_contrastive_weight",
                "explicit_contrastive_weight",
                "output_kl_weight",
                "trajectory_kl_weight",
            )
        }


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"loss_variant": "laser++"}, "Unknown `loss_variant`"),
        ({"temperature": 0.0}, "`temperature` must be a positive"),
        ({"kd_temperature": -1.0}, "`kd_temperature` must be a positive"),
        ({"trajectory_temperature": float("inf")}, "`trajectory_temperature` must be a positive"),
        ({"output_kl_weight": -0.1}, "`output_kl_weight` must be None or a non-negative"),
        ({"num_latent_steps": 0}, r"`num_latent_steps` \(K\) must be None or an integer >= 1"),
        ({"train_group_size": 0}, "`train_group_size` must be an integer >= 1"),
        ({"query_max_length": 0}, "`query_max_length` must be an integer >= 1"),
        ({"explicit_max_length": 0}, "`explicit_max_length` must be an integer >= 1"),
        ({"pad_to_multiple_of": 0}, "`pad_to_multiple_of` must be None or an integer >= 1"),
        ({"segment_downsampling": "cubic"}, "`segment_downsampling` must be one of"),
        ({"segment_separator": ""}, "`segment_separator` must be a non-empty string"),
        ({"min_rationale_chars": -1}, "`min_rationale_chars` must be an integer >= 0"),
        (
            {
                "latent_contrastive_weight": 0,
                "explicit_contrastive_weight": 0,
                "output_kl_weight": 0,
                "trajectory_kl_weight": 0,
            },
            "At least one loss weight must be positive",
        ),
        ({"loss_variant": "no_co_learning_stage2", "explicit_contrastive_weight": 1.0}, "frozen teacher"),
    ],
)
def test_validation_errors(tmp_path, kwargs, match):
    with pytest.raises(ValueError, match=match):
        _args(tmp_path, **kwargs)


def test_remove_unused_columns_is_forced_off(tmp_path):
    assert _args(tmp_path, remove_unused_columns=True).remove_unused_columns is False


def test_deprecated_gradient_checkpointing_alias_is_honoured(tmp_path):
    with pytest.warns(FutureWarning):
        args = _args(tmp_path, gradient_checkpointing=True)
    assert args.activation_checkpointing is True


def _laser_fields():
    parent = {field.name: field for field in dataclasses.fields(TrainingArguments)}
    return [
        field
        for field in dataclasses.fields(LaserTrainingArguments)
        if field.name not in parent or field.default != parent[field.name].default or field.name in ("bf16", "seed")
    ]


def test_docstring_lists_every_field_with_its_help(tmp_path):
    doc = LaserTrainingArguments.__doc__
    for header in (
        "> Parameters that control the latent loop",
        "> Parameters that control the losses",
        "> Parameters that control the data",
    ):
        assert header in doc
    assert "2603.01425" in doc.split("Parameters:")[0]
    fields = _laser_fields()
    assert {"temperature", "loss_variant", "train_group_size", "bf16", "learning_rate"} <= {f.name for f in fields}
    normalized_doc = " ".join(doc.split())
    for field in fields:
        assert re.search(rf"^\s{{8}}{field.name} \(`", doc, flags=re.MULTILINE), f"{field.name} is not documented"
        help_text = field.metadata.get("help")
        assert help_text, f"{field.name} has no help"
        # The help repeats the documented text (modulo markdown backticks, quotes and argparse's %% escape).
        plain_doc = re.sub(r"[`'\"]", "", normalized_doc)
        first_clause = re.sub(r"[`'\"]", "", help_text.replace("%%", "%")).split(".")[0]
        assert first_clause in plain_doc, (field.name, first_clause)


def test_hf_argument_parser_round_trip(tmp_path):
    parser = HfArgumentParser(LaserTrainingArguments)
    (args,) = parser.parse_args_into_dataclasses(
        [
            "--output_dir",
            str(tmp_path),
            "--loss_variant",
            "no_output_distillation",
            "--num_latent_steps",
            "2",
            "--train_group_size",
            "4",
            "--trajectory_kl_weight",
            "0.3",
        ]
    )
    assert args.loss_weights["output_kl_weight"] == 0.0 and args.loss_weights["trajectory_kl_weight"] == 0.3
    assert args.resolve_num_latent_steps(3) == 2 and args.train_group_size == 4
    assert parser.format_help()  # no argparse "%" formatting errors in the help strings
