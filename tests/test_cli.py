"""Tests for `hf_latent/cli.py`: every command has `--help` and runs on tiny models (in process, offline; `push` goes
to the local Hub of tests/hub/local_hub_server.py)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch
from huggingface_hub import ModelCard
from huggingface_hub import constants as hub_constants

from hf_latent import cli
from hf_latent.laser import LaserModel
from hf_latent.latentrag import LatentRAGModel
from hf_latent.retrieval import DenseIndex
from hf_latent.testing_utils import (
    QWEN3_TEMPLATE,
    build_tiny_causal_lm,
    build_tiny_encoder,
    build_tiny_encoder_tokenizer,
    build_tiny_tokenizer,
)


COMMANDS = ["train-laser", "train-latentrag", "evaluate", "index", "answer", "card", "push"]
CORPUS = [
    {"id": "paris", "title": "Paris", "text": "Paris is the capital of France."},
    {"id": "seine", "title": "Seine", "text": "The river Seine flows through Paris."},
    {"id": "berlin", "title": "Berlin", "text": "Berlin is the capital of Germany."},
    {"id": "fox", "title": "", "text": "The quick brown fox jumps over the lazy dog."},
    {"id": "dense", "title": "Retrieval", "text": "Dense retrieval encodes queries and documents into vectors."},
]
QUERIES = [
    {"id": "q1", "query": "What is the capital of France?", "relevant_ids": ["paris"]},
    {"id": "q2", "query": "Which river flows through Paris?", "relevant_ids": ["seine"]},
    {"id": "q3", "query": "How does dense retrieval rank documents?", "qrels": {"dense": 2, "fox": 0}},
]


def _load_hub_server():
    spec = importlib.util.spec_from_file_location(
        "local_hub_server", Path(__file__).parent / "hub" / "local_hub_server.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.LocalHubServer


def write_jsonl(path: Path, rows) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """Tiny LaSER, BERT and LatentRAG checkpoints, a corpus and a retrieval task folder."""
    root = tmp_path_factory.mktemp("cli")
    tokenizer = build_tiny_tokenizer(extra_special_tokens=("<think>", "</think>"), chat_template=QWEN3_TEMPLATE)
    LaserModel.from_backbone(build_tiny_causal_lm(tokenizer, architecture="qwen3")).save_pretrained(root / "laser")
    tokenizer.save_pretrained(root / "laser")
    retriever_tokenizer = build_tiny_encoder_tokenizer()
    build_tiny_encoder(retriever_tokenizer).save_pretrained(root / "bert")
    retriever_tokenizer.save_pretrained(root / "bert")
    generator_tokenizer = build_tiny_tokenizer()
    torch.manual_seed(0)
    LatentRAGModel.from_components(
        generator=build_tiny_causal_lm(generator_tokenizer, architecture="qwen2"),
        retriever=build_tiny_encoder(retriever_tokenizer),
        generator_tokenizer=generator_tokenizer,
        retriever_tokenizer=build_tiny_encoder_tokenizer(),
        retriever_name="tiny-bert:mean",
        max_answer_tokens=4,
        max_retrievals=2,
    ).save_pretrained(root / "latentrag")
    task = root / "task"
    task.mkdir()
    write_jsonl(task / "corpus.jsonl", CORPUS)
    write_jsonl(task / "queries.jsonl", QUERIES)
    (task / "task.json").write_text(json.dumps({"name": "tiny-task", "instruction": "Find the passage."}))
    return root


def run(argv, capsys) -> tuple[int, str, str]:
    try:
        code = cli.main(argv)
    except SystemExit as exit_:  # argparse --help / usage errors
        code = exit_.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


# ------------------------------------------------------------------------------------------------------- help


def test_every_command_has_help(capsys):
    code, out, _ = run(["--help"], capsys)
    assert code == 0
    for command in COMMANDS:
        assert command in out
    for command in COMMANDS:
        code, out, err = run([command, "--help"], capsys)
        assert code == 0, (command, err)
        assert "usage:" in out.lower() or "--output_dir" in out, command
    code, out, _ = run(["train-latentrag", "--help"], capsys)  # the example script's own flags
    assert "--loss_variant" in out and "--generator" in out


def test_usage_errors_exit_with_2(capsys, workspace):
    assert run(["evaluate"], capsys)[0] == 2  # --encoder / --task missing
    code, _, err = run(["index", "--encoder", "nope", "--corpus", str(workspace / "task"), "--output", "x"], capsys)
    assert code == 2 and "Unknown encoder 'nope'" in err
    code, _, err = run(["evaluate", "--encoder", "minilm", "--task", "no-such-task"], capsys)
    assert code == 2 and "Unknown retrieval task" in err


# ---------------------------------------------------------------------------------------------------- training


def test_train_commands_forward_to_the_example_scripts(tmp_path, monkeypatch, capsys):
    script = tmp_path / "train_laser.py"
    script.write_text(
        "import json, sys\n"
        "def main(argv=None):\n"
        f"    open({str(tmp_path / 'argv.json')!r}, 'w').write(json.dumps(argv))\n"
        "    return {'trained': True}\n"
    )
    monkeypatch.setenv("HF_LATENT_EXAMPLES_DIR", str(tmp_path))
    code, out, _ = run(["train-laser", "--output_dir", "out", "--max_steps", "1"], capsys)
    assert code == 0 and json.loads((tmp_path / "argv.json").read_text()) == [
        "--output_dir",
        "out",
        "--max_steps",
        "1",
    ]
    assert '"trained": true' in out

    monkeypatch.setattr(cli, "examples_dir_candidates", lambda: [tmp_path / "empty"])
    code, _, err = run(["train-laser", "--max_steps", "1"], capsys)
    assert code == 2 and "examples/train_laser.py not found" in err and "HF_LATENT_EXAMPLES_DIR" in err
    code, out, _ = run(["train-laser", "--help"], capsys)
    assert code == 0 and "hf-latent train-laser" in out and "not found" in out


@pytest.mark.slow
def test_train_latentrag_one_step_on_tiny_models(tmp_path, capsys):
    generator_tokenizer, retriever_tokenizer = build_tiny_tokenizer(), build_tiny_encoder_tokenizer()
    build_tiny_causal_lm(generator_tokenizer, architecture="qwen2").save_pretrained(tmp_path / "generator")
    generator_tokenizer.save_pretrained(tmp_path / "generator")
    build_tiny_encoder(retriever_tokenizer).save_pretrained(tmp_path / "retriever")
    retriever_tokenizer.save_pretrained(tmp_path / "retriever")
    argv = ["train-latentrag", "--generator", str(tmp_path / "generator"), "--retriever", str(tmp_path / "retriever")]
    argv += ["--dataset", "demo", "--corpus_scope", "questions", "--max_train_trajectories", "2", "--max_steps", "1"]
    argv += ["--output_dir", str(tmp_path / "out"), "--report_to", "none", "--use_cpu", "--save_strategy", "no"]
    argv += ["--per_device_train_batch_size", "2", "--logging_steps", "1", "--disable_tqdm", "true"]
    code, _, err = run(argv, capsys)
    assert code == 0, err
    assert (tmp_path / "out" / "config.json").is_file() and (tmp_path / "out" / "README.md").is_file()


# ------------------------------------------------------------------------------------- index, evaluate, answer


def test_index_with_laser_and_latentrag(workspace, tmp_path, capsys):
    code, out, err = run(
        ["index", "--encoder", f"laser:{workspace / 'laser'}", "--corpus", str(workspace / "task" / "corpus.jsonl")]
        + ["--output", str(tmp_path / "laser_index"), "--quiet", "--batch-size", "2"],
        capsys,
    )
    assert code == 0, err
    index = DenseIndex.load(tmp_path / "laser_index")
    assert len(index) == len(CORPUS) and index.embedding_dim == 64 and index.encoder_name.startswith("laser:")
    assert json.loads(out)["num_docs"] == len(CORPUS)

    # A JSON mapping id -> {title, text} works too, and latentrag: indexes with the model's reference retriever.
    corpus_json = tmp_path / "corpus.json"
    corpus_json.write_text(json.dumps({row["id"]: {"title": row["title"], "text": row["text"]} for row in CORPUS}))
    code, _, err = run(
        ["index", "--encoder", f"latentrag:{workspace / 'latentrag'}", "--corpus", str(corpus_json)]
        + ["--output", str(workspace / "latentrag_index"), "--quiet"],
        capsys,
    )
    assert code == 0, err
    assert DenseIndex.load(workspace / "latentrag_index").encoder_name == "tiny-bert:mean"


def test_evaluate_laser_and_hf_encoders_and_update_the_card(workspace, tmp_path, capsys):
    code, out, err = run(
        ["evaluate", "--encoder", f"laser:{workspace / 'laser'}", "--task", str(workspace / "task")]
        + ["--output-dir", str(tmp_path / "eval"), "--k-values", "1", "10", "--quiet", "--update-card"],
        capsys,
    )
    assert code == 0, err
    assert "| tiny-task |" in out
    (report,) = json.loads((tmp_path / "eval" / "retrieval.json").read_text())
    assert report["task"] == "tiny-task" and report["num_queries"] == 3 and report["num_documents"] == len(CORPUS)
    assert {"ndcg@10", "recall@10", "mrr@1"} <= set(report["metrics"])
    assert report["extra"]["instruction"] == "Find the passage."
    assert set(json.loads((tmp_path / "eval" / "rankings.json").read_text())) == {"q1", "q2", "q3"}
    card = ModelCard.load(workspace / "laser" / "README.md")
    assert {r.metric_type for r in card.data.eval_results} == {"ndcg_at_10", "recall_at_10"}

    code, out, err = run(
        ["evaluate", "--encoder", f"hf:{workspace / 'bert'}", "--task", str(workspace / "task")], capsys
    )
    assert code == 0 and "| tiny-task |" in out, err


def test_answer_writes_answer_and_trace(workspace, tmp_path, capsys):
    if not (workspace / "latentrag_index").is_dir():  # this test also runs alone
        model = LatentRAGModel.from_pretrained(workspace / "latentrag")
        model.build_index({row["id"]: row for row in CORPUS}, show_progress_bar=False).save(
            workspace / "latentrag_index"
        )
    code, out, err = run(
        ["answer", "--model", str(workspace / "latentrag"), "--index", str(workspace / "latentrag_index")]
        + ["--corpus", str(workspace / "task"), "--question", "What is the capital of France?"]
        + ["--output", str(tmp_path / "answer.json"), "--max-retrievals", "1", "--quiet"],
        capsys,
    )
    assert code == 0, err
    payload = json.loads((tmp_path / "answer.json").read_text())
    assert payload == json.loads(out)
    assert payload["question"] == "What is the capital of France?" and isinstance(payload["answer"], str)
    trace = payload["trace"]
    assert trace["system"] == "latentrag" and len(trace["retrieved_ids"]) <= 1
    assert all(doc_id in {row["id"] for row in CORPUS} for ids in trace["retrieved_ids"] for doc_id in ids)
    assert (
        run(["answer", "--model", str(workspace / "latentrag"), "--corpus", str(workspace / "task")], capsys)[0] == 2
    )


# ------------------------------------------------------------------------------------------------ card, push


def test_card_command(workspace, tmp_path, capsys):
    results = tmp_path / "results.json"
    results.write_text(
        json.dumps(
            {"metadata": {"dataset": "demo"}, "results": [{"system": "latentrag", "exact_match": 0.5, "f1": 0.6}]}
        )
    )
    code, out, err = run(
        ["card", str(workspace / "latentrag"), "--eval-results", str(results), "--dataset", "hotpotqa/hotpot_qa"]
        + ["--base-model", "HuggingFaceTB/SmolLM2-135M-Instruct", "--repo-id", "me/rag", "--license", "apache-2.0"],
        capsys,
    )
    assert code == 0, err
    card = ModelCard.load(workspace / "latentrag" / "README.md")
    assert card.data.base_model == "HuggingFaceTB/SmolLM2-135M-Instruct" and card.data.license == "apache-2.0"
    assert {r.metric_type: r.metric_value for r in card.data.eval_results} == {"exact_match": 50.0, "f1": 60.0}
    code, out, _ = run(["card", str(workspace / "laser"), "--print-only", "--model-name", "shown"], capsys)
    assert code == 0 and out.startswith("---") and "# shown" in out
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(ValueError, match="'bert' model"):
        cli.main(["card", str(tmp_path)])


def test_push_command(workspace, monkeypatch, capsys):
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", False)  # conftest.py makes the run offline
    with _load_hub_server()(max_lifetime_s=60) as hub:
        code, out, err = run(
            ["push", str(workspace / "laser"), "cli/laser", "--endpoint", hub.url, "--token", "hf_local", "--private"],
            capsys,
        )
        assert code == 0, err
        assert out.strip().startswith(f"{hub.url}/cli/laser/commit/")
        files = hub.files("cli/laser")
        assert {"config.json", "model.safetensors", "modeling_laser.py", "tokenizer.json", "README.md"} <= set(files)
        assert hub.repos["cli/laser"].private
