"""Data-parallel helpers: sharded optimizer state (ZeRO-1) around :class:`LowRankAdamW`.

Under ``DistributedDataParallel`` every rank has the same averaged gradient, so every tracker
computes the same basis on every rank: the SVD and Grassmannian trackers because their input is
identical, the random tracker because it seeds from (seed, parameter index, refresh count) on a
CPU generator. Nothing needs to be communicated for the bases.

:func:`build_zero_optimizer` wraps the optimizer in ``torch.distributed.optim.ZeroRedundancyOptimizer``,
which assigns whole parameters to ranks, so each rank keeps the low-rank state (basis and
moments) of whole matrices only, and broadcasts updated parameters after each step. Parameter
names and global indices are handed to each rank's shard, so random bases and staggered refresh
steps are the same as in the unsharded optimizer.

FSDP2 (``fully_shard``) shards gradients: :class:`LowRankAdamW` rejects sharded parameters in
low-rank groups, because projecting one shard of a gradient is not the projection of the matrix.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

import torch
from torch import nn
from torch.distributed.optim import ZeroRedundancyOptimizer

from lowrank.build import load_optimizer_config, select_parameters
from lowrank.optim_config import OptimizerConfig
from lowrank.optimizers.lowrank_adamw import LowRankAdamW

__all__ = ["build_zero_optimizer"]


def build_zero_optimizer(
    model: nn.Module | Iterable[tuple[str, torch.Tensor]],
    config: str | Path | dict | OptimizerConfig,
    *,
    path: str = "",
) -> ZeroRedundancyOptimizer:
    """Build ``config``'s optimizer with its state sharded across the data-parallel ranks.

    Call it on every rank after ``torch.distributed.init_process_group``. To checkpoint, call
    ``optimizer.consolidate_state_dict(to=0)`` on every rank, then ``optimizer.state_dict()`` on
    rank 0; ``optimizer.load_state_dict`` on every rank restores each rank's shard.
    """
    config = load_optimizer_config(config, path)
    named = model.named_parameters() if isinstance(model, nn.Module) else model
    groups = select_parameters(named, config, path=path)

    names: dict[torch.Tensor, str] = {}
    indices: dict[torch.Tensor, int] = {}
    for group in groups:
        for param, name in zip(group["params"], group.pop("names")):
            names[param] = name
            indices[param] = len(indices)

    def shard_optimizer(shard_groups: list[dict], **defaults) -> LowRankAdamW:
        for group in shard_groups:
            group["names"] = [names[param] for param in group["params"]]
            group["param_indices"] = [indices[param] for param in group["params"]]
        return LowRankAdamW(shard_groups, **defaults)

    return ZeroRedundancyOptimizer(
        groups,
        optimizer_class=shard_optimizer,
        lr=config.lr,
        betas=config.betas,
        eps=config.eps,
        weight_decay=config.weight_decay,
    )
