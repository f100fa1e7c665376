r"""Keep transport (GaLore).

The moments are left unchanged and read in the new basis: $m' = m$, $v' = v$. This is what
GaLore does; it is exact only when the basis does not move.

Zhao et al., "GaLore: Memory-Efficient LLM Training by Gradient Low-Rank Projection", ICML 2024,
arXiv:2403.03507.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from lowrank.optimizers.transport import MomentTransport, register_transport

__all__ = ["KeepTransport"]


@register_transport("keep")
@dataclass
class KeepTransport(MomentTransport):
    """Leave the moments as they are after a basis change."""

    def transport(
        self,
        exp_avg: torch.Tensor,
        exp_avg_sq: torch.Tensor,
        moment_step: int,
        old_basis: torch.Tensor,
        new_basis: torch.Tensor,
        betas: tuple[float, float],
    ) -> int:
        return moment_step
