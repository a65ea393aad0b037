"""The LatentRAG objective `L = L_gen + λ_ret·L_ret + λ_dec·L_dec` and the ablation variants (specs §7.4, §9)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, NamedTuple

from torch import Tensor

from ._utils import LatentRAGLossBase, check_temperature, check_weight
from .generation_loss import GenerationLoss
from .latent_decoding_loss import LatentDecodingLoss
from .retrieval_alignment_loss import RETRIEVAL_ALIGNMENT_MODES, RetrievalAlignmentLoss


# Keys of `LatentRAGLossOutput.components`, in the order of Eq. 11.
GENERATION = "generation"
RETRIEVAL_ALIGNMENT = "retrieval_alignment"
LATENT_DECODING = "latent_decoding"


@dataclass(frozen=True)
class LatentRAGLossVariant:
    """Loss and model settings of one LatentRAG ablation (paper Table 3; specs/latentrag.md §9).

    Args:
        name (`str`):
            Key in [`LATENTRAG_LOSS_VARIANTS`].
        retrieval_mode (`str`, *optional*, defaults to `"kl"`):
            `mode` of [`RetrievalAlignmentLoss`]: `"kl"`, `"cosine"` or `"infonce"`.
        retrieval_weight (`float`, *optional*, defaults to `1.0`):
            λ_ret.
        decoding_weight (`float`, *optional*, defaults to `1.0`):
            λ_dec (1 in Eq. 11; 0 for "w/o decoding").
        use_pretrained_retriever (`bool`, *optional*, defaults to `True`):
            A **model** setting, not a loss setting: `False` means no f_ret, `Proj_ret` maps straight to the
            document-embedding width and the 16 projected vectors are mean-pooled and L2-normalised (spec §9). Copy
            it into the model config (`use_pretrained_retriever=False`); the loss is unchanged.
        description (`str`, *optional*, defaults to `""`):
            One line on what the variant means.
    """

    name: str
    retrieval_mode: str = "kl"
    retrieval_weight: float = 1.0
    decoding_weight: float = 1.0
    use_pretrained_retriever: bool = True
    description: str = ""

    @property
    def enabled_terms(self) -> tuple[str, ...]:
        """Component keys this variant computes (given all inputs), in the order of Eq. 11."""
        terms = [GENERATION]
        if self.retrieval_weight > 0:
            terms.append(RETRIEVAL_ALIGNMENT)
        if self.decoding_weight > 0:
            terms.append(LATENT_DECODING)
        return tuple(terms)

    @property
    def needs_decoding(self) -> bool:
        """Whether the trainer must run the decode pass (and the model needs `Proj_τ`/`Proj_s`)."""
        return self.decoding_weight > 0

    def loss_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of [`LatentRAGLoss`] that this variant fixes."""
        return {
            "retrieval_mode": self.retrieval_mode,
            "retrieval_weight": self.retrieval_weight,
            "decoding_weight": self.decoding_weight,
        }

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# Paper Table 3 as configuration (spec §9: names [P], exact forms [D]).
LATENTRAG_LOSS_VARIANTS: dict[str, LatentRAGLossVariant] = {
    variant.name: variant
    for variant in (
        LatentRAGLossVariant("kl", description="Full LatentRAG: L_gen + L_ret (KL, Eq. 8) + L_dec (Eq. 11)."),
        LatentRAGLossVariant("cosine", retrieval_mode="cosine", description="L_ret := mean_t (1 − cos(v^s_t, v*_t))."),
        LatentRAGLossVariant(
            "infonce",
            retrieval_mode="infonce",
            description="L_ret := multi-positive InfoNCE over D_B, positives = teacher top-3, temperature β.",
        ),
        LatentRAGLossVariant(
            "no_pretrained_retriever",
            use_pretrained_retriever=False,
            description=(
                "w/o pretrained retriever: same loss as 'kl'; the model sets use_pretrained_retriever=False "
                "(Proj_ret → document width, mean-pool, normalise; no f_ret)."
            ),
        ),
        LatentRAGLossVariant(
            "no_decoding", decoding_weight=0.0, description="w/o decoding: L_dec dropped (no Proj_τ/Proj_s)."
        ),
    )
}


class LatentRAGLossOutput(NamedTuple):
    """What [`LatentRAGLoss`] returns; unpacks as `loss, components = latentrag_loss(...)`.

    Args:
        loss (`Tensor`):
            Scalar total over the computed terms, with gradient.
        components (`dict[str, Tensor]`):
            The **unweighted**, detached value of each computed term under `"generation"`, `"retrieval_alignment"`
            and `"latent_decoding"`. Skipped terms are absent.
    """

    loss: Tensor
    components: dict[str, Tensor]


class LatentRAGLoss(LatentRAGLossBase):
    r"""The LatentRAG training objective `L = L_gen + λ_ret·L_ret + λ_dec·L_dec` (Eq. 11), with its components.

    Runs [`GenerationLoss`], [`RetrievalAlignmentLoss`] and [`LatentDecodingLoss`] and returns the weighted total
    plus a dict of detached, unweighted per-term values for logging.

    **Skipped terms.** `L_gen` is always computed. `L_ret` is skipped when `retrieval_weight == 0`, or when
    `latent_query_embeddings` is `None` or has 0 rows (a batch without retrieval steps). `L_dec` is skipped when
    `decoding_weight == 0` or when all four decode inputs are `None` (the "w/o decoding" ablation). A skipped term is
    not computed and is absent from `components`.

    Args:
        retrieval_weight (`float`, *optional*, defaults to `1.0`):
            λ_ret (1 in the paper).
        decoding_weight (`float`, *optional*, defaults to `1.0`):
            λ_dec; the paper leaves L_dec unweighted (1). 0 gives "w/o decoding".
        retrieval_temperature (`float`, *optional*, defaults to `0.03`):
            β of [`RetrievalAlignmentLoss`]; calibrate with [`calibrate_retrieval_temperature`].
        retrieval_mode (`str`, *optional*, defaults to `"kl"`):
            `"kl"`, `"cosine"` or `"infonce"` (spec §9).
        num_positives (`int`, *optional*, defaults to `3`):
            InfoNCE positives per sub-query (teacher top-k in D_B).
        ignore_index (`int`, *optional*, defaults to `-100`):
            Label value of non-target positions for both CE terms.

    References:
        - LatentRAG, Eq. 11 (total), Eqs. 7–10 (terms) and Table 3 (ablations), arXiv 2605.06285;
          specs/latentrag.md §7 and §9.

    Requirements:
        1. The teacher-forced trajectory pass (logits, labels), the latent and reference sub-query vectors with the
           D_B document embeddings, and the two decode batches (spec §8.1).
        2. Labels aligned with `input_ids` (shifted inside), −100 on non-targets.

    Inputs:
        | name | shape | meaning | used by |
        |---|---|---|---|
        | `logits` | `(batch, seq_len, vocab_size)` | trajectory-pass logits | generation |
        | `labels` | `(batch, seq_len)` | §7.1 targets, −100 elsewhere | generation |
        | `latent_query_embeddings` | `(num_subqueries, dim)` | v^s_t (student) | retrieval_alignment |
        | `reference_query_embeddings` | `(num_subqueries, dim)` | v*_t (frozen reference) | retrieval_alignment |
        | `document_embeddings` | `(num_candidates, dim)` | frozen index vectors of D_B | retrieval_alignment |
        | `thought_logits` / `thought_labels` | `(num_thoughts, seq_len', vocab_size)` / `(num_thoughts, seq_len')` | thought decode batch | latent_decoding |
        | `subquery_logits` / `subquery_labels` | `(num_subqueries, seq_len'', vocab_size)` / `(num_subqueries, seq_len'')` | sub-query decode batch | latent_decoding |
        | `num_items_in_batch` | scalar, *optional* | global target count for `L_gen` | generation |

    Relations:
        - Variants of spec §9 live in [`LATENTRAG_LOSS_VARIANTS`] and are built with [`LatentRAGLoss.for_variant`]:
          "kl" (full), "cosine", "infonce", "no_pretrained_retriever" (loss as "kl"; the model switch is
          `use_pretrained_retriever=False` in the model config) and "no_decoding" (λ_dec = 0).

    Example:

        ```python
        >>> import torch
        >>> from hf_latent.latentrag.losses import LatentRAGLoss
        >>> logits, labels = torch.randn(2, 6, 11), torch.tensor([[-100, -100, 1, 2, -100, -100]] * 2)
        >>> v_s, v_star, docs = torch.randn(3, 8), torch.randn(3, 8), torch.randn(12, 8)
        >>> loss, components = LatentRAGLoss()(
        ...     logits=logits, labels=labels, latent_query_embeddings=v_s, reference_query_embeddings=v_star,
        ...     document_embeddings=docs, thought_logits=logits, thought_labels=labels,
        ... )
        >>> sorted(components)
        ['generation', 'latent_decoding', 'retrieval_alignment']
        ```
    """

    def __init__(
        self,
        retrieval_weight: float = 1.0,
        decoding_weight: float = 1.0,
        retrieval_temperature: float = 0.03,
        retrieval_mode: str = "kl",
        num_positives: int = 3,
        ignore_index: int = -100,
    ) -> None:
        super().__init__()
        if retrieval_mode not in RETRIEVAL_ALIGNMENT_MODES:
            raise ValueError(
                f"LatentRAGLoss: unknown retrieval_mode {retrieval_mode!r}; choose one of {RETRIEVAL_ALIGNMENT_MODES}."
            )
        self.retrieval_weight = check_weight("retrieval_weight", retrieval_weight)
        self.decoding_weight = check_weight("decoding_weight", decoding_weight)
        check_temperature("retrieval_temperature", retrieval_temperature)
        self.variant: str | None = None
        self.generation_loss = GenerationLoss(ignore_index=ignore_index)
        self.retrieval_alignment_loss = RetrievalAlignmentLoss(
            temperature=retrieval_temperature, mode=retrieval_mode, num_positives=num_positives
        )
        self.latent_decoding_loss = LatentDecodingLoss(ignore_index=ignore_index)

    @classmethod
    def for_variant(cls, name: str, **kwargs: Any) -> LatentRAGLoss:
        """Build the loss of a variant in [`LATENTRAG_LOSS_VARIANTS`]; `kwargs` go to the constructor.

        The variant's `use_pretrained_retriever` is a model setting and is not applied here: read it from
        `LATENTRAG_LOSS_VARIANTS[name]`.
        """
        if name not in LATENTRAG_LOSS_VARIANTS:
            raise ValueError(f"Unknown LatentRAG variant {name!r}; expected one of {sorted(LATENTRAG_LOSS_VARIANTS)}.")
        loss = cls(**{**LATENTRAG_LOSS_VARIANTS[name].loss_kwargs(), **kwargs})
        loss.variant = name
        return loss

    def forward(
        self,
        logits: Tensor,
        labels: Tensor,
        latent_query_embeddings: Tensor | None = None,
        reference_query_embeddings: Tensor | None = None,
        document_embeddings: Tensor | None = None,
        thought_logits: Tensor | None = None,
        thought_labels: Tensor | None = None,
        subquery_logits: Tensor | None = None,
        subquery_labels: Tensor | None = None,
        num_items_in_batch: int | Tensor | None = None,
    ) -> LatentRAGLossOutput:
        """Return `LatentRAGLossOutput(loss, components)`; shapes as in the Inputs table of the class docstring."""
        generation = self.generation_loss(logits, labels, num_items_in_batch=num_items_in_batch)
        components = {GENERATION: generation.detach()}
        total = generation

        has_latent, has_reference = latent_query_embeddings is not None, reference_query_embeddings is not None
        if has_latent != has_reference:
            raise ValueError(
                "LatentRAGLoss: pass latent_query_embeddings and reference_query_embeddings together (or neither)."
            )
        if self.retrieval_weight > 0 and has_latent and latent_query_embeddings.shape[0] > 0:
            retrieval = self.retrieval_alignment_loss(
                latent_query_embeddings, reference_query_embeddings, document_embeddings
            )
            components[RETRIEVAL_ALIGNMENT] = retrieval.detach()
            total = total + (retrieval if self.retrieval_weight == 1 else self.retrieval_weight * retrieval)

        decode_inputs = (thought_logits, thought_labels, subquery_logits, subquery_labels)
        if self.decoding_weight > 0 and any(tensor is not None for tensor in decode_inputs):
            decoding = self.latent_decoding_loss(*decode_inputs)
            components[LATENT_DECODING] = decoding.detach()
            total = total + (decoding if self.decoding_weight == 1 else self.decoding_weight * decoding)
        return LatentRAGLossOutput(total, components)

    def get_config_dict(self) -> dict[str, Any]:
        config: dict[str, Any] = {}
        if self.variant is not None:
            config["variant"] = self.variant
        config.update(
            {
                "retrieval_weight": self.retrieval_weight,
                "decoding_weight": self.decoding_weight,
                "retrieval_temperature": self.retrieval_alignment_loss.temperature,
                "retrieval_mode": self.retrieval_alignment_loss.mode,
            }
        )
        if self.retrieval_alignment_loss.mode == "infonce":
            config["num_positives"] = self.retrieval_alignment_loss.num_positives
        config["ignore_index"] = self.generation_loss.ignore_index
        return config
