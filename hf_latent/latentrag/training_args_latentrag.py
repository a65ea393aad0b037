"""Training arguments of [`LatentRAGTrainer`] (specs/latentrag.md §2, §6, §7, §8.2, §9)."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Any

from transformers import TrainingArguments

from ..core.training import (
    apply_trainer_defaults,
    check_fields,
    check_int_fields,
    check_loss_variant,
    check_positive_fields,
    check_weight_fields,
    is_number,
    resolve_loss_weights,
)
from .losses import DEFAULT_RETRIEVAL_TEMPERATURE, LATENTRAG_LOSS_VARIANTS


logger = logging.getLogger(__name__)

AUTO_TEMPERATURE = "auto"
# Loss-weight fields (Eq. 11) and the `LatentRAGLossVariant` attribute each one defaults to.
LOSS_WEIGHT_FIELDS = ("retrieval_weight", "decoding_weight")


@dataclass
class LatentRAGTrainingArguments(TrainingArguments):
    r"""
    Configuration of the [`LatentRAGTrainer`]: SFT distillation of explicit agentic-RAG trajectories into latent
    thoughts and sub-queries.

    LatentRAG (Zheng and Worring, [arXiv 2605.06285](https://arxiv.org/abs/2605.06285)) trains with
    `L = L_gen + λ_ret·L_ret + λ_dec·L_dec` (Eq. 11, specs/latentrag.md §7): next-token CE on the actions and the
    answer, a KL that aligns the latent sub-query's similarity distribution over in-batch pseudo-relevant documents
    with the one of the teacher's text sub-query through the frozen reference retriever, and a CE that regenerates
    the teacher's thought and sub-query text from the latents. This class holds the LatentRAG-specific parameters plus
    a few [`~transformers.TrainingArguments`] defaults set explicitly (listed at the end); see
    [`~transformers.TrainingArguments`] for the rest. With [`~transformers.HfArgumentParser`] every field is a
    command-line flag.

    **Precedence** for the loss weights: a value given explicitly (not `None`) wins, otherwise the value fixed by
    `loss_variant` ([`~hf_latent.latentrag.losses.LATENTRAG_LOSS_VARIANTS`], paper Table 3). Read the resolved values
    from [`LatentRAGTrainingArguments.loss_weights`].

    Parameters:
        > Parameters that control the latent tokens and the trainable parts (§2, §3, §6)

        generator_lora_rank (`int`, *optional*, defaults to `16`):
            Rank of the LoRA adapter the trainer attaches to the generator when the model has none yet (§2 [P]:
            r = 16, α = 64 on all projection matrices). A model that already carries one (`config.generator_lora_rank
            > 0`) keeps its own. `0` trains no generator adapter. The rank is written into the model config, so the
            saved checkpoint rebuilds the adapter.
        generator_lora_alpha (`float`, *optional*, defaults to `64`):
            LoRA α of the generator adapter (scaling α / r).
        generator_lora_dropout (`float`, *optional*, defaults to `0.1`):
            LoRA dropout of the generator adapter ([D], §2).
        generator_lora_target_modules (`list[str]`, *optional*):
            Last name components of the generator's linear layers that get the adapter (`q_proj`, ...). `None`: every
            linear layer of the decoder blocks, i.e. all projection matrices (the LM head is never adapted).
        retriever_lora_rank (`int`, *optional*, defaults to `16`):
            Rank of the retriever adapter θ_ret when the model has none (a model built with `retriever_lora_rank=0`);
            a model that already has one keeps it (§6 [D]: r 16, α 64, dropout 0). The frozen reference retriever
            θ*_ret is the same module with the adapter disabled. `0` keeps the retriever frozen.
        retriever_lora_alpha (`float`, *optional*, defaults to `64`):
            LoRA α of the retriever adapter.
        retriever_lora_dropout (`float`, *optional*, defaults to `0.0`):
            LoRA dropout of the retriever adapter; 0 because retriever dropout is removed (§2 [P]).
        train_new_token_rows (`bool`, *optional*, defaults to `True`):
            Train the input-embedding rows of LatentRAG's special tokens (placeholders and tags) and, when the LM head
            is not tied to them, the LM-head rows of the generation targets among them (the actions `<query_1>` and
            `<answer>`, plus `</answer>`) (§3 [D]). Every other row keeps its pretrained value (its gradient is
            masked and it gets no weight decay).

        > Parameters that control the losses (§7, §9)

        loss_variant (`str`, *optional*, defaults to `"kl"`):
            Ablation of paper Table 3 (specs §9), a key of `LATENTRAG_LOSS_VARIANTS`: `"kl"` (full method),
            `"cosine"`, `"infonce"`, `"no_pretrained_retriever"` (needs a model built with
            `use_pretrained_retriever=False`) and `"no_decoding"` (λ_dec = 0).
        retrieval_weight (`float`, *optional*):
            λ_ret. `None`: the variant's value (1 [P]). Must be >= 0.
        decoding_weight (`float`, *optional*):
            λ_dec. `None`: the variant's value (1 [P], 0 for `"no_decoding"`). Must be >= 0.
        retrieval_temperature (`float` or `str`, *optional*, defaults to `0.03`):
            β of L_ret (and of InfoNCE) [P]. `"auto"` calibrates it before training so that the teacher's top-3
            documents hold 0.5 of the probability over D_B, by bisection on log β over up to
            `temperature_calibration_batches` training batches ([`calibrate_retrieval_temperature`], §7.2 [D]; it
            falls back to 0.03). The value used is written into the model config. Must be > 0.
        temperature_calibration_batches (`int`, *optional*, defaults to `200`):
            Training batches used by `retrieval_temperature="auto"` ("a few hundred", §7.2 [D]). Must be >= 1.
        num_pseudo_relevant (`int`, *optional*, defaults to `10`):
            Pseudo-relevant documents per teacher sub-query that enter the candidate pool D_B (their union over the
            batch, §7.2 [P]: top-10). The trajectories carry them (`attach_pseudo_relevant_ids`); longer lists are
            cut. Must be >= 1.
        num_infonce_positives (`int`, *optional*, defaults to `3`):
            Positives per sub-query of the `"infonce"` ablation (the teacher's top-3 in D_B, §9 [D]). Must be >= 1.

        > Parameters that control the data (§8)

        max_length (`int`, *optional*, defaults to `3000`):
            Trajectories longer than this many tokens are dropped before training, with a warning that gives the
            count (§8 [P]: ≤ 3000 tokens; dropping [D]). Must be >= 1.
        num_length_bins (`int`, *optional*, defaults to `200`):
            Binned batching (§8 [P]): trajectory lengths are split into this many equal-width bins over
            `[0, max_length]` and each batch is drawn from one bin; a bin's remainder (fewer rows than a batch) is
            batched with the remainders of its length neighbours [D]. `0` uses the Trainer's random sampler. Must be
            >= 0.

        > Parameters set explicitly for LatentRAG (different from, or pinned against, [`~transformers.TrainingArguments`])

        learning_rate (`float`, *optional*, defaults to `1e-4`):
            AdamW learning rate (§8.2 [P]).
        weight_decay (`float`, *optional*, defaults to `0.01`):
            AdamW weight decay (§8.2 [P]); never applied to the embedding tables (only their new rows train).
        warmup_steps (`float`, *optional*, defaults to `0.03`):
            Linear warmup; a float in `[0, 1)` is a ratio of the total steps (3%, §8.2 [D]; transformers 5 has no
            separate `warmup_ratio`).
        lr_scheduler_type (`str`, *optional*, defaults to `"linear"`):
            Linear decay after the warmup (§8.2 [D]).
        num_train_epochs (`float`, *optional*, defaults to `5`):
            Epochs (§8.2 [P]).
        bf16 (`bool`, *optional*, defaults to `False`):
            bf16 autocast. Off: it is about 10× slower on CPU. Turn it on for GPU runs (the paper trained in bf16).
        activation_checkpointing (`bool`, *optional*, defaults to `False`):
            Activation (gradient) checkpointing; off, which is faster on CPU and at small scale. The deprecated alias
            `gradient_checkpointing` is honoured.
        remove_unused_columns (`bool`, *optional*, defaults to `False`):
            Must stay `False`: the collator needs the raw trajectory columns (`question`, `steps`, `answer`).
        report_to (`str` or `list[str]`, *optional*, defaults to `"none"`):
            No experiment trackers unless asked for.
        logging_steps (`float`, *optional*, defaults to `10`):
            Log every this many optimizer steps (each loss component is logged separately, averaged over the
            interval).
    """

    # Parameters that control the latent tokens and the trainable parts
    generator_lora_rank: int = field(
        default=16,
        metadata={
            "help": "Rank of the LoRA adapter attached to the generator when the model has none yet (r 16, alpha 64 "
            "on all projections in the paper). A model that already has one keeps it. 0 trains no generator adapter."
        },
    )
    generator_lora_alpha: float = field(default=64.0, metadata={"help": "LoRA alpha of the generator adapter."})
    generator_lora_dropout: float = field(
        default=0.1, metadata={"help": "LoRA dropout of the generator adapter (spec §2 [D])."}
    )
    generator_lora_target_modules: list[str] | None = field(
        default=None,
        metadata={
            "help": "Last name components of the generator's linear layers that get the adapter. None: every linear "
            "layer of the decoder blocks (all projection matrices; never the LM head)."
        },
    )
    retriever_lora_rank: int = field(
        default=16,
        metadata={
            "help": "Rank of the retriever adapter when the model has none (a model built with retriever_lora_rank=0); "
            "a model that already has one keeps it. 0 keeps the retriever frozen."
        },
    )
    retriever_lora_alpha: float = field(default=64.0, metadata={"help": "LoRA alpha of the retriever adapter."})
    retriever_lora_dropout: float = field(
        default=0.0, metadata={"help": "LoRA dropout of the retriever adapter (0: retriever dropout is removed)."}
    )
    train_new_token_rows: bool = field(
        default=True,
        metadata={
            "help": "Train the input-embedding rows of LatentRAG's special tokens and, with an untied LM head, the "
            "LM-head rows of <query_1>, <answer> and </answer>. Other rows keep their pretrained values."
        },
    )

    # Parameters that control the losses
    loss_variant: str = field(
        default="kl",
        metadata={
            "help": "Ablation of paper Table 3: 'kl' (full method), 'cosine', 'infonce', 'no_pretrained_retriever' "
            "(needs a model built with use_pretrained_retriever=False) or 'no_decoding'.",
            "choices": sorted(LATENTRAG_LOSS_VARIANTS),
        },
    )
    retrieval_weight: float | None = field(
        default=None, metadata={"help": "lambda_ret. None: the variant's value (1). Must be >= 0."}
    )
    decoding_weight: float | None = field(
        default=None,
        metadata={"help": "lambda_dec. None: the variant's value (1, or 0 for 'no_decoding'). Must be >= 0."},
    )
    # A `str` annotation so that HfArgumentParser accepts "auto"; numbers are converted in `__post_init__`.
    retrieval_temperature: str = field(
        default=str(DEFAULT_RETRIEVAL_TEMPERATURE),
        metadata={
            "help": "beta of L_ret (0.03 in the paper), or 'auto': calibrate it before training so that the teacher's "
            "top-3 documents hold 0.5 of the probability over D_B (falls back to 0.03). Must be > 0."
        },
    )
    temperature_calibration_batches: int = field(
        default=200,
        metadata={"help": "Training batches used by retrieval_temperature='auto'. Must be >= 1."},
    )
    num_pseudo_relevant: int = field(
        default=10,
        metadata={
            "help": "Pseudo-relevant documents per teacher sub-query in the candidate pool D_B (top-10 in the paper); "
            "longer lists are cut. Must be >= 1."
        },
    )
    num_infonce_positives: int = field(
        default=3,
        metadata={"help": "Positives per sub-query of the 'infonce' ablation (teacher top-3). Must be >= 1."},
    )

    # Parameters that control the data
    max_length: int = field(
        default=3000,
        metadata={
            "help": "Trajectories longer than this many tokens are dropped before training (with a warning and the "
            "count). Must be >= 1."
        },
    )
    num_length_bins: int = field(
        default=200,
        metadata={
            "help": "Binned batching: equal-width length bins over [0, max_length]; each batch comes from one bin (a "
            "bin's remainder is batched with its length neighbours). 0 uses the Trainer's random sampler."
        },
    )

    # Parameters set explicitly for LatentRAG
    learning_rate: float = field(default=1e-4, metadata={"help": "AdamW learning rate (paper)."})
    weight_decay: float = field(
        default=0.01, metadata={"help": "AdamW weight decay (paper); never applied to the embedding tables."}
    )
    warmup_steps: float = field(
        default=0.03,
        metadata={
            "help": "Linear warmup; a float in [0, 1) is a ratio of the total steps (3%%; transformers 5 has no "
            "separate warmup_ratio)."
        },
    )
    lr_scheduler_type: str = field(default="linear", metadata={"help": "Linear decay after the warmup."})
    num_train_epochs: float = field(default=5.0, metadata={"help": "Epochs (5 in the paper)."})
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
            "help": "Activation (gradient) checkpointing; None means off. The deprecated alias gradient_checkpointing "
            "is honoured.",
            "nargs": "?",
            "const": True,
        },
    )
    remove_unused_columns: bool = field(
        default=False,
        metadata={"help": "Must stay False: the collator needs the raw trajectory columns (question, steps, answer)."},
    )
    report_to: None | str | list[str] = field(
        default="none", metadata={"help": "No experiment trackers unless asked for."}
    )
    logging_steps: float = field(
        default=10,
        metadata={"help": "Log every this many optimizer steps (each loss component is logged separately)."},
    )

    def __post_init__(self):
        check_loss_variant(self.loss_variant, LATENTRAG_LOSS_VARIANTS)
        self.retrieval_temperature = _parse_temperature(self.retrieval_temperature)
        check_weight_fields(self, *LOSS_WEIGHT_FIELDS)
        check_int_fields(
            self, "num_pseudo_relevant", "num_infonce_positives", "max_length", "temperature_calibration_batches"
        )
        check_int_fields(self, "num_length_bins", "generator_lora_rank", "retriever_lora_rank", minimum=0)
        check_positive_fields(self, "generator_lora_alpha", "retriever_lora_alpha")
        check_fields(
            self,
            ("generator_lora_dropout", "retriever_lora_dropout"),
            lambda value: is_number(value) and 0.0 <= float(value) < 1.0,
            "in [0, 1)",
        )
        if self.generator_lora_target_modules is not None and (
            isinstance(self.generator_lora_target_modules, str) or not self.generator_lora_target_modules
        ):
            raise ValueError("`generator_lora_target_modules` must be None or a non-empty list of module names.")
        weights = self.loss_weights
        if weights["retrieval_weight"] == 0 and weights["decoding_weight"] == 0:
            logger.warning("retrieval_weight and decoding_weight are both 0: only L_gen trains (plain SFT).")
        apply_trainer_defaults(self, "trajectory", "LatentRAGDataCollator", logger)
        super().__post_init__()

    @property
    def loss_weights(self) -> dict[str, float]:
        """λ_ret and λ_dec after precedence (explicit field > `loss_variant`), keyed by field name."""
        return resolve_loss_weights(self, LATENTRAG_LOSS_VARIANTS[self.loss_variant], LOSS_WEIGHT_FIELDS)

    @property
    def calibrates_temperature(self) -> bool:
        """Whether β is calibrated on training batches before training (`retrieval_temperature="auto"`)."""
        return self.retrieval_temperature == AUTO_TEMPERATURE

    @property
    def uses_pretrained_retriever(self) -> bool:
        """The model setting the variant needs (`False` only for `"no_pretrained_retriever"`)."""
        return LATENTRAG_LOSS_VARIANTS[self.loss_variant].use_pretrained_retriever

    def loss_kwargs(self, retrieval_temperature: float | None = None) -> dict[str, Any]:
        """Keyword arguments of `LatentRAGLoss.for_variant(loss_variant, **kwargs)`.

        Args:
            retrieval_temperature (`float`, *optional*): β to use; required when `retrieval_temperature="auto"`
                (the calibrated value).
        """
        if retrieval_temperature is None:
            if self.calibrates_temperature:
                raise ValueError('retrieval_temperature="auto": pass the calibrated β.')
            retrieval_temperature = float(self.retrieval_temperature)
        return {
            **self.loss_weights,
            "retrieval_temperature": float(retrieval_temperature),
            "num_positives": self.num_infonce_positives,
        }


def _parse_temperature(value: Any) -> float | str:
    if isinstance(value, str):
        if value.strip().lower() == AUTO_TEMPERATURE:
            return AUTO_TEMPERATURE
        try:
            value = float(value)
        except ValueError:
            raise ValueError(f"`retrieval_temperature` must be a positive number or 'auto', got {value!r}.") from None
    if not is_number(value) or not 0.0 < float(value) < math.inf:
        raise ValueError(f"`retrieval_temperature` must be a positive number or 'auto', got {value!r}.")
    return float(value)


__all__ = ["AUTO_TEMPERATURE", "LatentRAGTrainingArguments"]
