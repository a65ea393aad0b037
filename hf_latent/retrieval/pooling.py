"""Pooling of token hidden states into one vector per sequence.

All functions take `hidden_states` of shape `(batch, seq_len, hidden)` and an `attention_mask` of shape
`(batch, seq_len)` (1 for real tokens, 0 for padding), and return `(batch, hidden)`. They do not normalise.
"""

from __future__ import annotations

from collections.abc import Callable

import torch


POOLING_MODES = ("mean", "last_token", "cls")


def mean_pool(hidden_states: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Mean of the hidden states of the real (unmasked) tokens, as in sentence-transformers' `Pooling`.

    Args:
        hidden_states (`torch.Tensor` of shape `(batch, seq_len, hidden)`): token states.
        attention_mask (`torch.Tensor` of shape `(batch, seq_len)`): 1 for real tokens, 0 for padding.

    Returns:
        `torch.Tensor` of shape `(batch, hidden)`, in the dtype of `hidden_states`. A row without any real token
        pools to zeros.
    """
    _check_shapes(hidden_states, attention_mask)
    mask = attention_mask.unsqueeze(-1).to(hidden_states.dtype)
    summed = (hidden_states * mask).sum(dim=1)
    counts = mask.sum(dim=1).clamp(min=1e-9)
    return summed / counts


def last_token_pool(hidden_states: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Hidden state of the last real token of each sequence, for left *and* right padding.

    The position is the last index where the mask is 1, found per row, so left-padded, right-padded and even
    mixed batches pool the right token.

    Args:
        hidden_states (`torch.Tensor` of shape `(batch, seq_len, hidden)`): token states.
        attention_mask (`torch.Tensor` of shape `(batch, seq_len)`): 1 for real tokens, 0 for padding.

    Returns:
        `torch.Tensor` of shape `(batch, hidden)`. A row without any real token pools its last position.
    """
    _check_shapes(hidden_states, attention_mask)
    seq_len = attention_mask.shape[1]
    # argmax returns the first maximum, so on the flipped mask it finds the last real token.
    last = (seq_len - 1) - attention_mask.ne(0).int().flip(dims=[1]).argmax(dim=1)
    rows = torch.arange(hidden_states.shape[0], device=hidden_states.device)
    return hidden_states[rows, last.to(hidden_states.device)]


def cls_pool(hidden_states: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
    """Hidden state of the first position (`[CLS]` in BERT-style encoders; assumes right padding).

    Args:
        hidden_states (`torch.Tensor` of shape `(batch, seq_len, hidden)`): token states.
        attention_mask (`torch.Tensor` of shape `(batch, seq_len)`, *optional*): only checked for its shape.

    Returns:
        `torch.Tensor` of shape `(batch, hidden)`.
    """
    if attention_mask is not None:
        _check_shapes(hidden_states, attention_mask)
    return hidden_states[:, 0]


POOLING_FUNCTIONS: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "mean": mean_pool,
    "last_token": last_token_pool,
    "cls": cls_pool,
}


def pool(hidden_states: torch.Tensor, attention_mask: torch.Tensor, pooling: str) -> torch.Tensor:
    """Dispatch to [`mean_pool`], [`last_token_pool`] or [`cls_pool`] by name.

    Args:
        hidden_states (`torch.Tensor` of shape `(batch, seq_len, hidden)`): token states.
        attention_mask (`torch.Tensor` of shape `(batch, seq_len)`): 1 for real tokens, 0 for padding.
        pooling (`str`): `"mean"`, `"last_token"` or `"cls"`.

    Returns:
        `torch.Tensor` of shape `(batch, hidden)`.
    """
    if pooling not in POOLING_FUNCTIONS:
        raise ValueError(f"Unknown pooling {pooling!r}; use one of {', '.join(POOLING_MODES)}.")
    return POOLING_FUNCTIONS[pooling](hidden_states, attention_mask)


def _check_shapes(hidden_states: torch.Tensor, attention_mask: torch.Tensor) -> None:
    if hidden_states.dim() != 3:
        raise ValueError(f"hidden_states must have shape (batch, seq_len, hidden), got {tuple(hidden_states.shape)}.")
    if tuple(attention_mask.shape) != tuple(hidden_states.shape[:2]):
        raise ValueError(
            f"attention_mask shape {tuple(attention_mask.shape)} does not match hidden_states "
            f"(batch, seq_len) = {tuple(hidden_states.shape[:2])}."
        )
