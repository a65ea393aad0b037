"""Evaluate LatentRAG against naive RAG and explicit agentic RAG on HotpotQA-500 (specs/latentrag.md §10–§11).

Systems (all on the same frozen index, batch size 1, plain HF forward passes):

- `latentrag`: the trained LatentRAG model (`--model_path`), latent loop without latent decoding;
- `latentrag_decoding`: the same with the latents decoded into text after each episode (paper Table 2);
- `naive_rag`: retrieve once with the question, answer from the top-3 passages, with the **pretrained** generator
  (the LatentRAG checkpoint with its generator LoRA switched off);
- `explicit_agentic_rag`: Search-R1-style text agent; the SFT-trained baseline of `--explicit_model_path` (from
  `train_latentrag.py --train_explicit_baseline`), else prompt-based on the pretrained generator.

Writes `results.json` (summaries and per-question records), `results.md` and `latency_vs_em.png` into `--output_dir`
and prints the table and the latency ratio LatentRAG / explicit agentic RAG.

`--model_path untrained` evaluates an untrained model assembled from `--generator` and `--retriever` (plumbing
checks). `--corpus_scope questions` indexes only the passages shown with the evaluated questions (quick runs).

Example: `python examples/eval_latentrag.py --model_path outputs/latentrag --explicit_model_path
outputs/latentrag/explicit_baseline --max_questions 20 --output_dir outputs/latentrag/eval`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path


os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

import torch  # noqa: E402
from transformers import AutoModel, HfArgumentParser  # noqa: E402

from hf_latent.data import load_demo_corpus, load_hotpotqa, load_ircot_hotpotqa  # noqa: E402
from hf_latent.latentrag import ExplicitAgenticRAG, LatentRAGModel, NaiveRAG, run_latentrag  # noqa: E402
from hf_latent.latentrag.evaluation_latentrag import (  # noqa: E402
    evaluate_system,
    latency_ratio,
    results_table,
    write_results,
)
from hf_latent.latentrag.inference import CorpusLookup  # noqa: E402
from hf_latent.latentrag.modeling_latentrag import lora_disabled  # noqa: E402
from hf_latent.retrieval import DenseIndex  # noqa: E402


logger = logging.getLogger("eval_latentrag")

DATASETS = {"hotpotqa": load_hotpotqa, "demo": load_demo_corpus, "ircot": load_ircot_hotpotqa}
ALL_SYSTEMS = ("latentrag", "latentrag_decoding", "naive_rag", "explicit_agentic_rag")


@dataclass
class EvalArguments:
    model_path: str = field(
        metadata={"help": "Trained LatentRAG folder (train_latentrag.py output), or 'untrained' (random projectors)."}
    )
    explicit_model_path: str | None = field(
        default=None,
        metadata={"help": "SFT-trained explicit baseline (train_latentrag.py --train_explicit_baseline output)."},
    )
    generator: str = field(default="default", metadata={"help": "Generator of an 'untrained' model."})
    retriever: str = field(default="default", metadata={"help": "Retriever of an 'untrained' model."})
    dataset: str = field(
        default="hotpotqa", metadata={"help": "'hotpotqa', 'demo' or 'ircot'.", "choices": sorted(DATASETS)}
    )
    split: str = field(default="test", metadata={"help": "Question split (HotpotQA-500 test: 100 questions)."})
    max_questions: int | None = field(default=None, metadata={"help": "Evaluate only the first N questions."})
    corpus_scope: str = field(
        default="full",
        metadata={
            "help": "'full' corpus, or 'questions': only the passages shown with the evaluated questions.",
            "choices": ["full", "questions"],
        },
    )
    index_path: str | None = field(
        default=None,
        metadata={"help": "A saved DenseIndex; default: <model_path>/index when it covers the corpus, else built."},
    )
    systems: str = field(default=",".join(ALL_SYSTEMS), metadata={"help": "Comma-separated systems to run."})
    max_answer_tokens: int | None = field(default=None, metadata={"help": "Answer token cap (default: config's)."})
    max_step_tokens: int = field(default=500, metadata={"help": "Explicit baseline: tokens per turn at most."})
    max_decoding_tokens: int | None = field(default=None, metadata={"help": "Latent decoding token cap."})
    warmup_questions: int = field(default=1, metadata={"help": "Untimed warm-up questions per system."})
    output_dir: str = field(default="outputs/latentrag_eval", metadata={"help": "Where the results are written."})
    num_threads: int | None = field(default=None, metadata={"help": "torch.set_num_threads (CPU runs)."})


def load_model(path: str, generator: str, retriever: str, **overrides) -> LatentRAGModel:
    if path in ("untrained", "none"):
        return LatentRAGModel.from_components(generator=generator, retriever=retriever, **overrides)
    model = AutoModel.from_pretrained(path)
    for key, value in overrides.items():
        setattr(model.config, key, value)
    return model.eval()


def load_or_build_index(model: LatentRAGModel, corpus: CorpusLookup, args: EvalArguments) -> DenseIndex:
    candidates = [args.index_path] if args.index_path else []
    if args.model_path not in ("untrained", "none"):
        candidates.append(str(Path(args.model_path) / "index"))
    for path in candidates:
        if path and Path(path).is_dir():
            index = DenseIndex.load(path)
            if set(index.doc_ids) == set(corpus) and index.encoder_name == model.retriever_name:
                logger.info("Loaded the index from %s (%d documents).", path, len(index))
                return index
            logger.info("The index at %s does not match the corpus; building a new one.", path)
    return model.build_index(corpus, batch_size=64)


def with_generator_adapter_off(model: LatentRAGModel, system: Callable) -> Callable:
    """Run `system` with the generator's LoRA disabled: the pretrained generator (for the text baselines)."""

    def run(question: str):
        with lora_disabled(model.generator):
            return system(question)

    return run


def main(argv: list[str] | None = None) -> dict:
    (args,) = HfArgumentParser(EvalArguments).parse_args_into_dataclasses(args=argv)
    logging.basicConfig(
        format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO, stream=sys.stdout
    )
    if args.num_threads:
        torch.set_num_threads(args.num_threads)
    systems = [name.strip() for name in args.systems.split(",") if name.strip()]
    unknown = set(systems) - set(ALL_SYSTEMS)
    if unknown:
        raise ValueError(f"Unknown systems {sorted(unknown)}; choose from {ALL_SYSTEMS}.")
    torch.manual_seed(0)

    qa = DATASETS[args.dataset]()
    questions = qa.split(args.split)
    if args.max_questions is not None:
        questions = questions.select(range(min(args.max_questions, len(questions))))
    rows = list(questions)
    if args.corpus_scope == "questions":
        passages = qa.passages_by_id()
        wanted = {pid for row in rows for pid in [*row["supporting_ids"], *(row.get("negative_ids") or [])]}
        corpus = CorpusLookup({pid: passages[pid] for pid in sorted(wanted)})
    else:
        corpus = CorpusLookup(qa.corpus)

    overrides = {}
    if args.max_answer_tokens is not None:
        overrides["max_answer_tokens"] = args.max_answer_tokens
    if args.max_decoding_tokens is not None:
        overrides["max_decoding_tokens"] = args.max_decoding_tokens
    model = load_model(args.model_path, args.generator, args.retriever, **overrides)
    index = load_or_build_index(model, corpus, args)

    explicit_model = None
    if args.explicit_model_path and "explicit_agentic_rag" in systems:
        explicit_model = load_model(args.explicit_model_path, args.generator, args.retriever, **overrides)
    callables: dict[str, Callable] = {}
    if "latentrag" in systems:
        callables["latentrag"] = lambda q: run_latentrag(model, q, index, corpus, check=False)
    if "latentrag_decoding" in systems:
        if model.thought_decoding_projector is None:
            logger.warning("The model has no decoding projectors (no_decoding variant): skipping latentrag_decoding.")
        else:
            callables["latentrag_decoding"] = lambda q: run_latentrag(
                model, q, index, corpus, check=False, decode_latents=True
            )
    if "naive_rag" in systems:
        callables["naive_rag"] = with_generator_adapter_off(model, NaiveRAG(model, index, corpus))
    if "explicit_agentic_rag" in systems:
        if explicit_model is not None:
            callables["explicit_agentic_rag"] = ExplicitAgenticRAG(
                explicit_model, index, corpus, max_step_tokens=args.max_step_tokens
            )
        else:
            logger.info("No --explicit_model_path: the explicit baseline is prompt-based on the pretrained generator.")
            callables["explicit_agentic_rag"] = with_generator_adapter_off(
                model, ExplicitAgenticRAG(model, index, corpus, max_step_tokens=args.max_step_tokens)
            )

    results = []
    for name, system in callables.items():
        for row in rows[: args.warmup_questions]:  # first-call overheads stay out of the timings
            with contextlib.suppress(Exception):
                system(row["question"])
        result = evaluate_system(system, rows, corpus, name=name)
        logger.info(
            "%s: EM %.3f F1 %.3f retrieval success %.3f mean latency %.0f ms, %.1f passes",
            name,
            result["exact_match"],
            result["f1"],
            result["retrieval_success_rate"],
            result["mean_latency_ms"],
            result["mean_forward_passes"],
        )
        results.append(result)

    metadata = {
        "model_path": args.model_path,
        "explicit_model_path": args.explicit_model_path,
        "dataset": qa.name,
        "split": args.split,
        "num_questions": len(rows),
        "corpus_size": len(corpus),
        "retriever": model.retriever_name,
        "torch_threads": torch.get_num_threads(),
    }
    names = {result["system"] for result in results}
    if {"latentrag", "explicit_agentic_rag"} <= names:
        metadata["latency_ratio_latentrag_over_explicit"] = latency_ratio(results, "latentrag", "explicit_agentic_rag")
    if {"latentrag_decoding", "explicit_agentic_rag"} <= names:
        metadata["latency_ratio_latentrag_decoding_over_explicit"] = latency_ratio(
            results, "latentrag_decoding", "explicit_agentic_rag"
        )
    paths = write_results(results, args.output_dir, metadata=metadata)
    print(results_table(results))
    for key in ("latency_ratio_latentrag_over_explicit", "latency_ratio_latentrag_decoding_over_explicit"):
        if key in metadata:
            print(f"{key}: {metadata[key]:.3f}")
    print(json.dumps({key: str(path) for key, path in paths.items()}))
    return {"results": results, "metadata": metadata, "paths": paths}


if __name__ == "__main__":
    main()
