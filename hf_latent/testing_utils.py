"""Tiny random models and tokenizers for tests and quick experiments (no network, well under a second).

The sizes follow transformers' test habit: hidden 64, intermediate 128, 2 layers, 4 heads / 2 KV heads,
head_dim 16. The tokenizers are byte-level BPEs trained on a few kilobytes of built-in text, so any string
round-trips.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase, PreTrainedTokenizerFast


# ChatML, the template of SmolLM2 and Qwen. `add_generation_prompt` opens an assistant turn.
CHATML_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

# Qwen3's hybrid-thinking template, reduced to what LaSER's formatting depends on: with
# `enable_thinking=False` the generation prompt ends in an empty think block (specs/laser.md §2.2).
QWEN3_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n"
    "{% if enable_thinking is defined and enable_thinking is false %}<think>\n\n</think>\n\n{% endif %}"
    "{% endif %}"
)

_TRAINING_TEXT = """\
Paris is the capital of France. Berlin is the capital of Germany. The river Seine flows through Paris.
Instruct: Given a web search query, retrieve relevant passages that answer the query
Query: which river flows through the town where the inventor was born?
Retrieval relevant passage for the given query.
The quick brown fox jumps over the lazy dog. A latent thought is a continuous vector, not a word.
Dense retrieval encodes queries and documents into vectors and ranks documents by cosine similarity.
Step 1: find the bridge entity.\n\nStep 2: look up the answer.\n\nSo the answer is: Paris.
Decode the thought based on the latent representation: Decode the subquery based on the latent representation:
Doc 1 (Title: Example) Some text about an example. Doc 2 (Title: Other) More text, with numbers 1 2 3 1998 2024.
What is the capital of France? Who wrote the book? When was the bridge built? How many members does it have?
"""


@functools.lru_cache(maxsize=8)
def _trained_bpe_json(vocab_size: int, special_tokens: tuple[str, ...]) -> str:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(special_tokens),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator([_TRAINING_TEXT] * 4, trainer)
    return tokenizer.to_str()


def build_tiny_tokenizer(
    extra_special_tokens: Sequence[str] = (),
    vocab_size: int = 512,
    chat_template: str | None = CHATML_TEMPLATE,
) -> PreTrainedTokenizerFast:
    """A byte-level BPE with ChatML special tokens (`<|endoftext|>` pad, `<|im_end|>` EOS).

    Args:
        extra_special_tokens: more special tokens to add (e.g. a method's placeholders).
        vocab_size: BPE vocabulary size before `extra_special_tokens`.
        chat_template: Jinja chat template, or `None` for a tokenizer without one.

    Returns:
        A fresh tokenizer (callers may add tokens to it); the BPE training itself is cached per process.
    """
    from tokenizers import Tokenizer

    base = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")
    backend = Tokenizer.from_str(_trained_bpe_json(vocab_size, base))
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, bos_token=None, eos_token="<|im_end|>", pad_token="<|endoftext|>"
    )
    if extra_special_tokens:
        tokenizer.add_special_tokens({"additional_special_tokens": list(extra_special_tokens)})
    tokenizer.chat_template = chat_template
    return tokenizer


def build_tiny_encoder_tokenizer(vocab_size: int = 512) -> PreTrainedTokenizerFast:
    """A BERT-style tokenizer (`[CLS] text [SEP]`, `[PAD]` = 0) over the same byte-level BPE."""
    from tokenizers import Tokenizer, processors

    base = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
    backend = Tokenizer.from_str(_trained_bpe_json(vocab_size, base))
    backend.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", base.index("[CLS]")), ("[SEP]", base.index("[SEP]"))],
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        pad_token="[PAD]",
        unk_token="[UNK]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
        model_max_length=128,
    )


def build_tiny_causal_lm(
    tokenizer: PreTrainedTokenizerBase | None = None,
    architecture: str = "llama",
    tie_word_embeddings: bool = True,
    seed: int = 0,
    **config_overrides,
) -> PreTrainedModel:
    """A tiny random causal LM (fp32, eval mode) whose vocabulary fits `tokenizer`.

    Args:
        tokenizer: sets `vocab_size`, `pad_token_id` and `eos_token_id`; defaults to [`build_tiny_tokenizer`].
        architecture: `"llama"`, `"qwen2"`, `"qwen3"` or `"gpt2"`.
        tie_word_embeddings: tie the LM head to the input embeddings (SmolLM2, Qwen3-0.6B) or not (Qwen3-8B).
        seed: torch seed for the random weights.
        config_overrides: any other config field.
    """
    from transformers import AutoConfig, AutoModelForCausalLM

    tokenizer = tokenizer if tokenizer is not None else build_tiny_tokenizer()
    common = {
        "vocab_size": len(tokenizer),
        "pad_token_id": tokenizer.pad_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "bos_token_id": tokenizer.bos_token_id,
        "tie_word_embeddings": tie_word_embeddings,
    }
    if architecture == "gpt2":
        sizes = {"n_embd": 64, "n_layer": 2, "n_head": 4, "n_positions": 512}
    elif architecture in {"llama", "qwen2", "qwen3"}:
        sizes = {
            "hidden_size": 64,
            "intermediate_size": 128,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "head_dim": 16,
            "max_position_embeddings": 512,
        }
    else:
        raise ValueError(f"Unknown tiny architecture {architecture!r}; use llama, qwen2, qwen3 or gpt2.")
    config = AutoConfig.for_model(architecture, **{**common, **sizes, **config_overrides})
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32, attn_implementation="eager")
    return model.eval()


def build_tiny_encoder(tokenizer: PreTrainedTokenizerBase | None = None, seed: int = 0, **config_overrides):
    """A tiny random BERT encoder (hidden 64, 2 layers, no dropout) for `tokenizer`."""
    from transformers import BertConfig, BertModel

    tokenizer = tokenizer if tokenizer is not None else build_tiny_encoder_tokenizer()
    config = BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=256,
        pad_token_id=tokenizer.pad_token_id,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
        **config_overrides,
    )
    torch.manual_seed(seed)
    return BertModel(config).eval()
