"""Cross-process gathering for LaSER's in-batch losses (specs/laser.md §4 "Gather [C]").

LaSER all-gathers Q, P, Q*, H and T across processes so every rank scores its queries against the global
passage pool. The recipe of the released code, reproduced here:

1. [`gather_with_grad`] concatenates every rank's tensor along dim 0 (rank order); only the **local** slice keeps
   its autograd graph, the other ranks' slices are detached copies.
2. Every rank computes the same *global* loss from the gathered tensors and multiplies it by
   [`global_loss_scale`] (= world size) before `backward`. Rank r's backward then yields `∂L/∂θ` through its own
   slice only; DDP averages over ranks, so the world-size factor turns that average into the gradient of the
   global loss, `Σ_r ∂L/∂θ|_r = ∂L/∂θ`.
3. Log the **unscaled** loss.

Gradient accumulation does not enlarge the pool: each micro-step gathers only its own batches.
"""

from __future__ import annotations

import torch
import torch.distributed as dist


def _is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def get_world_size() -> int:
    """Number of processes in the default group, or `1` when `torch.distributed` is not initialised."""
    return dist.get_world_size() if _is_distributed() else 1


def global_loss_scale() -> int:
    """The factor (the world size) to multiply the gathered global loss by before `backward`.

    With [`gather_with_grad`], each rank back-propagates the global loss only through its local slice; DDP then
    *averages* gradients over ranks, so the loss must be scaled by the world size for the result to equal the
    gradient of the global loss (specs/laser.md §4). Returns `1` when not distributed. Log the unscaled loss.

    Example:

        ```python
        loss, components = laser_loss(**{name: gather_with_grad(t) for name, t in outputs.items()})
        (loss * global_loss_scale()).backward()
        log({"loss": loss.item(), **{name: value.item() for name, value in components.items()}})
        ```
    """
    return get_world_size()


def gather_with_grad(tensor: torch.Tensor) -> torch.Tensor:
    """All-gather `tensor` along dim 0 across processes, keeping autograd on the local slice only.

    The result is `cat([t_0, t_1, ..., t_{W-1}], dim=0)` in rank order, where `t_rank` is this process's own
    `tensor` (graph kept) and the others are detached copies received from their ranks. Ranks may hold different
    sizes along dim 0 (e.g. a short last batch); all other dimensions, the dtype and the device must match.

    This is a no-op returning `tensor` itself when `torch.distributed` is unavailable, not initialised, or the
    world size is 1. Combine with [`global_loss_scale`] before `backward`.

    Args:
        tensor (`torch.Tensor` of shape `(local_batch, ...)`):
            This process's slice, e.g. Q `(batch, hidden)`, P `(batch * group_size, hidden)`, H
            `(batch, num_latent_steps, hidden)`.

    Returns:
        `torch.Tensor` of shape `(sum of local_batch over ranks, ...)`.
    """
    if not _is_distributed():
        return tensor
    world_size = dist.get_world_size()
    if world_size == 1:
        return tensor
    tensor_c = tensor.contiguous()
    # Sizes along dim 0 first, so uneven local batches can be padded to a common shape for all_gather.
    local_size = torch.tensor([tensor_c.shape[0]], dtype=torch.long, device=tensor_c.device)
    sizes = [torch.zeros_like(local_size) for _ in range(world_size)]
    dist.all_gather(sizes, local_size)
    sizes_list = [int(size.item()) for size in sizes]
    max_size = max(sizes_list)
    send = tensor_c.detach()
    if send.shape[0] < max_size:
        padding = send.new_zeros((max_size - send.shape[0], *send.shape[1:]))
        send = torch.cat([send, padding], dim=0)
    received = [torch.empty_like(send) for _ in range(world_size)]
    dist.all_gather(received, send)
    slices = [chunk[:size] for chunk, size in zip(received, sizes_list)]
    slices[dist.get_rank()] = tensor  # the local slice keeps its autograd graph
    return torch.cat(slices, dim=0)
