"""LaSER: latent thinking on a causal-LM backbone for dense retrieval.

Jin et al., "LaSER: Internalizing Explicit Reasoning into Latent Space for Dense Retrieval", arXiv 2603.01425.
Implementation spec: specs/laser.md (section numbers below refer to it).

Single-file policy: `save_pretrained` copies this file and `configuration_laser.py` next to the weights, so that
`AutoModel.from_pretrained(path, trust_remote_code=True)` works without `hf_latent`. At module level it imports only
torch, transformers, the standard library and `.configuration_laser`; optional imports (`peft`, `hf_latent`) are lazy
and guarded by try/except.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from transformers import (
    AutoModelForCausalLM,
    BatchEncoding,
    DynamicCache,
    PreTrainedConfig,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)
from transformers.utils import ModelOutput, logging

from .configuration_laser import (
    DEFAULT_INSTRUCTION,
    DEFAULT_QUERY_TEMPLATE,
    SEGMENT_DOWNSAMPLING_MODES,
    LaserConfig,
    _check_num_latent_steps,
)


logger = logging.get_logger(__name__)

_SENTINEL = "\u0000LASER_CONTENT\u0000"


# ----------------------------------------------------------------------------------------------------------------------
# Outputs
# ----------------------------------------------------------------------------------------------------------------------


@dataclass
class LaserOutput(ModelOutput):
    """Output of [`LaserModel.forward`] (the latent view).

    Args:
        embeddings (`torch.FloatTensor` of shape `(batch, hidden)`):
            Mean of the pooled latent states, L2-normalised when `config.normalize` (the retrieval embedding).
        latent_states (`torch.FloatTensor` of shape `(batch, num_latent_steps, hidden)`):
            The un-normalised pooled states: last-layer states after the final norm (what the LM head sees).
            `released`: h_0 (last prompt token) .. h_{K-1}; `paper`: h_1 .. h_K (after each soft token).
    """

    embeddings: torch.FloatTensor | None = None
    latent_states: torch.FloatTensor | None = None


@dataclass
class LaserExplicitOutput(ModelOutput):
    """Output of [`LaserModel.encode_explicit`] (the explicit teacher view, specs/laser.md §3).

    Args:
        explicit_embeddings (`torch.FloatTensor` of shape `(batch, hidden)`):
            `normalize(h_EOS)`, the teacher query vector Q*.
        segment_states (`torch.FloatTensor` of shape `(batch, num_latent_steps, hidden)`):
            Un-normalised hidden states at the selected CoT segment boundaries (the trajectory targets T).
        num_segments (`torch.LongTensor` of shape `(batch,)`):
            M, the number of segment boundaries found in each row's CoT span (0 when the span is empty), for logging.
    """

    explicit_embeddings: torch.FloatTensor | None = None
    segment_states: torch.FloatTensor | None = None
    num_segments: torch.LongTensor | None = None


# ----------------------------------------------------------------------------------------------------------------------
# Input formatting (specs/laser.md §2.2, §3.1, §6 [D]); shared with the training collator
# ----------------------------------------------------------------------------------------------------------------------


def format_query(
    query: str,
    instruction: str | None = None,
    query_template: str = DEFAULT_QUERY_TEMPLATE,
    default_instruction: str = DEFAULT_INSTRUCTION,
) -> str:
    """Apply the query template: `Instruct: {instruction}\\nQuery: {query}` by default (specs/laser.md §2.2).

    Args:
        query: the query text.
        instruction: the task instruction; `None` uses `default_instruction` (an explicit `""` is kept).
        query_template: format string with `{query}` and optionally `{instruction}`.
        default_instruction: fallback instruction.
    """
    instruction = default_instruction if instruction is None else instruction
    return query_template.format(instruction=instruction, query=query)


def _chat_template_kwargs(tokenizer: PreTrainedTokenizerBase, enable_thinking: bool) -> dict:
    # Pass `enable_thinking` only to templates that read it (Qwen3). With `False` the Qwen3 template itself emits the
    # empty think block, so we never append it by hand (and never twice), specs/laser.md §2.2.
    template = tokenizer.chat_template
    source = json.dumps(template) if isinstance(template, dict) else str(template)
    return {"enable_thinking": enable_thinking} if "enable_thinking" in source else {}


def _uses_chat_template(tokenizer: PreTrainedTokenizerBase, use_chat_template: bool) -> bool:
    return bool(use_chat_template and getattr(tokenizer, "chat_template", None))


def format_latent_text(
    tokenizer: PreTrainedTokenizerBase,
    text: str,
    use_chat_template: bool = True,
    enable_thinking: bool = False,
) -> str:
    """Wrap `text` (an already formatted query, or a raw document) as LaSER's model input string.

    With a chat template: one user turn plus the generation prompt, e.g. for Qwen3
    `<|im_start|>user\\n{text}<|im_end|>\\n<|im_start|>assistant\\n<think>\\n\\n</think>\\n\\n`. Templates that inject
    a default system prompt (SmolLM2's ChatML) are used as they are. No EOS is appended. Without a chat template (or
    with `use_chat_template=False`) the text is returned unchanged.
    """
    if not _uses_chat_template(tokenizer, use_chat_template):
        return text
    return tokenizer.apply_chat_template(
        [{"role": "user", "content": text}],
        tokenize=False,
        add_generation_prompt=True,
        **_chat_template_kwargs(tokenizer, enable_thinking),
    )


def _template_affixes(tokenizer: PreTrainedTokenizerBase, use_chat_template: bool, enable_thinking: bool):
    """The (prefix, suffix) strings the template puts around the content, or `None` if they cannot be found."""
    rendered = format_latent_text(tokenizer, _SENTINEL, use_chat_template, enable_thinking)
    if rendered.count(_SENTINEL) != 1:
        return None
    prefix, suffix = rendered.split(_SENTINEL)
    return prefix, suffix


def _resolve_pad_token_id(tokenizer: PreTrainedTokenizerBase) -> int:
    # specs/laser.md §2.2: if there is no pad token, use EOS.
    if tokenizer.pad_token_id is not None:
        return tokenizer.pad_token_id
    if tokenizer.eos_token_id is not None:
        return tokenizer.eos_token_id
    raise ValueError(
        "The tokenizer has neither a pad token nor an EOS token, so LaSER cannot pad a batch. Set one, e.g. "
        "`tokenizer.pad_token = tokenizer.eos_token` or `tokenizer.add_special_tokens({'pad_token': '<pad>'})`."
    )


def _check_texts(texts: Sequence[str], what: str = "text") -> None:
    for index, text in enumerate(texts):
        if not isinstance(text, str):
            raise TypeError(f"{what} at index {index} must be a string, got {type(text).__name__}.")
        if not text.strip():
            raise ValueError(f"{what} at index {index} is empty or whitespace-only; LaSER cannot encode it.")


def _tokenize_templated(
    tokenizer: PreTrainedTokenizerBase,
    content: str,
    use_chat_template: bool,
    enable_thinking: bool,
    max_length: int | None,
    affixes: tuple[str, str] | None,
) -> tuple[list[int], bool]:
    """Token ids of one templated text; over `max_length`, the *content* loses tokens at its end (§6 [D])."""
    templated = _uses_chat_template(tokenizer, use_chat_template)
    rendered = format_latent_text(tokenizer, content, use_chat_template, enable_thinking)
    # Templates carry their own special tokens (HF convention for chat templates); raw text gets the tokenizer's
    # usual ones (e.g. a BOS), minus any appended EOS: the latent view has no EOS (§2.2).
    add_special_tokens = not templated
    eos_id = tokenizer.eos_token_id

    def strip_eos(ids: list[int]) -> list[int]:
        if add_special_tokens and ids and eos_id is not None and ids[-1] == eos_id:
            if not (tokenizer.eos_token and rendered.endswith(tokenizer.eos_token)):
                return ids[:-1]
        return ids

    if tokenizer.is_fast:
        encoding = tokenizer(rendered, add_special_tokens=add_special_tokens, return_offsets_mapping=True)
        ids, offsets = strip_eos(list(encoding["input_ids"])), encoding["offset_mapping"]
    else:
        ids, offsets = strip_eos(tokenizer.encode(rendered, add_special_tokens=add_special_tokens)), None
    if max_length is None or len(ids) <= max_length:
        return ids, False

    # Locate the content span in the rendered string.
    if templated and affixes is not None and rendered.startswith(affixes[0]) and rendered.endswith(affixes[1]):
        start, end = len(affixes[0]), len(rendered) - len(affixes[1])
    elif templated:
        start = rendered.find(content)
        start, end = (start, start + len(content)) if start >= 0 else (0, len(rendered))
    else:
        start, end = 0, len(rendered)
    excess = len(ids) - max_length
    if offsets is not None:
        content_positions = [i for i, (a, b) in enumerate(offsets[: len(ids)]) if b > a and a < end and b > start]
        if len(content_positions) <= excess:
            raise ValueError(
                f"max_length={max_length} leaves no room for the text: the template alone takes "
                f"{len(ids) - len(content_positions)} tokens. Increase max_length."
            )
        cut = content_positions[-1] + 1
        return ids[: cut - excess] + ids[cut:], True
    # Slow tokenizers: tokenise prefix, content and suffix separately.
    prefix_ids = tokenizer.encode(rendered[:start], add_special_tokens=False)
    suffix_ids = tokenizer.encode(rendered[end:], add_special_tokens=False)
    budget = max_length - len(prefix_ids) - len(suffix_ids)
    if budget < 1:
        raise ValueError(f"max_length={max_length} leaves no room for the text once the template is added.")
    return prefix_ids + tokenizer.encode(rendered[start:end], add_special_tokens=False)[:budget] + suffix_ids, True


def _resolve_formatting(config: LaserConfig | None, **values):
    """Explicit argument > config field > module default."""
    defaults = {
        "query_template": DEFAULT_QUERY_TEMPLATE,
        "default_instruction": DEFAULT_INSTRUCTION,
        "use_chat_template": True,
        "enable_thinking": False,
    }
    resolved = {}
    for name, value in values.items():
        if value is None:
            value = getattr(config, name, None) if config is not None else None
        resolved[name] = defaults[name] if value is None else value
    return resolved


def _as_instructions(instruction: str | Sequence[str] | None, count: int) -> list[str | None]:
    if instruction is None or isinstance(instruction, str):
        return [instruction] * count
    instructions = list(instruction)
    if len(instructions) != count:
        raise ValueError(f"Got {len(instructions)} instructions for {count} texts.")
    return instructions


def tokenize_latent_texts(
    tokenizer: PreTrainedTokenizerBase,
    texts: Sequence[str],
    is_query: bool = False,
    instruction: str | Sequence[str] | None = None,
    max_length: int | None = None,
    config: LaserConfig | None = None,
    query_template: str | None = None,
    default_instruction: str | None = None,
    use_chat_template: bool | None = None,
    enable_thinking: bool | None = None,
) -> list[list[int]]:
    """Unpadded latent-view token ids (specs/laser.md §2.2), one list per text.

    Queries get the instruction template, every text the chat template with the generation prompt (and the empty
    think block where the template supports `enable_thinking`), no EOS. Texts over `max_length` are truncated inside
    their content, so the template suffix is always present (§6 [D]); one warning per call says how many.

    Args:
        tokenizer: the backbone's tokenizer.
        texts: queries or documents.
        is_query: apply `query_template` (documents are raw text).
        instruction: one instruction for all queries, one per query, or `None` for `default_instruction`.
        max_length: maximum length in tokens, template included; `None` means no limit.
        config: a [`LaserConfig`] supplying the formatting fields not given explicitly.
        query_template, default_instruction, use_chat_template, enable_thinking: override the config.

    Raises:
        ValueError: a text is empty or whitespace-only (the message names its index).
    """
    _check_texts(texts)
    fmt = _resolve_formatting(
        config,
        query_template=query_template,
        default_instruction=default_instruction,
        use_chat_template=use_chat_template,
        enable_thinking=enable_thinking,
    )
    if is_query:
        instructions = _as_instructions(instruction, len(texts))
        contents = [
            format_query(text, instr, fmt["query_template"], fmt["default_instruction"])
            for text, instr in zip(texts, instructions)
        ]
    else:
        contents = list(texts)
    affixes = _template_affixes(tokenizer, fmt["use_chat_template"], fmt["enable_thinking"])
    all_ids, num_truncated = [], 0
    for content in contents:
        ids, truncated = _tokenize_templated(
            tokenizer, content, fmt["use_chat_template"], fmt["enable_thinking"], max_length, affixes
        )
        all_ids.append(ids)
        num_truncated += truncated
    if num_truncated:
        # Warn once per max_length; a corpus encoded batch by batch would otherwise repeat it for every batch.
        log = logger.info if max_length in _TRUNCATION_WARNED else logger.warning
        _TRUNCATION_WARNED.add(max_length)
        log(
            f"{num_truncated} of {len(texts)} texts exceed max_length={max_length} tokens and were truncated "
            "(end of the content dropped, template kept; later truncations at this length are logged at INFO)."
        )
    return all_ids


_TRUNCATION_WARNED: set[int] = set()


def pad_left(
    sequences: Sequence[Sequence[int]],
    pad_token_id: int,
    pad_to_multiple_of: int | None = None,
) -> BatchEncoding:
    """Left-pad token id lists into `input_ids` and `attention_mask` of shape `(batch, seq_len)` (LongTensors)."""
    length = max(len(ids) for ids in sequences)
    if pad_to_multiple_of:
        length = -(-length // pad_to_multiple_of) * pad_to_multiple_of
    input_ids = torch.full((len(sequences), length), pad_token_id, dtype=torch.long)
    attention_mask = torch.zeros((len(sequences), length), dtype=torch.long)
    for row, ids in enumerate(sequences):
        if ids:
            input_ids[row, length - len(ids) :] = torch.tensor(list(ids), dtype=torch.long)
            attention_mask[row, length - len(ids) :] = 1
    return BatchEncoding({"input_ids": input_ids, "attention_mask": attention_mask})


def build_latent_inputs(
    tokenizer: PreTrainedTokenizerBase,
    texts: Sequence[str],
    is_query: bool = False,
    instruction: str | Sequence[str] | None = None,
    max_length: int | None = None,
    config: LaserConfig | None = None,
    pad_to_multiple_of: int | None = None,
    **formatting,
) -> BatchEncoding:
    """A left-padded latent-view batch: [`tokenize_latent_texts`] then [`pad_left`] (pad = EOS if no pad token).

    Returns:
        `BatchEncoding` with `input_ids` and `attention_mask`, each of shape `(batch, seq_len)`, ready for
        [`LaserModel.forward`].
    """
    pad_token_id = _resolve_pad_token_id(tokenizer)
    ids = tokenize_latent_texts(
        tokenizer,
        texts,
        is_query=is_query,
        instruction=instruction,
        max_length=max_length,
        config=config,
        **formatting,
    )
    return pad_left(ids, pad_token_id, pad_to_multiple_of)


def get_segment_separator_ids(tokenizer: PreTrainedTokenizerBase, separator: str = "\n\n") -> tuple[int, ...]:
    """The token ids that `separator` takes *inside running text*; a CoT boundary is where they end (laser.md §3.2).

    For Qwen tokenizers this is one id, the last of `tokenizer.encode(separator)` (the released rule, kept for
    parity). GPT-2-style byte-level tokenizers (SmolLM2, Llama 3) split `"\n\n"` before a word into two `"\n"`
    tokens although `encode("\n\n")` alone is one merged token, so the released rule would find no boundary at
    all; matching the in-text sequence finds every paragraph break (spec §3.2 [D]). The sequence is read from the
    offsets of `tokenizer("a" + separator + "b")`; tokenizers without offsets fall back to the released rule.
    """
    ids = tokenizer.encode(separator, add_special_tokens=False)
    if not ids:
        raise ValueError(f"The segment separator {separator!r} tokenises to nothing; pass a non-empty string.")
    released = (ids[-1],)
    try:
        encoded = tokenizer(f"a{separator}b", add_special_tokens=False, return_offsets_mapping=True)
    except (NotImplementedError, TypeError, ValueError):  # slow tokenizers have no offsets
        return released
    start, end = 1, 1 + len(separator)
    in_text = tuple(
        token_id
        for token_id, (first, last) in zip(encoded["input_ids"], encoded["offset_mapping"])
        if first >= start and last <= end and last > first
    )
    if not in_text or tokenizer.decode(list(in_text)) != separator:
        return released
    return in_text


def build_explicit_inputs(
    tokenizer: PreTrainedTokenizerBase,
    queries: Sequence[str],
    rationales: Sequence[str | None],
    instruction: str | Sequence[str] | None = None,
    max_length: int = 1024,
    config: LaserConfig | None = None,
    min_rationale_chars: int = 5,
    pad_to_multiple_of: int | None = None,
    **formatting,
) -> BatchEncoding:
    """A left-padded explicit-view (teacher) batch: `[templated query; CoT; EOS]` (specs/laser.md §3.1).

    The query is formatted exactly as in the latent view (instruction template, chat template, empty think block),
    the CoT follows directly (where the assistant's answer would go). Query and CoT are tokenised separately and the
    ids concatenated, so the CoT start is exact [D]; the concatenation is right-truncated to `max_length` tokens and
    one EOS is appended after truncation (at most `max_length + 1` tokens, as in the released code). A rationale that
    is missing, empty or shorter than `min_rationale_chars` characters is replaced by the query text [C].

    Returns:
        `BatchEncoding` with `input_ids`, `attention_mask` (`(batch, seq_len)`), and `cot_start`, `cot_end`
        (`(batch,)`): the CoT span `[cot_start, cot_end)` in padded coordinates (EOS excluded, at `cot_end`; an empty
        span, `cot_start == cot_end`, means the query filled the budget).
    """
    if len(queries) != len(rationales):
        raise ValueError(f"Got {len(queries)} queries but {len(rationales)} rationales.")
    if tokenizer.eos_token_id is None:
        raise ValueError("The explicit view appends an EOS token, but the tokenizer has no `eos_token`.")
    query_ids = tokenize_latent_texts(
        tokenizer, queries, is_query=True, instruction=instruction, max_length=None, config=config, **formatting
    )
    sequences, spans = [], []
    for query, ids, rationale in zip(queries, query_ids, rationales):
        cot = rationale if rationale is not None and len(rationale.strip()) >= min_rationale_chars else query
        cot_ids = tokenizer.encode(cot, add_special_tokens=False)
        full = (ids + cot_ids)[:max_length]
        spans.append((min(len(ids), len(full)), len(full)))
        sequences.append(full + [tokenizer.eos_token_id])
    batch = pad_left(sequences, _resolve_pad_token_id(tokenizer), pad_to_multiple_of)
    offsets = [batch["input_ids"].shape[1] - len(ids) for ids in sequences]
    batch["cot_start"] = torch.tensor([offset + start for offset, (start, _) in zip(offsets, spans)])
    batch["cot_end"] = torch.tensor([offset + end for offset, (_, end) in zip(offsets, spans)])
    return batch


def _separator_ends(
    input_ids: torch.LongTensor, separator_token_ids: int | Sequence[int], span_start: torch.LongTensor
) -> torch.BoolTensor:
    """`(batch, seq_len)`: True where the id sequence `separator_token_ids` ends, starting at or after `span_start`."""
    separator = [separator_token_ids] if isinstance(separator_token_ids, int) else list(separator_token_ids)
    if not separator:
        raise ValueError("`separator_token_ids` is empty; use `get_segment_separator_ids(tokenizer)`.")
    length = len(separator)
    ends = torch.zeros_like(input_ids, dtype=torch.bool)
    if input_ids.shape[1] < length:
        return ends
    match = torch.ones_like(input_ids[:, length - 1 :], dtype=torch.bool)
    for offset, token_id in enumerate(separator):  # window [p - length + 1, p]
        match &= input_ids[:, offset : input_ids.shape[1] - length + 1 + offset] == token_id
    ends[:, length - 1 :] = match
    positions = torch.arange(input_ids.shape[1], device=input_ids.device)
    return ends & (positions - (length - 1) >= span_start.unsqueeze(1))


def downsample_segments(num_segments: int, num_steps: int, mode: str = "linspace") -> list[int]:
    """0-based indices of the M segment features paired with the K latent steps (specs/laser.md §3.3).

    - `"linspace"` (released): `floor(linspace(0, M-1, K))` if M >= K (first and last always kept, computed in exact
      integer arithmetic), else all M then the last repeated.
    - `"paper"`: step i = 1..K takes segment `floor(i*M/K)` (1-based), clamped to [1, M].

    Returns an empty list when M = 0 (the caller then repeats the teacher's final state).
    """
    _check_num_latent_steps(num_steps)
    if mode not in SEGMENT_DOWNSAMPLING_MODES:
        raise ValueError(f"`segment_downsampling` must be one of {SEGMENT_DOWNSAMPLING_MODES}, got {mode!r}.")
    if num_segments <= 0:
        return []
    if mode == "paper":
        return [min(max(i * num_segments // num_steps, 1), num_segments) - 1 for i in range(1, num_steps + 1)]
    if num_segments < num_steps:
        return list(range(num_segments)) + [num_segments - 1] * (num_steps - num_segments)
    if num_steps == 1:
        return [0]
    return [k * (num_segments - 1) // (num_steps - 1) for k in range(num_steps)]


# ----------------------------------------------------------------------------------------------------------------------
# Backbone helpers
# ----------------------------------------------------------------------------------------------------------------------


def _unwrap(backbone: torch.nn.Module) -> torch.nn.Module:
    """The causal LM under an optional PEFT wrapper (LoRA layers are injected in place, so they stay active)."""
    get_base_model = getattr(backbone, "get_base_model", None)
    return get_base_model() if callable(get_base_model) else backbone


def _is_peft(module: torch.nn.Module) -> bool:
    return callable(getattr(module, "get_base_model", None)) and hasattr(module, "peft_config")


def _decoder(causal_lm: torch.nn.Module) -> torch.nn.Module:
    try:
        decoder = causal_lm.get_decoder()
    except (AttributeError, NotImplementedError):
        decoder = None
    if decoder is None or decoder is causal_lm:
        decoder = getattr(causal_lm, "base_model", None)
    return decoder


def _check_causal_lm(backbone: torch.nn.Module) -> None:
    """Raise a clear error if `backbone` cannot run LaSER's latent loop."""
    causal_lm = _unwrap(backbone)
    name = type(causal_lm).__name__
    if not isinstance(causal_lm, PreTrainedModel):
        raise TypeError(f"The LaSER backbone must be a transformers `PreTrainedModel`, got {name}.")
    head = causal_lm.get_output_embeddings()
    if head is None or getattr(causal_lm.config, "is_encoder_decoder", False):
        raise TypeError(
            f"{name} has no causal LM head, which LaSER needs to form soft tokens (specs/laser.md §2.1). Pass a "
            "*ForCausalLM checkpoint (e.g. loaded with `AutoModelForCausalLM`), not an `AutoModel` / encoder."
        )
    decoder = _decoder(causal_lm)
    if decoder is None or decoder is causal_lm:
        raise TypeError(f"Cannot find the base decoder of {name} (`get_decoder()` / `base_model`).")
    parameters = inspect.signature(decoder.forward).parameters
    missing = [arg for arg in ("inputs_embeds", "attention_mask", "past_key_values") if arg not in parameters]
    if missing:
        raise TypeError(
            f"{type(decoder).__name__}.forward does not accept {missing}; LaSER feeds soft tokens as `inputs_embeds` "
            "with a KV cache, so the backbone must support both."
        )
    embeddings = causal_lm.get_input_embeddings()
    if embeddings is None or getattr(embeddings, "weight", None) is None:
        raise TypeError(f"{name} has no input-embedding table to mix soft tokens from.")
    if head.weight.shape[0] != embeddings.weight.shape[0]:
        raise TypeError(
            f"{name}'s LM head scores {head.weight.shape[0]} tokens but its input-embedding table has "
            f"{embeddings.weight.shape[0]} rows; soft tokens need one embedding per LM-head token."
        )


def _is_checkpointing(causal_lm: PreTrainedModel) -> bool:
    # transformers 5 renamed `is_gradient_checkpointing` to `is_activation_checkpointing` (the old name warns).
    flag = getattr(causal_lm, "is_activation_checkpointing", None)
    return bool(causal_lm.is_gradient_checkpointing if flag is None else flag)


def _to_left_padding(attention_mask: torch.Tensor) -> torch.Tensor | None:
    """The permutation of positions that moves padding to the left (stable for real tokens), or `None` if already."""
    if bool(attention_mask[:, -1].all()):
        return None
    if not bool(attention_mask.any(dim=-1).all()):
        raise ValueError("A row of `attention_mask` is all zeros: every text needs at least one token.")
    return torch.argsort(attention_mask.to(torch.int8), dim=-1, stable=True)


def _position_ids(attention_mask: torch.Tensor) -> torch.Tensor:
    # Mask-derived positions, so left padding gives the same positions as no padding (specs/laser.md §2.5 [D]).
    position_ids = attention_mask.long().cumsum(-1) - 1
    return position_ids.masked_fill(attention_mask == 0, 1)


# ----------------------------------------------------------------------------------------------------------------------
# Model
# ----------------------------------------------------------------------------------------------------------------------


class LaserPreTrainedModel(PreTrainedModel):
    config_class = LaserConfig
    base_model_prefix = "backbone"
    main_input_name = "input_ids"
    supports_gradient_checkpointing = True
    _supports_sdpa = True
    _supports_flash_attn = True
    _supports_flex_attn = True
    _supports_attention_backend = True

    def _init_weights(self, module):
        # LaSER adds no parameters; backbone modules are initialised by the backbone's own rule.
        backbone = getattr(self, "backbone", None)
        causal_lm = _unwrap(backbone) if backbone is not None else None
        if isinstance(causal_lm, PreTrainedModel):
            causal_lm._init_weights(module)


class LaserModel(LaserPreTrainedModel):
    r"""
    LaSER dense retriever: a causal LM (`self.backbone`, any `AutoModelForCausalLM` with an LM head) that encodes a
    text with a short run of latent thinking (specs/laser.md §2).

    The prompt is prefilled with a KV cache; each step feeds one soft token `t = softmax(W_lm h)^T E` (E = the
    *input* embedding table, softmax in float32) and records the last-layer, post-norm state h. The embedding is the
    L2-normalised mean of the K pooled states.

    Build one from a checkpoint with [`LaserModel.from_backbone`] (the released LaSER checkpoints are plain causal LMs),
    or from a [`LaserConfig`] with a nested `backbone_config` (random weights). Encode texts with [`LaserModel.encode`].

    LoRA: attach it to the backbone, `model.backbone = peft.get_peft_model(model.backbone, lora_config)` (recommended:
    the adapter is then a standard adapter of the plain causal LM, and merging it gives a causal LM like the released
    checkpoints). `model.save_pretrained(dir)` then writes the LaSER config plus the adapter only, which
    `LaserModel.from_pretrained(dir)` reloads on top of the adapter's base model; [`LaserModel.merge_and_unload`]
    merges it. Wrapping the whole model (`get_peft_model(model, lora_config)`) also works, with peft's own save/load.
    """

    def __init__(self, config: LaserConfig, backbone: PreTrainedModel | None = None):
        super().__init__(config)
        if backbone is None:
            if config.backbone_config is None:
                raise ValueError("LaserConfig.backbone_config is None: LaSER needs a causal-LM backbone config.")
            backbone = AutoModelForCausalLM.from_config(config.backbone_config)
        _check_causal_lm(backbone)
        self.backbone = backbone
        self.post_init()

    # -- construction ------------------------------------------------------------------------------------------------

    @classmethod
    def from_backbone(
        cls,
        backbone: str | os.PathLike | PreTrainedModel | None = None,
        adapter_name_or_path: str | os.PathLike | None = None,
        **kwargs,
    ) -> LaserModel:
        """Wrap a causal-LM checkpoint (e.g. a released `Alibaba-NLP/LaSER-Qwen3-*` model) as a `LaserModel`.

        Args:
            backbone: a Hub id or local folder (loaded with `AutoModelForCausalLM.from_pretrained`), a causal-LM
                instance, or `None` / `"default"` for hf_latent's default backbone (SmolLM2-135M-Instruct).
            adapter_name_or_path: optional PEFT adapter to load on top of the backbone.
            kwargs: [`LaserConfig`] fields (`num_latent_steps=3`, `latent_variant=...`, ...) go to the config;
                anything else (`dtype`, `attn_implementation`, `device_map`, `revision`, ...) goes to
                `from_pretrained` (for an instance, only `dtype` is accepted and applied with `.to`).

        Raises:
            TypeError: the backbone has no causal LM head (pass a *ForCausalLM checkpoint).
        """
        overrides = {key: kwargs.pop(key) for key in list(kwargs) if key in _LASER_CONFIG_FIELDS}
        if backbone is None or (isinstance(backbone, str) and backbone in ("", "default")):
            try:
                from hf_latent.resources import default_backbone
            except ImportError as error:  # this file may run as remote code, without hf_latent installed
                raise ValueError(
                    "backbone=None means hf_latent's default backbone, but hf_latent is not importable; pass the "
                    "name or path of a causal LM."
                ) from error
            backbone = default_backbone()
        if isinstance(backbone, (str, os.PathLike)):
            try:
                model = AutoModelForCausalLM.from_pretrained(backbone, **kwargs)
            except ValueError as error:
                if "Unrecognized configuration class" in str(error):
                    raise TypeError(
                        f"{backbone} is not a causal LM: LaSER needs a checkpoint loadable with "
                        "AutoModelForCausalLM (a *ForCausalLM model with an LM head)."
                    ) from error
                raise
        else:
            model = backbone
            dtype = kwargs.pop("dtype", None)
            if kwargs:
                raise TypeError(f"{sorted(kwargs)} only apply when `backbone` is a name or path, not a model.")
            if dtype is not None:
                model = model.to(dtype=getattr(torch, dtype) if isinstance(dtype, str) else dtype)
        _check_causal_lm(model)
        if adapter_name_or_path is not None:
            model = _load_adapter(model, adapter_name_or_path)
        backbone_config = _unwrap(model).config
        # The nested config *is* the backbone's config; pass its attention implementation along, since the config
        # setter propagates `attn_implementation` to sub-configs (and would otherwise reset the backbone's).
        config = LaserConfig(
            backbone_config=backbone_config, attn_implementation=backbone_config._attn_implementation, **overrides
        )
        laser = cls(config, backbone=model)
        laser.name_or_path = getattr(_unwrap(model), "name_or_path", "")
        return laser

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *model_args, **kwargs):
        """`PreTrainedModel.from_pretrained`, plus folders written by `save_pretrained` with a PEFT backbone.

        Such a folder holds the LaSER `config.json` and a PEFT adapter; the adapter's base model is loaded with
        [`from_backbone`] (or pass `backbone=` a path or model instance to override it), then the adapter on top.
        `is_trainable=True` loads the adapter for further training.
        """
        path = os.fspath(pretrained_model_name_or_path)
        adapter_file = os.path.join(path, "adapter_config.json")
        has_weights = any(
            os.path.isfile(os.path.join(path, name))
            for name in ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin")
        )
        if not (os.path.isfile(adapter_file) and not has_weights):
            kwargs.pop("backbone", None)
            return super().from_pretrained(pretrained_model_name_or_path, *model_args, **kwargs)
        with open(adapter_file) as handle:
            adapter_config = json.load(handle)
        config = kwargs.pop("config", None) or LaserConfig.from_pretrained(path)
        backbone = kwargs.pop("backbone", None) or adapter_config.get("base_model_name_or_path")
        if not backbone:
            raise ValueError(f"{adapter_file} names no base model; pass `backbone=` (a path or a causal LM).")
        is_trainable = kwargs.pop("is_trainable", False)
        # AutoModel.from_pretrained adds loading options meant for PEFT detection on the top-level folder, and
        # remote-code bookkeeping; none of them applies to the backbone we load from the adapter's base model.
        for key in ("adapter_kwargs", "_adapter_model_path", "trust_remote_code", "code_revision", "_from_auto"):
            kwargs.pop(key, None)
        overrides = {key: getattr(config, key) for key in _LASER_CONFIG_FIELDS}
        model = cls.from_backbone(backbone, **overrides, **kwargs)
        model.backbone = _load_adapter(model.backbone, path, is_trainable=is_trainable)
        return model

    def save_pretrained(self, save_directory, *args, **kwargs):
        """`PreTrainedModel.save_pretrained`; with a PEFT backbone, the LaSER config plus the adapter only."""
        if not _is_peft(self.backbone):
            return super().save_pretrained(save_directory, *args, **kwargs)
        os.makedirs(save_directory, exist_ok=True)
        self.config.architectures = [type(self).__name__]
        if self._auto_class is not None:  # copy the custom code and write `auto_map`, as a full save does
            from transformers.dynamic_module_utils import custom_object_save

            custom_object_save(self, save_directory, config=self.config)
        self.config.save_pretrained(save_directory)
        self.backbone.save_pretrained(save_directory, safe_serialization=kwargs.get("safe_serialization", True))

    def merge_and_unload(self) -> LaserModel:
        """Merge a PEFT (LoRA) backbone into its base weights, in place; returns `self` (no-op without PEFT)."""
        if _is_peft(self.backbone):
            self.backbone = self.backbone.merge_and_unload()
        return self

    def get_input_embeddings(self) -> torch.nn.Module:
        return _unwrap(self.backbone).get_input_embeddings()

    def set_input_embeddings(self, value: torch.nn.Module) -> None:
        _unwrap(self.backbone).set_input_embeddings(value)

    # -- latent view -------------------------------------------------------------------------------------------------

    def _soft_token(self, hidden: torch.Tensor, head: torch.nn.Module, embedding_weight: torch.Tensor) -> torch.Tensor:
        """`softmax(W_lm h)^T E` for `hidden` of shape `(batch, hidden)`; returns `(batch, 1, hidden)`.

        The LM head is applied to the last position only (§2.5); softmax in float32 over the full vocabulary (no
        temperature or top-k), cast back to the embedding dtype before the mix [D]. Nothing is detached: gradients
        flow through the head and the table into the soft token (§2.1).
        """
        logits = head(hidden)
        probs = torch.softmax(logits.float(), dim=-1).to(embedding_weight.dtype)
        return (probs @ embedding_weight).unsqueeze(1)

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        num_latent_steps: int | None = None,
        latent_variant: str | None = None,
        inputs_embeds: torch.FloatTensor | None = None,
        use_cache: bool | None = None,
    ) -> LaserOutput:
        """Encode a batch with latent thinking (specs/laser.md §2.3-2.5).

        Args:
            input_ids (`torch.LongTensor` of shape `(batch, seq_len)`):
                Formatted prompt ids (see [`build_latent_inputs`]). Left or right padding (or any padding pattern):
                right-padded batches are moved to left padding internally, so a text's embedding does not depend on
                the padding side, its batch companions or the batch size.
            attention_mask (`torch.Tensor` of shape `(batch, seq_len)`, *optional*):
                1 for real tokens, 0 for padding; all ones when omitted.
            num_latent_steps (`int`, *optional*):
                K, overriding `config.num_latent_steps`. `1` is plain last-token pooling.
            latent_variant (`str`, *optional*):
                `"released"` (K pooled states, K-1 soft tokens, K forward calls) or `"paper"` (K soft tokens, K+1
                calls), overriding `config.latent_variant`.
            inputs_embeds (`torch.FloatTensor` of shape `(batch, seq_len, hidden)`, *optional*):
                Prompt embeddings instead of `input_ids`.
            use_cache (`bool`, *optional*):
                `True`: KV-cache loop (1 prefill, then one-position steps). `False`: re-run the full sequence (prompt
                plus soft tokens so far) at each step; same result, used automatically under gradient checkpointing
                in training, where HF decoders silently drop the cache (§2.5).

        Returns:
            [`LaserOutput`] with `embeddings` `(batch, hidden)` and `latent_states` `(batch, num_latent_steps, hidden)`.
        """
        num_latent_steps = self.config.num_latent_steps if num_latent_steps is None else num_latent_steps
        _check_num_latent_steps(num_latent_steps)
        latent_variant = self.config.latent_variant if latent_variant is None else latent_variant
        if latent_variant not in ("released", "paper"):
            raise ValueError(f"`latent_variant` must be 'released' or 'paper', got {latent_variant!r}.")
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("Pass exactly one of `input_ids` and `inputs_embeds`.")

        causal_lm = _unwrap(self.backbone)
        decoder, head = _decoder(causal_lm), causal_lm.get_output_embeddings()
        embedding_weight = causal_lm.get_input_embeddings().weight
        if inputs_embeds is None:
            inputs_embeds = causal_lm.get_input_embeddings()(input_ids)
        batch_size, seq_len = inputs_embeds.shape[:2]
        if attention_mask is None:
            attention_mask = torch.ones((batch_size, seq_len), dtype=torch.long, device=inputs_embeds.device)
        order = _to_left_padding(attention_mask)
        if order is not None:
            attention_mask = attention_mask.gather(1, order)
            inputs_embeds = inputs_embeds.gather(1, order.unsqueeze(-1).expand_as(inputs_embeds))
        position_ids = _position_ids(attention_mask)
        if use_cache is None:
            use_cache = not (self.training and _is_checkpointing(causal_lm))

        # released (§2.3): pool h_0..h_{K-1}, feed K-1 soft tokens; paper (§2.4): feed K, pool h_1..h_K.
        num_soft_tokens = num_latent_steps - 1 if latent_variant == "released" else num_latent_steps
        cache = DynamicCache(config=causal_lm.config) if use_cache else None
        hidden = decoder(
            inputs_embeds=inputs_embeds,
            attention_mask=attention_mask,
            position_ids=position_ids,
            past_key_values=cache,
            use_cache=use_cache,
        ).last_hidden_state[:, -1]
        states = [hidden] if latent_variant == "released" else []
        for _ in range(num_soft_tokens):
            soft_token = self._soft_token(hidden, head, embedding_weight)
            attention_mask = torch.cat([attention_mask, attention_mask.new_ones((batch_size, 1))], dim=1)
            step_positions = position_ids[:, -1:] + 1
            position_ids = torch.cat([position_ids, step_positions], dim=1)
            if use_cache:
                step_embeds, step_position_ids = soft_token, step_positions
            else:
                inputs_embeds = torch.cat([inputs_embeds, soft_token.to(inputs_embeds.dtype)], dim=1)
                step_embeds, step_position_ids = inputs_embeds, position_ids
            hidden = decoder(
                inputs_embeds=step_embeds,
                attention_mask=attention_mask,
                position_ids=step_position_ids,
                past_key_values=cache,
                use_cache=use_cache,
            ).last_hidden_state[:, -1]
            states.append(hidden)

        latent_states = torch.stack(states, dim=1)
        embeddings = latent_states.float().mean(dim=1)  # mean, then normalise (§2.3)
        if self.config.normalize:
            embeddings = F.normalize(embeddings, p=2, dim=-1)
        return LaserOutput(embeddings=embeddings.to(latent_states.dtype), latent_states=latent_states)

    @torch.no_grad()
    def encode(
        self,
        texts: str | Sequence[str],
        tokenizer: PreTrainedTokenizerBase,
        is_query: bool = False,
        instruction: str | Sequence[str] | None = None,
        batch_size: int = 8,
        show_progress_bar: bool = False,
        max_length: int | None = None,
        convert_to_numpy: bool = True,
        num_latent_steps: int | None = None,
    ):
        """Encode queries or documents into normalised embeddings (specs/laser.md §2.2 formatting, §2.5 sorting).

        Args:
            texts: one text or a list. Empty or whitespace-only texts raise a `ValueError` naming their index.
            tokenizer: the backbone's tokenizer (its chat template is used; pad = EOS if it has no pad token).
            is_query: format as a query (`Instruct: {instruction}\\nQuery: {query}`); documents are raw text.
            instruction: query instruction (one, or one per text); `None` uses `config.default_instruction`.
            batch_size: texts per forward pass; texts are sorted by length first and the order restored after.
            show_progress_bar: show a progress bar over batches.
            max_length: tokens per text, template included; defaults to `config.query_max_length` or
                `config.passage_max_length`. Longer texts are truncated inside their content with one warning.
            convert_to_numpy: return a float32 numpy array, else a float32 CPU tensor.
            num_latent_steps: K for this call (default `config.num_latent_steps`).

        Returns:
            float32 embeddings of shape `(num_texts, hidden)`, or `(hidden,)` for a single string.
        """
        single = isinstance(texts, str)
        texts = [texts] if single else list(texts)
        if max_length is None:
            max_length = self.config.query_max_length if is_query else self.config.passage_max_length
        pad_token_id = _resolve_pad_token_id(tokenizer)
        ids = tokenize_latent_texts(
            tokenizer, texts, is_query=is_query, instruction=instruction, max_length=max_length, config=self.config
        )
        order = sorted(range(len(ids)), key=lambda index: -len(ids[index]))
        embeddings: list[torch.Tensor | None] = [None] * len(ids)
        was_training = self.training
        self.eval()
        try:
            batches = range(0, len(order), batch_size)
            for start in logging.tqdm(batches, desc="LaSER encode", disable=not show_progress_bar):
                rows = order[start : start + batch_size]
                batch = pad_left([ids[row] for row in rows], pad_token_id).to(self.device)
                output = self(**batch, num_latent_steps=num_latent_steps)
                for row, embedding in zip(rows, output.embeddings.float().cpu()):
                    embeddings[row] = embedding
        finally:
            self.train(was_training)
        stacked = torch.stack(embeddings) if embeddings else torch.empty((0, self.config.backbone_config.hidden_size))
        stacked = stacked[0] if single else stacked
        return stacked.numpy() if convert_to_numpy else stacked

    def encode_query(self, queries: str | Sequence[str], tokenizer: PreTrainedTokenizerBase, **kwargs):
        """[`encode`] with `is_query=True`."""
        return self.encode(queries, tokenizer, is_query=True, **kwargs)

    def encode_document(self, documents: str | Sequence[str], tokenizer: PreTrainedTokenizerBase, **kwargs):
        """[`encode`] with `is_query=False`."""
        return self.encode(documents, tokenizer, is_query=False, **kwargs)

    # -- explicit view -----------------------------------------------------------------------------------------------

    def encode_explicit(
        self,
        input_ids: torch.LongTensor,
        attention_mask: torch.Tensor,
        cot_start: torch.LongTensor,
        cot_end: torch.LongTensor,
        separator_token_ids: int | Sequence[int],
        num_latent_steps: int | None = None,
        segment_downsampling: str | None = None,
    ) -> LaserExplicitOutput:
        """The explicit (teacher) view: one ordinary forward pass over `[query; CoT; EOS]` (specs/laser.md §3).

        No LM head and no soft tokens. The teacher vector is `normalize(h_EOS)`; the segment features are the
        un-normalised states at each CoT position where the separator ids `separator_token_ids` end (the whole sequence
        inside the CoT span) plus the last CoT position,
        downsampled from M to K with [`downsample_segments`] (an empty CoT span repeats the final state K times).

        Args:
            input_ids (`torch.LongTensor` of shape `(batch, seq_len)`): from [`build_explicit_inputs`]; each row ends
                with EOS. Left padding (right padding is converted, the span indices moved along).
            attention_mask (`torch.Tensor` of shape `(batch, seq_len)`): 1 for real tokens.
            cot_start, cot_end (`torch.LongTensor` of shape `(batch,)`): the CoT span `[cot_start, cot_end)`.
            separator_token_ids: the boundary id or id sequence, see [`get_segment_separator_ids`].
            num_latent_steps: K targets (default `config.num_latent_steps`).
            segment_downsampling: `"linspace"` or `"paper"` (default `config.segment_downsampling`).

        Returns:
            [`LaserExplicitOutput`]: `explicit_embeddings` `(batch, hidden)`, `segment_states`
            `(batch, num_latent_steps, hidden)`, `num_segments` `(batch,)`.
        """
        num_latent_steps = self.config.num_latent_steps if num_latent_steps is None else num_latent_steps
        _check_num_latent_steps(num_latent_steps)
        mode = self.config.segment_downsampling if segment_downsampling is None else segment_downsampling
        cot_start, cot_end = cot_start.to(input_ids.device).long(), cot_end.to(input_ids.device).long()
        order = _to_left_padding(attention_mask)
        if order is not None:
            inverse = torch.argsort(order, dim=-1)  # old position -> new position
            input_ids, attention_mask = input_ids.gather(1, order), attention_mask.gather(1, order)
            seq_len = input_ids.shape[1]
            empty = cot_start >= cot_end
            new_start = inverse.gather(1, cot_start.clamp(max=seq_len - 1).unsqueeze(1)).squeeze(1)
            new_end = inverse.gather(1, (cot_end - 1).clamp(min=0).unsqueeze(1)).squeeze(1) + 1
            cot_start, cot_end = torch.where(empty, new_end, new_start), new_end
        causal_lm = _unwrap(self.backbone)
        hidden_states = _decoder(causal_lm)(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=_position_ids(attention_mask),
            use_cache=False,
        ).last_hidden_state
        final = hidden_states[:, -1]
        explicit = F.normalize(final.float(), p=2, dim=-1).to(final.dtype) if self.config.normalize else final

        positions = torch.arange(input_ids.shape[1], device=input_ids.device)
        in_span = (positions >= cot_start.unsqueeze(1)) & (positions < cot_end.unsqueeze(1))
        boundaries = _separator_ends(input_ids, separator_token_ids, cot_start) & in_span
        last = (cot_end - 1).clamp(min=0)
        boundaries[torch.arange(len(last)), last] |= cot_end > cot_start  # the last CoT position always counts
        segment_states, counts = [], []
        for row in range(input_ids.shape[0]):
            boundary_positions = boundaries[row].nonzero().squeeze(-1)
            indices = downsample_segments(len(boundary_positions), num_latent_steps, mode)
            counts.append(len(boundary_positions))
            if indices:
                segment_states.append(hidden_states[row, boundary_positions[indices]])
            else:  # empty CoT span: the query filled the budget (§3.3)
                segment_states.append(final[row].unsqueeze(0).expand(num_latent_steps, -1))
        return LaserExplicitOutput(
            explicit_embeddings=explicit,
            segment_states=torch.stack(segment_states),
            num_segments=torch.tensor(counts, device=input_ids.device),
        )


# LaSER's own config fields (not PreTrainedConfig's, e.g. `dtype`, which `from_backbone` forwards to loading).
_LASER_CONFIG_FIELDS = frozenset(
    {f.name for f in dataclasses.fields(LaserConfig)} - {f.name for f in dataclasses.fields(PreTrainedConfig)}
) - {"backbone_config"}


def _load_adapter(backbone: PreTrainedModel, adapter_name_or_path, is_trainable: bool = False):
    try:
        from peft import PeftModel
    except ImportError as error:  # optional dependency
        raise ImportError("Loading a LaSER adapter needs `peft` (pip install peft).") from error
    return PeftModel.from_pretrained(backbone, adapter_name_or_path, is_trainable=is_trainable)


__all__ = [
    "LaserExplicitOutput",
    "LaserModel",
    "LaserOutput",
    "LaserPreTrainedModel",
    "build_explicit_inputs",
    "build_latent_inputs",
    "downsample_segments",
    "format_latent_text",
    "format_query",
    "get_segment_separator_ids",
    "pad_left",
    "tokenize_latent_texts",
]
