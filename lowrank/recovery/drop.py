r"""Drop residual handler (GaLore).

The part of the gradient outside the subspace is discarded: $U = \alpha S N$.

Zhao et al., "GaLore: Memory-Efficient LLM Training by Gradient Low-Rank Projection", ICML 2024,
arXiv:2403.03507.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from lowrank.recovery.base import ResidualHandler, register_residual

__all__ = ["DropResidual"]


@register_residual("drop")
@dataclass
class DropResidual(ResidualHandler):
    """Discard the gradient outside the subspace."""

    def direction(
        self,
        grad: torch.Tensor,
        basis: torch.Tensor,
        projected: torch.Tensor,
        normalized: torch.Tensor,
        scale: float,
        state: dict,
    ) -> torch.Tensor:
        if grad.is_contiguous():
            return (basis @ normalized).mul_(scale)  # (d, k)
        # A transposed gradient view means the weight is (k, d): building the product in that
        # layout makes the optimizer's add into the weight read contiguous memory.
        return (normalized.T @ basis.T).mul_(scale).T  # (d, k) view of a (k, d) tensor
