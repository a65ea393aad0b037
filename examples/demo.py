"""The README's main job: LaSER retrieval and LatentRAG answering on the shipped demo corpus, offline.

Runs on the default models (SmolLM2-135M-Instruct as backbone/generator, all-MiniLM-L6-v2 as retriever):

1. retrieval on the 24 two-hop demo questions over 48 passages with MiniLM, the plain last-token retriever on
   SmolLM2 (LaSER's K = 1) and LaSER with K = 3 latent thinking steps, untrained and after a short LaSER LoRA
   training on the demo train split (`--laser-train-steps 0` skips it);
2. one demo question through LatentRAG (untrained: its projectors are random, so expect a poor answer; train
   with `examples/train_latentrag.py`), naive RAG and explicit agentic RAG, with their traces and stage timings.

Usage: `python examples/demo.py [--laser-train-steps 30] [--output-dir outputs/demo]`.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import torch
from transformers import AutoTokenizer

from hf_latent import default_backbone, default_retriever
from hf_latent.data import load_demo_corpus
from hf_latent.evaluation.retrieval_eval import evaluate_retrieval, reports_to_markdown
from hf_latent.evaluation.retrieval_tasks import RetrievalTask
from hf_latent.laser import LaserModel
from hf_latent.latentrag import ExplicitAgenticRAG, LatentRAGModel, NaiveRAG, run_latentrag
from hf_latent.retrieval import CallableEncoder, HFEncoder


DEMO_INSTRUCTION = "Given a multi-hop question, retrieve passages that help answer the question."


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--laser-train-steps", type=int, default=30, help="LaSER LoRA steps on the demo train split")
    parser.add_argument("--question-index", type=int, default=0, help="demo question for the LatentRAG part")
    parser.add_argument("--output-dir", default="outputs/demo", help="where the JSON summary is written")
    return parser.parse_args()


def demo_task(split: str | None = None) -> RetrievalTask:
    demo = load_demo_corpus()
    questions = demo.questions if split is None else demo.split(split)
    return RetrievalTask(
        name=f"demo-{split or 'all'}",
        query_ids=list(questions["id"]),
        queries=list(questions["question"]),
        reasonings=list(questions["reasoning"]),
        corpus=demo.corpus,
        qrels={row["id"]: dict.fromkeys(row["supporting_ids"], 1) for row in questions},
        instruction=DEMO_INSTRUCTION,
    )


def laser_encoder(model: LaserModel, tokenizer, name: str, num_latent_steps: int | None = None) -> CallableEncoder:
    """LaSER's `encode` as a retrieval encoder; `num_latent_steps=1` is the plain last-token retriever with the
    exact same formatting, so K is the only difference."""

    def encode(texts, is_query=False):
        instruction = DEMO_INSTRUCTION if is_query else None
        return model.encode(
            texts,
            tokenizer,
            is_query=is_query,
            instruction=instruction,
            batch_size=8,
            num_latent_steps=num_latent_steps,
        )

    return CallableEncoder(name, model.config.backbone_config.hidden_size, encode)


def train_laser(model: LaserModel, tokenizer, steps: int, output_dir: Path) -> LaserModel:
    """A short LoRA run of the full LaSER objective on the demo train split."""
    from peft import LoraConfig

    from hf_latent.laser import LaserTrainer, LaserTrainingArguments, laser_rows_from_multihop

    rows = laser_rows_from_multihop(load_demo_corpus(), split="train", instruction=DEMO_INSTRUCTION)
    args = LaserTrainingArguments(
        output_dir=str(output_dir / "laser"),
        max_steps=steps,
        per_device_train_batch_size=4,
        learning_rate=2e-4,
        logging_steps=max(1, steps // 5),
        save_strategy="no",
        use_cpu=True,
        seed=0,
        disable_tqdm=True,
    )
    lora = LoraConfig(r=16, lora_alpha=32, lora_dropout=0.0, target_modules="all-linear")
    trainer = LaserTrainer(model=model, args=args, train_dataset=rows, processing_class=tokenizer, peft_config=lora)
    trainer.train()
    for entry in trainer.state.log_history:
        if "loss" in entry:
            terms = {k: round(v, 4) for k, v in entry.items() if k not in {"epoch", "grad_norm", "learning_rate"}}
            print(f"  step {entry['step']:>3}: {terms}")
    return trainer.model.eval()


def main() -> None:
    args = parse_args()
    logging.basicConfig(level=logging.WARNING)
    torch.manual_seed(0)
    output_dir = Path(args.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    summary: dict = {}

    print("== Default models")
    start = time.perf_counter()
    backbone_path, retriever_path = default_backbone(), default_retriever()
    print(f"backbone : {backbone_path}  ({time.perf_counter() - start:.1f} s to resolve)")
    print(f"retriever: {retriever_path}")

    print(
        "\n== 1. Retrieval on the demo corpus (24 two-hop questions, 48 passages; both supporting passages relevant)"
    )
    task = demo_task()
    tokenizer = AutoTokenizer.from_pretrained(backbone_path)
    laser = LaserModel.from_backbone(backbone_path, num_latent_steps=3)
    params = sum(p.numel() for p in laser.parameters()) / 1e6
    print(f"LaSER on {laser.config.backbone_config.model_type}, {params:.0f}M parameters, K = 3 latent steps")
    encoders = [
        HFEncoder.from_pretrained(retriever_path),
        laser_encoder(laser, tokenizer, "SmolLM2 last-token (K=1)", num_latent_steps=1),
        laser_encoder(laser, tokenizer, "LaSER untrained (K=3)"),
    ]
    reports = [evaluate_retrieval(enc, task, k_values=(1, 3, 10), show_progress_bar=False)[0] for enc in encoders]

    if args.laser_train_steps > 0:
        print(f"\nTraining LaSER (LoRA, full objective) for {args.laser_train_steps} steps on the demo train split...")
        trained = train_laser(laser, tokenizer, args.laser_train_steps, output_dir)
        test_task = demo_task("test")
        for encoder in (encoders[0], encoders[1], laser_encoder(trained, tokenizer, "LaSER trained (K=3)")):
            reports.append(evaluate_retrieval(encoder, test_task, k_values=(1, 3, 10), show_progress_bar=False)[0])
    table = reports_to_markdown(reports, metric_names=("ndcg@10", "recall@3", "recall@10"))
    print(table)
    summary["retrieval"] = [report.to_dict() for report in reports]

    print("\n== 2. LatentRAG, naive RAG and explicit agentic RAG on one demo question (untrained LatentRAG)")
    demo = load_demo_corpus()
    row = demo.questions[args.question_index]
    model = LatentRAGModel.from_components(backbone_path, retriever_path)
    index = model.build_index(demo.corpus, show_progress_bar=False)
    print(f"Q: {row['question']}  (gold: {row['answers'][0]})")
    systems = {
        "LatentRAG": lambda q: run_latentrag(model, q, index, demo.corpus, decode_latents=True),
        "naive RAG": NaiveRAG(model, index, demo.corpus),
        "explicit agentic RAG": ExplicitAgenticRAG(model, index, demo.corpus, max_step_tokens=96),
    }
    summary["rag"] = {}
    for name, system in systems.items():
        result = system(row["question"])
        trace = result.trace
        stages = ", ".join(f"{stage} {ms:.0f}" for stage, ms in trace.stage_ms.items())
        print(f"\n[{name}] answer: {result.answer!r}")
        print(f"  retrievals: {trace.num_retrievals} -> {trace.retrieved_ids}")
        print(f"  LLM forward passes: {trace.num_forward_passes}; total {trace.total_ms:.0f} ms ({stages} ms)")
        if trace.decoded_subqueries:
            print(f"  decoded latent sub-queries: {trace.decoded_subqueries}")
        summary["rag"][name] = {"answer": result.answer, **trace.to_dict()}

    (output_dir / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    print(f"\nSummary written to {output_dir / 'summary.json'}")


if __name__ == "__main__":
    main()
