"""Tests of the SQuAD-style QA metrics, table-driven, plus a check against the official SQuAD v1.1 functions."""

from __future__ import annotations

import re
import string
from collections import Counter

import numpy as np
import pytest

from hf_latent.evaluation import answer_in_text, evaluate_answers, exact_match, normalize_answer, token_f1


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("The Cat", "cat"),  # case, article
        ("An apple, the pie!", "apple pie"),  # articles anywhere, punctuation
        ("  a   b\tc\n", "b c"),  # whitespace collapsed; "a" is an article
        ("anthem theory", "anthem theory"),  # articles only as whole words
        ("Hello,World", "helloworld"),  # punctuation is removed, not replaced by a space
        ("the-end", "theend"),  # punctuation goes before articles, so "the" is no longer a word
        ("U.S.A.", "usa"),
        ("Théâtre «Ω»", "théâtre «ω»"),  # only ASCII punctuation is removed
        ("", ""),
    ],
)
def test_normalize_answer(text: str, expected: str) -> None:
    assert normalize_answer(text) == expected


@pytest.mark.parametrize(
    ("prediction", "golds", "expected"),
    [
        ("The Eiffel Tower", "eiffel tower", 1.0),
        ("Eiffel Tower.", ["Paris", "the eiffel  tower"], 1.0),  # best alias
        ("Eiffel", "Eiffel Tower", 0.0),
        ("", ["", "x"], 1.0),
        ("42", ("forty-two", "42"), 1.0),  # any sequence of aliases
    ],
)
def test_exact_match(prediction: str, golds: str | list[str], expected: float) -> None:
    assert exact_match(prediction, golds) == expected


@pytest.mark.parametrize(
    ("prediction", "golds", "expected"),
    [
        ("Paris", "Paris, France", 2 / 3),  # P = 1, R = 1/2
        ("the cat sat", "cat sat on mat", 2 / 3),  # "the" dropped: P = 2/2, R = 2/4
        ("red red blue", "red blue blue", 2 / 3),  # bag of tokens: 2 shared of 3 each side
        ("new york city", ["york", "New York City"], 1.0),  # best alias
        ("big dog", "small cat", 0.0),
        ("", "the", 1.0),  # both normalise to nothing
        ("", "cat", 0.0),
        ("cat", "a", 0.0),
    ],
)
def test_token_f1(prediction: str, golds: str | list[str], expected: float) -> None:
    assert token_f1(prediction, golds) == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize(
    ("answers", "text", "expected"),
    [
        ("cat", "The cat sat.", True),
        ("Cat!", "the CAT sat", True),
        ("cat", "concatenate", False),  # token boundaries
        (["dog", "Sat"], "The cat sat", True),
        ("U.S.", "the US army", True),
        ("new york", "New-York", False),  # "new-york" normalises to the single token "newyork"
        ("the", "the cat", False),  # the answer normalises to nothing
        ([], "anything", False),
    ],
)
def test_answer_in_text(answers: str | list[str], text: str, expected: bool) -> None:
    assert answer_in_text(answers, text) is expected


def test_evaluate_answers_returns_fractions() -> None:
    results = evaluate_answers(["The Eiffel Tower", "Paris", "nope"], [["Eiffel Tower"], "Paris, France", ["x", "y"]])
    assert results == pytest.approx({"exact_match": 1 / 3, "f1": (1 + 2 / 3 + 0) / 3}, abs=1e-12)


@pytest.mark.parametrize(
    ("predictions", "references", "message"),
    [
        (["a"], [["a"], ["b"]], "1 predictions but 2 references"),
        ([], [], "No predictions"),
        (["a"], [[]], "At least one gold answer"),
    ],
)
def test_evaluate_answers_rejects_bad_inputs(predictions: list, references: list, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        evaluate_answers(predictions, references)


# The official SQuAD v1.1 evaluation functions, verbatim but for style: an independent reference.
def _squad_normalize_answer(s: str) -> str:
    def remove_articles(text: str) -> str:
        return re.sub(r"\b(a|an|the)\b", " ", text)

    def white_space_fix(text: str) -> str:
        return " ".join(text.split())

    def remove_punc(text: str) -> str:
        exclude = set(string.punctuation)
        return "".join(ch for ch in text if ch not in exclude)

    return white_space_fix(remove_articles(remove_punc(s.lower())))


def _squad_f1_score(prediction: str, ground_truth: str) -> float:
    prediction_tokens = _squad_normalize_answer(prediction).split()
    ground_truth_tokens = _squad_normalize_answer(ground_truth).split()
    common = Counter(prediction_tokens) & Counter(ground_truth_tokens)
    num_same = sum(common.values())
    if num_same == 0:
        return 0
    precision = 1.0 * num_same / len(prediction_tokens)
    recall = 1.0 * num_same / len(ground_truth_tokens)
    return (2 * precision * recall) / (precision + recall)


def test_matches_official_squad_on_random_strings() -> None:
    rng = np.random.default_rng(0)
    compared_f1 = 0
    vocabulary = ["The", "a", "an", "cat", "Cat", "sat", "on", "mat", ",", ".", "-", "!", "  ", "\t", "é", "the."]
    for _ in range(500):
        prediction = " ".join(rng.choice(vocabulary, size=rng.integers(0, 8)))
        golds = [" ".join(rng.choice(vocabulary, size=rng.integers(1, 8))) for _ in range(rng.integers(1, 4))]
        assert normalize_answer(prediction) == _squad_normalize_answer(prediction)
        official_em = max(float(_squad_normalize_answer(prediction) == _squad_normalize_answer(g)) for g in golds)
        assert exact_match(prediction, golds) == official_em
        # The official v1.1 F1 scores two empty answers 0; ours scores them 1 (the v2.0 rule).
        if _squad_normalize_answer(prediction) and all(_squad_normalize_answer(g) for g in golds):
            official_f1 = max(_squad_f1_score(prediction, g) for g in golds)
            assert token_f1(prediction, golds) == pytest.approx(official_f1, abs=1e-12)
            compared_f1 += 1
    assert compared_f1 > 150
