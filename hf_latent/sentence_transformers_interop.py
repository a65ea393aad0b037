"""LaSER as a sentence-transformers model: `SentenceTransformer.encode`, its evaluators and MTEB.

[`LaserSentenceEncoder`] is a sentence-transformers input module (ST >= 5 `InputModule`) that wraps a `LaserModel`
and its tokenizer: `preprocess` applies LaSER's input formatting (specs/laser.md §2.2: instruction template for
queries, raw documents, chat template, no EOS, left padding) and `forward` runs the latent loop, so the embeddings
equal `LaserModel.encode` (up to float rounding from different batch companions).

**Queries and documents.** sentence-transformers passes a *prompt* string; LaSER needs an *instruction* inside its
query template instead of a prefix. So the module reads the prompt as the instruction:

- a non-empty prompt (`prompt_name="query"`, or `prompt="Given a post, ..."`) encodes the texts as **queries** with
  that instruction (`Instruct: {prompt}\\nQuery: {text}`);
- no prompt or an empty one (`prompt_name="document"`) encodes them as **documents** (raw text);
- `encode_query` / `encode_document` (which pass `task="query"` / `"document"`) decide by the task; a query without
  a prompt gets the model's default instruction.

[`laser_to_sentence_transformer`] sets `prompts={"query": <instruction>, "document": ""}`, which is what MTEB's
sentence-transformers wrapper expects (`encode(sentences, prompt_name="query", ...)`).

**Hub-native folders.** [`save_laser_sentence_transformer`] writes one folder that loads both ways:
`AutoModel.from_pretrained(folder, trust_remote_code=True)` (the LaSER checkpoint at the root, with its modeling
files) and `SentenceTransformer(folder, trust_remote_code=True)` (`modules.json` names this file, which is copied
into the folder as `sentence_transformers_interop.py`). Neither needs `hf_latent` installed: this file imports only
the standard library, torch, transformers and sentence-transformers, and takes LaSER's formatting functions from
the module that defines the model's class (`hf_latent.laser.modeling_laser` or its remote-code copy).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from sentence_transformers import SentenceTransformer
from sentence_transformers.base.modules import InputModule
from transformers import AutoModel, AutoTokenizer


MODULE_FILE = "sentence_transformers_interop.py"
MODULE_CLASS = "LaserSentenceEncoder"
MODULE_REFERENCE = f"{Path(MODULE_FILE).stem}.{MODULE_CLASS}"
CONFIG_FILE = "laser_sentence_encoder_config.json"


class LaserSentenceEncoder(InputModule):
    """A sentence-transformers input module running LaSER's latent view (see the module docstring).

    Args:
        model: a `LaserModel` (from `hf_latent`, or loaded with `trust_remote_code=True`).
        tokenizer: the backbone's tokenizer.
        max_seq_length: token limit, template included, for queries and documents; `None` uses the config's
            `query_max_length` / `passage_max_length`.

    `forward` also accepts `num_latent_steps` (K for one call), e.g. `st_model.encode(texts, num_latent_steps=1)`;
    `encode` also accepts `instruction=` (overrides the prompt as the instruction of queries).
    """

    config_file_name = CONFIG_FILE  # not `config.json`: the LaSER model config lives at the folder root
    config_keys = ["max_seq_length"]
    forward_kwargs = {"num_latent_steps", "instruction"}
    save_in_root = True

    def __init__(self, model: Any, tokenizer: Any, max_seq_length: int | None = None) -> None:
        super().__init__()
        if getattr(getattr(model, "config", None), "model_type", None) != "laser":
            raise TypeError(f"LaserSentenceEncoder wraps a LaserModel, got {type(model).__name__}.")
        self.model = model
        self.tokenizer = tokenizer
        self.max_seq_length = max_seq_length

    # -- LaSER's own formatting functions, from the module that defines the model class ----------------------------

    def _laser_module(self):
        module = sys.modules.get(type(self.model).__module__)
        if module is None or not hasattr(module, "tokenize_latent_texts"):
            raise TypeError(f"{type(self.model).__module__} does not define LaSER's tokenize_latent_texts.")
        return module

    def _pad_token_id(self) -> int:
        # specs/laser.md §2.2: pad on the left with the pad token, or EOS when there is none.
        for token_id in (self.tokenizer.pad_token_id, self.tokenizer.eos_token_id):
            if token_id is not None:
                return token_id
        raise ValueError("The tokenizer has neither a pad token nor an EOS token.")

    # -- sentence-transformers interface ---------------------------------------------------------------------------

    def preprocess(
        self,
        inputs: Sequence[str],
        prompt: str | None = None,
        task: str | None = None,
        instruction: str | None = None,
        **kwargs: Any,
    ) -> dict[str, torch.Tensor]:
        """Tokenize a batch the LaSER way: left-padded `input_ids` / `attention_mask` of shape `(batch, seq_len)`.

        Args:
            inputs: the texts.
            prompt: the resolved sentence-transformers prompt, read as the query instruction (see the module doc).
            task: `"query"` or `"document"` (set by `encode_query` / `encode_document`).
            instruction: an explicit instruction; implies queries unless `task="document"`.
        """
        texts = list(inputs)
        if not all(isinstance(text, str) for text in texts):
            raise TypeError("LaSER encodes text only: every input must be a string.")
        if task is not None and task not in ("query", "document"):
            raise ValueError(f"task must be 'query' or 'document', got {task!r}.")
        instruction = instruction if instruction is not None else (prompt or None)
        is_query = task == "query" or (task is None and instruction is not None)
        config = self.model.config
        max_length = self.max_seq_length or (config.query_max_length if is_query else config.passage_max_length)
        laser = self._laser_module()
        ids = laser.tokenize_latent_texts(
            self.tokenizer,
            texts,
            is_query=is_query,
            instruction=instruction if is_query else None,
            max_length=max_length,
            config=config,
        )
        batch = laser.pad_left(ids, self._pad_token_id())
        return {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}

    def forward(self, features: dict[str, Any], num_latent_steps: int | None = None, **kwargs: Any) -> dict[str, Any]:
        """Run the latent loop; adds `sentence_embedding` `(batch, hidden)` (float32, L2-normalised) and
        `latent_states` `(batch, num_latent_steps, hidden)`."""
        output = self.model(
            input_ids=features["input_ids"],
            attention_mask=features["attention_mask"],
            num_latent_steps=num_latent_steps,
        )
        features["sentence_embedding"] = output.embeddings.float()
        features["latent_states"] = output.latent_states
        return features

    def get_embedding_dimension(self) -> int:
        return int(self.model.config.backbone_config.hidden_size)

    def save(self, output_path: str, *args: Any, safe_serialization: bool = True, **kwargs: Any) -> None:
        """Save the LaSER checkpoint (config with `auto_map`, weights, modeling files), the tokenizer, this module's
        config and a copy of this file, so that the folder loads without `hf_latent`."""
        self.model.save_pretrained(output_path, safe_serialization=safe_serialization)
        self.save_tokenizer(output_path)
        self.save_config(output_path)
        target = Path(output_path) / MODULE_FILE
        if Path(__file__).resolve() != target.resolve():
            shutil.copyfile(__file__, target)

    @classmethod
    def load(
        cls,
        model_name_or_path: str,
        subfolder: str = "",
        token: bool | str | None = None,
        cache_folder: str | None = None,
        revision: str | None = None,
        local_files_only: bool = False,
        trust_remote_code: bool = False,
        model_kwargs: dict[str, Any] | None = None,
        processor_kwargs: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> LaserSentenceEncoder:
        config = cls.load_config(
            model_name_or_path,
            subfolder=subfolder,
            token=token,
            cache_folder=cache_folder,
            revision=revision,
            local_files_only=local_files_only,
        )
        hub_kwargs = {
            "token": token,
            "cache_dir": cache_folder,
            "revision": revision,
            "local_files_only": local_files_only,
        }
        if subfolder:
            hub_kwargs["subfolder"] = subfolder
        model = AutoModel.from_pretrained(
            model_name_or_path, trust_remote_code=trust_remote_code, **hub_kwargs, **(model_kwargs or {})
        )
        tokenizer = AutoTokenizer.from_pretrained(
            model_name_or_path, trust_remote_code=trust_remote_code, **hub_kwargs, **(processor_kwargs or {})
        )
        return cls(model.eval(), tokenizer, **{key: config[key] for key in cls.config_keys if key in config})


def laser_to_sentence_transformer(
    model: Any,
    tokenizer: Any,
    instruction: str | None = None,
    prompts: dict[str, str] | None = None,
    max_seq_length: int | None = None,
    **kwargs: Any,
) -> SentenceTransformer:
    """A `SentenceTransformer` around a `LaserModel`: `encode`, `encode_query` / `encode_document`, its evaluators, MTEB.

    Args:
        model: the `LaserModel` (its device is kept).
        tokenizer: the backbone's tokenizer.
        instruction: the query instruction stored as the `"query"` prompt (default: `config.default_instruction`).
        prompts: more named prompts (each one an instruction; an empty prompt means documents).
        max_seq_length: see [`LaserSentenceEncoder`].
        kwargs: other `SentenceTransformer` arguments (`model_card_data`, `truncate_dim`, ...).

    Example:

    ```python
    >>> st_model = laser_to_sentence_transformer(model, tokenizer, instruction="Given a post, retrieve ...")
    >>> queries = st_model.encode(["..."], prompt_name="query")  # == model.encode(..., is_query=True, instruction=...)
    >>> documents = st_model.encode(["..."])  # == model.encode(...)
    ```
    """
    module = LaserSentenceEncoder(model, tokenizer, max_seq_length=max_seq_length)
    query_instruction = instruction if instruction is not None else model.config.default_instruction
    all_prompts = {"query": query_instruction, "document": "", **(prompts or {})}
    if not all_prompts["query"]:
        raise ValueError("The 'query' prompt is LaSER's query instruction and must not be empty.")
    kwargs.setdefault("similarity_fn_name", "cosine")
    kwargs.setdefault("device", str(next(model.parameters()).device))
    return SentenceTransformer(modules=[module], prompts=all_prompts, **kwargs)


def save_laser_sentence_transformer(
    st_model: SentenceTransformer, path: str | os.PathLike, create_model_card: bool = False
) -> Path:
    """Save a [`laser_to_sentence_transformer`] model as one Hub-native folder (see the module docstring).

    `SentenceTransformer.save` would name the module `hf_latent.sentence_transformers_interop.LaserSentenceEncoder`
    in `modules.json`, which needs `hf_latent` to load; here it names the copy of this file saved in the folder, which
    `SentenceTransformer(path, trust_remote_code=True)` imports without `hf_latent`.

    Args:
        st_model: the sentence-transformers model (first module a [`LaserSentenceEncoder`]).
        path: the folder.
        create_model_card: let sentence-transformers write its own `README.md` (default: no; write the LaSER card
            with `hf_latent.hub.write_model_card(path)`, which adds the sentence-transformers usage).

    Returns:
        The folder.
    """
    if not isinstance(st_model[0], LaserSentenceEncoder):
        raise TypeError("The first module must be a LaserSentenceEncoder (see laser_to_sentence_transformer).")
    path = Path(path)
    st_model.save(str(path), create_model_card=create_model_card)
    modules_file = path / "modules.json"
    modules = json.loads(modules_file.read_text(encoding="utf-8"))
    for entry in modules:
        if entry["type"].endswith(f".{MODULE_CLASS}"):
            entry["type"] = MODULE_REFERENCE
    modules_file.write_text(json.dumps(modules, indent=2) + "\n", encoding="utf-8")
    return path


__all__ = [
    "MODULE_REFERENCE",
    "LaserSentenceEncoder",
    "laser_to_sentence_transformer",
    "save_laser_sentence_transformer",
]
