"""LatentRAG (Zheng and Worring, arXiv 2605.06285): agentic RAG with latent thoughts and sub-queries.

Importing this registers the model: `AutoConfig` / `AutoModel` learn the `"latentrag"` model type, and
`save_pretrained` writes an `auto_map` and copies `configuration_latentrag.py`, `modeling_latentrag.py` and
`projector.py`, so the saved folder loads with `trust_remote_code=True` without `hf_latent` (the agentic loop and the
baselines, which need faiss, stay in `inference.py` / `baselines.py`).
"""

from __future__ import annotations

from transformers import AutoConfig, AutoModel

from .baselines import ExplicitAgenticRAG, NaiveRAG
from .configuration_latentrag import (
    DEFAULT_INSTRUCTION,
    DEFAULT_SUBQUERY_DECODING_PROMPT,
    DEFAULT_THOUGHT_DECODING_PROMPT,
    LatentRAGConfig,
)
from .inference import (
    LatentRAGPipeline,
    LatentRAGResult,
    LatentRAGTrace,
    answer_questions,
    build_index,
    check_index,
    run_latentrag,
)
from .modeling_latentrag import (
    LatentDecodingOutput,
    LatentRAGModel,
    LatentRAGOutput,
    LatentRAGPreTrainedModel,
    LoRALinear,
    add_latentrag_tokens,
    locate_placeholder_blocks,
    retriever_preset,
    retriever_query_template_ids,
)
from .projector import LatentProjector
from .prompts import (
    encode_information,
    encode_prompt,
    encode_trajectory,
    format_documents,
    format_question_prompt,
)


AutoConfig.register("latentrag", LatentRAGConfig, exist_ok=True)
AutoModel.register(LatentRAGConfig, LatentRAGModel, exist_ok=True)
LatentRAGConfig.register_for_auto_class()
LatentRAGModel.register_for_auto_class("AutoModel")

__all__ = [
    "DEFAULT_INSTRUCTION",
    "DEFAULT_SUBQUERY_DECODING_PROMPT",
    "DEFAULT_THOUGHT_DECODING_PROMPT",
    "ExplicitAgenticRAG",
    "LatentDecodingOutput",
    "LatentProjector",
    "LatentRAGConfig",
    "LatentRAGModel",
    "LatentRAGOutput",
    "LatentRAGPipeline",
    "LatentRAGPreTrainedModel",
    "LatentRAGResult",
    "LatentRAGTrace",
    "LoRALinear",
    "NaiveRAG",
    "add_latentrag_tokens",
    "answer_questions",
    "build_index",
    "check_index",
    "encode_information",
    "encode_prompt",
    "encode_trajectory",
    "format_documents",
    "format_question_prompt",
    "locate_placeholder_blocks",
    "retriever_preset",
    "retriever_query_template_ids",
    "run_latentrag",
]
