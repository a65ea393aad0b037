"""SQuAD-style answer metrics: normalisation, exact match, token F1 and answer-in-text.

This file is the single implementation of the QA metrics. It is imported by the public module
`hf_latent.evaluation.qa_metrics` and, as a sibling file, by the `qa_exact_match` evaluate script: `evaluate.load`
copies the files a script imports with a relative import of the same folder (`from .x import y`) into its module
cache, but nothing outside that folder. So this file must stay self-contained: standard library only, and no import
from `hf_latent`.

Normalisation is the one of the official SQuAD v1.1 script. Scores are fractions in [0, 1], not percentages.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Sequence


_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = frozenset(string.punctuation)


def normalize_answer(text: str) -> str:
    """Normalise an answer as the official SQuAD script does.

    Lower-cases, removes ASCII punctuation, removes the articles "a", "an" and "the", and collapses whitespace.

    Args:
        text (`str`):
            The answer.

    Returns:
        `str`: the normalised answer.
    """
    text = "".join(char for char in text.lower() if char not in _PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


def _aliases(golds: str | Sequence[str]) -> list[str]:
    aliases = [golds] if isinstance(golds, str) else list(golds)
    if not aliases:
        raise ValueError("At least one gold answer is needed.")
    return aliases


def _f1(prediction_tokens: list[str], gold_tokens: list[str]) -> float:
    if not prediction_tokens or not gold_tokens:
        # SQuAD v2.0: an empty answer scores 1 against an empty answer and 0 against anything else.
        return float(prediction_tokens == gold_tokens)
    num_same = sum((Counter(prediction_tokens) & Counter(gold_tokens)).values())
    if num_same == 0:
        return 0.0
    precision = num_same / len(prediction_tokens)
    recall = num_same / len(gold_tokens)
    return 2 * precision * recall / (precision + recall)


def exact_match(prediction: str, golds: str | Sequence[str]) -> float:
    """Exact match after [`normalize_answer`], best over the gold aliases.

    Args:
        prediction (`str`):
            The predicted answer.
        golds (`str` or `Sequence[str]`):
            The gold answer or its aliases (at least one).

    Returns:
        `float`: 1.0 if the prediction matches an alias, else 0.0.
    """
    normalized = normalize_answer(prediction)
    return float(any(normalized == normalize_answer(gold) for gold in _aliases(golds)))


def token_f1(prediction: str, golds: str | Sequence[str]) -> float:
    """SQuAD token F1 (bag of normalised tokens), best over the gold aliases.

    When the prediction or an alias normalises to no token, the pair scores 1.0 if both are empty, else 0.0 (the
    SQuAD v2.0 rule; v1.1 scores two empty answers 0).

    Args:
        prediction (`str`):
            The predicted answer.
        golds (`str` or `Sequence[str]`):
            The gold answer or its aliases (at least one).

    Returns:
        `float`: the best F1 over the aliases, in [0, 1].
    """
    prediction_tokens = normalize_answer(prediction).split()
    return max(_f1(prediction_tokens, normalize_answer(gold).split()) for gold in _aliases(golds))


def answer_in_text(answers: str | Sequence[str], text: str) -> bool:
    """Whether any answer occurs in the text, both normalised, on token boundaries.

    Used for the retrieval success rate: does a retrieved passage contain the answer? Matching whole normalised
    tokens means "cat" is not found in "concatenate". Answers that normalise to nothing never match.

    Args:
        answers (`str` or `Sequence[str]`):
            The answer or its aliases.
        text (`str`):
            The text searched, e.g. a retrieved passage.

    Returns:
        `bool`: `True` if a normalised answer is a token-aligned substring of the normalised text.
    """
    padded_text = f" {normalize_answer(text)} "
    aliases = [answers] if isinstance(answers, str) else answers
    return any(
        normalized and f" {normalized} " in padded_text for normalized in (normalize_answer(a) for a in aliases)
    )


def evaluate_answers(predictions: Sequence[str], references: Sequence[str | Sequence[str]]) -> dict[str, float]:
    """Mean exact match and token F1 over a set of answers.

    Args:
        predictions (`Sequence[str]`):
            The predicted answers.
        references (`Sequence[str | Sequence[str]]`):
            For each prediction, its gold answer or aliases (at least one).

    Returns:
        `dict[str, float]`: `"exact_match"` and `"f1"`, fractions in [0, 1] (not percentages, unlike `squad`).

    Raises:
        `ValueError`: if the inputs are empty or of different lengths, or a reference has no alias.
    """
    if len(predictions) != len(references):
        raise ValueError(f"Got {len(predictions)} predictions but {len(references)} references.")
    if not predictions:
        raise ValueError("No predictions to evaluate.")
    exact = [exact_match(prediction, golds) for prediction, golds in zip(predictions, references)]
    f1 = [token_f1(prediction, golds) for prediction, golds in zip(predictions, references)]
    return {"exact_match": sum(exact) / len(exact), "f1": sum(f1) / len(f1)}
