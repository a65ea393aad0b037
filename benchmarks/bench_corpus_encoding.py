"""Corpus encoding at scale: peak memory and retrieval quality of the untrained default backbone vs MiniLM.

Encodes the whole pooled HotpotQA-500 corpus (4,858 paragraphs) into a faiss index with the default causal-LM
backbone (SmolLM2-135M-Instruct, LaSER formatting, K = 1: one forward pass, last-token pooling) and with the plain
MiniLM retriever, both with progress bars, then evaluates the HotpotQA-500 test split (both supporting paragraphs
relevant, and the second-hop paragraph alone) from the same index, and the BRIGHT StackExchange proxy.

Memory: the process RSS is sampled after every encoded batch. Encoding writes each batch's vectors into a
preallocated `(N, d)` float32 array, so memory should plateau after the first batches: the JSON reports the RSS
peak after 10%, 50% and 100% of the corpus (equal peaks = bounded by the batch, not the corpus) and the size of
the embedding matrix itself (N x d x 4 bytes, the only part that grows with N).

Writes `results.json`, `results.md` and `rss.png` to `--output-dir`.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import psutil
import torch
from transformers import AutoTokenizer

from hf_latent import default_backbone, default_retriever
from hf_latent.evaluation.retrieval_eval import evaluate_retrieval, reports_to_markdown
from hf_latent.evaluation.retrieval_tasks import load_retrieval_task
from hf_latent.laser import LaserEncoder, LaserModel
from hf_latent.retrieval import DenseIndex, HFEncoder


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbone", default=None, help="causal LM (default: SmolLM2-135M-Instruct)")
    parser.add_argument("--batch-size", type=int, default=16, help="documents per forward pass (default 16)")
    parser.add_argument(
        "--passage-max-length",
        type=int,
        default=96,
        help="tokens per document, template included (default 96; longer documents are truncated, with a warning)",
    )
    parser.add_argument(
        "--query-max-length", type=int, default=256, help="tokens per query, template included (default 256)"
    )
    parser.add_argument(
        "--bright-max-queries", type=int, default=200, help="BRIGHT proxy: first N queries, whole corpus (default 200)"
    )
    parser.add_argument("--max-documents", type=int, default=None, help="encode only the first N documents")
    parser.add_argument("--skip-bright", action="store_true", help="HotpotQA only")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--output-dir", default="results/bench_corpus_encoding")
    return parser.parse_args(argv)


class RSSTracker:
    """Process RSS (MiB) after each encoded batch, with the number of documents done so far."""

    def __init__(self):
        self.process = psutil.Process()
        self.samples: list[tuple[int, float]] = []
        self.done = 0

    def record(self, count: int) -> None:
        self.done += count
        self.samples.append((self.done, self.process.memory_info().rss / 2**20))

    def peak_until(self, fraction: float, total: int) -> float:
        return max(rss for done, rss in self.samples if done <= max(fraction * total, self.samples[0][0]))


class TrackedLaserEncoder(LaserEncoder):
    """A [`LaserEncoder`] that records the process RSS after every document batch."""

    def __init__(self, *args, tracker: RSSTracker | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.tracker = tracker

    def encode_batch(self, texts: list[str], is_query: bool = False):
        embeddings = super().encode_batch(texts, is_query=is_query)
        if self.tracker is not None and not is_query:
            self.tracker.record(len(texts))
        return embeddings


def backbone_encoder(
    backbone: str, passage_max_length: int, query_max_length: int, tracker: RSSTracker | None
) -> TrackedLaserEncoder:
    """The untrained backbone as LaSER with K = 1 (= the plain last-token retriever, specs/laser.md §2.3)."""
    model = LaserModel.from_backbone(backbone, num_latent_steps=1).eval()
    tokenizer = AutoTokenizer.from_pretrained(backbone)
    return TrackedLaserEncoder(
        model,
        tokenizer,
        f"{Path(backbone).name}:K1",
        query_max_length=query_max_length,
        passage_max_length=passage_max_length,
        tracker=tracker,
    )


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    backbone = args.backbone or default_backbone()
    output_dir = Path(args.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)

    both = load_retrieval_task("hotpotqa-test-both")
    second_hop = load_retrieval_task("hotpotqa-test-second_hop")
    texts, ids = both.document_texts, list(both.corpus["id"])
    if args.max_documents:
        texts, ids = texts[: args.max_documents], ids[: args.max_documents]

    tracker = RSSTracker()
    baseline_rss = psutil.Process().memory_info().rss / 2**20
    smollm = backbone_encoder(backbone, args.passage_max_length, args.query_max_length, tracker)
    loaded_rss = psutil.Process().memory_info().rss / 2**20
    start = time.perf_counter()
    index = DenseIndex.from_corpus(texts, ids, smollm, batch_size=args.batch_size, show_progress_bar=True)
    encode_seconds = time.perf_counter() - start
    tracker.samples = tracker.samples or [(0, loaded_rss)]
    memory = {
        "documents": len(texts),
        "batch_size": args.batch_size,
        "passage_max_length": args.passage_max_length,
        "rss_before_model_mib": baseline_rss,
        "rss_model_loaded_mib": loaded_rss,
        "peak_rss_after_10pct_mib": tracker.peak_until(0.1, len(texts)),
        "peak_rss_after_50pct_mib": tracker.peak_until(0.5, len(texts)),
        "peak_rss_after_100pct_mib": tracker.peak_until(1.0, len(texts)),
        "embedding_matrix_mib": len(texts) * smollm.embedding_dim * 4 / 2**20,
        "encode_seconds": encode_seconds,
        "documents_per_second": len(texts) / encode_seconds,
        "samples": tracker.samples,
    }
    print(json.dumps({k: v for k, v in memory.items() if k != "samples"}, indent=2))

    reports = []
    full_corpus = args.max_documents is None
    if full_corpus:
        for task in (both, second_hop):
            smollm.instruction = task.instruction
            reports.append(evaluate_retrieval(smollm, task, k_values=(1, 5, 10, 100), batch_size=8, index=index)[0])
    minilm = HFEncoder.from_pretrained(default_retriever(), pooling="mean")
    if full_corpus:
        minilm_index = DenseIndex.from_corpus(texts, ids, minilm, batch_size=64, show_progress_bar=True)
        for task in (both, second_hop):
            reports.append(evaluate_retrieval(minilm, task, k_values=(1, 5, 10, 100), index=minilm_index)[0])
    if not args.skip_bright:
        bright = load_retrieval_task("bright-se-proxy").subset(args.bright_max_queries)
        smollm.tracker, smollm.instruction = None, bright.instruction
        reports.append(evaluate_retrieval(smollm, bright, k_values=(1, 5, 10, 100), batch_size=8)[0])
        reports.append(evaluate_retrieval(minilm, bright, k_values=(1, 5, 10, 100), batch_size=64)[0])

    results = {
        "backbone": backbone,
        "torch_threads": torch.get_num_threads(),
        "cpu": platform.processor() or platform.machine(),
        "memory": memory,
        "retrieval": [report.to_dict() for report in reports],
    }
    (output_dir / "results.json").write_text(json.dumps(results, indent=2))
    table = [
        "| documents | batch | max tokens | RSS loaded (MiB) | peak @10% | peak @50% | peak @100% | vectors (MiB) | docs/s |",
        "|---|---|---|---|---|---|---|---|---|",
        f"| {len(texts)} | {args.batch_size} | {args.passage_max_length} | {loaded_rss:.0f} | "
        f"{memory['peak_rss_after_10pct_mib']:.0f} | {memory['peak_rss_after_50pct_mib']:.0f} | "
        f"{memory['peak_rss_after_100pct_mib']:.0f} | {memory['embedding_matrix_mib']:.1f} | "
        f"{memory['documents_per_second']:.2f} |",
    ]
    markdown = "\n".join(table) + ("\n\n" + reports_to_markdown(reports) if reports else "") + "\n"
    (output_dir / "results.md").write_text(markdown)
    print(markdown)
    plot_rss(tracker.samples, output_dir / "rss.png")
    return results


def plot_rss(samples: list[tuple[int, float]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(6, 3.5))
    axis.plot([done for done, _ in samples], [rss for _, rss in samples])
    axis.set_xlabel("documents encoded")
    axis.set_ylabel("process RSS (MiB)")
    axis.set_title("Corpus encoding memory (default backbone)")
    axis.set_ylim(bottom=0)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


if __name__ == "__main__":
    main()
