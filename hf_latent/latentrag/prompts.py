"""Prompts and context layout of LatentRAG and its comparison systems (specs/latentrag.md §3, §10).

The same functions build the inference context (`inference.py`) and the teacher-forced training sequences
([`encode_trajectory`]), so the single training pass and the incremental loop see identical token sequences (§13.1).

LatentRAG layout (§3 [P, reconstructed]; document lines [D]):

```
{instruction}\\n\\nQuestion: {question}\\n          (or one user turn of the chat template)
<think_1>…<think_4><query_1>…<query_16>
<information>
Doc 1 (Title: …) …
Doc 2 (Title: …) …
</information>
<think_1>…<think_4><answer> {answer} </answer><eos>
```
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any


# Naive RAG (FlashRAG's standard RAG prompt, reworded): retrieve once with the question, answer directly.
NAIVE_RAG_PROMPT = (
    "Answer the question based on the given documents. Only give the answer and do not output any other words.\n\n"
    "The following are given documents.\n\n{documents}\n\nQuestion: {question}"
)
# Explicit agentic RAG (Search-R1's prompt).
SEARCH_R1_PROMPT = (
    "Answer the given question. You must conduct reasoning inside <think> and </think> first every time you get "
    "new information. After reasoning, if you find you lack some knowledge, you can call a search engine by "
    "<search> query </search> and it will return the top searched results between <information> and "
    "</information>. You can search as many times as your want. If you find no further external knowledge needed, "
    "you can directly provide the answer inside <answer> and </answer>, without detailed illustrations. For "
    "example, <answer> Beijing </answer>. Question: {question}\n"
)


def check_question(question: Any) -> str:
    """Return the question, or raise `ValueError` for an empty / non-string one."""
    if not isinstance(question, str) or not question.strip():
        raise ValueError(f"The question must be a non-empty string, got {question!r}.")
    return question.strip()


def uses_chat_template(tokenizer: Any, use_chat_template: bool = True) -> bool:
    """Whether prompts are wrapped in the tokenizer's chat template: asked for *and* the tokenizer has one.

    A tokenizer without a chat template (a base LLM) falls back to plain text; this is not an error.
    """
    return bool(use_chat_template and getattr(tokenizer, "chat_template", None))


def render_user_turn(tokenizer: Any, content: str, use_chat_template: bool = True) -> str:
    """`content` as one user turn plus the generation prompt, or plain `content + "\\n"` without a chat template."""
    if uses_chat_template(tokenizer, use_chat_template):
        return tokenizer.apply_chat_template(
            [{"role": "user", "content": content}], tokenize=False, add_generation_prompt=True
        )
    return content + "\n"


def format_question_prompt(tokenizer: Any, instruction: str, question: str, use_chat_template: bool = True) -> str:
    """The text before the first thought block: the instruction and the question (§3)."""
    return render_user_turn(tokenizer, f"{instruction}\n\nQuestion: {check_question(question)}", use_chat_template)


def encode_text(tokenizer: Any, text: str, templated: bool, split_special_tokens: bool = False) -> list[int]:
    """Token ids of a prompt string; the tokenizer's BOS / special tokens are added only to non-templated text
    (chat templates write their own)."""
    kwargs = {"split_special_tokens": True} if split_special_tokens else {}
    return list(tokenizer(text, add_special_tokens=not templated, **kwargs)["input_ids"])


def format_documents(
    documents: Sequence[Mapping[str, Any]], template: str = "Doc {index} (Title: {title}) {text}"
) -> str:
    """Retrieved passages as text, one per line (§3 [D]): `Doc i (Title: {title}) {text}`."""
    return "\n".join(
        template.format(index=i + 1, title=doc.get("title", ""), text=doc.get("text", ""))
        for i, doc in enumerate(documents)
    )


def encode_prompt(tokenizer: Any, config: Any, question: str) -> list[int]:
    """Ids of the first prefill (§4 step 1): instruction + question + think_1..think_m.

    Args:
        tokenizer: the generator tokenizer (with LatentRAG's tokens).
        config: a `LatentRAGConfig` (instruction, chat-template flag, token ids).
        question (`str`): the question.

    Raises:
        ValueError: empty question.
    """
    templated = uses_chat_template(tokenizer, config.use_chat_template)
    text = format_question_prompt(tokenizer, config.instruction, question, config.use_chat_template)
    return encode_text(tokenizer, text, templated) + list(config.thought_token_ids)


def encode_information(tokenizer: Any, config: Any, documents: Sequence[Mapping[str, Any]]) -> list[int]:
    """Ids of one retrieval's context pass (§4 step 3): `\\n<information>\\n` + passages + `\\n</information>\\n` +
    think_1..think_m."""
    text = (
        f"\n{config.information_start_token}\n{format_documents(documents, config.document_template)}\n"
        f"{config.information_end_token}\n"
    )
    return list(tokenizer(text, add_special_tokens=False)["input_ids"]) + list(config.thought_token_ids)


def encode_answer(tokenizer: Any, config: Any, answer: str, append_eos: bool = True) -> list[int]:
    """Ids of `<answer> {answer} </answer>` (+ EOS): what follows the last thought block."""
    ids = [config.answer_start_token_id]
    ids += tokenizer(f" {answer.strip()} ", add_special_tokens=False)["input_ids"]
    ids.append(config.answer_end_token_id)
    if append_eos and tokenizer.eos_token_id is not None:
        ids.append(tokenizer.eos_token_id)
    return ids


def encode_trajectory(
    tokenizer: Any,
    config: Any,
    question: str,
    documents_per_step: Sequence[Sequence[Mapping[str, Any]]],
    answer: str | None = None,
    append_eos: bool = True,
) -> dict[str, list[int]]:
    """A converted trajectory as one sequence, exactly as the inference loop builds its context (§3, §8).

    Layout: prompt + τ, then per retrieval `query_1..query_n` + information block + τ, then (with `answer`)
    `<answer> answer </answer>` (+ EOS).

    Args:
        tokenizer: the generator tokenizer.
        config: a `LatentRAGConfig` with token ids.
        question (`str`): the question.
        documents_per_step (`Sequence[Sequence[Mapping]]`): the passages (`title`, `text`) of each retrieval.
        answer (`str`, *optional*): the final answer; `None` stops after the last thought block.
        append_eos (`bool`, *optional*, defaults to `True`): end with EOS after `</answer>`.

    Returns:
        `dict` with `input_ids` and `labels` (lists of the same length). Labels follow §7.1 [D]: the action token
        after every thought block (`query_1` on retrieval steps, `<answer>` on the final one), the answer tokens,
        `</answer>` and EOS; everything else is -100 (HF convention, the shift happens in the loss).
    """
    input_ids = encode_prompt(tokenizer, config, question)
    labels = [-100] * len(input_ids)
    for documents in documents_per_step:
        query = list(config.subquery_token_ids)
        input_ids += query
        labels += [query[0]] + [-100] * (len(query) - 1)
        information = encode_information(tokenizer, config, documents)
        input_ids += information
        labels += [-100] * len(information)
    if answer is not None:
        answer_ids = encode_answer(tokenizer, config, answer, append_eos=append_eos)
        input_ids += answer_ids
        labels += answer_ids
    return {"input_ids": input_ids, "labels": labels}


__all__ = [
    "NAIVE_RAG_PROMPT",
    "SEARCH_R1_PROMPT",
    "check_question",
    "encode_answer",
    "encode_information",
    "encode_prompt",
    "encode_text",
    "encode_trajectory",
    "format_documents",
    "format_question_prompt",
    "render_user_turn",
    "uses_chat_template",
]
