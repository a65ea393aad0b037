"""Training arguments of [`LaserTrainer`] (specs/laser.md §4–§7, §13 names)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from transformers import TrainingArguments

from ..core.training import (
    apply_trainer_defaults,
    check_int_fields,
    check_loss_variant,
    check_positive_fields,
    check_weight_fields,
    is_int,
    resolve_loss_weights,
)
from .configuration_laser import SEGMENT_DOWNSAMPLING_MODES
from .losses import LOSS_VARIANTS


logger = logging.getLogger(__name__)

# Loss-weight fields, in the order of Eq. 13, and the `LaserLossVariant` attribute each one defaults to.
LOSS_WEIGHT_FIELDS = (
    "latent_contrastive_weight",
    "explicit_contrastive_weight",
    "output_kl_weight",
    "trajectory_kl_weight",
)


@dataclass
class LaserTrainingArguments(TrainingArguments):
    r"""
    Configuration of the [`LaserTrainer`]: LaSER's dual-view self-distillation.

    LaSER (Jin et al., "LaSER: Internalizing Explicit Reasoning into Latent Space for Dense Retrieval",
    [arXiv 2603.01425](https://arxiv.org/abs/2603.01425)) trains one backbone in two views: the explicit view
    (teacher) reads the query plus a chain-of-thought rationale, the latent view (student) reads the query only and
    thinks in soft tokens. The loss is `L = L_cl^L + λ1·L_cl^E + λ2·L_kl^out + λ3·L_kl^mid` (Eq. 13,
    specs/laser.md §4). This class holds only the LaSER-specific parameters plus a few [`~transformers.TrainingArguments`]
    defaults set explicitly for LaSER (listed at the end); see [`~transformers.TrainingArguments`] for the rest.
    With [`~transformers.HfArgumentParser`] every field is a command-line flag.

    **Precedence** for the loss weights and K: a value given explicitly (not `None`) wins; otherwise the value
    fixed by `loss_variant` ([`LOSS_VARIANTS`], paper Table 5); for K, finally the model's
    `config.num_latent_steps`. The fields themselves keep what was passed (`None` = "from the variant"); read the
    resolved values from [`LaserTrainingArguments.loss_weights`] and [`LaserTrainingArguments.resolve_num_latent_steps`].

    Parameters:
        > Parameters that control the latent loop

        loss_variant (`str`, *optional*, defaults to `"laser"`):
            Training variant of paper Table 5 (specs/laser.md §7), a key of `LOSS_VARIANTS`. Sets the four loss weights
            and, for the single-pass variants, K = 1, unless those are given explicitly. The variants:
            `"laser"` (full method), `"basic_contrastive"` (fair baseline: K = 1, latent InfoNCE only),
            `"no_explicit_view"`, `"no_latent_view"` (K = 1), `"no_output_distillation"`, `"no_process_alignment"`,
            `"no_co_learning_stage1"` (explicit InfoNCE only) and `"no_co_learning_stage2"` (frozen teacher; pass
            `teacher_model=` to the trainer); see [`~hf_latent.laser.losses.LOSS_VARIANTS`].
        num_latent_steps (`int`, *optional*):
            K, the number of pooled latent states for queries and passages in training (and the number of CoT
            segment targets). `None`: the variant's K (1 for the single-pass variants), else the model's
            `config.num_latent_steps` (3 in the paper). The trainer writes the value it uses into the model config,
            so the saved model encodes with the same K. Must be >= 1.
        segment_separator (`str`, *optional*, defaults to `"\n\n"`):
            CoT segment boundary: a segment ends where the ids the separator takes inside running text end (one
            merged token for Qwen, two newline tokens for SmolLM2; see `get_segment_separator_ids`, specs/laser.md
            §3.2).
        segment_downsampling (`str`, *optional*, defaults to `"linspace"`):
            How the M segment states are mapped to K targets: `"linspace"` (released code [C]) or `"paper"` [P]
            (specs/laser.md §3.3).
        gather_across_devices (`bool`, *optional*, defaults to `True`):
            Under multi-process training, all-gather Q, P, Q*, H and T so that every query is scored against the
            global in-batch pool; the loss is then multiplied by the world size before backward so the result equals
            single-process training on the global batch (specs/laser.md §4). `False` keeps the pool per process.

        > Parameters that control the losses

        temperature (`float`, *optional*, defaults to `0.02`):
            τ of both InfoNCE terms (`L_cl^L`, `L_cl^E`). Must be > 0.
        kd_temperature (`float`, *optional*, defaults to `0.02`):
            τ_kd of the output-distillation KL `L_kl^out`. Must be > 0.
        trajectory_temperature (`float`, *optional*, defaults to `0.05`):
            τ_mid of the trajectory KL `L_kl^mid` (released-code value; the paper gives none). Must be > 0.
        latent_contrastive_weight (`float`, *optional*):
            Weight of `L_cl^L`. `None`: the variant's value (1, or 0 in `"no_co_learning_stage1"`). Must be >= 0.
        explicit_contrastive_weight (`float`, *optional*):
            λ1, weight of `L_cl^E`. `None`: the variant's value (1 for `"laser"`). Must be >= 0.
        output_kl_weight (`float`, *optional*):
            λ2, weight of `L_kl^out`. `None`: the variant's value (10 for `"laser"`). Must be >= 0.
        trajectory_kl_weight (`float`, *optional*):
            λ3, weight of `L_kl^mid`. `None`: the variant's value (0.1 for `"laser"`). Must be >= 0.

        > Parameters that control the data

        train_group_size (`int`, *optional*, defaults to `2`):
            G, passages per query: one positive plus G-1 hard negatives, laid out `[pos_0, neg_0, ..., pos_1, ...]`.
            Every other query's passages are in-batch negatives. `1` uses no hard negatives. Must be >= 1.
        query_max_length (`int`, *optional*, defaults to `512`):
            Maximum query length in tokens in the latent view, template included (the content is truncated, never
            the template suffix; specs/laser.md §6).
        passage_max_length (`int`, *optional*, defaults to `512`):
            Same for passages.
        explicit_max_length (`int`, *optional*, defaults to `1024`):
            The explicit view `[templated query; CoT]` is right-truncated to this many tokens, then one EOS is
            appended (specs/laser.md §3.1). A rationale that does not fit is cut (one warning per run).
        min_rationale_chars (`int`, *optional*, defaults to `5`):
            A rationale that is missing, empty or shorter than this (after stripping) is replaced by the query text
            in the explicit view [C].
        pad_to_multiple_of (`int`, *optional*, defaults to `16`):
            Pad every batch to a multiple of this length (specs/laser.md §6). `None` pads to the longest row.

        > Parameters set explicitly for LaSER (different from, or pinned against, [`~transformers.TrainingArguments`])

        learning_rate (`float`, *optional*, defaults to `1e-4`):
            AdamW learning rate (paper, specs/laser.md §6).
        warmup_steps (`float`, *optional*, defaults to `0.1`):
            Linear warmup; a float in `[0, 1)` is a ratio of the total steps (10% in the paper; transformers 5 has no
            separate `warmup_ratio`). The released code's log-shaped DeepSpeed warmup is not reproduced [D].
        lr_scheduler_type (`str`, *optional*, defaults to `"linear"`):
            Linear decay to 0 after the warmup.
        weight_decay (`float`, *optional*, defaults to `0.0`):
            AdamW weight decay.
        max_grad_norm (`float`, *optional*, defaults to `1.0`):
            Gradient clipping.
        seed (`int`, *optional*, defaults to `42`):
            Random seed (also seeds the collator's choice of positives and negatives).
        bf16 (`bool`, *optional*, defaults to `False`):
            bf16 autocast. Off: it is about 10× slower on CPU. Turn it on for GPU runs (the paper trained in bf16).
        activation_checkpointing (`bool`, *optional*, defaults to `False`):
            Activation (gradient) checkpointing. Off: under checkpointing HF decoders drop the KV cache and LaSER's
            latent loop falls back to recomputing the whole sequence at each step (specs/laser.md §2.5). The
            deprecated alias `gradient_checkpointing` is honoured.
        remove_unused_columns (`bool`, *optional*, defaults to `False`):
            Must stay `False`: the collator needs the raw text columns (`query`, `reasoning`, `positive`, ...).
        report_to (`str` or `list[str]`, *optional*, defaults to `"none"`):
            No experiment trackers unless asked for.
        logging_steps (`float`, *optional*, defaults to `10`):
            Log every this many optimizer steps (each loss component is logged separately).
    """

    # Parameters that control the latent loop
    loss_variant: str = field(
        default="laser",
        metadata={
            "help": "Training variant of paper Table 5 (specs/laser.md §7), a key of LOSS_VARIANTS. Sets the four loss "
            "weights and, for the single-pass variants, K = 1, unless those are given explicitly. The variants: "
            "'laser', 'basic_contrastive', 'no_explicit_view', 'no_latent_view', 'no_output_distillation', "
            "'no_process_alignment', 'no_co_learning_stage1', 'no_co_learning_stage2' (needs teacher_model=).",
            "choices": sorted(LOSS_VARIANTS),
        },
    )
    num_latent_steps: int | None = field(
        default=None,
        metadata={
            "help": "K, the number of pooled latent states for queries and passages in training (and the number of "
            "CoT segment targets). None: the variant's K (1 for the single-pass variants), else the model's "
            "config.num_latent_steps (3 in the paper). The trainer writes the value it uses into the model config, so "
            "the saved model encodes with the same K. Must be >= 1."
        },
    )
    segment_separator: str = field(
        default="\n\n",
        metadata={
            "help": "CoT segment boundary: a segment ends where the ids the separator takes inside running text end "
            "(one merged token for Qwen, two newline tokens for SmolLM2; see get_segment_separator_ids, "
            "specs/laser.md §3.2)."
        },
    )
    segment_downsampling: str = field(
        default="linspace",
        metadata={
            "help": "How the M segment states are mapped to K targets: 'linspace' (released code [C]) or 'paper' [P] "
            "(specs/laser.md §3.3).",
            "choices": list(SEGMENT_DOWNSAMPLING_MODES),
        },
    )
    gather_across_devices: bool = field(
        default=True,
        metadata={
            "help": "Under multi-process training, all-gather Q, P, Q*, H and T so that every query is scored against "
            "the global in-batch pool; the loss is then multiplied by the world size before backward so the result "
            "equals single-process training on the global batch (specs/laser.md §4). False keeps the pool per "
            "process."
        },
    )

    # Parameters that control the losses
    temperature: float = field(
        default=0.02, metadata={"help": "τ of both InfoNCE terms (L_cl^L, L_cl^E). Must be > 0."}
    )
    kd_temperature: float = field(
        default=0.02, metadata={"help": "τ_kd of the output-distillation KL L_kl^out. Must be > 0."}
    )
    trajectory_temperature: float = field(
        default=0.05,
        metadata={
            "help": "τ_mid of the trajectory KL L_kl^mid (released-code value; the paper gives none). Must be > 0."
        },
    )
    latent_contrastive_weight: float | None = field(
        default=None,
        metadata={
            "help": "Weight of L_cl^L. None: the variant's value (1, or 0 in 'no_co_learning_stage1'). Must be >= 0."
        },
    )
    explicit_contrastive_weight: float | None = field(
        default=None,
        metadata={"help": "λ1, weight of L_cl^E. None: the variant's value (1 for 'laser'). Must be >= 0."},
    )
    output_kl_weight: float | None = field(
        default=None,
        metadata={"help": "λ2, weight of L_kl^out. None: the variant's value (10 for 'laser'). Must be >= 0."},
    )
    trajectory_kl_weight: float | None = field(
        default=None,
        metadata={"help": "λ3, weight of L_kl^mid. None: the variant's value (0.1 for 'laser'). Must be >= 0."},
    )

    # Parameters that control the data
    train_group_size: int = field(
        default=2,
        metadata={
            "help": "G, passages per query: one positive plus G-1 hard negatives, laid out [pos_0, neg_0, ..., pos_1, "
            "...]. Every other query's passages are in-batch negatives. 1 uses no hard negatives. Must be >= 1."
        },
    )
    query_max_length: int = field(
        default=512,
        metadata={
            "help": "Maximum query length in tokens in the latent view, template included (the content is truncated, "
            "never the template suffix; specs/laser.md §6)."
        },
    )
    passage_max_length: int = field(default=512, metadata={"help": "Same for passages."})
    explicit_max_length: int = field(
        default=1024,
        metadata={
            "help": "The explicit view [templated query; CoT] is right-truncated to this many tokens, then one EOS is "
            "appended. A rationale that does not fit is cut (one warning per run)."
        },
    )
    min_rationale_chars: int = field(
        default=5,
        metadata={
            "help": "A rationale that is missing, empty or shorter than this (after stripping) is replaced by the "
            "query text in the explicit view."
        },
    )
    pad_to_multiple_of: int | None = field(
        default=16,
        metadata={"help": "Pad every batch to a multiple of this length. None pads to the longest row."},
    )

    # Parameters set explicitly for LaSER
    learning_rate: float = field(default=1e-4, metadata={"help": "AdamW learning rate (paper, specs/laser.md §6)."})
    warmup_steps: float = field(
        default=0.1,
        metadata={
            "help": "Linear warmup; a float in [0, 1) is a ratio of the total steps (10%% in the paper; transformers 5 "
            "has no separate warmup_ratio). The released code's log-shaped DeepSpeed warmup is not reproduced."
        },
    )
    lr_scheduler_type: str = field(default="linear", metadata={"help": "Linear decay to 0 after the warmup."})
    weight_decay: float = field(default=0.0, metadata={"help": "AdamW weight decay."})
    max_grad_norm: float = field(default=1.0, metadata={"help": "Gradient clipping."})
    seed: int = field(
        default=42,
        metadata={"help": "Random seed (also seeds the collator's choice of positives and negatives)."},
    )
    bf16: bool = field(
        default=False,
        metadata={
            "help": "bf16 autocast. Off: it is about 10x slower on CPU. Turn it on for GPU runs (the paper trained "
            "in bf16)."
        },
    )
    activation_checkpointing: bool | None = field(
        default=None,
        metadata={
            "help": "Activation (gradient) checkpointing; None means off for LaSER. Under checkpointing HF decoders "
            "drop the KV cache and the latent loop recomputes the whole sequence at each step. The deprecated alias "
            "gradient_checkpointing is honoured.",
            "nargs": "?",
            "const": True,
        },
    )
    remove_unused_columns: bool = field(
        default=False,
        metadata={
            "help": "Must stay False: the collator needs the raw text columns (query, reasoning, positive, ...)."
        },
    )
    report_to: None | str | list[str] = field(
        default="none", metadata={"help": "No experiment trackers unless asked for."}
    )
    logging_steps: float = field(
        default=10,
        metadata={"help": "Log every this many optimizer steps (each loss component is logged separately)."},
    )

    def __post_init__(self):
        check_loss_variant(self.loss_variant, LOSS_VARIANTS)
        check_positive_fields(self, "temperature", "kd_temperature", "trajectory_temperature")
        check_weight_fields(self, *LOSS_WEIGHT_FIELDS)
        if self.num_latent_steps is not None and not is_int(self.num_latent_steps, 1):
            raise ValueError(
                f"`num_latent_steps` (K) must be None or an integer >= 1 (1 = single pass), got {self.num_latent_steps!r}."
            )
        check_int_fields(self, "train_group_size", "query_max_length", "passage_max_length", "explicit_max_length")
        check_int_fields(self, "min_rationale_chars", minimum=0)
        check_int_fields(self, "pad_to_multiple_of", optional=True)
        if self.segment_downsampling not in SEGMENT_DOWNSAMPLING_MODES:
            raise ValueError(
                f"`segment_downsampling` must be one of {SEGMENT_DOWNSAMPLING_MODES}, got {self.segment_downsampling!r}."
            )
        if not self.segment_separator:
            raise ValueError("`segment_separator` must be a non-empty string.")

        weights = self.loss_weights
        if not any(weight > 0 for weight in weights.values()):
            raise ValueError(f"At least one loss weight must be positive, got {weights}.")
        variant = LOSS_VARIANTS[self.loss_variant]
        if variant.frozen_teacher and weights["explicit_contrastive_weight"] > 0:
            raise ValueError(
                f"loss_variant={self.loss_variant!r} uses a frozen teacher, which nothing may train: "
                "explicit_contrastive_weight must be 0."
            )
        if variant.single_pass and self.num_latent_steps not in (None, 1):
            logger.warning(
                f"loss_variant={self.loss_variant!r} is a single-pass variant (K = 1), but num_latent_steps="
                f"{self.num_latent_steps} was given explicitly and wins; this is no longer the paper's variant."
            )
        if self.num_latent_steps == 1 and weights["trajectory_kl_weight"] > 0:
            logger.warning(
                "num_latent_steps=1 with trajectory_kl_weight > 0: process alignment is undefined without latent steps "
                "(specs/laser.md §7); the term then aligns the single pooled state with the CoT's last segment."
            )
        apply_trainer_defaults(self, "text", "LaserDataCollator", logger)
        super().__post_init__()

    @property
    def loss_weights(self) -> dict[str, float]:
        """The four loss weights after precedence (explicit field > `loss_variant`), keyed by field name."""
        return resolve_loss_weights(self, LOSS_VARIANTS[self.loss_variant], LOSS_WEIGHT_FIELDS)

    @property
    def uses_frozen_teacher(self) -> bool:
        """Whether the variant takes its teacher side from a separate frozen model (`"no_co_learning_stage2"`)."""
        return LOSS_VARIANTS[self.loss_variant].frozen_teacher

    def resolve_num_latent_steps(self, model_num_latent_steps: int | None = None) -> int:
        """K after precedence: `num_latent_steps` > the variant's K > `model_num_latent_steps` (the model config) > 3."""
        if self.num_latent_steps is not None:
            return self.num_latent_steps
        variant_steps = LOSS_VARIANTS[self.loss_variant].num_latent_steps
        if variant_steps is not None:
            return variant_steps
        return model_num_latent_steps if model_num_latent_steps is not None else 3

    def loss_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of [`LaserLoss`] (temperatures, resolved weights, group size, frozen teacher)."""
        return {
            "temperature": self.temperature,
            "kd_temperature": self.kd_temperature,
            "trajectory_temperature": self.trajectory_temperature,
            **self.loss_weights,
            "group_size": self.train_group_size,
            "frozen_teacher": self.uses_frozen_teacher,
        }


__all__ = ["LaserTrainingArguments"]
