"""hf_latent: latent reasoning for retrieval and RAG, the Hugging Face way (LaSER and LatentRAG)."""

from __future__ import annotations

from .resources import DefaultModelNotFoundError, cache_dir, default_backbone, default_retriever


__version__ = "0.1.0.dev0"

__all__ = [
    "DefaultModelNotFoundError",
    "__version__",
    "cache_dir",
    "default_backbone",
    "default_retriever",
]
