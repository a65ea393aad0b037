"""Tests of the `evaluate` modules: offline loading from their local folders, same numbers as the pure functions."""

from __future__ import annotations

import ast
import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import evaluate
import numpy as np
import pytest

from hf_latent.evaluation import evaluate_answers, evaluate_run, load_metric, metric_path, ranking_to_run


QUERY_IDS = ["q1", "q2", "q3", "q4"]
PREDICTIONS = [["d1", "d2", "d3"], ["d4", "q2", "d5"], ["d6"], ["d7", "d8"]]
SCORES = [[0.1, 0.5, 0.5], [], [1.0], [0.3, 0.2]]  # q2: no scores, the list order is the ranking
REFERENCES = [
    [{"doc_id": "d1", "relevance": 2}, {"doc_id": "d3", "relevance": 1}],
    [{"doc_id": "d5", "relevance": 1}, {"doc_id": "d9", "relevance": 3}],
    [{"doc_id": "d6", "relevance": 0}],  # no relevant doc: skipped
    [{"doc_id": "d8", "relevance": 1}],
]
EXCLUDED = {"q1": ["d2", "N/A"], "q4": ["N/A"]}


def _offline_env(cache: Path) -> dict[str, str]:
    return {
        "HF_HUB_OFFLINE": "1",
        "HF_EVALUATE_OFFLINE": "1",
        "HF_HOME": str(cache),
        "HF_MODULES_CACHE": str(cache / "modules"),
        "HF_EVALUATE_CACHE": str(cache / "evaluate"),
        "HF_METRICS_CACHE": str(cache / "metrics"),
    }


def _dynamic_modules() -> list[str]:
    return [name for name in sys.modules if name.split(".")[0] == "evaluate_modules"]


def _refuse_network(*args: object, **kwargs: object) -> None:
    raise OSError("network access attempted by an offline test")


@pytest.fixture(scope="module")
def metrics(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, evaluate.EvaluationModule]]:
    """Both modules, loaded offline into a fresh cache with the network refused."""
    cache = tmp_path_factory.mktemp("hf_home")
    with pytest.MonkeyPatch.context() as patch:
        for name, value in _offline_env(cache).items():
            patch.setenv(name, value)
        # `evaluate.config` reads the environment at import time: point the already-imported config at the new cache.
        patch.setattr(evaluate.config, "HF_MODULES_CACHE", cache / "modules")
        patch.setattr(evaluate.config, "HF_METRICS_CACHE", cache / "metrics")
        patch.setattr(evaluate.config, "HF_EVALUATE_OFFLINE", True)
        # Dynamic modules import as `evaluate_modules.*`: hide any package of that name from another cache.
        patch.setattr(sys, "path", [str(cache / "modules"), *sys.path])
        for name in _dynamic_modules():
            patch.delitem(sys.modules, name)
        patch.setattr(socket.socket, "connect", _refuse_network)
        patch.setattr(socket, "create_connection", _refuse_network)
        loaded = {
            name: load_metric(name, cache_dir=str(cache / "data"), keep_in_memory=True)
            for name in ("retrieval_ranking", "qa_exact_match")
        }
        assert (cache / "modules" / "evaluate_modules" / "metrics" / "retrieval_ranking").is_dir()
        yield loaded
        for name in _dynamic_modules():  # ours; the context then puts back those it hid
            del sys.modules[name]


def _pure_retrieval(k_values: tuple[int, ...], remove_self: bool) -> dict[str, float]:
    run = {}
    for query_id, doc_ids, scores in zip(QUERY_IDS, PREDICTIONS, SCORES):
        run[query_id] = dict(zip(doc_ids, scores)) if scores else ranking_to_run({query_id: doc_ids})[query_id]
    qrels = {q: {j["doc_id"]: j["relevance"] for j in judgments} for q, judgments in zip(QUERY_IDS, REFERENCES)}
    return evaluate_run(run, qrels, k_values, EXCLUDED, remove_self)


@pytest.mark.parametrize("remove_self", [True, False])
def test_retrieval_ranking_matches_pure_functions(metrics: dict, remove_self: bool) -> None:
    results = metrics["retrieval_ranking"].compute(
        query_ids=QUERY_IDS,
        predictions=PREDICTIONS,
        scores=SCORES,
        references=REFERENCES,
        k_values=[1, 2, 3],
        excluded_ids=EXCLUDED,
        remove_self=remove_self,
    )
    expected = _pure_retrieval((1, 2, 3), remove_self)
    assert results == expected
    assert results["num_skipped_queries"] == 1
    # Hand check, q1: d2 excluded, d3 (0.5) before d1 (0.1): the first relevant doc is at rank 1.
    # q2: [d4, d5] with remove_self, [d4, q2, d5] without; q4: d8 at rank 2. q3 is skipped.
    # MRR@3 = (1 + 1/2 + 1/2) / 3 with remove_self, (1 + 1/3 + 1/2) / 3 without.
    assert results["mrr@3"] == pytest.approx((1 + 1 / 2 + 1 / 2) / 3 if remove_self else (1 + 1 / 3 + 1 / 2) / 3)


def test_retrieval_ranking_on_random_runs(metrics: dict) -> None:
    rng = np.random.default_rng(3)
    query_ids, predictions, scores, references = [], [], [], []
    for i in range(100):
        docs = [f"d{j}" for j in rng.choice(50, size=rng.integers(1, 20), replace=False)]
        query_ids.append(f"q{i}")
        predictions.append(docs)
        scores.append([float(s) for s in rng.integers(0, 3, size=len(docs))])  # many ties
        judged = rng.choice(50, size=rng.integers(1, 6), replace=False)
        references.append([{"doc_id": f"d{j}", "relevance": int(rng.integers(0, 3))} for j in judged])
    results = metrics["retrieval_ranking"].compute(
        query_ids=query_ids, predictions=predictions, scores=scores, references=references, k_values=[1, 5, 10]
    )
    run = {q: dict(zip(d, s)) for q, d, s in zip(query_ids, predictions, scores)}
    qrels = {q: {j["doc_id"]: j["relevance"] for j in judgments} for q, judgments in zip(query_ids, references)}
    assert results == evaluate_run(run, qrels, (1, 5, 10))


@pytest.mark.parametrize(
    ("query_ids", "scores", "message"),
    [(["q1", "q1", "q3", "q4"], SCORES, "must be unique"), (QUERY_IDS, [[0.1], [], [1.0], [0.3, 0.2]], "3 doc ids")],
)
def test_retrieval_ranking_rejects_bad_inputs(metrics: dict, query_ids: list, scores: list, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        metrics["retrieval_ranking"].compute(
            query_ids=query_ids, predictions=PREDICTIONS, scores=scores, references=REFERENCES
        )


def test_qa_exact_match_matches_pure_functions(metrics: dict) -> None:
    predictions = ["The Eiffel Tower", "Paris", "1889", "an answer"]
    references = [["Eiffel Tower"], ["Paris, France", "Lyon"], ["in 1889", "1889."], ["other"]]
    results = metrics["qa_exact_match"].compute(predictions=predictions, references=references)
    assert results == evaluate_answers(predictions, references)
    assert results == pytest.approx({"exact_match": 0.5, "f1": (1 + 2 / 3 + 1 + 0) / 4})


def test_module_info(metrics: dict) -> None:
    ranking, qa = metrics["retrieval_ranking"], metrics["qa_exact_match"]
    assert list(ranking.features) == ["query_ids", "predictions", "scores", "references"]
    assert list(qa.features) == ["predictions", "references"]
    for module in (ranking, qa):
        assert module.description.strip() and module.citation.strip() and "Returns:" in module.inputs_description


def test_metric_path() -> None:
    for name in ("retrieval_ranking", "qa_exact_match"):
        assert (Path(metric_path(name)) / f"{name}.py").is_file()
    with pytest.raises(ValueError, match="Unknown metric"):
        metric_path("squad")


ALLOWED_IMPORTS = {"__future__", "collections", "datasets", "evaluate", "math", "re", "string", "typing"}


@pytest.mark.parametrize("name", ["retrieval_ranking", "qa_exact_match"])
def test_module_folders_are_self_contained(name: str) -> None:
    # `evaluate.load` copies the script and its same-folder relative imports only: nothing may come from hf_latent.
    folder = Path(metric_path(name))
    for path in folder.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.level:
                assert node.level == 1 and (folder / f"{node.module}.py").is_file(), path
            elif isinstance(node, (ast.Import, ast.ImportFrom)):
                modules = [alias.name for alias in node.names] if isinstance(node, ast.Import) else [node.module]
                assert {module.split(".")[0] for module in modules} <= ALLOWED_IMPORTS, path


def test_loads_offline_in_a_fresh_process(tmp_path: Path) -> None:
    script = f"""
import json, evaluate
ranking = evaluate.load({metric_path("retrieval_ranking")!r})
qa = evaluate.load({metric_path("qa_exact_match")!r})
print(json.dumps([
    ranking.compute(query_ids={QUERY_IDS!r}, predictions={PREDICTIONS!r}, scores={SCORES!r},
                    references={REFERENCES!r}, k_values=[1, 3], excluded_ids={EXCLUDED!r}),
    qa.compute(predictions=["the cat", "dog"], references=[["Cat"], ["a dog", "hound"]]),
]))
"""
    env = {**os.environ, **_offline_env(tmp_path), "PYTHONPATH": ""}
    # A fresh interpreter, run outside the repository, reads the offline environment at import time.
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    ranking, qa = json.loads(done.stdout.strip().splitlines()[-1])
    assert ranking == _pure_retrieval((1, 3), remove_self=True)
    assert qa == {"exact_match": 1.0, "f1": 1.0}
    assert list((tmp_path / "modules" / "evaluate_modules" / "metrics").glob("retrieval_ranking/*/ranking_core.py"))
