"""Worker functions for the two-process tests; each runs in its own process on the gloo backend."""

from __future__ import annotations

import gc
import os
from pathlib import Path

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

import lowrank
from lowrank.distributed import build_zero_optimizer

STEPS = 8
INTERVAL = 3


class Model(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.up = torch.nn.Linear(24, 40)  # tall weight
        self.mid = torch.nn.Linear(40, 40)  # square weight
        self.down = torch.nn.Linear(40, 16)  # wide weight

    def forward(self, inputs):
        return self.down(torch.tanh(self.mid(torch.tanh(self.up(inputs)))))


def config(tracker: str, transport: str = "projection_aware", residual: str = "recovery_scaling") -> dict:
    rule = {
        "match": ["up.weight", "mid.weight", "down.weight"],
        "rank": 6,
        "update_interval": INTERVAL,
        "stagger": True,
        "tracker": tracker,
        "transport": transport,
        "residual": residual,
    }
    return {"lr": 1e-2, "weight_decay": 0.01, "groups": [rule]}


def _init(rank: int, world_size: int, init_file: str) -> None:
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size)


def _run_then_close(body, rank: int, world_size: int, init_file: str, *args) -> None:
    """Run ``body`` in an initialized process group, then destroy the group.

    The group is destroyed only after ``body`` has returned and its DDP models are freed. Freeing a
    DDP model after the group was destroyed drops the group's last reference inside Python's
    deallocator, and with torch 2.13 that can deadlock on the GIL while gloo's worker thread exits.
    """
    _init(rank, world_size, init_file)
    try:
        body(rank, *args)
        dist.barrier()
    finally:
        gc.collect()
        dist.destroy_process_group()


def _train(model, optimizer, rank: int, steps: range) -> list[float]:
    losses = []
    for step in steps:
        generator = torch.Generator().manual_seed(1000 * step + rank)  # each rank its own data
        inputs, targets = torch.randn(8, 24, generator=generator), torch.randn(8, 16, generator=generator)
        loss = torch.nn.functional.mse_loss(model(inputs), targets)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    return losses


def _fresh_ddp_model() -> tuple[Model, DistributedDataParallel]:
    torch.manual_seed(0)
    model = Model()
    return model, DistributedDataParallel(model)


def ddp_bases(rank: int, world_size: int, init_file: str, out_dir: str, tracker: str) -> None:
    """Train under DDP and save this rank's parameters and bases."""
    _run_then_close(_ddp_bases, rank, world_size, init_file, out_dir, tracker)


def _ddp_bases(rank: int, out_dir: str, tracker: str) -> None:
    model, ddp = _fresh_ddp_model()
    optimizer = lowrank.build_optimizer(model, config(tracker))
    _train(ddp, optimizer, rank, range(STEPS))

    bases = {name: optimizer.state[p]["basis"] for name, p in model.named_parameters() if "basis" in optimizer.state[p]}
    params = {name: p.detach() for name, p in model.named_parameters()}
    torch.save({"params": params, "bases": bases}, Path(out_dir) / f"rank{rank}.pt")


def zero_matches_unsharded(rank: int, world_size: int, init_file: str, out_dir: str, tracker: str) -> None:
    """Train the same data with and without ZeroRedundancyOptimizer; save both results."""
    _run_then_close(_zero_matches_unsharded, rank, world_size, init_file, out_dir, tracker)


def _zero_matches_unsharded(rank: int, out_dir: str, tracker: str) -> None:
    model, ddp = _fresh_ddp_model()
    _train(ddp, lowrank.build_optimizer(model, config(tracker)), rank, range(STEPS))
    unsharded = {name: p.detach().clone() for name, p in model.named_parameters()}

    model, ddp = _fresh_ddp_model()
    zero = build_zero_optimizer(model, config(tracker))
    _train(ddp, zero, rank, range(STEPS))
    sharded = {name: p.detach().clone() for name, p in model.named_parameters()}
    owned = [n for n, p in model.named_parameters() if p in zero.optim.state and "basis" in zero.optim.state[p]]

    torch.save({"unsharded": unsharded, "sharded": sharded, "owned": owned}, Path(out_dir) / f"rank{rank}.pt")


def zero_save_and_resume(rank: int, world_size: int, init_file: str, out_dir: str, tracker: str) -> None:
    """Checkpoint a ZeRO run halfway on rank 0, resume it on both ranks, and save the end state."""
    _run_then_close(_zero_save_and_resume, rank, world_size, init_file, out_dir, tracker)


def _zero_save_and_resume(rank: int, out_dir: str, tracker: str) -> None:
    half = STEPS // 2
    checkpoint_path = Path(out_dir) / "checkpoint.pt"

    model, ddp = _fresh_ddp_model()
    zero = build_zero_optimizer(model, config(tracker))
    expected_losses = _train(ddp, zero, rank, range(STEPS))
    expected = {name: p.detach().clone() for name, p in model.named_parameters()}

    model, ddp = _fresh_ddp_model()
    zero = build_zero_optimizer(model, config(tracker))
    losses = _train(ddp, zero, rank, range(half))
    zero.consolidate_state_dict(to=0)
    if rank == 0:
        torch.save({"model": model.state_dict(), "optimizer": zero.state_dict()}, checkpoint_path)
    dist.barrier()

    checkpoint = torch.load(checkpoint_path, weights_only=True)
    model, ddp = _fresh_ddp_model()
    model.load_state_dict(checkpoint["model"])
    zero = build_zero_optimizer(model, config(tracker))
    zero.load_state_dict(checkpoint["optimizer"])
    losses += _train(ddp, zero, rank, range(half, STEPS))
    resumed = {name: p.detach().clone() for name, p in model.named_parameters()}

    torch.save(
        {"expected": expected, "resumed": resumed, "expected_losses": expected_losses, "losses": losses},
        Path(out_dir) / f"rank{rank}.pt",
    )
