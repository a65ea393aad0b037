"""Tests for `hf_latent/latentrag/modeling_latentrag.py` and `projector.py` on tiny random components."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch
from safetensors import safe_open
from transformers import AutoModel

from hf_latent.latentrag import (
    LatentProjector,
    LatentRAGConfig,
    LatentRAGModel,
    LoRALinear,
    add_latentrag_tokens,
    encode_trajectory,
    locate_placeholder_blocks,
    retriever_query_template_ids,
)
from hf_latent.latentrag.projector import default_projector_num_heads
from hf_latent.testing_utils import (
    build_tiny_causal_lm,
    build_tiny_encoder,
    build_tiny_encoder_tokenizer,
    build_tiny_tokenizer,
)


DOCS = [
    [{"title": "Paris", "text": "Paris is the capital of France."}, {"title": "Seine", "text": "The Seine flows."}],
    [{"title": "Berlin", "text": "Berlin is the capital of Germany."}],
]


def build_tiny_latentrag(architecture: str = "qwen2", **overrides) -> LatentRAGModel:
    tokenizer = build_tiny_tokenizer()
    generator = build_tiny_causal_lm(tokenizer, architecture=architecture)
    retriever_tokenizer = build_tiny_encoder_tokenizer()
    retriever = build_tiny_encoder(retriever_tokenizer)
    overrides.setdefault("retriever_name", "tiny-bert:mean")
    return LatentRAGModel.from_components(
        generator=generator,
        retriever=retriever,
        generator_tokenizer=tokenizer,
        retriever_tokenizer=retriever_tokenizer,
        **overrides,
    )


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return build_tiny_latentrag()


def _trajectory(model, answer="Paris"):
    encoded = encode_trajectory(
        model.generator_tokenizer, model.config, "What is the capital of France?", DOCS, answer
    )
    return torch.tensor([encoded["input_ids"]]), torch.tensor([encoded["labels"]])


# ------------------------------------------------------------------------------------------------------ tokens


def test_tokens_are_added_resized_and_mean_initialised():
    tokenizer = build_tiny_tokenizer()
    generator = build_tiny_causal_lm(tokenizer, architecture="qwen2", tie_word_embeddings=False)
    old_vocab = generator.get_input_embeddings().weight.shape[0]
    old_mean = generator.get_input_embeddings().weight.detach().mean(0)
    old_head_mean = generator.get_output_embeddings().weight.detach().mean(0)
    retriever_tokenizer = build_tiny_encoder_tokenizer()
    model = LatentRAGModel.from_components(
        generator=generator,
        retriever=build_tiny_encoder(retriever_tokenizer),
        generator_tokenizer=tokenizer,
        retriever_tokenizer=retriever_tokenizer,
    )
    config = model.config
    assert len(tokenizer) == old_vocab + 24
    assert model.generator.get_input_embeddings().weight.shape[0] == len(tokenizer)
    for token, token_id in zip(config.thought_tokens, config.thought_token_ids):
        assert tokenizer.encode(token, add_special_tokens=False) == [token_id]
    assert config.query_action_token_id == tokenizer.convert_tokens_to_ids("<query_1>")
    assert config.answer_action_token_id == tokenizer.convert_tokens_to_ids("<answer>")
    new_rows = model.generator.get_input_embeddings().weight[old_vocab:]
    torch.testing.assert_close(new_rows, old_mean.expand_as(new_rows))
    head_rows = model.generator.get_output_embeddings().weight[old_vocab:]
    torch.testing.assert_close(head_rows, old_head_mean.expand_as(head_rows))
    # Adding twice is idempotent.
    assert add_latentrag_tokens(tokenizer, config)["num_added"] == 0


def test_retriever_template_ids():
    tokenizer = build_tiny_encoder_tokenizer()
    cls_id, sep_id = tokenizer.cls_token_id, tokenizer.sep_token_id
    assert retriever_query_template_ids(tokenizer) == ([cls_id], [sep_id])
    prefix, suffix = retriever_query_template_ids(tokenizer, "Query:", "")
    assert prefix == [cls_id, *tokenizer("Query:", add_special_tokens=False)["input_ids"]] and suffix == [sep_id]
    # A tokenizer that adds no special tokens (a causal LM's) gives bare prefix/suffix ids.
    assert retriever_query_template_ids(build_tiny_tokenizer(), "", "") == ([], [])


# --------------------------------------------------------------------------------------------------- projector


def test_projector_shapes_heads_and_output_rms():
    assert default_projector_num_heads(64) == 1
    assert default_projector_num_heads(576) == 4  # SmolLM2: 576 / 128 = 4.5 -> 4 (a divisor)
    assert default_projector_num_heads(3584) == 28  # Qwen2.5-7B, spec §5
    assert default_projector_num_heads(896) == 7
    torch.manual_seed(0)
    projector = LatentProjector(64, 32)
    torch.nn.init.normal_(projector.output_proj.weight, std=0.02)
    projector.reset_output_scale(0.5)
    out = projector(torch.randn(8, 16, 64))
    assert out.shape == (8, 16, 32)
    assert out.pow(2).mean().sqrt().item() == pytest.approx(0.5, rel=0.25)
    with pytest.raises(ValueError):
        LatentProjector(64, 32, num_heads=3)
    # Bidirectional: the first output depends on the last input.
    x = torch.randn(1, 4, 64, requires_grad=True)
    projector(x)[0, 0].sum().backward()
    assert x.grad[0, -1].abs().sum() > 0


def test_model_projectors_match_embedding_rms(model):
    assert model.retrieval_projector.output_size == model.retriever.get_input_embeddings().embedding_dim
    assert model.thought_decoding_projector.output_size == model.hidden_size
    states = torch.randn(32, model.config.num_subquery_tokens, model.hidden_size)
    with torch.no_grad():
        projected = model.retrieval_projector(states)
    target = model.retriever.get_input_embeddings().weight.pow(2).mean().sqrt().item()
    assert projected.pow(2).mean().sqrt().item() == pytest.approx(target, rel=0.3)


# ------------------------------------------------------------------------------------------------------ forward


def test_forward_gathers_placeholder_states(model):
    input_ids, labels = _trajectory(model)
    config = model.config
    out = model(input_ids, labels=labels)
    m, n, d = config.num_thought_tokens, config.num_subquery_tokens, model.hidden_size
    assert out.thought_states.shape == (3, m, d)
    assert out.subquery_states.shape == (2, n, d)
    assert out.thought_step_index.tolist() == [0, 1, 2] and out.subquery_step_index.tolist() == [0, 1]
    assert out.action_logits.shape == (3, 2)
    assert out.logits.shape == (1, input_ids.shape[1], len(model.generator_tokenizer))
    assert torch.isfinite(out.loss)
    # The action labels sit right after each thought block (HF labels, shifted inside the loss).
    after_thoughts = out.thought_positions[:, -1] + 1
    assert labels[0, after_thoughts].tolist() == [config.query_action_token_id] * 2 + [config.answer_start_token_id]
    # States are the last-layer states at the placeholder positions.
    hidden = model(input_ids, return_hidden_states=True).last_hidden_state
    torch.testing.assert_close(out.subquery_states[1], hidden[0, out.subquery_positions[1]])
    # Memory-light loss: LM head only at labelled positions.
    light = model(input_ids, labels=labels, return_logits=False)
    assert light.logits is None
    torch.testing.assert_close(light.loss, out.loss)
    torch.testing.assert_close(
        out.action_logits,
        out.logits[0, out.thought_positions[:, -1]][:, [config.query_action_token_id, config.answer_start_token_id]],
    )


def test_forward_batches_with_padding(model):
    input_ids, _ = _trajectory(model)
    short = encode_trajectory(model.generator_tokenizer, model.config, "Who?", DOCS[:1])["input_ids"]
    pad = model.generator_tokenizer.pad_token_id
    batch = torch.full((2, input_ids.shape[1]), pad)
    batch[0] = input_ids[0]
    batch[1, : len(short)] = torch.tensor(short)
    mask = (torch.arange(batch.shape[1]) < torch.tensor([[input_ids.shape[1]], [len(short)]])).long()
    out = model(batch, attention_mask=mask)
    assert out.thought_batch_index.tolist() == [0, 0, 0, 1, 1]
    assert out.subquery_batch_index.tolist() == [0, 0, 1]
    single = model(input_ids)
    torch.testing.assert_close(out.subquery_states[:2], single.subquery_states, atol=1e-4, rtol=1e-4)


def test_locate_placeholder_blocks_rejects_broken_blocks():
    ids = torch.tensor([[5, 1, 2, 3, 9, 1, 2, 3]])
    batch, positions, steps = locate_placeholder_blocks(ids, [1, 2, 3])
    assert batch.tolist() == [0, 0] and positions.tolist() == [[1, 2, 3], [5, 6, 7]] and steps.tolist() == [0, 1]
    with pytest.raises(ValueError):
        locate_placeholder_blocks(torch.tensor([[1, 2, 9, 1]]), [1, 2])


# ------------------------------------------------------------------------------------------- latent retrieval


def _word_embeddings(model, texts):
    tokenizer = model.retriever_tokenizer
    ids = [tokenizer(text, add_special_tokens=False)["input_ids"] for text in texts]
    width = max(len(row) for row in ids)
    table = model.retriever.get_input_embeddings()
    span = torch.zeros(len(ids), width, table.embedding_dim)
    mask = torch.zeros(len(ids), width, dtype=torch.long)
    for i, row in enumerate(ids):
        span[i, : len(row)] = table(torch.tensor(row))
        mask[i, : len(row)] = 1
    return span, mask


@pytest.mark.parametrize("prefix", ["", "Query:"])
def test_real_token_embeddings_through_the_span_path_equal_text_encoding(prefix):
    """Spec §13.2: replacing the query span by the real token embeddings reproduces f_ret(text)."""
    model = build_tiny_latentrag(retriever_query_prefix=prefix)
    # Make the trainable tower differ from the reference.
    with torch.no_grad():
        for parameter in model.retriever_adapter_parameters():
            parameter.normal_(std=0.05)
    texts = ["Who wrote the book?", "What is the capital of France and Germany?", "Paris"]
    span, mask = _word_embeddings(model, texts)
    for reference in (True, False):
        expected = model.encode_text_queries(texts, reference=reference)
        with torch.no_grad():
            got = model.encode_query_embeddings(span, span_mask=mask, reference=reference)
        torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    # One unpadded row goes through the fast path (no span mask) with the same result.
    single, _ = _word_embeddings(model, texts[:1])
    with torch.no_grad():
        torch.testing.assert_close(model.encode_query_embeddings(single), model.encode_text_queries(texts[:1], False))
    assert not torch.allclose(model.encode_text_queries(texts, True), model.encode_text_queries(texts, False))


def test_decoder_retriever_with_instruction_and_last_token_pooling():
    """Qwen3-Embedding layout (§6): `Instruct: ...\nQuery:` + span, last-token pooling, on a tiny Qwen3 encoder."""
    from transformers import AutoConfig

    tokenizer = build_tiny_tokenizer()
    retriever_tokenizer = build_tiny_tokenizer(chat_template=None)
    retriever = AutoModel.from_config(
        AutoConfig.for_model(
            "qwen3",
            vocab_size=len(retriever_tokenizer),
            hidden_size=64,
            intermediate_size=128,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            head_dim=16,
        )
    ).eval()
    model = LatentRAGModel.from_components(
        generator=build_tiny_causal_lm(tokenizer, architecture="llama"),
        retriever=retriever,
        generator_tokenizer=tokenizer,
        retriever_tokenizer=retriever_tokenizer,
    )
    config = model.config
    assert config.retriever_pooling == "last_token" and config.retriever_query_prefix.startswith("Instruct: ")
    assert config.retriever_name == "Qwen3Model:last_token"
    texts = ["Who wrote the book?", "What is the capital of France?"]
    span, mask = _word_embeddings(model, texts)
    with torch.no_grad():
        got = model.encode_query_embeddings(span, span_mask=mask, reference=True)
        states = torch.randn(2, config.num_subquery_tokens, model.hidden_size)
        latent = model.encode_latent_queries(states)
    torch.testing.assert_close(got, model.encode_text_queries(texts), atol=1e-5, rtol=1e-5)
    assert latent.shape == (2, 64)


def test_latent_query_equals_retriever_on_projected_embeddings(model):
    """Proj_ret → replace span → f_ret → mean pool → L2 equals running the retriever on those inputs_embeds."""
    states = torch.randn(3, model.config.num_subquery_tokens, model.hidden_size)
    with torch.no_grad():
        got = model.encode_latent_queries(states)
        projected = model.retrieval_projector(states)
        table = model.retriever.get_input_embeddings()
        prefix = table(torch.tensor(model.config.retriever_query_prefix_ids)).expand(3, -1, -1)
        suffix = table(torch.tensor(model.config.retriever_query_suffix_ids)).expand(3, -1, -1)
        embeds = torch.cat([prefix, projected, suffix], dim=1)
        hidden = model.retriever(inputs_embeds=embeds).last_hidden_state
        expected = torch.nn.functional.normalize(hidden.mean(dim=1), dim=-1)
    assert got.shape == (3, model.retrieval_dim)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(got.norm(dim=-1), torch.ones(3))


def test_gradients_reach_states_projector_and_adapter_not_reference_base(model):
    states = torch.randn(2, model.config.num_subquery_tokens, model.hidden_size, requires_grad=True)
    model.zero_grad()
    model.encode_latent_queries(states).sum().backward()
    assert states.grad.abs().sum() > 0
    assert model.retrieval_projector.output_proj.weight.grad is not None
    lora = next(m for m in model.retriever.modules() if isinstance(m, LoRALinear))
    assert lora.lora_A.grad is not None or lora.lora_B.grad is not None
    model.zero_grad()
    reference = model.encode_text_queries(["capital of France"], reference=True)
    assert not reference.requires_grad


def test_without_pretrained_retriever_ablation():
    model = build_tiny_latentrag(use_pretrained_retriever=False, use_latent_decoding=False)
    assert model.thought_decoding_projector is None and model.subquery_decoding_projector is None
    states = torch.randn(2, model.config.num_subquery_tokens, model.hidden_size)
    with torch.no_grad():
        got = model.encode_latent_queries(states)
        expected = torch.nn.functional.normalize(model.retrieval_projector(states).mean(dim=1), dim=-1)
    assert got.shape == (2, model.retrieval_dim)
    torch.testing.assert_close(got, expected)
    with pytest.raises(ValueError, match="decoding is off"):
        model.latent_decoding_inputs(states, "subquery")


# -------------------------------------------------------------------------------------------- latent decoding


def test_latent_decoding_inputs_and_decode(model):
    config, tokenizer = model.config, model.generator_tokenizer
    thoughts = torch.randn(2, config.num_thought_tokens, model.hidden_size)
    inputs = model.latent_decoding_inputs(thoughts, "thought", targets=["find the river", "answer"])
    prompt_ids = tokenizer(config.thought_decoding_prompt, add_special_tokens=False)["input_ids"]
    newline_ids = tokenizer("\n", add_special_tokens=False)["input_ids"]
    target_ids = tokenizer("find the river", add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    prompt_len = len(prompt_ids) + config.num_thought_tokens + len(newline_ids)
    assert inputs["inputs_embeds"].shape == (2, prompt_len + len(target_ids), model.hidden_size)
    assert inputs["labels"][0, :prompt_len].eq(-100).all()
    assert inputs["labels"][0, prompt_len:].tolist() == target_ids
    # The projected latents sit right after the prompt.
    with torch.no_grad():
        projected = model.thought_decoding_projector(thoughts)
    start = len(prompt_ids)
    torch.testing.assert_close(inputs["inputs_embeds"][:, start : start + config.num_thought_tokens], projected)
    loss = model.generator(**{k: inputs[k] for k in ("inputs_embeds", "attention_mask", "labels")}).loss
    assert torch.isfinite(loss)
    subqueries = torch.randn(3, config.num_subquery_tokens, model.hidden_size)
    decoded = model.decode_latents(thoughts, subqueries, max_new_tokens=3)
    assert len(decoded.thoughts) == 2 and len(decoded.subqueries) == 3
    assert 1 <= decoded.num_forward_passes <= 3


# ---------------------------------------------------------------------------------------------- save / load


def _safetensors_keys(folder):
    keys = []
    for name in os.listdir(folder):
        if name.endswith(".safetensors"):
            with safe_open(os.path.join(folder, name), "pt") as handle:
                keys.extend(handle.keys())
    return keys


def test_save_and_auto_load_round_trip(model, tmp_path):
    with torch.no_grad():
        for parameter in model.retriever_adapter_parameters():
            parameter.normal_(std=0.02)
    model.save_pretrained(tmp_path)
    assert (tmp_path / "generator_tokenizer" / "tokenizer_config.json").is_file()
    assert (tmp_path / "retriever_tokenizer" / "tokenizer_config.json").is_file()
    assert {"configuration_latentrag.py", "modeling_latentrag.py", "projector.py"} <= set(os.listdir(tmp_path))
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["auto_map"]["AutoModel"].endswith("modeling_latentrag.LatentRAGModel")

    # The retriever is stored once: base weights plus the LoRA delta, no second copy of the reference.
    keys = _safetensors_keys(tmp_path)
    assert sum(key.endswith("word_embeddings.weight") for key in keys) == 1
    assert any(key.endswith("query.base_layer.weight") for key in keys)
    assert any(key.endswith("query.lora_B") for key in keys)
    retriever_keys = [key for key in keys if key.startswith("retriever.")]
    assert len(retriever_keys) == len(set(k for k, _ in model.retriever.state_dict().items()))
    assert not any("reference" in key for key in keys)

    loaded = AutoModel.from_pretrained(tmp_path)
    assert isinstance(loaded, LatentRAGModel)
    assert loaded.generator_tokenizer.convert_tokens_to_ids("<query_16>") == model.config.subquery_token_ids[-1]
    assert loaded.retriever_tokenizer is not None
    states = torch.randn(2, model.config.num_subquery_tokens, model.hidden_size)
    input_ids, _ = _trajectory(model)
    with torch.no_grad():
        torch.testing.assert_close(loaded.encode_latent_queries(states), model.encode_latent_queries(states))
        torch.testing.assert_close(loaded(input_ids).logits, model(input_ids).logits)
        torch.testing.assert_close(
            loaded.encode_text_queries(["a query"], reference=True), model.encode_text_queries(["a query"], True)
        )
    torch.testing.assert_close(loaded.retrieval_projector.output_scale, model.retrieval_projector.output_scale)


def test_trust_remote_code_loads_without_hf_latent(model, tmp_path):
    model.save_pretrained(tmp_path / "model")
    states = torch.randn(2, model.config.num_subquery_tokens, model.hidden_size)
    torch.save(states, tmp_path / "states.pt")
    with torch.no_grad():
        expected = model.encode_latent_queries(states)
    script = textwrap.dedent(
        f"""
        import sys
        sys.modules["hf_latent"] = None  # the package must not be importable
        import torch
        from transformers import AutoModel
        model = AutoModel.from_pretrained({str(tmp_path / "model")!r}, trust_remote_code=True)
        assert type(model).__module__.startswith("transformers_modules"), type(model).__module__
        assert model.generator_tokenizer is not None and model.retriever_tokenizer is not None
        states = torch.load({str(tmp_path / "states.pt")!r})
        with torch.no_grad():
            torch.save(model.encode_latent_queries(states), {str(tmp_path / "out.pt")!r})
            model.encode_text_queries(["a text query"])
        try:
            model.build_index({{}})
        except ImportError as error:
            assert "hf_latent" in str(error)
        else:
            raise AssertionError("build_index should need hf_latent")
        print("ok")
        """
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stderr[-3000:]
    torch.testing.assert_close(torch.load(tmp_path / "out.pt"), expected)


def test_random_model_from_config():
    generator = build_tiny_causal_lm(architecture="llama").config
    retriever = build_tiny_encoder().config
    config = LatentRAGConfig(generator_config=generator, retriever_config=retriever, num_subquery_tokens=2)
    model = LatentRAGModel(config)
    assert model.retrieval_projector.output_size == retriever.hidden_size
    assert model.retrieval_projector.output_scale.item() != 1.0  # RMS-matched at construction
    with pytest.raises(ValueError, match="token ids"):
        model(torch.tensor([[1, 2, 3]]))


def test_batched_latent_decoding_equals_one_item_at_a_time(model):
    torch.manual_seed(1)
    thoughts = torch.randn(2, model.config.num_thought_tokens, model.hidden_size)
    subqueries = torch.randn(1, model.config.num_subquery_tokens, model.hidden_size)
    batched = model.decode_latents(thoughts, subqueries, max_new_tokens=4)
    alone = [model.decode_latents(thoughts[i : i + 1], max_new_tokens=4).token_ids[0] for i in range(2)]
    alone.append(model.decode_latents(subquery_states=subqueries, max_new_tokens=4).token_ids[0])
    assert batched.token_ids == alone
    assert not set(sum(alone, [])) & set(model.config.subquery_token_ids)  # placeholders are never decoded
    # Left padding is exact: a padded row gives the same next-token logits as the row alone.
    mixed = model.latent_decoding_inputs(thoughts, "thought", targets=["a b c d e f", "a"], padding_side="left")
    alone = model.latent_decoding_inputs(thoughts[1:], "thought", targets=["a"], padding_side="left")
    assert mixed["attention_mask"][1, 0] == 0  # the short row is padded
    with torch.no_grad():
        logits = [
            model.run_generator(
                **{k: v for k, v in inputs.items() if k != "labels"}, logits_positions=slice(-1, None)
            )[1]
            for inputs in (mixed, alone)
        ]
    torch.testing.assert_close(logits[0][1], logits[1][0], atol=1e-5, rtol=1e-5)


def test_optional_generator_adapter(tmp_path):
    model = build_tiny_latentrag(generator_lora_rank=4)
    wrapped = [name for name, module in model.generator.named_modules() if isinstance(module, LoRALinear)]
    assert wrapped and not any("lm_head" in name for name in wrapped)
    assert any(name.endswith("self_attn.q_proj") for name in wrapped) and any(
        name.endswith("mlp.down_proj") for name in wrapped
    )
    with torch.no_grad():
        for module in model.generator.modules():
            if isinstance(module, LoRALinear):
                module.lora_B.normal_(std=0.02)
    input_ids, _ = _trajectory(model)
    model.save_pretrained(tmp_path)
    loaded = AutoModel.from_pretrained(tmp_path)
    with torch.no_grad():
        torch.testing.assert_close(loaded(input_ids).logits, model(input_ids).logits)


@pytest.mark.parametrize("accepts_loss_kwargs", [False, True])
def test_trainer_averages_the_loss_over_gradient_accumulation(tmp_path, accepts_loss_kwargs):
    """`forward` ignores `num_items_in_batch`, so `accepts_loss_kwargs = False` must make `Trainer` divide each
    micro-batch loss by the accumulation steps: the logged loss is the mean of the micro-batch losses. With `True`
    (what `Trainer` would infer from the `**kwargs` of `forward`), it is their sum."""
    from transformers import Trainer, TrainingArguments, default_data_collator

    assert LatentRAGModel.accepts_loss_kwargs is False
    torch.manual_seed(0)
    model = build_tiny_latentrag()
    examples = []
    for answer in ("Paris", "Berlin is the capital"):
        input_ids, labels = _trajectory(model, answer)
        examples.append({"input_ids": input_ids[0], "labels": labels[0]})
    with torch.no_grad():
        losses = [model(ex["input_ids"][None], labels=ex["labels"][None]).loss.item() for ex in examples]
    assert abs(losses[0] - losses[1]) > 0.01  # the mean is not just one of them
    model.accepts_loss_kwargs = accepts_loss_kwargs
    args = TrainingArguments(
        output_dir=str(tmp_path),
        per_device_train_batch_size=1,
        gradient_accumulation_steps=2,
        max_steps=1,
        learning_rate=0.0,
        logging_steps=1,
        use_cpu=True,
        bf16=False,
        report_to="none",
        save_strategy="no",
        disable_tqdm=True,
    )
    trainer = Trainer(model=model, args=args, train_dataset=examples, data_collator=default_data_collator)
    assert trainer.model_accepts_loss_kwargs is accepts_loss_kwargs
    trainer.train()
    logged = next(entry["loss"] for entry in trainer.state.log_history if "loss" in entry)
    expected = sum(losses) if accepts_loss_kwargs else sum(losses) / 2
    assert logged == pytest.approx(expected, abs=1e-3)
