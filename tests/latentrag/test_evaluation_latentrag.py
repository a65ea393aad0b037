"""Tests for `hf_latent/latentrag/evaluation_latentrag.py` and (slow) `examples/eval_latentrag.py`."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from hf_latent.latentrag.evaluation_latentrag import (
    evaluate_system,
    latency_ratio,
    results_table,
    retrieval_step_success,
    write_results,
)
from hf_latent.latentrag.inference import LatentRAGResult, LatentRAGTrace


EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

CORPUS = {
    "d1": {"title": "Tarnwick", "text": "Tarnwick lies on the Selwen River."},
    "d2": {"title": "Hedda Vorlund", "text": "She was born in Tarnwick."},
    "d3": {"title": "Other", "text": "Nothing useful."},
    "d4": {"title": "The Selwen River", "text": "A river."},
}
QUESTIONS = [
    {
        "id": "q1",
        "question": "Which river?",
        "answers": ["Selwen River", "the Selwen"],
        "supporting_ids": ["d2", "d1"],
    },
    {"id": "q2", "question": "Who?", "answers": ["Hedda Vorlund"], "supporting_ids": ["d2"]},
]


def fake_result(answer, retrieved, total_ms, stage_ms, passes, decoding=None):
    trace = LatentRAGTrace(system="fake", retrieved_ids=retrieved, total_ms=total_ms)
    trace.stage_ms.update(stage_ms)
    trace.forward_passes.update(passes)
    trace.num_forward_passes = sum(v for k, v in passes.items() if k != "decoding")
    if decoding is not None:
        trace.stage_ms["decoding"], trace.forward_passes["decoding"] = decoding
    return LatentRAGResult(answer=answer, trace=trace)


def fake_system(question):
    if question == "Which river?":
        # step 1: only a distractor; step 2: the answer in a title (not a supporting id)
        return fake_result(
            "selwen river",
            [["d3"], ["d4", "d3"]],
            100.0,
            {"prefill": 60.0, "answer": 40.0},
            {"prefill": 1, "answer": 3},
            (50.0, 4),
        )
    # one step with a supporting paragraph that does not contain the answer text
    return fake_result(
        "Hedda", [["d1"]], 300.0, {"prefill": 200.0, "answer": 100.0}, {"prefill": 1, "answer": 2}, (10.0, 2)
    )


def test_retrieval_step_success_answer_or_support():
    answers, supporting = ["Selwen River"], ["d2"]
    assert retrieval_step_success(["d1"], answers, supporting, CORPUS) == {
        "answer": True,
        "support": False,
        "success": True,
    }
    assert retrieval_step_success(["d2"], answers, supporting, CORPUS) == {
        "answer": False,
        "support": True,
        "success": True,
    }
    assert retrieval_step_success(["d3"], answers, supporting, CORPUS)["success"] is False
    # "river" alone is not the answer; normalised matching ignores case and articles.
    assert retrieval_step_success(["d4"], ["the selwen RIVER"], [], CORPUS)["answer"] is True
    assert retrieval_step_success(["d1"], answers, [], None) == {"answer": False, "support": False, "success": False}


def test_evaluate_system_aggregates_quality_retrieval_and_latency():
    result = evaluate_system(fake_system, QUESTIONS, CORPUS, name="fake", show_progress_bar=False)
    assert result["system"] == "fake" and result["num_questions"] == 2
    assert result["exact_match"] == 0.5  # "selwen river" matches "Selwen River"; "Hedda" does not
    assert result["f1"] == pytest.approx((1.0 + 2 * 1 * 0.5 / 1.5) / 2)
    # steps: q1 [miss, answer-in-title], q2 [no answer text but a supporting id... d1 is supporting for q1 only]
    assert result["num_retrieval_steps"] == 3
    assert result["retrieval_answer_rate"] == pytest.approx(1 / 3)
    assert result["retrieval_success_rate"] == pytest.approx(1 / 3)
    assert result["mean_retrievals"] == 1.5
    # decoding time and passes are added by default
    assert result["mean_latency_ms"] == pytest.approx((150.0 + 310.0) / 2)
    assert result["median_latency_ms"] == pytest.approx(230.0)
    assert result["mean_forward_passes"] == pytest.approx((4 + 4 + 3 + 2) / 2)
    assert result["stage_ms"]["prefill"] == pytest.approx(130.0) and result["stage_ms"]["decoding"] == 30.0
    assert result["forward_passes_by_stage"]["answer"] == 2.5
    assert [r["prediction"] for r in result["records"]] == ["selwen river", "Hedda"]
    without = evaluate_system(fake_system, QUESTIONS, CORPUS, include_decoding=False, show_progress_bar=False)
    assert without["mean_latency_ms"] == pytest.approx(200.0) and without["system"] == "fake"
    supported = evaluate_system(
        fake_system,
        [QUESTIONS[0], {**QUESTIONS[1], "supporting_ids": ["d1"]}],
        CORPUS,
        show_progress_bar=False,
        keep_records=False,
    )
    assert supported["retrieval_success_rate"] == pytest.approx(2 / 3) and "records" not in supported


def test_evaluate_system_validates_questions():
    with pytest.raises(TypeError):
        evaluate_system(fake_system, ["Which river?"], show_progress_bar=False)
    with pytest.raises(ValueError):
        evaluate_system(fake_system, [], show_progress_bar=False)
    with pytest.raises(ValueError):
        evaluate_system(fake_system, [{"question": "Who?", "answers": []}], show_progress_bar=False)


def test_write_results_json_markdown_and_plot(tmp_path):
    fast = evaluate_system(fake_system, QUESTIONS, CORPUS, name="latentrag", show_progress_bar=False)
    slow = {**fast, "system": "explicit_agentic_rag", "mean_latency_ms": 4 * fast["mean_latency_ms"]}
    never = {**fast, "system": "direct", "retrieval_success_rate": math.nan}
    paths = write_results([fast, slow, never], tmp_path / "out", metadata={"note": "unit"})
    payload = json.loads(paths["json"].read_text())  # strict JSON: NaN became null
    assert payload["metadata"] == {"note": "unit"} and [r["system"] for r in payload["results"]] == [
        "latentrag",
        "explicit_agentic_rag",
        "direct",
    ]
    assert payload["results"][2]["retrieval_success_rate"] is None
    table = paths["markdown"].read_text()
    assert table == results_table([fast, slow, never])
    assert "| latentrag | 2 | 50.00 |" in table and "| direct |" in table and "–" in table
    assert "Mean latency per stage" in table
    assert paths["plot"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert latency_ratio([fast, slow], "latentrag", "explicit_agentic_rag") == pytest.approx(0.25)


@pytest.mark.slow
def test_eval_script_end_to_end_on_default_models(tmp_path):
    """examples/eval_latentrag.py on the default models (untrained) and 3 HotpotQA-500 test questions."""
    pytest.importorskip("faiss")
    from hf_latent import DefaultModelNotFoundError, default_backbone, default_retriever

    try:
        default_backbone(), default_retriever()
    except DefaultModelNotFoundError as error:
        pytest.skip(str(error))
    out = tmp_path / "eval"
    command = [
        sys.executable,
        str(EXAMPLES / "eval_latentrag.py"),
        "--model_path",
        "untrained",
        "--max_questions",
        "3",
        "--corpus_scope",
        "questions",
        "--max_answer_tokens",
        "8",
        "--max_decoding_tokens",
        "8",
        "--max_step_tokens",
        "24",
        "--warmup_questions",
        "0",
        "--num_threads",
        "1",
        "--output_dir",
        str(out),
    ]
    completed = subprocess.run(command, capture_output=True, text=True, timeout=600, env={**os.environ})
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert "latency_ratio_latentrag_over_explicit" in completed.stdout
    payload = json.loads((out / "results.json").read_text())
    results, metadata = payload["results"], payload["metadata"]
    assert [r["system"] for r in results] == ["latentrag", "latentrag_decoding", "naive_rag", "explicit_agentic_rag"]
    for result in results:
        assert result["num_questions"] == 3 and result["mean_latency_ms"] > 0
        assert 0.0 <= result["exact_match"] <= 1.0 and result["mean_forward_passes"] >= 1
        assert len(result["records"]) == 3
    latent = results[0]
    assert latent["num_retrieval_steps"] == round(3 * latent["mean_retrievals"])
    assert metadata["latency_ratio_latentrag_over_explicit"] > 0 and metadata["corpus_size"] == 30
    assert (out / "results.md").is_file() and (out / "latency_vs_em.png").stat().st_size > 0
