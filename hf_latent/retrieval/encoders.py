"""Text encoders that turn strings into L2-normalised float32 vectors for a [`DenseIndex`].

- [`TextEncoder`]: the small base class. Subclasses implement [`TextEncoder.encode_batch`]; the base class
  validates the texts, sorts them by length for batching, streams each batch into a preallocated `(N, d)` float32
  array, L2-normalises and restores the input order.
- [`HFEncoder`]: any `transformers` `AutoModel` plus tokenizer, with `"mean"`, `"last_token"` or `"cls"` pooling,
  optional query/document prefixes or a `format_fn`, and truncation at `max_length` (reported, never silent).
- [`LastTokenLMEncoder`]: the plain single-pass retriever on a causal-LM backbone (last-token pooling of the base
  model's `last_hidden_state`, left padding, nothing appended): LaSER's "basic contrastive" baseline and its K = 1
  case (specs/laser.md §2.3).
- [`CallableEncoder`]: adapts any `fn(texts, is_query) -> (batch, d)` (e.g. a LaSER model's `encode`).
- [`encode_dataset`]: encodes one column of a `datasets.Dataset`, chunk by chunk.

Progress bars follow sentence-transformers: `show_progress_bar=None` shows the bar when the logger of this module
is at level INFO or DEBUG (`transformers.logging`/`logging.getLogger("hf_latent").setLevel(logging.INFO)`), and
hides it otherwise; `True`/`False` force it.
"""

from __future__ import annotations

import abc
import inspect
import json
import logging
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from itertools import islice
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from tqdm.auto import tqdm

from .pooling import POOLING_MODES, pool


if TYPE_CHECKING:
    from datasets import Dataset
    from transformers import PreTrainedTokenizerBase


logger = logging.getLogger(__name__)

FormatFn = Callable[[str, bool], str]
"""`format_fn(text, is_query) -> str`: builds the exact model input from a raw text (instruction, chat template)."""

DEFAULT_CHUNK_SIZE = 10_000


class TextEncoder(abc.ABC):
    """Base class of the encoders: strings in, `(N, embedding_dim)` float32 L2-normalised vectors out.

    Subclasses set `name` and `embedding_dim` and implement [`~TextEncoder.encode_batch`]. [`DenseIndex`] only
    relies on `name`, `embedding_dim` and `encode` (and `encode_chunks` when building from a corpus), so any object
    with those attributes also works; wrap a bare function in [`CallableEncoder`].

    Attributes:
        name (`str`): identifies the embedding space; an index refuses queries from an encoder with another name.
        embedding_dim (`int`): size `d` of the vectors.
    """

    name: str
    embedding_dim: int

    @abc.abstractmethod
    def encode_batch(self, texts: list[str], is_query: bool = False) -> np.ndarray | torch.Tensor:
        """Encode one batch of already validated texts.

        Args:
            texts (`list[str]`): the batch, at most `batch_size` non-empty strings.
            is_query (`bool`, *optional*, defaults to `False`): whether the texts are queries (prefixes/templates).

        Returns:
            `np.ndarray` or `torch.Tensor` of shape `(batch, embedding_dim)`, not necessarily normalised.
        """

    def encode(
        self,
        texts: Sequence[str],
        batch_size: int = 32,
        show_progress_bar: bool | None = None,
        is_query: bool = False,
    ) -> np.ndarray:
        """Encode texts into L2-normalised vectors, in the order given.

        Texts are sorted by length (longest first, as sentence-transformers does) so that each batch pads little;
        each batch's vectors are written straight into a preallocated array, so memory holds one batch of hidden
        states at a time.

        Args:
            texts (`Sequence[str]`): the texts; each must contain a non-whitespace character.
            batch_size (`int`, *optional*, defaults to 32): texts per forward pass.
            show_progress_bar (`bool`, *optional*): `None` shows a bar when this module's logger is at INFO/DEBUG.
            is_query (`bool`, *optional*, defaults to `False`): encode as queries (query prefix/instruction) rather
                than documents.

        Returns:
            `np.ndarray` of shape `(len(texts), embedding_dim)`, float32, rows of unit L2 norm.

        Raises:
            TypeError: `texts` is a single string or holds a non-string.
            ValueError: a text is empty or whitespace-only (the message names its index), or `batch_size < 1`.
        """
        texts = _validate_texts(texts)
        _check_batch_size(batch_size)
        out = np.empty((len(texts), self.embedding_dim), dtype=np.float32)
        if not texts:
            return out
        with tqdm(
            total=len(texts), desc="Encoding", unit="text", disable=not _resolve_show_progress_bar(show_progress_bar)
        ) as bar:
            self._start_encoding()
            try:
                self._encode_into(texts, out, batch_size, is_query, bar)
            finally:
                self._finish_encoding()
        return out

    def encode_chunks(
        self,
        texts: Iterable[str],
        batch_size: int = 32,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        show_progress_bar: bool | None = None,
        is_query: bool = False,
        total: int | None = None,
    ) -> Iterator[np.ndarray]:
        """Stream the encoding of a large corpus, `chunk_size` texts at a time, with one progress bar.

        Only one chunk of texts and its `(chunk_size, d)` vectors are held at a time, so `texts` may be a
        generator. Length sorting happens within each chunk.

        Args:
            texts (`Iterable[str]`): the texts, consumed once.
            batch_size (`int`, *optional*, defaults to 32): texts per forward pass.
            chunk_size (`int`, *optional*, defaults to 10000): texts per yielded array.
            show_progress_bar (`bool`, *optional*): as in [`~TextEncoder.encode`].
            is_query (`bool`, *optional*, defaults to `False`): encode as queries.
            total (`int`, *optional*): number of texts, for the progress bar (`len(texts)` when available).

        Yields:
            `np.ndarray` of shape `(chunk, embedding_dim)`, float32, L2-normalised, in input order.
        """
        _check_batch_size(batch_size)
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be >= 1, got {chunk_size}.")
        if total is None and hasattr(texts, "__len__"):
            total = len(texts)  # type: ignore[arg-type]
        if isinstance(texts, str):
            raise TypeError("texts must be an iterable of strings, not a single string; wrap it in a list.")
        iterator, offset = iter(texts), 0
        with tqdm(
            total=total, desc="Encoding", unit="text", disable=not _resolve_show_progress_bar(show_progress_bar)
        ) as bar:
            self._start_encoding()
            try:
                while chunk := list(islice(iterator, chunk_size)):
                    chunk = _validate_texts(chunk, offset=offset)
                    out = np.empty((len(chunk), self.embedding_dim), dtype=np.float32)
                    self._encode_into(chunk, out, batch_size, is_query, bar)
                    offset += len(chunk)
                    yield out
            finally:
                self._finish_encoding()

    def _encode_into(self, texts: list[str], out: np.ndarray, batch_size: int, is_query: bool, bar: tqdm) -> None:
        order = np.argsort(
            np.fromiter((-len(text) for text in texts), dtype=np.int64, count=len(texts)), kind="stable"
        )
        for start in range(0, len(texts), batch_size):
            positions = order[start : start + batch_size]
            embeddings = self.encode_batch([texts[i] for i in positions], is_query=is_query)
            out[positions] = _l2_normalize(_as_float32_matrix(embeddings, len(positions), self.embedding_dim, self))
            bar.update(len(positions))

    def _start_encoding(self) -> None:
        """Hook called before a call to `encode`/`encode_chunks` (e.g. to reset counters)."""

    def _finish_encoding(self) -> None:
        """Hook called after a call to `encode`/`encode_chunks` (e.g. to report truncation once)."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, embedding_dim={self.embedding_dim})"


class HFEncoder(TextEncoder):
    """Dense encoder over any `transformers` model that returns `last_hidden_state`, plus its tokenizer.

    Args:
        model (`PreTrainedModel`): e.g. a `BertModel`, or a causal LM (`LlamaForCausalLM`, `Qwen3ForCausalLM`), of
            which the base model is used so that no logits are computed. The model is put in eval mode during
            `encode` and its training flag restored afterwards.
        tokenizer (`PreTrainedTokenizerBase`): must have a pad token.
        pooling (`str`, *optional*, defaults to `"mean"`): `"mean"`, `"last_token"` or `"cls"`.
        name (`str`, *optional*): defaults to `"<model id>:<pooling>"`, where the model id is the Hub id when the
            weights come from the Hub cache or from the bundled default models, so indexes move between machines.
        max_length (`int`, *optional*): token limit; longer inputs are truncated and each `encode` call logs one
            warning with the number of truncated texts. Defaults to the tokenizer's `model_max_length`, else the
            model's `max_position_embeddings`, else 512.
        query_prefix (`str`, *optional*, defaults to `""`): prepended to queries (e.g. `"query: "` for e5, or
            `"Instruct: {task}\\nQuery: "` for Qwen3-Embedding).
        document_prefix (`str`, *optional*, defaults to `""`): prepended to documents (e.g. `"passage: "` for e5).
        format_fn (`Callable[[str, bool], str]`, *optional*): `format_fn(text, is_query)` builds the model input
            (instruction, chat template); exclusive with the prefixes.
        padding_side (`str`, *optional*): `"left"` or `"right"`; defaults to `"left"` for last-token pooling (and
            then passes position ids counted from the first real token) and `"right"` otherwise.
        add_special_tokens (`bool`, *optional*, defaults to `True`): let the tokenizer add its special tokens
            (`[CLS]`/`[SEP]`, a BOS, or the EOS that Qwen3-Embedding's tokenizer appends). Set `False` when
            `format_fn` already writes them (chat templates). Nothing else is ever appended.
        embedding_dim (`int`, *optional*): defaults to `model.config.hidden_size`.

    Example:

    ```python
    >>> from hf_latent import default_retriever
    >>> from hf_latent.retrieval import HFEncoder
    >>> encoder = HFEncoder.from_pretrained(default_retriever(), pooling="mean")
    >>> encoder.encode(["Paris is the capital of France."]).shape
    (1, 384)
    ```
    """

    def __init__(
        self,
        model: torch.nn.Module,
        tokenizer: PreTrainedTokenizerBase,
        pooling: str = "mean",
        *,
        name: str | None = None,
        max_length: int | None = None,
        query_prefix: str = "",
        document_prefix: str = "",
        format_fn: FormatFn | None = None,
        padding_side: str | None = None,
        add_special_tokens: bool = True,
        embedding_dim: int | None = None,
    ):
        if pooling not in POOLING_MODES:
            raise ValueError(f"Unknown pooling {pooling!r}; use one of {', '.join(POOLING_MODES)}.")
        if format_fn is not None and (query_prefix or document_prefix):
            raise ValueError("Pass either format_fn or query_prefix/document_prefix, not both.")
        if padding_side is None:
            padding_side = "left" if pooling == "last_token" else "right"
        if padding_side not in ("left", "right"):
            raise ValueError(f"padding_side must be 'left' or 'right', got {padding_side!r}.")
        if tokenizer.pad_token_id is None:
            raise ValueError(
                "The tokenizer has no pad token; set one first (e.g. `tokenizer.pad_token = tokenizer.eos_token`)."
            )
        self.model = _base_model(model)
        self.tokenizer = tokenizer
        self.pooling = pooling
        self.query_prefix = query_prefix
        self.document_prefix = document_prefix
        self.format_fn = format_fn
        self.padding_side = padding_side
        self.add_special_tokens = add_special_tokens
        self.max_length = max_length if max_length is not None else _default_max_length(self.model, tokenizer)
        if self.max_length < 1:
            raise ValueError(f"max_length must be >= 1, got {self.max_length}.")
        config = getattr(self.model, "config", None)
        if embedding_dim is None:
            embedding_dim = getattr(config, "hidden_size", None)
            if embedding_dim is None:
                raise ValueError("Cannot read hidden_size from the model config; pass embedding_dim.")
        self.embedding_dim = int(embedding_dim)
        if name is None:
            name = f"{canonical_model_id(getattr(config, '_name_or_path', ''), self.model)}:{pooling}"
        self.name = name
        parameters = inspect.signature(self.model.forward).parameters
        self._accepts_token_type_ids = "token_type_ids" in parameters
        self._accepts_position_ids = "position_ids" in parameters
        self._accepts_use_cache = "use_cache" in parameters
        self._num_truncated = 0
        self._was_training = False

    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str,
        pooling: str | None = None,
        *,
        device: str | torch.device | None = None,
        dtype: torch.dtype | str = torch.float32,
        max_length: int | None = None,
        tokenizer_name_or_path: str | None = None,
        model_kwargs: dict[str, Any] | None = None,
        tokenizer_kwargs: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> HFEncoder:
        """Load a model with `AutoModel` (the base model of a causal LM) and its tokenizer.

        sentence-transformers folders are understood: `1_Pooling/config.json` gives the pooling and
        `sentence_bert_config.json` the `max_seq_length` when they are not passed.

        Args:
            name_or_path (`str`): Hub id or local folder.
            pooling (`str`, *optional*): `"mean"`, `"last_token"` or `"cls"`; defaults to the sentence-transformers
                pooling config, else `"last_token"` for causal LMs and `"mean"` for encoders.
            device (`str` or `torch.device`, *optional*): defaults to CUDA when available, else CPU.
            dtype (`torch.dtype` or `str`, *optional*, defaults to `torch.float32`): weights dtype (bf16 is slow on
                CPU).
            max_length (`int`, *optional*): token limit, see [`HFEncoder`].
            tokenizer_name_or_path (`str`, *optional*): defaults to `name_or_path`.
            model_kwargs (`dict`, *optional*): more arguments for `AutoModel.from_pretrained`.
            tokenizer_kwargs (`dict`, *optional*): more arguments for `AutoTokenizer.from_pretrained`.
            kwargs: the other arguments of [`HFEncoder`] (`name`, `query_prefix`, `format_fn`, ...).
        """
        model, tokenizer, st_pooling, st_max_length = _load_model_and_tokenizer(
            name_or_path, device, dtype, tokenizer_name_or_path, model_kwargs, tokenizer_kwargs
        )
        if pooling is None:
            if st_pooling is not None:
                pooling = st_pooling
            else:
                pooling = "last_token" if _is_causal_lm(model) else "mean"
            logger.info("Using %s pooling for %s.", pooling, name_or_path)
        if max_length is None:
            max_length = st_max_length
        kwargs.setdefault("name", f"{canonical_model_id(name_or_path)}:{pooling}")
        return cls(model, tokenizer, pooling, max_length=max_length, **kwargs)

    @property
    def device(self) -> torch.device:
        """The device of the model's parameters (inputs are moved there)."""
        return next(self.model.parameters()).device

    def format(self, text: str, is_query: bool = False) -> str:
        """The exact string fed to the tokenizer for `text` (prefix or `format_fn` applied)."""
        if self.format_fn is not None:
            return self.format_fn(text, is_query)
        return (self.query_prefix if is_query else self.document_prefix) + text

    def tokenize(self, texts: list[str], is_query: bool = False) -> dict[str, torch.Tensor]:
        """Format, tokenise, truncate at `max_length` and pad one batch.

        Returns:
            `dict` with `input_ids` and `attention_mask` of shape `(batch, seq_len)` (plus `token_type_ids` and
            `position_ids` when the model takes them and they matter), on the model's device.
        """
        formatted = [self.format(text, is_query) for text in texts]
        # A first, unpadded pass counts the texts that truncation shortens, so it is reported (never silent).
        lengths = self.tokenizer(
            formatted,
            add_special_tokens=self.add_special_tokens,
            truncation=False,
            return_attention_mask=False,
            return_token_type_ids=False,
            verbose=False,
        )["input_ids"]
        self._num_truncated += sum(len(ids) > self.max_length for ids in lengths)
        encoded = self.tokenizer(
            formatted,
            add_special_tokens=self.add_special_tokens,
            padding=True,
            truncation=True,
            max_length=self.max_length,
            padding_side=self.padding_side,
            return_tensors="pt",
        )
        inputs = {"input_ids": encoded["input_ids"], "attention_mask": encoded["attention_mask"]}
        if self._accepts_token_type_ids and "token_type_ids" in encoded:
            inputs["token_type_ids"] = encoded["token_type_ids"]
        if self.padding_side == "left" and self._accepts_position_ids:
            # Count positions from the first real token, as `generate` does, so absolute-position models give the
            # same vector whatever the padding (RoPE models are shift-invariant anyway).
            inputs["position_ids"] = (encoded["attention_mask"].cumsum(-1) - 1).clamp(min=0)
        device = self.device
        return {key: value.to(device) for key, value in inputs.items()}

    def encode_batch(self, texts: list[str], is_query: bool = False) -> torch.Tensor:
        """Pooled, un-normalised float32 vectors of shape `(batch, embedding_dim)` for one batch."""
        inputs = self.tokenize(texts, is_query=is_query)
        extra = {"use_cache": False} if self._accepts_use_cache else {}
        with torch.inference_mode():
            outputs = self.model(**inputs, **extra)
            hidden = outputs[0] if isinstance(outputs, tuple) else getattr(outputs, "last_hidden_state", None)
            if hidden is None:
                raise TypeError(
                    f"{type(self.model).__name__} returned no last_hidden_state; pass the base model to {type(self).__name__}."
                )
            # Pool in float32 (the model may run in bf16); only one batch of hidden states is alive at a time.
            return pool(hidden.float(), inputs["attention_mask"], self.pooling)

    def _start_encoding(self) -> None:
        self._num_truncated = 0
        self._was_training = self.model.training
        self.model.eval()

    def _finish_encoding(self) -> None:
        self.model.train(self._was_training)
        if self._num_truncated:
            logger.warning(
                "%d text(s) were longer than max_length=%d tokens and were truncated by %s.",
                self._num_truncated,
                self.max_length,
                self.name,
            )
        self._num_truncated = 0

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(name={self.name!r}, embedding_dim={self.embedding_dim}, pooling={self.pooling!r}, "
            f"max_length={self.max_length}, padding_side={self.padding_side!r})"
        )


class LastTokenLMEncoder(HFEncoder):
    """Plain single-pass retriever on a causal-LM backbone: the base model's last `last_hidden_state` position.

    This is LaSER's "basic contrastive" baseline and equals LaSER with K = 1 (specs/laser.md §2.3): one forward pass
    over the formatted text, left padding, nothing appended by us (the tokenizer may still add its own special
    tokens, see `add_special_tokens`), last-token pooling of the final-norm output, L2 normalisation.

    Args:
        model (`PreTrainedModel`): a causal LM or its base model.
        tokenizer (`PreTrainedTokenizerBase`): its tokenizer (with a pad token).
        format_fn (`Callable[[str, bool], str]`, *optional*): `format_fn(text, is_query)`, e.g. LaSER's
            instruction + chat template formatter; identity when `None`.
        kwargs: the other arguments of [`HFEncoder`] except `pooling` (`name`, `max_length`, `padding_side`,
            `add_special_tokens`, `embedding_dim`).
    """

    def __init__(
        self,
        model: torch.nn.Module,
        tokenizer: PreTrainedTokenizerBase,
        *,
        format_fn: FormatFn | None = None,
        **kwargs: Any,
    ):
        if "pooling" in kwargs:
            raise TypeError("LastTokenLMEncoder always uses last-token pooling; use HFEncoder for other poolings.")
        super().__init__(model, tokenizer, "last_token", format_fn=format_fn, **kwargs)

    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str,
        format_fn: FormatFn | None = None,
        *,
        device: str | torch.device | None = None,
        dtype: torch.dtype | str = torch.float32,
        tokenizer_name_or_path: str | None = None,
        model_kwargs: dict[str, Any] | None = None,
        tokenizer_kwargs: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> LastTokenLMEncoder:
        """Load a causal LM's base model and tokenizer (a missing pad token is set to the EOS token).

        Args:
            name_or_path (`str`): Hub id or local folder (e.g. [`hf_latent.default_backbone`]).
            format_fn (`Callable[[str, bool], str]`, *optional*): see [`LastTokenLMEncoder`].
            device, dtype, tokenizer_name_or_path, model_kwargs, tokenizer_kwargs: as in
                [`HFEncoder.from_pretrained`].
            kwargs: the other arguments of [`LastTokenLMEncoder`].
        """
        model, tokenizer, _, st_max_length = _load_model_and_tokenizer(
            name_or_path, device, dtype, tokenizer_name_or_path, model_kwargs, tokenizer_kwargs
        )
        kwargs.setdefault("max_length", st_max_length)
        kwargs.setdefault("name", f"{canonical_model_id(name_or_path)}:last_token")
        return cls(model, tokenizer, format_fn=format_fn, **kwargs)


class CallableEncoder(TextEncoder):
    """Adapter turning any function into a [`TextEncoder`] (batching, validation, order, normalisation included).

    Args:
        name (`str`): name of the embedding space (see [`TextEncoder`]).
        embedding_dim (`int`): size of the vectors `fn` returns.
        fn (`Callable`): called as `fn(texts, is_query=is_query)` on one batch (a `list[str]`); returns an array or
            tensor of shape `(batch, embedding_dim)`, normalised or not. Runs under `torch.inference_mode()`.

    Example:

    ```python
    >>> encoder = CallableEncoder("laser-0.6b", 1024, lambda texts, is_query: laser.encode(texts, is_query=is_query))
    ```
    """

    def __init__(self, name: str, embedding_dim: int, fn: Callable[..., np.ndarray | torch.Tensor]):
        if embedding_dim < 1:
            raise ValueError(f"embedding_dim must be >= 1, got {embedding_dim}.")
        self.name = name
        self.embedding_dim = int(embedding_dim)
        self.fn = fn

    def encode_batch(self, texts: list[str], is_query: bool = False) -> np.ndarray | torch.Tensor:
        with torch.inference_mode():
            return self.fn(texts, is_query=is_query)


def encode_dataset(
    dataset: Dataset,
    column: str,
    encoder: TextEncoder,
    batch_size: int = 32,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    show_progress_bar: bool | None = None,
    is_query: bool = False,
) -> np.ndarray:
    """Encode one text column of a `datasets.Dataset` into a preallocated `(len(dataset), d)` float32 array.

    The column is read `chunk_size` rows at a time, so the texts are never all materialised as Python strings.

    Args:
        dataset (`datasets.Dataset`): the rows.
        column (`str`): name of the text column.
        encoder ([`TextEncoder`]): the encoder.
        batch_size, chunk_size, show_progress_bar, is_query: as in [`TextEncoder.encode_chunks`].

    Returns:
        `np.ndarray` of shape `(len(dataset), encoder.embedding_dim)`, float32, L2-normalised, in row order.
    """
    if column not in dataset.column_names:
        raise KeyError(f"Column {column!r} not in the dataset; columns: {dataset.column_names}.")
    out = np.empty((len(dataset), encoder.embedding_dim), dtype=np.float32)
    start = 0
    chunks = encoder.encode_chunks(
        iter_column(dataset, column, chunk_size),
        batch_size=batch_size,
        chunk_size=chunk_size,
        show_progress_bar=show_progress_bar,
        is_query=is_query,
        total=len(dataset),
    )
    for chunk in chunks:
        out[start : start + len(chunk)] = chunk
        start += len(chunk)
    return out


def iter_column(dataset: Dataset, column: str, chunk_size: int = DEFAULT_CHUNK_SIZE) -> Iterator[Any]:
    """Yield the values of one column of a `datasets.Dataset`, reading `chunk_size` rows at a time."""
    for rows in dataset.select_columns([column]).iter(batch_size=chunk_size):
        yield from rows[column]


def canonical_model_id(name_or_path: str | Path, model: torch.nn.Module | None = None) -> str:
    """A machine-independent id for a model, used in encoder names.

    - a Hugging Face cache snapshot (`.../models--org--name/snapshots/<sha>`) gives `org/name`;
    - the bundled all-MiniLM-L6-v2 package folder gives its Hub id;
    - a folder under [`hf_latent.cache_dir`] (e.g. the converted SmolLM2) gives the folder name;
    - an empty string gives the model class name; anything else is returned unchanged.
    """
    from hf_latent.resources import DEFAULT_RETRIEVER_HUB_ID, RETRIEVER_PACKAGE, cache_dir

    text = str(name_or_path)
    if not text:
        return type(model).__name__ if model is not None else "unknown"
    match = re.search(r"models--([^/\\]+?)--([^/\\]+)[/\\]snapshots[/\\]", text)
    if match:
        return f"{match[1]}/{match[2]}"
    path = Path(text)
    if path.name == "model" and path.parent.name == RETRIEVER_PACKAGE:
        return DEFAULT_RETRIEVER_HUB_ID
    try:
        if path.is_dir() and path.resolve().parent == cache_dir().resolve():
            return path.name
    except OSError:
        pass
    return text


def _validate_texts(texts: Sequence[str] | Iterable[str], offset: int = 0) -> list[str]:
    if isinstance(texts, str):
        raise TypeError("texts must be a sequence of strings, not a single string; wrap it in a list.")
    texts = list(texts)
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise TypeError(f"texts[{offset + i}] is a {type(text).__name__}, not a str.")
        if not text.strip():
            raise ValueError(f"texts[{offset + i}] is empty or whitespace-only ({text!r}); cannot encode it.")
    return texts


def _check_batch_size(batch_size: int) -> None:
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}.")


def _resolve_show_progress_bar(show_progress_bar: bool | None) -> bool:
    # sentence-transformers' convention: shown when the logger is at INFO or DEBUG, unless forced.
    if show_progress_bar is None:
        return logger.getEffectiveLevel() in (logging.INFO, logging.DEBUG)
    return bool(show_progress_bar)


def _as_float32_matrix(embeddings: Any, rows: int, dim: int, encoder: TextEncoder) -> np.ndarray:
    if isinstance(embeddings, torch.Tensor):
        embeddings = embeddings.detach().to(device="cpu", dtype=torch.float32).numpy()
    embeddings = np.asarray(embeddings, dtype=np.float32)
    if embeddings.shape != (rows, dim):
        raise ValueError(
            f"{encoder!r} returned shape {embeddings.shape} for a batch of {rows}; expected {(rows, dim)}."
        )
    return embeddings


def _l2_normalize(embeddings: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(embeddings, axis=1, keepdims=True)
    return embeddings / np.maximum(norms, 1e-12)


def _base_model(model: torch.nn.Module) -> torch.nn.Module:
    """The backbone of a `*ForCausalLM`/`*ForMaskedLM` model (no head, so no logits), else the model itself."""
    from transformers import PreTrainedModel

    base = getattr(model, "base_model", None)
    if isinstance(model, PreTrainedModel) and isinstance(base, PreTrainedModel) and base is not model:
        return base
    return model


def _is_causal_lm(model: torch.nn.Module) -> bool:
    config = getattr(model, "config", None)
    architectures = getattr(config, "architectures", None) or []
    return any(arch.endswith("ForCausalLM") for arch in architectures) or bool(getattr(config, "is_decoder", False))


def _default_max_length(model: torch.nn.Module, tokenizer: PreTrainedTokenizerBase) -> int:
    limits = [getattr(tokenizer, "model_max_length", None)]
    limits.append(getattr(getattr(model, "config", None), "max_position_embeddings", None))
    # Tokenizers without a limit report a huge sentinel (int(1e30)).
    limits = [int(limit) for limit in limits if isinstance(limit, int) and 0 < limit < 1_000_000]
    return min(limits) if limits else 512


def _read_json(name_or_path: str, filename: str) -> dict | None:
    path = Path(name_or_path) / filename
    if not Path(name_or_path).is_dir():
        try:
            from transformers.utils import cached_file

            resolved = cached_file(
                name_or_path,
                filename,
                _raise_exceptions_for_missing_entries=False,
                _raise_exceptions_for_connection_errors=False,
                _raise_exceptions_for_gated_repo=False,
            )
        except Exception:  # offline, unknown repo: no sentence-transformers metadata
            resolved = None
        if resolved is None:
            return None
        path = Path(resolved)
    if not path.is_file():
        return None
    return json.loads(path.read_text())


def _sentence_transformers_metadata(name_or_path: str) -> tuple[str | None, int | None]:
    """Pooling mode and `max_seq_length` from a sentence-transformers folder, where present."""
    pooling = None
    pooling_config = _read_json(name_or_path, "1_Pooling/config.json")
    if pooling_config:
        modes = {
            "pooling_mode_mean_tokens": "mean",
            "pooling_mode_cls_token": "cls",
            "pooling_mode_lasttoken": "last_token",
        }
        chosen = [mode for key, mode in modes.items() if pooling_config.get(key)]
        if len(chosen) == 1:
            pooling = chosen[0]
        elif pooling_config.get("pooling_mode") in {"mean", "cls", "lasttoken"}:
            pooling = {"lasttoken": "last_token"}.get(pooling_config["pooling_mode"], pooling_config["pooling_mode"])
    st_config = _read_json(name_or_path, "sentence_bert_config.json") or {}
    max_seq_length = st_config.get("max_seq_length")
    return pooling, int(max_seq_length) if max_seq_length else None


def _load_model_and_tokenizer(
    name_or_path: str,
    device: str | torch.device | None,
    dtype: torch.dtype | str,
    tokenizer_name_or_path: str | None,
    model_kwargs: dict[str, Any] | None,
    tokenizer_kwargs: dict[str, Any] | None,
) -> tuple[torch.nn.Module, PreTrainedTokenizerBase, str | None, int | None]:
    from transformers import AutoModel, AutoTokenizer

    name_or_path = str(name_or_path)
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_name_or_path or name_or_path, **(tokenizer_kwargs or {}))
    if tokenizer.pad_token_id is None:
        if tokenizer.eos_token is None:
            raise ValueError(f"The tokenizer of {name_or_path} has neither a pad nor an EOS token; set a pad token.")
        logger.info("Setting the pad token of %s to its EOS token %r.", name_or_path, tokenizer.eos_token)
        tokenizer.pad_token = tokenizer.eos_token
    # AutoModel loads the base model of a causal-LM checkpoint (no LM head).
    model = AutoModel.from_pretrained(name_or_path, dtype=dtype, **(model_kwargs or {}))
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    model = model.to(device).eval()
    pooling, max_seq_length = _sentence_transformers_metadata(name_or_path)
    return model, tokenizer, pooling, max_seq_length
