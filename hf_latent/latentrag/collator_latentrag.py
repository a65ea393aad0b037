"""Batches LatentRAG trajectories into the tensors and texts of one training step (specs/latentrag.md §7, §8).

Also holds the length-binned sampler of §8 ([`LengthBinnedSampler`]) and a helper that attaches pseudo-relevant
document ids with the frozen reference retriever ([`reference_search_fn`]).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch.utils.data import Sampler
from transformers import PreTrainedTokenizerBase

from .losses import build_candidate_pool
from .trajectories import Trajectory, tokenize_latent_trajectory


if TYPE_CHECKING:
    from ..retrieval import DenseIndex
    from .modeling_latentrag import LatentRAGModel


logger = logging.getLogger(__name__)


def as_trajectory(row: Trajectory | Mapping[str, Any]) -> Trajectory:
    """A [`Trajectory`] from itself, from `Trajectory.to_dict()` or from a row of `trajectories_to_dataset`."""
    if isinstance(row, Trajectory):
        return row
    if isinstance(row, Mapping):
        return Trajectory.from_dict(row)
    raise TypeError(f"Expected a Trajectory or a trajectory dict, got {type(row).__name__}.")


@dataclass
class LatentRAGDataCollator:
    r"""
    Turns trajectories into one LatentRAG training batch (specs §7.1–§7.3, §8.1).

    Each trajectory is tokenised by `hf_latent.latentrag.trajectories.tokenize_latent_trajectory` (the same ids as
    the inference loop builds, spec §13.1) and right-padded. The teacher texts are flattened over the batch in the
    order in which [`~hf_latent.latentrag.LatentRAGModel.forward`] returns the latent states (sequence, then
    position), so row i of `subquery_states` belongs to `sub_queries[i]`.

    The candidate pool D_B (§7.2) is the union of every sub-query's pseudo-relevant ids
    ([`~hf_latent.latentrag.losses.build_candidate_pool`]); its document vectors are read from the frozen index
    (`index.get_embeddings`) as a constant tensor, never re-encoded and never trained.

    Args:
        tokenizer (`PreTrainedTokenizerBase`): the generator tokenizer, with LatentRAG's tokens.
        config (`LatentRAGConfig` or mapping): token strings, instruction, chat-template flag, document template.
        index (`DenseIndex`, *optional*): the frozen document index; without it no `document_embeddings` are returned
            (enough for the "cosine" ablation, which needs none).
        num_pseudo_relevant (`int`, *optional*, defaults to 10): pseudo-relevant ids per sub-query that enter D_B.
        pad_to_multiple_of (`int`, *optional*): pad the sequence length to a multiple of this.

    Returns (from `__call__`), a `dict` with:

    | key | type / shape | meaning |
    |---|---|---|
    | `input_ids`, `attention_mask`, `labels` | `(batch, seq_len)` | right-padded; labels follow §7.1 (−100 elsewhere) |
    | `thought_positions` | `(num_steps, m)` | placeholder positions of every thought block (answer step included) |
    | `thought_batch_index` | `(num_steps,)` | sequence of each thought block |
    | `subquery_positions` | `(num_retrievals, n)` | placeholder positions of every sub-query block |
    | `subquery_batch_index` | `(num_retrievals,)` | sequence of each sub-query block |
    | `action_labels` | `(num_steps,)` | 0 = ⟨query⟩, 1 = ⟨answer⟩ (the teacher's action at each think_m) |
    | `thoughts` | `list[str]` (num_steps) | teacher thoughts, L_dec targets (§7.3) |
    | `sub_queries` | `list[str]` (num_retrievals) | teacher sub-queries: L_dec targets and input of v*_t (Eq. 6) |
    | `pseudo_relevant_ids` | `list[list[str]]` (num_retrievals) | each sub-query's top-k ids, cut to `num_pseudo_relevant` |
    | `candidate_doc_ids` | `list[str]` (N_d) | D_B, deduplicated in first-seen order |
    | `candidate_indices` | `list[list[int]]` | each sub-query's pseudo-relevant rows in D_B |
    | `document_embeddings` | `(N_d, dim)` float32 or `None` | frozen index vectors of D_B (no gradient) |
    | `question_ids` | `list[str]` (batch) | for logging |
    """

    tokenizer: PreTrainedTokenizerBase
    config: Any
    index: DenseIndex | None = None
    num_pseudo_relevant: int = 10
    pad_to_multiple_of: int | None = None
    _warned_missing: bool = field(default=False, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.num_pseudo_relevant < 1:
            raise ValueError(f"num_pseudo_relevant must be >= 1, got {self.num_pseudo_relevant}.")
        if self.tokenizer.pad_token_id is None:
            raise ValueError("The generator tokenizer has no pad token; set `tokenizer.pad_token` first.")

    def tokenize(self, row: Trajectory | Mapping[str, Any]) -> dict[str, Any]:
        """`tokenize_latent_trajectory` of one row with this collator's tokenizer and config."""
        return tokenize_latent_trajectory(as_trajectory(row), self.tokenizer, self.config)

    def __call__(self, features: Sequence[Trajectory | Mapping[str, Any]]) -> dict[str, Any]:
        if not features:
            raise ValueError("LatentRAGDataCollator got an empty batch.")
        trajectories = [as_trajectory(row) for row in features]
        encoded = [tokenize_latent_trajectory(t, self.tokenizer, self.config) for t in trajectories]
        length = max(len(e["input_ids"]) for e in encoded)
        if self.pad_to_multiple_of:
            length = -(-length // self.pad_to_multiple_of) * self.pad_to_multiple_of
        batch = len(encoded)
        input_ids = torch.full((batch, length), self.tokenizer.pad_token_id, dtype=torch.long)
        attention_mask = torch.zeros((batch, length), dtype=torch.long)
        labels = torch.full((batch, length), -100, dtype=torch.long)
        thought_positions, thought_batch, subquery_positions, subquery_batch = [], [], [], []
        thoughts, sub_queries, pseudo_relevant, action_labels = [], [], [], []
        for row, item in enumerate(encoded):
            size = len(item["input_ids"])
            input_ids[row, :size] = torch.tensor(item["input_ids"], dtype=torch.long)
            attention_mask[row, :size] = 1
            labels[row, :size] = torch.tensor(item["labels"], dtype=torch.long)
            thought_positions.extend(item["thought_positions"])
            thought_batch.extend([row] * len(item["thought_positions"]))
            subquery_positions.extend(item["subquery_positions"])
            subquery_batch.extend([row] * len(item["subquery_positions"]))
            thoughts.extend(item["thoughts"])
            sub_queries.extend(item["sub_queries"])
            # §7.1: ⟨query⟩ after every retrieval step's thought block, ⟨answer⟩ after the last one.
            action_labels.extend([0] * len(item["subquery_positions"]) + [1])
            for ids in item["pseudo_relevant_ids"]:
                pseudo_relevant.append(list(ids)[: self.num_pseudo_relevant])
        if any(not ids for ids in pseudo_relevant) and not self._warned_missing:
            logger.warning(
                "Some retrieval steps have no pseudo_relevant_ids; they add nothing to the candidate pool D_B. Attach "
                "them with `attach_pseudo_relevant_ids(trajectories, reference_search_fn(model, index))`."
            )
            self._warned_missing = True
        candidate_ids, candidate_indices = build_candidate_pool(pseudo_relevant)
        document_embeddings = None
        if self.index is not None and candidate_ids:
            document_embeddings = torch.from_numpy(np.ascontiguousarray(self.index.get_embeddings(candidate_ids)))
        m = len(thought_positions[0]) if thought_positions else 0
        n = len(subquery_positions[0]) if subquery_positions else 0
        return {
            "input_ids": input_ids,
            "attention_mask": attention_mask,
            "labels": labels,
            "thought_positions": torch.tensor(thought_positions, dtype=torch.long).reshape(-1, m),
            "thought_batch_index": torch.tensor(thought_batch, dtype=torch.long),
            "subquery_positions": torch.tensor(subquery_positions, dtype=torch.long).reshape(-1, n),
            "subquery_batch_index": torch.tensor(subquery_batch, dtype=torch.long),
            "action_labels": torch.tensor(action_labels, dtype=torch.long),
            "thoughts": thoughts,
            "sub_queries": sub_queries,
            "pseudo_relevant_ids": pseudo_relevant,
            "candidate_doc_ids": candidate_ids,
            "candidate_indices": candidate_indices,
            "document_embeddings": document_embeddings,
            "question_ids": [t.question_id for t in trajectories],
        }


class LengthBinnedSampler(Sampler[int]):
    r"""
    Binned batching (specs §8 [P]: "200 length bins, each batch drawn from one bin").

    Lengths are put into `num_bins` equal-width bins over `[0, max_length]` [D]. Every epoch the rows of each bin are
    shuffled and cut into batches of `batch_size`; the rows left over in a bin (fewer than a batch) are pooled in
    bin order and cut into batches too, so such a batch mixes neighbouring bins only [D]. The full batches are
    shuffled; a final partial batch (if any) comes last. The sampler yields row indices, batch after batch, so a
    `DataLoader` with the same `batch_size` sees exactly these batches.

    Args:
        lengths (`Sequence[int]`): token length of every row.
        batch_size (`int`): rows per batch (the per-device train batch size).
        num_bins (`int`, *optional*, defaults to 200): number of bins.
        max_length (`int`, *optional*): upper end of the binned range; defaults to the longest row.
        seed (`int`, *optional*, defaults to 0): shuffling seed (combined with the epoch).
    """

    def __init__(
        self,
        lengths: Sequence[int],
        batch_size: int,
        num_bins: int = 200,
        max_length: int | None = None,
        seed: int = 0,
    ) -> None:
        if batch_size < 1 or num_bins < 1:
            raise ValueError(f"batch_size and num_bins must be >= 1, got {batch_size} and {num_bins}.")
        self.lengths = [int(length) for length in lengths]
        self.batch_size = batch_size
        self.num_bins = num_bins
        self.max_length = int(max_length if max_length is not None else max(self.lengths, default=1))
        self.seed = seed
        self.epoch = 0
        self._epoch_set = False

    def bin_of(self, length: int) -> int:
        """The bin of a length: `min(num_bins − 1, length · num_bins // (max_length + 1))`."""
        return min(self.num_bins - 1, int(length) * self.num_bins // (self.max_length + 1))

    def batches(self, epoch: int | None = None) -> list[list[int]]:
        """The batches of one epoch (row indices), in the order they are yielded."""
        epoch = self.epoch if epoch is None else epoch
        generator = torch.Generator().manual_seed(self.seed * 100_003 + epoch)
        bins: dict[int, list[int]] = {}
        for row, length in enumerate(self.lengths):
            bins.setdefault(self.bin_of(length), []).append(row)
        full, leftovers = [], []
        for key in sorted(bins):
            rows = bins[key]
            rows = [rows[i] for i in torch.randperm(len(rows), generator=generator).tolist()]
            cut = len(rows) - len(rows) % self.batch_size
            full.extend(rows[start : start + self.batch_size] for start in range(0, cut, self.batch_size))
            leftovers.extend(rows[cut:])
        for start in range(0, len(leftovers), self.batch_size):
            full.append(leftovers[start : start + self.batch_size])
        partial = [batch for batch in full if len(batch) < self.batch_size]
        complete = [batch for batch in full if len(batch) == self.batch_size]
        order = torch.randperm(len(complete), generator=generator).tolist()
        return [complete[i] for i in order] + partial

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)
        self._epoch_set = True

    def __iter__(self) -> Iterator[int]:
        batches = self.batches()
        if not self._epoch_set:  # nobody calls set_epoch: move on by itself
            self.epoch += 1
        self._epoch_set = False
        for batch in batches:
            yield from batch

    def __len__(self) -> int:
        return len(self.lengths)


def reference_search_fn(
    model: LatentRAGModel, index: DenseIndex, k: int = 10, batch_size: int = 64
) -> Callable[[list[str]], list[list[str]]]:
    """A `search_fn` for `attach_pseudo_relevant_ids`: top-k ids under the **frozen reference retriever** (§7.2).

    The text sub-queries go through the retriever's query template with the adapter disabled
    (`model.encode_text_queries(texts, reference=True)`) and are searched in `index` (built with the same reference
    retriever, `model.build_index`).

    Example:

    ```python
    >>> trajectories = attach_pseudo_relevant_ids(trajectories, reference_search_fn(model, index), k=10)
    ```
    """
    from .inference import check_index

    check_index(model, index)

    def search(texts: list[str]) -> list[list[str]]:
        with torch.no_grad():
            vectors = model.encode_text_queries(texts, reference=True, batch_size=batch_size)
        _, ids = index.search(np.ascontiguousarray(vectors.float().cpu().numpy()), k=min(k, len(index)))
        return [list(row) for row in ids]

    return search


__all__ = ["LatentRAGDataCollator", "LengthBinnedSampler", "as_trajectory", "reference_search_fn"]
