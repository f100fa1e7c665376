"""Subspace diagnostics, recorded at refresh steps from tensors the step already holds.

For every basis choice of every low-rank parameter:

- ``captured_energy``: ``‖Sᵀg‖² / ‖g‖²``, the share of the gradient's energy inside the new basis
  (1 when the gradient lies in the subspace);
- ``angle``: the largest principal angle between the old and the new basis, in radians,
  ``arccos`` of the smallest singular value of ``S_newᵀ S_old`` (0 for an unmoved basis, π/2 when
  some direction left the subspace entirely); absent for the first basis;
- ``seconds``: wall time of the tracker call;
- ``residual_scale``: the mean recovery-scaling factor ``φ`` of the parameter's latest step, for
  groups with recovery scaling.

The extra cost is two reductions and one ``r×r`` singular value decomposition per refresh.
"""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from typing import Any

import torch

from lowrank.optimizers.lowrank_adamw import LowRankAdamW, RefreshInfo

__all__ = ["SubspaceDiagnostics", "aggregate_by_step", "captured_energy", "largest_principal_angle"]


def captured_energy(grad: torch.Tensor, projected: torch.Tensor) -> float:
    """Return ``‖R‖² / ‖g‖²`` for ``R = Sᵀg``; 1.0 for a zero gradient, which loses nothing."""
    total = grad.double().square().sum()
    if total == 0:
        return 1.0
    return (projected.double().square().sum() / total).item()


def largest_principal_angle(old_basis: torch.Tensor, new_basis: torch.Tensor) -> float:
    """Return the largest principal angle between two orthonormal ``(d, r)`` bases, in radians.

    The cosine alone (smallest singular value of ``S_newᵀ S_old``) loses the angle's precision
    near 0, and the sine alone (largest singular value of ``S_old − S_new S_newᵀ S_old``) near π/2;
    ``atan2`` of the two is accurate at both ends.
    """
    old, new = old_basis.double(), new_basis.double()
    change = new.T @ old  # (r, r)
    cosine = torch.linalg.svdvals(change).min()
    sine = torch.linalg.matrix_norm(old - new @ change, ord=2)  # (d, r) residual of S_old
    return math.atan2(sine.item(), cosine.item())


class SubspaceDiagnostics:
    """Record :mod:`lowrank.diagnostics` quantities at every refresh of ``optimizer``.

    Args:
        optimizer: The optimizer to observe; a refresh hook is registered on it.
        keep_records: Keep every record in :attr:`records` (one dict per refresh); otherwise
            only the aggregates of :meth:`summary` and the records since :meth:`drain` are kept.
    """

    def __init__(self, optimizer: LowRankAdamW, keep_records: bool = True):
        self.optimizer = optimizer
        self.keep_records = keep_records
        self.records: list[dict[str, Any]] = []
        self._pending: list[dict[str, Any]] = []
        self._totals: dict[str, list[float]] = defaultdict(list)
        self._remove = optimizer.register_refresh_hook(self._on_refresh)

    def _on_refresh(self, info: RefreshInfo) -> None:
        record: dict[str, Any] = {
            "step": info.step,
            "param": info.name,
            "captured_energy": captured_energy(info.grad, info.projected),
            "seconds": info.seconds,
            "skipped": bool(info.skipped),
        }
        if info.old_basis is not None:
            record["angle"] = largest_principal_angle(info.old_basis, info.new_basis)
        param_state = self.optimizer.state[info.param]
        if "residual_scale" in param_state:
            record["residual_scale"] = float(param_state["residual_scale"])

        for key in ("captured_energy", "seconds", "angle", "residual_scale"):
            if key in record:
                self._totals[key].append(record[key])
        self._pending.append(record)
        if self.keep_records:
            self.records.append(record)

    def drain(self) -> list[dict[str, Any]]:
        """Return the records made since the last call, and forget them."""
        pending, self._pending = self._pending, []
        return pending

    def summary(self) -> dict[str, float]:
        """Return the mean of each quantity over all refreshes so far, plus the refresh count."""
        result: dict[str, float] = {"refreshes": float(len(self._totals["captured_energy"]))}
        for key, values in self._totals.items():
            if values:
                result[f"mean_{key}"] = statistics.fmean(values)
        return result

    def remove(self) -> None:
        """Stop recording."""
        self._remove()


def aggregate_by_step(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Average refresh records over the parameters refreshed at the same step, one dict per step.

    Each result has ``step``, ``refreshes`` (how many parameters) and the mean of every quantity
    present (``captured_energy``, ``angle``, ``seconds``, ``residual_scale``).
    """
    by_step: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for record in records:
        by_step[record["step"]].append(record)
    result = []
    for step in sorted(by_step):
        group = by_step[step]
        summary: dict[str, Any] = {"step": step, "refreshes": len(group)}
        for key in ("captured_energy", "angle", "seconds", "residual_scale"):
            values = [record[key] for record in group if key in record]
            if values:
                summary[key] = statistics.fmean(values)
        result.append(summary)
    return result
