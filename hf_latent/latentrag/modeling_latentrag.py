"""LatentRAG model: latent thoughts and sub-queries, latent retrieval and latent decoding.

Zheng and Worring, "LatentRAG", arXiv 2605.06285 (2026); section numbers refer to specs/latentrag.md.

[`LatentRAGModel`] holds the generator `g` (a causal LM), the retriever `f_ret` (an encoder with a LoRA adapter whose
disabled state is the frozen reference retriever, §6 [D]) and the three projectors (§5). It offers the fast, batched
building blocks of training and inference:

- [`~LatentRAGModel.forward`]: one teacher-forced causal pass over converted trajectories, returning the logits and
  the thought / sub-query states gathered at the placeholder positions (§8.1).
- [`~LatentRAGModel.encode_latent_queries`]: `Proj_ret` → replace the query span of the retriever template → `f_ret`
  → pooling → L2 norm (§6, Eq. 5).
- [`~LatentRAGModel.encode_text_queries`]: the same template with real text, through the reference (Eq. 6) or the
  trainable retriever.
- [`~LatentRAGModel.latent_decoding_inputs`] and [`~LatentRAGModel.decode_latents`]: §7.3.

The agentic loop (§4) lives in `hf_latent.latentrag.inference` because it needs faiss; thin methods here import it
lazily. This file is copied next to the weights by `save_pretrained` and loaded with `trust_remote_code=True`, so it
imports only torch, transformers, the standard library and its sibling files `configuration_latentrag.py` and
`projector.py`.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import math
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F
from transformers import (
    AutoModel,
    AutoModelForCausalLM,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)
from transformers import initialization as init
from transformers.utils import ModelOutput

from .configuration_latentrag import QWEN3_EMBEDDING_TASK, LatentRAGConfig
from .projector import LatentProjector


logger = logging.getLogger(__name__)

GENERATOR_TOKENIZER_FOLDER = "generator_tokenizer"
RETRIEVER_TOKENIZER_FOLDER = "retriever_tokenizer"
_TEMPLATE_PROBE = "probe"


# ------------------------------------------------------------------------------------------------------- pooling


# Copied from hf_latent.retrieval.pooling.mean_pool (modeling files are self-contained).
def mean_pool(hidden_states: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Mean of the real tokens' states: `(batch, seq_len, hidden)`, `(batch, seq_len)` → `(batch, hidden)`."""
    mask = attention_mask.unsqueeze(-1).to(hidden_states.dtype)
    return (hidden_states * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)


# Copied from hf_latent.retrieval.pooling.last_token_pool
def last_token_pool(hidden_states: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """State of each row's last real token (left or right padding): `(batch, seq_len, hidden)` → `(batch, hidden)`."""
    seq_len = attention_mask.shape[1]
    last = (seq_len - 1) - attention_mask.ne(0).int().flip(dims=[1]).argmax(dim=1)
    rows = torch.arange(hidden_states.shape[0], device=hidden_states.device)
    return hidden_states[rows, last.to(hidden_states.device)]


# Copied from hf_latent.retrieval.pooling.cls_pool
def cls_pool(hidden_states: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
    """State of the first position: `(batch, seq_len, hidden)` → `(batch, hidden)`."""
    return hidden_states[:, 0]


_POOLING = {"mean": mean_pool, "last_token": last_token_pool, "cls": cls_pool}


# ---------------------------------------------------------------------------------------------------------- LoRA


class LoRALinear(nn.Module):
    r"""
    `y = base_layer(x) + (α / r) · B A dropout(x)`, with the low-rank term switched off by `adapter_enabled = False`.

    A dependency-free LoRA layer so that the trainable retriever and its frozen reference share one set of base
    weights in the checkpoint (§6 [D]). `B` starts at zero, so a fresh adapter leaves the layer unchanged. The base
    layer's parameters keep their names under `base_layer.` (the PEFT convention).

    Args:
        base_layer (`nn.Linear`): the wrapped layer.
        rank (`int`): r >= 1.
        alpha (`float`): α.
        dropout (`float`, *optional*, defaults to 0): dropout on the adapter input.
    """

    def __init__(self, base_layer: nn.Linear, rank: int, alpha: float, dropout: float = 0.0):
        super().__init__()
        self.base_layer = base_layer
        self.rank = rank
        self.scaling = alpha / rank
        weight = base_layer.weight
        self.lora_A = nn.Parameter(torch.empty(rank, base_layer.in_features, dtype=weight.dtype, device=weight.device))
        self.lora_B = nn.Parameter(
            torch.zeros(base_layer.out_features, rank, dtype=weight.dtype, device=weight.device)
        )
        if not self.lora_A.is_meta:
            nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))
        self.lora_dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.adapter_enabled = True

    @property
    def weight(self) -> torch.Tensor:
        return self.base_layer.weight

    @property
    def bias(self) -> torch.Tensor | None:
        return self.base_layer.bias

    @property
    def in_features(self) -> int:
        return self.base_layer.in_features

    @property
    def out_features(self) -> int:
        return self.base_layer.out_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.base_layer(x)
        if not self.adapter_enabled:
            return out
        update = F.linear(F.linear(self.lora_dropout(x).to(self.lora_A.dtype), self.lora_A), self.lora_B)
        return out + (update * self.scaling).to(out.dtype)


def inject_lora(
    module: nn.Module,
    rank: int,
    alpha: float,
    dropout: float = 0.0,
    target_modules: Sequence[str] | None = None,
    exclude: Sequence[str] = (),
) -> list[str]:
    """Wrap `nn.Linear` layers of `module` in [`LoRALinear`], in place.

    Args:
        module (`nn.Module`): e.g. the retriever.
        rank, alpha, dropout: the adapter's hyperparameters.
        target_modules (`Sequence[str]`, *optional*): last name components to wrap (`["query", "value"]`);
            default: every linear layer whose qualified name does not start with one of `exclude`.
        exclude (`Sequence[str]`, *optional*): qualified-name prefixes never wrapped (`"pooler"`, `"lm_head"`).

    Returns:
        The qualified names of the wrapped layers.
    """
    targets = []
    for name, child in module.named_modules():
        if not isinstance(child, nn.Linear) or any(name == p or name.startswith(p + ".") for p in exclude):
            continue
        if target_modules is not None and name.rsplit(".", 1)[-1] not in target_modules:
            continue
        targets.append(name)
    for name in targets:
        parent_name, _, attribute = name.rpartition(".")
        parent = module.get_submodule(parent_name) if parent_name else module
        setattr(parent, attribute, LoRALinear(getattr(parent, attribute), rank, alpha, dropout))
    return targets


@contextlib.contextmanager
def lora_disabled(module: nn.Module) -> Iterator[None]:
    """Within the block, every [`LoRALinear`] in `module` computes its base layer only."""
    layers = [m for m in module.modules() if isinstance(m, LoRALinear)]
    previous = [layer.adapter_enabled for layer in layers]
    for layer in layers:
        layer.adapter_enabled = False
    try:
        yield
    finally:
        for layer, state in zip(layers, previous):
            layer.adapter_enabled = state


# -------------------------------------------------------------------------------------------------------- tokens


def add_latentrag_tokens(tokenizer: PreTrainedTokenizerBase, config: LatentRAGConfig) -> dict[str, Any]:
    """Add LatentRAG's special tokens to the generator tokenizer and record their ids in `config` (§3).

    Adds m thought placeholders, n sub-query placeholders and the structural tags `<information>`,
    `</information>`, `<answer>`, `</answer>` as special tokens (tokens already present are reused), then fills
    `config.thought_token_ids`, `config.subquery_token_ids` and the `*_token_id` fields. The caller resizes the
    generator embeddings ([`LatentRAGModel.from_components`] does it and initialises new rows to the mean, §3 [D]).

    Args:
        tokenizer (`PreTrainedTokenizerBase`): the generator tokenizer, modified in place.
        config ([`LatentRAGConfig`]): gives the token strings; receives the ids.

    Returns:
        `dict` with `thought_token_ids`, `subquery_token_ids`, `answer_start_token_id`, `answer_end_token_id`,
        `information_start_token_id`, `information_end_token_id` and `num_added`.
    """
    vocab = tokenizer.get_vocab()
    new_tokens = [token for token in config.special_tokens if token not in vocab]
    num_added = 0
    if new_tokens:
        # transformers 5 names the list `extra_special_tokens` (v4: `additional_special_tokens`).
        num_added = tokenizer.add_special_tokens(
            {"extra_special_tokens": new_tokens}, replace_extra_special_tokens=False
        )
    ids = {}
    for token in config.special_tokens:
        encoded = tokenizer.encode(token, add_special_tokens=False)
        if len(encoded) != 1:
            raise ValueError(f"LatentRAG token {token!r} is not a single token after adding it: {encoded}.")
        ids[token] = encoded[0]
    config.thought_token_ids = [ids[token] for token in config.thought_tokens]
    config.subquery_token_ids = [ids[token] for token in config.subquery_tokens]
    config.answer_start_token_id = ids[config.answer_start_token]
    config.answer_end_token_id = ids[config.answer_end_token]
    config.information_start_token_id = ids[config.information_start_token]
    config.information_end_token_id = ids[config.information_end_token]
    return {
        "thought_token_ids": list(config.thought_token_ids),
        "subquery_token_ids": list(config.subquery_token_ids),
        "answer_start_token_id": config.answer_start_token_id,
        "answer_end_token_id": config.answer_end_token_id,
        "information_start_token_id": config.information_start_token_id,
        "information_end_token_id": config.information_end_token_id,
        "num_added": num_added,
    }


def retriever_query_template_ids(
    tokenizer: PreTrainedTokenizerBase, prefix: str = "", suffix: str = ""
) -> tuple[list[int], list[int]]:
    """Token ids of the retriever query template before and after the query span (§6 [D]).

    The tokenizer's own special tokens are found by tokenising a probe word with and without them (`[CLS]` … `[SEP]`
    for BERT-style models, the EOS that Qwen3-Embedding's tokenizer appends), and the prefix / suffix text is
    tokenised without special tokens in between. For `"query: "` + text on e5 this gives `[CLS] query :` and
    `[SEP]`; for MiniLM (no prefix) `[CLS]` and `[SEP]`.

    Returns:
        `(prefix_ids, suffix_ids)`.
    """
    with_special = tokenizer(_TEMPLATE_PROBE, add_special_tokens=True)["input_ids"]
    without = tokenizer(_TEMPLATE_PROBE, add_special_tokens=False)["input_ids"]
    start = next(
        (i for i in range(len(with_special) - len(without) + 1) if with_special[i : i + len(without)] == without),
        None,
    )
    if start is None:
        raise ValueError("Cannot locate the query span in the retriever tokenizer's output; set the template ids.")
    head, tail = with_special[:start], with_special[start + len(without) :]
    prefix_ids = tokenizer(prefix, add_special_tokens=False)["input_ids"] if prefix else []
    suffix_ids = tokenizer(suffix, add_special_tokens=False)["input_ids"] if suffix else []
    return list(head) + list(prefix_ids), list(suffix_ids) + list(tail)


def retriever_preset(name_or_path: str, retriever_config: Any = None) -> dict[str, Any]:
    """Pooling and templates of known retrievers (§6), used by [`LatentRAGModel.from_components`] as defaults.

    - Qwen3-Embedding: last-token pooling, `Instruct: {task}\\nQuery:` before the query, EOS after.
    - e5: mean pooling, `query: ` / `passage: ` prefixes.
    - anything else (all-MiniLM-L6-v2, tiny BERTs): mean pooling, no prefix.
    """
    name = str(name_or_path).lower()
    model_type = getattr(retriever_config, "model_type", "")
    if "qwen3-embedding" in name or "qwen3_embedding" in name or model_type in ("qwen3", "qwen2"):
        return {
            "retriever_pooling": "last_token",
            "retriever_query_prefix": f"Instruct: {QWEN3_EMBEDDING_TASK}\nQuery:",
        }
    if "e5" in name.replace("\\", "/").rsplit("/", 1)[-1]:
        return {
            "retriever_pooling": "mean",
            "retriever_query_prefix": "query: ",
            "retriever_document_prefix": "passage: ",
        }
    return {"retriever_pooling": "mean"}


def _disable_dropout(module: nn.Module) -> None:
    """Remove dropout from a retriever: §2 [P] "retriever dropout is removed"."""
    config = getattr(module, "config", None)
    if config is not None:
        for key, value in list(vars(config).items()):
            if "dropout" in key and isinstance(value, float) and not isinstance(value, bool):
                setattr(config, key, 0.0)
    for submodule in module.modules():
        if isinstance(submodule, nn.Dropout):
            submodule.p = 0.0
        for attribute in ("dropout_prob", "attention_dropout"):
            if isinstance(getattr(submodule, attribute, None), float):
                setattr(submodule, attribute, 0.0)


def _mark_initialized(module: nn.Module) -> None:
    """Flag pretrained weights so that `post_init` of the composite model does not re-initialise them."""
    for submodule in module.modules():
        submodule._is_hf_initialized = True
    for tensor in list(module.parameters()) + list(module.buffers()):
        tensor._is_hf_initialized = True


def _resolve_default(name_or_path: Any, kind: str) -> str:
    if name_or_path not in (None, "", "default"):
        return str(name_or_path)
    try:
        from hf_latent.resources import resolve_model_name
    except ImportError as error:  # remote-code users without hf_latent
        raise ValueError(f"Pass the {kind} explicitly: the default needs the `hf_latent` package.") from error
    return resolve_model_name(None, kind)


def _retriever_space_name(name_or_path: str, pooling: str) -> str:
    try:
        from hf_latent.retrieval import canonical_model_id

        model_id = canonical_model_id(name_or_path)
    except ImportError:
        model_id = str(name_or_path)
    return f"{model_id}:{pooling}"


def _tokenizer_adds_bos(tokenizer: PreTrainedTokenizerBase) -> bool:
    bos = tokenizer.bos_token_id
    if bos is None:
        return False
    ids = tokenizer("a", add_special_tokens=True)["input_ids"]
    return bool(ids) and ids[0] == bos


# -------------------------------------------------------------------------------------------------------- outputs


@dataclass
class LatentRAGOutput(ModelOutput):
    r"""
    Output of [`LatentRAGModel.forward`] (one teacher-forced pass over converted trajectories, §8.1).

    Steps are flattened over the batch: `num_steps` counts every thought block of every sequence (final step
    included), `num_retrievals` every sub-query block.

    Args:
        loss (`torch.FloatTensor` of shape `()`, *optional*):
            Token-mean next-token CE over the positions whose label is not -100 (L_gen when the labels follow §7.1).
        logits (`torch.FloatTensor` of shape `(batch, seq_len, vocab)`, *optional*):
            LM-head logits (absent with `return_logits=False`).
        last_hidden_state (`torch.FloatTensor` of shape `(batch, seq_len, hidden)`, *optional*):
            The generator's last-layer states (with `return_hidden_states=True`).
        thought_states (`torch.FloatTensor` of shape `(num_steps, num_thought_tokens, hidden)`):
            H^τ_t, the last-layer states at the thought placeholders.
        thought_positions (`torch.LongTensor` of shape `(num_steps, num_thought_tokens)`):
            Their positions in the sequence.
        thought_batch_index (`torch.LongTensor` of shape `(num_steps,)`):
            Sequence of each step.
        thought_step_index (`torch.LongTensor` of shape `(num_steps,)`):
            Step number t within its sequence (0 for the block after the question).
        action_logits (`torch.FloatTensor` of shape `(num_steps, 2)`):
            Logits at think_m of the two actions, `[⟨query⟩ (= query_1), ⟨answer⟩ (= <answer>)]` (§3, Eq. 3).
        subquery_states (`torch.FloatTensor` of shape `(num_retrievals, num_subquery_tokens, hidden)`):
            H^s_t, the last-layer states at the sub-query placeholders.
        subquery_positions (`torch.LongTensor` of shape `(num_retrievals, num_subquery_tokens)`):
            Their positions.
        subquery_batch_index (`torch.LongTensor` of shape `(num_retrievals,)`):
            Sequence of each retrieval.
        subquery_step_index (`torch.LongTensor` of shape `(num_retrievals,)`):
            Retrieval number t within its sequence (the thought step it follows).
    """

    loss: torch.FloatTensor | None = None
    logits: torch.FloatTensor | None = None
    last_hidden_state: torch.FloatTensor | None = None
    thought_states: torch.FloatTensor | None = None
    thought_positions: torch.LongTensor | None = None
    thought_batch_index: torch.LongTensor | None = None
    thought_step_index: torch.LongTensor | None = None
    action_logits: torch.FloatTensor | None = None
    subquery_states: torch.FloatTensor | None = None
    subquery_positions: torch.LongTensor | None = None
    subquery_batch_index: torch.LongTensor | None = None
    subquery_step_index: torch.LongTensor | None = None


@dataclass
class LatentDecodingOutput:
    """Texts decoded from latents (§4 step 5, §7.3).

    Attributes:
        thoughts (`list[str]`): one text per thought step, in input order.
        subqueries (`list[str]`): one text per retrieval, in input order.
        num_forward_passes (`int`): batched generator passes used (the longest item bounds it).
        num_generated_tokens (`int`): tokens generated over all items (stop tokens included).
        token_ids (`list[list[int]]`): the generated ids of every item (thoughts first), stop token included.
    """

    thoughts: list[str]
    subqueries: list[str]
    num_forward_passes: int = 0
    num_generated_tokens: int = 0
    token_ids: list[list[int]] | None = None


# --------------------------------------------------------------------------------------------------------- models


class LatentRAGPreTrainedModel(PreTrainedModel):
    """Weight initialisation and class attributes shared by LatentRAG models."""

    config_class = LatentRAGConfig
    base_model_prefix = "latentrag"
    main_input_name = "input_ids"
    supports_gradient_checkpointing = True
    _supports_sdpa = True
    _supports_flash_attn = True
    _supports_flex_attn = True
    _no_split_modules = ["LatentProjector"]

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        if isinstance(module, LatentProjector):
            # The RMS-matching value is set by `reset_projector_scales` once the embedding tables are known (§5).
            init.ones_(module.output_scale)
        elif isinstance(module, LoRALinear):
            init.kaiming_uniform_(module.lora_A, a=math.sqrt(5))
            init.zeros_(module.lora_B)
        else:
            super()._init_weights(module)


class LatentRAGModel(LatentRAGPreTrainedModel):
    r"""
    LatentRAG (Zheng and Worring, arXiv 2605.06285): agentic RAG with latent thoughts and latent sub-queries.

    Submodules:

    - `generator`: the causal LM `g` (`AutoModelForCausalLM`), with LatentRAG's special tokens in its vocabulary.
    - `retriever`: the dense retriever `f_ret` (`AutoModel`, dropout removed). With `retriever_lora_rank > 0` its
      linear layers carry a LoRA adapter: enabled it is the trainable query tower θ_ret, disabled
      ([`~LatentRAGModel.reference_retriever`]) it is the frozen pretrained reference θ*_ret that also encodes the
      documents (§6 [D]). The checkpoint therefore stores the retriever once, plus the adapter.
    - `retrieval_projector` (`Proj_ret`), `thought_decoding_projector` (`Proj_τ`) and `subquery_decoding_projector`
      (`Proj_s`): [`LatentProjector`] blocks (§5); the decoding ones are `None` with `use_latent_decoding=False`.
    - `generator_tokenizer`, `retriever_tokenizer`: plain attributes, saved by `save_pretrained` into the
      `generator_tokenizer/` and `retriever_tokenizer/` subfolders and restored by `from_pretrained`.

    Build one from pretrained parts with [`~LatentRAGModel.from_components`]; `LatentRAGModel(config)` builds random
    components from the nested configs (tests, `from_pretrained`).

    Args:
        config ([`LatentRAGConfig`]): the configuration.
        generator (`PreTrainedModel`, *optional*): an already built causal LM (used instead of a random one).
        retriever (`PreTrainedModel`, *optional*): an already built retriever.
    """

    # `forward` returns a per-micro-batch token-mean loss and takes no `num_items_in_batch` (its `**kwargs` would
    # swallow it): `Trainer` must divide the loss by the gradient-accumulation steps itself, not sum the micro-batches.
    accepts_loss_kwargs = False

    def __init__(
        self,
        config: LatentRAGConfig,
        generator: PreTrainedModel | None = None,
        retriever: PreTrainedModel | None = None,
    ):
        super().__init__(config)
        if generator is None:
            generator = AutoModelForCausalLM.from_config(config.generator_config)
        if retriever is None:
            retriever = AutoModel.from_config(config.retriever_config)
        self.generator = generator
        self.retriever = retriever
        config.generator_config = generator.config
        config.retriever_config = retriever.config
        hidden = generator.get_input_embeddings().embedding_dim
        retriever_input_width = retriever.get_input_embeddings().embedding_dim
        projector_kwargs = {
            "num_heads": config.projector_num_heads,
            "intermediate_size": config.projector_intermediate_size,
            "hidden_act": config.projector_hidden_act,
            "layer_norm_eps": config.projector_layer_norm_eps,
        }
        # §9 "w/o pretrained retriever": Proj_ret maps straight to the document-embedding width.
        retrieval_width = retriever_input_width if config.use_pretrained_retriever else self.retrieval_dim
        self.retrieval_projector = LatentProjector(hidden, retrieval_width, **projector_kwargs)
        if config.use_latent_decoding:
            self.thought_decoding_projector = LatentProjector(hidden, hidden, **projector_kwargs)
            self.subquery_decoding_projector = LatentProjector(hidden, hidden, **projector_kwargs)
        else:
            self.thought_decoding_projector = None
            self.subquery_decoding_projector = None
        self.generator_tokenizer: PreTrainedTokenizerBase | None = None
        self.retriever_tokenizer: PreTrainedTokenizerBase | None = None
        self.post_init()
        # Adapters are attached after `post_init`, so that the sub-models' own `_init_weights` never touch them.
        if config.retriever_lora_rank > 0:
            inject_lora(
                self.retriever,
                config.retriever_lora_rank,
                config.retriever_lora_alpha,
                config.retriever_lora_dropout,
                config.retriever_lora_target_modules,
                exclude=("pooler",),
            )
        if config.generator_lora_rank > 0:
            inject_lora(
                self.generator,
                config.generator_lora_rank,
                config.generator_lora_alpha,
                config.generator_lora_dropout,
                config.generator_lora_target_modules,
                exclude=self._generator_output_layer_names(),
            )
        if not self.retrieval_projector.output_proj.weight.is_meta:
            self.reset_projector_scales()
        forward_parameters = inspect.signature(self.retriever.forward).parameters
        self._retriever_accepts_use_cache = "use_cache" in forward_parameters
        self._retriever_accepts_token_type_ids = "token_type_ids" in forward_parameters

    # ----------------------------------------------------------------------------------------------- building

    @classmethod
    def from_components(
        cls,
        generator: str | os.PathLike | PreTrainedModel | None = None,
        retriever: str | os.PathLike | PreTrainedModel | None = None,
        generator_tokenizer: str | PreTrainedTokenizerBase | None = None,
        retriever_tokenizer: str | PreTrainedTokenizerBase | None = None,
        *,
        dtype: torch.dtype | str | None = torch.float32,
        device: str | torch.device | None = None,
        **config_overrides: Any,
    ) -> LatentRAGModel:
        """Assemble an (untrained) LatentRAG model from a pretrained generator and retriever.

        Adds the special tokens to the generator tokenizer, resizes the generator embeddings and initialises the new
        rows (input and, when untied, output) to the mean embedding (§3 [D]), removes the retriever's dropout (§2),
        derives the retriever template ids and the embedding-space name, and initialises the projectors (§5).

        Args:
            generator (`str`, `os.PathLike` or `PreTrainedModel`, *optional*): a Hub id, a folder, or a causal LM;
                `None`/`"default"` is SmolLM2-135M-Instruct (`hf_latent.default_backbone()`).
            retriever (`str`, `os.PathLike` or `PreTrainedModel`, *optional*): a Hub id, a folder, or an encoder;
                `None`/`"default"` is all-MiniLM-L6-v2 (`hf_latent.default_retriever()`).
            generator_tokenizer (`str` or `PreTrainedTokenizerBase`, *optional*): defaults to the generator's own
                (for an instance: loaded from its `name_or_path`, else an error). Modified in place (tokens added).
            retriever_tokenizer (`str` or `PreTrainedTokenizerBase`, *optional*): defaults to the retriever's own.
            dtype (`torch.dtype` or `str`, *optional*, defaults to `torch.float32`): dtype of loaded components.
            device (`str` or `torch.device`, *optional*): where to put the model.
            config_overrides: any [`LatentRAGConfig`] field (`num_thought_tokens`, `retriever_pooling`,
                `retriever_query_prefix`, `retriever_name`, ...). Pooling and templates default to
                [`retriever_preset`] of the retriever's name.

        Returns:
            A [`LatentRAGModel`] in eval mode, with `generator_tokenizer` and `retriever_tokenizer` set.
        """
        generator_name = retriever_name = None
        if generator is None or isinstance(generator, (str, os.PathLike)):
            generator_name = _resolve_default(generator, "backbone")
            generator = AutoModelForCausalLM.from_pretrained(generator_name, dtype=dtype)
            generator_tokenizer = generator_tokenizer if generator_tokenizer is not None else generator_name
        if retriever is None or isinstance(retriever, (str, os.PathLike)):
            retriever_name = _resolve_default(retriever, "retriever")
            retriever = AutoModel.from_pretrained(retriever_name, dtype=dtype)
            retriever_tokenizer = retriever_tokenizer if retriever_tokenizer is not None else retriever_name
        # A model instance without a tokenizer: fall back to the tokenizer saved with its weights, if any.
        if generator_tokenizer is None:
            generator_tokenizer = getattr(generator.config, "_name_or_path", "") or None
        if retriever_tokenizer is None:
            retriever_tokenizer = getattr(retriever.config, "_name_or_path", "") or None
        if generator_tokenizer is None or retriever_tokenizer is None:
            raise ValueError("Pass generator_tokenizer / retriever_tokenizer together with model instances.")
        if isinstance(generator_tokenizer, (str, os.PathLike)):
            generator_tokenizer = AutoTokenizer.from_pretrained(str(generator_tokenizer))
        if isinstance(retriever_tokenizer, (str, os.PathLike)):
            retriever_tokenizer = AutoTokenizer.from_pretrained(str(retriever_tokenizer))
        if generator_tokenizer.pad_token_id is None:
            generator_tokenizer.pad_token = generator_tokenizer.eos_token
        retriever_name = retriever_name or getattr(retriever.config, "_name_or_path", "") or type(retriever).__name__
        generator_name = generator_name or getattr(generator.config, "_name_or_path", "")
        _disable_dropout(retriever)

        overrides = {**retriever_preset(retriever_name, retriever.config), **config_overrides}
        # Building the composite config resets the sub-configs' attention implementation (the setter recurses);
        # keep the one each component was loaded with.
        attention = (generator.config._attn_implementation, retriever.config._attn_implementation)
        config = cls.config_class(generator_config=generator.config, retriever_config=retriever.config, **overrides)
        generator.config._attn_implementation, retriever.config._attn_implementation = attention
        if config.retriever_name is None:
            config.retriever_name = _retriever_space_name(retriever_name, config.retriever_pooling)
        add_latentrag_tokens(generator_tokenizer, config)
        _resize_with_mean_rows(generator, len(generator_tokenizer))
        prefix_ids, suffix_ids = retriever_query_template_ids(
            retriever_tokenizer, config.retriever_query_prefix, config.retriever_query_suffix
        )
        config.retriever_query_prefix_ids, config.retriever_query_suffix_ids = prefix_ids, suffix_ids
        config.name_or_path = ""
        _mark_initialized(generator)
        _mark_initialized(retriever)
        model = cls(config, generator=generator, retriever=retriever)
        model.generator_tokenizer = generator_tokenizer
        model.retriever_tokenizer = retriever_tokenizer
        if device is not None:
            model.to(device)
        logger.info("Built LatentRAG from generator %s and retriever %s.", generator_name, retriever_name)
        return model.eval()

    @torch.no_grad()
    def reset_projector_scales(self) -> None:
        """Initialise each projector's output scale to the RMS of its target embedding table's rows (§5 [D])."""

        def table_rms(embedding: nn.Module) -> float:
            return embedding.weight.float().pow(2).mean().sqrt().item()

        generator_rms = table_rms(self.generator.get_input_embeddings())
        retriever_rms = table_rms(self.retriever.get_input_embeddings())
        if not self.config.use_pretrained_retriever:
            # The output is mean-pooled and normalised: any scale works; keep unit-RMS document-like coordinates.
            retriever_rms = 1.0 / math.sqrt(self.retrieval_dim)
        self.retrieval_projector.reset_output_scale(retriever_rms)
        for projector in (self.thought_decoding_projector, self.subquery_decoding_projector):
            if projector is not None:
                projector.reset_output_scale(generator_rms)

    # ------------------------------------------------------------------------------------------- save / load

    def save_pretrained(self, save_directory: str | os.PathLike, *args: Any, **kwargs: Any) -> Any:
        """`PreTrainedModel.save_pretrained`, plus the two tokenizers in `generator_tokenizer/` and
        `retriever_tokenizer/` (before any push to the Hub, so they are uploaded too)."""
        push_to_hub = kwargs.pop("push_to_hub", False)
        result = super().save_pretrained(save_directory, *args, **kwargs)
        if kwargs.get("is_main_process", True):
            for folder, tokenizer in (
                (GENERATOR_TOKENIZER_FOLDER, self.generator_tokenizer),
                (RETRIEVER_TOKENIZER_FOLDER, self.retriever_tokenizer),
            ):
                if tokenizer is not None:
                    tokenizer.save_pretrained(os.path.join(save_directory, folder))
        if push_to_hub:
            from huggingface_hub import HfApi

            repo_id = kwargs.get("repo_id") or os.path.basename(os.path.normpath(str(save_directory)))
            api = HfApi(token=kwargs.get("token"))
            api.create_repo(repo_id, private=kwargs.get("private"), exist_ok=True)
            api.upload_folder(
                repo_id=repo_id, folder_path=str(save_directory), commit_message=kwargs.get("commit_message")
            )
        return result

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | os.PathLike, *model_args: Any, **kwargs: Any):
        """`PreTrainedModel.from_pretrained`, plus the tokenizers saved by [`~LatentRAGModel.save_pretrained`].

        Extra keyword argument `load_tokenizers` (`bool`, defaults to `True`): set `False` to skip them. A missing
        tokenizer subfolder leaves the attribute `None` (with a warning).
        """
        load_tokenizers = kwargs.pop("load_tokenizers", True)
        hub_keys = ("cache_dir", "revision", "token", "local_files_only", "force_download", "proxies")
        hub_kwargs = {key: kwargs[key] for key in hub_keys if kwargs.get(key) is not None}
        subfolder = kwargs.get("subfolder") or ""
        loaded = super().from_pretrained(pretrained_model_name_or_path, *model_args, **kwargs)
        model, info = (loaded, None) if not isinstance(loaded, tuple) else loaded
        if load_tokenizers:
            for folder in (GENERATOR_TOKENIZER_FOLDER, RETRIEVER_TOKENIZER_FOLDER):
                path = f"{subfolder}/{folder}" if subfolder else folder
                try:
                    tokenizer = AutoTokenizer.from_pretrained(
                        str(pretrained_model_name_or_path), subfolder=path, **hub_kwargs
                    )
                except (OSError, ValueError) as error:
                    logger.warning("No %s found with %s (%s).", folder, pretrained_model_name_or_path, error)
                    tokenizer = None
                setattr(model, folder, tokenizer)
        model.eval()
        return (model, info) if info is not None else model

    # ------------------------------------------------------------------------------------------- properties

    @property
    def retriever_name(self) -> str | None:
        """Name of the embedding space (`DenseIndex.encoder_name` of a compatible index)."""
        return self.config.retriever_name

    @property
    def retrieval_dim(self) -> int:
        """Width of the query and document vectors (the retriever's hidden size)."""
        return int(self.retriever.config.hidden_size)

    @property
    def hidden_size(self) -> int:
        """d_LLM, the generator's hidden width."""
        return self.generator.get_input_embeddings().embedding_dim

    def _require_token_ids(self) -> None:
        if self.config.thought_token_ids is None or self.config.subquery_token_ids is None:
            raise ValueError(
                "The config has no LatentRAG token ids; build the model with `from_components` or call "
                "`add_latentrag_tokens(tokenizer, model.config)` and resize the generator embeddings."
            )

    @contextlib.contextmanager
    def reference_retriever(self) -> Iterator[nn.Module]:
        """Within the block, `self.retriever` is the frozen pretrained reference θ*_ret (its adapter disabled, §6).

        Example:

        ```python
        >>> with model.reference_retriever() as retriever, torch.no_grad():
        ...     outputs = retriever(**inputs)
        ```
        """
        with lora_disabled(self.retriever):
            yield self.retriever

    def retriever_adapter_parameters(self) -> list[nn.Parameter]:
        """The LoRA parameters of the trainable retriever (θ_ret minus the frozen base), for the optimizer."""
        return [p for m in self.retriever.modules() if isinstance(m, LoRALinear) for p in (m.lora_A, m.lora_B)]

    def _generator_parts(self) -> tuple[nn.Module, nn.Module]:
        """The generator's decoder body and LM head (a PEFT-wrapped generator is unwrapped)."""
        causal_lm = self.generator
        if hasattr(causal_lm, "get_base_model"):
            causal_lm = causal_lm.get_base_model()
        return causal_lm.get_decoder(), causal_lm.get_output_embeddings()

    def _generator_output_layer_names(self) -> tuple[str, ...]:
        head = self.generator.get_output_embeddings()
        return tuple(name for name, module in self.generator.named_modules() if module is head and name)

    # ------------------------------------------------------------------------------------------ generator

    def run_generator(
        self,
        input_ids: torch.LongTensor | None = None,
        inputs_embeds: torch.FloatTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        past_key_values: Any = None,
        use_cache: bool = False,
        logits_positions: torch.LongTensor | slice | None = None,
    ) -> tuple[torch.FloatTensor, torch.FloatTensor | None, Any]:
        """One generator pass returning last-layer states and, optionally, logits at a few positions only.

        Runs the decoder body and applies the LM head only where asked (the inference loop needs the logits of one
        position per pass, not of every document token).

        Args:
            input_ids (`torch.LongTensor` of shape `(batch, seq_len)`, *optional*): token ids.
            inputs_embeds (`torch.FloatTensor` of shape `(batch, seq_len, hidden)`, *optional*): instead of ids.
            attention_mask (`torch.Tensor` of shape `(batch, past_len + seq_len)`, *optional*): padding mask.
            position_ids (`torch.LongTensor` of shape `(batch, seq_len)`, *optional*): positions.
            past_key_values (`Cache`, *optional*): KV cache from the previous call.
            use_cache (`bool`, *optional*, defaults to `False`): return the updated cache.
            logits_positions (`torch.LongTensor` or `slice`, *optional*): positions (of the new tokens) where the LM
                head is applied; `None` computes no logits.

        Returns:
            `(hidden_states (batch, seq_len, hidden), logits (batch, num_positions, vocab) or None, cache)`.
        """
        body, head = self._generator_parts()
        outputs = body(
            input_ids=input_ids,
            inputs_embeds=inputs_embeds,
            attention_mask=attention_mask,
            position_ids=position_ids,
            past_key_values=past_key_values,
            use_cache=use_cache,
        )
        hidden = outputs.last_hidden_state
        logits = None if logits_positions is None else head(hidden[:, logits_positions])
        return hidden, logits, outputs.past_key_values if use_cache else None

    def select_action(self, logits: torch.Tensor) -> torch.LongTensor:
        """Restricted argmax over the two action ids (§4 step 2 [D]).

        Args:
            logits (`torch.Tensor` of shape `(..., vocab)`): LM-head logits at think_m.

        Returns:
            `torch.LongTensor` of shape `(...)`: 0 for ⟨query⟩ (`query_1`), 1 for ⟨answer⟩ (`<answer>`); ties go
            to ⟨query⟩.
        """
        self._require_token_ids()
        action_ids = [self.config.query_action_token_id, self.config.answer_action_token_id]
        return logits[..., action_ids].argmax(dim=-1)

    def forward(
        self,
        input_ids: torch.LongTensor,
        attention_mask: torch.Tensor | None = None,
        labels: torch.LongTensor | None = None,
        position_ids: torch.LongTensor | None = None,
        return_logits: bool = True,
        return_hidden_states: bool = False,
        **kwargs: Any,
    ) -> LatentRAGOutput:
        """One teacher-forced causal pass over converted trajectories (§8.1 step 1).

        Because latents are never fed back (§3), this single pass yields every H^τ_t and H^s_t of a trajectory exactly
        as the incremental KV-cache loop does (§13.1). Placeholder blocks are located by their ids: a thought block
        is `thought_token_ids` in order, a sub-query block `subquery_token_ids` in order.

        Args:
            input_ids (`torch.LongTensor` of shape `(batch, seq_len)`): trajectories (e.g. from
                `hf_latent.latentrag.prompts.encode_trajectory`), padded on either side.
            attention_mask (`torch.Tensor` of shape `(batch, seq_len)`, *optional*): 1 for real tokens.
            labels (`torch.LongTensor` of shape `(batch, seq_len)`, *optional*): token ids to predict, -100 elsewhere
                (HF convention: the shift happens inside). Gives `loss`.
            position_ids (`torch.LongTensor` of shape `(batch, seq_len)`, *optional*): positions.
            return_logits (`bool`, *optional*, defaults to `True`): return the full `(batch, seq_len, vocab)` logits.
                With `False` and `labels`, the LM head runs only at labelled positions (much less memory).
            return_hidden_states (`bool`, *optional*, defaults to `False`): return the last-layer states.

        Returns:
            [`LatentRAGOutput`].
        """
        self._require_token_ids()
        hidden, _, _ = self.run_generator(
            input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids
        )
        _, head = self._generator_parts()
        logits = head(hidden) if return_logits else None
        loss = None
        if labels is not None:
            shifted_labels = labels[:, 1:]
            if logits is not None:
                flat_logits, flat_labels = logits[:, :-1].reshape(-1, logits.shape[-1]), shifted_labels.reshape(-1)
            else:
                keep = shifted_labels != -100
                flat_logits, flat_labels = head(hidden[:, :-1][keep]), shifted_labels[keep]
            loss = F.cross_entropy(flat_logits.float(), flat_labels, ignore_index=-100)

        thought_batch, thought_positions, thought_steps = locate_placeholder_blocks(
            input_ids, self.config.thought_token_ids
        )
        query_batch, query_positions, query_steps = locate_placeholder_blocks(
            input_ids, self.config.subquery_token_ids
        )
        action_ids = [self.config.query_action_token_id, self.config.answer_action_token_id]
        last_thought = (
            hidden[thought_batch, thought_positions[:, -1]]
            if len(thought_batch)
            else hidden.new_zeros(0, hidden.shape[-1])
        )
        action_logits = head(last_thought)[:, action_ids]
        return LatentRAGOutput(
            loss=loss,
            logits=logits,
            last_hidden_state=hidden if return_hidden_states else None,
            thought_states=hidden[thought_batch[:, None], thought_positions],
            thought_positions=thought_positions,
            thought_batch_index=thought_batch,
            thought_step_index=thought_steps,
            action_logits=action_logits,
            subquery_states=hidden[query_batch[:, None], query_positions],
            subquery_positions=query_positions,
            subquery_batch_index=query_batch,
            subquery_step_index=query_steps,
        )

    # ------------------------------------------------------------------------------------------ retrieval

    def _template_ids(self) -> tuple[list[int], list[int]]:
        if self.config.retriever_query_prefix_ids is None or self.config.retriever_query_suffix_ids is None:
            if self.retriever_tokenizer is None:
                raise ValueError("The config lacks retriever template ids and the model has no retriever_tokenizer.")
            prefix_ids, suffix_ids = retriever_query_template_ids(
                self.retriever_tokenizer, self.config.retriever_query_prefix, self.config.retriever_query_suffix
            )
            self.config.retriever_query_prefix_ids, self.config.retriever_query_suffix_ids = prefix_ids, suffix_ids
        return list(self.config.retriever_query_prefix_ids), list(self.config.retriever_query_suffix_ids)

    def _retriever_forward(self, reference: bool, **inputs: torch.Tensor) -> torch.Tensor:
        """Run the trainable (or reference) retriever, pool and L2-normalise: `(batch, retrieval_dim)` float32."""
        if self._retriever_accepts_use_cache:
            inputs["use_cache"] = False
        context = self.reference_retriever() if reference else contextlib.nullcontext()
        with context, torch.no_grad() if reference else contextlib.nullcontext():
            outputs = self.retriever(**inputs)
            hidden = outputs[0] if isinstance(outputs, tuple) else outputs.last_hidden_state
            pooled = _POOLING[self.config.retriever_pooling](hidden.float(), inputs["attention_mask"])
        return F.normalize(pooled, dim=-1)

    def encode_query_embeddings(
        self,
        span_embeds: torch.Tensor,
        span_mask: torch.Tensor | None = None,
        reference: bool = False,
    ) -> torch.FloatTensor:
        """Encode queries whose text span is given as input embeddings (§6 "replace the query span").

        Builds `prefix ids ‖ span ‖ suffix ids` (the prefix and suffix are embedded with the retriever's word-embedding
        table; for BERT-style models position / token-type embeddings and the embedding LayerNorm then apply to the
        whole sequence as usual), runs the retriever on `inputs_embeds`, pools and L2-normalises. Rows are packed and
        right-padded, so a span of real token embeddings gives exactly the vector of the text (§13.2).

        Args:
            span_embeds (`torch.Tensor` of shape `(batch, span_len, retriever_input_width)`): the span vectors.
            span_mask (`torch.Tensor` of shape `(batch, span_len)`, *optional*): 1 for real span vectors; `None` =
                all real (latent sub-queries always have n).
            reference (`bool`, *optional*, defaults to `False`): use the frozen reference retriever (no gradient).

        Returns:
            `torch.FloatTensor` of shape `(batch, retrieval_dim)`, L2-normalised.
        """
        prefix_ids, suffix_ids = self._template_ids()
        embedding = self.retriever.get_input_embeddings()
        device, dtype = embedding.weight.device, embedding.weight.dtype
        span_embeds = span_embeds.to(device=device, dtype=dtype)
        batch, span_len, _ = span_embeds.shape
        prefix = embedding(torch.tensor(prefix_ids, dtype=torch.long, device=device))
        suffix = embedding(torch.tensor(suffix_ids, dtype=torch.long, device=device))
        if span_mask is None:
            inputs_embeds = torch.cat([prefix.expand(batch, -1, -1), span_embeds, suffix.expand(batch, -1, -1)], dim=1)
            attention_mask = torch.ones(inputs_embeds.shape[:2], dtype=torch.long, device=device)
        else:
            span_mask = span_mask.to(device=device, dtype=torch.bool)
            lengths = span_mask.long().sum(dim=1).tolist()
            total = len(prefix_ids) + max(lengths, default=0) + len(suffix_ids)
            inputs_embeds = span_embeds.new_zeros(batch, total, span_embeds.shape[-1])
            attention_mask = torch.zeros(batch, total, dtype=torch.long, device=device)
            for row, length in enumerate(lengths):
                real = span_embeds[row][span_mask[row]]
                sequence = torch.cat([prefix, real, suffix], dim=0)
                inputs_embeds[row, : len(sequence)] = sequence
                attention_mask[row, : len(sequence)] = 1
        inputs = {"inputs_embeds": inputs_embeds, "attention_mask": attention_mask}
        if self._retriever_accepts_token_type_ids:
            inputs["token_type_ids"] = torch.zeros_like(attention_mask)
        return self._retriever_forward(reference, **inputs)

    def encode_latent_queries(self, subquery_states: torch.Tensor, reference: bool = False) -> torch.FloatTensor:
        """Query vectors from latent sub-queries: `v^s_t = normalize(f_ret(Proj_ret(H^s_t); θ_ret))` (§6, Eq. 5).

        With `use_pretrained_retriever=False` (§9 ablation) the retriever is skipped: `normalize(mean(Proj_ret(H^s_t)))`.

        Args:
            subquery_states (`torch.Tensor` of shape `(num_retrievals, num_subquery_tokens, hidden)`): H^s_t of any
                number of steps (e.g. `LatentRAGOutput.subquery_states`).
            reference (`bool`, *optional*, defaults to `False`): encode through the frozen reference weights
                instead (diagnostics only; training uses the trainable tower).

        Returns:
            `torch.FloatTensor` of shape `(num_retrievals, retrieval_dim)`, L2-normalised; differentiable with respect
            to the states, `Proj_ret` and the retriever adapter.
        """
        projected = self.retrieval_projector(subquery_states)
        if not self.config.use_pretrained_retriever:
            return F.normalize(projected.float().mean(dim=1), dim=-1)
        return self.encode_query_embeddings(projected, reference=reference)

    def _tokenize_retriever(self, texts: list[str], prefix: str, suffix: str) -> dict[str, torch.Tensor]:
        if self.retriever_tokenizer is None:
            raise ValueError("The model has no retriever_tokenizer; set `model.retriever_tokenizer` first.")
        encoded = self.retriever_tokenizer(
            [prefix + text + suffix for text in texts],
            padding=True,
            truncation=True,
            max_length=self.config.retriever_max_length,
            padding_side="right",
            return_tensors="pt",
        )
        device = self.retriever.get_input_embeddings().weight.device
        inputs = {"input_ids": encoded["input_ids"].to(device), "attention_mask": encoded["attention_mask"].to(device)}
        if self._retriever_accepts_token_type_ids:
            inputs["token_type_ids"] = torch.zeros_like(inputs["input_ids"])
        return inputs

    def encode_text_queries(
        self, texts: Sequence[str], reference: bool = True, batch_size: int = 64
    ) -> torch.FloatTensor:
        """Query vectors of text queries through the retriever template (§6, Eq. 6: `v*_t = f_ret(s_t; θ*_ret)`).

        Args:
            texts (`Sequence[str]`): e.g. the teacher's text sub-queries, or questions (naive RAG).
            reference (`bool`, *optional*, defaults to `True`): the frozen reference retriever (adapter disabled,
                no gradient); `False` uses the trainable one (with gradient).
            batch_size (`int`, *optional*, defaults to 64): texts per retriever pass.

        Returns:
            `torch.FloatTensor` of shape `(len(texts), retrieval_dim)`, L2-normalised.
        """
        texts = _check_texts(texts)
        prefix, suffix = self.config.retriever_query_prefix, self.config.retriever_query_suffix
        vectors = [
            self._retriever_forward(reference, **self._tokenize_retriever(texts[i : i + batch_size], prefix, suffix))
            for i in range(0, len(texts), batch_size)
        ]
        return torch.cat(vectors) if vectors else torch.empty(0, self.retrieval_dim)

    @torch.no_grad()
    def encode_documents(
        self, texts: Sequence[str], batch_size: int = 32, show_progress_bar: bool = False
    ) -> torch.FloatTensor:
        """Document vectors from the frozen reference retriever (the index side, §2 and §6).

        Args:
            texts (`Sequence[str]`): documents, already rendered with `config.retriever_document_template`.
            batch_size (`int`, *optional*, defaults to 32): documents per pass (sorted by length internally).
            show_progress_bar (`bool`, *optional*, defaults to `False`): a tqdm bar.

        Returns:
            `torch.FloatTensor` of shape `(len(texts), retrieval_dim)`, float32 on CPU, L2-normalised, input order.
        """
        texts = _check_texts(texts)
        out = torch.empty(len(texts), self.retrieval_dim, dtype=torch.float32)
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
        progress = None
        if show_progress_bar:
            from tqdm.auto import tqdm

            progress = tqdm(total=len(texts), desc="Encoding documents", unit="doc")
        for start in range(0, len(texts), batch_size):
            rows = order[start : start + batch_size]
            inputs = self._tokenize_retriever([texts[i] for i in rows], self.config.retriever_document_prefix, "")
            out[rows] = self._retriever_forward(True, **inputs).cpu()
            if progress is not None:
                progress.update(len(rows))
        if progress is not None:
            progress.close()
        return out

    def format_document_for_retrieval(self, title: str, text: str) -> str:
        """The text the document tower encodes for a corpus row (`config.retriever_document_template`)."""
        return self.config.retriever_document_template.format(title=title, text=text)

    # --------------------------------------------------------------------------------------- latent decoding

    def _decoding_projector(self, kind: str) -> LatentProjector:
        if kind not in ("thought", "subquery"):
            raise ValueError(f"kind must be 'thought' or 'subquery', got {kind!r}.")
        projector = self.thought_decoding_projector if kind == "thought" else self.subquery_decoding_projector
        if projector is None:
            raise ValueError("Latent decoding is off (use_latent_decoding=False): there is no decoding projector.")
        return projector

    def _decoding_prompt_ids(self, kind: str, tokenizer: PreTrainedTokenizerBase) -> tuple[list[int], list[int]]:
        prompt = self.config.thought_decoding_prompt if kind == "thought" else self.config.subquery_decoding_prompt
        prefix = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        if _tokenizer_adds_bos(tokenizer):
            prefix = [tokenizer.bos_token_id, *prefix]
        return prefix, tokenizer("\n", add_special_tokens=False)["input_ids"]

    def _tokenizer_or_raise(self, tokenizer: PreTrainedTokenizerBase | None) -> PreTrainedTokenizerBase:
        tokenizer = tokenizer if tokenizer is not None else self.generator_tokenizer
        if tokenizer is None:
            raise ValueError("Pass a tokenizer or set `model.generator_tokenizer`.")
        return tokenizer

    def latent_decoding_inputs(
        self,
        latent_states: torch.Tensor,
        kind: str,
        targets: Sequence[str] | None = None,
        tokenizer: PreTrainedTokenizerBase | None = None,
        padding_side: str = "right",
    ) -> dict[str, torch.Tensor]:
        """Inputs of the latent-decoding pass (§7.3): `prompt ‖ Proj(latents) ‖ "\\n" ‖ target + EOS`.

        The prompt conditions only on the latents (never on the question or history), so every step of every
        trajectory decodes in one batch. The embeddings of the prompt, newline and target tokens come from the
        generator's input-embedding table; the latents go through `Proj_τ` (`kind="thought"`) or `Proj_s`
        (`kind="subquery"`).

        Args:
            latent_states (`torch.Tensor` of shape `(num_items, num_latents, hidden)`): H^τ_t with
                `num_latents = num_thought_tokens`, or H^s_t with `num_subquery_tokens`.
            kind (`str`): `"thought"` or `"subquery"`.
            targets (`Sequence[str]`, *optional*): one teacher text per item; with them the inputs end in the
                target tokens plus EOS, and `labels` mark exactly those tokens (token-mean CE over target + EOS, §7.3
                [D]). Without them the inputs are generation prompts.
            tokenizer (`PreTrainedTokenizerBase`, *optional*): defaults to `model.generator_tokenizer`.
            padding_side (`str`, *optional*, defaults to `"right"`): `"right"` for training, `"left"` for generation.

        Returns:
            `dict` with `inputs_embeds` `(num_items, seq_len, hidden)`, `attention_mask` `(num_items, seq_len)`,
            `position_ids` `(num_items, seq_len)` (counted from each item's first real token) and, with targets,
            `labels` `(num_items, seq_len)` (-100 except on target + EOS). Feed them to `model.generator(**inputs)`
            (HF shifts the labels) or to [`~LatentRAGModel.run_generator`].
        """
        tokenizer = self._tokenizer_or_raise(tokenizer)
        if padding_side not in ("left", "right"):
            raise ValueError(f"padding_side must be 'left' or 'right', got {padding_side!r}.")
        if latent_states.dim() != 3:
            raise ValueError(
                f"latent_states must be (num_items, num_latents, hidden), got {tuple(latent_states.shape)}."
            )
        if targets is not None and len(targets) != latent_states.shape[0]:
            raise ValueError(f"Got {len(targets)} targets for {latent_states.shape[0]} latent sets.")
        projected = self._decoding_projector(kind)(latent_states)
        prefix_ids, newline_ids = self._decoding_prompt_ids(kind, tokenizer)
        embedding = self.generator.get_input_embeddings()
        device = embedding.weight.device
        projected = projected.to(device=device, dtype=embedding.weight.dtype)
        prefix = embedding(torch.tensor(prefix_ids, dtype=torch.long, device=device))
        newline = embedding(torch.tensor(newline_ids, dtype=torch.long, device=device))
        target_ids = []
        if targets is not None:
            eos = tokenizer.eos_token_id
            for text in targets:
                ids = tokenizer(text, add_special_tokens=False)["input_ids"]
                target_ids.append(ids + ([eos] if eos is not None else []))
        rows, label_rows = [], []
        prompt_len = len(prefix_ids) + projected.shape[1] + len(newline_ids)
        for i in range(projected.shape[0]):
            pieces = [prefix, projected[i], newline]
            labels = [-100] * prompt_len
            if targets is not None:
                pieces.append(embedding(torch.tensor(target_ids[i], dtype=torch.long, device=device)))
                labels = labels + target_ids[i]
            rows.append(torch.cat(pieces, dim=0))
            label_rows.append(labels)
        return _pad_embeddings(rows, label_rows if targets is not None else None, padding_side)

    @torch.no_grad()
    def decode_latents(
        self,
        thought_states: torch.Tensor | None = None,
        subquery_states: torch.Tensor | None = None,
        max_new_tokens: int | None = None,
        tokenizer: PreTrainedTokenizerBase | None = None,
    ) -> LatentDecodingOutput:
        """Decode latent thoughts and sub-queries into text, all items in **one** left-padded greedy batch (§4 step 5).

        Args:
            thought_states (`torch.Tensor` of shape `(num_steps, num_thought_tokens, hidden)`, *optional*): H^τ_t.
            subquery_states (`torch.Tensor` of shape `(num_retrievals, num_subquery_tokens, hidden)`, *optional*):
                H^s_t.
            max_new_tokens (`int`, *optional*): defaults to `config.max_decoding_tokens`.
            tokenizer (`PreTrainedTokenizerBase`, *optional*): defaults to `model.generator_tokenizer`.

        Returns:
            [`LatentDecodingOutput`]; each text stops at EOS (excluded) and is stripped.
        """
        tokenizer = self._tokenizer_or_raise(tokenizer)
        max_new_tokens = max_new_tokens if max_new_tokens is not None else self.config.max_decoding_tokens
        rows, counts = [], {}
        for kind, states in (("thought", thought_states), ("subquery", subquery_states)):
            counts[kind] = 0 if states is None else states.shape[0]
            if states is not None and states.shape[0]:
                inputs = self.latent_decoding_inputs(states, kind, tokenizer=tokenizer)
                rows.extend(inputs["inputs_embeds"][i] for i in range(states.shape[0]))
        if not rows:
            return LatentDecodingOutput(thoughts=[], subqueries=[])
        batch = _pad_embeddings(rows, None, "left")
        stop_ids = {tokenizer.eos_token_id} - {None}
        # Decoded texts are plain text: LatentRAG's own placeholders and tags are masked out [D].
        banned = [*self.config.thought_token_ids, *self.config.subquery_token_ids]
        banned += [getattr(self.config, f"{name}_token_id") for name in ("answer_start", "answer_end")]
        banned += [getattr(self.config, f"{name}_token_id") for name in ("information_start", "information_end")]
        tokens, passes = greedy_generate(
            self,
            batch["inputs_embeds"],
            batch["attention_mask"],
            batch["position_ids"],
            max_new_tokens,
            stop_ids,
            banned_ids=[i for i in banned if i is not None],
        )
        texts = [
            tokenizer.decode([t for t in row if t not in stop_ids], skip_special_tokens=True).strip() for row in tokens
        ]
        return LatentDecodingOutput(
            thoughts=texts[: counts["thought"]],
            subqueries=texts[counts["thought"] :],
            num_forward_passes=passes,
            num_generated_tokens=sum(len(row) for row in tokens),
            token_ids=tokens,
        )

    # ----------------------------------------------------------------------------- agentic loop (thin wrappers)

    def build_index(self, corpus: Any, batch_size: int = 32, show_progress_bar: bool = True, **index_kwargs: Any):
        """A `hf_latent.retrieval.DenseIndex` over `corpus`, encoded by the reference retriever's document path and
        stamped with `self.retriever_name`. See `hf_latent.latentrag.inference.build_index`."""
        return _inference_module().build_index(
            self, corpus, batch_size=batch_size, show_progress_bar=show_progress_bar, **index_kwargs
        )

    def answer(self, question: str, index: Any, corpus: Any, **kwargs: Any):
        """Run the agentic loop (§4) on one question. See `hf_latent.latentrag.inference.run_latentrag`."""
        return _inference_module().run_latentrag(self, question, index, corpus, **kwargs)

    def answer_questions(
        self, questions: Any, index: Any, corpus: Any, show_progress_bar: bool = True, **kwargs: Any
    ) -> list:
        """Run the loop on many questions, one at a time (batch size 1, §11), with a progress bar. See
        `hf_latent.latentrag.inference.answer_questions`."""
        return _inference_module().answer_questions(
            self, questions, index, corpus, show_progress_bar=show_progress_bar, **kwargs
        )


# ------------------------------------------------------------------------------------------------------- helpers


def locate_placeholder_blocks(
    input_ids: torch.LongTensor, block_ids: Sequence[int]
) -> tuple[torch.LongTensor, torch.LongTensor, torch.LongTensor]:
    """Find every occurrence of a placeholder block (`block_ids` in order) in a batch of sequences.

    Args:
        input_ids (`torch.LongTensor` of shape `(batch, seq_len)`): sequences.
        block_ids (`Sequence[int]`): e.g. the m thought ids `think_1..think_m`.

    Returns:
        `(batch_index (num_blocks,), positions (num_blocks, block_len), step_index (num_blocks,))`, ordered by
        sequence then position; `step_index` counts the blocks within each sequence from 0.

    Raises:
        ValueError: a block's first id is not followed by the rest of the block.
    """
    block = torch.tensor(list(block_ids), dtype=torch.long, device=input_ids.device)
    is_start = input_ids == block[0]
    batch_index, start = is_start.nonzero(as_tuple=True)
    positions = start[:, None] + torch.arange(len(block), device=input_ids.device)
    if len(start) and (positions[:, -1] >= input_ids.shape[1]).any():
        raise ValueError("A placeholder block is cut off at the end of a sequence.")
    if len(start) and not (input_ids[batch_index[:, None], positions] == block).all():
        raise ValueError(f"Incomplete placeholder block: id {block[0].item()} is not followed by {block_ids[1:]}.")
    step_index = is_start.long().cumsum(dim=1)[batch_index, start] - 1
    return batch_index, positions, step_index


def greedy_generate(
    model: LatentRAGModel,
    inputs_embeds: torch.Tensor,
    attention_mask: torch.Tensor,
    position_ids: torch.Tensor,
    max_new_tokens: int,
    stop_ids: set[int],
    banned_ids: Sequence[int] = (),
) -> tuple[list[list[int]], int]:
    """Batched greedy decoding with one KV cache from left-padded input embeddings.

    Args:
        model ([`LatentRAGModel`]): its generator decodes.
        inputs_embeds (`torch.Tensor` of shape `(batch, seq_len, hidden)`): left-padded prompts.
        attention_mask (`torch.Tensor` of shape `(batch, seq_len)`): 1 for real positions.
        position_ids (`torch.Tensor` of shape `(batch, seq_len)`): counted from each row's first real position.
        max_new_tokens (`int`): tokens per row at most.
        stop_ids (`set[int]`): a row stops after generating one of them.
        banned_ids (`Sequence[int]`, *optional*): ids never generated.

    Returns:
        `(tokens, num_forward_passes)`: per row the generated ids up to and including its first stop id.
    """
    device = inputs_embeds.device
    _, logits, cache = model.run_generator(
        inputs_embeds=inputs_embeds,
        attention_mask=attention_mask,
        position_ids=position_ids,
        use_cache=True,
        logits_positions=slice(-1, None),
    )
    passes, batch = 1, inputs_embeds.shape[0]
    tokens: list[list[int]] = [[] for _ in range(batch)]
    finished = torch.zeros(batch, dtype=torch.bool, device=device)
    next_position = position_ids[:, -1:] + 1
    stop = torch.tensor(sorted(stop_ids), dtype=torch.long, device=device)
    banned = torch.tensor(list(banned_ids), dtype=torch.long, device=device)
    for step in range(max_new_tokens):
        next_tokens = logits[:, -1].index_fill(-1, banned, float("-inf")).argmax(dim=-1)
        for row in (~finished).nonzero(as_tuple=True)[0].tolist():
            tokens[row].append(int(next_tokens[row]))
        finished |= torch.isin(next_tokens, stop)
        if bool(finished.all()) or step == max_new_tokens - 1:
            break
        attention_mask = torch.cat([attention_mask, (~finished).long()[:, None]], dim=1)
        _, logits, cache = model.run_generator(
            input_ids=next_tokens[:, None],
            attention_mask=attention_mask,
            position_ids=next_position,
            past_key_values=cache,
            use_cache=True,
            logits_positions=slice(-1, None),
        )
        next_position = next_position + 1
        passes += 1
    return tokens, passes


def _pad_embeddings(
    rows: list[torch.Tensor], label_rows: list[list[int]] | None, padding_side: str
) -> dict[str, torch.Tensor]:
    length = max(row.shape[0] for row in rows)
    hidden = rows[0].shape[-1]
    embeds = rows[0].new_zeros(len(rows), length, hidden)
    mask = torch.zeros(len(rows), length, dtype=torch.long, device=rows[0].device)
    labels = torch.full((len(rows), length), -100, dtype=torch.long, device=rows[0].device)
    for i, row in enumerate(rows):
        span = slice(0, row.shape[0]) if padding_side == "right" else slice(length - row.shape[0], length)
        embeds[i, span] = row
        mask[i, span] = 1
        if label_rows is not None:
            labels[i, span] = torch.tensor(label_rows[i], dtype=torch.long, device=labels.device)
    out = {
        "inputs_embeds": embeds,
        "attention_mask": mask,
        "position_ids": (mask.cumsum(dim=1) - 1).clamp(min=0),
    }
    if label_rows is not None:
        out["labels"] = labels
    return out


@torch.no_grad()
def _resize_with_mean_rows(generator: PreTrainedModel, vocab_size: int) -> None:
    """Grow the generator vocabulary to `vocab_size`; new input (and untied output) rows = the mean row (§3 [D])."""
    old = generator.get_input_embeddings().weight.shape[0]
    if vocab_size <= old:
        return
    generator.resize_token_embeddings(vocab_size, mean_resizing=False)
    input_table = generator.get_input_embeddings().weight
    input_table[old:] = input_table[:old].mean(dim=0, keepdim=True)
    output = generator.get_output_embeddings()
    if output is not None and output.weight.data_ptr() != input_table.data_ptr():
        output.weight[old:] = output.weight[:old].mean(dim=0, keepdim=True)
        if getattr(output, "bias", None) is not None:
            output.bias[old:] = output.bias[:old].mean()


def _check_texts(texts: Sequence[str]) -> list[str]:
    if isinstance(texts, str):
        raise TypeError("texts must be a sequence of strings, not a single string; wrap it in a list.")
    texts = list(texts)
    for i, text in enumerate(texts):
        if not isinstance(text, str) or not text.strip():
            raise ValueError(f"texts[{i}] is empty or not a string ({text!r}).")
    return texts


def _inference_module():
    try:
        from hf_latent.latentrag import inference
    except ImportError as error:
        raise ImportError(
            "The agentic loop, index building and baselines need the `hf_latent` package (and faiss); the model "
            "methods encode_latent_queries, encode_text_queries, forward and decode_latents work without it."
        ) from error
    return inference


__all__ = [
    "LatentDecodingOutput",
    "LatentRAGModel",
    "LatentRAGOutput",
    "LatentRAGPreTrainedModel",
    "LoRALinear",
    "add_latentrag_tokens",
    "greedy_generate",
    "inject_lora",
    "locate_placeholder_blocks",
    "lora_disabled",
    "retriever_preset",
    "retriever_query_template_ids",
]
