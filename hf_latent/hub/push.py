"""Upload a saved LaSER or LatentRAG checkpoint folder to the Hugging Face Hub, ready for `trust_remote_code` loading.

Both models already inherit `PreTrainedModel.push_to_hub`; [`push_checkpoint`] covers the other common case, a folder
written earlier by `save_pretrained` / `Trainer.save_model` (weights, configs, tokenizers, including LatentRAG's
`generator_tokenizer/` and `retriever_tokenizer/` subfolders, the copied modeling files and the `README.md` card).
It checks that the folder will load with `AutoModel.from_pretrained(repo_id, trust_remote_code=True)`, writes the
model card when there is none, then runs `HfApi.create_repo` + `HfApi.upload_folder`.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

from .model_card import read_checkpoint_config, write_model_card


logger = logging.getLogger(__name__)

# Trainer leftovers that do not belong in a model repository.
DEFAULT_IGNORE_PATTERNS = (
    "checkpoint-*",
    "runs/*",
    "optimizer.pt",
    "scheduler.pt",
    "rng_state*.pth",
    "*.pyc",
    "__pycache__/*",
    ".ipynb_checkpoints/*",
)
MODEL_CARD_MODES = ("auto", "regenerate", "keep")


def _relative_imports(path: Path) -> list[str]:
    from transformers.dynamic_module_utils import get_relative_imports

    return [f"{name}.py" for name in get_relative_imports(str(path))]


def inspect_checkpoint(folder: str | os.PathLike) -> dict[str, Any]:
    """What a checkpoint folder holds, and what `trust_remote_code` loading from the Hub would miss.

    Returns:
        `dict` with `kind` (`"laser"` / `"latentrag"`), `code_files` (modeling files named by `auto_map` and their
        relative imports), `missing_code_files`, `tokenizer_folders` (folders with a tokenizer), `missing_tokenizers`,
        `has_weights` and `adapter_only` (a PEFT adapter without full weights).

    Raises:
        FileNotFoundError: no `config.json`.
        ValueError: not a LaSER or LatentRAG checkpoint.
    """
    folder = Path(folder)
    kind, config = read_checkpoint_config(folder)
    code_files: list[str] = []
    for reference in (config.get("auto_map") or {}).values():
        reference = reference[0] if isinstance(reference, (list, tuple)) else reference
        if not reference:
            continue
        module = reference.split("--")[-1].rsplit(".", 1)[0]
        code_files.append(f"{module}.py")
    queue = list(code_files)
    while queue:  # follow relative imports (modeling_latentrag.py imports projector.py)
        name = queue.pop()
        path = folder / name
        if path.is_file():
            for imported in _relative_imports(path):
                if imported not in code_files:
                    code_files.append(imported)
                    queue.append(imported)
    tokenizer_folders = [""] if kind == "laser" else ["generator_tokenizer", "retriever_tokenizer"]
    has_tokenizer = {
        name: any((folder / name / file).is_file() for file in ("tokenizer_config.json", "tokenizer.json"))
        for name in tokenizer_folders
    }
    has_weights = any(
        (folder / name).is_file()
        for name in ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin")
    )
    return {
        "kind": kind,
        "auto_map": config.get("auto_map") or {},
        "code_files": code_files,
        "missing_code_files": [name for name in code_files if not (folder / name).is_file()],
        "tokenizer_folders": [name for name, present in has_tokenizer.items() if present],
        "missing_tokenizers": [name or "." for name, present in has_tokenizer.items() if not present],
        "has_weights": has_weights,
        "adapter_only": (folder / "adapter_config.json").is_file() and not has_weights,
    }


def push_checkpoint(
    folder: str | os.PathLike,
    repo_id: str,
    token: str | bool | None = None,
    private: bool = False,
    commit_message: str | None = None,
    *,
    revision: str | None = None,
    create_pr: bool = False,
    endpoint: str | None = None,
    model_card: str = "auto",
    card_kwargs: dict[str, Any] | None = None,
    ignore_patterns: list[str] | None = None,
):
    """Create `repo_id` (if needed) and upload the whole checkpoint `folder` to it.

    Before uploading it checks that the folder loads with `AutoModel.from_pretrained(repo_id, trust_remote_code=True)`:
    `config.json` has an `auto_map` and every modeling file it names (plus their relative imports) is present.
    Missing tokenizers only warn (LaSER needs the backbone's tokenizer at the root; LatentRAG needs
    `generator_tokenizer/` and `retriever_tokenizer/`), as does a LaSER folder that holds only a PEFT adapter (its base
    model is then downloaded by name at load time).

    Args:
        folder: a folder written by `save_pretrained` or `Trainer.save_model`.
        repo_id: `namespace/name` on the Hub.
        token: a write token (default: the stored login / `HF_TOKEN`).
        private: create the repository as private (no effect when it exists).
        commit_message: defaults to "Upload <LaSER|LatentRAG> checkpoint with hf_latent".
        revision: branch to commit to (default `main`).
        create_pr: open a pull request instead of committing to the branch.
        endpoint: Hub endpoint (default `HF_ENDPOINT`, i.e. https://huggingface.co).
        model_card: `"auto"` writes `README.md` (naming `repo_id` in its usage snippet) when the folder has none;
            `"regenerate"` always rewrites it from the folder (a trainer-written card holds more: the loss
            configuration and training arguments); `"keep"` uploads the folder as it is.
        card_kwargs: more arguments for [`write_model_card`] (`eval_results`, `datasets`, `base_model`, ...).
        ignore_patterns: glob patterns of files not to upload; default [`DEFAULT_IGNORE_PATTERNS`] (trainer
            checkpoints, optimizer states, TensorBoard runs).

    Returns:
        The `huggingface_hub.CommitInfo` of the upload (`commit_url`, `oid`, `pr_url`).

    Raises:
        FileNotFoundError: the folder or its `config.json` is missing.
        ValueError: not a LaSER / LatentRAG checkpoint, or modeling files named by `auto_map` are missing.
    """
    from huggingface_hub import HfApi

    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"Checkpoint folder not found: {folder}")
    if model_card not in MODEL_CARD_MODES:
        raise ValueError(f"model_card must be one of {MODEL_CARD_MODES}, got {model_card!r}.")
    info = inspect_checkpoint(folder)
    name = "LaSER" if info["kind"] == "laser" else "LatentRAG"
    if not info["auto_map"]:
        raise ValueError(
            f"{folder}/config.json has no auto_map, so the pushed model would not load with trust_remote_code=True. "
            f"Save it again with hf_latent imported (its {name} classes register themselves for the Auto classes)."
        )
    if info["missing_code_files"]:
        raise ValueError(
            f"{folder} lacks {', '.join(info['missing_code_files'])}, named by the auto_map of its config.json; "
            "save the model again with `save_pretrained` (it copies the modeling files)."
        )
    if info["missing_tokenizers"]:
        logger.warning(
            "%s has no tokenizer in %s; users will need the tokenizer from elsewhere. Save it with "
            "`tokenizer.save_pretrained(folder)` (LaSER) or through `LatentRAGModel.save_pretrained` (LatentRAG).",
            folder,
            ", ".join(info["missing_tokenizers"]),
        )
    if info["adapter_only"]:
        logger.warning(
            "%s holds a PEFT adapter and no full weights: loading it downloads the adapter's base model by name. "
            "Merge first (`model.merge_and_unload()`, then `save_pretrained`) for a self-contained repository.",
            folder,
        )
    readme = folder / "README.md"
    if model_card == "regenerate" or (model_card == "auto" and not readme.is_file()):
        write_model_card(folder, repo_id=repo_id, **(card_kwargs or {}))

    api = HfApi(endpoint=endpoint, token=token)
    repo_url = api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
    commit = api.upload_folder(
        repo_id=repo_url.repo_id,
        folder_path=str(folder),
        repo_type="model",
        commit_message=commit_message or f"Upload {name} checkpoint with hf_latent",
        revision=revision,
        create_pr=create_pr,
        ignore_patterns=list(ignore_patterns) if ignore_patterns is not None else list(DEFAULT_IGNORE_PATTERNS),
    )
    logger.info("Pushed %s to %s (%s).", folder, repo_url.repo_id, getattr(commit, "commit_url", commit))
    return commit


def checkpoint_summary(folder: str | os.PathLike) -> str:
    """A one-line JSON summary of [`inspect_checkpoint`] (for logs and the command line)."""
    return json.dumps(inspect_checkpoint(folder), sort_keys=True)


__all__ = ["DEFAULT_IGNORE_PATTERNS", "checkpoint_summary", "inspect_checkpoint", "push_checkpoint"]
