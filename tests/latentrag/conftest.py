"""Shared set-up of the LatentRAG tests: a tiny random `LatentRAGModel`, the demo corpus and its dense index.

The fixtures are module-scoped (each test module builds its own); `index` indexes `corpus` with the requesting
module's `model` fixture. `one_thread` is opt-in: `pytestmark = pytest.mark.usefixtures("one_thread")`.
"""

from __future__ import annotations

import pytest
import torch

from hf_latent.data import load_demo_corpus
from hf_latent.latentrag import LatentRAGModel
from hf_latent.testing_utils import (
    build_tiny_causal_lm,
    build_tiny_encoder,
    build_tiny_encoder_tokenizer,
    build_tiny_tokenizer,
)


def _build_tiny_latentrag(chat_template: bool = True, tie_word_embeddings: bool = True, **overrides) -> LatentRAGModel:
    """Tiny random Qwen2 generator + BERT retriever (`"tiny-bert:mean"`); `overrides` go to `from_components`.

    `chat_template=False` gives the generator tokenizer no chat template (the model config is left as it is).
    """
    tokenizer = build_tiny_tokenizer() if chat_template else build_tiny_tokenizer(chat_template=None)
    retriever_tokenizer = build_tiny_encoder_tokenizer()
    overrides.setdefault("retriever_name", "tiny-bert:mean")
    return LatentRAGModel.from_components(
        generator=build_tiny_causal_lm(tokenizer, architecture="qwen2", tie_word_embeddings=tie_word_embeddings),
        retriever=build_tiny_encoder(retriever_tokenizer),
        generator_tokenizer=tokenizer,
        retriever_tokenizer=retriever_tokenizer,
        **overrides,
    )


@pytest.fixture(scope="session")
def build_tiny_latentrag():
    """The builder of a fresh tiny model: `build_tiny_latentrag(chat_template=True, tie_word_embeddings=True, **kw)`."""
    return _build_tiny_latentrag


@pytest.fixture(scope="module")
def one_thread():
    """Tiny matrices: one torch thread is faster and immune to a busy machine."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def demo():
    return load_demo_corpus()


@pytest.fixture(scope="module")
def corpus(demo):
    """The first 10 documents of the demo corpus."""
    return demo.corpus.select(range(10))


@pytest.fixture(scope="module")
def index(model, corpus):
    return model.build_index(corpus, show_progress_bar=False)
