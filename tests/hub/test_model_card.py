"""Tests for `hf_latent/hub/model_card.py` and the card templates (offline; `ModelCard.validate()` is never called)."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from huggingface_hub import ModelCard
from transformers import AutoTokenizer

from hf_latent.evaluation.retrieval_eval import RetrievalReport
from hf_latent.hub import ModelCardCallback, ModelCardMixin, create_latentrag_model_card, write_model_card
from hf_latent.hub.model_card import (
    GENERATED_MARKER,
    TEMPLATES_DIR,
    TRAINING_CURVE_FILE,
    hub_model_id,
    laser_settings,
    plot_training_curve,
    render_model_card,
    summarize_log_history,
)
from hf_latent.laser import LaserModel
from hf_latent.latentrag import LatentRAGModel
from hf_latent.testing_utils import (
    QWEN3_TEMPLATE,
    build_tiny_causal_lm,
    build_tiny_encoder,
    build_tiny_encoder_tokenizer,
    build_tiny_tokenizer,
)


LASER_LOGS = [
    {"loss": 2.5, "loss/latent_contrastive": 1.2, "loss/output_kl": 0.9, "grad_norm": 1.5, "epoch": 0.5, "step": 1},
    {"loss": 2.0, "loss/latent_contrastive": 1.0, "loss/output_kl": 0.7, "epoch": 1.0, "step": 2},
    {"eval_loss": 2.2, "eval_runtime": 0.3, "epoch": 1.0, "step": 2},
    {"train_runtime": 4.0, "train_loss": 2.25, "epoch": 1.0, "step": 2},
]


def build_laser_checkpoint(path: Path) -> Path:
    tokenizer = build_tiny_tokenizer(extra_special_tokens=("<think>", "</think>"), chat_template=QWEN3_TEMPLATE)
    LaserModel.from_backbone(build_tiny_causal_lm(tokenizer, architecture="qwen3")).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def build_latentrag_model() -> LatentRAGModel:
    tokenizer, retriever_tokenizer = build_tiny_tokenizer(), build_tiny_encoder_tokenizer()
    torch.manual_seed(0)
    return LatentRAGModel.from_components(
        generator=build_tiny_causal_lm(tokenizer, architecture="qwen2"),
        retriever=build_tiny_encoder(retriever_tokenizer),
        generator_tokenizer=tokenizer,
        retriever_tokenizer=retriever_tokenizer,
        retriever_name="tiny-bert:mean",
        max_answer_tokens=4,  # keeps the agentic loop of the usage snippet short
    )


@pytest.fixture(scope="module")
def laser_dir(tmp_path_factory):
    return build_laser_checkpoint(tmp_path_factory.mktemp("laser"))


@pytest.fixture(scope="module")
def latentrag_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("latentrag")
    build_latentrag_model().save_pretrained(path)
    return path


def python_blocks(text: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", text, flags=re.DOTALL)


def report(task: str = "hotpotqa-test-both") -> RetrievalReport:
    metrics = {"ndcg@10": 0.1234, "recall@10": 0.25, "mrr@10": 0.2, "ndcg@1": 0.1}
    return RetrievalReport(task, "laser:tiny", metrics, 3.5, 1.0, num_queries=4, num_documents=9, batch_size=8)


# ---------------------------------------------------------------------------------------------------- LaSER


def test_templates_ship_inside_the_package():
    assert (TEMPLATES_DIR / "laser_card.md.jinja").is_file()
    assert (TEMPLATES_DIR / "latentrag_card.md.jinja").is_file()
    assert TEMPLATES_DIR.parent.name == "hf_latent"  # package_data "templates/*"


def test_laser_card_metadata_eval_results_and_loss_terms(laser_dir):
    write_model_card(
        laser_dir,
        eval_results=[report(), report("bright-se-proxy")],
        training_args={"learning_rate": 1e-4, "loss_variant": "full", "hub_token": "secret"},
        datasets=["jinjiajie/LaSER-Training"],
        base_model="Qwen/Qwen3-0.6B",
        repo_id="someone/laser-tiny",
        log_history=LASER_LOGS,
        loss_config={"temperature": 0.02, "output_kl_weight": 10.0},
    )
    card = ModelCard.load(laser_dir / "README.md")  # parses back (no network: a local path)
    data = card.data
    assert data.library_name == "transformers"
    assert data.base_model == "Qwen/Qwen3-0.6B"
    assert data.pipeline_tag == "sentence-similarity"
    assert {"hf_latent", "laser", "dense-retrieval"} <= set(data.tags)
    assert data.datasets == ["jinjiajie/LaSER-Training"]
    assert data.model_name == "laser-tiny"
    results = {(r.dataset_name, r.metric_type): r.metric_value for r in data.eval_results}
    assert results == {
        ("hotpotqa-test-both", "ndcg_at_10"): 12.34,
        ("hotpotqa-test-both", "recall_at_10"): 25.0,
        ("bright-se-proxy", "ndcg_at_10"): 12.34,
        ("bright-se-proxy", "recall_at_10"): 25.0,
    }
    assert all(r.task_type == "retrieval" for r in data.eval_results)
    assert "model-index" in card.data.to_dict()
    text = card.text
    assert GENERATED_MARKER in text
    assert "arxiv.org/abs/2603.01425" in text and "@misc{jin2026laser" in text
    assert "| K (`num_latent_steps`) | 3 |" in text and "`released`" in text
    assert "| `loss/latent_contrastive` | 1 | 2 |" in text and "| `loss/output_kl` | 0.7 | 2 |" in text
    assert "| `loss_variant` | full |" in text and "hub_token" not in text and "secret" not in text
    assert "| `output_kl_weight` | 10 |" in text
    assert "| hotpotqa-test-both | laser:tiny | 12.34 | 25.0 | 3.5 |" in text
    assert "`eval_loss` = 2.2" in text and "`train_loss` = 2.25" in text
    assert 'AutoModel.from_pretrained("someone/laser-tiny", trust_remote_code=True)' in text
    assert "## Limitations" in text and "transformers: " in text


def test_laser_usage_snippet_runs_as_written(laser_dir, tmp_path, capsys):
    card = write_model_card(laser_dir, repo_id=str(laser_dir), save=False)
    snippet = python_blocks(card.text)[0]
    namespace: dict = {}
    exec(compile(snippet, "<laser card>", "exec"), namespace)
    assert namespace["scores"].shape == (1, 2)
    model = LaserModel.from_pretrained(laser_dir)
    tokenizer = AutoTokenizer.from_pretrained(laser_dir)
    expected = model.encode(namespace["queries"], tokenizer, is_query=True)
    np.testing.assert_allclose(namespace["query_embeddings"], expected, atol=1e-6)


def test_card_without_records_says_so_and_skips_local_base_models(laser_dir, tmp_path):
    card = write_model_card(laser_dir, base_model=str(tmp_path), save=False)
    assert card.data.base_model is None  # a local folder is not a Hub id
    assert card.data.eval_results is None and "model-index" not in card.data.to_dict()
    assert "No evaluation results were recorded" in card.text
    assert card.text.count("Not recorded for this checkpoint.") == 2


def test_wrong_model_type_and_missing_config(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(ValueError, match="'bert' model"):
        write_model_card(tmp_path)
    with pytest.raises(FileNotFoundError, match="config.json"):
        write_model_card(tmp_path / "missing")


def test_a_custom_template_and_paper_entry(laser_dir, tmp_path):
    template = tmp_path / "mine.md.jinja"
    template.write_text(
        "---\n{{ card_data }}\n---\n# {{ model_name }}: K={{ settings.num_latent_steps }}, {{ paper.id }}\n"
    )
    config = json.loads((laser_dir / "config.json").read_text())
    card = render_model_card(
        "laser", settings=laser_settings(config), model_name="m", template=template, paper={"id": "0000.00000"}
    )
    assert card.text.strip() == "# m: K=3, 0000.00000" and card.data.pipeline_tag == "sentence-similarity"
    with pytest.raises(ValueError, match="kind"):
        render_model_card("bert", settings={}, model_name="m")


def test_hub_model_id():
    assert hub_model_id("Qwen/Qwen3-0.6B") == "Qwen/Qwen3-0.6B"
    assert hub_model_id("/cache/models--Qwen--Qwen3-0.6B/snapshots/abc123") == "Qwen/Qwen3-0.6B"
    assert hub_model_id("/home/me/.cache/hf_latent/smollm2-135m-instruct-from-gguf-v1").startswith("HuggingFaceTB/")
    assert hub_model_id("./outputs/run") is None and hub_model_id("") is None


def test_log_history_summary_and_training_curve(laser_dir, tmp_path):
    logs = [{"loss": float(10 - i), "loss/a": float(i), "epoch": i / 20, "step": i} for i in range(1, 21)]
    summary = summarize_log_history(logs, max_rows=5)
    assert [row["name"] for row in summary["last_logged"]] == ["loss", "loss/a"]
    assert summary["last_logged"][0] == {"name": "loss", "value": -10.0, "step": 20}
    assert len(summary["log_table"]["rows"]) == 5 and summary["log_table"]["rows"][-1][0] == "20"
    assert plot_training_curve(summary["curve"], laser_dir / TRAINING_CURVE_FILE).stat().st_size > 0
    card = write_model_card(laser_dir, log_history=logs, save=False)  # the image in the folder is referenced
    assert f"![Training curve: every logged loss term against the step]({TRAINING_CURVE_FILE})" in card.text
    (laser_dir / TRAINING_CURVE_FILE).unlink()


# ------------------------------------------------------------------------------------------------ LatentRAG


def test_latentrag_card_metadata_settings_and_eval_results(latentrag_dir):
    payload = {
        "metadata": {"dataset": "hotpotqa-500"},
        "results": [
            {"system": "latentrag", "exact_match": 0.25, "f1": 0.4, "mean_latency_ms": 123.4, "mean_retrievals": 2},
            {"system": "explicit_agentic_rag", "exact_match": 0.3, "f1": 0.45, "mean_latency_ms": 999.0},
        ],
    }
    write_model_card(
        latentrag_dir,
        eval_results=payload,
        datasets="hotpotqa/hotpot_qa",
        base_model=["HuggingFaceTB/SmolLM2-135M-Instruct", "sentence-transformers/all-MiniLM-L6-v2"],
        repo_id="someone/latentrag-tiny",
    )
    card = ModelCard.load(latentrag_dir / "README.md")
    data = card.data
    assert data.library_name == "transformers" and data.pipeline_tag == "question-answering"
    assert data.base_model == ["HuggingFaceTB/SmolLM2-135M-Instruct", "sentence-transformers/all-MiniLM-L6-v2"]
    assert {"hf_latent", "latentrag", "retrieval-augmented-generation"} <= set(data.tags)
    assert data.datasets == ["hotpotqa/hotpot_qa"]
    results = {r.metric_type: r.metric_value for r in data.eval_results}
    assert results == {"exact_match": 25.0, "f1": 40.0, "latency_ms": 123.4}  # baselines stay out of model-index
    assert {r.dataset_name for r in data.eval_results} == {"hotpotqa-500"}
    text = card.text
    assert "arxiv.org/abs/2605.06285" in text and "@misc{zheng2026latentrag" in text
    assert "| m, thought tokens per step | 4 |" in text and "| n, sub-query tokens per retrieval | 16 |" in text
    assert "| Proj_ret | latent sub-query -> retriever input embeddings | (16, 64) | (16, 64) |" in text
    assert "| Proj_τ | latent thought -> LLM input space | (4, 64) | (4, 64) |" in text
    assert "`tiny-bert:mean`" in text
    assert "| hotpotqa-500 | explicit_agentic_rag | 30.0 | 45.0 | 999.0 |" in text


def test_latentrag_usage_snippet_runs_as_written(latentrag_dir):
    card = write_model_card(latentrag_dir, repo_id=str(latentrag_dir), save=False)
    namespace: dict = {}
    exec(compile(python_blocks(card.text)[0], "<latentrag card>", "exec"), namespace)
    result = namespace["result"]
    assert isinstance(result.answer, str)
    assert result.trace.num_retrievals == len(result.trace.retrieved_ids) <= 4


def test_create_latentrag_model_card_from_a_trainer(tmp_path):
    from hf_latent.data import load_demo_corpus
    from hf_latent.latentrag.collator_latentrag import reference_search_fn
    from hf_latent.latentrag.trainer_latentrag import LatentRAGTrainer
    from hf_latent.latentrag.training_args_latentrag import LatentRAGTrainingArguments
    from hf_latent.latentrag.trajectories import (
        attach_pseudo_relevant_ids,
        trajectories_from_multihop,
        trajectories_to_dataset,
    )

    demo = load_demo_corpus()
    model = build_latentrag_model()
    index = model.build_index(demo.corpus, show_progress_bar=False)
    trajectories, _ = trajectories_from_multihop(demo, split="train", num_distractors_per_step=0)
    trajectories = attach_pseudo_relevant_ids(trajectories[:4], reference_search_fn(model, index, k=5), k=5)
    args = LatentRAGTrainingArguments(
        output_dir=str(tmp_path / "run"), use_cpu=True, report_to="none", retrieval_temperature=0.03, max_steps=3
    )
    callback = ModelCardCallback(dataset_ids=["hotpotqa/hotpot_qa"])
    trainer = LatentRAGTrainer(
        model, args, train_dataset=trajectories_to_dataset(trajectories), index=index, callbacks=[callback]
    )
    trainer.state.log_history = [
        {"loss": 9.0, "loss/generation": 5.0, "loss/retrieval_alignment": 0.5, "action_accuracy": 0.5, "step": 1}
    ]
    callback.add_evaluation({"system": "latentrag", "exact_match": 0.5, "f1": 0.5, "mean_latency_ms": 10.0})
    card = create_latentrag_model_card(trainer, tags="tiny")
    data = ModelCard.load(tmp_path / "run" / "README.md").data
    assert data.model_name == "run" and "tiny" in data.tags and "agentic-rag" in data.tags
    assert data.datasets == ["hotpotqa/hotpot_qa"]
    assert {r.metric_type for r in data.eval_results} == {"exact_match", "f1", "latency_ms"}
    assert "| `loss/retrieval_alignment` | 0.5 | 1 |" in card.text
    assert "| `loss_variant` | kl |" in card.text and "| `max_steps` | 3 |" in card.text
    assert "| `retrieval_temperature (β, used)` | 0.03 |" in card.text
    assert "Trained with `hf_latent.latentrag.LatentRAGTrainer`" in card.text
    assert "| train | - | 4 |" in card.text  # the training trajectories


# -------------------------------------------------------------------------------------------- LaSER trainer


def test_laser_trainer_with_the_mixin_writes_the_card_on_save(tmp_path):
    from hf_latent.data import load_demo_corpus
    from hf_latent.laser.data_laser import laser_rows_from_multihop
    from hf_latent.laser.trainer_laser import LaserTrainer
    from hf_latent.laser.training_args_laser import LaserTrainingArguments

    assert issubclass(LaserTrainer, ModelCardMixin)
    tokenizer = build_tiny_tokenizer(extra_special_tokens=("<think>", "</think>"), chat_template=QWEN3_TEMPLATE)
    model = LaserModel.from_backbone(build_tiny_causal_lm(tokenizer, architecture="qwen3"), num_latent_steps=2)
    rows = laser_rows_from_multihop(load_demo_corpus(), max_rows=4)
    args = LaserTrainingArguments(
        output_dir=str(tmp_path / "laser-run"),
        use_cpu=True,
        bf16=False,
        report_to="none",
        save_strategy="no",
        per_device_train_batch_size=2,
        max_steps=1,
        logging_steps=1,
        disable_tqdm=True,
        query_max_length=48,
        passage_max_length=48,
        explicit_max_length=96,
    )
    callback = ModelCardCallback(dataset_ids=["jinjiajie/LaSER-Training"])
    trainer = LaserTrainer(model, args, train_dataset=rows, processing_class=tokenizer, callbacks=[callback])
    trainer.train()
    callback.add_evaluation(report())
    trainer.save_model()
    folder = tmp_path / "laser-run"
    assert (folder / "model.safetensors").is_file()
    card = ModelCard.load(folder / "README.md")
    assert card.data.datasets == ["jinjiajie/LaSER-Training"]
    assert {r.metric_type for r in card.data.eval_results} == {"ndcg_at_10", "recall_at_10"}
    for term in (
        "loss",
        "loss/latent_contrastive",
        "loss/explicit_contrastive",
        "loss/output_kl",
        "loss/trajectory_kl",
    ):
        assert f"| `{term}` |" in card.text, term
    assert "| K (`num_latent_steps`) | 2 |" in card.text
    assert "| `temperature` | 0.02 |" in card.text  # LaserLoss.get_config_dict()
    assert "Trained with `hf_latent.laser.LaserTrainer`" in card.text
    assert "| train | - | 4 |" in card.text
    assert callback.last_logged["loss/output_kl"]["step"] == 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__, "-q"]))
