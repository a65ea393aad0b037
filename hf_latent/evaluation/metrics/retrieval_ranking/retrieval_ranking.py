"""`retrieval_ranking`: TREC-style nDCG, recall, MRR, MAP and precision at k, as an `evaluate` metric.

Load it with `evaluate.load(hf_latent.evaluation.metrics.metric_path("retrieval_ranking"))`. The math lives in the
sibling file `ranking_core.py` (also behind `hf_latent.evaluation.retrieval_metrics`), which `evaluate.load` copies
next to this script.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import datasets
import evaluate

from .ranking_core import DEFAULT_K_VALUES, evaluate_run, ranking_to_run


_DESCRIPTION = """\
Ranking metrics of a retrieval run against graded relevance judgments (qrels), with the conventions of `pytrec_eval`:
nDCG@k with linear gains (`ndcg_cut`), recall@k, MRR@k, MAP@k divided by the number of relevant documents (`map_cut`)
and precision@k, macro-averaged over the queries. Documents are ranked by score, descending, ties broken by doc id,
ascending. Queries without a relevant document are skipped and counted in `num_skipped_queries`. The BRIGHT protocol is
supported: per-query `excluded_ids` (the sentinel "N/A" is ignored) and `remove_self`.
"""

_KWARGS_DESCRIPTION = """
Args:
    query_ids (`list[str]`):
        One id per query, unique.
    predictions (`list[list[str]]`):
        For each query, the retrieved doc ids.
    scores (`list[list[float]]`):
        For each query, the score of each retrieved doc, or an empty list to keep the order of `predictions` (best
        first).
    references (`list[list[dict]]`):
        For each query, its qrels: `{"doc_id": str, "relevance": int}` dicts (relevance 0 = not relevant).
    k_values (`list[int]`, *optional*, defaults to `[1, 5, 10, 100]`):
        The cutoffs k.
    excluded_ids (`dict[str, list[str]]`, *optional*):
        Query id -> doc ids dropped from that query's ranking before scoring.
    remove_self (`bool`, *optional*, defaults to `True`):
        Drop from each ranking the doc whose id equals the query id.

Returns:
    `dict[str, float]`: `ndcg@k`, `recall@k`, `mrr@k`, `map@k` and `precision@k` for every k, in [0, 1], plus
    `num_skipped_queries`.

Examples:

    >>> metric = evaluate.load(metric_path("retrieval_ranking"))
    >>> results = metric.compute(
    ...     query_ids=["q1"],
    ...     predictions=[["d1", "d2"]],
    ...     scores=[[0.2, 0.9]],
    ...     references=[[{"doc_id": "d1", "relevance": 1}]],
    ...     k_values=[1, 2],
    ... )
    >>> results["mrr@2"], results["recall@1"]
    (0.5, 0.0)
"""

_CITATION = """\
@inproceedings{VanGysel2018pytreceval,
    title = {Pytrec\\_eval: An Extremely Fast Python Interface to trec\\_eval},
    author = {Van Gysel, Christophe and de Rijke, Maarten},
    booktitle = {SIGIR},
    year = {2018},
}
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class RetrievalRanking(evaluate.Metric):
    """TREC-style ranking metrics at k (see `ranking_core.py` for the conventions)."""

    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            # List literals are list features on every `datasets` version (`datasets.List` needs datasets>=4), and
            # keep a list of dicts as such (`datasets.Sequence` would turn it into a dict of lists).
            features=datasets.Features(
                {
                    "query_ids": datasets.Value("string"),
                    "predictions": [datasets.Value("string")],
                    "scores": [datasets.Value("float64")],
                    "references": [{"doc_id": datasets.Value("string"), "relevance": datasets.Value("int32")}],
                }
            ),
            reference_urls=["https://github.com/cvangysel/pytrec_eval", "https://github.com/xlang-ai/BRIGHT"],
        )

    def _compute(
        self,
        query_ids: Sequence[str],
        predictions: Sequence[Sequence[str]],
        scores: Sequence[Sequence[float]],
        references: Sequence[Sequence[Mapping[str, str | int]]],
        k_values: Iterable[int] = DEFAULT_K_VALUES,
        excluded_ids: Mapping[str, Iterable[str]] | None = None,
        remove_self: bool = True,
    ) -> dict[str, float]:
        if len(set(query_ids)) != len(query_ids):
            raise ValueError("`query_ids` must be unique.")
        run: dict[str, dict[str, float]] = {}
        for query_id, doc_ids, doc_scores in zip(query_ids, predictions, scores):
            if not doc_scores:
                run.update(ranking_to_run({query_id: doc_ids}))
            elif len(doc_scores) == len(doc_ids):
                run[query_id] = dict(zip(doc_ids, doc_scores))
            else:
                raise ValueError(f"Query {query_id!r}: {len(doc_ids)} doc ids but {len(doc_scores)} scores.")
        qrels = {
            query_id: {str(judgment["doc_id"]): int(judgment["relevance"]) for judgment in judgments}
            for query_id, judgments in zip(query_ids, references)
        }
        return evaluate_run(run, qrels, k_values, excluded_ids, remove_self)
