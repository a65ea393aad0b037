"""Batches LaSER training rows into the latent-view, explicit-view and passage tensors (specs/laser.md §2.2, §3.1, §5)."""

from __future__ import annotations

import logging
import random
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from transformers import PreTrainedTokenizerBase

from .configuration_laser import LaserConfig
from .modeling_laser import build_explicit_inputs, build_latent_inputs


logger = logging.getLogger(__name__)


def row_key(row: Mapping[str, Any]) -> int:
    """A stable integer per row (CRC-32 of its query), independent of batch position, process and dataset order."""
    return zlib.crc32(str(row.get("query", "")).encode("utf-8"))


def select_passages(
    row: Mapping[str, Any], group_size: int, seed: int = 42, epoch: int = 0, index: int | None = None
) -> list[str]:
    """The G passages of one row: `[positive, negative_1, ..., negative_{G-1}]` (specs/laser.md §5 [C]).

    - Positive: `positives[(key + seed + epoch) % n_pos]`, with `key` = the row's `"index"` field if it has one, else
      [`row_key`] (the released code uses the dataset index; a content key gives the same rotation over epochs and
      does not depend on shuffling or on which process sees the row [D]).
    - Negatives: the first G-1 of `negatives`; with fewer, G-1 drawn with replacement from them, by a generator seeded
      with `(seed, key, epoch)`, so a row always gets the same passages in the same epoch.

    Raises:
        ValueError: no positive, or G > 1 and no negatives (the message says what to change).
    """
    positives = row.get("positive")
    positives = [positives] if isinstance(positives, str) else list(positives or [])
    where = f" (row {index})" if index is not None else ""
    if not positives:
        raise ValueError(f"A LaSER training row has no positive passage{where}: {str(row.get('query'))[:80]!r}.")
    key = int(row["index"]) if isinstance(row.get("index"), int) else row_key(row)
    passages = [positives[(key + seed + epoch) % len(positives)]]
    if group_size > 1:
        negatives = list(row.get("negatives") or [])
        if not negatives:
            raise ValueError(
                f"A LaSER training row has no negatives{where} but train_group_size={group_size} needs "
                f"{group_size - 1}; add `negatives` or use train_group_size=1: {str(row.get('query'))[:80]!r}."
            )
        if len(negatives) >= group_size - 1:
            passages.extend(negatives[: group_size - 1])
        else:
            passages.extend(random.Random(f"{seed}-{key}-{epoch}").choices(negatives, k=group_size - 1))
    return passages


@dataclass
class LaserDataCollator:
    r"""Turns LaSER training rows into model-ready tensors for [`LaserTrainer`].

    Rows: `query` (str), `positive` (str or list of str), optional `negatives` (list of str), `reasoning` (str, the
    explicit-view rationale) and `instruction` (str); see [`hf_latent.laser.data_laser`]. Formatting and truncation
    are the model module's [`build_latent_inputs`] / [`build_explicit_inputs`] (content truncated, then templated, so
    the template suffix is always there; left padding).

    Output (all `torch.Tensor`, B = rows, G = `train_group_size`):

    | key | shape | meaning |
    |---|---|---|
    | `query_input_ids`, `query_attention_mask` | `(B, Lq)` | latent-view queries (instruction + chat template) |
    | `passage_input_ids`, `passage_attention_mask` | `(B*G, Lp)` | passages `[pos_0, neg_0, ..., pos_1, ...]` |
    | `explicit_input_ids`, `explicit_attention_mask` | `(B, Le)` | `[templated query; CoT; EOS]` (if `include_explicit`) |
    | `explicit_cot_start`, `explicit_cot_end` | `(B,)` | the CoT span `[start, end)` (if `include_explicit`) |

    Documented behaviour on imperfect data: a missing, empty or short (< `min_rationale_chars`) rationale is replaced
    by the query [C]; a rationale that does not fit in `explicit_max_length` is cut on the right (one warning per
    collator); fewer than G-1 negatives are sampled with replacement. A row without a positive (or without negatives
    when G > 1) raises a `ValueError`; [`validate_laser_dataset`] finds those before training.

    Args:
        tokenizer: the backbone's tokenizer.
        config: the [`LaserConfig`] whose formatting fields (templates, default instruction, chat template) are used.
        train_group_size: G.
        query_max_length, passage_max_length: latent-view limits (template included).
        explicit_max_length: explicit-view limit before the EOS.
        include_explicit: build the explicit-view tensors (off for variants without a teacher).
        min_rationale_chars: see above.
        pad_to_multiple_of: pad lengths to a multiple of this.
        seed: seeds the positive rotation and the negative sampling (see [`select_passages`]).
        epoch: current epoch, set by the trainer at each epoch start (rotates the positives).
    """

    tokenizer: PreTrainedTokenizerBase
    config: LaserConfig | None = None
    train_group_size: int = 2
    query_max_length: int | None = 512
    passage_max_length: int | None = 512
    explicit_max_length: int = 1024
    include_explicit: bool = True
    min_rationale_chars: int = 5
    pad_to_multiple_of: int | None = 16
    seed: int = 42
    epoch: int = 0

    def __post_init__(self) -> None:
        if self.train_group_size < 1:
            raise ValueError(f"train_group_size must be >= 1, got {self.train_group_size}.")
        self._warned_truncation = False

    def __call__(self, features: Sequence[Mapping[str, Any]]) -> dict[str, torch.Tensor]:
        if not features:
            raise ValueError("LaserDataCollator got an empty batch.")
        queries, instructions, rationales, passages = [], [], [], []
        for index, row in enumerate(features):
            query = row.get("query")
            if not isinstance(query, str) or not query.strip():
                raise ValueError(f"A LaSER training row has no query (batch row {index}): {dict(row)!r:.200}.")
            queries.append(query)
            instructions.append(row.get("instruction"))
            reasoning = row.get("reasoning")
            rationales.append(reasoning if isinstance(reasoning, str) else None)
            passages.extend(select_passages(row, self.train_group_size, self.seed, self.epoch, index=index))

        query_batch = build_latent_inputs(
            self.tokenizer,
            queries,
            is_query=True,
            instruction=instructions,
            max_length=self.query_max_length,
            config=self.config,
            pad_to_multiple_of=self.pad_to_multiple_of,
        )
        passage_batch = build_latent_inputs(
            self.tokenizer,
            passages,
            is_query=False,
            max_length=self.passage_max_length,
            config=self.config,
            pad_to_multiple_of=self.pad_to_multiple_of,
        )
        batch = {
            "query_input_ids": query_batch["input_ids"],
            "query_attention_mask": query_batch["attention_mask"],
            "passage_input_ids": passage_batch["input_ids"],
            "passage_attention_mask": passage_batch["attention_mask"],
        }
        if self.include_explicit:
            explicit = build_explicit_inputs(
                self.tokenizer,
                queries,
                rationales,
                instruction=instructions,
                max_length=self.explicit_max_length,
                config=self.config,
                min_rationale_chars=self.min_rationale_chars,
                pad_to_multiple_of=self.pad_to_multiple_of,
            )
            # A row whose [query; CoT] reached the limit had its rationale cut (or fits exactly): warn once.
            lengths = explicit["attention_mask"].sum(dim=1)
            if not self._warned_truncation and bool((lengths >= self.explicit_max_length + 1).any()):
                self._warned_truncation = True
                logger.warning(
                    f"Some explicit-view inputs reach explicit_max_length={self.explicit_max_length} tokens: their "
                    "rationale is cut on the right (the last segment ends at the cut; specs/laser.md §3.2). "
                    "This warning is shown once."
                )
            batch.update(
                {
                    "explicit_input_ids": explicit["input_ids"],
                    "explicit_attention_mask": explicit["attention_mask"],
                    "explicit_cot_start": explicit["cot_start"],
                    "explicit_cot_end": explicit["cot_end"],
                }
            )
        return batch


__all__ = ["LaserDataCollator", "row_key", "select_passages"]
