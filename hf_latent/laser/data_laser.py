"""LaSER training rows: builders from multi-hop QA sets, column standardisation and up-front validation.

A LaSER training row (specs/laser.md §5) is a dict with

| column | type | meaning |
|---|---|---|
| `query` | `str` | the query (non-empty) |
| `reasoning` | `str`, *optional* | explicit rationale (CoT) for the teacher view; empty or short: the query is used |
| `positive` | `str` or `list[str]` | relevant passage(s); the collator picks one per epoch |
| `negatives` | `list[str]`, *optional* | hard negatives, hardest first; the collator takes the first G-1 |
| `instruction` | `str`, *optional* | query instruction; missing or `None`: the model config's default |

Passages are plain strings, formatted exactly as the evaluation encodes documents: `"{title}\\n{text}"`
(`hf_latent.evaluation.retrieval_tasks.RetrievalTask.document_texts`). Other columns (e.g. `id`) are ignored.
"""

from __future__ import annotations

import logging
import random
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from datasets import Dataset

from ..data.multihop import MultiHopQA
from ..evaluation.retrieval_tasks import HOTPOTQA_INSTRUCTION


logger = logging.getLogger(__name__)

LASER_COLUMNS = ("query", "reasoning", "positive", "negatives", "instruction")

# Column names of other sources mapped onto ours: the released LaSER data (specs/laser.md §5 [C]) and common
# sentence-transformers / FlagEmbedding spellings.
COLUMN_ALIASES = {
    "reasoning_query": "reasoning",
    "rationale": "reasoning",
    "cot": "reasoning",
    "prompt": "instruction",
    "positive_passages": "positive",
    "positives": "positive",
    "pos": "positive",
    "negative_passages": "negatives",
    "negative": "negatives",
    "neg": "negatives",
}

RATIONALE_MODES = ("auto", "reasoning", "oracle", "generated", "none")

# A BRIGHT-style CoT prompt (specs/laser.md §5: identify the essential problem, reason step by step about the
# relevant information, draft an answer with as many thoughts as possible; question in [Begin/End of Question]).
RATIONALE_PROMPT = (
    "[Begin of Question]\n{question}\n[End of Question]\n\n"
    "Identify the essential problem in the question. Think step by step to reason about what information would be "
    "relevant and helpful to address it. Draft an answer with as many thoughts as you have, separating the steps "
    "with blank lines."
)

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def passage_text(title: str | None, text: str) -> str:
    """A passage as LaSER training and the retrieval evaluation encode it: `"{title}\\n{text}"` (or the text alone)."""
    return f"{title}\n{text}" if title else text


def first_sentence(text: str, max_chars: int = 300) -> str:
    """The first sentence of `text` (split after `.`, `!` or `?` followed by whitespace), at most `max_chars`."""
    text = " ".join(text.split())
    sentence = _SENTENCE_END.split(text, maxsplit=1)[0] if text else ""
    return sentence if len(sentence) <= max_chars else sentence[: max_chars - 3].rstrip() + "..."


def oracle_rationale(titles: Sequence[str], texts: Sequence[str], answer: str | None = None) -> str:
    """A deterministic rationale built from the gold supporting passages, in hop order [D].

    `"To answer this I need {title_1}: {sentence_1}\\n\\nThen {title_2}: {sentence_2}\\n\\nSo the answer is: {answer}."`,
    where each sentence is the first sentence of the passage. The blank lines are LaSER's segment separators
    (specs/laser.md §3.2), so every hop ends a segment.

    This is an **oracle** rationale: it reads the gold passages and the answer, i.e. privileged information that only
    the teacher (explicit) view sees in training, as the GPT-4o-mini CoTs did in the paper. It is never used at
    inference. Retrieval scores of a model trained on it say how well the latent view internalises oracle reasoning,
    not how good an LLM's CoTs are.
    """
    steps = []
    for hop, (title, text) in enumerate(zip(titles, texts)):
        lead = "To answer this I need" if hop == 0 else "Then"
        sentence = first_sentence(text)
        steps.append(f"{lead} {title}: {sentence}" if title else f"{lead}: {sentence}")
    if answer:
        steps.append(f"So the answer is: {answer.rstrip('.')}.")
    return "\n\n".join(steps)


def make_rationale_generator(
    model,
    tokenizer,
    prompt: str = RATIONALE_PROMPT,
    max_new_tokens: int = 256,
    batch_size: int = 8,
    **generate_kwargs: Any,
) -> Callable[[list[str]], list[str]]:
    """A `rationale_fn` for [`laser_rows_from_multihop`] that writes CoTs with a causal LM (greedy by default).

    Args:
        model: an `AutoModelForCausalLM`, or a [`LaserModel`] (its backbone is used, adapters included).
        tokenizer: its tokenizer; its chat template is applied when it has one (thinking disabled where supported).
        prompt: format string with `{question}`; defaults to a BRIGHT-style CoT prompt (specs/laser.md §5).
        max_new_tokens: length budget of each rationale.
        batch_size: questions per `generate` call (left padding).
        generate_kwargs: more `generate` arguments (e.g. `do_sample=True, temperature=0.7`).

    Returns:
        `fn(questions: list[str]) -> list[str]`.
    """
    import torch

    causal_lm = getattr(model, "backbone", model)
    get_base_model = getattr(causal_lm, "get_base_model", None)
    causal_lm = get_base_model() if callable(get_base_model) else causal_lm
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    generate_kwargs = {"do_sample": False, **generate_kwargs}

    def render(question: str) -> str:
        content = prompt.format(question=question)
        if not getattr(tokenizer, "chat_template", None):
            return content
        kwargs = {"enable_thinking": False} if "enable_thinking" in str(tokenizer.chat_template) else {}
        return tokenizer.apply_chat_template(
            [{"role": "user", "content": content}], tokenize=False, add_generation_prompt=True, **kwargs
        )

    def generate(questions: list[str]) -> list[str]:
        outputs: list[str] = []
        was_training = causal_lm.training
        causal_lm.eval()
        try:
            for start in range(0, len(questions), batch_size):
                texts = [render(question) for question in questions[start : start + batch_size]]
                ids = [tokenizer.encode(text, add_special_tokens=False) for text in texts]
                length = max(len(row) for row in ids)
                input_ids = torch.tensor([[pad_id] * (length - len(row)) + row for row in ids])
                attention_mask = torch.tensor([[0] * (length - len(row)) + [1] * len(row) for row in ids])
                with torch.no_grad():
                    generated = causal_lm.generate(
                        input_ids=input_ids.to(causal_lm.device),
                        attention_mask=attention_mask.to(causal_lm.device),
                        max_new_tokens=max_new_tokens,
                        pad_token_id=pad_id,
                        **generate_kwargs,
                    )
                outputs.extend(
                    tokenizer.decode(row[length:], skip_special_tokens=True).strip() for row in generated.cpu()
                )
        finally:
            causal_lm.train(was_training)
        return outputs

    return generate


def laser_rows_from_multihop(
    qa: MultiHopQA,
    split: str | None = "train",
    num_negatives: int | None = None,
    rationale: str = "auto",
    rationale_fn: Callable[[list[str]], list[str]] | None = None,
    instruction: str | None = HOTPOTQA_INSTRUCTION,
    max_rows: int | None = None,
    min_negatives: int = 1,
    seed: int = 42,
) -> Dataset:
    """LaSER training rows from a multi-hop QA set (e.g. [`~hf_latent.data.load_hotpotqa`], the demo corpus).

    - `query`: the question.
    - `positive`: **all** supporting passages in hop order (`"{title}\\n{text}"`); [`LaserDataCollator`] picks
      `positive[(key + seed + epoch) % n_pos]` per epoch (specs/laser.md §5 [C]), so both hops are trained on.
    - `negatives`: the question's other passages (`negative_ids`, the distractors), in their stored order. A question
      with fewer than `min_negatives` of them (4 HotpotQA-500 train questions have none) is topped up with random
      corpus passages (not its supporting ones), drawn deterministically from `seed` and the question id [D], so
      `train_group_size=2` works on every row; `min_negatives=0` keeps the rows as they are.
    - `reasoning`: the explicit-view rationale, chosen by `rationale`:
        - `"auto"` (default): the row's own `reasoning` when non-empty (the demo corpus has real ones), else an
          [`oracle_rationale`] from the gold passages (HotpotQA-500 has none);
        - `"reasoning"`: the row's `reasoning` only (empty rows fall back to the query in the collator);
        - `"oracle"`: always the [`oracle_rationale`];
        - `"generated"`: `rationale_fn(questions)`, e.g. [`make_rationale_generator`] over the backbone;
        - `"none"`: empty, so the teacher reads the query twice (a control).
      The oracle rationale is privileged information (gold titles, first sentences, answer) given to the teacher
      only, as the GPT-4o-mini CoTs were in the paper; inference never sees it.
    - `instruction`: one instruction for every query; defaults to the HotpotQA retrieval task's, so training and
      [`~hf_latent.evaluation.retrieval_tasks.hotpotqa_task`] format queries the same way. `None`: the model's default.
    - `id`: the question id (ignored by the collator).

    Args:
        qa: the QA set.
        split: `"train"`, `"dev"`, `"test"` or `None` for every question.
        num_negatives: keep at most this many negatives per row (`None`: all).
        rationale: see above.
        rationale_fn: required for `rationale="generated"`: `fn(list_of_questions) -> list_of_rationales`.
        instruction: see above.
        max_rows: keep the first `max_rows` questions.
        min_negatives: top up rows with fewer negatives from the corpus (see above).
        seed: seeds that top-up.

    Returns:
        `datasets.Dataset` with columns `query`, `reasoning`, `positive`, `negatives`, `instruction`, `id`.
    """
    if rationale not in RATIONALE_MODES:
        raise ValueError(f"rationale must be one of {RATIONALE_MODES}, got {rationale!r}.")
    if rationale == "generated" and rationale_fn is None:
        raise ValueError('rationale="generated" needs rationale_fn, e.g. make_rationale_generator(model, tokenizer).')
    if num_negatives is not None and num_negatives < 0:
        raise ValueError(f"num_negatives must be None or >= 0, got {num_negatives}.")
    if min_negatives < 0:
        raise ValueError(f"min_negatives must be >= 0, got {min_negatives}.")
    questions = qa.split(split) if split is not None else qa.questions
    if max_rows is not None:
        questions = questions.select(range(min(max_rows, len(questions))))
    passages = qa.passages_by_id()
    corpus_ids = list(passages)

    def text_of(pid: str) -> str:
        if pid not in passages:
            raise ValueError(f"{qa.name}: passage id {pid!r} is not in the corpus.")
        return passage_text(passages[pid]["title"], passages[pid]["text"])

    rows: dict[str, list] = {name: [] for name in (*LASER_COLUMNS, "id")}
    for row in questions:
        supporting = list(row["supporting_ids"])
        negatives = [pid for pid in row["negative_ids"] if pid not in supporting]
        if num_negatives is not None:
            negatives = negatives[:num_negatives]
        if len(negatives) < min_negatives:
            # [D] no distractors stored for this question: random corpus passages as (easy) negatives.
            pool = [pid for pid in corpus_ids if pid not in supporting and pid not in negatives]
            extra = random.Random(f"{seed}-{row['id']}").sample(pool, min(min_negatives - len(negatives), len(pool)))
            negatives = negatives + extra
        own = (row.get("reasoning") or "").strip()
        if rationale == "reasoning" or (rationale == "auto" and own):
            reasoning = own
        elif rationale in ("auto", "oracle"):
            answers = row.get("answers") or []
            reasoning = oracle_rationale(
                [passages[pid]["title"] for pid in supporting if pid in passages],
                [passages[pid]["text"] for pid in supporting if pid in passages],
                answers[0] if answers else None,
            )
        else:
            reasoning = ""
        rows["query"].append(row["question"])
        rows["reasoning"].append(reasoning)
        rows["positive"].append([text_of(pid) for pid in supporting])
        rows["negatives"].append([text_of(pid) for pid in negatives])
        rows["instruction"].append(instruction)
        rows["id"].append(row["id"])
    if rationale == "generated" and rows["query"]:
        generated = list(rationale_fn(list(rows["query"])))
        if len(generated) != len(rows["query"]):
            raise ValueError(f"rationale_fn returned {len(generated)} rationales for {len(rows['query'])} questions.")
        rows["reasoning"] = [text if isinstance(text, str) else "" for text in generated]
    return Dataset.from_dict(rows)


def _as_passage_text(passage: Any) -> Any:
    if isinstance(passage, Mapping):
        text = passage.get("text", passage.get("contents", passage.get("content")))
        return passage_text(passage.get("title"), text) if isinstance(text, str) else passage
    return passage


def standardize_laser_columns(dataset: Dataset) -> Dataset:
    """Rename known column aliases to LaSER's (see `COLUMN_ALIASES`) and turn passage dicts into text.

    Handles the released training data's spelling (`reasoning_query`, `prompt`, `positive_passages`,
    `negative_passages`) and common sentence-transformers ones (`positives`, `pos`, `neg`). A passage given as a dict
    with `text` (and optionally `title`) becomes `"{title}\\n{text}"`. A column whose target already exists is left
    alone.
    """
    renames = {
        old: new
        for old, new in COLUMN_ALIASES.items()
        if old in dataset.column_names and new not in dataset.column_names
    }
    if renames:
        dataset = dataset.rename_columns(renames)

    def convert(row: dict) -> dict:
        out = {}
        for column in ("positive", "negatives"):
            if column in row:
                value = row[column]
                out[column] = (
                    [_as_passage_text(p) for p in value] if isinstance(value, list) else _as_passage_text(value)
                )
        return out

    needs_conversion = any(
        column in dataset.column_names and "text" in str(dataset.features[column])
        for column in ("positive", "negatives")
    )
    if needs_conversion:
        dataset = dataset.map(convert, desc="LaSER: passages to text")
    return dataset


def _passage_list(value: Any) -> list:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    return list(value)


def validate_laser_dataset(
    dataset: Dataset | Iterable[Mapping[str, Any]],
    train_group_size: int = 2,
    needs_rationale: bool = False,
    min_rationale_chars: int = 5,
    max_errors: int = 5,
) -> dict[str, int]:
    """Check LaSER training rows before training starts, so bad data fails at once with a clear message.

    Errors (`ValueError`, naming up to `max_errors` offending rows by index): a missing `query` or `positive`
    column; a query that is not a non-empty string; a row without a positive; a passage that is not a non-empty
    string; `negatives` that is not a list of strings; a row with no negatives when `train_group_size` > 1
    (add negatives or set `train_group_size=1`).

    Not errors (documented behaviour, summarised in one log line): fewer than G-1 negatives (sampled with
    replacement, specs/laser.md §5 [C]); a missing, empty or short rationale (the explicit view uses the query).

    Args:
        dataset: a `datasets.Dataset` or any iterable of row dicts (an `IterableDataset` is read to the end; skip
            validation for streams).
        train_group_size: G.
        needs_rationale: whether the explicit view is trained (only then are rationale fallbacks reported).
        min_rationale_chars: rationale length under which the query is used instead.
        max_errors: how many offending rows to list.

    Returns:
        Counts: `num_rows`, `rows_with_few_negatives`, `rows_without_rationale`.
    """
    if train_group_size < 1:
        raise ValueError(f"train_group_size must be >= 1, got {train_group_size}.")
    columns = getattr(dataset, "column_names", None)
    if isinstance(dataset, Dataset):
        missing = [name for name in ("query", "positive") if name not in dataset.column_names]
        if missing:
            raise ValueError(
                f"The LaSER training dataset lacks the column(s) {missing}; it has {dataset.column_names}. Expected "
                f"{list(LASER_COLUMNS)} (see hf_latent.laser.data_laser; `standardize_laser_columns` maps the "
                "released data's names)."
            )
        rows: Iterable[Mapping[str, Any]] = (
            dict(zip(dataset.column_names, values))
            for values in zip(*(dataset[name] for name in dataset.column_names))
        )
    elif hasattr(dataset, "__len__") and hasattr(dataset, "__getitem__") and not isinstance(dataset, Mapping):
        rows = (dataset[index] for index in range(len(dataset)))  # map-style (e.g. a torch Dataset or a list)
    else:
        rows = dataset
    errors: list[str] = []
    num_errors = 0
    stats = {"num_rows": 0, "rows_with_few_negatives": 0, "rows_without_rationale": 0}

    def error(index: int, message: str) -> None:
        nonlocal num_errors
        num_errors += 1
        if len(errors) < max_errors:
            errors.append(f"row {index}: {message}")

    for index, row in enumerate(rows):
        stats["num_rows"] += 1
        query = row.get("query")
        if not isinstance(query, str) or not query.strip():
            error(index, f"`query` must be a non-empty string, got {query!r}.")
        positives = _passage_list(row.get("positive"))
        if not positives:
            error(index, "no positive passage (`positive` is missing or empty); every row needs at least one.")
        elif not all(isinstance(p, str) and p.strip() for p in positives):
            error(index, "every positive passage must be a non-empty string.")
        negatives = row.get("negatives")
        if negatives is not None and (isinstance(negatives, str) or not isinstance(negatives, Sequence)):
            error(index, f"`negatives` must be a list of strings, got {type(negatives).__name__}.")
            negatives = None
        negatives = list(negatives or [])
        if not all(isinstance(n, str) and n.strip() for n in negatives):
            error(index, "every negative passage must be a non-empty string.")
        if train_group_size > 1:
            if not negatives:
                error(
                    index,
                    f"no hard negatives, but train_group_size={train_group_size} needs {train_group_size - 1} per "
                    "row; add `negatives` or set train_group_size=1 (in-batch negatives only).",
                )
            elif len(negatives) < train_group_size - 1:
                stats["rows_with_few_negatives"] += 1
        reasoning = row.get("reasoning")
        if not isinstance(reasoning, str) or len(reasoning.strip()) < min_rationale_chars:
            stats["rows_without_rationale"] += 1
    if num_errors:
        more = f" (and {num_errors - len(errors)} more)" if num_errors > len(errors) else ""
        raise ValueError(f"Invalid LaSER training data: {num_errors} problem(s){more}:\n  " + "\n  ".join(errors))
    if stats["num_rows"] == 0:
        raise ValueError("The LaSER training dataset is empty.")
    if stats["rows_with_few_negatives"]:
        logger.info(
            f"{stats['rows_with_few_negatives']} of {stats['num_rows']} rows have fewer than "
            f"{train_group_size - 1} negatives; they are sampled with replacement (specs/laser.md §5)."
        )
    if needs_rationale and stats["rows_without_rationale"]:
        logger.warning(
            f"{stats['rows_without_rationale']} of {stats['num_rows']} rows have no rationale (missing, empty or "
            f"shorter than {min_rationale_chars} characters"
            + ("" if columns is None or "reasoning" in columns else "; the dataset has no `reasoning` column")
            + "); the explicit view uses the query text for them (specs/laser.md §3.1)."
        )
    return stats


__all__ = [
    "COLUMN_ALIASES",
    "LASER_COLUMNS",
    "RATIONALE_MODES",
    "RATIONALE_PROMPT",
    "first_sentence",
    "laser_rows_from_multihop",
    "make_rationale_generator",
    "oracle_rationale",
    "passage_text",
    "standardize_laser_columns",
    "validate_laser_dataset",
]
