"""Tests for `hf_latent/latentrag/explicit_sft.py`: the explicit baseline's SFT data agrees with its inference loop."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModel

from hf_latent.latentrag import ExplicitAgenticRAG
from hf_latent.latentrag.explicit_sft import (
    build_explicit_sft_dataset,
    explicit_completion_segments,
    explicit_lora_config,
    explicit_sft_config,
    explicit_sft_example,
    tokenize_explicit_sft_example,
    train_explicit_baseline,
)
from hf_latent.latentrag.inference import LatentRAGTrace
from hf_latent.latentrag.trajectories import (
    render_explicit_trajectory,
    trajectories_from_multihop,
    trajectories_to_dataset,
)
from hf_latent.testing_utils import build_tiny_causal_lm, build_tiny_tokenizer


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def trajectories(demo):
    trajectories, _ = trajectories_from_multihop(demo, split="train", num_distractors_per_step=1)
    return trajectories


def test_completion_text_and_loss_mask(trajectories, build_tiny_latentrag):
    model = build_tiny_latentrag()
    tokenizer = model.generator_tokenizer
    trajectory = trajectories[0]
    example = explicit_sft_example(trajectory, tokenizer)
    assert example["prompt"].startswith("<|im_start|>user\nAnswer the given question.")
    assert example["prompt"].endswith("<|im_start|>assistant\n") and trajectory.question in example["prompt"]
    step = trajectory.steps[0]
    assert example["completion"].startswith(f"<think>{step.thought}</think>\n<search>{step.sub_query}</search>")
    assert (
        f"\n\n<information>Doc 1 (Title: {step.retrieved_titles[0]}) {step.retrieved_texts[0]}\n"
        in (example["completion"])
    )
    assert example["completion"].endswith(f"<answer>{trajectory.answer}</answer>")

    encoded = tokenize_explicit_sft_example(trajectory, tokenizer)
    ids, mask = encoded["input_ids"], encoded["completion_mask"]
    assert len(ids) == len(mask) and ids[-1] == tokenizer.eos_token_id and mask[-1] == 1
    targets = tokenizer.decode([i for i, m in zip(ids, mask) if m])
    expected = "".join(text for text, is_target in explicit_completion_segments(trajectory) if is_target)
    assert targets == expected + tokenizer.eos_token
    # Search-R1 masking: no document text and no prompt text is a target.
    masked = tokenizer.decode([i for i, m in zip(ids, mask) if not m])
    assert all(text in masked for s in trajectory.retrieval_steps for text in s.retrieved_texts)
    assert "<information>" not in targets and trajectory.question not in targets
    # LatentRAG's single-token tags are subwords everywhere, the prompt's tags included, as the baseline writes and
    # reads them; the chat markers stay single tokens.
    special = set(model.config.special_tokens)
    assert not {tokenizer.convert_ids_to_tokens(i) for i in ids} & special
    prompt_ids = ids[: mask.index(1)]
    assert tokenizer.decode(prompt_ids) == example["prompt"] and "<information>" in example["prompt"]
    assert prompt_ids[0] == tokenizer.convert_tokens_to_ids("<|im_start|>")


@pytest.mark.parametrize("chat_template", [True, False])
def test_training_sequence_is_what_the_baseline_sees_at_inference(
    trajectories, demo, chat_template, build_tiny_latentrag
):
    """Teacher-force ExplicitAgenticRAG through a trajectory: the ids it feeds (prompt, its own tokens, inserted
    blocks) must equal the SFT input ids, with LatentRAG's tags as subwords in both, and its transcript must be
    `render_explicit_trajectory`."""
    model = build_tiny_latentrag(chat_template, use_chat_template=chat_template)
    trajectory = trajectories[1]
    encoded = tokenize_explicit_sft_example(trajectory, model.generator_tokenizer, use_chat_template=chat_template)
    ids, mask = encoded["input_ids"][:-1], encoded["completion_mask"][:-1]  # the baseline stops at </answer>
    generated = [i for i, m in zip(ids, mask) if m]  # what the model must write, in order
    index = model.build_index(demo.corpus.select(range(6)), show_progress_bar=False)
    system = ExplicitAgenticRAG(model, index, demo.corpus, max_step_tokens=10_000, max_answer_tokens=10_000)
    fed: list[int] = []
    script = iter(generated)
    vocab_size = len(model.generator_tokenizer)

    def scripted_step(step_ids, cache, trace, stage):
        fed.extend(step_ids)
        logits = torch.zeros(vocab_size)
        logits[next(script, model.generator_tokenizer.eos_token_id)] = 1.0
        return logits, cache

    steps = iter(trajectory.retrieval_steps)

    def scripted_retrieve(query: str, trace: LatentRAGTrace):
        step = next(steps)
        assert query == step.sub_query
        trace.queries.append(query)
        trace.retrieved_ids.append(list(step.retrieved_ids))
        return [{"title": t, "text": x} for t, x in zip(step.retrieved_titles, step.retrieved_texts)]

    system._step = scripted_step
    system._retrieve = scripted_retrieve
    result = system(trajectory.question)
    assert result.answer == trajectory.answer
    assert result.trace.num_retrievals == trajectory.num_retrievals
    assert fed + [generated[-1]] == ids
    # The prompt's `<information>`/`<answer>` tags were read as text at inference too, not as LatentRAG's tokens.
    assert not set(fed) & set(model.generator_tokenizer.convert_tokens_to_ids(model.config.special_tokens))
    im_start = model.generator_tokenizer.convert_tokens_to_ids("<|im_start|>")
    assert (fed[0] == im_start) is chat_template
    # One format: the baseline's transcript is the rendered trajectory and the SFT completion.
    assert result.trace.generated_text == render_explicit_trajectory(trajectory)
    assert result.trace.generated_text == explicit_sft_example(trajectory, model.generator_tokenizer)["completion"]


def test_dataset_drops_long_examples(trajectories, caplog, build_tiny_latentrag):
    tokenizer = build_tiny_latentrag().generator_tokenizer
    lengths = sorted(len(tokenize_explicit_sft_example(t, tokenizer)["input_ids"]) for t in trajectories)
    dataset, dropped = build_explicit_sft_dataset(
        trajectories_to_dataset(trajectories), tokenizer, max_length=lengths[-2]
    )
    assert dropped == 1 and len(dataset) == len(trajectories) - 1
    assert set(dataset.column_names) == {"input_ids", "completion_mask"}
    with pytest.raises(ValueError):
        build_explicit_sft_dataset(trajectories, tokenizer, max_length=10)


def test_config_defaults_are_cpu_sane(tmp_path):
    config = explicit_sft_config(str(tmp_path), per_device_train_batch_size=2)
    assert config.bf16 is False and config.activation_checkpointing is False and config.gradient_checkpointing is False
    assert config.completion_only_loss is True and config.max_length is None
    assert config.learning_rate == 1e-4 and config.weight_decay == 0.01 and config.per_device_train_batch_size == 2
    lora = explicit_lora_config()
    assert (lora.r, lora.lora_alpha, lora.lora_dropout) == (16, 64, 0.1)


def test_sft_trains_masks_documents_and_saves_a_usable_baseline(tmp_path, demo, build_tiny_latentrag):
    trajectories, _ = trajectories_from_multihop(demo, split="train", num_distractors_per_step=0)
    model = build_tiny_latentrag()
    before = {n: p.detach().clone() for n, p in model.generator.named_parameters()}
    args = explicit_sft_config(
        str(tmp_path / "sft"),
        max_steps=6,
        per_device_train_batch_size=2,
        learning_rate=3e-3,
        warmup_steps=0,
        logging_steps=1,
        use_cpu=True,
        disable_tqdm=True,
    )
    model, trainer = train_explicit_baseline(model, trajectories, args=args)
    # SFTTrainer built the labels from the completion mask: -100 on the prompt and every information block.
    row = trainer.train_dataset[0]
    encoded = tokenize_explicit_sft_example(trajectories[0], model.generator_tokenizer)
    assert row["input_ids"] == encoded["input_ids"]
    assert row["labels"] == [i if m else -100 for i, m in zip(encoded["input_ids"], encoded["completion_mask"])]
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    assert len(losses) == 6 and sum(losses[-3:]) < sum(losses[:3])
    # The LoRA is merged: a plain causal LM whose projections moved and whose embeddings did not.
    assert not any("lora" in n for n, _ in model.generator.named_parameters())
    after = dict(model.generator.named_parameters())
    assert not torch.equal(
        after["model.layers.0.self_attn.q_proj.weight"], before["model.layers.0.self_attn.q_proj.weight"]
    )
    assert torch.equal(after["model.embed_tokens.weight"], before["model.embed_tokens.weight"])

    model.save_pretrained(tmp_path / "explicit")
    reloaded = AutoModel.from_pretrained(str(tmp_path / "explicit"))
    corpus = demo.corpus.select(range(6))
    index = reloaded.build_index(corpus, show_progress_bar=False)
    result = ExplicitAgenticRAG(reloaded, index, corpus, max_step_tokens=8, max_answer_tokens=4)(
        trajectories[0].question
    )
    assert isinstance(result.answer, str) and result.trace.num_forward_passes > 0


def test_dequantized_gguf_marker_does_not_block_training():
    """The default backbone is converted from GGUF and keeps a `quant_method: gguf` config although its weights are
    plain floats; `Trainer` would refuse to fine-tune it."""
    from transformers.quantizers.quantizer_gguf import GgufHfQuantizer
    from transformers.trainer_utils import validate_quantization_for_training
    from transformers.utils.quantization_config import GgufConfig

    from hf_latent.latentrag.explicit_sft import _drop_dequantized_gguf_marker

    generator = build_tiny_causal_lm(build_tiny_tokenizer(), architecture="qwen2")
    config = GgufConfig(gguf_file="model.gguf")
    generator.config.quantization_config = config
    generator.hf_quantizer = GgufHfQuantizer(config)
    generator.is_quantized = True
    with pytest.raises(ValueError):
        validate_quantization_for_training(generator)
    _drop_dequantized_gguf_marker(generator)
    assert not getattr(generator, "is_quantized", False) and getattr(generator, "hf_quantizer", None) is None
    assert not hasattr(generator.config, "quantization_config")
    validate_quantization_for_training(generator)
