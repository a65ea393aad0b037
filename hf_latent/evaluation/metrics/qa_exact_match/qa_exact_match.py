"""`qa_exact_match`: SQuAD exact match and token F1 with answer aliases, as an `evaluate` metric.

Load it with `evaluate.load(hf_latent.evaluation.metrics.metric_path("qa_exact_match"))`. The math lives in the
sibling file `answer_core.py` (also behind `hf_latent.evaluation.qa_metrics`), which `evaluate.load` copies next to
this script.
"""

from __future__ import annotations

from collections.abc import Sequence

import datasets
import evaluate

from .answer_core import evaluate_answers


_DESCRIPTION = """\
Exact match and token F1 of predicted answers against one or more gold aliases, after the official SQuAD
normalisation (lower-case, no punctuation, no articles "a"/"an"/"the", single spaces). Each prediction scores its best
alias. Unlike the `squad` metric, the scores are fractions in [0, 1], not percentages.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list[str]`):
        The predicted answers.
    references (`list[list[str]]`):
        For each prediction, its gold answer aliases (at least one).

Returns:
    `dict[str, float]`:
        - **exact_match** (`float`): the fraction of predictions equal to an alias after normalisation.
        - **f1** (`float`): the mean over predictions of the best token F1 over aliases.

Examples:

    >>> metric = evaluate.load(metric_path("qa_exact_match"))
    >>> metric.compute(predictions=["The Eiffel Tower", "Paris"], references=[["Eiffel Tower"], ["Paris, France"]])
    {'exact_match': 0.5, 'f1': 0.8333333333333333}
"""

_CITATION = """\
@inproceedings{rajpurkar-etal-2016-squad,
    title = "{SQ}u{AD}: 100,000+ Questions for Machine Comprehension of Text",
    author = "Rajpurkar, Pranav and Zhang, Jian and Lopyrev, Konstantin and Liang, Percy",
    booktitle = "Proceedings of the 2016 Conference on Empirical Methods in Natural Language Processing",
    year = "2016",
    pages = "2383--2392",
}
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class QaExactMatch(evaluate.Metric):
    """SQuAD exact match and token F1, best over answer aliases, as fractions in [0, 1]."""

    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            # A list literal is a list feature on every `datasets` version (`datasets.List` needs datasets>=4).
            features=datasets.Features(
                {"predictions": datasets.Value("string"), "references": [datasets.Value("string")]}
            ),
            reference_urls=["https://rajpurkar.github.io/SQuAD-explorer/"],
        )

    def _compute(self, predictions: Sequence[str], references: Sequence[Sequence[str]]) -> dict[str, float]:
        return evaluate_answers(predictions, references)
