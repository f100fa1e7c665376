"""Learning-rate schedule: linear warmup, then cosine decay to a floor, counted in optimizer updates."""

from __future__ import annotations

import math

import torch

from lowrank.train.config import ScheduleConfig

__all__ = ["build_scheduler", "lr_factor"]


def lr_factor(step: int, max_steps: int, config: ScheduleConfig) -> float:
    """Return the factor on the peak learning rate for the update with index ``step`` (0-based).

    Warmup ramps linearly to 1 over ``warmup_steps`` updates, starting at ``1 / warmup_steps`` so
    that the first update is not wasted. ``cosine`` then decays to ``min_lr_ratio`` at
    ``max_steps`` and stays there; ``constant`` stays at 1.
    """
    if step < config.warmup_steps:
        return (step + 1) / config.warmup_steps
    if config.kind == "constant":
        return 1.0
    decay_steps = max(1, max_steps - config.warmup_steps)
    progress = min(1.0, (step - config.warmup_steps) / decay_steps)
    cosine = 0.5 * (1.0 + math.cos(math.pi * progress))
    return config.min_lr_ratio + (1.0 - config.min_lr_ratio) * cosine


def build_scheduler(
    optimizer: torch.optim.Optimizer, max_steps: int, config: ScheduleConfig
) -> torch.optim.lr_scheduler.LambdaLR:
    """Wrap ``optimizer`` in a ``LambdaLR``, which scales each parameter group's own initial ``lr``.

    Call ``scheduler.step()`` once per applied optimizer update (never for a skipped one).
    """
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(step, max_steps, config))
