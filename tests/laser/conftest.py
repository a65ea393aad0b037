"""Shared fixtures for the LaSER tests: tiny tokenizers and tiny causal LMs, built once per session (offline)."""

from __future__ import annotations

import os


os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

import pytest  # noqa: E402

from hf_latent.testing_utils import QWEN3_TEMPLATE, build_tiny_causal_lm, build_tiny_tokenizer  # noqa: E402


@pytest.fixture(scope="session")
def qwen3_tokenizer():
    """A tiny tokenizer with Qwen3's hybrid-thinking chat template and the `<think>` / `</think>` tokens."""
    return build_tiny_tokenizer(extra_special_tokens=("<think>", "</think>"), chat_template=QWEN3_TEMPLATE)


@pytest.fixture(scope="session")
def tiny_lm_factory(qwen3_tokenizer):
    """`factory(architecture, tie_word_embeddings=True)`: a cached tiny random causal LM (eager attention, eval)."""
    cache = {}

    def factory(architecture: str = "qwen3", tie_word_embeddings: bool = True):
        key = (architecture, tie_word_embeddings)
        if key not in cache:
            cache[key] = build_tiny_causal_lm(
                qwen3_tokenizer, architecture=architecture, tie_word_embeddings=tie_word_embeddings
            )
        return cache[key]

    return factory
