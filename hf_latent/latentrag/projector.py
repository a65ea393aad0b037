"""LatentRAG's projector: one bidirectional pre-LN transformer block, a linear map and a learnable scale (§5).

Copied next to the weights by `save_pretrained` together with `modeling_latentrag.py` (which imports it relatively),
so it imports only torch, transformers and the standard library.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F
from transformers.activations import ACT2FN


def default_projector_num_heads(hidden_size: int) -> int:
    """Heads of a projector block: d / 128 (28 for 3584, specs/latentrag.md §5 [D]), at least 1.

    When d / 128 does not divide d (e.g. SmolLM2's 576 gives 4.5 → 4), the largest divisor of d below it is used,
    so tiny test models (d = 64) get one head.
    """
    target = max(1, hidden_size // 128)
    return max(divisor for divisor in range(1, target + 1) if hidden_size % divisor == 0)


class LatentProjector(nn.Module):
    r"""
    Maps a set of latent vectors to another embedding space: `Proj_ret`, `Proj_τ` and `Proj_s` of LatentRAG.

    Structure (specs/latentrag.md §5: [P] one bidirectional self-attention layer plus a position-wise FFN; [D] the
    internals): `x ← x + MHSA(LN(x))` with no causal mask, `x ← x + FFN(LN(x))` (width `intermediate_size`,
    GELU), then `LN → Linear(hidden_size, output_size) → · scale`. The learnable scalar `scale` is initialised by
    [`~LatentProjector.reset_output_scale`] so that the output RMS matches the RMS of the target embedding table's
    rows. No dropout.

    Args:
        hidden_size (`int`): d_LLM, the width of the input latents.
        output_size (`int`): the width of the target space (retriever input embeddings, or d_LLM).
        num_heads (`int`, *optional*): attention heads; default [`default_projector_num_heads`].
        intermediate_size (`int`, *optional*): FFN width; default `4 * hidden_size`.
        hidden_act (`str`, *optional*, defaults to `"gelu"`): FFN activation.
        layer_norm_eps (`float`, *optional*, defaults to `1e-5`): LayerNorm epsilon.
    """

    def __init__(
        self,
        hidden_size: int,
        output_size: int,
        num_heads: int | None = None,
        intermediate_size: int | None = None,
        hidden_act: str = "gelu",
        layer_norm_eps: float = 1e-5,
    ):
        super().__init__()
        num_heads = num_heads if num_heads is not None else default_projector_num_heads(hidden_size)
        if hidden_size % num_heads != 0:
            raise ValueError(f"Projector heads ({num_heads}) must divide the hidden size ({hidden_size}).")
        self.hidden_size = hidden_size
        self.output_size = output_size
        self.num_heads = num_heads
        self.head_dim = hidden_size // num_heads
        intermediate_size = intermediate_size if intermediate_size is not None else 4 * hidden_size
        self.attention_norm = nn.LayerNorm(hidden_size, eps=layer_norm_eps)
        self.q_proj = nn.Linear(hidden_size, hidden_size)
        self.k_proj = nn.Linear(hidden_size, hidden_size)
        self.v_proj = nn.Linear(hidden_size, hidden_size)
        self.o_proj = nn.Linear(hidden_size, hidden_size)
        self.ffn_norm = nn.LayerNorm(hidden_size, eps=layer_norm_eps)
        self.fc1 = nn.Linear(hidden_size, intermediate_size)
        self.act = ACT2FN[hidden_act]
        self.fc2 = nn.Linear(intermediate_size, hidden_size)
        self.final_norm = nn.LayerNorm(hidden_size, eps=layer_norm_eps)
        self.output_proj = nn.Linear(hidden_size, output_size)
        self.output_scale = nn.Parameter(torch.ones(1))

    def forward(self, latents: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Project a batch of latent sets.

        Args:
            latents (`torch.Tensor` of shape `(batch, num_latents, hidden_size)`): e.g. the n sub-query states of
                every retrieval step, `(num_retrievals, num_subquery_tokens, hidden)`.
            attention_mask (`torch.Tensor` of shape `(batch, num_latents)`, *optional*): 1 for real latents; `None`
                means all are real (the usual case: every step has exactly m or n latents).

        Returns:
            `torch.Tensor` of shape `(batch, num_latents, output_size)`, in the dtype of the projector weights.
        """
        if latents.dim() != 3 or latents.shape[-1] != self.hidden_size:
            raise ValueError(
                f"latents must have shape (batch, num_latents, {self.hidden_size}), got {tuple(latents.shape)}."
            )
        x = latents.to(self.q_proj.weight.dtype)
        batch, length, _ = x.shape
        h = self.attention_norm(x)

        def heads(t: torch.Tensor) -> torch.Tensor:
            return t.view(batch, length, self.num_heads, self.head_dim).transpose(1, 2)

        mask = None
        if attention_mask is not None:
            # Bidirectional: only padding keys are masked (boolean mask, True = attend).
            mask = attention_mask.to(torch.bool)[:, None, None, :]
        attended = F.scaled_dot_product_attention(
            heads(self.q_proj(h)), heads(self.k_proj(h)), heads(self.v_proj(h)), attn_mask=mask
        )
        x = x + self.o_proj(attended.transpose(1, 2).reshape(batch, length, self.hidden_size))
        x = x + self.fc2(self.act(self.fc1(self.ffn_norm(x))))
        return self.output_proj(self.final_norm(x)) * self.output_scale

    @torch.no_grad()
    def reset_output_scale(self, target_rms: float) -> None:
        """Set `scale` so that the expected output RMS equals `target_rms`.

        After the final LayerNorm every coordinate has (about) unit variance, so `Linear(x)` has expected mean square
        `||W||_F² / output_size + mean(b²)`; the scale divides that RMS out and multiplies `target_rms` in.

        Args:
            target_rms (`float`): RMS of the rows of the target embedding table (`sqrt(mean(E²))`).
        """
        weight, bias = self.output_proj.weight.float(), self.output_proj.bias
        mean_square = weight.pow(2).sum() / self.output_size
        if bias is not None:
            mean_square = mean_square + bias.float().pow(2).mean()
        predicted = math.sqrt(max(mean_square.item(), 1e-12))
        self.output_scale.fill_(float(target_rms) / predicted)


__all__ = ["LatentProjector", "default_projector_num_heads"]
