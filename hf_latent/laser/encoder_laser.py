"""A [`LaserModel`] as a retrieval [`~hf_latent.retrieval.TextEncoder`]: for `DenseIndex`, `evaluate_retrieval`."""

from __future__ import annotations

import numpy as np
import torch
from transformers import PreTrainedTokenizerBase

from ..retrieval.encoders import TextEncoder
from .modeling_laser import LaserModel


class LaserEncoder(TextEncoder):
    """Encode texts with `LaserModel.encode` in the batches a `TextEncoder` hands out (length-sorted, streamed).

    Args:
        model ([`LaserModel`]): the retriever.
        tokenizer: its tokenizer.
        name (`str`): the embedding-space name an index checks (e.g. `"laser:<checkpoint>:K3"`).
        instruction (`str`, *optional*): query instruction; `None` uses `config.default_instruction`. Settable, so
            one encoder serves several tasks over the same index.
        num_latent_steps (`int`, *optional*): K for this encoder (default: the config's).
        query_max_length / passage_max_length (`int`, *optional*): tokens per query / document, template included
            (default: the config's).
    """

    def __init__(
        self,
        model: LaserModel,
        tokenizer: PreTrainedTokenizerBase,
        name: str,
        instruction: str | None = None,
        num_latent_steps: int | None = None,
        query_max_length: int | None = None,
        passage_max_length: int | None = None,
    ):
        self.model, self.tokenizer, self.name = model, tokenizer, name
        self.embedding_dim = model.config.backbone_config.hidden_size
        self.instruction, self.num_latent_steps = instruction, num_latent_steps
        self.query_max_length, self.passage_max_length = query_max_length, passage_max_length

    def encode_batch(self, texts: list[str], is_query: bool = False) -> np.ndarray:
        with torch.inference_mode():
            return self.model.encode(
                texts,
                self.tokenizer,
                is_query=is_query,
                instruction=self.instruction if is_query else None,
                batch_size=len(texts),
                max_length=self.query_max_length if is_query else self.passage_max_length,
                num_latent_steps=self.num_latent_steps,
            )
