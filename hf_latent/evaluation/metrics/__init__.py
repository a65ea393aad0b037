"""The `evaluate` modules of hf_latent, one folder each, loadable offline with `evaluate.load` on a local path.

Each folder holds a script named like it (the `evaluate.Metric`) and the self-contained file with the math, which the
script imports as a sibling (`from .ranking_core import ...`). `evaluate.load` copies a script and its same-folder
relative imports into its module cache but nothing outside the folder, so the math lives there once and
`hf_latent.evaluation.retrieval_metrics` / `hf_latent.evaluation.qa_metrics` re-export it.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any


if TYPE_CHECKING:
    import evaluate


METRICS_DIR = Path(__file__).resolve().parent
METRIC_NAMES = ("qa_exact_match", "retrieval_ranking")


def metric_path(name: str) -> str:
    """Local path of one of hf_latent's `evaluate` modules.

    Args:
        name (`str`):
            The module name, one of `"qa_exact_match"` and `"retrieval_ranking"`.

    Returns:
        `str`: the folder holding the module script, as `evaluate.load` expects.

    Raises:
        `ValueError`: if `name` is not a module of hf_latent.
    """
    if name not in METRIC_NAMES:
        raise ValueError(f"Unknown metric {name!r}; hf_latent ships {list(METRIC_NAMES)}.")
    return str(METRICS_DIR / name)


def load_metric(name: str, **kwargs: Any) -> evaluate.EvaluationModule:
    """Load one of hf_latent's `evaluate` modules from its local folder (no Hub access).

    Args:
        name (`str`):
            The module name, one of `"qa_exact_match"` and `"retrieval_ranking"`.
        **kwargs:
            Passed to `evaluate.load` (e.g. `cache_dir`, `keep_in_memory`, `experiment_id`).

    Returns:
        `evaluate.EvaluationModule`: the loaded metric.
    """
    import evaluate  # deferred: `evaluate` is slow to import and only needed here

    return evaluate.load(metric_path(name), **kwargs)
