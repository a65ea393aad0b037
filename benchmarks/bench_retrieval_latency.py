"""Query-encoding latency: LaSER vs the plain retriever vs rewrite-then-retrieve, side by side (specs/laser.md §10).

Same backbone, same queries (BRIGHT biology posts), same batch size and formatting for all three:

- plain retriever: LaSER's formatting with K = 1 (last-token pooling, one forward call);
- LaSER: K latent steps (1 prefill + K-1 one-position steps, released variant);
- rewrite-then-retrieve: the backbone writes a rationale (greedy, `--max-new-tokens`), then query + rationale goes
  through the explicit view. Generation runs at batch size 1, as the paper's vLLM rewriter effectively did per query.

LaSER and the plain retriever are timed in interleaved repeats (medians); the rewrite pipeline once per query (it
is orders of magnitude slower). The paper reports LaSER ≈ 1.7x the plain retriever and ≈ 0.3% of
rewrite-then-retrieve (A100, Qwen3-0.6B, ~1k-token rationales from a 7B rewriter).

Writes `results.json`, `results.md` and `latency.png` to `--output-dir`.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import torch
from transformers import AutoTokenizer

from hf_latent import default_backbone
from hf_latent.data import load_bright
from hf_latent.laser import LaserModel
from hf_latent.laser.rewrite import RewriteThenRetrieveEncoder


BRIGHT_INSTRUCTION = "Given a post, retrieve relevant passages that help answer the post."


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbone", default=None, help="causal LM (default: SmolLM2-135M-Instruct)")
    parser.add_argument("--num-queries", type=int, default=16)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--k", type=int, default=3, help="LaSER latent steps")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--max-new-tokens", type=int, default=128, help="rationale length of the rewriter")
    parser.add_argument("--query-max-length", type=int, default=512)
    parser.add_argument("--output-dir", default="results/bench_retrieval_latency")
    return parser.parse_args()


def time_encode(model, tokenizer, queries, batch_size, k, max_length) -> float:
    start = time.perf_counter()
    model.encode(
        queries,
        tokenizer,
        is_query=True,
        instruction=BRIGHT_INSTRUCTION,
        batch_size=batch_size,
        num_latent_steps=k,
        max_length=max_length,
    )
    return 1000 * (time.perf_counter() - start) / len(queries)


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = ["plain retriever (K=1)", f"LaSER (K={results['k']})", "rewrite-then-retrieve"]
    values = [results["plain_ms_per_query"], results["laser_ms_per_query"], results["rewrite_ms_per_query"]]
    fig, ax = plt.subplots(figsize=(7, 3.6))
    bars = ax.barh(names, values, color=["#8c8c8c", "#1f77b4", "#d62728"])
    ax.set_xscale("log")
    ax.set_xlabel("query latency, ms per query (log scale)")
    ax.set_title(f"{results['backbone_name']} on CPU, batch {results['batch_size']}")
    for bar, value in zip(bars, values):
        ax.text(value, bar.get_y() + bar.get_height() / 2, f" {value:,.1f} ms", va="center")
    ax.set_xlim(right=max(values) * 8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    args = parse_args()
    torch.manual_seed(0)
    torch.set_grad_enabled(False)
    backbone = args.backbone or default_backbone()
    tokenizer = AutoTokenizer.from_pretrained(backbone)
    model = LaserModel.from_backbone(backbone, num_latent_steps=args.k).eval()
    queries = load_bright("biology")["query"][: args.num_queries]

    time_encode(model, tokenizer, queries[: args.batch_size], args.batch_size, args.k, args.query_max_length)
    laser, plain = [], []
    for repeat in range(args.repeats):  # interleaved, alternating which goes first
        order = [(args.k, laser), (1, plain)] if repeat % 2 == 0 else [(1, plain), (args.k, laser)]
        for k, bucket in order:
            bucket.append(time_encode(model, tokenizer, queries, args.batch_size, k, args.query_max_length))

    rewriter = RewriteThenRetrieveEncoder(
        model, tokenizer, name="laser", instruction=BRIGHT_INSTRUCTION, max_new_tokens=args.max_new_tokens
    )
    start = time.perf_counter()
    rewriter.encode(queries, is_query=True, show_progress_bar=True)
    rewrite_ms = 1000 * (time.perf_counter() - start) / len(queries)

    results = {
        "backbone": str(backbone),
        "backbone_name": Path(str(backbone)).name,
        "device": "cpu",
        "threads": torch.get_num_threads(),
        "platform": platform.platform(),
        "num_queries": len(queries),
        "batch_size": args.batch_size,
        "k": args.k,
        "repeats": args.repeats,
        "plain_ms_per_query": statistics.median(plain),
        "laser_ms_per_query": statistics.median(laser),
        "rewrite_ms_per_query": rewrite_ms,
        "rewrite_generation_ms_per_query": statistics.mean(rewriter.timings.generation_ms),
        "rewrite_generated_tokens_mean": statistics.mean(rewriter.timings.generated_tokens),
        "forward_calls_per_batch": {"plain": 1, "laser": args.k, "rewrite": "1 + generated tokens + 1"},
        "plain_all_ms": plain,
        "laser_all_ms": laser,
    }
    results["laser_over_plain"] = results["laser_ms_per_query"] / results["plain_ms_per_query"]
    results["laser_over_rewrite"] = results["laser_ms_per_query"] / results["rewrite_ms_per_query"]

    output_dir = Path(args.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / "results.json").write_text(json.dumps(results, indent=2))
    table = "\n".join(
        [
            "| system | ms / query | vs plain | forward calls |",
            "|---|---|---|---|",
            f"| plain retriever (K=1) | {results['plain_ms_per_query']:.1f} | 1.00x | 1 per batch |",
            f"| LaSER (K={args.k}) | {results['laser_ms_per_query']:.1f} | {results['laser_over_plain']:.2f}x "
            f"| {args.k} per batch |",
            f"| rewrite-then-retrieve ({results['rewrite_generated_tokens_mean']:.0f} generated tokens) "
            f"| {rewrite_ms:.1f} | {rewrite_ms / results['plain_ms_per_query']:.1f}x | 1 per token + 2 per query |",
            "",
            f"LaSER costs {results['laser_over_plain']:.2f}x the plain retriever and "
            f"{100 * results['laser_over_rewrite']:.2f}% of rewrite-then-retrieve "
            f"({len(queries)} BRIGHT biology queries, batch {args.batch_size}, median of {args.repeats}).",
        ]
    )
    (output_dir / "results.md").write_text(table + "\n")
    plot(results, output_dir / "latency.png")
    print(table)


if __name__ == "__main__":
    main()
