"""LaSER (Jin et al., arXiv 2603.01425): latent thinking for dense retrieval. Importing this registers the model.

`AutoConfig` / `AutoModel` learn the `"laser"` model type, and `save_pretrained` writes an `auto_map` and copies
`configuration_laser.py` / `modeling_laser.py`, so the saved folder loads with `trust_remote_code=True` without
`hf_latent`.
"""

from __future__ import annotations

from transformers import AutoConfig, AutoModel

from .configuration_laser import DEFAULT_INSTRUCTION, DEFAULT_QUERY_TEMPLATE, LaserConfig
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
    get_segment_separator_id,
    pad_left,
    tokenize_latent_texts,
)


AutoConfig.register("laser", LaserConfig, exist_ok=True)
AutoModel.register(LaserConfig, LaserModel, exist_ok=True)
LaserConfig.register_for_auto_class()
LaserModel.register_for_auto_class("AutoModel")

__all__ = [
    "DEFAULT_INSTRUCTION",
    "DEFAULT_QUERY_TEMPLATE",
    "LaserConfig",
    "LaserExplicitOutput",
    "LaserModel",
    "LaserOutput",
    "LaserPreTrainedModel",
    "build_explicit_inputs",
    "build_latent_inputs",
    "downsample_segments",
    "format_latent_text",
    "format_query",
    "get_segment_separator_id",
    "pad_left",
    "tokenize_latent_texts",
]
