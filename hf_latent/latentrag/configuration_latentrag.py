"""LatentRAG model configuration.

Zheng and Worring, "LatentRAG", arXiv 2605.06285 (2026). Section numbers refer to specs/latentrag.md. This file is
copied next to the weights by `save_pretrained` (custom code for `trust_remote_code=True`), so it imports only
transformers and the standard library.
"""

from __future__ import annotations

from transformers import AutoConfig, PreTrainedConfig
from transformers.configuration_utils import SubConfigSpec


# §3 [P, paraphrased]: "answer the question by reasoning step by step and retrieving necessary information".
DEFAULT_INSTRUCTION = (
    "Answer the given question by reasoning step by step and retrieving the necessary information at each step. "
    "When you have enough information, give a short answer."
)
# §7.3 [P wording paraphrased, exact strings D].
DEFAULT_THOUGHT_DECODING_PROMPT = "Decode the thought based on the latent representation: "
DEFAULT_SUBQUERY_DECODING_PROMPT = "Decode the subquery based on the latent representation: "
# §6 [D]: Qwen3-Embedding's default task.
QWEN3_EMBEDDING_TASK = "Given a web search query, retrieve relevant passages that answer the query"

RETRIEVER_POOLING_MODES = ("mean", "last_token", "cls")


class LatentRAGConfig(PreTrainedConfig):
    r"""
    Configuration of a [`LatentRAGModel`]: a causal-LM generator, a dense retriever and LatentRAG's projectors.

    LatentRAG (Zheng and Worring, arXiv 2605.06285) keeps the think → search → read loop of agentic RAG but never
    writes thoughts or sub-queries as text: each step appends `num_thought_tokens` thought placeholders, the LM head
    at the last one picks the action, and on ⟨query⟩ `num_subquery_tokens` sub-query placeholders are appended whose
    last-layer hidden states are projected into the retriever's input-embedding space (specs/latentrag.md §1-§6).

    > Parameters that describe the components

    generator_config (`dict` or [`PreTrainedConfig`], *optional*):
        Configuration of the causal LM `g` (any `AutoModelForCausalLM` architecture). A `dict` must hold a
        `model_type` (defaults to `"llama"`). Nested, so `LatentRAGModel(config)` builds a random generator.
    retriever_config (`dict` or [`PreTrainedConfig`], *optional*):
        Configuration of the dense retriever `f_ret` (any `AutoModel` encoder that accepts `inputs_embeds`). A
        `dict` must hold a `model_type` (defaults to `"bert"`).
    retriever_name (`str`, *optional*):
        Name of the retriever's embedding space, the `encoder_name` a compatible `DenseIndex` carries (by default
        `"<model id>:<pooling>"`, the convention of `hf_latent.retrieval.HFEncoder`). Set by
        `LatentRAGModel.from_components`; the inference loop refuses an index with another name.

    > Parameters that control the latent loop (§3-§4)

    num_thought_tokens (`int`, *optional*, defaults to `4`):
        m, thought placeholders per step. Must be >= 1.
    num_subquery_tokens (`int`, *optional*, defaults to `16`):
        n, sub-query placeholders per retrieval. Must be >= 1.
    max_retrievals (`int`, *optional*, defaults to `4`):
        Retrieval cap; once reached, ⟨answer⟩ is forced (§4 [D]). Must be >= 0.
    top_k_documents (`int`, *optional*, defaults to `3`):
        Passages returned to the context per retrieval. Must be >= 1.
    max_answer_tokens (`int`, *optional*, defaults to `32`):
        Greedy answer tokens at most (the stop token included).
    instruction (`str`, *optional*):
        Instruction placed before the question (§3, paraphrased).
    use_chat_template (`bool`, *optional*, defaults to `True`):
        Wrap instruction + question as one user turn when the generator tokenizer has a chat template (instruct
        backbones). Tokenizers without one, or `False` (base LLMs, as in the paper, §3 [D]), use plain text
        `instruction\n\nquestion\n`. Training data must be converted with the same choice.
    document_template (`str`, *optional*, defaults to `"Doc {index} (Title: {title}) {text}"`):
        How a retrieved passage is written into the context, one per line (§3 [D]).

    > Special tokens (§3). Their ids are filled in by `add_latentrag_tokens`.

    thought_token_format (`str`, *optional*, defaults to `"<think_{index}>"`):
        Format of the m thought placeholders, `index` from 1.
    subquery_token_format (`str`, *optional*, defaults to `"<query_{index}>"`):
        Format of the n sub-query placeholders; the first one doubles as the ⟨query⟩ action (§3 [D]).
    answer_start_token (`str`, *optional*, defaults to `"<answer>"`):
        Opens the answer; doubles as the ⟨answer⟩ action.
    answer_end_token (`str`, *optional*, defaults to `"</answer>"`):
        Closes the answer (a stop token).
    information_start_token (`str`, *optional*, defaults to `"<information>"`):
        Opens the block of retrieved passages.
    information_end_token (`str`, *optional*, defaults to `"</information>"`):
        Closes it.
    thought_token_ids (`list[int]`, *optional*):
        Ids of the m thought placeholders in the generator vocabulary.
    subquery_token_ids (`list[int]`, *optional*):
        Ids of the n sub-query placeholders.
    answer_start_token_id, answer_end_token_id, information_start_token_id, information_end_token_id (`int`, *optional*):
        Ids of the structural tags.

    > Parameters of the retriever and latent retrieval (§6, §9)

    retriever_pooling (`str`, *optional*, defaults to `"mean"`):
        `"mean"` (MiniLM, e5), `"last_token"` (Qwen3-Embedding) or `"cls"`.
    retriever_query_prefix (`str`, *optional*, defaults to `""`):
        Text before the query span: `""` for MiniLM, `"query: "` for e5, `"Instruct: {task}\nQuery:"` for
        Qwen3-Embedding. The tokenizer's own special tokens (`[CLS]`/`[SEP]`, an appended EOS) are kept around it.
    retriever_query_suffix (`str`, *optional*, defaults to `""`):
        Text after the query span.
    retriever_document_prefix (`str`, *optional*, defaults to `""`):
        Text before each document when the index is built (`"passage: "` for e5).
    retriever_document_template (`str`, *optional*, defaults to `"{title}\n{text}"`):
        How a corpus row becomes the text the document tower encodes.
    retriever_max_length (`int`, *optional*, defaults to `256`):
        Token limit of the retriever inputs (all-MiniLM-L6-v2 was trained at 256).
    retriever_query_prefix_ids (`list[int]`, *optional*):
        Token ids before the replaced span (special tokens included), derived from the prefix by
        `LatentRAGModel.from_components`, so that latent retrieval needs no tokenizer.
    retriever_query_suffix_ids (`list[int]`, *optional*):
        Token ids after the replaced span.
    use_pretrained_retriever (`bool`, *optional*, defaults to `True`):
        `False` is the "w/o pretrained retriever" ablation (§9): `Proj_ret` maps straight to the document-embedding
        width and the query vector is the L2-normalised mean of the n projected vectors.
    retrieval_temperature (`float`, *optional*, defaults to `0.03`):
        β of the retrieval-alignment KL (§7.2); stored here for the trainer. Must be > 0.
    retriever_lora_rank (`int`, *optional*, defaults to `16`):
        Rank of the LoRA adapter that makes the retriever trainable (§6 [D]). The frozen reference retriever is the
        same module with the adapter disabled, so the checkpoint stores the pretrained retriever once plus the
        small adapter. `0` attaches no adapter (trainable and reference retriever are then the same weights).
    retriever_lora_alpha (`float`, *optional*, defaults to `64`):
        LoRA α (scaling α / r).
    retriever_lora_dropout (`float`, *optional*, defaults to `0.0`):
        LoRA dropout; 0 because retriever dropout is removed (§2).
    retriever_lora_target_modules (`list[str]`, *optional*):
        Names (last component) of the `nn.Linear` layers that get the adapter; default: every linear layer inside
        the retriever's transformer blocks (the pooler excluded).

    > Parameters of the generator adapter (optional; the trainer may use PEFT instead)

    generator_lora_rank (`int`, *optional*, defaults to `0`):
        Rank of a built-in LoRA adapter on the generator (§2: r = 16, α = 64, dropout 0.1). `0` = none.
    generator_lora_alpha (`float`, *optional*, defaults to `64`):
        LoRA α.
    generator_lora_dropout (`float`, *optional*, defaults to `0.1`):
        LoRA dropout.
    generator_lora_target_modules (`list[str]`, *optional*):
        Default: every linear layer inside the decoder blocks (all projection matrices).

    > Parameters of the projectors (§5)

    use_latent_decoding (`bool`, *optional*, defaults to `True`):
        Build `Proj_τ` and `Proj_s`, which map latents back to the generator's input space for decoding (§7.3).
        `False` is the "w/o decoding" ablation.
    projector_num_heads (`int`, *optional*):
        Attention heads of every projector block; default d_LLM / 128 (at least 1), lowered to a divisor of d_LLM.
    projector_intermediate_size (`int`, *optional*):
        FFN width; default 4 · d_LLM.
    projector_hidden_act (`str`, *optional*, defaults to `"gelu"`):
        FFN activation (a `transformers.activations.ACT2FN` key).
    projector_layer_norm_eps (`float`, *optional*, defaults to `1e-5`):
        Epsilon of the projector LayerNorms.
    initializer_range (`float`, *optional*, defaults to `0.02`):
        Standard deviation of the projectors' linear weights at initialisation.

    > Parameters of latent decoding (§7.3)

    thought_decoding_prompt (`str`, *optional*):
        Prompt before the m projected thought vectors.
    subquery_decoding_prompt (`str`, *optional*):
        Prompt before the n projected sub-query vectors.
    max_decoding_tokens (`int`, *optional*, defaults to `64`):
        Greedy tokens at most per decoded latent at inference.

    Example:

    ```python
    >>> from transformers import AutoConfig
    >>> from hf_latent.latentrag import LatentRAGConfig, LatentRAGModel

    >>> generator_config = AutoConfig.for_model("qwen2", hidden_size=64, intermediate_size=128, num_hidden_layers=2,
    ...     num_attention_heads=4, num_key_value_heads=2, vocab_size=600)
    >>> retriever_config = AutoConfig.for_model("bert", hidden_size=64, intermediate_size=128, num_hidden_layers=2,
    ...     num_attention_heads=4, vocab_size=512)
    >>> config = LatentRAGConfig(generator_config=generator_config, retriever_config=retriever_config)
    >>> model = LatentRAGModel(config)  # random tiny components; use `from_components` for real ones
    ```
    """

    model_type = "latentrag"
    sub_configs_defaults = {
        "generator_config": SubConfigSpec(config_class=AutoConfig, model_type="llama"),
        "retriever_config": SubConfigSpec(config_class=AutoConfig, model_type="bert"),
    }

    generator_config: dict | PreTrainedConfig | None = None
    retriever_config: dict | PreTrainedConfig | None = None
    retriever_name: str | None = None
    # Latent loop (§3-§4).
    num_thought_tokens: int = 4
    num_subquery_tokens: int = 16
    max_retrievals: int = 4
    top_k_documents: int = 3
    max_answer_tokens: int = 32
    instruction: str = DEFAULT_INSTRUCTION
    use_chat_template: bool = True
    document_template: str = "Doc {index} (Title: {title}) {text}"
    # Special tokens (§3).
    thought_token_format: str = "<think_{index}>"
    subquery_token_format: str = "<query_{index}>"
    answer_start_token: str = "<answer>"
    answer_end_token: str = "</answer>"
    information_start_token: str = "<information>"
    information_end_token: str = "</information>"
    thought_token_ids: list[int] | None = None
    subquery_token_ids: list[int] | None = None
    answer_start_token_id: int | None = None
    answer_end_token_id: int | None = None
    information_start_token_id: int | None = None
    information_end_token_id: int | None = None
    # Retriever and latent retrieval (§6, §9).
    retriever_pooling: str = "mean"
    retriever_query_prefix: str = ""
    retriever_query_suffix: str = ""
    retriever_document_prefix: str = ""
    retriever_document_template: str = "{title}\n{text}"
    retriever_max_length: int = 256
    retriever_query_prefix_ids: list[int] | None = None
    retriever_query_suffix_ids: list[int] | None = None
    use_pretrained_retriever: bool = True
    retrieval_temperature: float = 0.03
    retriever_lora_rank: int = 16
    retriever_lora_alpha: float = 64.0
    retriever_lora_dropout: float = 0.0
    retriever_lora_target_modules: list[str] | None = None
    # Optional built-in generator adapter (§2).
    generator_lora_rank: int = 0
    generator_lora_alpha: float = 64.0
    generator_lora_dropout: float = 0.1
    generator_lora_target_modules: list[str] | None = None
    # Projectors (§5).
    use_latent_decoding: bool = True
    projector_num_heads: int | None = None
    projector_intermediate_size: int | None = None
    projector_hidden_act: str = "gelu"
    projector_layer_norm_eps: float = 1e-5
    initializer_range: float = 0.02
    # Latent decoding (§7.3).
    thought_decoding_prompt: str = DEFAULT_THOUGHT_DECODING_PROMPT
    subquery_decoding_prompt: str = DEFAULT_SUBQUERY_DECODING_PROMPT
    max_decoding_tokens: int = 64
    # The composite model has no word embeddings of its own; the generator ties its own.
    tie_word_embeddings: bool = False

    def __post_init__(self, **kwargs):
        for name in ("num_thought_tokens", "num_subquery_tokens", "top_k_documents", "max_answer_tokens"):
            _check_int(self, name, minimum=1)
        for name in ("max_retrievals", "retriever_lora_rank", "generator_lora_rank"):
            _check_int(self, name, minimum=0)
        _check_int(self, "retriever_max_length", minimum=1)
        _check_int(self, "max_decoding_tokens", minimum=1)
        if self.retriever_pooling not in RETRIEVER_POOLING_MODES:
            raise ValueError(
                f"`retriever_pooling` must be one of {RETRIEVER_POOLING_MODES}, got {self.retriever_pooling!r}."
            )
        if not self.retrieval_temperature > 0:
            raise ValueError(f"`retrieval_temperature` (β) must be > 0, got {self.retrieval_temperature!r}.")
        for name in ("retriever_lora_dropout", "generator_lora_dropout"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"`{name}` must be in [0, 1), got {getattr(self, name)!r}.")
        if self.projector_num_heads is not None:
            _check_int(self, "projector_num_heads", minimum=1)
        for name in ("thought_token_format", "subquery_token_format"):
            if "{index}" not in getattr(self, name):
                raise ValueError(f"`{name}` must contain an `{{index}}` placeholder, got {getattr(self, name)!r}.")
        for fmt_name, ids_name, size_name in (
            ("thought_token_format", "thought_token_ids", "num_thought_tokens"),
            ("subquery_token_format", "subquery_token_ids", "num_subquery_tokens"),
        ):
            ids = getattr(self, ids_name)
            if ids is not None and len(ids) != getattr(self, size_name):
                raise ValueError(f"`{ids_name}` has {len(ids)} ids but `{size_name}` is {getattr(self, size_name)}.")
        super().__post_init__(**kwargs)

    @property
    def thought_tokens(self) -> list[str]:
        """The m thought placeholder strings, e.g. `["<think_1>", ..., "<think_4>"]`."""
        return [self.thought_token_format.format(index=i + 1) for i in range(self.num_thought_tokens)]

    @property
    def subquery_tokens(self) -> list[str]:
        """The n sub-query placeholder strings, e.g. `["<query_1>", ..., "<query_16>"]`."""
        return [self.subquery_token_format.format(index=i + 1) for i in range(self.num_subquery_tokens)]

    @property
    def structural_tokens(self) -> list[str]:
        """`<information>`, `</information>`, `<answer>`, `</answer>`."""
        return [
            self.information_start_token,
            self.information_end_token,
            self.answer_start_token,
            self.answer_end_token,
        ]

    @property
    def special_tokens(self) -> list[str]:
        """Every token LatentRAG adds to the generator vocabulary, in a fixed order."""
        return self.thought_tokens + self.subquery_tokens + self.structural_tokens

    @property
    def query_action_token_id(self) -> int | None:
        """Id of the ⟨query⟩ action, which is the first sub-query placeholder (§3 [D])."""
        return None if self.subquery_token_ids is None else self.subquery_token_ids[0]

    @property
    def answer_action_token_id(self) -> int | None:
        """Id of the ⟨answer⟩ action, which is the `<answer>` tag (§3 [D])."""
        return self.answer_start_token_id


def _check_int(config: LatentRAGConfig, name: str, minimum: int) -> None:
    value = getattr(config, name)
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"`{name}` must be an integer >= {minimum}, got {value!r}.")


__all__ = ["LatentRAGConfig"]
