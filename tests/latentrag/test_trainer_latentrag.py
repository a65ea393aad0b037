"""Tests for `hf_latent/latentrag/trainer_latentrag.py` on tiny random components and the demo corpus (CPU, offline)."""

from __future__ import annotations

import logging

import pytest
import torch
import torch.nn.functional as F
from transformers import AutoModel

from hf_latent.latentrag import LatentRAGModel, run_latentrag
from hf_latent.latentrag.collator_latentrag import LengthBinnedSampler, reference_search_fn
from hf_latent.latentrag.losses import top_k_mass
from hf_latent.latentrag.trainer_latentrag import (
    LatentRAGTrainer,
    latentrag_target_token_ids,
    latentrag_token_ids,
    trainable_rows,
)
from hf_latent.latentrag.training_args_latentrag import LatentRAGTrainingArguments
from hf_latent.latentrag.trajectories import (
    attach_pseudo_relevant_ids,
    tokenize_latent_trajectory,
    trajectories_from_multihop,
    trajectories_to_dataset,
)


BETA = 0.05


pytestmark = pytest.mark.usefixtures("one_thread")


def make_args(tmp_path, **kwargs) -> LatentRAGTrainingArguments:
    defaults = {
        "output_dir": str(tmp_path / "out"),
        "use_cpu": True,
        "bf16": False,
        "report_to": "none",
        "save_strategy": "no",
        "per_device_train_batch_size": 2,
        "logging_steps": 1,
        "retrieval_temperature": BETA,
        "disable_tqdm": True,
        "seed": 0,
    }
    defaults.update(kwargs)
    return LatentRAGTrainingArguments(**defaults)


@pytest.fixture(scope="module")
def setup(demo, build_tiny_latentrag):
    """A reference model (never trained), its index and trajectories with pseudo-relevant ids."""
    model = build_tiny_latentrag()
    index = model.build_index(demo.corpus, show_progress_bar=False)
    trajectories, _ = trajectories_from_multihop(demo, split="train", num_distractors_per_step=0)
    trajectories = attach_pseudo_relevant_ids(trajectories, reference_search_fn(model, index, k=5), k=5)
    return index, trajectories


def direct_components(model, batch, beta=BETA, mode="kl"):
    """The spec's formulas (§7.1-§7.3, §9) computed directly, with full logits."""
    out = model(batch["input_ids"], batch["attention_mask"], return_logits=True)
    log_probs = F.log_softmax(out.logits[:, :-1].float(), dim=-1)
    targets = batch["labels"][:, 1:]
    mask = targets != -100
    generation = -log_probs.gather(-1, targets.clamp(min=0)[..., None]).squeeze(-1)[mask].mean()

    v_s = F.normalize(model.encode_latent_queries(out.subquery_states), dim=-1)
    v_star = F.normalize(model.encode_text_queries(batch["sub_queries"], reference=True), dim=-1)
    documents = F.normalize(batch["document_embeddings"].float(), dim=-1)
    if mode == "cosine":
        retrieval = (1 - (v_s * v_star).sum(-1)).mean()
    else:
        log_q = F.log_softmax(v_s @ documents.T / beta, dim=-1)
        if mode == "kl":
            log_p = F.log_softmax(v_star @ documents.T / beta, dim=-1)
            retrieval = (log_p.exp() * (log_p - log_q)).sum(-1).mean()
        else:  # multi-positive InfoNCE, positives = teacher top-3 in D_B
            positives = (v_star @ documents.T).topk(3, dim=-1).indices
            retrieval = -torch.logsumexp(log_q.gather(1, positives), dim=-1).mean()

    decoding = {}
    for kind, states, texts in (
        ("thought", out.thought_states, batch["thoughts"]),
        ("subquery", out.subquery_states, batch["sub_queries"]),
    ):
        inputs = model.latent_decoding_inputs(states, kind, targets=texts)
        logits = model.generator(
            inputs_embeds=inputs["inputs_embeds"],
            attention_mask=inputs["attention_mask"],
            position_ids=inputs["position_ids"],
        ).logits
        log_probs = F.log_softmax(logits[:, :-1].float(), dim=-1)
        targets = inputs["labels"][:, 1:]
        mask = targets != -100
        decoding[kind] = -log_probs.gather(-1, targets.clamp(min=0)[..., None]).squeeze(-1)[mask].mean()
    return {
        "generation": generation,
        "retrieval_alignment": retrieval,
        "latent_decoding": decoding["thought"] + decoding["subquery"],
        "latent_decoding_thought": decoding["thought"],
        "latent_decoding_subquery": decoding["subquery"],
    }


def trainer_components(trainer, batch):
    """compute_loss in eval mode (deterministic) → (total, logged components)."""
    trainer.model.eval()
    with torch.no_grad():
        loss = trainer.compute_loss(trainer.model, batch)
    metrics = {key.removeprefix("loss/"): values[-1] for key, values in trainer._metrics["eval"].items()}
    trainer._metrics["eval"].clear()
    return float(loss), metrics


@pytest.mark.parametrize("mode", ["kl", "cosine", "infonce"])
def test_loss_equals_the_spec_formulas(tmp_path, setup, mode, build_tiny_latentrag):
    index, trajectories = setup
    model = build_tiny_latentrag()
    trainer = LatentRAGTrainer(model, make_args(tmp_path, loss_variant=mode), train_dataset=trajectories, index=index)
    batch = trainer.data_collator(trajectories[:3])
    total, logged = trainer_components(trainer, batch)
    with torch.no_grad():
        expected = direct_components(model, batch, mode=mode)
    for key, value in expected.items():
        assert logged[key] == pytest.approx(float(value), rel=1e-5, abs=1e-6), key
    expected_total = expected["generation"] + expected["retrieval_alignment"] + expected["latent_decoding"]
    assert total == pytest.approx(float(expected_total), rel=1e-5)
    assert 0.0 <= logged["action_accuracy"] <= 1.0


def test_gradient_accumulation_divides_the_loss(tmp_path, setup, build_tiny_latentrag):
    index, trajectories = setup
    trainer = LatentRAGTrainer(build_tiny_latentrag(), make_args(tmp_path), train_dataset=trajectories, index=index)
    assert trainer.model_accepts_loss_kwargs is False  # per-batch mean: the Trainer divides by the GA steps


def test_reference_retriever_and_index_get_no_gradient(tmp_path, setup, monkeypatch, build_tiny_latentrag):
    index, trajectories = setup
    model = build_tiny_latentrag()
    trainer = LatentRAGTrainer(model, make_args(tmp_path, max_steps=3), train_dataset=trajectories, index=index)
    batch = trainer.data_collator(trajectories[:2])
    references = []
    original = model.encode_text_queries

    def recording(*args, **kwargs):
        vectors = original(*args, **kwargs)
        references.append(vectors)
        return vectors

    monkeypatch.setattr(model, "encode_text_queries", recording)
    model.train()
    trainer.compute_loss(model, batch).backward()
    monkeypatch.undo()
    assert references and all(not v.requires_grad and v.grad_fn is None for v in references)
    assert not batch["document_embeddings"].requires_grad and batch["document_embeddings"].grad is None
    for name, parameter in model.retriever.named_parameters():
        if "lora_" in name:  # θ_ret: the adapter trains
            assert parameter.requires_grad
        else:  # θ*_ret: the frozen reference (and document tower)
            assert not parameter.requires_grad and parameter.grad is None, name
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.retriever_adapter_parameters())
    model.zero_grad(set_to_none=True)

    texts = ["copper lantern inventor", "Tarnwick river"]
    doc_ids = index.doc_ids[:8]
    with torch.no_grad():
        reference_before = model.encode_text_queries(texts, reference=True)
        trainable_before = model.encode_text_queries(texts, reference=False)
    index_before = index.get_embeddings(doc_ids).copy()
    trainer.train()
    with torch.no_grad():
        reference_after = model.encode_text_queries(texts, reference=True)
        trainable_after = model.encode_text_queries(texts, reference=False)
    assert torch.equal(reference_before, reference_after)  # θ*_ret never moved
    assert not torch.equal(trainable_before, trainable_after)  # θ_ret did
    assert (index.get_embeddings(doc_ids) == index_before).all()


@pytest.mark.parametrize("tied", [True, False])
def test_only_latentrag_parameters_train(tmp_path, setup, tied, build_tiny_latentrag):
    index, trajectories = setup
    model = build_tiny_latentrag(tie_word_embeddings=tied)
    generator_base = {n: p.detach().clone() for n, p in model.generator.named_parameters()}
    embedding = model.generator.get_input_embeddings().weight
    head = model.generator.get_output_embeddings().weight
    trainer = LatentRAGTrainer(
        model, make_args(tmp_path, max_steps=2, learning_rate=1e-2), train_dataset=trajectories, index=index
    )
    assert model.config.generator_lora_rank == 16 and model.config.generator_lora_alpha == 64
    for name in trainer.trainable_parameter_names:
        assert (
            "lora_" in name
            or name.split(".")[0]
            in {"retrieval_projector", "thought_decoding_projector", "subquery_decoding_projector"}
            or name in {"generator.model.embed_tokens.weight", "generator.lm_head.weight"}
        ), name
    assert not any(n.startswith("retriever.") and "lora_" not in n for n in trainer.trainable_parameter_names)
    new_rows = latentrag_token_ids(model.config)
    assert trainable_rows(embedding) == new_rows
    if not tied:
        assert trainable_rows(head) == latentrag_target_token_ids(model.config)
    # No weight decay on the row-masked tables (it would move their frozen rows).
    decay = set(trainer.get_decay_parameter_names(model))
    assert "generator.model.embed_tokens.weight" not in decay and "generator.lm_head.weight" not in decay
    trainer.train()
    for name, parameter in model.generator.named_parameters():
        if "lora_" in name:
            continue
        before = generator_base[name.replace("base_layer.", "")]
        if parameter is embedding or parameter is head:
            rows = trainable_rows(parameter)
            frozen = torch.ones(parameter.shape[0], dtype=torch.bool)
            frozen[rows] = False
            assert torch.equal(parameter[frozen], before[frozen]), name  # pretrained rows untouched
            assert not torch.equal(parameter[rows], before[rows]), name  # new rows moved
        else:
            assert torch.equal(parameter, before), name


def test_training_lowers_every_loss_term_and_the_checkpoint_reloads(tmp_path, setup, demo, build_tiny_latentrag):
    index, trajectories = setup
    model = build_tiny_latentrag()
    args = make_args(tmp_path, max_steps=24, learning_rate=3e-3, warmup_steps=0, num_length_bins=20)
    trainer = LatentRAGTrainer(model, args, train_dataset=trajectories, index=index)
    batches = [trainer.data_collator(trajectories[i : i + 4]) for i in range(0, len(trajectories), 4)]

    def mean_components():
        values = [trainer_components(trainer, batch)[1] for batch in batches]
        return {key: sum(v[key] for v in values) / len(values) for key in values[0]}

    before = mean_components()
    trainer.train()
    after = mean_components()
    for key in ("generation", "retrieval_alignment", "latent_decoding"):
        assert after[key] < before[key], (key, before[key], after[key])
    logged = [row for row in trainer.state.log_history if "loss" in row]
    assert len(logged) == 24
    assert all(
        {"loss/generation", "loss/retrieval_alignment", "loss/latent_decoding", "action_accuracy"} <= set(row)
        for row in logged
    )

    trainer.save_model(str(tmp_path / "ckpt"))
    card = (tmp_path / "ckpt" / "README.md").read_text()
    assert "2605.06285" in card and "latentrag" in card and "@misc{zheng2026latentrag" in card
    reloaded = AutoModel.from_pretrained(str(tmp_path / "ckpt"))
    assert isinstance(reloaded, LatentRAGModel) and reloaded.config.generator_lora_rank == 16
    assert reloaded.config.retrieval_temperature == BETA
    model.eval()
    with torch.no_grad():
        original = model(batches[0]["input_ids"], batches[0]["attention_mask"])
        loaded = reloaded(batches[0]["input_ids"], batches[0]["attention_mask"])
    torch.testing.assert_close(loaded.logits, original.logits)
    question = demo.split("test")[0]["question"]
    answer = run_latentrag(reloaded, question, index, demo.corpus, max_answer_tokens=4)
    assert isinstance(answer.answer, str)
    assert answer.answer == run_latentrag(model, question, index, demo.corpus, max_answer_tokens=4).answer


def test_each_ablation_changes_exactly_its_terms(tmp_path, setup, build_tiny_latentrag):
    index, trajectories = setup
    model = build_tiny_latentrag()
    components = {}
    trainers = {}
    for variant in ("kl", "cosine", "infonce", "no_decoding"):
        trainer = LatentRAGTrainer(
            model, make_args(tmp_path, loss_variant=variant), train_dataset=trajectories, index=index
        )
        batch = trainer.data_collator(trajectories[:3])
        components[variant] = trainer_components(trainer, batch)
        trainers[variant] = trainer
    kl_total, kl = components["kl"]
    for variant in ("cosine", "infonce"):
        total, values = components[variant]
        assert values["generation"] == kl["generation"] and values["latent_decoding"] == kl["latent_decoding"]
        assert values["retrieval_alignment"] != pytest.approx(kl["retrieval_alignment"])
        assert total == pytest.approx(values["generation"] + values["retrieval_alignment"] + values["latent_decoding"])
    total, values = components["no_decoding"]
    assert "latent_decoding" not in values and "latent_decoding_thought" not in values
    assert values["generation"] == kl["generation"] and values["retrieval_alignment"] == kl["retrieval_alignment"]
    assert total == pytest.approx(kl["generation"] + kl["retrieval_alignment"])
    assert not any(p.requires_grad for p in model.thought_decoding_projector.parameters())

    # "w/o pretrained retriever" is a model switch: same generator, same decoding projectors, no f_ret.
    with pytest.raises(ValueError, match="use_pretrained_retriever"):
        LatentRAGTrainer(model, make_args(tmp_path, loss_variant="no_pretrained_retriever"), index=index)
    ablated = build_tiny_latentrag(use_pretrained_retriever=False)
    for name in ("thought_decoding_projector", "subquery_decoding_projector"):
        getattr(ablated, name).load_state_dict(getattr(model, name).state_dict())
    with pytest.raises(ValueError, match="use_pretrained_retriever"):
        LatentRAGTrainer(ablated, make_args(tmp_path, loss_variant="kl"), index=index)
    trainer = LatentRAGTrainer(
        ablated, make_args(tmp_path, loss_variant="no_pretrained_retriever"), train_dataset=trajectories, index=index
    )
    assert not any(p.requires_grad for p in ablated.retriever.parameters())
    _, values = trainer_components(trainer, trainer.data_collator(trajectories[:3]))
    assert values["generation"] == pytest.approx(kl["generation"], rel=1e-6)
    assert values["latent_decoding"] == pytest.approx(kl["latent_decoding"], rel=1e-6)
    assert values["retrieval_alignment"] != pytest.approx(kl["retrieval_alignment"])


def test_binned_batches_and_length_filter(tmp_path, setup, caplog, build_tiny_latentrag):
    index, trajectories = setup
    tokenizer_model = build_tiny_latentrag()
    lengths = [
        len(tokenize_latent_trajectory(t, tokenizer_model.generator_tokenizer, tokenizer_model.config)["input_ids"])
        for t in trajectories
    ]
    limit = sorted(lengths)[-3]  # drop the 2 longest
    with caplog.at_level(logging.WARNING):
        trainer = LatentRAGTrainer(
            tokenizer_model,
            make_args(tmp_path, max_length=limit, num_length_bins=4),
            train_dataset=trajectories_to_dataset(trajectories),
            index=index,
        )
    assert trainer.num_dropped_trajectories == 2 and "dropped 2 of 14" in caplog.text
    assert len(trainer.train_dataset) == 12 and max(trainer._train_lengths) <= limit
    sampler = trainer._get_train_sampler()
    assert isinstance(sampler, LengthBinnedSampler) and sampler.num_bins == 4 and sampler.max_length == limit
    batches = sampler.batches(epoch=0)
    bins = [{sampler.bin_of(trainer._train_lengths[i]) for i in batch} for batch in batches]
    assert sum(len(b) > 1 for b in bins) <= 3  # only the pooled leftovers of the 4 bins can mix
    assert len(list(trainer.get_train_dataloader())) == 6


def test_auto_temperature_is_calibrated_to_half_top3_mass(tmp_path, setup, build_tiny_latentrag):
    index, trajectories = setup
    model = build_tiny_latentrag()
    trainer = LatentRAGTrainer(
        model, make_args(tmp_path, retrieval_temperature="auto"), train_dataset=trajectories, index=index
    )
    beta = trainer.retrieval_temperature
    assert beta != 0.03 and model.config.retrieval_temperature == beta
    assert trainer.loss_fn.retrieval_alignment_loss.temperature == beta
    references, documents, lists, offset = [], [], [], 0
    for rows in trainer._get_train_sampler().batches(epoch=0):
        batch = trainer.data_collator([trajectories[i] for i in rows])
        with torch.no_grad():
            references.append(model.encode_text_queries(batch["sub_queries"], reference=True))
        documents.append(batch["document_embeddings"])
        lists += [list(range(offset, offset + len(batch["candidate_doc_ids"])))] * len(batch["sub_queries"])
        offset += len(batch["candidate_doc_ids"])
    mass = top_k_mass(torch.cat(references), torch.cat(documents), beta, candidate_index_lists=lists)
    assert mass == pytest.approx(0.5, abs=0.02)


def test_rejects_wrong_arguments(tmp_path, setup, build_tiny_latentrag):
    index, trajectories = setup
    from transformers import TrainingArguments

    with pytest.raises(TypeError, match="LatentRAGTrainingArguments"):
        LatentRAGTrainer(build_tiny_latentrag(), TrainingArguments(output_dir=str(tmp_path)), index=index)
    with pytest.raises(ValueError, match="index"):
        LatentRAGTrainer(build_tiny_latentrag(), make_args(tmp_path), train_dataset=trajectories)
    with pytest.raises(ValueError, match="decoding projectors"):
        LatentRAGTrainer(build_tiny_latentrag(use_latent_decoding=False), make_args(tmp_path), index=index)
    # cosine needs no index
    LatentRAGTrainer(build_tiny_latentrag(), make_args(tmp_path, loss_variant="cosine"), train_dataset=trajectories)
