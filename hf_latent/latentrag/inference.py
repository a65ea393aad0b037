"""LatentRAG's agentic loop (specs/latentrag.md §4), its trace, and a pipeline-like convenience.

One question at a time on one KV cache (the paper's batch-size-1 latency protocol, §11):

1. prefill instruction + question + think_1..think_m (one pass), keep H^τ_0;
2. restricted argmax at think_m over {query_1, `<answer>`};
3. on ⟨query⟩ (fewer than `max_retrievals` so far): one cached pass over query_1..query_n → H^s_t → `Proj_ret` →
   `f_ret` → faiss top-k → `<information>` + passages as text + `</information>` + think_1..think_m in **one** cached
   pass → back to 2;
4. otherwise (⟨answer⟩, or the cap forces it): feed `<answer>` and decode greedily until `</answer>` or EOS (the
   placeholders and the other structural tags are masked out of the answer);
5. optionally decode every latent thought / sub-query into text as one padded batch.

Stage times (ms) in the trace: `prefill` (step 1), `thoughts` (the information + thought passes of step 3: the pass
that reads the passages and produces the next latent thought), `subqueries` (the sub-query pass plus `Proj_ret` and
`f_ret`, as in the paper, §11), `retrieval` (faiss search and passage lookup), `answer` (step 4) and `decoding`
(step 5, only with `decode_latents=True`). The comparison systems in `baselines.py` fill the same trace.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from .prompts import check_question, encode_information, encode_prompt


if TYPE_CHECKING:
    from datasets import Dataset

    from ..retrieval import DenseIndex
    from .modeling_latentrag import LatentRAGModel


STAGES = ("prefill", "thoughts", "subqueries", "retrieval", "answer")


@dataclass
class LatentRAGTrace:
    """What happened while answering one question (LatentRAG or a comparison system).

    Attributes:
        system (`str`): `"latentrag"`, `"naive_rag"` or `"explicit_agentic_rag"`.
        actions (`list[str]`): one action per decision point, `"query"` or `"answer"` (LatentRAG: one per thought
            step, so `len(actions) == num_retrievals + 1`).
        forced_answer (`bool`): the retrieval cap (or a token cap) forced the answer.
        retrieved_ids (`list[list[str]]`): the top-k document ids of each retrieval, best first.
        retrieval_scores (`list[list[float]]`): their scores (cosine similarity).
        queries (`list[str]`): text queries of the baselines (empty for LatentRAG; see `decoded_subqueries`).
        num_forward_passes (`int`): generator forward passes (prefills and every decoding step; latent decoding
            excluded, see `forward_passes["decoding"]`).
        forward_passes (`dict[str, int]`): passes per stage. For LatentRAG, thought passes =
            `prefill + thoughts` = r + 1, sub-query passes = `subqueries` = r, answer decode steps = `answer` (§4).
        stage_ms (`dict[str, float]`): wall time per stage in milliseconds (see the module docstring).
        total_ms (`float`): wall time from question in to answer out (latent decoding excluded; see `stage_ms`).
        num_context_tokens (`int`): tokens in the KV cache at the end.
        num_generated_tokens (`int`): tokens the generator wrote (answer tokens for LatentRAG; every token of the
            turns for the explicit baseline).
        answer_token_ids (`list[int]`): generated answer ids (stop token included when reached).
        generated_text (`str`): all text the generator wrote (baselines; for LatentRAG the answer part).
        decoded_thoughts (`list[str]`, *optional*): latent thoughts decoded into text (`decode_latents=True`).
        decoded_subqueries (`list[str]`, *optional*): latent sub-queries decoded into text.
    """

    system: str = "latentrag"
    actions: list[str] = field(default_factory=list)
    forced_answer: bool = False
    retrieved_ids: list[list[str]] = field(default_factory=list)
    retrieval_scores: list[list[float]] = field(default_factory=list)
    queries: list[str] = field(default_factory=list)
    num_forward_passes: int = 0
    forward_passes: dict[str, int] = field(
        default_factory=lambda: dict.fromkeys(("prefill", "thoughts", "subqueries", "answer"), 0)
    )
    stage_ms: dict[str, float] = field(default_factory=lambda: dict.fromkeys(STAGES, 0.0))
    total_ms: float = 0.0
    num_context_tokens: int = 0
    num_generated_tokens: int = 0
    answer_token_ids: list[int] = field(default_factory=list)
    generated_text: str = ""
    decoded_thoughts: list[str] | None = None
    decoded_subqueries: list[str] | None = None

    @property
    def num_retrievals(self) -> int:
        return len(self.retrieved_ids)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict (for logging)."""
        return asdict(self)


@dataclass
class LatentRAGResult:
    """The answer to one question and its [`LatentRAGTrace`].

    With `return_latents=True` ([`run_latentrag`]) it also holds the latents and the final context:

    Attributes:
        answer (`str`): the answer text.
        trace ([`LatentRAGTrace`]): what happened.
        thought_states (`torch.Tensor` of shape `(num_retrievals + 1, num_thought_tokens, hidden)`, *optional*):
            H^τ_t of every step.
        subquery_states (`torch.Tensor` of shape `(num_retrievals, num_subquery_tokens, hidden)`, *optional*): H^s_t.
        context_ids (`list[int]`, *optional*): every token fed to the generator, in order (the sequence a single
            teacher-forced pass would see, §13.1).
    """

    answer: str
    trace: LatentRAGTrace
    thought_states: torch.Tensor | None = None
    subquery_states: torch.Tensor | None = None
    context_ids: list[int] | None = None


class _StageClock:
    """Accumulates wall time per stage; synchronises CUDA so that asynchronous kernels are charged correctly."""

    def __init__(self, trace: LatentRAGTrace, device: torch.device):
        self.trace = trace
        self.cuda = device.type == "cuda"
        self.start = self.last = self._now()

    def _now(self) -> float:
        if self.cuda:
            torch.cuda.synchronize()
        return time.perf_counter()

    def lap(self, stage: str) -> None:
        now = self._now()
        self.trace.stage_ms[stage] = self.trace.stage_ms.get(stage, 0.0) + (now - self.last) * 1000.0
        self.last = now

    def total(self) -> float:
        return (self._now() - self.start) * 1000.0


# -------------------------------------------------------------------------------------------------------- corpus


class CorpusLookup(Mapping):
    """Read-only `doc id -> {"title", "text"}` view of a mapping or of a `datasets.Dataset` (`id`, `title`, `text`).

    A missing id raises `KeyError` naming it (an index and a corpus that disagree).
    """

    def __init__(self, corpus: Mapping[str, Mapping[str, Any]] | Dataset | CorpusLookup):
        if isinstance(corpus, CorpusLookup):
            self._rows = corpus._rows
            return
        if isinstance(corpus, Mapping):
            self._rows = corpus
            return
        columns = getattr(corpus, "column_names", None)
        if columns is None or not {"id", "text"} <= set(columns):
            raise TypeError("corpus must be a mapping id -> {title, text} or a Dataset with id, title, text columns.")
        ids, texts = corpus["id"], corpus["text"]
        titles = corpus["title"] if "title" in columns else [""] * len(ids)
        self._rows = {str(i): {"id": str(i), "title": t, "text": x} for i, t, x in zip(ids, titles, texts)}

    def __getitem__(self, doc_id: str) -> Mapping[str, Any]:
        try:
            return self._rows[doc_id]
        except KeyError:
            raise KeyError(f"Document id {doc_id!r} returned by the index is not in the corpus.") from None

    def __iter__(self):
        return iter(self._rows)

    def __len__(self) -> int:
        return len(self._rows)


def check_index(model: LatentRAGModel, index: DenseIndex) -> None:
    """Raise `ValueError` when `index` was not built in the model's retrieval space (name or dimension differ)."""
    dim = getattr(index, "embedding_dim", None) or getattr(index, "dim", None)
    if dim is not None and int(dim) != model.retrieval_dim:
        raise ValueError(
            f"The index holds {dim}-d vectors but the model's retriever produces {model.retrieval_dim}-d vectors."
        )
    name = getattr(index, "encoder_name", None)
    if model.retriever_name is not None and name != model.retriever_name:
        raise ValueError(
            f"The index was built with encoder {name!r} but the model retrieves in {model.retriever_name!r}; build it "
            "with `model.build_index(corpus)` (or set `model.config.retriever_name` if the spaces are the same)."
        )


def search(index: DenseIndex, query_vectors: torch.Tensor, k: int) -> tuple[list[list[float]], list[list[str]]]:
    """faiss search for a `(num_queries, d)` tensor: `(scores, ids)` as lists, `k` capped at the index size."""
    k = min(k, len(index))
    vectors = np.ascontiguousarray(query_vectors.detach().float().cpu().numpy(), dtype=np.float32)
    scores, ids = index.search(vectors, k=k)
    return [list(map(float, row)) for row in np.asarray(scores)], [list(row) for row in ids]


def build_index(
    model: LatentRAGModel,
    corpus: Mapping[str, Mapping[str, Any]] | Dataset,
    batch_size: int = 32,
    show_progress_bar: bool = True,
    **index_kwargs: Any,
) -> DenseIndex:
    """Encode a corpus with the model's frozen reference retriever (document path) into a `DenseIndex`.

    Documents are rendered with `config.retriever_document_template` (`"{title}\\n{text}"`) and the document prefix;
    the index is stamped with `model.retriever_name`, which the loop checks.

    Args:
        model ([`LatentRAGModel`]): the model.
        corpus: a mapping id -> {title, text} or a `datasets.Dataset` with `id`, `title`, `text` columns.
        batch_size (`int`, *optional*, defaults to 32): documents per retriever pass.
        show_progress_bar (`bool`, *optional*, defaults to `True`): a tqdm bar.
        index_kwargs: `index_type` (`"flat"`, `"ivf"`, `"hnsw"`) and the other options of `DenseIndex.from_corpus`.
    """
    from ..retrieval import CallableEncoder, DenseIndex

    lookup = CorpusLookup(corpus)
    doc_ids = list(lookup)
    texts = [model.format_document_for_retrieval(lookup[i].get("title", ""), lookup[i]["text"]) for i in doc_ids]

    def encode(batch: list[str], is_query: bool = False) -> torch.Tensor:
        return model.encode_documents(batch, batch_size=len(batch))

    encoder = CallableEncoder(model.retriever_name, model.retrieval_dim, encode)
    return DenseIndex.from_corpus(
        texts, doc_ids, encoder, batch_size=batch_size, show_progress_bar=show_progress_bar, **index_kwargs
    )


# ---------------------------------------------------------------------------------------------------------- loop


def _device(model: LatentRAGModel) -> torch.device:
    return model.generator.get_input_embeddings().weight.device


def _ids(values: Sequence[int], device: torch.device) -> torch.Tensor:
    return torch.tensor([list(values)], dtype=torch.long, device=device)


@torch.inference_mode()
def run_latentrag(
    model: LatentRAGModel,
    question: str,
    index: DenseIndex,
    corpus: Mapping[str, Mapping[str, Any]] | Dataset | CorpusLookup,
    *,
    max_retrievals: int | None = None,
    top_k: int | None = None,
    max_answer_tokens: int | None = None,
    decode_latents: bool = False,
    return_latents: bool = False,
    check: bool = True,
) -> LatentRAGResult:
    """Answer one question with the latent agentic loop of §4 (batch size 1, one KV cache).

    Args:
        model ([`LatentRAGModel`]): with `generator_tokenizer` set.
        question (`str`): the question.
        index (`DenseIndex`): built in the model's retrieval space (see [`build_index`]).
        corpus: a mapping id -> {title, text}, a `datasets.Dataset` (`id`, `title`, `text`) or a [`CorpusLookup`]
            (convert a Dataset once when answering many questions).
        max_retrievals (`int`, *optional*): cap; defaults to `config.max_retrievals` (4).
        top_k (`int`, *optional*): passages per retrieval; defaults to `config.top_k_documents` (3).
        max_answer_tokens (`int`, *optional*): defaults to `config.max_answer_tokens`.
        decode_latents (`bool`, *optional*, defaults to `False`): also decode the latent thoughts and sub-queries
            into text (one padded greedy batch after the episode, §4 step 5).
        return_latents (`bool`, *optional*, defaults to `False`): keep H^τ, H^s and the context ids in the result.
        check (`bool`, *optional*, defaults to `True`): check that the index matches the retriever.

    Returns:
        [`LatentRAGResult`] with the answer text and the trace.

    Raises:
        ValueError: empty question, or an index built with another retriever.
        KeyError: the index returned a document id that is not in the corpus.
    """
    question = check_question(question)
    tokenizer = model.generator_tokenizer
    if tokenizer is None:
        raise ValueError("The model has no generator_tokenizer; set `model.generator_tokenizer`.")
    if check:
        check_index(model, index)
    model._require_token_ids()
    config = model.config
    lookup = CorpusLookup(corpus)
    max_retrievals = config.max_retrievals if max_retrievals is None else max_retrievals
    top_k = config.top_k_documents if top_k is None else top_k
    max_answer_tokens = config.max_answer_tokens if max_answer_tokens is None else max_answer_tokens
    m = config.num_thought_tokens
    device = _device(model)
    trace = LatentRAGTrace(system="latentrag")
    passes = trace.forward_passes
    clock = _StageClock(trace, device)

    # 1. Prefill: instruction + question + think_1..think_m.
    context = encode_prompt(tokenizer, config, question)
    hidden, logits, cache = model.run_generator(
        input_ids=_ids(context, device), use_cache=True, logits_positions=slice(-1, None)
    )
    thought_states, subquery_states = [hidden[0, -m:]], []
    passes["prefill"] += 1
    clock.lap("prefill")

    while True:
        # 2. Restricted argmax at think_m.
        wants_query = int(model.select_action(logits[0, -1])) == 0
        if not wants_query or trace.num_retrievals >= max_retrievals:
            trace.forced_answer = wants_query
            trace.actions.append("answer")
            break
        trace.actions.append("query")
        # 3a. Sub-query pass, Proj_ret and f_ret (charged to sub-query generation, §11).
        hidden, _, cache = model.run_generator(
            input_ids=_ids(config.subquery_token_ids, device), past_key_values=cache, use_cache=True
        )
        context += config.subquery_token_ids
        subquery_states.append(hidden[0])
        query_vector = model.encode_latent_queries(hidden)
        passes["subqueries"] += 1
        clock.lap("subqueries")
        # 3b. faiss top-k and passage lookup.
        scores, ids = search(index, query_vector, top_k)
        documents = [lookup[doc_id] for doc_id in ids[0]]
        trace.retrieved_ids.append(ids[0])
        trace.retrieval_scores.append(scores[0])
        clock.lap("retrieval")
        # 3c. <information> passages </information> think_1..think_m in one cached pass.
        information = encode_information(tokenizer, config, documents)
        hidden, logits, cache = model.run_generator(
            input_ids=_ids(information, device),
            past_key_values=cache,
            use_cache=True,
            logits_positions=slice(-1, None),
        )
        context += information
        thought_states.append(hidden[0, -m:])
        passes["thoughts"] += 1
        clock.lap("thoughts")

    # 4. <answer>, then greedy decoding until </answer> or EOS.
    stop_ids = {config.answer_end_token_id, tokenizer.eos_token_id} - {None}
    # Placeholders and the other structural tags never belong to an answer [D]: constrained greedy decoding.
    banned = torch.tensor(
        [*config.thought_token_ids, *config.subquery_token_ids, config.answer_start_token_id]
        + [config.information_start_token_id, config.information_end_token_id],
        device=device,
    )
    next_token = config.answer_start_token_id
    generated: list[int] = []
    for _ in range(max_answer_tokens):
        _, logits, cache = model.run_generator(
            input_ids=_ids([next_token], device),
            past_key_values=cache,
            use_cache=True,
            logits_positions=slice(-1, None),
        )
        context.append(next_token)
        passes["answer"] += 1
        next_token = int(logits[0, -1].index_fill(0, banned, float("-inf")).argmax())
        generated.append(next_token)
        if next_token in stop_ids:
            break
    answer = tokenizer.decode([t for t in generated if t not in stop_ids], skip_special_tokens=True).strip()
    clock.lap("answer")
    trace.total_ms = clock.total()
    trace.answer_token_ids = generated
    trace.num_generated_tokens = len(generated)
    trace.generated_text = answer
    trace.num_context_tokens = len(context)
    trace.num_forward_passes = sum(passes.values())

    # 5. Optional transparency: all latents decoded as one padded batch.
    if decode_latents:
        decoded = model.decode_latents(
            torch.stack(thought_states), torch.stack(subquery_states) if subquery_states else None
        )
        trace.decoded_thoughts, trace.decoded_subqueries = decoded.thoughts, decoded.subqueries
        passes["decoding"] = decoded.num_forward_passes
        clock.lap("decoding")
    result = LatentRAGResult(answer=answer, trace=trace)
    if return_latents:
        result.thought_states = torch.stack(thought_states).clone()
        result.subquery_states = (
            torch.stack(subquery_states).clone()
            if subquery_states
            else hidden.new_zeros(0, config.num_subquery_tokens, hidden.shape[-1])
        )
        result.context_ids = context
    return result


def answer_questions(
    model: LatentRAGModel,
    questions: Iterable[str] | Dataset,
    index: DenseIndex,
    corpus: Mapping[str, Mapping[str, Any]] | Dataset | CorpusLookup,
    show_progress_bar: bool = True,
    **kwargs: Any,
) -> list[LatentRAGResult]:
    """Answer many questions, one at a time (batch size 1 is the latency protocol of §11, and each question's loop
    takes its own path), with a tqdm bar.

    Args:
        model, index, corpus: as in [`run_latentrag`] (the corpus is converted once).
        questions: strings, or a `datasets.Dataset` with a `question` column.
        show_progress_bar (`bool`, *optional*, defaults to `True`): a tqdm bar.
        kwargs: the options of [`run_latentrag`] (`max_retrievals`, `top_k`, `decode_latents`, ...).
    """
    from tqdm.auto import tqdm

    if hasattr(questions, "column_names"):
        questions = questions["question"]
    questions = list(questions)
    check_index(model, index)
    lookup = CorpusLookup(corpus)
    return [
        run_latentrag(model, question, index, lookup, check=False, **kwargs)
        for question in tqdm(questions, desc="LatentRAG", unit="question", disable=not show_progress_bar)
    ]


class LatentRAGPipeline:
    """`pipeline`-like convenience: `LatentRAGPipeline(model, index, corpus)(question) -> LatentRAGResult`.

    Args:
        model ([`LatentRAGModel`]): the model (with its tokenizers).
        index (`DenseIndex`, *optional*): defaults to `model.build_index(corpus)`.
        corpus: a mapping id -> {title, text} or a `datasets.Dataset` with `id`, `title`, `text` columns.
        kwargs: default options of [`run_latentrag`] (`max_retrievals`, `top_k`, `decode_latents`, ...).

    Example:

    ```python
    >>> from hf_latent.data import load_demo_corpus
    >>> from hf_latent.latentrag import LatentRAGModel, LatentRAGPipeline
    >>> model = LatentRAGModel.from_pretrained("path/to/latentrag")
    >>> corpus = load_demo_corpus().corpus
    >>> rag = LatentRAGPipeline(model, model.build_index(corpus), corpus)
    >>> result = rag("Which river flows through the town where the inventor was born?")
    >>> result.answer, result.trace.retrieved_ids
    ```
    """

    def __init__(self, model: LatentRAGModel, index: DenseIndex | None, corpus: Any, **kwargs: Any):
        self.model = model
        self.corpus = CorpusLookup(corpus)
        self.index = index if index is not None else build_index(model, self.corpus, show_progress_bar=False)
        check_index(model, self.index)
        self.defaults = kwargs

    def __call__(self, question: str | Sequence[str], **kwargs: Any) -> LatentRAGResult | list[LatentRAGResult]:
        """Answer one question (a string) or several (a list, see [`answer_questions`])."""
        options = {**self.defaults, **kwargs}
        if isinstance(question, str):
            return run_latentrag(self.model, question, self.index, self.corpus, check=False, **options)
        return self.answer_questions(question, **options)

    def answer_questions(
        self, questions: Iterable[str] | Dataset, show_progress_bar: bool = True, **kwargs: Any
    ) -> list[LatentRAGResult]:
        """[`answer_questions`] with this pipeline's model, index and corpus."""
        options = {**self.defaults, **kwargs}
        return answer_questions(self.model, questions, self.index, self.corpus, show_progress_bar, **options)


__all__ = [
    "STAGES",
    "CorpusLookup",
    "LatentRAGPipeline",
    "LatentRAGResult",
    "LatentRAGTrace",
    "answer_questions",
    "build_index",
    "check_index",
    "run_latentrag",
    "search",
]
