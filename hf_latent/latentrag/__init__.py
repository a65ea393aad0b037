"""LatentRAG (Zheng and Worring, arXiv 2605.06285): agentic RAG with latent thoughts and sub-queries.

Importing this registers the model: `AutoConfig` / `AutoModel` learn the `"latentrag"` model type, and
`save_pretrained` writes an `auto_map` and copies `configuration_latentrag.py`, `modeling_latentrag.py` and
`projector.py`, so the saved folder loads with `trust_remote_code=True` without `hf_latent` (the agentic loop and the
baselines, which need faiss, stay in `inference.py` / `baselines.py`).
"""

from __future__ import annotations

from transformers import AutoConfig, AutoModel

from .baselines import ExplicitAgenticRAG, NaiveRAG
from .collator_latentrag import LatentRAGDataCollator, LengthBinnedSampler, reference_search_fn
from .configuration_latentrag import (
    DEFAULT_INSTRUCTION,
    DEFAULT_SUBQUERY_DECODING_PROMPT,
    DEFAULT_THOUGHT_DECODING_PROMPT,
    LatentRAGConfig,
)
from .evaluation_latentrag import evaluate_system, latency_ratio, results_table, write_results
from .explicit_sft import build_explicit_sft_dataset, train_explicit_baseline
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
from .trainer_latentrag import LatentRAGTrainer, prepare_latentrag_for_training
from .training_args_latentrag import LatentRAGTrainingArguments
from .trajectories import Trajectory, TrajectoryStep, trajectories_from_multihop


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
    "LatentRAGDataCollator",
    "LatentRAGModel",
    "LatentRAGOutput",
    "LatentRAGPipeline",
    "LatentRAGPreTrainedModel",
    "LatentRAGResult",
    "LatentRAGTrace",
    "LatentRAGTrainer",
    "LatentRAGTrainingArguments",
    "LengthBinnedSampler",
    "LoRALinear",
    "NaiveRAG",
    "Trajectory",
    "TrajectoryStep",
    "add_latentrag_tokens",
    "answer_questions",
    "build_explicit_sft_dataset",
    "build_index",
    "check_index",
    "encode_information",
    "encode_prompt",
    "encode_trajectory",
    "evaluate_system",
    "format_documents",
    "format_question_prompt",
    "latency_ratio",
    "locate_placeholder_blocks",
    "prepare_latentrag_for_training",
    "reference_search_fn",
    "results_table",
    "retriever_preset",
    "retriever_query_template_ids",
    "run_latentrag",
    "train_explicit_baseline",
    "trajectories_from_multihop",
    "write_results",
]
