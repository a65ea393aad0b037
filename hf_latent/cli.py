"""`hf-latent`: the command line of hf_latent (entry point `hf_latent.cli:main`; also `python -m hf_latent.cli`).

Subcommands (each has `--help`):

| Command | Does |
|---|---|
| `train-laser ARGS` | runs `examples/train_laser.py` with ARGS (its own flags: `hf-latent train-laser --help`) |
| `train-latentrag ARGS` | runs `examples/train_latentrag.py` with ARGS |
| `evaluate` | retrieval evaluation of an encoder on a task (nDCG, recall, MRR, MAP, query latency) |
| `index` | encodes a corpus into a saved `DenseIndex` |
| `answer` | answers questions with a LatentRAG checkpoint over a corpus (answer + trace JSON) |
| `card` | writes the model card (`README.md`) of a LaSER or LatentRAG checkpoint |
| `push` | uploads a checkpoint folder to the Hub (`hf_latent.hub.push_checkpoint`) |

**Training commands.** The training recipes live in the repository's `examples/` scripts, not in the package; the
CLI runs their `main(argv)` with the remaining arguments, so the flags are exactly the scripts' own. The scripts are
looked up in `$HF_LATENT_EXAMPLES_DIR`, then in `examples/` next to the package (a source checkout or editable
install), then in `./examples`; a pip-installed wheel without the checkout reports where it looked.

**Encoders** (`--encoder`): `minilm` (all-MiniLM-L6-v2, offline copy), `hf:<name or path>` (any `transformers`
encoder through `HFEncoder`, pooling from its sentence-transformers config), `laser:<name or path>` (a LaSER
checkpoint; queries get the task instruction) and, for `index`, `latentrag:<name or path>` (a LatentRAG checkpoint's
frozen reference retriever, i.e. the index that `answer` needs).

**Corpora** (`--corpus`): a `.jsonl` / `.jsonl.gz` file of `{"id", "title", "text"}` rows, a `.json` file (a list of
rows, a mapping id -> `{"title", "text"}`, or `{"passages": [...]}` as in the demo corpus), a folder saved with
`datasets.Dataset.save_to_disk`, or a folder holding `corpus.jsonl`.

**Tasks** (`--task`): a name for `hf_latent.evaluation.retrieval_tasks.load_retrieval_task` (`hotpotqa`,
`hotpotqa-dev-second_hop`, `bright-se-proxy`, `bright/<task>`, ...), or a folder with `corpus.jsonl` and
`queries.jsonl`, whose rows are `{"id", "query", "relevant_ids": [...] or "qrels": {doc_id: relevance}}` (optional
`"excluded_ids"`, `"reasoning"`), plus an optional `task.json` `{"name", "instruction"}`.
"""

from __future__ import annotations

import argparse
import importlib.util
import inspect
import json
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any


logger = logging.getLogger("hf_latent.cli")

TRAIN_SCRIPTS = {"train-laser": "train_laser.py", "train-latentrag": "train_latentrag.py"}
ENCODER_HELP = "minilm, hf:<path>, laser:<path> or latentrag:<path> (see `hf-latent --help`)"


class CLIError(Exception):
    """A user error: printed as `hf-latent <command>: error: ...` with exit status 2."""


# ------------------------------------------------------------------------------------------------- helpers


def examples_dir_candidates() -> list[Path]:
    """Where the training scripts are looked up, in order."""
    candidates = []
    if os.environ.get("HF_LATENT_EXAMPLES_DIR"):
        candidates.append(Path(os.environ["HF_LATENT_EXAMPLES_DIR"]).expanduser())
    candidates.append(Path(__file__).resolve().parent.parent / "examples")
    candidates.append(Path.cwd() / "examples")
    return list(dict.fromkeys(candidates))


def find_example_script(filename: str) -> Path | None:
    """The first `examples/<filename>` found (see [`examples_dir_candidates`]), or `None`."""
    for folder in examples_dir_candidates():
        if (folder / filename).is_file():
            return folder / filename
    return None


def run_example_script(path: Path, argv: Sequence[str]) -> Any:
    """Import the script at `path` as a module and call its `main(argv)` (or `main()` with `sys.argv` set)."""
    spec = importlib.util.spec_from_file_location(f"hf_latent_example_{path.stem}", path)
    if spec is None or spec.loader is None:
        raise CLIError(f"Cannot import {path}.")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses (HfArgumentParser fields) look their module up there
    saved = sys.argv
    try:
        spec.loader.exec_module(module)
        main = getattr(module, "main", None)
        if main is None:
            raise CLIError(f"{path} has no main() function.")
        if inspect.signature(main).parameters:
            return main(list(argv))
        sys.argv = [str(path), *argv]
        return main()
    finally:
        sys.argv = saved
        sys.modules.pop(spec.name, None)


def _normalize_rows(rows: Any, source: str) -> dict[str, dict[str, str]]:
    corpus: dict[str, dict[str, str]] = {}
    for number, row in enumerate(rows, start=1):
        if not isinstance(row, dict) or "text" not in row or "id" not in row:
            raise CLIError(f"{source}: row {number} needs 'id' and 'text' fields.")
        doc_id = str(row["id"])
        if doc_id in corpus:
            raise CLIError(f"{source}: duplicate document id {doc_id!r}.")
        corpus[doc_id] = {"id": doc_id, "title": str(row.get("title") or ""), "text": str(row["text"])}
    if not corpus:
        raise CLIError(f"{source}: the corpus is empty.")
    return corpus


def load_corpus(path: str | os.PathLike) -> dict[str, dict[str, str]]:
    """Read a corpus (see the module docstring) into an ordered mapping id -> `{"id", "title", "text"}`."""
    path = Path(path)
    if path.is_dir() and (path / "corpus.jsonl").is_file():
        path = path / "corpus.jsonl"
    if path.is_dir():
        from datasets import load_from_disk

        return _normalize_rows(load_from_disk(str(path)), str(path))
    if not path.is_file():
        raise CLIError(f"Corpus not found: {path}")
    if path.name.endswith((".jsonl", ".jsonl.gz")):
        from .data.jsonl import read_jsonl

        return _normalize_rows((row for _, row in read_jsonl(path, required=("id", "text"))), str(path))
    data = json.loads(path.read_text(encoding="utf-8"))
    if isinstance(data, dict) and isinstance(data.get("passages"), list):
        data = data["passages"]
    elif isinstance(data, dict):
        data = [{"id": key, **value} for key, value in data.items()]
    return _normalize_rows(data, str(path))


def document_texts(corpus: dict[str, dict[str, str]]) -> list[str]:
    """`"{title}\\n{text}"` (or the text alone), as `RetrievalTask.document_texts` encodes documents."""
    return [f"{row['title']}\n{row['text']}" if row["title"] else row["text"] for row in corpus.values()]


def load_task(name_or_path: str, max_queries: int | None = None):
    """A `RetrievalTask` from a task name or a task folder (see the module docstring)."""
    from .evaluation.retrieval_tasks import RetrievalTask, load_retrieval_task

    folder = Path(name_or_path)
    if not folder.is_dir():
        try:
            task = load_retrieval_task(name_or_path)
        except ValueError as error:
            raise CLIError(str(error)) from error
        return task.subset(max_queries)
    from datasets import Dataset

    from .data.jsonl import read_jsonl

    if not (folder / "queries.jsonl").is_file():
        raise CLIError(f"Task folder {folder} needs queries.jsonl and corpus.jsonl.")
    corpus = load_corpus(folder)
    meta = json.loads((folder / "task.json").read_text(encoding="utf-8")) if (folder / "task.json").is_file() else {}
    query_ids, queries, reasonings, qrels, excluded = [], [], [], {}, {}
    for _, row in read_jsonl(folder / "queries.jsonl", required=("id",)):
        qid = str(row["id"])
        text = row.get("query", row.get("text"))
        if not isinstance(text, str):
            raise CLIError(f"{folder / 'queries.jsonl'}: query {qid!r} needs a 'query' string.")
        relevant = row.get("qrels") or {str(doc): 1 for doc in row.get("relevant_ids") or []}
        query_ids.append(qid)
        queries.append(text)
        reasonings.append(str(row.get("reasoning") or ""))
        qrels[qid] = {str(doc): int(rel) for doc, rel in relevant.items()}
        if row.get("excluded_ids"):
            excluded[qid] = [str(doc) for doc in row["excluded_ids"]]
    kwargs = {"instruction": meta["instruction"]} if meta.get("instruction") else {}
    task = RetrievalTask(
        name=meta.get("name") or folder.name,
        query_ids=query_ids,
        queries=queries,
        reasonings=reasonings,
        corpus=Dataset.from_list(list(corpus.values())),
        qrels=qrels,
        excluded_ids=excluded,
        **kwargs,
    )
    return task.subset(max_queries)


def load_encoder(spec: str, instruction: str | None = None, num_latent_steps: int | None = None):
    """A retrieval encoder (`name`, `embedding_dim`, `encode`) from an encoder spec (see the module docstring).

    Returns:
        `(encoder, model)`: `model` is the `LatentRAGModel` for `latentrag:` specs, else `None`.
    """
    from .retrieval import CallableEncoder, HFEncoder, canonical_model_id

    kind, _, target = spec.partition(":")
    if spec == "minilm":
        from .resources import default_retriever

        return HFEncoder.from_pretrained(default_retriever(), pooling="mean"), None
    if not target:
        raise CLIError(f"Unknown encoder {spec!r}; use {ENCODER_HELP}.")
    if kind == "hf":
        return HFEncoder.from_pretrained(target), None
    if kind == "laser":
        from transformers import AutoTokenizer

        from .laser import LaserEncoder, LaserModel

        model = LaserModel.from_pretrained(target).eval()
        tokenizer = AutoTokenizer.from_pretrained(target)
        name = f"laser:{canonical_model_id(target)}" + (f":K{num_latent_steps}" if num_latent_steps else "")
        return LaserEncoder(model, tokenizer, name, instruction, num_latent_steps), None
    if kind == "latentrag":
        from .latentrag import LatentRAGModel

        model = LatentRAGModel.from_pretrained(target)

        def encode_latentrag(texts: list[str], is_query: bool = False):
            if is_query:
                return model.encode_text_queries(texts, reference=True)
            return model.encode_documents(texts, batch_size=len(texts))

        return CallableEncoder(model.retriever_name, model.retrieval_dim, encode_latentrag), model
    raise CLIError(f"Unknown encoder {spec!r}; use {ENCODER_HELP}.")


def _write_json(payload: Any, output: str | None) -> None:
    text = json.dumps(payload, indent=2, ensure_ascii=False, default=str)
    if output:
        Path(output).parent.mkdir(parents=True, exist_ok=True)
        Path(output).write_text(text + "\n", encoding="utf-8")
    print(text)


# ------------------------------------------------------------------------------------------------ commands


def cmd_evaluate(args: argparse.Namespace) -> int:
    from .evaluation.retrieval_eval import evaluate_retrieval, reports_to_markdown, write_reports

    task = load_task(args.task, args.max_queries)
    instruction = args.instruction if args.instruction is not None else task.instruction
    encoder, _ = load_encoder(args.encoder, instruction=instruction, num_latent_steps=args.num_latent_steps)
    report, rankings = evaluate_retrieval(
        encoder,
        task,
        k_values=tuple(args.k_values),
        batch_size=args.batch_size,
        show_progress_bar=not args.quiet,
    )
    report.extra["instruction"] = instruction
    print(reports_to_markdown([report]))
    if args.output_dir:
        path = write_reports([report], args.output_dir)
        (Path(args.output_dir) / "rankings.json").write_text(json.dumps(rankings) + "\n", encoding="utf-8")
        print(f"Wrote {path}")
    if args.update_card:
        kind, _, target = args.encoder.partition(":")
        if kind != "laser" or not Path(target).is_dir():
            raise CLIError("--update-card needs a local LaSER checkpoint (--encoder laser:<folder>).")
        from .hub import write_model_card

        write_model_card(target, eval_results=[report])
        print(f"Updated {Path(target) / 'README.md'}")
    return 0


def cmd_index(args: argparse.Namespace) -> int:
    from .retrieval import DenseIndex

    corpus = load_corpus(args.corpus)
    encoder, model = load_encoder(args.encoder, instruction=args.instruction)
    if model is not None:  # LatentRAG: the model renders documents its own way and stamps its retrieval space
        index = model.build_index(corpus, batch_size=args.batch_size, show_progress_bar=not args.quiet)
    else:
        index = DenseIndex.from_corpus(
            document_texts(corpus),
            list(corpus),
            encoder,
            batch_size=args.batch_size,
            show_progress_bar=not args.quiet,
            index_type=args.index_type,
        )
    index.save(args.output)
    _write_json(
        {
            "output": str(args.output),
            "encoder": index.encoder_name,
            "num_docs": len(index),
            "dim": index.embedding_dim,
        },
        None,
    )
    return 0


def cmd_answer(args: argparse.Namespace) -> int:
    from .latentrag import LatentRAGModel
    from .retrieval import DenseIndex

    model = LatentRAGModel.from_pretrained(args.model)
    corpus = load_corpus(args.corpus)
    index = DenseIndex.load(args.index) if args.index else model.build_index(corpus, show_progress_bar=not args.quiet)
    questions = list(args.question or [])
    if args.questions_file:
        questions += [line.strip() for line in Path(args.questions_file).read_text().splitlines() if line.strip()]
    if not questions:
        raise CLIError("Give at least one --question (or --questions-file).")
    options = {
        key: value
        for key, value in (
            ("max_retrievals", args.max_retrievals),
            ("top_k", args.top_k),
            ("max_answer_tokens", args.max_answer_tokens),
        )
        if value is not None
    }
    results = []
    for question in questions:
        result = model.answer(question, index, corpus, decode_latents=args.decode_latents, **options)
        results.append({"question": question, "answer": result.answer, "trace": result.trace.to_dict()})
    _write_json(results[0] if len(results) == 1 else results, args.output)
    return 0


def cmd_card(args: argparse.Namespace) -> int:
    from .hub import write_model_card

    eval_results = []
    for path in args.eval_results or []:
        eval_results.append(json.loads(Path(path).read_text(encoding="utf-8")))
    card = write_model_card(
        args.checkpoint,
        eval_results=eval_results or None,
        training_args=args.training_args,
        datasets=args.dataset,
        base_model=args.base_model,
        model_name=args.model_name,
        repo_id=args.repo_id,
        tags=args.tag,
        license=args.license,
        save=not args.print_only,
    )
    if args.print_only:
        print(card.content)
    else:
        print(f"Wrote {Path(args.checkpoint) / 'README.md'}")
    return 0


def cmd_push(args: argparse.Namespace) -> int:
    from .hub import push_checkpoint

    commit = push_checkpoint(
        args.folder,
        args.repo_id,
        token=args.token,
        private=args.private,
        commit_message=args.commit_message,
        revision=args.revision,
        create_pr=args.create_pr,
        endpoint=args.endpoint,
        model_card=args.model_card,
    )
    print(getattr(commit, "pr_url", None) or getattr(commit, "commit_url", commit))
    return 0


# ------------------------------------------------------------------------------------------------- parsing


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hf-latent",
        description="Latent reasoning for retrieval and RAG (LaSER, LatentRAG): train, evaluate, index, answer, "
        "write model cards and push checkpoints.",
        epilog=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="INFO logging")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    for command in TRAIN_SCRIPTS:
        sub = commands.add_parser(
            command, help=_train_help(command), description=_train_description(command), add_help=False
        )
        sub.add_argument(
            "script_args", nargs=argparse.REMAINDER, help=f"arguments for examples/{TRAIN_SCRIPTS[command]}"
        )

    sub = commands.add_parser("evaluate", help="retrieval evaluation of an encoder on a task")
    sub.add_argument("--encoder", required=True, help=ENCODER_HELP)
    sub.add_argument("--task", required=True, help="task name (load_retrieval_task) or task folder")
    sub.add_argument("--max-queries", type=int, default=None, help="evaluate the first N queries only")
    sub.add_argument("--batch-size", type=int, default=8, help="encoding batch size (default 8)")
    sub.add_argument("--k-values", type=int, nargs="+", default=[1, 5, 10, 100], help="metric cut-offs")
    sub.add_argument("--instruction", default=None, help="query instruction (default: the task's)")
    sub.add_argument("--num-latent-steps", type=int, default=None, help="LaSER: K for this evaluation")
    sub.add_argument("--output-dir", default=None, help="write retrieval.json / retrieval.md / rankings.json here")
    sub.add_argument("--update-card", action="store_true", help="LaSER folder: rewrite its card with these results")
    sub.add_argument("--quiet", action="store_true", help="no progress bars")
    sub.set_defaults(handler=cmd_evaluate)

    sub = commands.add_parser("index", help="encode a corpus into a saved DenseIndex")
    sub.add_argument("--encoder", required=True, help=ENCODER_HELP)
    sub.add_argument("--corpus", required=True, help="corpus file or folder (JSONL, JSON, saved Dataset)")
    sub.add_argument("--output", required=True, help="index folder to write")
    sub.add_argument("--batch-size", type=int, default=32, help="documents per forward pass (default 32)")
    sub.add_argument("--index-type", default="flat", choices=["flat", "ivf", "hnsw"], help="faiss index type")
    sub.add_argument("--instruction", default=None, help="LaSER: query instruction (not used for documents)")
    sub.add_argument("--quiet", action="store_true", help="no progress bars")
    sub.set_defaults(handler=cmd_index)

    sub = commands.add_parser("answer", help="answer questions with a LatentRAG checkpoint (answer + trace JSON)")
    sub.add_argument("--model", required=True, help="LatentRAG checkpoint (folder or Hub id)")
    sub.add_argument("--corpus", required=True, help="corpus file or folder the index was built from")
    sub.add_argument("--index", default=None, help="index folder (default: build one in memory)")
    sub.add_argument("--question", action="append", help="a question (repeatable)")
    sub.add_argument("--questions-file", default=None, help="a text file, one question per line")
    sub.add_argument("--max-retrievals", type=int, default=None, help="retrieval cap (default: the config's)")
    sub.add_argument("--top-k", type=int, default=None, help="passages per retrieval (default: the config's)")
    sub.add_argument("--max-answer-tokens", type=int, default=None, help="answer token cap (default: the config's)")
    sub.add_argument("--decode-latents", action="store_true", help="also decode latent thoughts and sub-queries")
    sub.add_argument("--output", default=None, help="also write the JSON to this file")
    sub.add_argument("--quiet", action="store_true", help="no progress bars")
    sub.set_defaults(handler=cmd_answer)

    sub = commands.add_parser("card", help="write the model card (README.md) of a checkpoint")
    sub.add_argument("checkpoint", help="LaSER or LatentRAG checkpoint folder")
    sub.add_argument("--eval-results", action="append", help="JSON of results (retrieval.json, results.json, ...)")
    sub.add_argument("--training-args", default=None, help="JSON file of training arguments")
    sub.add_argument("--dataset", action="append", help="Hub dataset id (repeatable)")
    sub.add_argument("--base-model", action="append", help="Hub id of a base model (repeatable)")
    sub.add_argument("--model-name", default=None, help="card title and model-index name")
    sub.add_argument("--repo-id", default=None, help="repository id used in the usage snippet")
    sub.add_argument("--tag", action="append", help="extra tag (repeatable)")
    sub.add_argument("--license", default=None, help="license id, e.g. apache-2.0")
    sub.add_argument("--print-only", action="store_true", help="print the card instead of writing README.md")
    sub.set_defaults(handler=cmd_card)

    sub = commands.add_parser("push", help="upload a checkpoint folder to the Hub")
    sub.add_argument("folder", help="checkpoint folder (save_pretrained / Trainer.save_model output)")
    sub.add_argument("repo_id", help="namespace/name")
    sub.add_argument("--token", default=None, help="write token (default: stored login / HF_TOKEN)")
    sub.add_argument("--private", action="store_true", help="create the repository as private")
    sub.add_argument("--commit-message", default=None, help="commit message")
    sub.add_argument("--revision", default=None, help="branch (default main)")
    sub.add_argument("--create-pr", action="store_true", help="open a pull request")
    sub.add_argument("--endpoint", default=None, help="Hub endpoint (default HF_ENDPOINT or huggingface.co)")
    sub.add_argument(
        "--model-card", default="auto", choices=["auto", "regenerate", "keep"], help="README handling (default auto)"
    )
    sub.set_defaults(handler=cmd_push)
    return parser


def _train_help(command: str) -> str:
    method = "LaSER" if command == "train-laser" else "LatentRAG"
    return f"train {method} (runs examples/{TRAIN_SCRIPTS[command]}; `hf-latent {command} --help` lists its flags)"


def _train_description(command: str) -> str:
    method = "LaSER" if command == "train-laser" else "LatentRAG"
    return (
        f"Train {method}: runs main(ARGS) of examples/{TRAIN_SCRIPTS[command]}, so ARGS are the script's own flags. "
        "The script is looked up in $HF_LATENT_EXAMPLES_DIR, in examples/ next to the package, then in ./examples."
    )


def _train(command: str, argv: list[str]) -> int:
    script = TRAIN_SCRIPTS[command]
    path = find_example_script(script)
    if path is None:
        searched = ", ".join(str(folder) for folder in examples_dir_candidates())
        message = (
            f"examples/{script} not found (searched {searched}). It ships with the source checkout, not the wheel: "
            f"clone the repository or set HF_LATENT_EXAMPLES_DIR."
        )
        if any(arg in ("-h", "--help") for arg in argv):
            usage = argparse.ArgumentParser(prog=f"hf-latent {command}", description=_train_description(command))
            usage.add_argument("ARGS", nargs="*", help=f"arguments for examples/{script}")
            usage.print_help()
            print(f"\n{message}")
            return 0
        raise CLIError(message)
    result = run_example_script(path, argv)
    if isinstance(result, dict):
        print(json.dumps(result, indent=2, default=str))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit status (0 on success, 2 on usage errors)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    verbose = bool(argv) and argv[0] in ("-v", "--verbose")
    if verbose:
        argv = argv[1:]
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    try:
        if argv and argv[0] in TRAIN_SCRIPTS:  # forwarded untouched, `--help` included
            return _train(argv[0], argv[1:])
        args = parser.parse_args(argv)
        if args.command is None:
            parser.print_help()
            return 0
        return args.handler(args)
    except CLIError as error:
        print(f"hf-latent {argv[0] if argv else ''}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
