"""Tests for `hf_latent/hub/push.py` against a local Hub on 127.0.0.1 (`local_hub_server.py`), never the network.

The upload runs the real `huggingface_hub` client in this process (`HfApi(endpoint=...)`); the download runs in a
fresh Python process with `HF_ENDPOINT` pointing at the local Hub and `import hf_latent` made impossible, so the
pushed LaSER, LatentRAG and sentence-transformers repositories must load from their own remote code. Outputs are
compared through `.npy` files.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from huggingface_hub import constants as hub_constants
from transformers import AutoModel

from hf_latent.hub import push_checkpoint
from hf_latent.hub.push import inspect_checkpoint
from hf_latent.laser import LaserModel
from hf_latent.latentrag import LatentRAGModel
from hf_latent.testing_utils import (
    QWEN3_TEMPLATE,
    build_tiny_causal_lm,
    build_tiny_encoder,
    build_tiny_encoder_tokenizer,
    build_tiny_tokenizer,
)


sys.path.insert(0, str(Path(__file__).parent))
from local_hub_server import LocalHubServer  # noqa: E402


QUERIES = ["What is the capital of France?", "Which river flows through the town where the inventor was born?"]
DOCUMENTS = ["Paris is the capital of France.", "The river Seine flows through Paris.", "Berlin is in Germany."]


@pytest.fixture(scope="module")
def hub():
    with LocalHubServer(max_lifetime_s=240) as server:
        yield server


@pytest.fixture
def online(monkeypatch):
    """conftest.py sets HF_HUB_OFFLINE=1 for the whole run; the upload to the local Hub needs it off."""
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", False)


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    root = tmp_path_factory.mktemp("checkpoints")
    tokenizer = build_tiny_tokenizer(extra_special_tokens=("<think>", "</think>"), chat_template=QWEN3_TEMPLATE)
    laser = LaserModel.from_backbone(build_tiny_causal_lm(tokenizer, architecture="qwen3")).eval()
    laser.save_pretrained(root / "laser")
    tokenizer.save_pretrained(root / "laser")

    generator_tokenizer, retriever_tokenizer = build_tiny_tokenizer(), build_tiny_encoder_tokenizer()
    torch.manual_seed(0)
    rag = LatentRAGModel.from_components(
        generator=build_tiny_causal_lm(generator_tokenizer, architecture="qwen2"),
        retriever=build_tiny_encoder(retriever_tokenizer),
        generator_tokenizer=generator_tokenizer,
        retriever_tokenizer=retriever_tokenizer,
        retriever_name="tiny-bert:mean",
    )
    rag.save_pretrained(root / "latentrag")

    from hf_latent.sentence_transformers_interop import laser_to_sentence_transformer, save_laser_sentence_transformer

    save_laser_sentence_transformer(laser_to_sentence_transformer(laser, tokenizer), root / "laser_st")

    states = torch.randn(
        2, rag.config.num_subquery_tokens, rag.hidden_size, generator=torch.Generator().manual_seed(1)
    )
    np.save(root / "states.npy", states.numpy())
    # The reference outputs come from the saved folders, loaded here with hf_latent's classes: both sides then use the
    # default attention implementation (the in-memory tiny models were built with eager attention).
    laser, rag = AutoModel.from_pretrained(root / "laser"), AutoModel.from_pretrained(root / "latentrag")
    with torch.no_grad():
        expected = {
            "laser_queries": laser.encode(QUERIES, tokenizer, is_query=True),
            "laser_documents": laser.encode(DOCUMENTS, tokenizer),
            "latent_queries": rag.encode_latent_queries(states).numpy(),
            "text_queries": rag.encode_text_queries(QUERIES).numpy(),
        }
    return root, expected


REMOTE_SCRIPT = """
import sys
sys.modules["hf_latent"] = None  # the package must not be importable: everything comes from the repositories
import re
import numpy as np
import torch
from huggingface_hub import ModelCard, hf_hub_download
from transformers import AutoModel, AutoTokenizer

out, queries, documents = sys.argv[1], {queries!r}, {documents!r}
torch.set_num_threads(int(sys.argv[2]))  # same reductions as the test process

laser = AutoModel.from_pretrained("tester/laser-tiny", trust_remote_code=True)
assert type(laser).__module__.startswith("transformers_modules."), type(laser).__module__
tokenizer = AutoTokenizer.from_pretrained("tester/laser-tiny", trust_remote_code=True)
np.save(f"{{out}}/laser_queries.npy", laser.encode(queries, tokenizer, is_query=True))
np.save(f"{{out}}/laser_documents.npy", laser.encode(documents, tokenizer))

card = ModelCard.load("tester/laser-tiny")  # README.md through hf_hub_download
assert card.data.library_name == "transformers" and "hf_latent" in card.data.tags, card.data
snippet = re.findall(r"```python\\n(.*?)```", card.text, flags=re.DOTALL)[0]
namespace = {{}}
exec(snippet, namespace)  # the card's usage snippet, as written (it names tester/laser-tiny)
assert namespace["scores"].shape == (1, 2)

rag = AutoModel.from_pretrained("tester/latentrag-tiny", trust_remote_code=True)
assert type(rag).__module__.startswith("transformers_modules."), type(rag).__module__
assert rag.generator_tokenizer is not None and rag.retriever_tokenizer is not None
states = torch.from_numpy(np.load(f"{{out}}/states.npy"))
with torch.no_grad():
    np.save(f"{{out}}/latent_queries.npy", rag.encode_latent_queries(states).numpy())
    np.save(f"{{out}}/text_queries.npy", rag.encode_text_queries(queries).numpy())

from sentence_transformers import SentenceTransformer

st_model = SentenceTransformer("tester/laser-st", trust_remote_code=True)
assert type(st_model[0]).__module__.startswith("transformers_modules."), type(st_model[0]).__module__
np.save(f"{{out}}/st_queries.npy", st_model.encode(queries, prompt_name="query"))
print("remote ok")
"""


def test_push_and_load_back_without_hf_latent(hub, online, checkpoints, tmp_path):
    root, expected = checkpoints
    for folder, repo_id in (
        ("laser", "tester/laser-tiny"),
        ("latentrag", "tester/latentrag-tiny"),
        ("laser_st", "tester/laser-st"),
    ):
        commit = push_checkpoint(root / folder, repo_id, token="hf_local_test", endpoint=hub.url)
        assert commit.commit_url.startswith(f"{hub.url}/{repo_id}/commit/")
        assert (root / folder / "README.md").is_file()  # the card is written before the upload

    laser_files = set(hub.files("tester/laser-tiny"))
    assert {"config.json", "model.safetensors", "modeling_laser.py", "configuration_laser.py"} <= laser_files
    assert {"tokenizer.json", "tokenizer_config.json", "README.md"} <= laser_files
    rag_files = set(hub.files("tester/latentrag-tiny"))
    assert {"modeling_latentrag.py", "configuration_latentrag.py", "projector.py", "model.safetensors"} <= rag_files
    assert {"generator_tokenizer/tokenizer.json", "retriever_tokenizer/tokenizer_config.json"} <= rag_files
    assert {"modules.json", "sentence_transformers_interop.py"} <= set(hub.files("tester/laser-st"))
    pushed_card = hub.files("tester/laser-tiny")["README.md"].decode()
    assert 'AutoModel.from_pretrained("tester/laser-tiny", trust_remote_code=True)' in pushed_card

    (tmp_path / "states.npy").write_bytes((root / "states.npy").read_bytes())
    env = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "HF_HUB_OFFLINE")}
    env.update(
        HF_ENDPOINT=hub.url,
        HF_HUB_OFFLINE="0",
        HF_HOME=str(tmp_path / "hf_home"),
        HF_HUB_DISABLE_TELEMETRY="1",
        TOKENIZERS_PARALLELISM="false",
    )
    script = REMOTE_SCRIPT.format(queries=QUERIES, documents=DOCUMENTS)
    result = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path), str(torch.get_num_threads())],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert result.returncode == 0 and "remote ok" in result.stdout, result.stderr[-4000:]
    for name in ("laser_queries", "laser_documents"):
        np.testing.assert_array_equal(np.load(tmp_path / f"{name}.npy"), expected[name], err_msg=name)
    for name in ("latent_queries", "text_queries"):
        np.testing.assert_array_equal(np.load(tmp_path / f"{name}.npy"), expected[name], err_msg=name)
    np.testing.assert_allclose(np.load(tmp_path / "st_queries.npy"), expected["laser_queries"], atol=1e-5)


def test_repush_updates_the_repo_and_keeps_a_hand_written_card(hub, online, checkpoints, tmp_path):
    root, _ = checkpoints
    folder = tmp_path / "laser"
    folder.mkdir()
    for path in (root / "laser").iterdir():
        (folder / path.name).write_bytes(path.read_bytes())
    (folder / "README.md").write_text("---\nlicense: mit\n---\n# Hand-written\n")
    (folder / "checkpoint-5").mkdir()
    (folder / "checkpoint-5" / "optimizer.pt").write_bytes(b"x")
    push_checkpoint(folder, "tester/laser-repush", endpoint=hub.url, private=True, commit_message="first")
    push_checkpoint(folder, "tester/laser-repush", endpoint=hub.url)  # the repo exists: create_repo answers 409
    files = hub.files("tester/laser-repush")
    assert files["README.md"].startswith(b"---\nlicense: mit")  # model_card="auto" keeps an existing card
    assert not any(path.startswith("checkpoint-") for path in files)
    assert hub.repos["tester/laser-repush"].private and hub.repos["tester/laser-repush"].messages[1] == "first"


def test_invalid_card_metadata_is_refused_by_the_hub_validation(hub, online, checkpoints, tmp_path):
    root, _ = checkpoints
    folder = tmp_path / "bad"
    folder.mkdir()
    for path in (root / "laser").iterdir():
        (folder / path.name).write_bytes(path.read_bytes())
    (folder / "README.md").write_text("---\nbase_model: /a/local/folder\n---\n# Bad\n")
    with pytest.raises(ValueError, match="Invalid metadata"):
        push_checkpoint(folder, "tester/bad", endpoint=hub.url, model_card="keep")


def test_checks_before_uploading(tmp_path, checkpoints):
    root, _ = checkpoints
    info = inspect_checkpoint(root / "latentrag")
    assert info["kind"] == "latentrag" and "projector.py" in info["code_files"] and not info["missing_code_files"]
    assert info["tokenizer_folders"] == ["generator_tokenizer", "retriever_tokenizer"]
    with pytest.raises(FileNotFoundError):
        push_checkpoint(tmp_path / "missing", "tester/x")
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(ValueError, match="'bert' model"):
        push_checkpoint(tmp_path, "tester/x")
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text((root / "laser" / "config.json").read_text())
    with pytest.raises(ValueError, match="modeling_laser.py"):
        push_checkpoint(broken, "tester/x")
    config = json.loads((root / "laser" / "config.json").read_text())
    del config["auto_map"]
    (broken / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="no auto_map"):
        push_checkpoint(broken, "tester/x")
