"""Teacher-style trajectories for LatentRAG SFT: format, builders, rendering and tokenisation (specs §3, §7.1, §8).

A [`Trajectory`] is what a Search-R1-style teacher leaves behind for one question: per step a text thought, a text
sub-query and the top-3 documents it retrieved, then a final thought and the answer. This module

- builds such trajectories from any [`hf_latent.data.MultiHopQA`] source with [`trajectories_from_multihop`]
  (HotpotQA-500 with templated text, the demo corpus and IRCoT with their per-hop annotations);
- fills each sub-query's top-10 pseudo-relevant ids (spec §7.2) with [`attach_pseudo_relevant_ids`], given any
  search callable (so it does not depend on the index implementation);
- renders the LatentRAG layout of spec §3 as loss-flagged text segments ([`render_latent_trajectory_segments`]) and
  tokenises it into `input_ids`, §7.1 `labels` and placeholder positions ([`tokenize_latent_trajectory`]);
- defines the explicit (Search-R1) baseline's text format once, for its inference loop (`ExplicitAgenticRAG`) and its
  SFT data (`explicit_sft.py`): prompt, turns, information blocks ([`render_explicit_trajectory`]) and the
  tokenisation that reads LatentRAG's tags as plain text ([`encode_explicit_text`]).

Document storage [D]: a step keeps `retrieved_titles` and `retrieved_texts` (the passage text without its title)
side by side, so every renderer can format `Doc i (Title: {title}) {text}` (spec §3) itself.
"""

from __future__ import annotations

import logging
import random
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from datasets import Dataset, Features, Value

from .prompts import SEARCH_R1_PROMPT, render_user_turn


if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

    from hf_latent.data import MultiHopQA


logger = logging.getLogger(__name__)

# [D] Paraphrase of the paper's instruction (spec §3); the same text as the default `instruction` of
# `LatentRAGConfig`, so trajectories tokenised without a config match a default model.
LATENTRAG_INSTRUCTION = (
    "Answer the given question by reasoning step by step and retrieving the necessary information at each step. "
    "When you have enough information, give a short answer."
)
# Spec §3 [D]: how a retrieved passage is written into the context, one per line.
DEFAULT_DOCUMENT_TEMPLATE = "Doc {index} (Title: {title}) {text}"
# [D] Final thought of templated trajectories (HotpotQA-500, demo).
DEFAULT_FINAL_THOUGHT = "I now have enough information to answer."
# Spec §4: at most 4 retrievals per question.
MAX_RETRIEVALS = 4
HOP_THOUGHT_STYLES = ("auto", "before_search", "after_reading")

_ANSWER_SENTENCE = re.compile(r"^\s*so the answer is\b", re.IGNORECASE)
_WORD = re.compile(r"[\w'-]+")
# Words that never make a useful search keyword (question words, auxiliaries, articles, prepositions).
_STOPWORDS = frozenset(
    """a about above after again against all also am an and any are as at be because been before being below between
    both but by can could did do does doing down during each few for from further had has have having he her here
    hers him his how i if in into is it its itself just me more most my no nor not of off on once only or other our
    out over own same she should so some such than that the their them then there these they this those through to
    too under until up very was we were what when where which while who whom whose why will with would you your
    name named known many much first second one two three same""".split()
)


# ---------------------------------------------------------------------------------------------------------------------
# Format
# ---------------------------------------------------------------------------------------------------------------------


@dataclass
class TrajectoryStep:
    """One think → (search → read) step of a trajectory.

    Args:
        thought (`str`):
            The teacher's text thought of this step (L_dec thought target; replaced by `<think_1..4>` in LatentRAG).
        sub_query (`str`, *optional*):
            The teacher's text sub-query (L_dec sub-query target and input of v*_t). `None` on the final step, which
            answers instead of searching.
        retrieved_ids (`list[str]`):
            Corpus ids of the top documents returned for `sub_query` (top-3 in the paper), best first.
        retrieved_titles (`list[str]`):
            Their titles, aligned with `retrieved_ids`.
        retrieved_texts (`list[str]`):
            Their passage texts **without** the title, aligned with `retrieved_ids`.
        pseudo_relevant_ids (`list[str]`):
            Top-10 ids of `sub_query` under the frozen reference retriever (spec §7.2), filled by
            [`attach_pseudo_relevant_ids`]; empty until then and on the final step.
    """

    thought: str
    sub_query: str | None = None
    retrieved_ids: list[str] = field(default_factory=list)
    retrieved_titles: list[str] = field(default_factory=list)
    retrieved_texts: list[str] = field(default_factory=list)
    pseudo_relevant_ids: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        lengths = {len(self.retrieved_ids), len(self.retrieved_titles), len(self.retrieved_texts)}
        if len(lengths) != 1:
            raise ValueError(
                f"TrajectoryStep: retrieved_ids, retrieved_titles and retrieved_texts must be aligned, got lengths "
                f"{len(self.retrieved_ids)}, {len(self.retrieved_titles)} and {len(self.retrieved_texts)}."
            )
        if self.sub_query is None and (self.retrieved_ids or self.pseudo_relevant_ids):
            raise ValueError("TrajectoryStep: a step without sub_query (the answer step) cannot hold documents.")

    @property
    def is_retrieval(self) -> bool:
        """Whether this step searches (has a sub-query) rather than answers."""
        return self.sub_query is not None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict (lists copied)."""
        return {
            "thought": self.thought,
            "sub_query": self.sub_query,
            "retrieved_ids": list(self.retrieved_ids),
            "retrieved_titles": list(self.retrieved_titles),
            "retrieved_texts": list(self.retrieved_texts),
            "pseudo_relevant_ids": list(self.pseudo_relevant_ids),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrajectoryStep:
        """Inverse of [`to_dict`]; missing list fields default to empty lists."""
        return cls(
            thought=data["thought"],
            sub_query=data.get("sub_query"),
            retrieved_ids=list(data.get("retrieved_ids") or []),
            retrieved_titles=list(data.get("retrieved_titles") or []),
            retrieved_texts=list(data.get("retrieved_texts") or []),
            pseudo_relevant_ids=list(data.get("pseudo_relevant_ids") or []),
        )


@dataclass
class Trajectory:
    """An explicit teacher trajectory: retrieval steps, then one answer step, then the answer.

    Args:
        question_id (`str`):
            Id of the question in its source.
        question (`str`):
            The question text.
        steps (`list[TrajectoryStep]`):
            Retrieval steps (with a sub-query) followed by exactly one final step without sub-query, whose
            `thought` precedes the answer.
        answer (`str`):
            The answer text the model is trained to produce.
        answers (`list[str]`, *optional*):
            All gold aliases (for EM); defaults to `[answer]`.
        split (`str`, *optional*):
            `train`, `dev` or `test` of the source question.
        source (`str`, *optional*):
            Name of the source `MultiHopQA` (e.g. `hotpotqa`, `demo`, `ircot-hotpotqa`).
    """

    question_id: str
    question: str
    steps: list[TrajectoryStep]
    answer: str
    answers: list[str] = field(default_factory=list)
    split: str | None = None
    source: str | None = None

    def __post_init__(self) -> None:
        if not self.steps:
            raise ValueError(f"Trajectory {self.question_id}: needs at least the final answer step.")
        if self.steps[-1].is_retrieval:
            raise ValueError(f"Trajectory {self.question_id}: the last step must be the answer step (sub_query=None).")
        for index, step in enumerate(self.steps[:-1]):
            if not step.is_retrieval:
                raise ValueError(f"Trajectory {self.question_id}: step {index} is not last but has no sub_query.")
        if not self.answers:
            self.answers = [self.answer]

    @property
    def retrieval_steps(self) -> list[TrajectoryStep]:
        """The steps that search (all but the last)."""
        return self.steps[:-1]

    @property
    def final_step(self) -> TrajectoryStep:
        """The answer step."""
        return self.steps[-1]

    @property
    def num_retrievals(self) -> int:
        return len(self.steps) - 1

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict; `steps` is a list of step dicts."""
        return {
            "question_id": self.question_id,
            "question": self.question,
            "steps": [step.to_dict() for step in self.steps],
            "answer": self.answer,
            "answers": list(self.answers),
            "split": self.split,
            "source": self.source,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Trajectory:
        """Inverse of [`to_dict`] (also reads rows of [`trajectories_to_dataset`])."""
        return cls(
            question_id=data["question_id"],
            question=data["question"],
            steps=[TrajectoryStep.from_dict(step) for step in data["steps"]],
            answer=data["answer"],
            answers=list(data.get("answers") or []),
            split=data.get("split"),
            source=data.get("source"),
        )


_STEP_FEATURES = {
    "thought": Value("string"),
    "sub_query": Value("string"),
    "retrieved_ids": [Value("string")],
    "retrieved_titles": [Value("string")],
    "retrieved_texts": [Value("string")],
    "pseudo_relevant_ids": [Value("string")],
}
TRAJECTORY_FEATURES = Features(
    {
        "question_id": Value("string"),
        "question": Value("string"),
        "steps": [_STEP_FEATURES],
        "answer": Value("string"),
        "answers": [Value("string")],
        "split": Value("string"),
        "source": Value("string"),
    }
)


def trajectories_to_dataset(trajectories: Iterable[Trajectory]) -> Dataset:
    """A `datasets.Dataset` with one row per trajectory ([`TRAJECTORY_FEATURES`]; `steps` a list of structs)."""
    return Dataset.from_list([trajectory.to_dict() for trajectory in trajectories], features=TRAJECTORY_FEATURES)


def trajectories_from_dataset(dataset: Dataset) -> list[Trajectory]:
    """Inverse of [`trajectories_to_dataset`]."""
    return [Trajectory.from_dict(row) for row in dataset]


# ---------------------------------------------------------------------------------------------------------------------
# Builders
# ---------------------------------------------------------------------------------------------------------------------


def _question_keywords(question: str, exclude: Iterable[str], limit: int = 3) -> list[str]:
    """Up to `limit` content words of `question` in order, skipping stopwords and words of `exclude`."""
    excluded = {word.lower() for text in exclude for word in _WORD.findall(text)}
    keywords: list[str] = []
    for word in _WORD.findall(question):
        lowered = word.lower().strip("'-")
        if not lowered or lowered in _STOPWORDS or lowered in excluded or lowered in {k.lower() for k in keywords}:
            continue
        keywords.append(word.strip("'-"))
        if len(keywords) == limit:
            break
    return keywords


def _templated_text(question: str, titles: list[str]) -> tuple[list[str], list[str]]:
    """[D] Thoughts and sub-queries for a source without per-hop annotations (HotpotQA-500), one per hop."""
    thoughts = [f"I need to find information about {titles[0]}."]
    sub_queries = [titles[0]]
    keywords = _question_keywords(question, titles)
    for previous, title in zip(titles, titles[1:]):
        thoughts.append(f"{previous} is related to {title}; next I need details about {title}.")
        sub_queries.append(" ".join([title, *keywords]))
    return thoughts, sub_queries


def _after_reading_text(hops: list[dict], reasoning: str) -> tuple[list[str], list[str], str]:
    """[D] IRCoT layout: hop thoughts summarise the paragraph *read* in that hop, so each moves one step later.

    Step 1 plans the first search; step t > 1 states what hop t−1 found and plans the next search; the final thought
    is the last hop's sentence plus any remaining reasoning sentences except "So the answer is: ...".
    """
    sub_queries = [hop["sub_query"] for hop in hops]
    thoughts = [f"I need to find information about {sub_queries[0]}."]
    for hop, sub_query in zip(hops, sub_queries[1:]):
        thoughts.append(f"{hop['thought']} Next I need information about {sub_query}.")
    hop_sentences = {hop["thought"] for hop in hops}
    extra = [
        sentence.strip()
        for sentence in (reasoning or "").split("\n\n")
        if sentence.strip() and sentence.strip() not in hop_sentences and not _ANSWER_SENTENCE.match(sentence)
    ]
    final = " ".join([hops[-1]["thought"], *extra])
    return thoughts, sub_queries, final


def _row_problem(row: Mapping[str, Any], corpus_ids: set[str], max_retrievals: int) -> str | None:
    """Why `row` cannot become a trajectory, or `None` when it can."""
    question = row.get("question")
    if not isinstance(question, str) or not question.strip():
        return "empty question"
    answers = [a for a in (row.get("answers") or []) if isinstance(a, str) and a.strip()]
    if not answers:
        return "no answers"
    supporting = row.get("supporting_ids") or []
    if not supporting:
        return "missing supporting_ids"
    if any(not isinstance(pid, str) or not pid for pid in supporting):
        return f"invalid supporting_ids {list(supporting)!r}"
    if len(set(supporting)) != len(supporting):
        return f"duplicate supporting_ids {list(supporting)!r}"
    missing = [pid for pid in supporting if pid not in corpus_ids]
    if missing:
        return f"supporting ids not in corpus: {missing}"
    if len(supporting) > max_retrievals:
        return f"{len(supporting)} hops exceed max_retrievals={max_retrievals}"
    hops = row.get("hops")
    if hops:
        if len(hops) != len(supporting):
            return f"{len(hops)} annotated hops but {len(supporting)} supporting_ids"
        for index, hop in enumerate(hops):
            for key in ("thought", "sub_query"):
                value = hop.get(key) if isinstance(hop, Mapping) else None
                if not isinstance(value, str) or not value.strip():
                    return f"hop {index} has an empty {key}"
    return None


def trajectories_from_multihop(
    qa: MultiHopQA,
    split: str | None = None,
    num_distractors_per_step: int = 2,
    seed: int = 0,
    hop_thoughts: str = "auto",
    final_thought: str = DEFAULT_FINAL_THOUGHT,
    max_retrievals: int = MAX_RETRIEVALS,
    fill_from_corpus: bool = True,
) -> tuple[list[Trajectory], list[tuple[str, str]]]:
    """Teacher-style trajectories from the supporting paragraphs of a multi-hop QA source (spec §8, §13) [D].

    One retrieval step per supporting paragraph, in hop order, then the answer step. Step t retrieves
    `[supporting_ids[t]] + distractors`: the hop's supporting paragraph is **always at position 0** (a teacher whose
    first hit is the gold paragraph), followed by `num_distractors_per_step` passages drawn from the question's
    `negative_ids` (top-3 in total by default). Distractors are sampled with `random.Random(f"{seed}:{question_id}")`,
    so the result depends neither on row order nor on `split`; a step avoids the previous steps' distractors while
    enough negatives remain. Negative ids absent from the corpus are ignored. A question with fewer negatives than
    `num_distractors_per_step` (7 of HotpotQA-500 have none) is topped up with random other corpus passages when
    `fill_from_corpus` (so every step holds the same number of documents), else its steps hold fewer documents.
    The answer is the first gold alias; `answers` keeps all of them.

    Thought and sub-query text:

    - **No `hops` column** (HotpotQA-500), templated from the supporting titles t_1, t_2, ...:
      thought_1 = "I need to find information about {t_1}.", sub_query_1 = t_1;
      thought_k = "{t_(k-1)} is related to {t_k}; next I need details about {t_k}.",
      sub_query_k = t_k + up to 3 question keywords (content words not in any supporting title);
      final thought = `final_thought`.
    - **`hop_thoughts="before_search"`** (the demo corpus): the annotated `hops[t]` thought and sub-query are used
      as they are (the thoughts plan the search), final thought = `final_thought`.
    - **`hop_thoughts="after_reading"`** (IRCoT, whose hop "thought" is the CoT sentence written *after* reading
      that hop's paragraph): thought_1 = "I need to find information about {sub_query_1}.", thought_t = "{CoT
      sentence of hop t−1} Next I need information about {sub_query_t}.", final thought = CoT sentence of the last
      hop + the remaining rationale sentences except "So the answer is: ...".
    - `"auto"` picks `"after_reading"` for sources named `ircot*` and `"before_search"` otherwise. A row whose
      `hops` is empty or `None` falls back to the template.

    Malformed rows (empty question, no answer, missing/duplicate supporting ids, ids not in the corpus, more hops
    than `max_retrievals`, annotated hops that do not match the supporting ids or have empty text, a repeated
    question id) are logged with `logger.warning` and returned in `skipped`, never built.

    Args:
        qa (`MultiHopQA`): the source (`corpus` and `questions` datasets, `name`).
        split (`str`, *optional*): keep only questions of this split (`train`, `dev`, `test`); `None` keeps all.
        num_distractors_per_step (`int`, *optional*, defaults to `2`): distractors after the supporting paragraph.
        seed (`int`, *optional*, defaults to `0`): distractor sampling seed.
        hop_thoughts (`str`, *optional*, defaults to `"auto"`): `"auto"`, `"before_search"` or `"after_reading"`.
        final_thought (`str`, *optional*): thought of the answer step for templated and `before_search` sources.
        max_retrievals (`int`, *optional*, defaults to `4`): rows with more hops are skipped (spec §4 cap).
        fill_from_corpus (`bool`, *optional*, defaults to `True`): top up missing distractors from the corpus.

    Returns:
        `tuple[list[Trajectory], list[tuple[str, str]]]`: the trajectories (source order) and `(question_id,
        reason)` for every skipped row.
    """
    if hop_thoughts not in HOP_THOUGHT_STYLES:
        raise ValueError(f"hop_thoughts must be one of {HOP_THOUGHT_STYLES}, got {hop_thoughts!r}.")
    if num_distractors_per_step < 0:
        raise ValueError(f"num_distractors_per_step must be >= 0, got {num_distractors_per_step}.")
    if hop_thoughts == "auto":
        hop_thoughts = "after_reading" if str(getattr(qa, "name", "")).startswith("ircot") else "before_search"
    passages = {row["id"]: row for row in qa.corpus}
    sorted_ids = sorted(passages)
    trajectories: list[Trajectory] = []
    skipped: list[tuple[str, str]] = []
    seen: set[str] = set()
    for index, row in enumerate(qa.questions):
        if split is not None and row.get("split") != split:
            continue
        question_id = row.get("id")
        if not isinstance(question_id, str) or not question_id:
            problem, question_id = "missing question id", f"<row {index}>"
        elif question_id in seen:
            problem = "duplicate question id"
        else:
            problem = _row_problem(row, set(passages), max_retrievals)
        if problem is not None:
            logger.warning("Skipping question %s: %s.", question_id, problem)
            skipped.append((question_id, problem))
            continue
        seen.add(question_id)

        question = row["question"].strip()
        answers = [answer.strip() for answer in row["answers"] if isinstance(answer, str) and answer.strip()]
        supporting = list(row["supporting_ids"])
        hops = row.get("hops") or None
        if hops is None:
            thoughts, sub_queries = _templated_text(question, [passages[pid]["title"] for pid in supporting])
            last_thought = final_thought
        elif hop_thoughts == "after_reading":
            thoughts, sub_queries, last_thought = _after_reading_text(hops, row.get("reasoning") or "")
        else:
            thoughts = [hop["thought"].strip() for hop in hops]
            sub_queries = [hop["sub_query"].strip() for hop in hops]
            last_thought = final_thought

        negatives = []
        for pid in row.get("negative_ids") or []:
            if pid in passages and pid not in supporting and pid not in negatives:
                negatives.append(pid)
        backfill: list[str] = []
        if fill_from_corpus and len(negatives) < num_distractors_per_step:
            excluded = {*supporting, *negatives}
            backfill = [pid for pid in sorted_ids if pid not in excluded]
        rng = random.Random(f"{seed}:{question_id}")
        used: set[str] = set()

        def pick(candidates: list[str], count: int) -> list[str]:
            fresh = [candidate for candidate in candidates if candidate not in used]
            pool = fresh if len(fresh) >= count else candidates
            return rng.sample(pool, min(count, len(pool)))

        steps = []
        for hop, pid in enumerate(supporting):
            distractors = pick(negatives, num_distractors_per_step)
            if len(distractors) < num_distractors_per_step and backfill:
                distractors += pick(backfill, num_distractors_per_step - len(distractors))
            used.update(distractors)
            ids = [pid, *distractors]
            steps.append(
                TrajectoryStep(
                    thought=thoughts[hop],
                    sub_query=sub_queries[hop],
                    retrieved_ids=ids,
                    retrieved_titles=[passages[doc]["title"] for doc in ids],
                    retrieved_texts=[passages[doc]["text"] for doc in ids],
                )
            )
        steps.append(TrajectoryStep(thought=last_thought))
        trajectories.append(
            Trajectory(
                question_id=question_id,
                question=question,
                steps=steps,
                answer=answers[0],
                answers=answers,
                split=row.get("split"),
                source=getattr(qa, "name", None),
            )
        )
    return trajectories, skipped


def attach_pseudo_relevant_ids(
    trajectories: Sequence[Trajectory],
    search_fn: Callable[[list[str]], list[list[str]]],
    k: int = 10,
    batch_size: int = 256,
) -> list[Trajectory]:
    """Fill every retrieval step's `pseudo_relevant_ids` with the top-k ids of its text sub-query (spec §7.2).

    Args:
        trajectories (`list[Trajectory]`): the trajectories; they are not modified.
        search_fn (`Callable[[list[str]], list[list[str]]]`): maps a batch of text sub-queries to one ranked id list
            each, **under the frozen reference retriever** (the pretrained retriever that built the index), e.g. a
            closure over the Faiss index's search. It may return more than `k` ids; they are cut to `k`.
        k (`int`, *optional*, defaults to `10`): pseudo-relevant documents per sub-query.
        batch_size (`int`, *optional*, defaults to `256`): sub-queries per `search_fn` call.

    Returns:
        `list[Trajectory]`: copies of `trajectories` with `pseudo_relevant_ids` set on every retrieval step (the final
        step keeps an empty list).

    Raises:
        ValueError: when `search_fn` returns the wrong number of lists or something other than lists of ids.
    """
    if k < 1 or batch_size < 1:
        raise ValueError(f"k and batch_size must be >= 1, got k={k}, batch_size={batch_size}.")
    copies = [Trajectory.from_dict(trajectory.to_dict()) for trajectory in trajectories]
    steps = [step for trajectory in copies for step in trajectory.retrieval_steps]
    for start in range(0, len(steps), batch_size):
        chunk = steps[start : start + batch_size]
        results = search_fn([step.sub_query for step in chunk])
        if results is None or len(results) != len(chunk):
            got = "None" if results is None else len(results)
            raise ValueError(f"search_fn returned {got} result lists for {len(chunk)} sub-queries.")
        for step, ids in zip(chunk, results):
            if isinstance(ids, str) or not all(isinstance(doc_id, str) for doc_id in ids):
                raise ValueError(f"search_fn must return lists of string ids, got {ids!r} for {step.sub_query!r}.")
            step.pseudo_relevant_ids = list(ids)[:k]
    return copies


# ---------------------------------------------------------------------------------------------------------------------
# Rendering and tokenisation
# ---------------------------------------------------------------------------------------------------------------------


def render_documents(titles: Sequence[str], texts: Sequence[str], template: str = DEFAULT_DOCUMENT_TEMPLATE) -> str:
    """One line per document, numbered from 1: `Doc 1 (Title: {title}) {text}\\n` by default (spec §3 [D]).

    `template` is formatted with `index`, `title` and `text`; every line ends in a newline, as in Search-R1.
    """
    return "".join(
        template.format(index=index, title=title, text=text) + "\n"
        for index, (title, text) in enumerate(zip(titles, texts), 1)
    )


def latent_prompt(
    question: str,
    instruction: str | None = LATENTRAG_INSTRUCTION,
    tokenizer: PreTrainedTokenizerBase | None = None,
    use_chat_template: bool = False,
) -> str:
    """The text before the first `<think_1>`: `{instruction}\\n\\nQuestion: {question}\\n` (spec §3 [D]).

    Without an instruction it is `Question: {question}\\n`. With `use_chat_template` and a tokenizer that has a chat
    template (instruct backbones), the content without the final newline becomes one user turn followed by the
    generation prompt; base LLMs, as in the paper, use plain text. This is the layout of
    `hf_latent.latentrag.prompts.format_question_prompt`, which builds the inference context; the two must agree.
    """
    content = f"{instruction}\n\nQuestion: {question}" if instruction else f"Question: {question}"
    if use_chat_template and tokenizer is not None and getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(
            [{"role": "user", "content": content}], tokenize=False, add_generation_prompt=True
        )
    return f"{content}\n"


@dataclass(frozen=True)
class LatentTrajectoryTokens:
    """The token strings of the LatentRAG layout (spec §3), each a single special token of the tokenizer.

    Args:
        thought_tokens (`tuple[str, ...]`): `<think_1>`..`<think_m>`; the action is read at the last one.
        subquery_tokens (`tuple[str, ...]`): `<query_1>`..`<query_n>`; `<query_1>` doubles as the ⟨query⟩ action.
        information_start / information_end (`str`): `<information>` / `</information>`.
        answer_start / answer_end (`str`): `<answer>` (the ⟨answer⟩ action) / `</answer>`.
    """

    thought_tokens: tuple[str, ...]
    subquery_tokens: tuple[str, ...]
    information_start: str = "<information>"
    information_end: str = "</information>"
    answer_start: str = "<answer>"
    answer_end: str = "</answer>"

    def __post_init__(self) -> None:
        if not self.thought_tokens or not self.subquery_tokens:
            raise ValueError("LatentTrajectoryTokens: need at least one thought and one sub-query token (m, n >= 1).")
        if len(set(self.all_tokens)) != len(self.all_tokens):
            raise ValueError(f"LatentTrajectoryTokens: token strings must be distinct, got {self.all_tokens}.")

    @property
    def all_tokens(self) -> list[str]:
        """Every token string, to pass to `tokenizer.add_special_tokens`."""
        return [
            *self.thought_tokens,
            *self.subquery_tokens,
            self.information_start,
            self.information_end,
            self.answer_start,
            self.answer_end,
        ]

    @classmethod
    def build(
        cls,
        num_thought_tokens: int = 4,
        num_subquery_tokens: int = 16,
        tokens: Mapping[str, Any] | LatentTrajectoryTokens | None = None,
    ) -> LatentTrajectoryTokens:
        """Tokens for m thought and n sub-query slots; `tokens` overrides the defaults.

        `tokens` keys (all optional): `"thought"` and `"subquery"` (a template with `{index}`, 1-based, defaults
        `"<think_{index}>"` and `"<query_{index}>"`, or an explicit list of m / n strings), `"information_start"`,
        `"information_end"`, `"answer_start"`, `"answer_end"`. A `LatentTrajectoryTokens` is returned unchanged.
        """
        if isinstance(tokens, LatentTrajectoryTokens):
            return tokens
        tokens = dict(tokens or {})
        unknown = set(tokens) - {
            "thought",
            "subquery",
            "information_start",
            "information_end",
            "answer_start",
            "answer_end",
        }
        if unknown:
            raise ValueError(f"Unknown token keys {sorted(unknown)}.")

        def expand(key: str, default: str, count: int) -> tuple[str, ...]:
            if isinstance(count, bool) or not isinstance(count, int) or count < 1:
                raise ValueError(f"the number of {key} tokens must be an integer >= 1, got {count!r}.")
            spec = tokens.get(key, default)
            if isinstance(spec, str):
                if "{index}" not in spec:
                    raise ValueError(f"tokens[{key!r}] template must contain '{{index}}', got {spec!r}.")
                return tuple(spec.format(index=index) for index in range(1, count + 1))
            values = tuple(spec)
            if len(values) != count:
                raise ValueError(f"tokens[{key!r}] lists {len(values)} tokens, expected {count}.")
            return values

        return cls(
            thought_tokens=expand("thought", "<think_{index}>", num_thought_tokens),
            subquery_tokens=expand("subquery", "<query_{index}>", num_subquery_tokens),
            **{
                key: tokens[key]
                for key in ("information_start", "information_end", "answer_start", "answer_end")
                if key in tokens
            },
        )


def latent_special_tokens(
    num_thought_tokens: int = 4, num_subquery_tokens: int = 16, tokens: Mapping[str, Any] | None = None
) -> list[str]:
    """The special tokens of the LatentRAG layout, in order (think, query, information tags, answer tags)."""
    return LatentTrajectoryTokens.build(num_thought_tokens, num_subquery_tokens, tokens).all_tokens


# Segment kinds of `_latent_segments`, used to find placeholder positions without searching token ids.
_PROMPT, _THOUGHT, _QUERY_ACTION, _QUERY_REST, _INFORMATION = "prompt", "thought", "query_action", "query_rest", "info"
_ANSWER_START, _ANSWER, _ANSWER_END = "answer_start", "answer", "answer_end"


def _latent_segments(
    trajectory: Trajectory, tokens: LatentTrajectoryTokens, prompt: str, document_template: str
) -> list[tuple[str, bool, str]]:
    segments: list[tuple[str, bool, str]] = [(prompt, False, _PROMPT)]
    thoughts = "".join(tokens.thought_tokens)
    for step in trajectory.retrieval_steps:
        segments.append((thoughts, False, _THOUGHT))
        # §7.1: the label at think_m is the action, i.e. <query_1> is a target; the other slots are not.
        segments.append((tokens.subquery_tokens[0], True, _QUERY_ACTION))
        if len(tokens.subquery_tokens) > 1:
            segments.append(("".join(tokens.subquery_tokens[1:]), False, _QUERY_REST))
        # Same string as prompts.encode_information: documents joined by newlines inside newline-framed tags.
        documents = render_documents(step.retrieved_titles, step.retrieved_texts, document_template).removesuffix("\n")
        information = f"\n{tokens.information_start}\n{documents}\n{tokens.information_end}\n"
        segments.append((information, False, _INFORMATION))
    segments.append((thoughts, False, _THOUGHT))
    segments.append((tokens.answer_start, True, _ANSWER_START))
    segments.append((f" {trajectory.answer.strip()} ", True, _ANSWER))
    segments.append((tokens.answer_end, True, _ANSWER_END))
    return segments


def render_latent_trajectory_segments(
    trajectory: Trajectory,
    num_thought_tokens: int = 4,
    num_subquery_tokens: int = 16,
    tokens: Mapping[str, Any] | LatentTrajectoryTokens | None = None,
    instruction: str | None = LATENTRAG_INSTRUCTION,
    document_template: str = DEFAULT_DOCUMENT_TEMPLATE,
    prompt: str | None = None,
) -> list[tuple[str, bool]]:
    """The LatentRAG context of spec §3 as `(text, is_loss_target)` segments, to tokenise one by one.

    Layout (m = 4, n = 16; `Doc i (Title: t) text` one per line, spec §3 [D]):

    ```
    {instruction}\\n\\nQuestion: {question}\\n  (`latent_prompt`)         False
    per retrieval step:
        <think_1>…<think_4>                                          False
        <query_1>                                                     True   (the ⟨query⟩ action, label at think_4)
        <query_2>…<query_16>                                          False
        \\n<information>\\nDoc 1 (Title: t) text\\n…</information>\\n   False
    <think_1>…<think_4>                                              False
    <answer>                                                          True   (the ⟨answer⟩ action, label at think_4)
    " {answer} "                                                      True
    </answer>                                                         True
    (EOS, added by `tokenize_latent_trajectory`)                     True
    ```

    This is the context that `hf_latent.latentrag.prompts` builds at inference (and its `encode_trajectory`), split
    at the points where labels change.

    A segment flagged `True` is a loss target token by token (spec §7.1, Hugging Face convention: the labels equal
    the ids there and are −100 elsewhere; the loss shifts them, so the target *at* think_4 is the next token).
    Segments never share a token, so tokenising them separately and concatenating gives the exact label mask; it
    also matches the inference loop, which feeds these pieces in separate cached passes (spec §4). For n = 1 the
    `<query_2>…` segment is absent. Pass `instruction=None` to omit the instruction, or `prompt` to replace the
    whole first segment (e.g. a chat-templated prompt from [`latent_prompt`]).
    """
    resolved = LatentTrajectoryTokens.build(num_thought_tokens, num_subquery_tokens, tokens)
    if prompt is None:
        prompt = latent_prompt(trajectory.question, instruction)
    segments = _latent_segments(trajectory, resolved, prompt, document_template)
    return [(text, target) for text, target, _ in segments]


def _config_value(config_like: Any, name: str, default: Any) -> Any:
    if config_like is None:
        return default
    if isinstance(config_like, Mapping):
        return config_like.get(name, default)
    return getattr(config_like, name, default)


def tokens_from_config(config_like: Any) -> LatentTrajectoryTokens:
    """[`LatentTrajectoryTokens`] from a model config or a mapping.

    Reads the attribute (or key) names of `LatentRAGConfig`: `num_thought_tokens` (4), `num_subquery_tokens` (16),
    and when present `thought_tokens` / `subquery_tokens` (explicit lists) or else `thought_token_format` /
    `subquery_token_format` (templates with `{index}`), `information_start_token`, `information_end_token`,
    `answer_start_token`, `answer_end_token`. A `LatentTrajectoryTokens` is returned unchanged.
    """
    if isinstance(config_like, LatentTrajectoryTokens):
        return config_like
    overrides: dict[str, Any] = {}
    for key, attribute in (
        ("thought", "thought_token_format"),
        ("subquery", "subquery_token_format"),
        ("thought", "thought_tokens"),
        ("subquery", "subquery_tokens"),
        ("information_start", "information_start_token"),
        ("information_end", "information_end_token"),
        ("answer_start", "answer_start_token"),
        ("answer_end", "answer_end_token"),
    ):
        value = _config_value(config_like, attribute, None)
        if value is not None:
            overrides[key] = value
    return LatentTrajectoryTokens.build(
        int(_config_value(config_like, "num_thought_tokens", 4)),
        int(_config_value(config_like, "num_subquery_tokens", 16)),
        overrides,
    )


def tokenize_latent_trajectory(
    trajectory: Trajectory,
    tokenizer: PreTrainedTokenizerBase,
    config_like: Any = None,
    instruction: str | None = None,
    use_chat_template: bool | None = None,
    append_eos: bool = True,
) -> dict[str, Any]:
    """Token ids, §7.1 labels and placeholder positions of a trajectory in the LatentRAG layout.

    Each segment of [`render_latent_trajectory_segments`] is tokenised on its own and the ids are concatenated: the
    prompt with the tokenizer's own special tokens (e.g. BOS) unless it is chat-templated, every other segment with
    `add_special_tokens=False`. Labels equal the ids on target segments (`<query_1>` of every retrieval step,
    `<answer>`, the answer text, `</answer>`, and EOS) and −100 elsewhere, aligned with `input_ids` (the loss shifts
    them, so each action is predicted at the preceding think_m position). The sequence is the one
    `hf_latent.latentrag.prompts.encode_trajectory` builds for the inference loop (spec §13.1); this function adds
    the placeholder positions and per-step texts. Length filtering (≤ 3000 tokens, spec §8) is the caller's.

    Args:
        trajectory (`Trajectory`): the trajectory.
        tokenizer: a tokenizer in which every layout token is a single special token (see
            [`latent_special_tokens`]); checked here.
        config_like (*optional*): a `LatentRAGConfig`, any object or mapping with the same attribute names, or a
            `LatentTrajectoryTokens`. Token strings as in [`tokens_from_config`]; also read: `instruction`,
            `use_chat_template` and `document_template`.
        instruction (`str`, *optional*): defaults to the config's `instruction`, else [`LATENTRAG_INSTRUCTION`].
            Pass `""` to omit it.
        use_chat_template (`bool`, *optional*): defaults to the config's `use_chat_template`, else `False`; the
            prompt is built by [`latent_prompt`].
        append_eos (`bool`, *optional*, defaults to `True`): append the tokenizer's EOS (when it has one) after
            `</answer>`, as a target (spec §7.1).

    Returns:
        `dict` with `input_ids`, `labels`, `attention_mask` (`list[int]`, same length); `thought_positions`
        (`list[list[int]]`, m positions per step, answer step included); `action_positions` (`list[int]`, the
        think_m position of every step, whose logits choose the action); `subquery_positions` (`list[list[int]]`,
        n positions per retrieval step); `answer_start_position` (`int`); and the per-step texts `thoughts`,
        `sub_queries` and `pseudo_relevant_ids` (L_dec targets and the L_ret inputs, spec §8).

    Raises:
        ValueError: when a layout token is not a single token of `tokenizer`.
    """
    tokens = tokens_from_config(config_like)
    if instruction is None:
        instruction = _config_value(config_like, "instruction", None)
        if instruction is None:
            instruction = LATENTRAG_INSTRUCTION
    if use_chat_template is None:
        use_chat_template = bool(_config_value(config_like, "use_chat_template", False))
    templated = bool(use_chat_template and getattr(tokenizer, "chat_template", None))
    prompt = latent_prompt(trajectory.question, instruction, tokenizer, use_chat_template)
    document_template = _config_value(config_like, "document_template", None) or DEFAULT_DOCUMENT_TEMPLATE
    for token in tokens.all_tokens:
        ids = tokenizer(token, add_special_tokens=False)["input_ids"]
        if len(ids) != 1 or ids[0] == tokenizer.unk_token_id:
            raise ValueError(
                f"{token!r} is not a single token of the tokenizer (got ids {ids}); add the layout tokens with "
                "tokenizer.add_special_tokens({'additional_special_tokens': latent_special_tokens(m, n)})."
            )
    input_ids: list[int] = []
    labels: list[int] = []
    thought_positions: list[list[int]] = []
    subquery_positions: list[list[int]] = []
    answer_start_position = -1
    for text, target, kind in _latent_segments(trajectory, tokens, prompt, document_template):
        add_special_tokens = kind == _PROMPT and not templated  # chat templates write their own special tokens
        ids = list(tokenizer(text, add_special_tokens=add_special_tokens)["input_ids"])
        positions = list(range(len(input_ids), len(input_ids) + len(ids)))
        if kind == _THOUGHT:
            thought_positions.append(positions)
        elif kind == _QUERY_ACTION:
            subquery_positions.append(positions)
        elif kind == _QUERY_REST:
            subquery_positions[-1].extend(positions)
        elif kind == _ANSWER_START:
            answer_start_position = positions[0]
        input_ids.extend(ids)
        labels.extend(ids if target else [-100] * len(ids))
    if append_eos and tokenizer.eos_token_id is not None:
        input_ids.append(tokenizer.eos_token_id)
        labels.append(tokenizer.eos_token_id)
    return {
        "input_ids": input_ids,
        "labels": labels,
        "attention_mask": [1] * len(input_ids),
        "thought_positions": thought_positions,
        "action_positions": [positions[-1] for positions in thought_positions],
        "subquery_positions": subquery_positions,
        "answer_start_position": answer_start_position,
        "thoughts": [step.thought for step in trajectory.steps],
        "sub_queries": [step.sub_query for step in trajectory.retrieval_steps],
        "pseudo_relevant_ids": [list(step.pseudo_relevant_ids) for step in trajectory.retrieval_steps],
    }


# ---------------------------------------------------------------------------------------------------------------------
# Explicit (Search-R1) format of the agentic baseline
# ---------------------------------------------------------------------------------------------------------------------
# The one definition of the text `ExplicitAgenticRAG` reads, writes and inserts (spec §10, Search-R1's layout). Its
# inference loop, the SFT data of `explicit_sft.py` and `render_explicit_trajectory` all build on these functions, so
# training and inference agree token by token.

# What the baseline appends when the search cap or the turn length forces the answer.
EXPLICIT_FORCED_ANSWER = "\n<answer>"


def explicit_prompt(question: str, tokenizer: PreTrainedTokenizerBase, use_chat_template: bool = True) -> str:
    """The Search-R1 prompt of the explicit baseline: one user turn plus the generation prompt when `use_chat_template`
    and the tokenizer has a chat template, else plain text + `"\\n"`."""
    return render_user_turn(tokenizer, SEARCH_R1_PROMPT.format(question=question.strip()), use_chat_template)


def explicit_search_turn(thought: str, sub_query: str) -> str:
    """What the agent writes on a retrieval step: `<think>{thought}</think>\\n<search>{sub_query}</search>`
    (generation stops at `</search>`)."""
    return f"<think>{thought}</think>\n<search>{sub_query}</search>"


def explicit_information_block(
    titles: Sequence[str], texts: Sequence[str], document_template: str = DEFAULT_DOCUMENT_TEMPLATE
) -> str:
    """What the search engine inserts after `</search>`: `\\n\\n<information>{docs}</information>\\n\\n`, with one
    `Doc i (Title: …) …` line per passage and no newline after the last (Search-R1 strips it)."""
    documents = render_documents(titles, texts, document_template).removesuffix("\n")
    return f"\n\n<information>{documents}</information>\n\n"


def explicit_answer_turn(thought: str, answer: str) -> str:
    """What the agent writes on the final step: `<think>{thought}</think>\\n<answer>{answer}</answer>`."""
    return f"<think>{thought}</think>\n<answer>{answer}</answer>"


def explicit_trajectory_segments(
    trajectory: Trajectory, document_template: str = DEFAULT_DOCUMENT_TEMPLATE
) -> list[tuple[str, bool]]:
    """The explicit completion (everything after the prompt) as `(text, written_by_model)` pieces, split where the
    baseline switches between generating (turns, `True`) and inserting (information blocks, `False`)."""
    segments: list[tuple[str, bool]] = []
    for step in trajectory.retrieval_steps:
        segments.append((explicit_search_turn(step.thought, step.sub_query), True))
        segments.append(
            (explicit_information_block(step.retrieved_titles, step.retrieved_texts, document_template), False)
        )
    segments.append((explicit_answer_turn(trajectory.final_step.thought, trajectory.answer), True))
    return segments


def render_explicit_trajectory(trajectory: Trajectory, document_template: str = DEFAULT_DOCUMENT_TEMPLATE) -> str:
    """The Search-R1 text of a trajectory after the prompt, exactly as the explicit baseline's context holds it.

    Per retrieval step [`explicit_search_turn`] + [`explicit_information_block`], then [`explicit_answer_turn`]. The
    prompt is [`explicit_prompt`].
    """
    return "".join(text for text, _ in explicit_trajectory_segments(trajectory, document_template))


def _tokenizer_special_affixes(tokenizer: PreTrainedTokenizerBase) -> tuple[list[int], list[int]]:
    """The ids the tokenizer adds before and after a text with `add_special_tokens=True` (e.g. BOS)."""
    wrapped = list(tokenizer("a", add_special_tokens=True)["input_ids"])
    bare = list(tokenizer("a", add_special_tokens=False)["input_ids"])
    for start in range(len(wrapped) - len(bare) + 1):
        if wrapped[start : start + len(bare)] == bare:
            return wrapped[:start], wrapped[start + len(bare) :]
    return [], []


def encode_explicit_text(
    tokenizer: PreTrainedTokenizerBase,
    text: str,
    latent_tokens: Iterable[str] | None = None,
    add_special_tokens: bool = False,
) -> list[int]:
    """Token ids of explicit-baseline text, with LatentRAG's tokens read as ordinary text (spec §11).

    The explicit agent writes its tags as text, as a Search-R1 checkpoint would, so the strings of `latent_tokens`
    (`<information>`, `<answer>`, … are LatentRAG special tokens of the shared tokenizer) are split into subwords.
    Every other added token of the tokenizer (chat-template markers such as `<|im_start|>`, EOS) stays one token.
    Both the baseline's inference loop and its SFT data encode with this function.

    Args:
        tokenizer: the generator tokenizer.
        text (`str`): a prompt, a turn or an inserted block.
        latent_tokens (`Iterable[str]`, *optional*): LatentRAG's token strings (`config.special_tokens`); defaults to
            [`latent_special_tokens`]`()`.
        add_special_tokens (`bool`, *optional*, defaults to `False`): add the tokenizer's own BOS / EOS wrapping
            (plain-text prompts; chat templates write their own).

    Returns:
        `list[int]` of length `num_tokens`.
    """
    latent = set(latent_special_tokens() if latent_tokens is None else latent_tokens)
    kept = {
        token: index for token, index in tokenizer.get_added_vocab().items() if token not in latent and token in text
    }
    # The tokenizer splits its input at added tokens before pre-tokenising, so encoding the pieces between the kept
    # tokens one by one gives the ids it would give for the whole text (byte-level BPE, as Qwen and SmolLM2).
    pattern = "|".join(re.escape(token) for token in sorted(kept, key=len, reverse=True))
    pieces = re.split(f"({pattern})", text) if kept else [text]
    ids: list[int] = []
    for piece in pieces:
        if piece in kept:
            ids.append(kept[piece])
        elif piece:
            ids += tokenizer(piece, add_special_tokens=False, split_special_tokens=True)["input_ids"]
    if add_special_tokens:
        head, tail = _tokenizer_special_affixes(tokenizer)
        ids = head + ids + tail
    return ids
