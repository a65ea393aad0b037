"""SFT of the explicit agentic baseline (Search-R1 style) on the same trajectories as LatentRAG (specs §8, §10).

The teacher protocol of LatentRAG is Search-R1: the model writes `<think>…</think>`, `<search>…</search>`, reads the
`<information>…</information>` block the search engine inserts, and ends with `<answer>…</answer>`. This module turns
[`Trajectory`] objects into SFT examples in **exactly the format** that
[`hf_latent.latentrag.ExplicitAgenticRAG`] builds at inference, so training and inference agree token by token:

- prompt: `SEARCH_R1_PROMPT.format(question=…)` as one user turn (chat template when the tokenizer has one and
  `config.use_chat_template`), else plain text + `"\\n"` ([`explicit_prompt`]);
- per retrieval step: `<think>{thought}</think>\\n<search>{sub_query}</search>` (what the model writes; generation
  stops at `</search>`), then the block the baseline inserts, `\\n\\n<information>{docs}</information>\\n\\n` (one
  `Doc i (Title: …) …` line per passage);
- final step: `<think>{thought}</think>\\n<answer>{answer}</answer>` and EOS.

The text comes from the explicit-format functions of `trajectories.py`, which the baseline's inference loop uses too.
The prompt and every completion piece are tokenised separately with `trajectories.encode_explicit_text`, as the
baseline tokenises its prompt and inserted blocks: LatentRAG's placeholders and single-token tags (`<information>`,
`<answer>`, …) are split into subwords, the tokenizer's own special tokens (chat-template markers) stay whole. The
baseline also masks LatentRAG's tokens out of its logits, so it writes the tags as subwords too.

**Loss mask (Search-R1).** Only the model's own text is a target: thoughts, search queries, the answer and EOS; the
prompt and the `<information>` blocks are masked. TRL's `completion_only_loss` masks only the prompt of a
prompt/completion example, and the documents sit *inside* the completion, so the examples are given to `SFTTrainer`
already tokenised, with a `completion_mask` that is 0 on the prompt **and** on every information block:
`SFTTrainer` turns it into the labels (`completion_only_loss=True`; tokens with `completion_mask == 0` get −100).
[`explicit_sft_example`] gives the same example as prompt/completion text for inspection.

[`train_explicit_baseline`] runs `SFTTrainer` with LoRA on the generator of a [`LatentRAGModel`] and merges the adapter,
so the result is a `LatentRAGModel` whose generator is the SFT-trained explicit agent; save it with `save_pretrained`
and evaluate it with `ExplicitAgenticRAG(model, index, corpus)` (its reference retriever and tokenizer are those of
LatentRAG, so both systems retrieve from the same index).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from datasets import Dataset

from .collator_latentrag import as_trajectory
from .prompts import uses_chat_template
from .trajectories import (
    DEFAULT_DOCUMENT_TEMPLATE,
    Trajectory,
    encode_explicit_text,
    explicit_prompt,
    explicit_trajectory_segments,
)


if TYPE_CHECKING:
    from peft import LoraConfig
    from transformers import PreTrainedTokenizerBase
    from trl import SFTConfig, SFTTrainer

    from .modeling_latentrag import LatentRAGModel


logger = logging.getLogger(__name__)

# The paper's LoRA (spec §2/§8.2), also used for the explicit baseline: r 16, α 64, dropout 0.1, all projections.
EXPLICIT_LORA_TARGET_MODULES = "all-linear"


def explicit_completion_segments(
    trajectory: Trajectory | Mapping[str, Any], document_template: str = DEFAULT_DOCUMENT_TEMPLATE
) -> list[tuple[str, bool]]:
    """The completion as `(text, is_target)` pieces, split where `ExplicitAgenticRAG` switches between generating
    and inserting (`trajectories.explicit_trajectory_segments`). Concatenated, they are
    `trajectories.render_explicit_trajectory`: the text the baseline's context holds after the prompt when it follows
    the trajectory."""
    return explicit_trajectory_segments(as_trajectory(trajectory), document_template)


def explicit_sft_example(
    trajectory: Trajectory | Mapping[str, Any],
    tokenizer: PreTrainedTokenizerBase,
    use_chat_template: bool = True,
    document_template: str = DEFAULT_DOCUMENT_TEMPLATE,
) -> dict[str, str]:
    """One prompt/completion SFT example as text (`{"prompt", "completion"}`), EOS excluded.

    Training uses [`tokenize_explicit_sft_example`], which masks the information blocks inside the completion.
    """
    trajectory = as_trajectory(trajectory)
    return {
        "prompt": explicit_prompt(trajectory.question, tokenizer, use_chat_template),
        "completion": "".join(text for text, _ in explicit_completion_segments(trajectory, document_template)),
    }


def tokenize_explicit_sft_example(
    trajectory: Trajectory | Mapping[str, Any],
    tokenizer: PreTrainedTokenizerBase,
    use_chat_template: bool = True,
    document_template: str = DEFAULT_DOCUMENT_TEMPLATE,
    append_eos: bool = True,
    latent_tokens: Sequence[str] | None = None,
) -> dict[str, list[int]]:
    """Token ids and `completion_mask` of one explicit SFT example (1 = loss target).

    The prompt and every completion piece are tokenised on their own with `trajectories.encode_explicit_text`, exactly
    as `ExplicitAgenticRAG` feeds them at inference: LatentRAG's tokens (`latent_tokens`) as subwords, the tokenizer's
    own BOS only on a plain-text prompt. The mask is 1 on thoughts, searches, the answer and EOS; 0 on the prompt and
    the `<information>` blocks (Search-R1's loss masking).

    Args:
        latent_tokens (`Sequence[str]`, *optional*): LatentRAG's token strings, `model.config.special_tokens`;
            defaults to `trajectories.latent_special_tokens()` (m = 4, n = 16, default tags).

    Returns:
        `dict` with `input_ids`, `completion_mask` (`list[int]`, both of length `num_tokens`).
    """
    trajectory = as_trajectory(trajectory)
    templated = uses_chat_template(tokenizer, use_chat_template)
    prompt = explicit_prompt(trajectory.question, tokenizer, use_chat_template)
    input_ids = encode_explicit_text(tokenizer, prompt, latent_tokens, add_special_tokens=not templated)
    mask = [0] * len(input_ids)
    for text, target in explicit_completion_segments(trajectory, document_template):
        ids = encode_explicit_text(tokenizer, text, latent_tokens)
        input_ids += ids
        mask += [int(target)] * len(ids)
    if append_eos and tokenizer.eos_token_id is not None:
        input_ids.append(tokenizer.eos_token_id)
        mask.append(1)
    return {"input_ids": input_ids, "completion_mask": mask}


def build_explicit_sft_dataset(
    trajectories: Sequence[Trajectory | Mapping[str, Any]] | Dataset,
    tokenizer: PreTrainedTokenizerBase,
    use_chat_template: bool = True,
    document_template: str = DEFAULT_DOCUMENT_TEMPLATE,
    max_length: int | None = 3000,
    latent_tokens: Sequence[str] | None = None,
) -> tuple[Dataset, int]:
    """A tokenised SFT dataset (`input_ids`, `completion_mask`) for `SFTTrainer`; examples longer than `max_length`
    tokens are dropped with a warning (as LatentRAG's, spec §8 [D]). `latent_tokens` as in
    [`tokenize_explicit_sft_example`].

    Returns:
        `(dataset, num_dropped)`.
    """
    rows = [
        tokenize_explicit_sft_example(
            row, tokenizer, use_chat_template, document_template, latent_tokens=latent_tokens
        )
        for row in trajectories
    ]
    kept = [row for row in rows if max_length is None or len(row["input_ids"]) <= max_length]
    dropped = len(rows) - len(kept)
    if dropped:
        logger.warning(
            "Explicit SFT: dropped %d of %d examples longer than %d tokens.", dropped, len(rows), max_length
        )
    if not kept:
        raise ValueError("No explicit SFT example left (all are longer than max_length).")
    return Dataset.from_list(kept), dropped


def explicit_sft_config(output_dir: str, **overrides: Any) -> SFTConfig:
    """An `SFTConfig` with the paper's optimisation settings and CPU-sane defaults (overridable).

    TRL's configs default to bf16 and activation checkpointing, both about 10× slower on CPU; here they are off.
    `completion_only_loss=True` makes `SFTTrainer` use the `completion_mask` of [`build_explicit_sft_dataset`];
    `max_length=None` because long examples are dropped beforehand (TRL would truncate them).
    """
    from trl import SFTConfig

    defaults: dict[str, Any] = {
        "output_dir": output_dir,
        "learning_rate": 1e-4,
        "weight_decay": 0.01,
        "warmup_steps": 0.03,
        "lr_scheduler_type": "linear",
        "num_train_epochs": 5.0,
        "per_device_train_batch_size": 8,
        "bf16": False,
        "activation_checkpointing": False,
        "completion_only_loss": True,
        "max_length": None,
        "report_to": "none",
        "logging_steps": 10,
        "save_strategy": "no",
    }
    defaults.update(overrides)
    return SFTConfig(**defaults)


def explicit_lora_config(r: int = 16, lora_alpha: float = 64, lora_dropout: float = 0.1, **kwargs: Any) -> LoraConfig:
    """The paper's LoRA (r 16, α 64, dropout 0.1 on every linear projection, never the LM head) as a `LoraConfig`."""
    from peft import LoraConfig

    kwargs.setdefault("target_modules", EXPLICIT_LORA_TARGET_MODULES)
    kwargs.setdefault("task_type", "CAUSAL_LM")
    return LoraConfig(r=r, lora_alpha=lora_alpha, lora_dropout=lora_dropout, **kwargs)


def _drop_dequantized_gguf_marker(generator: Any) -> None:
    """Forget a GGUF `quantization_config` on a model whose weights are plain floats.

    A causal LM converted from GGUF (the default SmolLM2 backbone, `hf_latent.resources.convert_gguf_to_hf`) keeps
    `quantization_config = {"quant_method": "gguf"}` in its config, so `from_pretrained` marks it quantized although
    GGUF weights are always dequantised at load; `Trainer` then refuses to fine-tune it. Nothing is quantized here, so
    the marker is removed (the weights are untouched).
    """
    quantizer = getattr(generator, "hf_quantizer", None)
    method = getattr(getattr(quantizer, "quantization_config", None), "quant_method", None)
    if quantizer is None or getattr(method, "value", method) != "gguf":
        return
    if all(parameter.is_floating_point() for parameter in generator.parameters()):
        quantizer.remove_quantization_config(generator)
        for module in generator.modules():
            config = getattr(module, "config", None)
            if config is not None and getattr(config, "_is_quantized", False):
                config._is_quantized = False


def train_explicit_baseline(
    model: LatentRAGModel,
    train_trajectories: Sequence[Trajectory | Mapping[str, Any]] | Dataset,
    args: SFTConfig | None = None,
    peft_config: LoraConfig | None = None,
    eval_trajectories: Sequence[Trajectory | Mapping[str, Any]] | Dataset | None = None,
    max_length: int | None = 3000,
    merge_adapter: bool = True,
    callbacks: list | None = None,
) -> tuple[LatentRAGModel, SFTTrainer]:
    """SFT the explicit agentic baseline with TRL's `SFTTrainer` and LoRA on `model.generator`.

    Args:
        model ([`LatentRAGModel`]): gives the generator (trained in place), its tokenizer, `use_chat_template` and
            `document_template`. Use a fresh `LatentRAGModel.from_components(...)`, not the LatentRAG model you train.
        train_trajectories: the trajectories LatentRAG trains on.
        args (`SFTConfig`, *optional*): defaults to [`explicit_sft_config`]`("explicit-sft-output")`.
        peft_config (`LoraConfig`, *optional*): defaults to [`explicit_lora_config`]`()`.
        eval_trajectories (*optional*): evaluation trajectories.
        max_length (`int`, *optional*, defaults to 3000): longer examples are dropped.
        merge_adapter (`bool`, *optional*, defaults to `True`): merge the LoRA into the generator after training, so
            `model.save_pretrained` writes a plain `LatentRAGModel` that `ExplicitAgenticRAG` uses directly.
        callbacks (*optional*): `TrainerCallback`s.

    Returns:
        `(model, trainer)`: the model with its trained generator, and the `SFTTrainer` (for its logs).
    """
    from trl import SFTTrainer

    tokenizer = model.generator_tokenizer
    if tokenizer is None:
        raise ValueError("The model has no generator_tokenizer.")
    config = model.config
    dataset_kwargs = {
        "use_chat_template": config.use_chat_template,
        "document_template": config.document_template,
        "max_length": max_length,
        "latent_tokens": config.special_tokens,
    }
    train_dataset, _ = build_explicit_sft_dataset(train_trajectories, tokenizer, **dataset_kwargs)
    eval_dataset = None
    if eval_trajectories is not None:
        eval_dataset, _ = build_explicit_sft_dataset(eval_trajectories, tokenizer, **dataset_kwargs)
    args = args if args is not None else explicit_sft_config("explicit-sft-output")
    if not args.completion_only_loss:
        raise ValueError("completion_only_loss must be True: it is what masks the prompt and the documents.")
    generator = model.generator
    _drop_dequantized_gguf_marker(generator)
    generator.train()
    trainer = SFTTrainer(
        model=generator,
        args=args,
        train_dataset=train_dataset,
        eval_dataset=eval_dataset,
        processing_class=tokenizer,
        peft_config=peft_config if peft_config is not None else explicit_lora_config(),
        callbacks=callbacks,
    )
    trainer.train()
    if merge_adapter and hasattr(trainer.model, "merge_and_unload"):
        model.generator = trainer.model.merge_and_unload()
    model.eval()
    return model, trainer


__all__ = [
    "EXPLICIT_LORA_TARGET_MODULES",
    "build_explicit_sft_dataset",
    "explicit_completion_segments",
    "explicit_lora_config",
    "explicit_prompt",
    "explicit_sft_config",
    "explicit_sft_example",
    "tokenize_explicit_sft_example",
    "train_explicit_baseline",
]
