"""Query-encoding latency of LaSER (K latent steps) vs plain last-token pooling (K = 1), specs/laser.md §10.

The paper reports ms per query at batch 8 on 80 BRIGHT queries (LaSER ≈ 1.7x the base retriever at 0.6B). This
script measures the same quantity side by side on one backbone: the same queries, batch size and formatting, with
the two settings interleaved in every repeat (after a warmup), and reports medians. Two timings are taken:

- `encode`: `LaserModel.encode` end to end (formatting, tokenisation, length sorting, padding, forward passes);
- `forward`: the model forward passes only, on the same pre-tokenised, left-padded batches, timed batch by batch
  with the two settings back to back (paired), which keeps the ratio meaningful on a shared, noisy machine.

Usage:

    python benchmarks/bench_laser_latency.py                       # SmolLM2-135M-Instruct, batch 8, 64 queries, K=3
    python benchmarks/bench_laser_latency.py --backbone Alibaba-NLP/LaSER-Qwen3-0.6B --dtype float16 --device cuda

Writes `results.json` and `results.md` to `--output-dir` and prints the Markdown table.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import statistics
import time
from pathlib import Path

import torch
import transformers
from transformers import AutoTokenizer

from hf_latent.laser import LaserModel, pad_left, tokenize_latent_texts
from hf_latent.laser.modeling_laser import _decoder


BRIGHT_QUERIES = Path(__file__).resolve().parents[2] / "shared" / "data" / "bright" / "biology.jsonl.gz"
# specs/laser.md §8: the instruction the released BRIGHT evaluation actually used for every subset.
BRIGHT_INSTRUCTION = "Given a post, retrieve relevant passages that help answer the post."
FALLBACK_QUERIES = [
    "Why are insects attracted to artificial light at night?",
    "How do plants know which direction is up when they germinate in the dark?",
    "What causes the human body to shiver when it is cold?",
    "Why do some people sneeze when they look at bright sunlight?",
    "How do migratory birds navigate across thousands of kilometres?",
    "Why does cutting onions make your eyes water?",
    "How can a single fertilised cell give rise to hundreds of different cell types?",
    "Why do we get goosebumps, and did they serve a purpose in our ancestors?",
    "What determines the lifespan of different animal species?",
    "How do tardigrades survive extreme dehydration and radiation?",
    "Why do muscles feel sore a day or two after intense exercise?",
    "Is it true that humans only use ten percent of their brains?",
    "How do octopuses change colour so quickly without colour receptors?",
    "Why do bananas ripen faster when placed next to apples?",
    "What makes some mushrooms glow in the dark?",
    "How does caffeine keep people awake?",
]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backbone", default=None, help="Causal-LM name or path (default: hf_latent's SmolLM2).")
    parser.add_argument("--batch-size", type=int, default=8, help="Queries per forward pass (paper: 8).")
    parser.add_argument("--num-queries", type=int, default=64, help="Number of queries encoded per repeat.")
    parser.add_argument("--k", type=int, default=3, help="LaSER latent steps K, compared with K = 1.")
    parser.add_argument("--latent-variant", default="released", choices=["released", "paper"])
    parser.add_argument("--repeats", type=int, default=5, help="Timed repeats per setting (interleaved).")
    parser.add_argument("--warmup", type=int, default=1, help="Untimed warmup runs per setting.")
    parser.add_argument("--max-length", type=int, default=8192, help="Query max length in tokens (eval: 8192).")
    parser.add_argument("--dtype", default="float32", choices=["float32", "float16", "bfloat16"])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--attn-implementation", default=None, help="e.g. eager or sdpa (default: the model's).")
    parser.add_argument("--output-dir", default="results/bench_laser_latency")
    args = parser.parse_args(argv)
    if args.k < 1 or args.batch_size < 1 or args.num_queries < 1 or args.repeats < 1:
        parser.error("--k, --batch-size, --num-queries and --repeats must be >= 1.")
    return args


def load_queries(num_queries: int) -> tuple[list[str], str]:
    """BRIGHT biology queries if the shared data is present (cycled to `num_queries`), else a built-in list."""
    if BRIGHT_QUERIES.is_file():
        with gzip.open(BRIGHT_QUERIES, "rt", encoding="utf-8") as handle:
            queries, source = [json.loads(line)["query"] for line in handle], str(BRIGHT_QUERIES)
    else:
        queries, source = FALLBACK_QUERIES, "built-in list"
    return [queries[i % len(queries)] for i in range(num_queries)], source


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    backbone = args.backbone
    if backbone is None:
        from hf_latent.resources import default_backbone

        backbone = default_backbone()
    load_kwargs = {"dtype": getattr(torch, args.dtype)}
    if args.attn_implementation:
        load_kwargs["attn_implementation"] = args.attn_implementation
    model = LaserModel.from_backbone(backbone, latent_variant=args.latent_variant, **load_kwargs)
    model = model.to(args.device).eval()
    tokenizer = AutoTokenizer.from_pretrained(backbone)
    queries, source = load_queries(args.num_queries)
    encode_kwargs = {
        "is_query": True,
        "instruction": BRIGHT_INSTRUCTION,
        "batch_size": args.batch_size,
        "max_length": args.max_length,
    }

    # Pre-tokenised batches for the forward-only timing, sorted by length as `encode` does.
    ids = tokenize_latent_texts(
        tokenizer,
        queries,
        is_query=True,
        instruction=BRIGHT_INSTRUCTION,
        max_length=args.max_length,
        config=model.config,
    )
    order = sorted(range(len(ids)), key=lambda index: -len(ids[index]))
    pad_token_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    batches = [
        pad_left([ids[index] for index in order[start : start + args.batch_size]], pad_token_id).to(args.device)
        for start in range(0, len(order), args.batch_size)
    ]

    calls: list[int] = []
    hook = _decoder(model.backbone).register_forward_hook(lambda *_: calls.append(1))
    settings = {f"LaSER K={args.k}": args.k, "last-token K=1": 1}

    def timed(function) -> tuple[float, int]:
        calls.clear()
        _sync(args.device)
        start = time.perf_counter()
        with torch.no_grad():
            function()
        _sync(args.device)
        return time.perf_counter() - start, len(calls)

    def encode(k: int) -> None:
        model.encode(queries, tokenizer, num_latent_steps=k, **encode_kwargs)

    for _ in range(args.warmup):
        for k in settings.values():
            timed(lambda k=k: encode(k))
    # `encode`: whole calls. `forward`: batch by batch, the two settings back to back on the same batch, so that load
    # from other processes hits both alike (paired). The order alternates to cancel any first/second-run bias.
    encode_seconds = {name: [] for name in settings}
    batch_seconds = {name: [[] for _ in batches] for name in settings}
    paired_ratios, forward_calls = [], {}
    first, second = list(settings)
    for repeat in range(args.repeats):
        names = list(settings) if repeat % 2 == 0 else list(reversed(settings))
        for name in names:
            encode_seconds[name].append(timed(lambda name=name: encode(settings[name]))[0])
        for index, batch in enumerate(batches):
            pair = {}
            for name in names if index % 2 == 0 else reversed(names):
                seconds, num_calls = timed(lambda: model(**batch, num_latent_steps=settings[name]))
                batch_seconds[name][index].append(seconds)
                forward_calls[name], pair[name] = num_calls, seconds
            paired_ratios.append(pair[first] / pair[second])
    hook.remove()

    rows = []
    forward_ms = {
        name: 1000 * sum(statistics.median(times) for times in batch_seconds[name]) / len(queries) for name in settings
    }
    # Sum over batches of each batch's fastest run: the least disturbed estimate on a shared machine (as `timeit`).
    forward_ms_min = {
        name: 1000 * sum(min(times) for times in batch_seconds[name]) / len(queries) for name in settings
    }
    for name, k in settings.items():
        rows.append(
            {
                "setting": name,
                "num_latent_steps": k,
                "forward_calls_per_batch": forward_calls[name],
                "encode_ms_per_query_median": 1000 * statistics.median(encode_seconds[name]) / len(queries),
                "encode_ms_per_query_min": 1000 * min(encode_seconds[name]) / len(queries),
                "encode_ratio_vs_k1": statistics.median(encode_seconds[name])
                / statistics.median(encode_seconds[second]),
                "encode_seconds_all": encode_seconds[name],
                "forward_ms_per_query_median": forward_ms[name],
                "forward_ratio_vs_k1": forward_ms[name] / forward_ms[second],
                "forward_ms_per_query_min": forward_ms_min[name],
                "forward_ratio_vs_k1_min": forward_ms_min[name] / forward_ms_min[second],
                "forward_batch_seconds_all": batch_seconds[name],
            }
        )

    result = {
        "backbone": str(backbone),
        "latent_variant": args.latent_variant,
        "device": args.device,
        "device_name": torch.cuda.get_device_name() if args.device.startswith("cuda") else platform.processor(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "dtype": args.dtype,
        "attn_implementation": model.backbone.config._attn_implementation,
        "batch_size": args.batch_size,
        "num_queries": len(queries),
        "num_batches": len(batches),
        "query_source": source,
        "instruction": BRIGHT_INSTRUCTION,
        "mean_prompt_tokens": sum(len(row) for row in ids) / len(queries),
        "repeats": args.repeats,
        "warmup": args.warmup,
        "paired_forward_ratio_median": statistics.median(paired_ratios),
        "torch_version": torch.__version__,
        "transformers_version": transformers.__version__,
        "results": rows,
    }
    table = markdown_table(result)
    output_dir = Path(args.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / "results.json").write_text(json.dumps(result, indent=2) + "\n")
    (output_dir / "results.md").write_text(table + "\n")
    print(table)
    return result


def markdown_table(result: dict) -> str:
    lines = [
        f"LaSER query-encoding latency: `{Path(result['backbone']).name}`, {result['device']} ({result['dtype']}, "
        f"{result['attn_implementation']}, {result['torch_threads']} threads), batch {result['batch_size']}, "
        f"{result['num_queries']} queries ({result['mean_prompt_tokens']:.0f} prompt tokens on average), median of "
        f"{result['repeats']} interleaved repeats. Median of the per-batch paired forward ratios: "
        f"{result['paired_forward_ratio_median']:.2f}x.",
        "",
        "| Setting | K | Forward calls / batch | encode ms/query | encode ratio | forward ms/query | forward ratio "
        "| forward ms/query (min) | forward ratio (min) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in result["results"]:
        lines.append(
            f"| {row['setting']} | {row['num_latent_steps']} | {row['forward_calls_per_batch']:g} | "
            f"{row['encode_ms_per_query_median']:.1f} | {row['encode_ratio_vs_k1']:.2f}x | "
            f"{row['forward_ms_per_query_median']:.1f} | {row['forward_ratio_vs_k1']:.2f}x | "
            f"{row['forward_ms_per_query_min']:.1f} | {row['forward_ratio_vs_k1_min']:.2f}x |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
