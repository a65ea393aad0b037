"""[`DenseIndex`]: a faiss-cpu index over L2-normalised document embeddings, addressed by string document ids.

One index is tied to the encoder that built it (`encoder_name`, `embedding_dim`): [`DenseIndex.search_texts`]
refuses queries from another embedding space. Index types:

- `"flat"` (default): exact search (`IndexFlatIP`); the reference for evaluation.
- `"ivf"`: `IndexIVFFlat`, inverted lists trained with k-means on the corpus; `nlist` defaults to about
  `sqrt(N)`, capped so that each list gets at least 39 training points (faiss' own guideline). Exact when
  `nprobe == nlist`.
- `"hnsw"`: `IndexHNSWFlat` graph, for large corpora on CPU.

All three keep the full vectors, so [`DenseIndex.get_embeddings`] returns the stored (frozen) document embeddings
by id, which LatentRAG's retrieval-alignment loss needs (specs/latentrag.md §7.2).

Scores are higher-is-better: inner products for `metric="ip"` (cosine similarity for normalised vectors) and
negated squared L2 distances for `metric="l2"`. Within a result row, equal scores are ordered by insertion order
(faiss itself returns ties in reverse order); which of several tied documents fill the last slots of a top-k is
faiss' choice.

On disk ([`DenseIndex.save`]) a folder holds `index.faiss` (`faiss.write_index`), `doc_ids.json` and
`index_config.json`. `index.faiss` is also what `datasets.Dataset.load_faiss_index` reads, and
[`DenseIndex.to_dataset_index`] attaches the index to a dataset whose rows are the documents.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import faiss
import numpy as np

from .encoders import DEFAULT_CHUNK_SIZE, iter_column


if TYPE_CHECKING:
    from datasets import Dataset

    from .encoders import TextEncoder


logger = logging.getLogger(__name__)

INDEX_FILE = "index.faiss"
DOC_IDS_FILE = "doc_ids.json"
CONFIG_FILE = "index_config.json"
INDEX_TYPES = ("flat", "ivf", "hnsw")
METRICS = {"ip": faiss.METRIC_INNER_PRODUCT, "l2": faiss.METRIC_L2}


@dataclass
class DenseIndexConfig:
    """Everything needed to rebuild or check a [`DenseIndex`]; saved as `index_config.json`.

    Args:
        encoder_name (`str`): `name` of the encoder whose embeddings the index holds.
        embedding_dim (`int`): size `d` of the vectors.
        index_type (`str`, *optional*, defaults to `"flat"`): `"flat"`, `"ivf"` or `"hnsw"`.
        metric (`str`, *optional*, defaults to `"ip"`): `"ip"` (inner product) or `"l2"`.
        num_docs (`int`, *optional*, defaults to 0): number of documents.
        nlist (`int`, *optional*): IVF inverted lists.
        nprobe (`int`, *optional*): IVF lists visited per query.
        hnsw_m (`int`, *optional*): HNSW neighbours per node.
        hnsw_ef_construction (`int`, *optional*): HNSW build-time beam.
        hnsw_ef_search (`int`, *optional*): HNSW search-time beam.
        hf_latent_version (`str`, *optional*): version of `hf_latent` that wrote the index.
    """

    encoder_name: str
    embedding_dim: int
    index_type: str = "flat"
    metric: str = "ip"
    num_docs: int = 0
    nlist: int | None = None
    nprobe: int | None = None
    hnsw_m: int | None = None
    hnsw_ef_construction: int | None = None
    hnsw_ef_search: int | None = None
    hf_latent_version: str = field(default_factory=lambda: _hf_latent_version())

    def __post_init__(self):
        if self.index_type not in INDEX_TYPES:
            raise ValueError(f"index_type must be one of {INDEX_TYPES}, got {self.index_type!r}.")
        if self.metric not in METRICS:
            raise ValueError(f"metric must be one of {tuple(METRICS)}, got {self.metric!r}.")
        if self.embedding_dim < 1:
            raise ValueError(f"embedding_dim must be >= 1, got {self.embedding_dim}.")
        for key in ("nlist", "nprobe", "hnsw_m", "hnsw_ef_construction", "hnsw_ef_search"):
            value = getattr(self, key)
            if value is not None and value < 1:
                raise ValueError(f"{key} must be >= 1, got {value}.")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class DenseIndex:
    """Nearest-neighbour search over document embeddings, with string ids, encoder checks and save/load.

    Build it with [`~DenseIndex.build`] (precomputed embeddings), [`~DenseIndex.from_corpus`] (texts + encoder) or
    [`~DenseIndex.from_dataset`] (a `datasets.Dataset`); reload it with [`~DenseIndex.load`].

    Example:

    ```python
    >>> from hf_latent import default_retriever
    >>> from hf_latent.retrieval import DenseIndex, HFEncoder
    >>> encoder = HFEncoder.from_pretrained(default_retriever())
    >>> index = DenseIndex.from_corpus(["Paris is in France.", "Berlin is in Germany."], ["d1", "d2"], encoder)
    >>> scores, ids = index.search_texts(["capital of Germany"], encoder, k=1)
    >>> ids
    [['d2']]
    ```
    """

    def __init__(self, index: faiss.Index, doc_ids: Sequence[str], config: DenseIndexConfig):
        doc_ids = _validate_doc_ids(doc_ids)
        if index.d != config.embedding_dim:
            raise ValueError(f"faiss index dimension {index.d} != config embedding_dim {config.embedding_dim}.")
        if index.ntotal != len(doc_ids):
            raise ValueError(f"faiss index holds {index.ntotal} vectors but {len(doc_ids)} doc ids were given.")
        self.index = index
        self.config = config
        self.config.num_docs = len(doc_ids)
        self._doc_ids = doc_ids
        self._positions = {doc_id: i for i, doc_id in enumerate(doc_ids)}
        self._apply_search_params()

    # ----------------------------------------------------------------------------------------------- building

    @classmethod
    def build(
        cls,
        embeddings: np.ndarray,
        doc_ids: Sequence[str],
        encoder_name: str,
        index_type: str = "flat",
        metric: str = "ip",
        nlist: int | None = None,
        nprobe: int | None = None,
        hnsw_m: int = 32,
        hnsw_ef_construction: int = 64,
        hnsw_ef_search: int = 128,
    ) -> DenseIndex:
        """Index precomputed embeddings.

        Args:
            embeddings (`np.ndarray` of shape `(num_docs, d)`): document vectors (converted to C-contiguous
                float32; a `torch.Tensor` is accepted). Normalise them for cosine similarity with `metric="ip"`.
            doc_ids (`Sequence[str]`): one unique id per row.
            encoder_name (`str`): `name` of the encoder that produced them.
            index_type (`str`, *optional*, defaults to `"flat"`): `"flat"` (exact), `"ivf"` or `"hnsw"`.
            metric (`str`, *optional*, defaults to `"ip"`): `"ip"` or `"l2"`.
            nlist (`int`, *optional*): IVF lists; defaults to `round(sqrt(N))`, capped at `N // 39` (at least 1).
            nprobe (`int`, *optional*): IVF lists visited per query; defaults to `min(nlist, 32)`.
            hnsw_m (`int`, *optional*, defaults to 32): HNSW neighbours per node.
            hnsw_ef_construction (`int`, *optional*, defaults to 64): HNSW build beam (faiss default 40).
            hnsw_ef_search (`int`, *optional*, defaults to 128): HNSW search beam (faiss default 16).

        Raises:
            ValueError: empty or non-2-D embeddings, non-finite values, `len(doc_ids) != N`, duplicate ids.
        """
        embeddings = _as_float32_matrix(embeddings, "embeddings")
        if embeddings.shape[0] == 0:
            raise ValueError("Cannot build an index from 0 embeddings.")
        doc_ids = _validate_doc_ids(doc_ids)
        if len(doc_ids) != embeddings.shape[0]:
            raise ValueError(f"Got {embeddings.shape[0]} embeddings but {len(doc_ids)} doc ids.")
        config = _make_config(
            encoder_name,
            embeddings.shape[1],
            len(doc_ids),
            index_type,
            metric,
            nlist,
            nprobe,
            hnsw_m,
            hnsw_ef_construction,
            hnsw_ef_search,
        )
        index = _new_faiss_index(config)
        if not index.is_trained:
            index.train(embeddings)
        index.add(embeddings)
        _finalize(index, config)
        return cls(index, doc_ids, config)

    @classmethod
    def from_corpus(
        cls,
        texts: Iterable[str],
        doc_ids: Sequence[str],
        encoder: TextEncoder,
        batch_size: int = 32,
        show_progress_bar: bool | None = True,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        index_type: str = "flat",
        metric: str = "ip",
        **index_kwargs: Any,
    ) -> DenseIndex:
        """Encode documents chunk by chunk and add each chunk to the faiss index as it comes.

        Peak memory is the faiss index plus one chunk of vectors (plus, for IVF, the k-means training sample of
        at most `max(chunk_size, 64 * nlist)` vectors). `texts` may be a generator.

        Args:
            texts (`Iterable[str]`): the documents, in the order of `doc_ids`.
            doc_ids (`Sequence[str]`): unique ids.
            encoder ([`TextEncoder`]): encodes with `is_query=False`.
            batch_size (`int`, *optional*, defaults to 32): texts per forward pass.
            show_progress_bar (`bool`, *optional*, defaults to `True`): one bar over all texts.
            chunk_size (`int`, *optional*, defaults to 10000): texts encoded and added per step.
            index_type, metric, index_kwargs: as in [`~DenseIndex.build`] (`nlist`, `nprobe`, `hnsw_m`, ...).
        """
        doc_ids = _validate_doc_ids(doc_ids)
        if not doc_ids:
            raise ValueError("Cannot build an index from an empty corpus.")
        if hasattr(texts, "__len__") and len(texts) != len(doc_ids):  # type: ignore[arg-type]
            raise ValueError(f"Got {len(texts)} texts but {len(doc_ids)} doc ids.")  # type: ignore[arg-type]
        encode_chunks = getattr(encoder, "encode_chunks", None)
        if encode_chunks is None:
            raise TypeError(f"{type(encoder).__name__} has no encode_chunks; wrap its encode in a CallableEncoder.")
        config = _make_config(encoder.name, encoder.embedding_dim, len(doc_ids), index_type, metric, **index_kwargs)
        index = _new_faiss_index(config)
        train_size = min(len(doc_ids), max(chunk_size, 64 * (config.nlist or 1)))
        pending: list[np.ndarray] = []  # chunks waiting for IVF training; empty for flat and HNSW
        num_added = 0
        chunks = encode_chunks(
            texts,
            batch_size=batch_size,
            chunk_size=chunk_size,
            show_progress_bar=show_progress_bar,
            is_query=False,
            total=len(doc_ids),
        )
        for chunk in chunks:
            num_added += len(chunk)
            if num_added > len(doc_ids):
                raise ValueError(f"Got more texts than the {len(doc_ids)} doc ids.")
            if index.is_trained:
                index.add(chunk)
                continue
            pending.append(chunk)
            if sum(len(c) for c in pending) >= train_size:
                sample = np.concatenate(pending)
                pending.clear()
                index.train(sample)
                index.add(sample)
                del sample
        if num_added != len(doc_ids):
            raise ValueError(f"Got {num_added} texts but {len(doc_ids)} doc ids.")
        _finalize(index, config)
        return cls(index, doc_ids, config)

    @classmethod
    def from_dataset(
        cls,
        dataset: Dataset,
        text_column: str,
        id_column: str,
        encoder: TextEncoder,
        batch_size: int = 32,
        show_progress_bar: bool | None = True,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        **index_kwargs: Any,
    ) -> DenseIndex:
        """Index the documents of a `datasets.Dataset`, reading the text column `chunk_size` rows at a time.

        Args:
            dataset (`datasets.Dataset`): one row per document.
            text_column (`str`): column with the document texts.
            id_column (`str`): column with unique document ids (non-string ids are converted with `str`).
            encoder, batch_size, show_progress_bar, chunk_size, index_kwargs: as in [`~DenseIndex.from_corpus`].
        """
        for column in (text_column, id_column):
            if column not in dataset.column_names:
                raise KeyError(f"Column {column!r} not in the dataset; columns: {dataset.column_names}.")
        doc_ids = [str(doc_id) for doc_id in iter_column(dataset, id_column, chunk_size)]
        return cls.from_corpus(
            iter_column(dataset, text_column, chunk_size),
            doc_ids,
            encoder,
            batch_size=batch_size,
            show_progress_bar=show_progress_bar,
            chunk_size=chunk_size,
            **index_kwargs,
        )

    # ---------------------------------------------------------------------------------------------- properties

    @property
    def doc_ids(self) -> list[str]:
        """The document ids, in index order (a copy)."""
        return list(self._doc_ids)

    @property
    def encoder_name(self) -> str:
        return self.config.encoder_name

    @property
    def embedding_dim(self) -> int:
        return self.config.embedding_dim

    @property
    def index_type(self) -> str:
        return self.config.index_type

    def __len__(self) -> int:
        return len(self._doc_ids)

    def __contains__(self, doc_id: object) -> bool:
        return doc_id in self._positions

    def __repr__(self) -> str:
        return (
            f"DenseIndex(num_docs={len(self)}, embedding_dim={self.embedding_dim}, index_type={self.index_type!r}, "
            f"metric={self.config.metric!r}, encoder_name={self.encoder_name!r})"
        )

    # ------------------------------------------------------------------------------------------------- search

    def search(
        self, query_embeddings: np.ndarray, k: int = 10, batch_size: int = 1024
    ) -> tuple[np.ndarray, list[list[str]]]:
        """Top-k documents for each query vector.

        Args:
            query_embeddings (`np.ndarray` of shape `(num_queries, d)` or `(d,)`): query vectors (a
                `torch.Tensor` is accepted; a 1-D vector is one query).
            k (`int`, *optional*, defaults to 10): results per query; more than `len(self)` is clamped with a
                warning.
            batch_size (`int`, *optional*, defaults to 1024): queries per faiss call.

        Returns:
            `tuple(np.ndarray, list[list[str]])`: scores of shape `(num_queries, k)`, float32, best first, and the
            matching doc ids. An approximate index may reach fewer than `k` documents: the id list is then shorter
            and the missing score slots are `-inf`.
        """
        positions, scores = self._search_positions(query_embeddings, k, batch_size)
        ids = [[self._doc_ids[p] for p in row if p >= 0] for row in positions]
        return scores, ids

    def search_texts(
        self,
        queries: Sequence[str],
        encoder: TextEncoder,
        k: int = 10,
        batch_size: int = 32,
        show_progress_bar: bool | None = None,
        is_query: bool = True,
        allow_encoder_mismatch: bool = False,
    ) -> tuple[np.ndarray, list[list[str]]]:
        """Encode queries with `encoder` (as queries) and search.

        Args:
            queries (`Sequence[str]`): query texts.
            encoder ([`TextEncoder`]): must produce vectors of this index's `embedding_dim`, and carry its
                `encoder_name` unless `allow_encoder_mismatch=True`.
            k (`int`, *optional*, defaults to 10): results per query.
            batch_size (`int`, *optional*, defaults to 32): encoding batch size.
            show_progress_bar (`bool`, *optional*): as in [`TextEncoder.encode`].
            is_query (`bool`, *optional*, defaults to `True`): encode with the query prefix/instruction.
            allow_encoder_mismatch (`bool`, *optional*, defaults to `False`): accept an encoder whose name differs
                (e.g. a fine-tuned query tower over a frozen document index); logs a warning instead of raising.

        Returns:
            Same as [`~DenseIndex.search`].
        """
        self.check_encoder(encoder, allow_encoder_mismatch=allow_encoder_mismatch)
        embeddings = encoder.encode(
            queries, batch_size=batch_size, show_progress_bar=show_progress_bar, is_query=is_query
        )
        return self.search(embeddings, k=k)

    def check_encoder(self, encoder: TextEncoder, allow_encoder_mismatch: bool = False) -> None:
        """Raise `ValueError` when `encoder` does not embed into this index's space.

        A different `embedding_dim` always raises; a different `name` raises unless `allow_encoder_mismatch`.
        """
        if encoder.embedding_dim != self.embedding_dim:
            raise ValueError(
                f"Encoder {encoder.name!r} has embedding_dim {encoder.embedding_dim} but the index holds "
                f"{self.embedding_dim}-d vectors (built with {self.encoder_name!r})."
            )
        if encoder.name != self.encoder_name:
            message = (
                f"Encoder name mismatch: the index was built with {self.encoder_name!r} but the query encoder is "
                f"{encoder.name!r}."
            )
            if not allow_encoder_mismatch:
                raise ValueError(message + " Pass allow_encoder_mismatch=True if the spaces are compatible.")
            logger.warning(message + " Searching anyway (allow_encoder_mismatch=True).")

    def get_embeddings(self, doc_ids: Sequence[str]) -> np.ndarray:
        """The stored vectors of some documents (e.g. frozen document embeddings for LatentRAG's L_ret).

        Args:
            doc_ids (`Sequence[str]`): ids to look up.

        Returns:
            `np.ndarray` of shape `(len(doc_ids), d)`, float32, in the order of `doc_ids`.

        Raises:
            KeyError: an id is not in the index (the message names it).
        """
        if isinstance(doc_ids, str):
            raise TypeError("doc_ids must be a sequence of ids, not a single string; wrap it in a list.")
        positions = []
        for doc_id in doc_ids:
            if doc_id not in self._positions:
                raise KeyError(f"Document id {doc_id!r} is not in the index.")
            positions.append(self._positions[doc_id])
        if not positions:
            return np.empty((0, self.embedding_dim), dtype=np.float32)
        return self.index.reconstruct_batch(np.asarray(positions, dtype=np.int64))

    # ---------------------------------------------------------------------------------------------- save/load

    def save(self, folder: str | os.PathLike) -> Path:
        """Write `index.faiss`, `doc_ids.json` and `index_config.json` into `folder` (created if needed)."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self.config.hf_latent_version = _hf_latent_version()
        faiss.write_index(self.index, str(folder / INDEX_FILE))
        (folder / DOC_IDS_FILE).write_text(json.dumps(self._doc_ids, ensure_ascii=False))
        (folder / CONFIG_FILE).write_text(json.dumps(self.config.to_dict(), indent=2, sort_keys=True) + "\n")
        return folder

    @classmethod
    def load(cls, folder: str | os.PathLike) -> DenseIndex:
        """Load a folder written by [`~DenseIndex.save`].

        Raises:
            FileNotFoundError: the folder or one of its three files is missing (all missing files are named).
            ValueError: the files disagree (counts, dimension).
        """
        folder = Path(folder)
        if not folder.is_dir():
            raise FileNotFoundError(f"Index folder not found: {folder}")
        missing = [name for name in (INDEX_FILE, DOC_IDS_FILE, CONFIG_FILE) if not (folder / name).is_file()]
        if missing:
            raise FileNotFoundError(f"Index folder {folder} is missing {', '.join(missing)}.")
        config_dict = json.loads((folder / CONFIG_FILE).read_text())
        known = set(DenseIndexConfig.__dataclass_fields__)
        config = DenseIndexConfig(**{key: value for key, value in config_dict.items() if key in known})
        doc_ids = json.loads((folder / DOC_IDS_FILE).read_text())
        if config.num_docs != len(doc_ids):
            raise ValueError(f"{CONFIG_FILE} says {config.num_docs} documents but {DOC_IDS_FILE} has {len(doc_ids)}.")
        index = faiss.read_index(str(folder / INDEX_FILE))
        _finalize(index, config)
        return cls(index, doc_ids, config)

    # ------------------------------------------------------------------------------------------------ datasets

    def to_dataset_index(
        self, dataset: Dataset, index_name: str = "embeddings", id_column: str | None = None
    ) -> Dataset:
        """Attach a copy of this index to `dataset` so that `dataset.get_nearest_examples(index_name, ...)` works.

        Uses `Dataset.add_faiss_index_from_external_arrays` with the stored vectors and an empty faiss index of the
        same kind (an IVF index keeps its trained centroids), so the vectors are copied once: prefer
        [`~DenseIndex.search`] for large corpora. The rows of `dataset` must be the documents, in index order.

        Args:
            dataset (`datasets.Dataset`): one row per document, in `self.doc_ids` order.
            index_name (`str`, *optional*, defaults to `"embeddings"`): name of the dataset index.
            id_column (`str`, *optional*): when given, checked to equal `self.doc_ids` row by row.

        Returns:
            The same `dataset` (modified in place, as `datasets` does).
        """
        if len(dataset) != len(self):
            raise ValueError(f"The dataset has {len(dataset)} rows but the index holds {len(self)} documents.")
        if id_column is not None:
            for row, (doc_id, expected) in enumerate(zip(iter_column(dataset, id_column), self._doc_ids)):
                if str(doc_id) != expected:
                    raise ValueError(f"Row {row} has id {doc_id!r} but the index has {expected!r} at that position.")
        empty = faiss.clone_index(self.index)
        empty.reset()
        if isinstance(empty, faiss.IndexIVF):
            empty.set_direct_map_type(faiss.DirectMap.NoMap)
        vectors = self.index.reconstruct_n(0, len(self))
        dataset.add_faiss_index_from_external_arrays(vectors, index_name, custom_index=empty)
        return dataset

    # ------------------------------------------------------------------------------------------------ private

    def _search_positions(self, query_embeddings: Any, k: int, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
        if not isinstance(k, (int, np.integer)) or isinstance(k, bool) or k < 1:
            raise ValueError(f"k must be a positive integer, got {k!r}.")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}.")
        if k > len(self):
            logger.warning("k=%d is larger than the index (%d documents); returning %d.", k, len(self), len(self))
            k = len(self)
        queries = _as_float32_matrix(query_embeddings, "query_embeddings", allow_vector=True)
        if queries.shape[1] != self.embedding_dim:
            raise ValueError(
                f"Query embeddings have dimension {queries.shape[1]} but the index holds {self.embedding_dim}-d "
                f"vectors (built with {self.encoder_name!r})."
            )
        num_queries = queries.shape[0]
        scores = np.empty((num_queries, k), dtype=np.float32)
        positions = np.empty((num_queries, k), dtype=np.int64)
        for start in range(0, num_queries, batch_size):
            distances, labels = self.index.search(queries[start : start + batch_size], k)
            batch_scores = -distances if self.config.metric == "l2" else distances
            batch_scores = np.where(labels < 0, -np.inf, batch_scores).astype(np.float32)
            # faiss returns tied scores in reverse insertion order; reorder each row by (score desc, position asc)
            # so that ties follow the corpus order, like a stable argsort. Missing results (-1) go last.
            sort_positions = np.where(labels < 0, np.iinfo(np.int64).max, labels)
            order = np.lexsort((sort_positions, -batch_scores), axis=-1)
            scores[start : start + batch_size] = np.take_along_axis(batch_scores, order, axis=-1)
            positions[start : start + batch_size] = np.take_along_axis(labels, order, axis=-1)
        return positions, scores

    def _apply_search_params(self) -> None:
        if isinstance(self.index, faiss.IndexIVF) and self.config.nprobe is not None:
            self.index.nprobe = self.config.nprobe
        if isinstance(self.index, faiss.IndexHNSW) and self.config.hnsw_ef_search is not None:
            self.index.hnsw.efSearch = self.config.hnsw_ef_search


def _make_config(
    encoder_name: str,
    embedding_dim: int,
    num_docs: int,
    index_type: str = "flat",
    metric: str = "ip",
    nlist: int | None = None,
    nprobe: int | None = None,
    hnsw_m: int = 32,
    hnsw_ef_construction: int = 64,
    hnsw_ef_search: int = 128,
) -> DenseIndexConfig:
    config = DenseIndexConfig(
        encoder_name=encoder_name, embedding_dim=int(embedding_dim), index_type=index_type, metric=metric
    )
    config.num_docs = num_docs
    if index_type == "ivf":
        if nlist is None:
            # ~sqrt(N) lists, capped so each list gets >= 39 training points (below that faiss warns).
            nlist = max(1, min(round(math.sqrt(num_docs)), num_docs // 39))
        if nlist > num_docs:
            raise ValueError(f"nlist={nlist} is larger than the number of documents ({num_docs}).")
        config.nlist = nlist
        config.nprobe = min(nlist, nprobe if nprobe is not None else 32)
    elif index_type == "hnsw":
        config.hnsw_m, config.hnsw_ef_construction, config.hnsw_ef_search = (
            hnsw_m,
            hnsw_ef_construction,
            hnsw_ef_search,
        )
    DenseIndexConfig.__post_init__(config)
    return config


def _new_faiss_index(config: DenseIndexConfig) -> faiss.Index:
    metric = METRICS[config.metric]
    if config.index_type == "flat":
        return (
            faiss.IndexFlatIP(config.embedding_dim)
            if config.metric == "ip"
            else faiss.IndexFlatL2(config.embedding_dim)
        )
    if config.index_type == "ivf":
        # index_factory gives the IVF index ownership of its quantizer.
        return faiss.index_factory(config.embedding_dim, f"IVF{config.nlist},Flat", metric)
    index = faiss.IndexHNSWFlat(config.embedding_dim, config.hnsw_m, metric)
    index.hnsw.efConstruction = config.hnsw_ef_construction
    return index


def _finalize(index: faiss.Index, config: DenseIndexConfig) -> None:
    # IVF indexes need a direct map for `reconstruct` (get_embeddings); flat and HNSW reconstruct natively.
    if isinstance(index, faiss.IndexIVF) and index.direct_map.type == faiss.DirectMap.NoMap:
        index.make_direct_map()


def _validate_doc_ids(doc_ids: Sequence[str]) -> list[str]:
    if isinstance(doc_ids, str):
        raise TypeError("doc_ids must be a sequence of strings, not a single string.")
    doc_ids = list(doc_ids)
    seen: set[str] = set()
    duplicates: list[str] = []
    for i, doc_id in enumerate(doc_ids):
        if not isinstance(doc_id, str):
            raise TypeError(f"doc_ids[{i}] is a {type(doc_id).__name__}, not a str; convert ids with str().")
        if doc_id in seen:
            duplicates.append(doc_id)
        seen.add(doc_id)
    if duplicates:
        shown = ", ".join(repr(d) for d in duplicates[:5])
        raise ValueError(f"Duplicate doc ids ({len(duplicates)} duplicates): {shown}.")
    return doc_ids


def _as_float32_matrix(array: Any, what: str, allow_vector: bool = False) -> np.ndarray:
    if hasattr(array, "detach"):  # torch.Tensor, without importing torch here
        array = array.detach().float().cpu().numpy()
    array = np.asarray(array)
    if allow_vector and array.ndim == 1:
        array = array[None, :]
    if array.ndim != 2:
        raise ValueError(f"{what} must be a 2-D array (rows, dim), got shape {array.shape}.")
    if not np.issubdtype(array.dtype, np.number) or np.issubdtype(array.dtype, np.complexfloating):
        raise ValueError(f"{what} must hold real numbers, got dtype {array.dtype}.")
    array = np.ascontiguousarray(array, dtype=np.float32)
    if array.shape[1] == 0:
        raise ValueError(f"{what} has dimension 0.")
    if not np.isfinite(array).all():
        raise ValueError(f"{what} contains NaN or infinite values.")
    return array


def _hf_latent_version() -> str:
    import hf_latent

    return getattr(hf_latent, "__version__", "unknown")
