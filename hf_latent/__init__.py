"""hf_latent: latent reasoning for retrieval and RAG, the Hugging Face way (LaSER and LatentRAG).

Importing the package registers both model types with `AutoConfig` / `AutoModel`, so `AutoModel.from_pretrained`
loads LaSER and LatentRAG checkpoints.
"""

from __future__ import annotations

from .laser import LaserConfig, LaserModel
from .latentrag import (
    ExplicitAgenticRAG,
    LatentRAGConfig,
    LatentRAGModel,
    LatentRAGPipeline,
    LatentRAGResult,
    LatentRAGTrace,
    NaiveRAG,
)
from .resources import DefaultModelNotFoundError, cache_dir, default_backbone, default_retriever
from .retrieval import CallableEncoder, DenseIndex, HFEncoder, LastTokenLMEncoder


__version__ = "0.1.0.dev0"

__all__ = [
    "CallableEncoder",
    "DefaultModelNotFoundError",
    "DenseIndex",
    "ExplicitAgenticRAG",
    "HFEncoder",
    "LaserConfig",
    "LaserModel",
    "LastTokenLMEncoder",
    "LatentRAGConfig",
    "LatentRAGModel",
    "LatentRAGPipeline",
    "LatentRAGResult",
    "LatentRAGTrace",
    "NaiveRAG",
    "__version__",
    "cache_dir",
    "default_backbone",
    "default_retriever",
]
