"""Comparison systems on LatentRAG's own generator, retriever and index (specs/latentrag.md §10-§11).

- [`NaiveRAG`]: retrieve the top-k passages once with the question text, put them in the prompt, answer greedily.
- [`ExplicitAgenticRAG`]: Search-R1 style; the generator writes `<think>…</think><search>…</search>` token by token,
  each text sub-query is encoded by the frozen reference retriever and searched, the passages come back inside
  `<information>…</information>`, at most `max_searches` times, then `<answer>…</answer>`.

Both use plain HF forward passes with one KV cache and greedy decoding, batch size 1, and fill the same
[`LatentRAGTrace`] as the latent loop. Every generated token costs one forward pass and every prefill (prompt,
information block) one more. Stage times: `prefill` (the prompt), `thoughts` (tokens written outside search / answer
tags, plus the passes that read an information block), `subqueries` (tokens inside `<search>…</search>`),
`retrieval` (text-query embedding + faiss, as the paper charges it to baselines, §11) and `answer`.

LatentRAG's own special tokens (placeholders, single-token tags) are masked out of the baselines' logits, and the
explicit agent's prompt and information blocks are tokenised with `trajectories.encode_explicit_text` (LatentRAG's
tags as ordinary text, the tokenizer's own chat markers whole), so it sees and writes the tags as subwords, as a
Search-R1 checkpoint would (§11). Its text format (prompt, turns, blocks) is defined once in `trajectories.py` and
shared with its SFT data (`explicit_sft.py`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

import torch

from .inference import CorpusLookup, LatentRAGResult, LatentRAGTrace, _device, _StageClock, check_index, search
from .prompts import (
    NAIVE_RAG_PROMPT,
    check_question,
    encode_text,
    format_documents,
    render_user_turn,
    uses_chat_template,
)
from .trajectories import EXPLICIT_FORCED_ANSWER, encode_explicit_text, explicit_information_block, explicit_prompt


if TYPE_CHECKING:
    from datasets import Dataset

    from ..retrieval import DenseIndex
    from .modeling_latentrag import LatentRAGModel


class _TextRAGSystem:
    """Shared plumbing: corpus lookup, text retrieval, cached greedy steps with pass counting."""

    system_name = "text_rag"

    def __init__(
        self,
        model: LatentRAGModel,
        index: DenseIndex,
        corpus: Mapping[str, Mapping[str, Any]] | Dataset | CorpusLookup,
        *,
        top_k: int | None = None,
        max_answer_tokens: int | None = None,
        use_chat_template: bool | None = None,
    ):
        if model.generator_tokenizer is None or model.retriever_tokenizer is None:
            raise ValueError("The model needs generator_tokenizer and retriever_tokenizer.")
        check_index(model, index)
        self.model = model
        self.index = index
        self.corpus = CorpusLookup(corpus)
        self.tokenizer = model.generator_tokenizer
        self.top_k = top_k if top_k is not None else model.config.top_k_documents
        self.max_answer_tokens = max_answer_tokens if max_answer_tokens is not None else model.config.max_answer_tokens
        wanted = model.config.use_chat_template if use_chat_template is None else use_chat_template
        # A tokenizer without a chat template falls back to plain text (documented, not an error).
        self.templated = uses_chat_template(self.tokenizer, wanted)
        self.device = _device(model)
        vocab = self.tokenizer.get_vocab()
        suppressed = [vocab[token] for token in model.config.special_tokens if token in vocab]
        self._suppressed = torch.tensor(suppressed, dtype=torch.long, device=self.device)
        self._stop_ids = {self.tokenizer.eos_token_id} - {None}
        if getattr(self.tokenizer, "chat_template", None):
            end_of_turn = vocab.get("<|im_end|>")
            if end_of_turn is not None:
                self._stop_ids.add(end_of_turn)

    def _retrieve(self, query: str, trace: LatentRAGTrace) -> list[Mapping[str, Any]]:
        vector = self.model.encode_text_queries([query], reference=True)
        scores, ids = search(self.index, vector, self.top_k)
        trace.queries.append(query)
        trace.retrieved_ids.append(ids[0])
        trace.retrieval_scores.append(scores[0])
        return [self.corpus[doc_id] for doc_id in ids[0]]

    def _step(self, ids: list[int], cache: Any, trace: LatentRAGTrace, stage: str) -> tuple[torch.Tensor, Any]:
        """One cached forward pass over `ids`; returns the (masked) logits of the last position and the cache."""
        _, logits, cache = self.model.run_generator(
            input_ids=torch.tensor([ids], dtype=torch.long, device=self.device),
            past_key_values=cache,
            use_cache=True,
            logits_positions=slice(-1, None),
        )
        logits = logits[0, -1].float()
        if len(self._suppressed):
            logits[self._suppressed] = float("-inf")
        trace.forward_passes[stage] = trace.forward_passes.get(stage, 0) + 1
        trace.num_context_tokens += len(ids)
        return logits, cache

    def _finish(self, trace: LatentRAGTrace, clock: _StageClock) -> None:
        trace.total_ms = clock.total()
        trace.num_forward_passes = sum(trace.forward_passes.values())

    def answer_questions(
        self, questions: Iterable[str] | Dataset, show_progress_bar: bool = True
    ) -> list[LatentRAGResult]:
        """Answer many questions one at a time (batch size 1, §11) with a tqdm bar."""
        from tqdm.auto import tqdm

        if hasattr(questions, "column_names"):
            questions = questions["question"]
        return [
            self(question)
            for question in tqdm(
                list(questions), desc=self.system_name, unit="question", disable=not show_progress_bar
            )
        ]

    def __call__(self, question: str) -> LatentRAGResult:
        raise NotImplementedError


class NaiveRAG(_TextRAGSystem):
    """Single-step RAG: top-k passages for the question text, then a greedy answer (§10 "Naive RAG").

    Args:
        model ([`LatentRAGModel`]): its generator, reference retriever and tokenizers are used.
        index (`DenseIndex`): built in the model's retrieval space.
        corpus: a mapping id -> {title, text} or a `datasets.Dataset` (`id`, `title`, `text`).
        top_k (`int`, *optional*): passages; defaults to `config.top_k_documents`.
        max_answer_tokens (`int`, *optional*): defaults to `config.max_answer_tokens`.
        use_chat_template (`bool`, *optional*): defaults to `config.use_chat_template`; the prompt is one user turn
            when the tokenizer has a chat template, plain text ending in `Answer:` otherwise (then the answer also
            stops at the first newline).
    """

    system_name = "naive_rag"

    @torch.inference_mode()
    def __call__(self, question: str) -> LatentRAGResult:
        question = check_question(question)
        trace = LatentRAGTrace(system=self.system_name, forward_passes={"prefill": 0, "answer": 0})
        clock = _StageClock(trace, self.device)
        documents = self._retrieve(question, trace)
        trace.actions.append("query")
        clock.lap("retrieval")
        content = NAIVE_RAG_PROMPT.format(
            documents=format_documents(documents, self.model.config.document_template), question=question
        )
        text = render_user_turn(self.tokenizer, content, self.templated)
        if not self.templated:
            text += "Answer:"
        logits, cache = self._step(encode_text(self.tokenizer, text, self.templated), None, trace, "prefill")
        clock.lap("prefill")
        generated: list[int] = []
        for step in range(self.max_answer_tokens):
            token = int(logits.argmax())
            generated.append(token)
            if token in self._stop_ids:
                break
            if not self.templated and "\n" in self.tokenizer.decode(generated).lstrip():
                break
            if step < self.max_answer_tokens - 1:
                logits, cache = self._step([token], cache, trace, "answer")
        trace.actions.append("answer")
        clock.lap("answer")
        output = self.tokenizer.decode([t for t in generated if t not in self._stop_ids], skip_special_tokens=True)
        answer = output.strip().split("\n")[0].strip()
        trace.answer_token_ids = generated
        trace.num_generated_tokens = len(generated)
        trace.generated_text = output
        self._finish(trace, clock)
        return LatentRAGResult(answer=answer, trace=trace)


class ExplicitAgenticRAG(_TextRAGSystem):
    """Search-R1-style explicit agentic RAG on LatentRAG's generator and retriever (the teacher's protocol, §8).

    Generation stops at `</search>` (then the sub-query between `<search>` and `</search>` is encoded by the frozen
    reference retriever and the top-k passages are appended as `\\n\\n<information>…</information>\\n\\n`, in one
    cached pass), at `</answer>`, or at EOS. After `max_searches` searches, or when a turn runs past
    `max_step_tokens`, the answer is forced by appending `\\n<answer>`. An empty sub-query searches the question.
    The prompt and every inserted piece are tokenised with LatentRAG's tags as plain text
    (`trajectories.encode_explicit_text`), exactly as `explicit_sft.tokenize_explicit_sft_example` builds its SFT data.

    Args:
        model, index, corpus, top_k, max_answer_tokens, use_chat_template: as in [`NaiveRAG`].
        max_searches (`int`, *optional*): defaults to `config.max_retrievals` (4).
        max_step_tokens (`int`, *optional*, defaults to 500): tokens per turn at most (Search-R1's response length).
    """

    system_name = "explicit_agentic_rag"

    def __init__(
        self,
        model: LatentRAGModel,
        index: DenseIndex,
        corpus: Any,
        *,
        max_searches: int | None = None,
        max_step_tokens: int = 500,
        **kwargs: Any,
    ):
        super().__init__(model, index, corpus, **kwargs)
        self.max_searches = max_searches if max_searches is not None else model.config.max_retrievals
        if max_step_tokens < 1:
            raise ValueError(f"max_step_tokens must be >= 1, got {max_step_tokens}.")
        self.max_step_tokens = max_step_tokens
        self._latent_tokens = list(model.config.special_tokens)

    def _encode_plain(self, text: str, add_special_tokens: bool = False) -> list[int]:
        # LatentRAG's tags as subwords, as a Search-R1 tokenizer would see them; the chat markers stay whole.
        return encode_explicit_text(self.tokenizer, text, self._latent_tokens, add_special_tokens)

    @staticmethod
    def _mode(segment_text: str) -> str:
        if "<answer>" in segment_text:
            return "answer"
        if segment_text.rfind("<search>") > segment_text.rfind("</search>"):
            return "subqueries"
        return "thoughts"

    @torch.inference_mode()
    def __call__(self, question: str) -> LatentRAGResult:
        question = check_question(question)
        trace = LatentRAGTrace(
            system=self.system_name, forward_passes={"prefill": 0, "thoughts": 0, "subqueries": 0, "answer": 0}
        )
        clock = _StageClock(trace, self.device)
        prompt = explicit_prompt(question, self.tokenizer, self.templated)
        prompt_ids = self._encode_plain(prompt, add_special_tokens=not self.templated)
        logits, cache = self._step(prompt_ids, None, trace, "prefill")
        clock.lap("prefill")
        pieces: list[str] = []  # everything written after the prompt: generated turns and inserted blocks
        segment: list[int] = []  # tokens of the current turn
        answer_tokens = 0
        forced = False
        while True:
            token = int(logits.argmax())
            segment.append(token)
            trace.num_generated_tokens += 1
            segment_text = self.tokenizer.decode(segment, skip_special_tokens=False)
            mode = self._mode(segment_text)
            if mode == "answer":
                answer_tokens += 1
                trace.answer_token_ids.append(token)
            if token in self._stop_ids or "</answer>" in segment_text[-16:]:
                clock.lap(mode)
                pieces.append(segment_text)
                break
            if mode == "answer" and answer_tokens >= self.max_answer_tokens:
                clock.lap(mode)
                pieces.append(segment_text)
                break
            closes_search = "</search>" in segment_text[-16:] and segment_text.rfind("<search>") >= 0
            if closes_search and trace.num_retrievals < self.max_searches:
                pieces.append(segment_text)
                start = segment_text.rfind("<search>") + len("<search>")
                query = segment_text[start : segment_text.rfind("</search>")].strip() or question
                clock.lap("subqueries")
                trace.actions.append("query")
                documents = self._retrieve(query, trace)
                clock.lap("retrieval")
                block = explicit_information_block(
                    [doc.get("title", "") for doc in documents],
                    [doc.get("text", "") for doc in documents],
                    self.model.config.document_template,
                )
                pieces.append(block)
                logits, cache = self._step([token, *self._encode_plain(block)], cache, trace, "thoughts")
                clock.lap("thoughts")
                segment = []
                continue
            if (closes_search or len(segment) >= self.max_step_tokens) and mode != "answer":
                # The search cap or the turn length forces the answer: append the answer tag and keep decoding.
                clock.lap(mode)
                pieces.append(segment_text)
                forced = True
                segment = self._encode_plain(EXPLICIT_FORCED_ANSWER)
                logits, cache = self._step([token, *segment], cache, trace, "answer")
                clock.lap("answer")
                continue
            logits, cache = self._step([token], cache, trace, mode)
            clock.lap(mode)
        trace.actions.append("answer")
        trace.forced_answer = forced
        transcript = "".join(pieces)
        trace.generated_text = transcript
        answer = _extract_answer(transcript)
        self._finish(trace, clock)
        return LatentRAGResult(answer=answer, trace=trace)


def _extract_answer(text: str) -> str:
    """The text inside the last `<answer>…</answer>` (or after the last `<answer>` if unclosed); `""` if none."""
    start = text.rfind("<answer>")
    if start < 0:
        return ""
    answer = text[start + len("<answer>") :]
    end = answer.find("</answer>")
    answer = answer[:end] if end >= 0 else answer
    return answer.replace("<|im_end|>", "").strip()


__all__ = ["ExplicitAgenticRAG", "NaiveRAG"]
