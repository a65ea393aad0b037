"""LaSER (Jin et al., arXiv 2603.01425): latent thinking for dense retrieval. Importing this registers the model.

`AutoConfig` / `AutoModel` learn the `"laser"` model type, and `save_pretrained` writes an `auto_map` and copies
`configuration_laser.py` / `modeling_laser.py`, so the saved folder loads with `trust_remote_code=True` without
`hf_latent`.
"""

from __future__ import annotations

from transformers import AutoConfig, AutoModel

from .collator_laser import LaserDataCollator
from .configuration_laser import DEFAULT_INSTRUCTION, DEFAULT_QUERY_TEMPLATE, LaserConfig
from .data_laser import (
    laser_rows_from_multihop,
    make_rationale_generator,
    oracle_rationale,
    standardize_laser_columns,
    validate_laser_dataset,
)
from .encoder_laser import LaserEncoder
from .losses import LOSS_VARIANTS, LaserLoss
from .modeling_laser import (
    LaserExplicitOutput,
    LaserModel,
    LaserOutput,
    LaserPreTrainedModel,
    build_explicit_inputs,
    build_latent_inputs,
    downsample_segments,
    format_latent_text,
    format_query,
    get_segment_separator_ids,
    pad_left,
    tokenize_latent_texts,
)
from .rewrite import RewriteThenRetrieveEncoder
from .trainer_laser import LASER_LORA_TARGET_MODULES, LaserTrainer, laser_lora_config
from .training_args_laser import LaserTrainingArguments


AutoConfig.register("laser", LaserConfig, exist_ok=True)
AutoModel.register(LaserConfig, LaserModel, exist_ok=True)
LaserConfig.register_for_auto_class()
LaserModel.register_for_auto_class("AutoModel")

__all__ = [
    "DEFAULT_INSTRUCTION",
    "DEFAULT_QUERY_TEMPLATE",
    "LASER_LORA_TARGET_MODULES",
    "LOSS_VARIANTS",
    "LaserConfig",
    "LaserDataCollator",
    "LaserEncoder",
    "LaserExplicitOutput",
    "LaserLoss",
    "LaserModel",
    "LaserOutput",
    "LaserPreTrainedModel",
    "LaserTrainer",
    "LaserTrainingArguments",
    "RewriteThenRetrieveEncoder",
    "build_explicit_inputs",
    "build_latent_inputs",
    "downsample_segments",
    "format_latent_text",
    "format_query",
    "get_segment_separator_ids",
    "laser_lora_config",
    "laser_rows_from_multihop",
    "make_rationale_generator",
    "oracle_rationale",
    "pad_left",
    "standardize_laser_columns",
    "tokenize_latent_texts",
    "validate_laser_dataset",
]
