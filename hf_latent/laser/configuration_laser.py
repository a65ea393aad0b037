"""LaSER model configuration.

Jin et al., "LaSER: Internalizing Explicit Reasoning into Latent Space for Dense Retrieval", arXiv 2603.01425.
The names follow specs/laser.md §13. This file is copied next to the weights by `save_pretrained` (custom code for
`trust_remote_code=True`), so it imports only transformers and the standard library.
"""

from __future__ import annotations

from transformers import AutoConfig, PreTrainedConfig
from transformers.configuration_utils import SubConfigSpec


# specs/laser.md §2.2 [C]: queries are `Instruct: {instruction}\nQuery: {query}`; documents are raw text.
DEFAULT_QUERY_TEMPLATE = "Instruct: {instruction}\nQuery: {query}"
# The released code's fallback instruction, typo included ("Retrieval", sic).
DEFAULT_INSTRUCTION = "Retrieval relevant passage for the given query."

LATENT_VARIANTS = ("released", "paper")
POOLING_MODES = ("mean",)
SEGMENT_DOWNSAMPLING_MODES = ("linspace", "paper")


class LaserConfig(PreTrainedConfig):
    r"""
    Configuration of a [`LaserModel`]: a causal-LM backbone plus the hyperparameters of LaSER's latent thinking.

    LaSER (Jin et al., arXiv 2603.01425) encodes every text with a short run of *latent thinking*: after the
    prompt, the backbone is fed soft tokens (the LM-head distribution mixed over the input-embedding table), and the
    embedding is the L2-normalised mean of the last-layer hidden states of the thinking steps.

    > Parameters that describe the backbone

    backbone_config (`dict` or [`PreTrainedConfig`], *optional*):
        Configuration of the causal LM (any `AutoModelForCausalLM` architecture with an LM head). A `dict` must hold
        a `model_type`. Stored as a nested config, so `LaserModel(config)` / `from_config` build a random backbone
        and `save_pretrained` round-trips it.

    > Parameters that control the latent loop

    num_latent_steps (`int`, *optional*, defaults to `3`):
        K, the number of pooled latent states (also a per-call argument of `LaserModel.forward`). `1` is plain
        last-token pooling. Must be >= 1.
    latent_variant (`str`, *optional*, defaults to `"released"`):
        `"released"` (specs/laser.md §2.3, the released checkpoints): K pooled states h_0..h_{K-1} with K-1 soft
        tokens fed, i.e. K forward calls. `"paper"` (§2.4): K soft tokens fed and the K post-soft-token states
        h_1..h_K pooled, i.e. K+1 forward calls.
    pooling (`str`, *optional*, defaults to `"mean"`):
        How the K latent states are pooled. Only `"mean"` (the method's definition) is supported.
    normalize (`bool`, *optional*, defaults to `True`):
        L2-normalise the pooled embedding (after the mean), so that dot product = cosine similarity.

    > Parameters that control the input formatting (specs/laser.md §2.2)

    query_template (`str`, *optional*, defaults to `"Instruct: {instruction}\nQuery: {query}"`):
        Format string applied to queries (not documents). Must contain `{query}`; may contain `{instruction}`.
    default_instruction (`str`, *optional*, defaults to `"Retrieval relevant passage for the given query."`):
        Instruction used for queries when none is given (the released code's fallback, sic).
    use_chat_template (`bool`, *optional*, defaults to `True`):
        Wrap every text as one user turn in the tokenizer's chat template, with the generation prompt. Tokenizers
        without a chat template use the raw text.
    enable_thinking (`bool`, *optional*, defaults to `False`):
        Value passed as `enable_thinking` to chat templates that support it (Qwen3). `False` makes the generation
        prompt end in the empty think block `<think>\n\n</think>\n\n`, as in LaSER's training and evaluation.
    query_max_length (`int`, *optional*, defaults to `8192`):
        Default maximum length, in tokens and template included, of a query in `LaserModel.encode` (evaluation used
        8192; training uses 512, set by the training arguments). Longer texts lose the end of their *content*, never
        the template suffix (specs/laser.md §6 [D]).
    passage_max_length (`int`, *optional*, defaults to `8192`):
        Same for documents.

    > Parameters of the explicit (teacher) view, used in training only (specs/laser.md §3)

    explicit_max_length (`int`, *optional*, defaults to `1024`):
        The templated query followed by the chain of thought is right-truncated to this many tokens before one EOS
        is appended (so at most `explicit_max_length + 1` tokens).
    segment_separator (`str`, *optional*, defaults to `"\n\n"`):
        A CoT position is a segment boundary when its id equals the *last* token of `tokenizer.encode(separator)`.
    segment_downsampling (`str`, *optional*, defaults to `"linspace"`):
        How M segment features are mapped to K targets: `"linspace"` (released code, `floor(linspace(0, M-1, K))`)
        or `"paper"` (`floor(i*M/K)`, 1-based, clamped), see specs/laser.md §3.3.

    Example:

    ```python
    >>> from transformers import AutoConfig
    >>> from hf_latent.laser import LaserConfig, LaserModel

    >>> backbone_config = AutoConfig.for_model("qwen3", hidden_size=64, intermediate_size=128, num_hidden_layers=2,
    ...     num_attention_heads=4, num_key_value_heads=2, head_dim=16, vocab_size=512)
    >>> config = LaserConfig(backbone_config=backbone_config, num_latent_steps=3)
    >>> model = LaserModel(config)  # random tiny backbone
    ```
    """

    model_type = "laser"
    # Nested causal-LM config. `optional=True`: `LaserConfig()` without a backbone is valid (the model then refuses
    # to build); there is no sensible default backbone architecture to invent here.
    sub_configs_defaults = {
        "backbone_config": SubConfigSpec(config_class=AutoConfig, model_type="qwen3", optional=True),
    }

    backbone_config: dict | PreTrainedConfig | None = None
    # Latent loop (specs/laser.md §2.3-2.4).
    num_latent_steps: int = 3
    latent_variant: str = "released"
    pooling: str = "mean"
    normalize: bool = True
    # Input formatting (specs/laser.md §2.2).
    query_template: str = DEFAULT_QUERY_TEMPLATE
    default_instruction: str = DEFAULT_INSTRUCTION
    use_chat_template: bool = True
    enable_thinking: bool = False
    query_max_length: int = 8192
    passage_max_length: int = 8192
    # Explicit view (specs/laser.md §3).
    explicit_max_length: int = 1024
    segment_separator: str = "\n\n"
    segment_downsampling: str = "linspace"

    def __post_init__(self, **kwargs):
        _check_num_latent_steps(self.num_latent_steps)
        if self.latent_variant not in LATENT_VARIANTS:
            raise ValueError(f"`latent_variant` must be one of {LATENT_VARIANTS}, got {self.latent_variant!r}.")
        if self.pooling not in POOLING_MODES:
            raise ValueError(f"`pooling` must be one of {POOLING_MODES}, got {self.pooling!r}.")
        if self.segment_downsampling not in SEGMENT_DOWNSAMPLING_MODES:
            raise ValueError(
                f"`segment_downsampling` must be one of {SEGMENT_DOWNSAMPLING_MODES}, got {self.segment_downsampling!r}."
            )
        for name in ("query_max_length", "passage_max_length", "explicit_max_length"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"`{name}` must be a positive integer, got {value!r}.")
        if "{query}" not in self.query_template:
            raise ValueError(f"`query_template` must contain a `{{query}}` placeholder, got {self.query_template!r}.")
        if not self.segment_separator:
            raise ValueError("`segment_separator` must be a non-empty string.")
        super().__post_init__(**kwargs)


def _check_num_latent_steps(num_latent_steps: object) -> None:
    if isinstance(num_latent_steps, bool) or not isinstance(num_latent_steps, int) or num_latent_steps < 1:
        raise ValueError(
            f"`num_latent_steps` (K) must be an integer >= 1 (1 = plain last-token pooling), got {num_latent_steps!r}."
        )


__all__ = ["LaserConfig"]
