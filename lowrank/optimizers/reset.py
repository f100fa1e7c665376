r"""Reset transport.

Both moments are zeroed at every basis change and the bias-correction count $\tau$ restarts, so
the first update in the new basis is a plain sign-like Adam step: $m' = 0$, $v' = 0$, $\tau' = 0$.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from lowrank.optimizers.transport import MomentTransport, register_transport

__all__ = ["ResetTransport"]


@register_transport("reset")
@dataclass
class ResetTransport(MomentTransport):
    """Zero the moments and restart bias correction after a basis change."""

    def transport(
        self,
        exp_avg: torch.Tensor,
        exp_avg_sq: torch.Tensor,
        moment_step: int,
        old_basis: torch.Tensor,
        new_basis: torch.Tensor,
        betas: tuple[float, float],
    ) -> int:
        exp_avg.zero_()
        exp_avg_sq.zero_()
        return 0
