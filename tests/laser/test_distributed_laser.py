"""Tests for hf_latent/laser/distributed.py: the no-op paths and a real 2-process gloo run (specs/laser.md §4)."""

from __future__ import annotations

import socket
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F
from torch import nn

from hf_latent.laser.distributed import gather_with_grad, get_world_size, global_loss_scale
from hf_latent.laser.losses import LaserLoss, LatentContrastiveLoss


G, D_IN, D, K = 2, 6, 8, 3
# Per-rank query counts: an even split and an uneven one (a short last batch).
SPLITS = [(2, 2), (3, 1)]
# Which TinyEncoder weights each loss trains (spec §4 gradient flow: T gets none).
TRAINED = {"info_nce": {"latent.weight"}, "laser": {"latent.weight", "steps.weight", "explicit.weight"}}


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class TinyEncoder(nn.Module):
    """A linear "model" with a latent view (Q, P, H) and an explicit view (Q*, T), float64 for tight checks."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.latent = nn.Linear(D_IN, D, bias=False, dtype=torch.float64)
        self.steps = nn.Linear(D_IN, K * D, bias=False, dtype=torch.float64)
        self.explicit = nn.Linear(D_IN, D, bias=False, dtype=torch.float64)
        self.segments = nn.Linear(D_IN, K * D, bias=False, dtype=torch.float64)

    def forward(self, x_query: torch.Tensor, x_passage: torch.Tensor) -> dict[str, torch.Tensor]:
        batch = x_query.shape[0]
        return {
            "query_embeddings": F.normalize(self.latent(x_query), dim=-1),
            "passage_embeddings": F.normalize(self.latent(x_passage), dim=-1),
            "teacher_query_embeddings": F.normalize(self.explicit(x_query), dim=-1),
            "latent_states": self.steps(x_query).view(batch, K, D),
            "teacher_segment_states": self.segments(x_query).view(batch, K, D),
        }


def _data(num_queries: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    x_query = torch.randn(num_queries, D_IN, generator=generator, dtype=torch.float64)
    x_passage = torch.randn(num_queries * G, D_IN, generator=generator, dtype=torch.float64)
    return x_query, x_passage


def _step(
    model: TinyEncoder, x_query: torch.Tensor, x_passage: torch.Tensor, loss_fn: Callable, gather: bool
) -> tuple[float, dict[str, torch.Tensor]]:
    """One training step; returns the unscaled loss and the (DDP-averaged when distributed) gradients."""
    model.zero_grad()
    outputs = model(x_query, x_passage)
    if gather:
        outputs = {name: gather_with_grad(tensor) for name, tensor in outputs.items()}
    loss = loss_fn(outputs)
    (loss * global_loss_scale()).backward()
    grads = {}
    for name, param in model.named_parameters():
        grad = param.grad if param.grad is not None else torch.zeros_like(param)
        if gather:  # what DDP does: average the gradients over ranks
            dist.all_reduce(grad)
            grad = grad / get_world_size()
        grads[name] = grad.clone()
    return loss.item(), grads


def _loss_fns() -> dict[str, Callable[[dict[str, torch.Tensor]], torch.Tensor]]:
    """The latent InfoNCE alone (on Q, P) and the full LaSER objective (on Q, P, Q*, H, T)."""
    info_nce, laser = LatentContrastiveLoss(group_size=G), LaserLoss(group_size=G)
    return {
        "info_nce": lambda outputs: info_nce(outputs["query_embeddings"], outputs["passage_embeddings"]),
        "laser": lambda outputs: laser(**outputs).loss,
    }


def _worker(rank: int, world_size: int, init_method: str, out_dir: str) -> None:
    torch.set_num_threads(1)  # two processes on a 2-core machine; the tensors are tiny
    dist.init_process_group("gloo", init_method=init_method, rank=rank, world_size=world_size)
    try:
        results = {}
        for split in SPLITS:
            x_query, x_passage = _data(sum(split))
            start, local = sum(split[:rank]), split[rank]
            local_query = x_query[start : start + local]
            local_passage = x_passage[start * G : (start + local) * G]
            for name, loss_fn in _loss_fns().items():
                model = TinyEncoder()
                results[(split, name)] = _step(model, local_query, local_passage, loss_fn, gather=True)
            # The gathered tensor: rank order, local slice with a graph, other slices detached.
            local_tensor = torch.full((local, 2), float(rank), dtype=torch.float64, requires_grad=True)
            gathered = gather_with_grad(local_tensor)
            gathered.sum().backward()
            results[(split, "gathered")] = (gathered.detach(), local_tensor.grad.clone())
        torch.save(results, Path(out_dir) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def test_gather_is_a_noop_without_process_group():
    assert not dist.is_initialized()
    tensor = torch.randn(3, 4, requires_grad=True)
    assert gather_with_grad(tensor) is tensor
    assert get_world_size() == 1 and global_loss_scale() == 1


def test_gather_is_a_noop_at_world_size_1():
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{_free_port()}", rank=0, world_size=1)
    try:
        tensor = torch.randn(3, 4, requires_grad=True)
        assert gather_with_grad(tensor) is tensor
        assert get_world_size() == 1 and global_loss_scale() == 1
    finally:
        dist.destroy_process_group()


def test_two_process_gather_matches_single_process(tmp_path):
    """Per-rank batch b, gathered global loss × world_size, DDP-averaged gradient == one process on the 2b batch."""
    world_size = 2
    mp.spawn(
        _worker, args=(world_size, f"tcp://127.0.0.1:{_free_port()}", str(tmp_path)), nprocs=world_size, join=True
    )
    per_rank = [torch.load(tmp_path / f"rank{rank}.pt", weights_only=False) for rank in range(world_size)]

    for split in SPLITS:
        x_query, x_passage = _data(sum(split))
        for name, loss_fn in _loss_fns().items():
            ref_loss, ref_grads = _step(TinyEncoder(), x_query, x_passage, loss_fn, gather=False)
            for rank in range(world_size):
                loss, grads = per_rank[rank][(split, name)]
                assert loss == pytest.approx(ref_loss, abs=1e-5), (split, name, rank)  # the logged, unscaled value
                for param_name, ref_grad in ref_grads.items():
                    # T (from `segments`) never gets gradient; InfoNCE alone trains only the latent view.
                    assert bool(ref_grad.abs().sum() > 0) == (param_name in TRAINED[name]), (name, param_name)
                    torch.testing.assert_close(grads[param_name], ref_grad, atol=1e-5, rtol=1e-5)

        expected = torch.cat(
            [torch.full((size, 2), float(rank), dtype=torch.float64) for rank, size in enumerate(split)]
        )
        for rank in range(world_size):
            gathered, local_grad = per_rank[rank][(split, "gathered")]
            torch.testing.assert_close(gathered, expected)
            # Only the local slice is differentiable: its grad is all ones, the other slices contributed nothing.
            torch.testing.assert_close(local_grad, torch.ones(split[rank], 2, dtype=torch.float64))
