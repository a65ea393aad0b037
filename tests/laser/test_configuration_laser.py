"""Tests for `hf_latent/laser/configuration_laser.py`."""

from __future__ import annotations

import json

import pytest
from transformers import AutoConfig

from hf_latent.laser import DEFAULT_INSTRUCTION, DEFAULT_QUERY_TEMPLATE, LaserConfig, LaserModel
from hf_latent.testing_utils import build_tiny_causal_lm, build_tiny_tokenizer


def test_defaults_follow_the_spec():
    config = LaserConfig()
    assert config.model_type == "laser"
    assert config.backbone_config is None
    assert config.num_latent_steps == 3
    assert config.latent_variant == "released"
    assert config.pooling == "mean"
    assert config.normalize is True
    assert config.use_chat_template is True
    assert config.enable_thinking is False
    assert config.query_template == DEFAULT_QUERY_TEMPLATE == "Instruct: {instruction}\nQuery: {query}"
    assert config.default_instruction == DEFAULT_INSTRUCTION == "Retrieval relevant passage for the given query."
    assert (config.query_max_length, config.passage_max_length, config.explicit_max_length) == (8192, 8192, 1024)
    assert config.segment_separator == "\n\n"
    assert config.segment_downsampling == "linspace"


@pytest.mark.parametrize("value", [0, -1, True, 2.0, "3"])
def test_num_latent_steps_must_be_a_positive_integer(value):
    with pytest.raises(ValueError, match=r"num_latent_steps.*>= 1"):
        LaserConfig(num_latent_steps=value)


@pytest.mark.parametrize(
    ("field", "value", "match"),
    [
        ("latent_variant", "both", "latent_variant"),
        ("pooling", "last", "pooling"),
        ("segment_downsampling", "uniform", "segment_downsampling"),
        ("query_template", "Instruct: {instruction}", "query"),
        ("query_max_length", 0, "query_max_length"),
        ("explicit_max_length", -5, "explicit_max_length"),
        ("segment_separator", "", "segment_separator"),
    ],
)
def test_invalid_values_raise(field, value, match):
    with pytest.raises(ValueError, match=match):
        LaserConfig(**{field: value})


def test_unknown_kwargs_are_forwarded_to_the_base_config():
    config = LaserConfig(num_latent_steps=2, my_extra_field=7)
    assert config.my_extra_field == 7


@pytest.mark.parametrize("architecture", ["llama", "qwen3", "gpt2"])
def test_nested_backbone_config_round_trips(architecture, tmp_path):
    backbone = build_tiny_causal_lm(build_tiny_tokenizer(), architecture=architecture)
    config = LaserConfig(backbone_config=backbone.config, num_latent_steps=4, latent_variant="paper")
    config.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["model_type"] == "laser"
    assert saved["backbone_config"]["model_type"] == architecture

    for loaded in (LaserConfig.from_pretrained(tmp_path), AutoConfig.from_pretrained(tmp_path)):
        assert isinstance(loaded, LaserConfig)
        assert (loaded.num_latent_steps, loaded.latent_variant) == (4, "paper")
        assert type(loaded.backbone_config) is type(backbone.config)
        original, reloaded = backbone.config.to_dict(), loaded.backbone_config.to_dict()
        for key in ("transformers_version", "_name_or_path"):
            original.pop(key, None), reloaded.pop(key, None)
        assert reloaded == original


def test_backbone_config_from_a_dict():
    config = LaserConfig(backbone_config={"model_type": "qwen3", "hidden_size": 64, "num_hidden_layers": 2})
    assert config.backbone_config.model_type == "qwen3"
    assert config.backbone_config.hidden_size == 64


def test_model_needs_a_backbone_config():
    with pytest.raises(ValueError, match="backbone_config"):
        LaserModel(LaserConfig())
