"""Dense retrieval toolkit shared by LaSER and LatentRAG: text encoders, pooling and a faiss index."""

from __future__ import annotations

from .encoders import (
    CallableEncoder,
    FormatFn,
    HFEncoder,
    LastTokenLMEncoder,
    TextEncoder,
    canonical_model_id,
    encode_dataset,
)
from .index import DenseIndex, DenseIndexConfig
from .pooling import cls_pool, last_token_pool, mean_pool, pool


__all__ = [
    "CallableEncoder",
    "DenseIndex",
    "DenseIndexConfig",
    "FormatFn",
    "HFEncoder",
    "LastTokenLMEncoder",
    "TextEncoder",
    "canonical_model_id",
    "cls_pool",
    "encode_dataset",
    "last_token_pool",
    "mean_pool",
    "pool",
]
