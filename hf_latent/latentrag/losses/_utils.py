"""Shared pieces of the LatentRAG loss terms (specs/latentrag.md §7): base class, citation, checks, token CE.

The base class and the scalar/tensor checks come from [`hf_latent.core.losses`] (shared with LaSER).

- [`LatentRAGLossBase`]: `get_config_dict()`, `citation` and a repr for every loss module.
- [`token_cross_entropy`]: the token-mean next-token CE of [`GenerationLoss`] and [`LatentDecodingLoss`], with the
  Hugging Face label convention (labels aligned with `input_ids`, shifted here).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from ...core.losses import LossBase, check_temperature, check_tensor, check_weight


LATENTRAG_ARXIV_ID = "2605.06285"

LATENTRAG_CITATION = """@misc{zheng2026latentrag,
    title = {LatentRAG: Latent Reasoning and Retrieval for Efficient Agentic RAG},
    author = {Zheng and Worring},
    year = {2026},
    eprint = {2605.06285},
    archivePrefix = {arXiv},
    url = {https://arxiv.org/abs/2605.06285},
    note = {title as listed on arXiv 2605.06285},
}"""


class LatentRAGLossBase(LossBase):
    """Common surface of the LatentRAG loss modules: `get_config_dict()` (model card), `citation`, and a repr."""

    CITATION = LATENTRAG_CITATION


def check_logits_and_labels(logits_name: str, logits: Any, labels_name: str, labels: Any, loss_name: str) -> None:
    """Validate a `(batch, seq_len, vocab)` logits tensor against `(batch, seq_len)` integer labels."""
    check_tensor(logits_name, logits, 3, "(batch, seq_len, vocab_size)", loss_name)
    check_tensor(labels_name, labels, 2, "(batch, seq_len)", loss_name)
    if logits.shape[:2] != labels.shape:
        raise ValueError(
            f"{loss_name}: {logits_name} {tuple(logits.shape)} and {labels_name} {tuple(labels.shape)} must agree on "
            "(batch, seq_len); labels are aligned with input_ids (Hugging Face convention) and shifted inside."
        )
    if labels.dtype.is_floating_point or labels.dtype == torch.bool:
        raise TypeError(f"{loss_name}: {labels_name} must hold integer token ids, got dtype {labels.dtype}.")


def token_cross_entropy(
    logits: Tensor,
    labels: Tensor,
    ignore_index: int = -100,
    num_items_in_batch: int | Tensor | None = None,
    loss_name: str = "token_cross_entropy",
    logits_name: str = "logits",
    labels_name: str = "labels",
) -> Tensor:
    """Token-mean next-token cross-entropy with the Hugging Face shift: `logits[:, t]` predicts `labels[:, t + 1]`.

    `L = (1/N) Σ_{b, t : labels[b, t+1] ≠ ignore_index} −log softmax(logits[b, t])[labels[b, t+1]]`, where N is the
    number of target tokens in the batch (or `num_items_in_batch` when given). `labels[:, 0]` is never a target.
    Computed in float32 (bf16 logits are upcast).

    Args:
        logits (`Tensor` of shape `(batch, seq_len, vocab_size)`): LM-head logits.
        labels (`Tensor` of shape `(batch, seq_len)`): token ids aligned with `input_ids`, `ignore_index` elsewhere.
        ignore_index (`int`, defaults to `-100`): label value that is not a target.
        num_items_in_batch (`int` or `Tensor`, *optional*): divide the summed CE by this count instead of the local
            number of targets (the Trainer's gradient-accumulation normaliser).

    Raises:
        ValueError: on mismatched shapes, a label outside `[0, vocab_size)`, or a batch without any target token.
    """
    check_logits_and_labels(logits_name, logits, labels_name, labels, loss_name)
    vocab_size = logits.shape[-1]
    shift_logits = logits[:, :-1, :].float()
    shift_labels = labels[:, 1:]
    targets = shift_labels != ignore_index
    if bool(((shift_labels < 0) | (shift_labels >= vocab_size))[targets].any()):
        raise ValueError(
            f"{loss_name}: {labels_name} holds token ids outside [0, {vocab_size}) (vocab size of {logits_name}); "
            f"non-target positions must be {ignore_index}."
        )
    num_targets = int(targets.sum())
    if num_targets == 0:
        raise ValueError(
            f"{loss_name}: {labels_name} has no target token after the shift (all positions 1.. are {ignore_index})."
        )
    summed = F.cross_entropy(
        shift_logits.reshape(-1, vocab_size), shift_labels.reshape(-1), ignore_index=ignore_index, reduction="sum"
    )
    denominator = num_targets if num_items_in_batch is None else num_items_in_batch
    if isinstance(denominator, Tensor):
        denominator = denominator.to(summed.device, summed.dtype)
    return summed / denominator


__all__ = [
    "LATENTRAG_ARXIV_ID",
    "LATENTRAG_CITATION",
    "LatentRAGLossBase",
    "check_logits_and_labels",
    "check_temperature",
    "check_tensor",
    "check_weight",
    "token_cross_entropy",
]
