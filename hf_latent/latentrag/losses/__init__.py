"""LatentRAG loss terms as small `nn.Module`s on tensors (specs/latentrag.md §7 and §9; arXiv 2605.06285).

| module | term | paper |
|---|---|---|
| [`GenerationLoss`] | `L_gen`, next-token CE on actions and answer | §3, Eq. 11 |
| [`RetrievalAlignmentLoss`] | `L_ret`, KL(p ‖ q) over the in-batch candidates D_B (or cosine / InfoNCE) | Eqs. 7–8 |
| [`LatentDecodingLoss`] | `L_dec`, thought + sub-query regeneration CE | Eqs. 9–10 |
| [`LatentRAGLoss`] | the weighted total and its components | Eq. 11 |

[`LATENTRAG_LOSS_VARIANTS`] maps the ablations of paper Table 3 to [`LatentRAGLossVariant`] settings;
[`build_candidate_pool`] builds D_B from pseudo-relevant ids; [`calibrate_retrieval_temperature`] picks β.
"""

from __future__ import annotations

from ._utils import LATENTRAG_ARXIV_ID, LATENTRAG_CITATION
from .generation_loss import GenerationLoss
from .latent_decoding_loss import LatentDecodingLoss
from .latentrag_loss import LATENTRAG_LOSS_VARIANTS, LatentRAGLoss, LatentRAGLossOutput, LatentRAGLossVariant
from .retrieval_alignment_loss import RETRIEVAL_ALIGNMENT_MODES, RetrievalAlignmentLoss, build_candidate_pool
from .temperature import DEFAULT_RETRIEVAL_TEMPERATURE, calibrate_retrieval_temperature, top_k_mass


__all__ = [
    "DEFAULT_RETRIEVAL_TEMPERATURE",
    "LATENTRAG_ARXIV_ID",
    "LATENTRAG_CITATION",
    "LATENTRAG_LOSS_VARIANTS",
    "RETRIEVAL_ALIGNMENT_MODES",
    "GenerationLoss",
    "LatentDecodingLoss",
    "LatentRAGLoss",
    "LatentRAGLossOutput",
    "LatentRAGLossVariant",
    "RetrievalAlignmentLoss",
    "build_candidate_pool",
    "calibrate_retrieval_temperature",
    "top_k_mass",
]
