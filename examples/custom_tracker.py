"""Register a custom tracker and a custom moment transport, then train a small model with them.

The tracker, ``frozen_svd``, takes GaLore's SVD basis for its first ``refreshes`` refreshes and
keeps the last one from then on. The transport, ``rotate``, carries both moments into the new basis
with the change of basis ``C = S_newᵀ S_old``: ``m ← C m`` and ``v ← (C∘C) v``, which treats the
coordinates of ``v`` as independent. A YAML string selects both by their registered names, the
same way the built-in strategies are selected.

Run it from the repository root::

    python examples/custom_tracker.py

It exits with status 1 if an invalid option is accepted, the loss does not fall by half, or the
basis moves after it was frozen.
"""

from __future__ import annotations

import dataclasses
import sys

import torch
from torch import nn

import lowrank
from lowrank.diagnostics import largest_principal_angle
from lowrank.trackers import top_singular_basis


@lowrank.register_tracker("frozen_svd")
@dataclasses.dataclass
class FrozenSVDTracker(lowrank.Tracker):
    """Recompute the SVD basis for the first ``refreshes`` refreshes, then keep it."""

    refreshes: int = 2
    """Refreshes that recompute the basis. Later refreshes return the basis unchanged."""

    def __post_init__(self):
        # Options come from YAML, so a ValueError here becomes a ConfigError that names the key's path.
        if self.refreshes < 0:
            raise ValueError(f"refreshes must be >= 0, got {self.refreshes}")

    def init(self, grad: torch.Tensor, rank: int, context: lowrank.TrackerContext) -> torch.Tensor:
        return top_singular_basis(grad, rank, context.transposed)

    def update(
        self, basis: torch.Tensor, grad: torch.Tensor, rank: int, context: lowrank.TrackerContext
    ) -> torch.Tensor:
        # context.refresh counts earlier basis choices of this parameter, the first basis included.
        if context.refresh <= self.refreshes:
            return top_singular_basis(grad, rank, context.transposed)
        return basis


def rotate_moments(
    exp_avg: torch.Tensor, exp_avg_sq: torch.Tensor, change_of_basis: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Return ``(C m, (C∘C) v)`` for moments ``(r, k)`` and ``C = S_newᵀ S_old`` ``(r, r)``."""
    return change_of_basis @ exp_avg, change_of_basis.square() @ exp_avg_sq


@lowrank.register_transport("rotate")
@dataclasses.dataclass
class RotateTransport(lowrank.MomentTransport):
    """Rotate the first moment with the basis and map the second with the squared coefficients."""

    def transport(
        self,
        exp_avg: torch.Tensor,
        exp_avg_sq: torch.Tensor,
        moment_step: int,
        old_basis: torch.Tensor,
        new_basis: torch.Tensor,
        betas: tuple[float, float],
    ) -> int:
        change_of_basis = new_basis.T @ old_basis  # C: (r, r)
        new_exp_avg, new_exp_avg_sq = rotate_moments(exp_avg, exp_avg_sq, change_of_basis)
        exp_avg.copy_(new_exp_avg)
        exp_avg_sq.copy_(new_exp_avg_sq)
        return moment_step  # the moments keep their bias-correction count


OPTIMIZER_YAML = """
lr: 1.0e-2
groups:
  - name: hidden_layers
    match: ["layers.0.weight", "layers.2.weight"]
    rank: 4
    update_interval: 10
    tracker: {name: frozen_svd, refreshes: 2}
    transport: rotate
"""

STEPS = 60


class SmallRegressor(nn.Module):
    def __init__(self):
        super().__init__()
        self.layers = nn.Sequential(nn.Linear(16, 48), nn.Tanh(), nn.Linear(48, 8))

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.layers(inputs)


def main() -> int:
    torch.manual_seed(0)
    inputs = torch.randn(512, 16)
    targets = torch.tanh(inputs @ torch.randn(16, 8) / 4)

    model = SmallRegressor()
    optimizer = lowrank.build_optimizer(model, OPTIMIZER_YAML)

    # Options of a registered strategy are checked like every other key.
    try:
        lowrank.build_optimizer(model, OPTIMIZER_YAML.replace("refreshes: 2", "refreshes: -1"))
    except lowrank.ConfigError as error:
        print(f"invalid option rejected: {error}")
    else:
        print("FAILED: refreshes: -1 was accepted", file=sys.stderr)
        return 1

    refreshes = []  # (step, parameter name, angle turned in radians, basis unchanged)

    def record_refresh(info: lowrank.RefreshInfo) -> None:
        if info.old_basis is not None:
            unchanged = torch.equal(info.old_basis, info.new_basis)
            angle = largest_principal_angle(info.old_basis, info.new_basis)
            refreshes.append((info.step, info.name, angle, unchanged))

    optimizer.register_refresh_hook(record_refresh)

    losses = []
    for _ in range(STEPS):
        loss = nn.functional.mse_loss(model(inputs), targets)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    print(f"loss: {losses[0]:.4f} at the first step, {losses[-1]:.4f} after {STEPS} steps")

    # Refresh steps are 10, 20, 30, ... after the first basis at step 0. With refreshes: 2 the
    # refreshes at steps 10 and 20 recompute the basis and every later one must keep it.
    moved_after_freezing = []
    for step, name, angle, unchanged in refreshes:
        change = "kept" if unchanged else f"turned by {angle:.3f} rad"
        print(f"step {step:3d}  {name:16s} basis {change}")
        if step > 20 and not unchanged:
            moved_after_freezing.append((step, name))

    if not losses[-1] < 0.5 * losses[0]:
        print("FAILED: the loss did not fall by half", file=sys.stderr)
        return 1
    if moved_after_freezing:
        print(f"FAILED: the basis moved after freezing at {moved_after_freezing}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
