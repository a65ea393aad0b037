"""[`LaserTrainer`]: LaSER's dual-view self-distillation on a `transformers.Trainer` (specs/laser.md §3–§7)."""

from __future__ import annotations

import contextlib
import logging
import os
from typing import Any

import torch
from torch import nn
from transformers import (
    AutoConfig,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    Trainer,
    TrainerCallback,
)

from ..core.loss_logging import LossLoggingMixin
from ..core.training import trainer_arguments
from ..hub.model_card import LASER_TEMPLATE, ModelCardMixin
from .collator_laser import LaserDataCollator
from .data_laser import validate_laser_dataset
from .distributed import gather_with_grad, get_world_size, global_loss_scale
from .losses import LaserLoss
from .losses._utils import LASER_ARXIV_ID, LASER_CITATION
from .modeling_laser import LaserModel, get_segment_separator_ids
from .training_args_laser import LaserTrainingArguments


logger = logging.getLogger(__name__)

# The paper's LoRA (specs/laser.md §6): r 64, alpha 32, dropout 0.1 on every attention and MLP projection.
LASER_LORA_TARGET_MODULES = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")

# Logged metric names (unscaled, averaged over the micro-steps of each logging interval).
METRIC_PREFIX = "loss/"
NUM_SEGMENTS_METRIC = "num_segments"


def laser_lora_config(
    r: int = 64,
    lora_alpha: int = 32,
    lora_dropout: float = 0.1,
    target_modules: list[str] | tuple[str, ...] | None = LASER_LORA_TARGET_MODULES,
    **kwargs: Any,
):
    """The paper's LoRA as a `peft.LoraConfig` (r 64, α 32, dropout 0.1 on q, k, v, o, gate, up, down; §6).

    Pass it as `LaserTrainer(..., peft_config=laser_lora_config())`; it is attached to the model's causal-LM backbone,
    so the embedding table and LM head stay frozen while gradients flow through them into the soft tokens (§2.1).
    """
    from peft import LoraConfig

    return LoraConfig(
        r=r,
        lora_alpha=lora_alpha,
        lora_dropout=lora_dropout,
        target_modules=list(target_modules) if target_modules is not None else None,
        **kwargs,
    )


class _EpochCallback(TrainerCallback):
    """Tells the collator the current epoch, which rotates each row's positive (specs/laser.md §5 [C])."""

    def __init__(self, collator: LaserDataCollator) -> None:
        self.collator = collator

    def on_epoch_begin(self, args, state, control, **kwargs):
        self.collator.epoch = int(round(state.epoch or 0))


def _load_laser_model(model: str | os.PathLike | PreTrainedModel | None) -> LaserModel:
    if isinstance(model, LaserModel):
        return model
    if model is None or isinstance(model, (str, os.PathLike)):
        if model is not None and model not in ("", "default"):
            config = AutoConfig.from_pretrained(model)
            if getattr(config, "model_type", None) == "laser":
                return LaserModel.from_pretrained(model)
        return LaserModel.from_backbone(model)
    if isinstance(model, PreTrainedModel):  # a plain causal LM: wrap it
        return LaserModel.from_backbone(model)
    raise TypeError(
        f"LaserTrainer needs a LaserModel, a causal LM, or a name/path, got {type(model).__name__}. For LoRA, pass "
        "`peft_config=` instead of a PeftModel."
    )


class LaserTrainer(ModelCardMixin, LossLoggingMixin, Trainer):
    r"""
    Trainer for LaSER (Jin et al., [arXiv 2603.01425](https://arxiv.org/abs/2603.01425)): one backbone trained in two
    views with `L = L_cl^L + λ1·L_cl^E + λ2·L_kl^out + λ3·L_kl^mid` (specs/laser.md §4).

    Each training step ([`LaserTrainer.compute_loss`], the only overridden step):
    1. **explicit view** (teacher), if any teacher term is on: one pass over `[query; CoT; EOS]` giving Q* and the
       K CoT segment states T ([`LaserModel.encode_explicit`]);
    2. **passages** in the latent view (same model, same K loop) giving the pool P, `[pos_0, neg_0, ..., pos_1, ...]`;
    3. **queries** in the latent view giving Q and the step states H;
    4. under multi-process training with `gather_across_devices`, Q, P, Q*, H, T are all-gathered (the local slice
       keeps its graph) and the loss is multiplied by the world size before backward, so DDP's gradient average is the
       gradient of the global-batch loss (§4 "Gather [C]");
    5. [`LaserLoss`] with the resolved weights; the **unscaled** total and every component are logged.

    Logged keys (means over each logging interval): `loss` (total), `loss/latent_contrastive`,
    `loss/explicit_contrastive`, `loss/output_kl`, `loss/trajectory_kl` (unweighted values of the computed terms) and
    `num_segments` (mean M, CoT segment boundaries per row; §3.2); `eval_`-prefixed in evaluation.

    **Ablations** (paper Table 5) are `args.loss_variant`; terms with weight 0 are not computed and passes nobody needs
    (teacher view, latent query loop) are skipped. **"w/o co-learning"** is two runs: stage 1,
    `loss_variant="no_co_learning_stage1"` (explicit InfoNCE only) trains the teacher; stage 2,
    `loss_variant="no_co_learning_stage2"`, needs `teacher_model=` a frozen copy of the stage-1 model (e.g.
    `LaserModel.from_pretrained(stage1_dir)`), which provides Q*, T and its *own* latent passage encodings (same K),
    all without gradient; the student trains with `L_cl^L + 10·L_kl^out + 0.1·L_kl^mid`.

    **LoRA**: pass `peft_config` (e.g. [`laser_lora_config`], the paper's r 64 / α 32 / dropout 0.1); it is attached
    to the causal-LM backbone (`model.backbone = get_peft_model(model.backbone, peft_config)`, as
    [`LaserModel`] recommends). `save_model` then writes the LaSER config plus the adapter, which
    `AutoModel.from_pretrained` reloads on the adapter's base model; merge with [`LaserModel.merge_and_unload`] to
    export a full model (the released checkpoints are merged, §6). Without `peft_config` the whole model is trained.

    The trainer writes the K it trains with (and the explicit-view settings) into `model.config`, so the saved model
    encodes with the same K (e.g. K = 1 for `"basic_contrastive"`).

    Args:
        model: a [`LaserModel`], a causal LM to wrap, or a name/path (a saved LaSER folder, or a causal-LM checkpoint
            wrapped with [`LaserModel.from_backbone`]; `None` = hf_latent's default backbone).
        args: [`LaserTrainingArguments`] (a default is built when `None`).
        data_collator: defaults to a [`LaserDataCollator`] configured from `args` and `model.config`.
        train_dataset / eval_dataset: LaSER rows (see [`hf_latent.laser.data_laser`]); validated at init by
            [`validate_laser_dataset`] (for `datasets.Dataset` and lists) so bad rows fail before training starts.
        processing_class: the tokenizer; when `None`, loaded from the model's `name_or_path`.
        peft_config: a `peft` config to attach to the backbone (LoRA).
        teacher_model: the frozen teacher for `loss_variant="no_co_learning_stage2"` (required there, refused
            otherwise); a [`LaserModel`] or a path.
        callbacks, optimizers, optimizer_cls_and_kwargs, compute_metrics, model_init, ...: as in `Trainer`.
    """

    _tag_names = ["hf_latent", "laser", "dense-retrieval", "sentence-similarity"]
    _name = "LaSER"
    _paper = {
        "title": "LaSER: Internalizing Explicit Reasoning into Latent Space for Dense Retrieval",
        "id": LASER_ARXIV_ID,
        "citation": LASER_CITATION,
    }
    # Rendered by `ModelCardMixin.create_model_card` (hf_latent/hub/model_card.py) on save.
    _template_file: str | None = LASER_TEMPLATE

    def __init__(
        self,
        model: LaserModel | PreTrainedModel | str | None = None,
        args: LaserTrainingArguments | None = None,
        data_collator=None,
        train_dataset=None,
        eval_dataset=None,
        processing_class: PreTrainedTokenizerBase | None = None,
        peft_config=None,
        teacher_model: LaserModel | str | None = None,
        callbacks: list[TrainerCallback] | None = None,
        optimizers=(None, None),
        **kwargs: Any,
    ) -> None:
        args = trainer_arguments(
            args,
            LaserTrainingArguments,
            "laser-output",
            "LaserTrainer needs LaserTrainingArguments (loss variant, temperatures, group size, lengths); got {got}. "
            "Build `LaserTrainingArguments(**args.to_dict(), ...)` instead.",
        )
        model = _load_laser_model(model)
        if processing_class is None:
            name = getattr(model, "name_or_path", "") or getattr(model.config, "_name_or_path", "")
            try:
                processing_class = AutoTokenizer.from_pretrained(name)
            except Exception as error:  # noqa: BLE001 - any loading failure means "pass it explicitly"
                raise ValueError(
                    f"No tokenizer given and none could be loaded from {name!r}; pass `processing_class=`."
                ) from error
        if peft_config is not None:
            model = self._attach_peft(model, peft_config)

        # Loss, K and the passes the variant needs (specs/laser.md §7).
        self.loss_fn = LaserLoss(**args.loss_kwargs())
        self.loss_fn.variant = args.loss_variant
        weights = args.loss_weights
        self.num_latent_steps = args.resolve_num_latent_steps(model.config.num_latent_steps)
        self._needs_explicit = any(
            weights[name] > 0 for name in ("explicit_contrastive_weight", "output_kl_weight", "trajectory_kl_weight")
        )
        self._needs_latent_query = any(
            weights[name] > 0 for name in ("latent_contrastive_weight", "output_kl_weight", "trajectory_kl_weight")
        )
        self._needs_segments = weights["trajectory_kl_weight"] > 0
        self._frozen_teacher = args.uses_frozen_teacher
        # The saved model must encode the way it was trained (specs/laser.md §13: K is a model setting).
        model.config.num_latent_steps = self.num_latent_steps
        model.config.segment_separator = args.segment_separator
        model.config.segment_downsampling = args.segment_downsampling
        model.config.explicit_max_length = args.explicit_max_length
        self.separator_token_ids = get_segment_separator_ids(processing_class, args.segment_separator)

        if data_collator is None:
            data_collator = LaserDataCollator(
                tokenizer=processing_class,
                config=model.config,
                train_group_size=args.train_group_size,
                query_max_length=args.query_max_length,
                passage_max_length=args.passage_max_length,
                explicit_max_length=args.explicit_max_length,
                include_explicit=self._needs_explicit,
                min_rationale_chars=args.min_rationale_chars,
                pad_to_multiple_of=args.pad_to_multiple_of,
                seed=args.seed,
            )
        # Bad data fails here, not mid-training (streams cannot be checked up front).
        for name, dataset in (("train_dataset", train_dataset), ("eval_dataset", eval_dataset)):
            for part in dataset.values() if isinstance(dataset, dict) else [dataset]:
                if part is not None and hasattr(part, "__len__") and hasattr(part, "__getitem__"):
                    try:
                        validate_laser_dataset(
                            part,
                            train_group_size=args.train_group_size,
                            needs_rationale=self._needs_explicit,
                            min_rationale_chars=args.min_rationale_chars,
                        )
                    except ValueError as error:
                        raise ValueError(f"{name}: {error}") from error

        callbacks = list(callbacks or [])
        if isinstance(data_collator, LaserDataCollator):
            callbacks.append(_EpochCallback(data_collator))
        super().__init__(
            model=model,
            args=args,
            data_collator=data_collator,
            train_dataset=train_dataset,
            eval_dataset=eval_dataset,
            processing_class=processing_class,
            callbacks=callbacks,
            optimizers=optimizers,
            **kwargs,
        )
        self.teacher_model = self._prepare_teacher(teacher_model, model)

    # -- construction helpers ----------------------------------------------------------------------------------------

    @staticmethod
    def _attach_peft(model: LaserModel, peft_config) -> LaserModel:
        try:
            from peft import get_peft_model
        except ImportError as error:  # optional dependency
            raise ImportError("`peft_config` needs `peft` (pip install peft).") from error
        if hasattr(model.backbone, "peft_config"):
            raise ValueError(
                "The model's backbone already has a PEFT adapter; pass either a PEFT model or `peft_config`, not both."
            )
        # specs/laser.md §2.1 / STYLE §9: LoRA on the causal LM; LaserModel then saves the adapter next to its config.
        model.backbone = get_peft_model(model.backbone, peft_config)
        return model

    def _prepare_teacher(self, teacher_model, model: LaserModel) -> LaserModel | None:
        if not self._frozen_teacher:
            if teacher_model is not None:
                raise ValueError(
                    f"teacher_model is only used by loss_variant='no_co_learning_stage2' (a frozen teacher); "
                    f"loss_variant={self.args.loss_variant!r} co-trains the teacher view in the same model."
                )
            return None
        if teacher_model is None:
            raise ValueError(
                "loss_variant='no_co_learning_stage2' needs `teacher_model=`: first train the explicit-view teacher "
                "with loss_variant='no_co_learning_stage1', then pass a frozen copy of it, e.g. "
                "`teacher_model=LaserModel.from_pretrained(stage1_output_dir)`."
            )
        teacher = _load_laser_model(teacher_model)
        if teacher is model:
            raise ValueError("teacher_model must be a separate (frozen) copy, not the model being trained.")
        teacher.requires_grad_(False)
        teacher.eval()
        return teacher.to(self.args.device)

    # -- the loss ----------------------------------------------------------------------------------------------------

    def compute_loss(
        self,
        model: nn.Module,
        inputs: dict[str, torch.Tensor],
        return_outputs: bool = False,
        num_items_in_batch: torch.Tensor | int | None = None,
    ):
        """The LaSER loss of one micro-batch (see the class docstring); scaled by the world size when gathered.

        `inputs` are [`LaserDataCollator`] outputs. `num_items_in_batch` is ignored: the loss is a per-query mean over
        the (global) micro-batch, and gradient accumulation does not enlarge the pool (specs/laser.md §4).
        """
        K = self.num_latent_steps
        unwrapped = self.accelerator.unwrap_model(model)
        gather = self.args.gather_across_devices and get_world_size() > 1

        teacher_query = segment_states = num_segments = teacher_passages = None
        if self._needs_explicit:
            # The explicit view runs outside the DDP forward (it is a separate method); DDP still reduces its
            # gradients because every parameter it uses also takes part in the latent passes below.
            explicit_model = self.teacher_model if self._frozen_teacher else unwrapped
            context = torch.no_grad() if self._frozen_teacher else contextlib.nullcontext()
            with context:
                explicit = explicit_model.encode_explicit(
                    inputs["explicit_input_ids"],
                    inputs["explicit_attention_mask"],
                    inputs["explicit_cot_start"],
                    inputs["explicit_cot_end"],
                    separator_token_ids=self.separator_token_ids,
                    num_latent_steps=K,
                    segment_downsampling=self.args.segment_downsampling,
                )
                if self._frozen_teacher:
                    # Stage 2 of "w/o co-learning": the frozen teacher scores its own passage encodings (§7).
                    teacher_passages = explicit_model(
                        input_ids=inputs["passage_input_ids"],
                        attention_mask=inputs["passage_attention_mask"],
                        num_latent_steps=K,
                    ).embeddings
            teacher_query = explicit.explicit_embeddings
            segment_states = explicit.segment_states if self._needs_segments else None
            num_segments = explicit.num_segments

        passage_embeddings = model(
            input_ids=inputs["passage_input_ids"],
            attention_mask=inputs["passage_attention_mask"],
            num_latent_steps=K,
        ).embeddings
        query_embeddings = latent_states = None
        if self._needs_latent_query:
            query_output = model(
                input_ids=inputs["query_input_ids"],
                attention_mask=inputs["query_attention_mask"],
                num_latent_steps=K,
            )
            query_embeddings = query_output.embeddings
            latent_states = query_output.latent_states if self._needs_segments else None

        tensors = {
            "query_embeddings": query_embeddings,
            "passage_embeddings": passage_embeddings,
            "teacher_query_embeddings": teacher_query,
            "latent_states": latent_states,
            "teacher_segment_states": segment_states,
            "teacher_passage_embeddings": teacher_passages,
        }
        if gather:  # specs/laser.md §4: the global pool on every rank, local slices keep their graph
            tensors = {name: None if t is None else gather_with_grad(t) for name, t in tensors.items()}
            num_segments = None if num_segments is None else gather_with_grad(num_segments)
        loss, components = self.loss_fn(**tensors)

        self._record_metrics(components, num_segments, reduce=not gather and get_world_size() > 1)
        scaled = loss * global_loss_scale() if gather and model.training else loss
        if return_outputs:
            return scaled, {"query_embeddings": query_embeddings if query_embeddings is not None else teacher_query}
        return scaled

    def _record_metrics(self, components, num_segments, reduce: bool) -> None:
        values = {f"{METRIC_PREFIX}{name}": value for name, value in components.items()}
        if num_segments is not None:
            values[NUM_SEGMENTS_METRIC] = num_segments.float().mean()
        # Per-process pools (`reduce`): report the mean over processes, like the Trainer's own loss.
        self._store_metrics(values, reduce)

    # -- logging -----------------------------------------------------------------------------------------------------

    def _loss_scale(self) -> int:
        return global_loss_scale() if self.args.gather_across_devices else 1

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        """Report the *unscaled* total loss, plus the averaged loss components ([`LossLoggingMixin.log`])."""
        scale = self._loss_scale()
        if scale != 1:  # the Trainer accumulated the world-size-scaled loss used for backward (§4: log it unscaled)
            for key in ("loss", "train_loss"):
                if key in logs:
                    logs[key] = logs[key] / scale
        super().log(logs, start_time)

    def train(self, *args, **kwargs):
        output = super().train(*args, **kwargs)
        scale = self._loss_scale()
        return output._replace(training_loss=output.training_loss / scale) if scale != 1 else output


__all__ = ["LASER_LORA_TARGET_MODULES", "LaserTrainer", "laser_lora_config"]
