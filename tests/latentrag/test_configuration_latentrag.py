"""Tests for `hf_latent/latentrag/configuration_latentrag.py`."""

from __future__ import annotations

import pytest
from transformers import AutoConfig

from hf_latent.latentrag import LatentRAGConfig


def _tiny_configs():
    generator = AutoConfig.for_model(
        "qwen2", hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, vocab_size=600
    )
    retriever = {"model_type": "bert", "hidden_size": 64, "num_attention_heads": 4, "vocab_size": 512}
    return generator, retriever


def test_defaults_follow_the_spec():
    config = LatentRAGConfig()
    assert config.model_type == "latentrag"
    assert (config.num_thought_tokens, config.num_subquery_tokens) == (4, 16)
    assert (config.max_retrievals, config.top_k_documents) == (4, 3)
    assert config.retrieval_temperature == 0.03
    assert config.use_pretrained_retriever and config.use_latent_decoding
    assert config.thought_tokens == ["<think_1>", "<think_2>", "<think_3>", "<think_4>"]
    assert config.subquery_tokens[0] == "<query_1>" and config.subquery_tokens[-1] == "<query_16>"
    assert config.structural_tokens == ["<information>", "</information>", "<answer>", "</answer>"]
    assert len(config.special_tokens) == 4 + 16 + 4
    assert config.query_action_token_id is None  # ids are filled by add_latentrag_tokens
    assert config.generator_config.model_type == "llama" and config.retriever_config.model_type == "bert"


def test_nested_configs_round_trip(tmp_path):
    generator, retriever = _tiny_configs()
    config = LatentRAGConfig(
        generator_config=generator,
        retriever_config=retriever,
        num_subquery_tokens=3,
        subquery_token_ids=[7, 8, 9],
        retriever_pooling="last_token",
    )
    config.save_pretrained(tmp_path)
    loaded = AutoConfig.from_pretrained(tmp_path)
    assert isinstance(loaded, LatentRAGConfig)
    assert loaded.generator_config.model_type == "qwen2" and loaded.generator_config.hidden_size == 64
    assert loaded.retriever_config.model_type == "bert" and loaded.retriever_config.vocab_size == 512
    assert loaded.subquery_token_ids == [7, 8, 9] and loaded.query_action_token_id == 7
    assert loaded.retriever_pooling == "last_token"


@pytest.mark.parametrize(
    "kwargs",
    [
        {"num_thought_tokens": 0},
        {"num_subquery_tokens": 0},
        {"top_k_documents": 0},
        {"max_retrievals": -1},
        {"max_answer_tokens": 0},
        {"retriever_pooling": "max"},
        {"retrieval_temperature": 0.0},
        {"retriever_lora_rank": -1},
        {"retriever_lora_dropout": 1.0},
        {"projector_num_heads": 0},
        {"thought_token_format": "<think>"},
        {"num_thought_tokens": 2, "thought_token_ids": [1, 2, 3]},
        {"num_thought_tokens": True},
    ],
)
def test_invalid_values_raise(kwargs):
    with pytest.raises(ValueError):
        LatentRAGConfig(**kwargs)
