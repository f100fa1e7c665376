r"""SVD tracker (GaLore).

At each refresh the basis is the top-$r$ left singular subspace of the oriented gradient $g$:

$$
g = U \Sigma V^\top, \qquad S = U_{:,\,1:r}
$$

Each refresh costs $O(d^2 k)$.

Zhao et al., "GaLore: Memory-Efficient LLM Training by Gradient Low-Rank Projection", ICML 2024,
arXiv:2403.03507.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from lowrank.trackers.base import Tracker, TrackerContext, register_tracker

__all__ = ["SVDTracker", "top_singular_basis"]


def top_singular_basis(grad: torch.Tensor, rank: int, transposed: bool) -> torch.Tensor:
    """Return the top-``rank`` left singular vectors of ``grad`` (``d×k``) as a ``(d, rank)`` tensor.

    For a right projection (``transposed``), the SVD is taken of the weight's own gradient
    ``gradᵀ`` and the rows of ``Vᴴ`` are used, as ``galore-torch`` does: LAPACK may choose other
    signs for the transposed matrix, and with the ``keep`` transport the signs change the
    trajectory after the first refresh.
    """
    if transposed:
        _, _, vh = torch.linalg.svd(grad.T, full_matrices=False)  # vh: (d, d)
        return vh[:rank].T.contiguous()  # (d, r)
    u, _, _ = torch.linalg.svd(grad, full_matrices=False)  # u: (d, d)
    return u[:, :rank].contiguous()  # (d, r)


@register_tracker("svd")
@dataclass
class SVDTracker(Tracker):
    """Recompute the basis as the top singular subspace of the current gradient (GaLore)."""

    def init(self, grad: torch.Tensor, rank: int, context: TrackerContext) -> torch.Tensor:
        return top_singular_basis(grad, rank, context.transposed)

    def update(self, basis: torch.Tensor, grad: torch.Tensor, rank: int, context: TrackerContext) -> torch.Tensor:
        return top_singular_basis(grad, rank, context.transposed)
