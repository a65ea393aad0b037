"""Rewrite-then-retrieve: the explicit-reasoning baseline that LaSER internalises (arXiv 2603.01425 §4.2).

The backbone first *writes* a rationale for the query with the reasoning prompt of specs/laser.md §5 (greedy
decoding, token by token), then the query plus that rationale is encoded by LaSER's explicit view (one forward
pass, `normalize(h_EOS)`, §3.1). Documents are encoded as usual, so the vectors share the index of the retriever.
This is the pipeline whose latency LaSER is compared against (≈0.3% of it in the paper, §10).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from transformers import PreTrainedTokenizerBase

from .modeling_laser import LaserModel, build_explicit_inputs, get_segment_separator_ids


# specs/laser.md §5: the BRIGHT-style CoT prompt of the training data (paraphrased structure, question wrapped).
REASONING_PROMPT = (
    "[Begin of Question]\n{query}\n[End of Question]\n\n"
    "Identify the essential problem in the question. Think step by step about what information is relevant and "
    "helpful to address it, and draft an answer with as many thoughts as you have."
)


@dataclass
class RewriteTimings:
    """Per-query wall times of the last `encode` call (milliseconds) and generated-token counts."""

    generation_ms: list[float] = field(default_factory=list)
    encoding_ms: list[float] = field(default_factory=list)
    generated_tokens: list[int] = field(default_factory=list)


class RewriteThenRetrieveEncoder:
    """Queries: generate a rationale, then encode query + rationale with the explicit view. Documents: latent view.

    It satisfies the [`~hf_latent.retrieval.TextEncoder`] interface (`name`, `embedding_dim`, `encode`), with the
    `name` of the underlying document encoding so that it searches the same index.

    Args:
        model ([`LaserModel`]): the retriever; its backbone also writes the rationales (or pass `rewriter`).
        tokenizer: the backbone's tokenizer.
        name (`str`): the embedding-space name shared with the document encoder.
        instruction (`str`, *optional*): query instruction.
        max_new_tokens (`int`, defaults to 128): rationale length cap (the paper's GPT-4o-mini CoTs average ~985
            tokens; on a CPU we keep it short and say so in reports).
        rewriter (causal LM, *optional*): a separate rewriter model (the paper used a 7B rewriter); defaults to the
            retriever's own backbone.
        prompt (`str`): the reasoning prompt, with `{query}`.
        query_view (`str`, defaults to `"explicit"`): how query + rationale is encoded. `"explicit"`: LaSER's
            teacher view (`[templated query; rationale; EOS]`, EOS pooling). `"query"`: the text
            `"{query}\n{rationale}"` goes through the ordinary query encoding (instruction, K latent steps), which
            is the paper's setting (§4.2: the rewrite is read by the Fair-Baseline retriever, i.e. a basic
            contrastive model at K = 1).

    Attributes:
        rationales (`list[str]`): the rationales written in the last `encode(..., is_query=True)` call.
        timings ([`RewriteTimings`]): per-query generation and encoding times of that call.
    """

    def __init__(
        self,
        model: LaserModel,
        tokenizer: PreTrainedTokenizerBase,
        name: str,
        instruction: str | None = None,
        max_new_tokens: int = 128,
        rewriter=None,
        prompt: str = REASONING_PROMPT,
        query_view: str = "explicit",
    ):
        if query_view not in ("explicit", "query"):
            raise ValueError(f"query_view must be 'explicit' or 'query', got {query_view!r}.")
        if max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}.")
        if "{query}" not in prompt:
            raise ValueError("The reasoning prompt must contain '{query}'.")
        self.model, self.tokenizer, self.name = model, tokenizer, name
        self.embedding_dim = model.config.backbone_config.hidden_size
        self.instruction, self.max_new_tokens, self.prompt = instruction, max_new_tokens, prompt
        self.rewriter, self.query_view = rewriter, query_view
        self.rationales: list[str] = []
        self.timings = RewriteTimings()

    def _rewriter(self):
        if self.rewriter is not None:
            return self.rewriter
        backbone = self.model.backbone
        return backbone.get_base_model() if hasattr(backbone, "get_base_model") else backbone

    @torch.inference_mode()
    def generate_rationale(self, query: str) -> tuple[str, int]:
        """Greedy rationale for one query (batch size 1, as the latency protocol of §10). Returns text and length."""
        tokenizer, rewriter = self.tokenizer, self._rewriter()
        content = self.prompt.format(query=query)
        if tokenizer.chat_template:
            messages = [{"role": "user", "content": content}]
            inputs = tokenizer.apply_chat_template(
                messages, add_generation_prompt=True, return_tensors="pt", return_dict=True
            )
        else:
            inputs = tokenizer(content + "\n", return_tensors="pt")
        inputs = {key: value.to(rewriter.device) for key, value in inputs.items()}
        pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        output = rewriter.generate(**inputs, max_new_tokens=self.max_new_tokens, do_sample=False, pad_token_id=pad_id)
        new_tokens = output[0, inputs["input_ids"].shape[1] :]
        return tokenizer.decode(new_tokens, skip_special_tokens=True).strip(), int(new_tokens.numel())

    @torch.inference_mode()
    def encode_with_rationales(self, queries: Sequence[str], rationales: Sequence[str]) -> np.ndarray:
        """Encode `queries` with given rationales (through `query_view`). Returns `(N, hidden)` float32."""
        if self.query_view == "query":
            texts = [
                f"{query}\n{rationale}" if rationale.strip() else query
                for query, rationale in zip(queries, rationales)
            ]
            return self.model.encode(texts, self.tokenizer, is_query=True, instruction=self.instruction)
        batch = build_explicit_inputs(
            self.tokenizer,
            list(queries),
            list(rationales),
            instruction=self.instruction,
            max_length=self.model.config.explicit_max_length,
            config=self.model.config,
        ).to(self.model.device)
        output = self.model.encode_explicit(
            batch["input_ids"],
            batch["attention_mask"],
            batch["cot_start"],
            batch["cot_end"],
            separator_token_ids=get_segment_separator_ids(self.tokenizer),
        )
        return output.explicit_embeddings.float().cpu().numpy()

    def encode(
        self, texts: Sequence[str], batch_size: int = 8, show_progress_bar: bool | None = None, is_query: bool = False
    ) -> np.ndarray:
        """Documents: LaSER's latent encoding. Queries: rewrite each (batch 1), then encode through `query_view`.

        Returns:
            `(N, hidden)` float32, L2-normalised.
        """
        if not is_query:
            return self.model.encode(
                list(texts), self.tokenizer, batch_size=batch_size, show_progress_bar=bool(show_progress_bar)
            )
        from tqdm.auto import tqdm

        self.rationales, self.timings = [], RewriteTimings()
        rows = []
        for query in tqdm(list(texts), desc="rewrite-then-retrieve", disable=not show_progress_bar):
            start = time.perf_counter()
            rationale, num_tokens = self.generate_rationale(query)
            middle = time.perf_counter()
            rows.append(self.encode_with_rationales([query], [rationale])[0])
            end = time.perf_counter()
            self.rationales.append(rationale)
            self.timings.generation_ms.append(1000 * (middle - start))
            self.timings.encoding_ms.append(1000 * (end - middle))
            self.timings.generated_tokens.append(num_tokens)
        return np.stack(rows).astype(np.float32)
