"""[`LatentRAGTrainer`]: LatentRAG's SFT distillation on a `transformers.Trainer` (specs/latentrag.md §7–§9)."""

from __future__ import annotations

import logging
import os
from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn
from transformers import AutoModel, PreTrainedTokenizerBase, Trainer, TrainerCallback
from transformers.trainer_utils import has_length

from ..core.loss_logging import LossLoggingMixin
from ..core.training import trainer_arguments
from ..hub.model_card import LATENTRAG_TEMPLATE, ModelCardMixin
from .collator_latentrag import LatentRAGDataCollator, LengthBinnedSampler, as_trajectory
from .losses import (
    DEFAULT_RETRIEVAL_TEMPERATURE,
    LATENTRAG_ARXIV_ID,
    LATENTRAG_CITATION,
    LatentRAGLoss,
    calibrate_retrieval_temperature,
)
from .modeling_latentrag import LatentRAGModel, LoRALinear, inject_lora
from .training_args_latentrag import LatentRAGTrainingArguments
from .trajectories import tokenize_latent_trajectory


logger = logging.getLogger(__name__)

# Logged metric names (averaged over the micro-steps of each logging interval).
METRIC_PREFIX = "loss/"
ACTION_ACCURACY_METRIC = "action_accuracy"


# ------------------------------------------------------------------------------------------- trainable parameters


def _output_layer_names(generator: nn.Module) -> tuple[str, ...]:
    head = generator.get_output_embeddings()
    return tuple(name for name, module in generator.named_modules() if module is head and name)


def latentrag_token_ids(config: Any) -> list[int]:
    """Ids of every LatentRAG token in the generator vocabulary: placeholders and structural tags (§3)."""
    ids = [*config.thought_token_ids, *config.subquery_token_ids]
    ids += [config.answer_start_token_id, config.answer_end_token_id]
    ids += [config.information_start_token_id, config.information_end_token_id]
    return sorted({int(i) for i in ids if i is not None})


def latentrag_target_token_ids(config: Any) -> list[int]:
    """The LatentRAG tokens that are generation targets (§7.1): the actions `<query_1>`, `<answer>`, and `</answer>`."""
    return sorted({config.query_action_token_id, config.answer_action_token_id, config.answer_end_token_id})


def _train_rows(weight: nn.Parameter, rows: Sequence[int]) -> None:
    """Make `weight` trainable but mask the gradient of every row outside `rows` (they never change under AdamW
    without weight decay: zero gradient, zero moments, zero update)."""
    mask = torch.zeros(weight.shape[0], *([1] * (weight.dim() - 1)), dtype=weight.dtype, device=weight.device)
    mask[list(rows)] = 1
    previous = getattr(weight, "_latentrag_row_hook", None)
    if previous is not None:
        previous.remove()
    weight.requires_grad_(True)
    weight._latentrag_row_hook = weight.register_hook(lambda grad: grad * mask.to(grad.device, grad.dtype))
    weight._latentrag_trainable_rows = sorted(set(int(r) for r in rows))


def trainable_rows(weight: nn.Parameter) -> list[int] | None:
    """Rows of an embedding table that [`prepare_latentrag_for_training`] made trainable (`None` = untouched)."""
    return getattr(weight, "_latentrag_trainable_rows", None)


def prepare_latentrag_for_training(model: LatentRAGModel, args: LatentRAGTrainingArguments) -> list[str]:
    """Freeze everything, then make trainable exactly what LatentRAG trains (§2, §8.1 step 4).

    - the generator LoRA (attached here with `args.generator_lora_*` when the model has none; the config records it,
      so the saved model rebuilds it);
    - the new token rows of the input embeddings and, with an untied LM head, the LM-head rows of `<query_1>`,
      `<answer>` and `</answer>` (`args.train_new_token_rows`, §3 [D]);
    - `Proj_ret` (when λ_ret > 0) and `Proj_τ`, `Proj_s` (when λ_dec > 0);
    - the retriever adapter θ_ret (attached here when the model has none and `args.retriever_lora_rank > 0`), when
      λ_ret > 0 and the variant uses the pretrained retriever.

    The retriever's base weights (= the frozen reference θ*_ret, which also built the index) and the generator's
    base weights stay frozen.

    Returns:
        The names of the trainable parameters.
    """
    config = model.config
    weights = args.loss_weights
    model.requires_grad_(False)
    if config.generator_lora_rank == 0 and args.generator_lora_rank > 0:
        inject_lora(
            model.generator,
            args.generator_lora_rank,
            args.generator_lora_alpha,
            args.generator_lora_dropout,
            args.generator_lora_target_modules,
            exclude=_output_layer_names(model.generator),
        )
        # The same rule as LatentRAGModel.__init__, so from_pretrained rebuilds exactly these layers.
        config.generator_lora_rank = args.generator_lora_rank
        config.generator_lora_alpha = float(args.generator_lora_alpha)
        config.generator_lora_dropout = float(args.generator_lora_dropout)
        config.generator_lora_target_modules = args.generator_lora_target_modules
    elif config.generator_lora_rank > 0 and config.generator_lora_rank != args.generator_lora_rank:
        logger.info("The generator already has a LoRA adapter of rank %d; keeping it.", config.generator_lora_rank)
    if config.retriever_lora_rank == 0 and args.retriever_lora_rank > 0:
        inject_lora(
            model.retriever,
            args.retriever_lora_rank,
            args.retriever_lora_alpha,
            args.retriever_lora_dropout,
            config.retriever_lora_target_modules,
            exclude=("pooler",),
        )
        config.retriever_lora_rank = args.retriever_lora_rank
        config.retriever_lora_alpha = float(args.retriever_lora_alpha)
        config.retriever_lora_dropout = float(args.retriever_lora_dropout)
    for module in model.generator.modules():
        if isinstance(module, LoRALinear):
            module.lora_A.requires_grad_(True)
            module.lora_B.requires_grad_(True)
    if weights["retrieval_weight"] > 0:
        model.retrieval_projector.requires_grad_(True)
        if config.use_pretrained_retriever:
            for parameter in model.retriever_adapter_parameters():
                parameter.requires_grad_(True)
    if weights["decoding_weight"] > 0:
        for projector in (model.thought_decoding_projector, model.subquery_decoding_projector):
            projector.requires_grad_(True)
    if args.train_new_token_rows:
        embedding = model.generator.get_input_embeddings().weight
        head = model.generator.get_output_embeddings()
        new_rows = latentrag_token_ids(config)
        if head is None or head.weight is embedding:
            _train_rows(embedding, new_rows)  # tied: the action rows of the head are among the new rows
        else:
            _train_rows(embedding, new_rows)
            _train_rows(head.weight, latentrag_target_token_ids(config))
    return [name for name, parameter in model.named_parameters() if parameter.requires_grad]


# ------------------------------------------------------------------------------------------------- helpers


def _packed_target_logits(
    hidden: torch.Tensor, labels: torch.Tensor, head: nn.Module
) -> tuple[torch.Tensor, torch.Tensor]:
    """Apply the LM head only where a next token is a target, packed in the Hugging Face label layout.

    Returns `(logits (1, N + 1, vocab), labels (1, N + 1))` with `logits[0, t]` predicting `labels[0, t + 1]`, so
    that `token_cross_entropy` (shift inside) gives exactly the token-mean CE over the N targets of the full
    `(batch, seq_len, vocab)` logits, without computing the LM head at every document token.
    """
    shifted = labels[:, 1:]
    keep = shifted != -100
    logits = head(hidden[:, :-1][keep])
    targets = shifted[keep]
    packed_logits = torch.cat([logits, logits.new_zeros(1, logits.shape[-1])], dim=0).unsqueeze(0)
    packed_labels = torch.cat([targets.new_full((1,), -100), targets]).unsqueeze(0)
    return packed_logits, packed_labels


def _concat_right_padded(parts: Sequence[Mapping[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Stack right-padded decode batches of different lengths into one batch (padding: 0 / −100)."""
    length = max(part["inputs_embeds"].shape[1] for part in parts)
    out: dict[str, list[torch.Tensor]] = defaultdict(list)
    for part in parts:
        pad = length - part["inputs_embeds"].shape[1]
        out["inputs_embeds"].append(nn.functional.pad(part["inputs_embeds"], (0, 0, 0, pad)))
        out["attention_mask"].append(nn.functional.pad(part["attention_mask"], (0, pad)))
        out["position_ids"].append(nn.functional.pad(part["position_ids"], (0, pad)))
        out["labels"].append(nn.functional.pad(part["labels"], (0, pad), value=-100))
    return {key: torch.cat(values, dim=0) for key, values in out.items()}


def trajectory_length(row: Any, tokenizer: PreTrainedTokenizerBase, config: Any) -> int:
    """Token length of one trajectory in the LatentRAG layout (what the collator feeds the model)."""
    return len(tokenize_latent_trajectory(as_trajectory(row), tokenizer, config)["input_ids"])


def filter_by_length(
    dataset: Any, tokenizer: PreTrainedTokenizerBase, config: Any, max_length: int, name: str = "train_dataset"
) -> tuple[Any, list[int], int]:
    """Drop trajectories longer than `max_length` tokens (§8 [P]: ≤ 3000; dropping [D]), with a warning.

    Returns:
        `(kept_dataset, lengths_of_kept_rows, num_dropped)`; a `datasets.Dataset` stays one (`select`), anything else
        becomes a list.
    """
    lengths = [trajectory_length(dataset[i], tokenizer, config) for i in range(len(dataset))]
    keep = [i for i, length in enumerate(lengths) if length <= max_length]
    dropped = len(lengths) - len(keep)
    if dropped:
        logger.warning(
            "%s: dropped %d of %d trajectories longer than max_length=%d tokens (longest: %d).",
            name,
            dropped,
            len(lengths),
            max_length,
            max(lengths),
        )
        dataset = dataset.select(keep) if hasattr(dataset, "select") else [dataset[i] for i in keep]
    if not keep:
        raise ValueError(f"{name}: every trajectory is longer than max_length={max_length}.")
    return dataset, [lengths[i] for i in keep], dropped


def _load_model(model: str | os.PathLike | LatentRAGModel) -> LatentRAGModel:
    if isinstance(model, (str, os.PathLike)):
        model = AutoModel.from_pretrained(str(model))
    if not isinstance(model, LatentRAGModel):
        raise TypeError(
            f"LatentRAGTrainer trains a LatentRAGModel (or a path to one), got {type(model).__name__}. Build one with "
            "`LatentRAGModel.from_components(generator, retriever)`."
        )
    return model


# ------------------------------------------------------------------------------------------------- trainer


class LatentRAGTrainer(ModelCardMixin, LossLoggingMixin, Trainer):
    r"""
    Trainer for LatentRAG (Zheng and Worring, [arXiv 2605.06285](https://arxiv.org/abs/2605.06285)).

    One training step (specs/latentrag.md §8.1):

    1. One teacher-forced causal pass over the converted trajectories ([`LatentRAGModel.forward`]) gives every latent
       thought H^τ_t and sub-query H^s_t, and L_gen on the §7.1 targets (the LM head is applied only at the target
       positions).
    2. `v^s_t = encode_latent_queries(H^s_t)` (`Proj_ret` → trainable retriever, Eq. 5); `v*_t =
       encode_text_queries(s_t, reference=True)` on the teacher's text sub-query through the frozen reference
       retriever under `torch.no_grad()` (Eq. 6); the D_B document vectors come from the frozen index through the
       collator (constants). L_ret = KL(p ‖ q) (Eq. 8) or the ablation's form.
    3. `Proj_τ` / `Proj_s` → [`LatentRAGModel.latent_decoding_inputs`] → one second generator pass over the
       thought and sub-query decode prompts → L_dec (skipped for `"no_decoding"`).
    4. `L = L_gen + λ_ret·L_ret + λ_dec·L_dec` (Eq. 11) backpropagates into the generator LoRA, the new token rows
       (plus LM-head rows of the targets when untied), the projectors and the retriever adapter; nothing else
       trains ([`prepare_latentrag_for_training`]).

    Every term is logged separately (`loss/generation`, `loss/retrieval_alignment`, `loss/latent_decoding` and its
    halves `loss/latent_decoding_thought` / `loss/latent_decoding_subquery`) plus `action_accuracy` (the restricted
    argmax at think_m against the teacher's action), averaged over each logging interval.

    Args:
        model ([`LatentRAGModel`] or `str`): the model, or a path to a saved one. Build it with
            `LatentRAGModel.from_components(generator, retriever)`; for `loss_variant="no_pretrained_retriever"`
            build it with `use_pretrained_retriever=False`.
        args ([`LatentRAGTrainingArguments`], *optional*): a default is built when `None`.
        data_collator (*optional*): defaults to a [`LatentRAGDataCollator`] over `index`.
        train_dataset / eval_dataset: trajectories (a `datasets.Dataset` from `trajectories_to_dataset`, a list of
            [`Trajectory`] or of their dicts) with `pseudo_relevant_ids` attached (`attach_pseudo_relevant_ids` with
            [`reference_search_fn`]). Trajectories longer than `args.max_length` are dropped here (the count is in
            `num_dropped_trajectories`).
        processing_class (`PreTrainedTokenizerBase`, *optional*): the generator tokenizer; defaults to
            `model.generator_tokenizer`.
        index (`DenseIndex`, *optional*): the frozen document index built with the model's reference retriever
            (`model.build_index(corpus)`); required by the KL and InfoNCE losses unless the collator carries one.
        callbacks, optimizers, ...: as in `Trainer`.
    """

    _tag_names = ["hf_latent", "latentrag", "retrieval-augmented-generation", "agentic-rag", "latent-reasoning"]
    _name = "LatentRAG"
    _paper = {
        "title": "LatentRAG: Latent Reasoning and Retrieval for Efficient Agentic RAG",
        "id": LATENTRAG_ARXIV_ID,
        "citation": LATENTRAG_CITATION,
    }
    _template_file: str | None = LATENTRAG_TEMPLATE

    def __init__(
        self,
        model: LatentRAGModel | str | os.PathLike,
        args: LatentRAGTrainingArguments | None = None,
        data_collator: Any = None,
        train_dataset: Any = None,
        eval_dataset: Any = None,
        processing_class: PreTrainedTokenizerBase | None = None,
        index: Any = None,
        callbacks: list[TrainerCallback] | None = None,
        optimizers: tuple = (None, None),
        **kwargs: Any,
    ) -> None:
        args = trainer_arguments(
            args,
            LatentRAGTrainingArguments,
            "latentrag-output",
            "LatentRAGTrainer needs LatentRAGTrainingArguments (loss variant, β, pseudo-relevant documents, lengths); "
            "got {got}.",
        )
        model = _load_model(model)
        if processing_class is None:
            processing_class = model.generator_tokenizer
        if processing_class is None:
            raise ValueError("The model has no generator_tokenizer; pass `processing_class=`.")
        model._require_token_ids()
        weights = args.loss_weights
        # Model-side switches of the ablations (spec §9) must be built into the model.
        if model.config.use_pretrained_retriever != args.uses_pretrained_retriever:
            raise ValueError(
                f"loss_variant={args.loss_variant!r} needs a model with use_pretrained_retriever="
                f"{args.uses_pretrained_retriever}; build it with `LatentRAGModel.from_components(..., "
                f"use_pretrained_retriever={args.uses_pretrained_retriever})`."
            )
        if weights["decoding_weight"] > 0 and model.thought_decoding_projector is None:
            raise ValueError(
                "decoding_weight > 0 needs the decoding projectors; the model was built with use_latent_decoding=False "
                "(use loss_variant='no_decoding')."
            )
        self.trainable_parameter_names = prepare_latentrag_for_training(model, args)

        if data_collator is None:
            data_collator = LatentRAGDataCollator(
                tokenizer=processing_class,
                config=model.config,
                index=index,
                num_pseudo_relevant=args.num_pseudo_relevant,
            )
        self.index = index if index is not None else getattr(data_collator, "index", None)
        self.loss_fn = LatentRAGLoss.for_variant(args.loss_variant, **args.loss_kwargs(DEFAULT_RETRIEVAL_TEMPERATURE))
        self._uses_retrieval = weights["retrieval_weight"] > 0
        self._uses_decoding = weights["decoding_weight"] > 0
        if self._uses_retrieval and self.loss_fn.retrieval_alignment_loss.mode != "cosine" and self.index is None:
            raise ValueError(
                f"loss_variant={args.loss_variant!r} compares against the frozen document index: pass `index=` (built "
                "with `model.build_index(corpus)`)."
            )

        # §8: drop trajectories longer than max_length; keep the lengths for binned batching.
        self.num_dropped_trajectories = 0
        self._train_lengths: list[int] | None = None
        if train_dataset is not None and has_length(train_dataset):
            train_dataset, self._train_lengths, self.num_dropped_trajectories = filter_by_length(
                train_dataset, processing_class, model.config, args.max_length
            )
        if eval_dataset is not None and has_length(eval_dataset) and not isinstance(eval_dataset, dict):
            eval_dataset, _, _ = filter_by_length(
                eval_dataset, processing_class, model.config, args.max_length, "eval_dataset"
            )

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
        # The loss is a per-batch mean of three terms (L_ret and L_dec are not per-token sums): the Trainer divides it
        # by the accumulation steps itself, and needs no `num_items_in_batch`.
        self.model_accepts_loss_kwargs = False

        if args.calibrates_temperature:
            beta = self.calibrate_retrieval_temperature()
        else:
            beta = float(args.retrieval_temperature)
        self.retrieval_temperature = beta
        self.loss_fn = LatentRAGLoss.for_variant(args.loss_variant, **args.loss_kwargs(beta))
        # The saved model records the β it was trained with (the config field exists for this, §7.2).
        self.model.config.retrieval_temperature = beta
        logger.info(
            "LatentRAG %s: %d trainable tensors, β = %.4g, %d trajectories (%d dropped).",
            args.loss_variant,
            len(self.trainable_parameter_names),
            beta,
            len(train_dataset) if train_dataset is not None and has_length(train_dataset) else -1,
            self.num_dropped_trajectories,
        )

    # -- data ----------------------------------------------------------------------------------------------------------

    def _binned_sampler(self, dataset: Any) -> LengthBinnedSampler | None:
        if self.args.num_length_bins == 0 or self._train_lengths is None or not has_length(dataset):
            return None
        if len(dataset) != len(self._train_lengths):
            return None
        seed = self.args.data_seed if self.args.data_seed is not None else self.args.seed
        return LengthBinnedSampler(
            self._train_lengths,
            batch_size=self._train_batch_size,
            num_bins=self.args.num_length_bins,
            max_length=self.args.max_length,
            seed=seed,
        )

    def _get_train_sampler(self, train_dataset: Any = None) -> torch.utils.data.Sampler | None:
        """Binned batching (§8): each batch from one length bin ([`LengthBinnedSampler`])."""
        dataset = train_dataset if train_dataset is not None else self.train_dataset
        sampler = self._binned_sampler(dataset)
        return sampler if sampler is not None else super()._get_train_sampler(train_dataset)

    # -- β calibration -------------------------------------------------------------------------------------------------

    @torch.no_grad()
    def calibrate_retrieval_temperature(self, max_batches: int | None = None) -> float:
        """β so that the teacher's top-3 documents hold 0.5 of p over each batch's D_B (§7.2 [D], §13.4).

        Runs the frozen reference retriever on the sub-queries of up to `max_batches` (default
        `args.temperature_calibration_batches`) training batches, in the order of the first epoch, and bisects on log β
        ([`calibrate_retrieval_temperature`]); falls back to 0.03 when nothing can be calibrated.
        """
        max_batches = max_batches if max_batches is not None else self.args.temperature_calibration_batches
        if self.train_dataset is None or not has_length(self.train_dataset):
            logger.warning("retrieval_temperature='auto' without a sized train_dataset: using β = 0.03.")
            return DEFAULT_RETRIEVAL_TEMPERATURE
        sampler = self._binned_sampler(self.train_dataset)
        if sampler is not None:
            batches = sampler.batches(epoch=0)
        else:
            size = self._train_batch_size
            batches = [
                list(range(i, min(i + size, len(self.train_dataset)))) for i in range(0, len(self.train_dataset), size)
            ]
        model = self.accelerator.unwrap_model(self.model)
        references, documents, candidate_lists, offset = [], [], [], 0
        for rows in batches[:max_batches]:
            batch = self.data_collator([self.train_dataset[i] for i in rows])
            pool = batch.get("document_embeddings")
            # With at most 3 candidates the top-3 mass is 1 at every β: nothing to calibrate on.
            if not batch["sub_queries"] or pool is None or pool.shape[0] <= 3:
                continue
            references.append(model.encode_text_queries(batch["sub_queries"], reference=True).float().cpu())
            documents.append(pool.float())
            candidate_lists.extend([list(range(offset, offset + pool.shape[0]))] * len(batch["sub_queries"]))
            offset += pool.shape[0]
        if not references:
            logger.warning("retrieval_temperature='auto': no batch with more than 3 candidates; using β = 0.03.")
            return DEFAULT_RETRIEVAL_TEMPERATURE
        beta = calibrate_retrieval_temperature(torch.cat(references), torch.cat(documents), candidate_lists)
        logger.info("Calibrated β = %.4g on %d sub-queries.", beta, len(candidate_lists))
        return float(beta)

    # -- the loss ------------------------------------------------------------------------------------------------------

    def compute_loss(
        self,
        model: nn.Module,
        inputs: dict[str, Any],
        return_outputs: bool = False,
        num_items_in_batch: torch.Tensor | int | None = None,
    ):
        """The LatentRAG loss of one micro-batch (see the class docstring); `num_items_in_batch` is not used."""
        unwrapped = self.accelerator.unwrap_model(model)
        outputs = model(
            input_ids=inputs["input_ids"],
            attention_mask=inputs["attention_mask"],
            return_logits=False,
            return_hidden_states=True,
        )
        self._check_blocks(outputs, inputs)
        head = unwrapped.generator.get_output_embeddings()
        logits, labels = _packed_target_logits(outputs.last_hidden_state, inputs["labels"], head)
        loss_inputs: dict[str, Any] = {"logits": logits, "labels": labels}

        subquery_states = outputs.subquery_states
        if self._uses_retrieval and subquery_states.shape[0] > 0:
            latent = unwrapped.encode_latent_queries(subquery_states)
            with torch.no_grad():  # Eq. 6: the frozen reference retriever on the teacher's text (constant p)
                reference = unwrapped.encode_text_queries(inputs["sub_queries"], reference=True)
            documents = inputs.get("document_embeddings")
            if documents is None and self.loss_fn.retrieval_alignment_loss.mode != "cosine":
                raise ValueError(
                    "The batch has sub-queries but no candidate documents: attach pseudo_relevant_ids to the "
                    "trajectories (attach_pseudo_relevant_ids with reference_search_fn) and give the collator the index."
                )
            loss_inputs.update(
                latent_query_embeddings=latent,
                reference_query_embeddings=reference.detach(),
                document_embeddings=None if documents is None else documents.detach().to(latent.device, torch.float32),
            )
        if self._uses_decoding:
            loss_inputs.update(self._decoding_logits(unwrapped, outputs, inputs))

        loss, components = self.loss_fn(**loss_inputs)
        metrics = {f"{METRIC_PREFIX}{name}": value for name, value in components.items()}
        if self._uses_decoding:
            with torch.no_grad():
                halves = self.loss_fn.latent_decoding_loss.components(
                    *(
                        loss_inputs.get(key)
                        for key in ("thought_logits", "thought_labels", "subquery_logits", "subquery_labels")
                    )
                )
            metrics.update({f"{METRIC_PREFIX}latent_decoding_{key}": value for key, value in halves.items()})
        action_labels = inputs.get("action_labels")
        if action_labels is not None and outputs.action_logits.shape[0] == action_labels.shape[0] > 0:
            predicted = outputs.action_logits.detach().argmax(dim=-1)  # ties → ⟨query⟩, as `select_action`
            metrics[ACTION_ACCURACY_METRIC] = (predicted == action_labels.to(predicted.device)).float().mean()
        self._store_metrics(metrics, reduce=self.accelerator.num_processes > 1)
        if return_outputs:
            return loss, {"action_logits": outputs.action_logits, "components": components}
        return loss

    def _decoding_logits(self, model: LatentRAGModel, outputs: Any, inputs: Mapping[str, Any]) -> dict[str, Any]:
        """§7.3: both decode batches in one second generator pass; LM head at the target positions only."""
        parts, kinds = [], []
        for kind, states, targets in (
            ("thought", outputs.thought_states, inputs["thoughts"]),
            ("subquery", outputs.subquery_states, inputs["sub_queries"]),
        ):
            if states.shape[0] == 0:
                continue
            parts.append(model.latent_decoding_inputs(states, kind, targets=targets, tokenizer=self.processing_class))
            kinds.append(kind)
        batch = _concat_right_padded(parts)
        hidden, _, _ = model.run_generator(
            inputs_embeds=batch["inputs_embeds"],
            attention_mask=batch["attention_mask"],
            position_ids=batch["position_ids"],
        )
        head = model.generator.get_output_embeddings()
        result, start = {}, 0
        for kind, part in zip(kinds, parts):
            rows = slice(start, start + part["inputs_embeds"].shape[0])
            start = rows.stop
            logits, labels = _packed_target_logits(hidden[rows], batch["labels"][rows], head)
            result[f"{kind}_logits"], result[f"{kind}_labels"] = logits, labels
        return result

    @staticmethod
    def _check_blocks(outputs: Any, inputs: Mapping[str, Any]) -> None:
        """The placeholder blocks the model found must be the collator's, in the same order (texts align with rows)."""
        for kind, texts in (("thought", inputs["thoughts"]), ("subquery", inputs["sub_queries"])):
            positions = getattr(outputs, f"{kind}_positions")
            if positions.shape[0] != len(texts):
                raise ValueError(
                    f"The model found {positions.shape[0]} {kind} blocks but the batch has {len(texts)} {kind} texts; "
                    "were the trajectories truncated?"
                )
            expected = inputs.get(f"{kind}_positions")
            if expected is not None and not torch.equal(positions, expected.to(positions.device)):
                raise ValueError(f"The {kind} placeholder positions of the model and of the collator differ.")

    # -- evaluation ----------------------------------------------------------------------------------------------------

    def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None):
        """Evaluation gives the loss (and the logged components) only."""
        inputs = self._prepare_inputs(inputs)
        with torch.no_grad(), self.compute_loss_context_manager():
            loss = self.compute_loss(model, inputs)
        return loss.detach(), None, None

    # -- optimisation --------------------------------------------------------------------------------------------------

    def get_decay_parameter_names(self, model: nn.Module) -> list[str]:
        """The Trainer's rule, minus the row-masked embedding tables (weight decay would move their frozen rows)."""
        names = super().get_decay_parameter_names(model)
        # Every name of a tied table (named_parameters deduplicates them).
        masked = {name for name, p in model.named_parameters(remove_duplicate=False) if trainable_rows(p) is not None}
        return [name for name in names if name not in masked]


__all__ = [
    "LatentRAGTrainer",
    "filter_by_length",
    "latentrag_target_token_ids",
    "latentrag_token_ids",
    "prepare_latentrag_for_training",
    "trainable_rows",
]
