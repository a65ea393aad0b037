"""Generation loss `L_gen`: next-token CE on the actions and the answer (specs/latentrag.md §7.1)."""

from __future__ import annotations

from typing import Any

from torch import Tensor

from ._utils import LatentRAGLossBase, token_cross_entropy


class GenerationLoss(LatentRAGLossBase):
    r"""Token-mean next-token cross-entropy over the target tokens of converted LatentRAG trajectories.

    `L_gen = (1/N) Σ_{(b,t) ∈ targets} −log softmax(logits[b, t−1])[labels[b, t]]`, N = number of targets. Labels
    follow the **Hugging Face convention**: they are aligned with `input_ids` (not pre-shifted) and the shift
    happens here, so `logits[:, t]` predicts `labels[:, t + 1]`.

    This module is only the CE. The label mask itself (spec §7.1: the token after every `<think_m>`, i.e. `<query_1>`
    on retrieval steps and `<answer>` on the final step, plus the answer tokens and `</answer>`; −100 elsewhere)
    is built by [`hf_latent.latentrag.trajectories.tokenize_latent_trajectory`].

    Args:
        ignore_index (`int`, *optional*, defaults to `-100`):
            Label value of non-target positions.

    References:
        - LatentRAG, §3 training objective ("generation loss") and Eq. 11, arXiv 2605.06285;
          specs/latentrag.md §7.1 (mask [D]) and §7.4.

    Requirements:
        1. One causal forward pass over each converted trajectory (spec §8.1); the logits of that pass.
        2. Labels from the trajectory conversion, aligned with `input_ids`.

    Inputs:
        | name | shape | meaning |
        |---|---|---|
        | `logits` | `(batch, seq_len, vocab_size)` | LM-head logits of the teacher-forced pass |
        | `labels` | `(batch, seq_len)` | target token ids aligned with `input_ids`, −100 elsewhere |
        | `num_items_in_batch` | scalar, *optional* | global target count (gradient accumulation); default: local count |

    Relations:
        - Same CE as [`LatentDecodingLoss`] (shared `token_cross_entropy`), on the trajectory instead of the decode
          prompts.
        - In [`LatentRAGLoss`] it is always on and unweighted (Eq. 11); no ablation of spec §9 removes it.

    Example:

        ```python
        >>> import torch
        >>> from hf_latent.latentrag.losses import GenerationLoss
        >>> logits = torch.randn(2, 5, 11)
        >>> labels = torch.tensor([[-100, -100, 3, 4, -100], [-100, 7, -100, -100, 2]])
        >>> loss = GenerationLoss()(logits=logits, labels=labels)
        ```
    """

    def __init__(self, ignore_index: int = -100) -> None:
        super().__init__()
        self.ignore_index = int(ignore_index)

    def forward(self, logits: Tensor, labels: Tensor, num_items_in_batch: int | Tensor | None = None) -> Tensor:
        """Return the scalar float32 loss for `logits` `(batch, seq_len, vocab_size)` and `labels` `(batch, seq_len)`."""
        return token_cross_entropy(
            logits, labels, self.ignore_index, num_items_in_batch=num_items_in_batch, loss_name=type(self).__name__
        )

    def get_config_dict(self) -> dict[str, Any]:
        return {"ignore_index": self.ignore_index}
