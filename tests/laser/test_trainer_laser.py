"""Tests for hf_latent/laser/trainer_laser.py: loss terms vs hand computation, gradient flow, ablations, training,
saving and reloading, LoRA, the frozen teacher and bad data (specs/laser.md §3–§7, STYLE §7)."""

from __future__ import annotations

import logging

import pytest
import torch
import torch.nn.functional as F
from transformers import AutoModel

from hf_latent.data import load_demo_corpus
from hf_latent.laser import LaserModel
from hf_latent.laser.data_laser import laser_rows_from_multihop, passage_text
from hf_latent.laser.losses import LOSS_VARIANTS
from hf_latent.laser.trainer_laser import LaserTrainer, laser_lora_config
from hf_latent.laser.training_args_laser import LaserTrainingArguments
from hf_latent.testing_utils import build_tiny_causal_lm


TERMS = ("latent_contrastive", "explicit_contrastive", "output_kl", "trajectory_kl")


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny models train fastest on one thread, and much faster than on two when the CPU is shared."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def demo():
    return load_demo_corpus()


@pytest.fixture(scope="module")
def rows(demo):
    return laser_rows_from_multihop(demo)


def _model(tokenizer, seed: int = 0, **config) -> LaserModel:
    return LaserModel.from_backbone(build_tiny_causal_lm(tokenizer, "qwen3", seed=seed), **config)


def _args(tmp_path, **overrides) -> LaserTrainingArguments:
    defaults = {
        "output_dir": str(tmp_path),
        "use_cpu": True,
        "bf16": False,
        "report_to": "none",
        "save_strategy": "no",
        "per_device_train_batch_size": 4,
        "disable_tqdm": True,
    }
    return LaserTrainingArguments(**{**defaults, **overrides})


def _trainer(tokenizer, rows, tmp_path, model=None, **overrides) -> LaserTrainer:
    model = model if model is not None else _model(tokenizer)
    return LaserTrainer(model, _args(tmp_path, **overrides), train_dataset=rows, processing_class=tokenizer)


def _batch(trainer, rows, size: int = 3):
    return trainer._prepare_inputs(trainer.data_collator([rows[i] for i in range(size)]))


def _components(trainer) -> dict[str, float]:
    """The values recorded by the last compute_loss call (unweighted, unscaled)."""
    return {key.split("/", 1)[1]: values[-1] for key, values in trainer._metrics["train"].items() if "/" in key}


def _kl(teacher_logits, student_logits):
    """Row-mean KL(softmax(teacher) || softmax(student)), written out."""
    p = torch.softmax(teacher_logits, dim=-1)
    return (p * (torch.log_softmax(teacher_logits, dim=-1) - torch.log_softmax(student_logits, dim=-1))).sum(-1).mean()


def _hand_terms(model, batch, K, G, separator_id, tau=0.02, tau_kd=0.02, tau_mid=0.05) -> dict[str, torch.Tensor]:
    """specs/laser.md §4, terms 1-4, from the model outputs."""
    with torch.no_grad():
        P = model(batch["passage_input_ids"], batch["passage_attention_mask"], num_latent_steps=K).embeddings
        latent = model(batch["query_input_ids"], batch["query_attention_mask"], num_latent_steps=K)
        explicit = model.encode_explicit(
            batch["explicit_input_ids"],
            batch["explicit_attention_mask"],
            batch["explicit_cot_start"],
            batch["explicit_cot_end"],
            separator_token_ids=separator_id,
            num_latent_steps=K,
        )
    Q, H = latent.embeddings, latent.latent_states
    Q_star, T = explicit.explicit_embeddings, explicit.segment_states
    B, d = Q.shape
    targets = torch.arange(B) * G
    A_L = F.normalize(H.reshape(B * K, d), dim=-1) @ P.T
    A_E = F.normalize(T.reshape(B * K, d), dim=-1) @ P.T
    return {
        "latent_contrastive": F.cross_entropy(Q @ P.T / tau, targets),
        "explicit_contrastive": F.cross_entropy(Q_star @ P.T / tau, targets),
        "output_kl": _kl(Q_star @ P.T / tau_kd, Q @ P.T / tau_kd),
        "trajectory_kl": _kl(A_E / tau_mid, A_L / tau_mid),
    }


# ----------------------------------------------------------------------------------------------------------------------
# Loss values and gradient flow
# ----------------------------------------------------------------------------------------------------------------------


def test_compute_loss_terms_equal_the_spec_formulas(qwen3_tokenizer, rows, tmp_path):
    trainer = _trainer(qwen3_tokenizer, rows, tmp_path, temperature=0.03, kd_temperature=0.04)
    trainer.model.train()
    batch = _batch(trainer, rows, size=3)
    assert batch["passage_input_ids"].shape[0] == 3 * 2  # [pos_0, neg_0, pos_1, ...]
    loss = trainer.compute_loss(trainer.model, batch)

    expected = _hand_terms(
        trainer.model, batch, K=3, G=2, separator_id=trainer.separator_token_ids, tau=0.03, tau_kd=0.04
    )
    components = _components(trainer)
    assert set(components) == set(TERMS)
    for name in TERMS:
        assert components[name] == pytest.approx(expected[name].item(), rel=1e-5, abs=1e-5), name
    total = sum(weight * expected[name] for name, weight in zip(TERMS, (1.0, 1.0, 10.0, 0.1)))
    assert loss.item() == pytest.approx(total.item(), rel=1e-5, abs=1e-5)
    assert trainer._metrics["train"]["num_segments"][-1] >= 1


def _capture_teacher_gradients(trainer):
    """Hooks on the explicit view's outputs Q* and T; returns the dict they fill."""
    grads: dict[str, torch.Tensor] = {}
    original = trainer.model.encode_explicit

    def encode_explicit(*args, **kwargs):
        output = original(*args, **kwargs)
        output.explicit_embeddings.register_hook(lambda grad: grads.__setitem__("teacher_query", grad))
        output.segment_states.register_hook(lambda grad: grads.__setitem__("segment_states", grad))
        return output

    trainer.model.encode_explicit = encode_explicit
    return grads


@pytest.mark.parametrize(
    "weights",
    [
        {"latent_contrastive_weight": 0, "explicit_contrastive_weight": 0, "output_kl_weight": 1},
        {"latent_contrastive_weight": 0, "explicit_contrastive_weight": 0, "output_kl_weight": 0},
    ],
    ids=["output_kl_only", "trajectory_kl_only"],
)
def test_no_gradient_reaches_the_teacher_side_of_either_kl(qwen3_tokenizer, rows, tmp_path, weights):
    trainer = _trainer(qwen3_tokenizer, rows, tmp_path, trajectory_kl_weight=1, **weights)
    grads = _capture_teacher_gradients(trainer)
    trainer.model.train()
    trainer.compute_loss(trainer.model, _batch(trainer, rows)).backward()
    assert grads == {}  # neither Q* nor T received a gradient
    # ... while the student side did.
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in trainer.model.parameters())


def test_teacher_query_gradient_comes_from_the_explicit_infonce_only(qwen3_tokenizer, rows, tmp_path):
    full = _trainer(qwen3_tokenizer, rows, tmp_path)
    full_grads = _capture_teacher_gradients(full)
    full.model.train()
    full.compute_loss(full.model, _batch(full, rows)).backward()
    assert "teacher_query" in full_grads and "segment_states" not in full_grads  # spec §4: T <- none

    explicit_only = _trainer(qwen3_tokenizer, rows, tmp_path, loss_variant="no_co_learning_stage1")
    explicit_grads = _capture_teacher_gradients(explicit_only)
    explicit_only.model.train()
    explicit_only.compute_loss(explicit_only.model, _batch(explicit_only, rows)).backward()
    torch.testing.assert_close(full_grads["teacher_query"], explicit_grads["teacher_query"], rtol=1e-5, atol=1e-7)


# ----------------------------------------------------------------------------------------------------------------------
# Ablations (paper Table 5, specs/laser.md §7)
# ----------------------------------------------------------------------------------------------------------------------

# variant -> (terms computed, K, explicit view run, latent query loop run)
ABLATIONS = {
    "laser": (set(TERMS), 3, True, True),
    "basic_contrastive": ({"latent_contrastive"}, 1, False, True),
    "no_explicit_view": ({"latent_contrastive"}, 3, False, True),
    "no_latent_view": ({"latent_contrastive", "explicit_contrastive", "output_kl"}, 1, True, True),
    "no_output_distillation": ({"latent_contrastive", "explicit_contrastive", "trajectory_kl"}, 3, True, True),
    "no_process_alignment": ({"latent_contrastive", "explicit_contrastive", "output_kl"}, 3, True, True),
    "no_co_learning_stage1": ({"explicit_contrastive"}, 3, True, False),
    "no_co_learning_stage2": ({"latent_contrastive", "output_kl", "trajectory_kl"}, 3, True, True),
}


def _instrument(model):
    """Record every latent forward's K and every explicit-view call on `model`."""
    calls = {"latent": [], "explicit": 0}
    forward, encode_explicit = model.forward, model.encode_explicit

    def recording_forward(*args, **kwargs):
        calls["latent"].append(kwargs.get("num_latent_steps"))
        return forward(*args, **kwargs)

    def recording_explicit(*args, **kwargs):
        calls["explicit"] += 1
        return encode_explicit(*args, **kwargs)

    model.forward, model.encode_explicit = recording_forward, recording_explicit
    return calls


@pytest.fixture(scope="module")
def laser_reference(qwen3_tokenizer, rows, tmp_path_factory):
    trainer = _trainer(qwen3_tokenizer, rows, tmp_path_factory.mktemp("reference"))
    trainer.model.train()
    with torch.no_grad():
        trainer.compute_loss(trainer.model, _batch(trainer, rows))
    return _components(trainer)


def test_ablations_cover_every_variant():
    assert set(ABLATIONS) == set(LOSS_VARIANTS)


@pytest.mark.parametrize("variant", sorted(ABLATIONS))
def test_each_ablation_changes_exactly_its_terms(qwen3_tokenizer, rows, tmp_path, laser_reference, variant):
    expected_terms, expected_k, runs_explicit, runs_latent_query = ABLATIONS[variant]
    model = _model(qwen3_tokenizer)
    teacher = _model(qwen3_tokenizer, seed=1) if LOSS_VARIANTS[variant].frozen_teacher else None
    trainer = LaserTrainer(
        model,
        _args(tmp_path, loss_variant=variant),
        train_dataset=rows,
        processing_class=qwen3_tokenizer,
        teacher_model=teacher,
    )
    assert trainer.num_latent_steps == expected_k
    assert trainer.model.config.num_latent_steps == expected_k  # saved models encode with the trained K
    student_calls = _instrument(trainer.model)
    teacher_calls = _instrument(trainer.teacher_model) if teacher is not None else None
    batch = _batch(trainer, rows)
    assert ("explicit_input_ids" in batch) == runs_explicit  # the collator skips the explicit view when unused

    trainer.model.train()
    loss = trainer.compute_loss(trainer.model, batch)
    loss.backward()
    components = _components(trainer)
    assert set(components) == expected_terms
    assert all(k == expected_k for k in student_calls["latent"])
    assert len(student_calls["latent"]) == 1 + runs_latent_query  # passages (+ queries)
    if teacher is None:
        assert student_calls["explicit"] == int(runs_explicit)
    else:  # stage 2: Q*, T and the teacher's own passage encodings come from the frozen teacher, without gradient
        assert student_calls["explicit"] == 0
        assert teacher_calls["explicit"] == 1 and teacher_calls["latent"] == [expected_k]
        assert all(p.grad is None and not p.requires_grad for p in trainer.teacher_model.parameters())
    if expected_k == 3 and teacher is None:  # the remaining terms are the full method's, unchanged
        for name in expected_terms:
            assert components[name] == pytest.approx(laser_reference[name], rel=1e-5, abs=1e-6), name


def test_explicit_weight_overrides_the_variant(qwen3_tokenizer, rows, tmp_path):
    trainer = _trainer(qwen3_tokenizer, rows, tmp_path, output_kl_weight=0.0, num_latent_steps=2)
    assert trainer.loss_fn.weights["output_kl"] == 0.0 and trainer.num_latent_steps == 2
    trainer.model.train()
    trainer.compute_loss(trainer.model, _batch(trainer, rows))
    assert set(_components(trainer)) == {"latent_contrastive", "explicit_contrastive", "trajectory_kl"}


def test_frozen_teacher_is_required_and_only_for_stage2(qwen3_tokenizer, rows, tmp_path):
    with pytest.raises(ValueError, match="no_co_learning_stage1"):
        _trainer(qwen3_tokenizer, rows, tmp_path, loss_variant="no_co_learning_stage2")
    with pytest.raises(ValueError, match="only used by loss_variant='no_co_learning_stage2'"):
        LaserTrainer(
            _model(qwen3_tokenizer),
            _args(tmp_path),
            train_dataset=rows,
            processing_class=qwen3_tokenizer,
            teacher_model=_model(qwen3_tokenizer),
        )
    model = _model(qwen3_tokenizer)
    with pytest.raises(ValueError, match="separate"):
        LaserTrainer(
            model,
            _args(tmp_path, loss_variant="no_co_learning_stage2"),
            train_dataset=rows,
            processing_class=qwen3_tokenizer,
            teacher_model=model,
        )


# ----------------------------------------------------------------------------------------------------------------------
# Training, logging, saving and reloading
# ----------------------------------------------------------------------------------------------------------------------


def _retrieval_auc(model, tokenizer, demo, rows) -> float:
    """Mean over training queries of the share of corpus passages scored below the query's best positive."""
    passages = [passage_text(row["title"], row["text"]) for row in demo.corpus]
    model.eval()
    docs = model.encode(passages, tokenizer, convert_to_numpy=False)
    queries = model.encode(list(rows["query"]), tokenizer, is_query=True, instruction=rows[0]["instruction"],
                           convert_to_numpy=False)  # fmt: skip
    scores = queries @ docs.T
    aucs = []
    for i, positives in enumerate(rows["positive"]):
        is_positive = torch.tensor([passage in positives for passage in passages])
        best = scores[i][is_positive].max()
        aucs.append((scores[i][~is_positive] < best).float().mean().item())
    return sum(aucs) / len(aucs)


def test_training_lowers_the_loss_logs_every_term_and_reloads_with_automodel(qwen3_tokenizer, demo, rows, tmp_path):
    model = _model(qwen3_tokenizer)
    auc_before = _retrieval_auc(model, qwen3_tokenizer, demo, rows)
    trainer = LaserTrainer(
        model,
        # 14 rows in two batches of 7 (a constant pool of 14 passages), 18 epochs; a high learning rate for a tiny model.
        _args(tmp_path, max_steps=36, logging_steps=6, learning_rate=2e-3, per_device_train_batch_size=7),
        train_dataset=rows,
        processing_class=qwen3_tokenizer,
    )
    trainer.train()
    history = [entry for entry in trainer.state.log_history if "loss" in entry]
    assert len(history) == 6
    for entry in history:
        assert {f"loss/{name}" for name in TERMS} | {"num_segments"} <= set(entry)
        weighted = sum(w * entry[f"loss/{n}"] for n, w in zip(TERMS, (1.0, 1.0, 10.0, 0.1)))
        assert entry["loss"] == pytest.approx(weighted, rel=1e-4)  # the logged total is the unscaled Eq. 13
    assert history[-1]["loss"] < 0.5 * history[0]["loss"]
    assert history[-1]["loss/latent_contrastive"] < history[0]["loss/latent_contrastive"]

    trainer.save_model(str(tmp_path / "final"))
    reloaded = AutoModel.from_pretrained(str(tmp_path / "final"))
    assert isinstance(reloaded, LaserModel)
    assert reloaded.config.num_latent_steps == 3
    auc_after = _retrieval_auc(reloaded, qwen3_tokenizer, demo, rows)
    # Chance is 0.5; the random tiny model already gets ~0.74 from shared tokens, training lifts it (~0.92).
    assert auc_after > 0.8 and auc_after > auc_before, (auc_before, auc_after)


def test_evaluation_reports_the_loss_and_its_components(qwen3_tokenizer, rows, tmp_path):
    trainer = LaserTrainer(
        _model(qwen3_tokenizer),
        _args(tmp_path, per_device_eval_batch_size=4),
        train_dataset=rows,
        eval_dataset=rows.select(range(6)),
        processing_class=qwen3_tokenizer,
    )
    metrics = trainer.evaluate()
    assert {"eval_loss", "eval_num_segments"} | {f"eval_loss/{name}" for name in TERMS} <= set(metrics)
    assert metrics["eval_loss"] > 0


def test_lora_trains_the_adapter_only_and_reloads(qwen3_tokenizer, rows, tmp_path):
    build_tiny_causal_lm(qwen3_tokenizer, "qwen3").save_pretrained(tmp_path / "base")
    model = LaserModel.from_backbone(str(tmp_path / "base"))
    frozen_before = {name: p.detach().clone() for name, p in model.named_parameters()}
    trainer = LaserTrainer(
        model,
        _args(tmp_path, max_steps=4, learning_rate=1e-2, warmup_steps=0),
        train_dataset=rows,
        processing_class=qwen3_tokenizer,
        peft_config=laser_lora_config(r=4, lora_alpha=8, lora_dropout=0.0),
    )
    trainable = [name for name, p in trainer.model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in name for name in trainable)
    assert any("mlp.down_proj.lora_A" in name for name in trainable)  # the paper's seven projections
    trainer.train()
    for name, p in trainer.model.backbone.get_base_model().named_parameters():
        if "lora_" not in name:
            key = "backbone." + name.replace(".base_layer", "")
            torch.testing.assert_close(p, frozen_before[key], rtol=0, atol=0)

    trainer.save_model(str(tmp_path / "adapter"))
    saved = {path.name for path in (tmp_path / "adapter").iterdir()}
    assert {"adapter_config.json", "adapter_model.safetensors", "config.json"} <= saved
    reloaded = AutoModel.from_pretrained(str(tmp_path / "adapter")).eval()
    assert isinstance(reloaded, LaserModel) and hasattr(reloaded.backbone, "peft_config")
    texts = list(rows["query"][:3])
    trainer.model.eval()
    torch.testing.assert_close(
        reloaded.encode(texts, qwen3_tokenizer, is_query=True, convert_to_numpy=False),
        trainer.model.encode(texts, qwen3_tokenizer, is_query=True, convert_to_numpy=False),
        atol=1e-5,
        rtol=0,
    )


def test_automodel_loads_a_lora_checkpoint(qwen3_tokenizer, tmp_path):
    from peft import get_peft_model

    build_tiny_causal_lm(qwen3_tokenizer, "qwen3").save_pretrained(tmp_path / "base")
    model = LaserModel.from_backbone(str(tmp_path / "base"))
    model.backbone = get_peft_model(model.backbone, laser_lora_config(r=4, lora_alpha=8, init_lora_weights=False))
    model.save_pretrained(tmp_path / "adapter")
    reloaded = AutoModel.from_pretrained(str(tmp_path / "adapter"))
    assert isinstance(reloaded, LaserModel) and hasattr(reloaded.backbone, "peft_config")


def test_card_metadata():
    assert LaserTrainer._name == "LaSER"
    assert LaserTrainer._paper["id"] == "2603.01425"
    assert "2603.01425" in LaserTrainer._paper["citation"]
    assert {"hf_latent", "laser", "dense-retrieval"} <= set(LaserTrainer._tag_names)


# ----------------------------------------------------------------------------------------------------------------------
# Bad data: clear errors up front, documented fallbacks, never a crash mid-training
# ----------------------------------------------------------------------------------------------------------------------


def test_a_row_without_a_positive_fails_at_init(qwen3_tokenizer, rows, tmp_path):
    bad = rows.to_list()
    bad[1]["positive"] = []
    with pytest.raises(ValueError, match=r"(?s)train_dataset: .*row 1: no positive passage"):
        _trainer(qwen3_tokenizer, bad, tmp_path)


def test_empty_and_too_long_rationales_train_without_crashing(qwen3_tokenizer, rows, tmp_path, caplog):
    data = rows.to_list()[:8]
    data[0]["reasoning"] = ""
    data[1]["reasoning"] = None
    data[2]["reasoning"] = "\n\n".join(["A very long line of reasoning about bridges and rivers."] * 200)
    trainer = _trainer(qwen3_tokenizer, data, tmp_path, max_steps=3, explicit_max_length=128)
    with caplog.at_level(logging.WARNING):
        trainer.train()
    assert sum("explicit_max_length=128" in record.getMessage() for record in caplog.records) == 1
    assert trainer.state.global_step == 3


def test_plain_training_arguments_are_refused(qwen3_tokenizer, rows, tmp_path):
    from transformers import TrainingArguments

    with pytest.raises(TypeError, match="LaserTrainingArguments"):
        LaserTrainer(
            _model(qwen3_tokenizer),
            TrainingArguments(output_dir=str(tmp_path), use_cpu=True),
            train_dataset=rows,
            processing_class=qwen3_tokenizer,
        )
