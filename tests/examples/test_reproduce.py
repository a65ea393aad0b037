"""Tests for `examples/reproduce.py` (stage plan, resumability) and `examples/reproduce_report.py` (tables, plots)."""

import json
import sys
from pathlib import Path

import pytest


EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
sys.path.insert(0, str(EXAMPLES))

import reproduce  # noqa: E402


def test_stage_plan_covers_every_comparison_and_orders_dependencies():
    stages = reproduce.build_stages()
    names = [stage.name for stage in stages]
    assert len(names) == len(set(names)) == 29
    for variant in reproduce.LASER_VARIANTS:
        assert f"laser_train_{variant}" in names and f"laser_eval_{variant}" in names
    for name in ("laser_eval_untrained_k1", "laser_eval_untrained_k3", "laser_eval_minilm", "laser_rewrite"):
        assert name in names
    assert {"laser_latency", "latentrag_train_kl", "latentrag_eval"} <= set(names)
    assert {f"latentrag_eval_{ablation}" for ablation in ("cosine", "infonce", "no_decoding")} <= set(names)
    for position, stage in enumerate(stages):  # every stage comes after what it needs
        assert all(names.index(need) < position for need in stage.needs), stage.name


def _report(task, ndcg, encoder="x"):
    return {"task": task, "encoder": encoder, "metrics": {"ndcg@10": ndcg, "recall@10": ndcg + 0.1},
            "query_ms_per_query": 12.0, "corpus_seconds": 1.0, "num_queries": 3, "num_documents": 9,
            "batch_size": 8, "extra": {}}  # fmt: skip


def _write(results_dir: Path, stage: str, payload: dict) -> None:
    (results_dir / stage).mkdir(parents=True)
    (results_dir / stage / "result.json").write_text(json.dumps({"wall_seconds": 90.0, **payload}))


def test_driver_skips_finished_stages_and_report_reads_them(tmp_path, monkeypatch):
    tasks = reproduce.LASER_TASKS
    _write(tmp_path, "laser_eval_minilm", {"reports": [_report(tasks[0], 0.8), _report(tasks[2] + "[:100]", 0.5)]})
    history = [{"step": 1, "loss": 3.0, "loss/latent_contrastive": 2.0}, {"step": 2, "loss": 2.0}]
    _write(tmp_path, "laser_train_laser", {"log_history": history})
    row = {"system": "latentrag", "exact_match": 0.25, "f1": 0.5, "retrieval_success_rate": 0.75,
           "mean_retrievals": 2.0, "mean_forward_passes": 9.0, "mean_latency_ms": 1500.0, "stage_ms": {"answer": 3.0}}  # fmt: skip
    explicit = dict(row, system="explicit_agentic_rag", mean_latency_ms=6000.0)
    _write(tmp_path, "latentrag_eval", {"results": [row, explicit],
                                        "metadata": {"latency_ratio_latentrag_over_explicit": 0.25}})  # fmt: skip
    calls = []
    monkeypatch.setattr(reproduce.subprocess, "call", lambda command, **kwargs: calls.append(command) or 0)
    only = ["laser_eval_minilm", "laser_train_laser", "laser_eval_laser", "laser_eval_untrained_k1"]
    assert reproduce.main(["--results-dir", str(tmp_path), "--only", *only]) == 0
    # Finished stages are skipped; laser_eval_laser runs (its training is done); the stub wrote no result.
    assert [command[command.index("--stage") + 1] for command in calls] == [
        "laser_eval_untrained_k1",
        "laser_eval_laser",
    ]
    readme = (tmp_path / "README.md").read_text()
    assert "| MiniLM (plain dense retriever) | 80.0 | 90.0 | - | - | 50.0 | 60.0 | 12 | - |" in readme
    assert "| latentrag | 25.0 | 50.0 | 75.0 | 2.00 | 9.0 | 1500 | answer 3 |" in readme
    assert "**0.25** (75% lower" in readme
    assert "| laser_eval_minilm | 1.5 |" in readme and "| laser_eval_laser | not run |" in readme
    for plot in ("laser_ndcg.png", "laser_training_curves.png", "latentrag_latency_em.png"):
        assert (tmp_path / plot).stat().st_size > 1000 and f"]({plot})" in readme
    assert not (tmp_path / "latentrag_training_curves.png").exists()
    assert set(json.loads((tmp_path / "results.json").read_text())) == {
        "laser_eval_minilm", "laser_train_laser", "latentrag_eval"
    }  # fmt: skip


def test_unknown_stage_is_refused(tmp_path):
    with pytest.raises(SystemExit, match="Unknown stage"):
        reproduce.main(["--results-dir", str(tmp_path), "--only", "laser_eval_nothing"])


def test_cards_are_written_for_evaluated_checkpoints(tmp_path):
    from hf_latent.laser import LaserModel
    from hf_latent.testing_utils import build_tiny_causal_lm, build_tiny_tokenizer

    model_dir = tmp_path / "laser_train_laser" / "model"
    tokenizer = build_tiny_tokenizer()
    LaserModel.from_backbone(build_tiny_causal_lm(tokenizer)).save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)
    history = [{"step": 1, "loss": 3.0, "loss/output_kl": 1.0}, {"step": 2, "loss": 2.0, "loss/output_kl": 0.5}]
    (tmp_path / "laser_train_laser" / "result.json").write_text(json.dumps({"log_history": history}))
    args = reproduce.parse_args(["--results-dir", str(tmp_path)])
    assert reproduce.write_cards(args) == []  # not evaluated yet: no card
    _write(tmp_path, "laser_eval_laser", {"reports": [_report(reproduce.LASER_TASKS[0], 0.4321)]})
    assert reproduce.write_cards(args) == [model_dir / "README.md"]
    card = (model_dir / "README.md").read_text()
    assert "# laser-laser-smollm2-135m-hotpotqa500" in card and "value: 43.21" in card
    assert (model_dir / "training_curve.png").stat().st_size > 1000 and "training_curve.png" in card


def test_summary_json_keeps_no_per_question_records(tmp_path):
    row = {"system": "naive_rag", "exact_match": 0.0, "f1": 0.1, "retrieval_success_rate": 1.0, "mean_retrievals": 1.0,
           "mean_forward_passes": 3.0, "mean_latency_ms": 10.0, "records": [{"question": "Who?", "answers": ["X"]}]}  # fmt: skip
    _write(tmp_path, "latentrag_eval", {"results": [row], "metadata": {}})
    reproduce.main(["--results-dir", str(tmp_path), "--summary-only"])
    summary = json.loads((tmp_path / "results.json").read_text())
    assert "records" not in summary["latentrag_eval"]["results"][0]
    assert summary["latentrag_eval"]["results"][0]["f1"] == 0.1
    assert "records" in json.loads((tmp_path / "latentrag_eval" / "result.json").read_text())["results"][0]
