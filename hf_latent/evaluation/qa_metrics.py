"""QA metrics as pure functions: SQuAD normalisation, exact match, token F1 and answer-in-text.

Scores are fractions in [0, 1]. The implementation lives in
`hf_latent/evaluation/metrics/qa_exact_match/answer_core.py`, the one file shared with the `qa_exact_match` evaluate
module (`evaluate.load` can only copy files of the module's own folder); this module is its public path.
"""

from __future__ import annotations

from .metrics.qa_exact_match.answer_core import (
    answer_in_text,
    evaluate_answers,
    exact_match,
    normalize_answer,
    token_f1,
)


__all__ = ["answer_in_text", "evaluate_answers", "exact_match", "normalize_answer", "token_f1"]
