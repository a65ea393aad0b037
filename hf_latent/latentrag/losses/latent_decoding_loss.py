"""Latent-decoding loss `L_dec`: regenerate the teacher's thought and sub-query text from the latents (§7.3)."""

from __future__ import annotations

from typing import Any

from torch import Tensor

from ._utils import LatentRAGLossBase, token_cross_entropy


THOUGHT = "thought"
SUBQUERY = "subquery"


class LatentDecodingLoss(LatentRAGLossBase):
    r"""`L_dec = L_dec^thought + L_dec^subquery`, each a token-mean CE over its own decode batch.

    The model inserts `Proj_τ(H^τ_t)` (4 vectors) or `Proj_s(H^s_t)` (16 vectors) into a short decode prompt ("Decode
    the thought/subquery based on the latent representation: " + vectors + "\n" + target) and the same LLM
    regenerates the teacher's text. Each half is averaged over **its own** target tokens (text + EOS) and the two
    are summed (spec §7.3), so a batch with many short sub-queries and few long thoughts weighs both kinds equally.
    Labels follow the Hugging Face convention (aligned with `input_ids`, shifted here), as in [`GenerationLoss`].

    Args:
        ignore_index (`int`, *optional*, defaults to `-100`):
            Label value of non-target positions (prompt and latent slots).

    References:
        - LatentRAG, Eqs. 9–10 (decoding) and Eq. 11 (total), arXiv 2605.06285; specs/latentrag.md §7.3.

    Requirements:
        1. One thought example per step (final step included) and one sub-query example per retrieval step [D],
           batched separately; the decode prompts condition only on the projected latents (never on the question).
        2. Labels −100 on the prompt and latent positions, token ids on the target text and EOS.

    Inputs:
        | name | shape | meaning |
        |---|---|---|
        | `thought_logits` | `(num_thoughts, seq_len, vocab_size)`, *optional* | logits of the thought decode batch |
        | `thought_labels` | `(num_thoughts, seq_len)`, *optional* | thought text ids (aligned), −100 elsewhere |
        | `subquery_logits` | `(num_subqueries, seq_len', vocab_size)`, *optional* | logits of the sub-query decode batch |
        | `subquery_labels` | `(num_subqueries, seq_len')`, *optional* | sub-query text ids (aligned), −100 elsewhere |

        Either pair may be `None` (that half is skipped); at least one pair is required.

    Relations:
        - Same CE as [`GenerationLoss`] (shared `token_cross_entropy`).
        - In [`LatentRAGLoss`] its weight is `decoding_weight` (1, Eq. 11); the "no_decoding" variant (spec §9, "w/o
          decoding") sets it to 0, and the model then needs neither `Proj_τ` nor `Proj_s`.

    Example:

        ```python
        >>> import torch
        >>> from hf_latent.latentrag.losses import LatentDecodingLoss
        >>> logits, labels = torch.randn(3, 6, 11), torch.tensor([[-100] * 4 + [5, 6]] * 3)
        >>> loss_fn = LatentDecodingLoss()
        >>> loss = loss_fn(thought_logits=logits, thought_labels=labels, subquery_logits=logits, subquery_labels=labels)
        >>> sorted(loss_fn.components(thought_logits=logits, thought_labels=labels))
        ['thought']
        ```
    """

    def __init__(self, ignore_index: int = -100) -> None:
        super().__init__()
        self.ignore_index = int(ignore_index)

    def components(
        self,
        thought_logits: Tensor | None = None,
        thought_labels: Tensor | None = None,
        subquery_logits: Tensor | None = None,
        subquery_labels: Tensor | None = None,
    ) -> dict[str, Tensor]:
        """The two halves as `{"thought": L_dec^thought, "subquery": L_dec^subquery}`; a skipped half is absent."""
        name = type(self).__name__
        halves = {}
        for key, logits, labels in (
            (THOUGHT, thought_logits, thought_labels),
            (SUBQUERY, subquery_logits, subquery_labels),
        ):
            if logits is None and labels is None:
                continue
            if logits is None or labels is None:
                missing = f"{key}_logits" if logits is None else f"{key}_labels"
                raise ValueError(f"{name}: {missing} is None but its partner is given; pass both or neither.")
            halves[key] = token_cross_entropy(
                logits,
                labels,
                self.ignore_index,
                loss_name=name,
                logits_name=f"{key}_logits",
                labels_name=f"{key}_labels",
            )
        if not halves:
            raise ValueError(f"{name}: pass thought_logits/thought_labels, subquery_logits/subquery_labels, or both.")
        return halves

    def forward(
        self,
        thought_logits: Tensor | None = None,
        thought_labels: Tensor | None = None,
        subquery_logits: Tensor | None = None,
        subquery_labels: Tensor | None = None,
    ) -> Tensor:
        """Return the scalar `L_dec^thought + L_dec^subquery` over the halves that are given."""
        halves = self.components(thought_logits, thought_labels, subquery_logits, subquery_labels)
        values = list(halves.values())
        return values[0] if len(values) == 1 else values[0] + values[1]

    def get_config_dict(self) -> dict[str, Any]:
        return {"ignore_index": self.ignore_index}
