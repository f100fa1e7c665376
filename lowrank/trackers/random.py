r"""Random tracker (GoLore, Flora).

At each refresh the basis is the Q factor of a $d \times r$ standard Gaussian matrix $Z$, with the
signs of the diagonal of the triangular factor $T$ folded into $Q$ so that the basis is uniformly
(Haar) distributed:

$$
Z = Q T, \qquad S = Q \operatorname{diag}\big(\operatorname{sign} T_{11}, \dots, \operatorname{sign} T_{rr}\big)
$$

The draw is seeded from (group seed, parameter index, refresh count) on a CPU generator, so every
data-parallel rank, every device and every resumed run draws the same basis. A refresh costs
$O(d r^2)$ and never reads the gradient.

Zhao et al., "GoLore: Understanding the convergence of gradient low-rank projection",
arXiv:2410.11289; Hao et al., "Flora: Low-Rank Adapters Are Secretly Gradient Compressors",
ICML 2024, arXiv:2402.03293.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import torch

from lowrank.trackers.base import Tracker, TrackerContext, register_tracker

__all__ = ["RandomTracker", "random_orthonormal_basis", "seed_for"]


def seed_for(seed: int, param_index: int, refresh: int) -> int:
    """Mix the three counters into one 63-bit generator seed, identical on every machine."""
    digest = hashlib.sha256(f"{seed}:{param_index}:{refresh}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def random_orthonormal_basis(
    rows: int, rank: int, seed: int, device: torch.device | None = None
) -> torch.Tensor:
    """Return a Haar-distributed ``(rows, rank)`` float32 basis drawn from ``seed``."""
    generator = torch.Generator().manual_seed(seed)
    gaussian = torch.randn(rows, rank, generator=generator, dtype=torch.float32)  # (d, r)
    q, r = torch.linalg.qr(gaussian)  # q: (d, r), r: (r, r)
    signs = torch.sign(torch.diagonal(r))
    signs[signs == 0] = 1.0
    return (q * signs).to(device)


@register_tracker("random")
@dataclass
class RandomTracker(Tracker):
    """Draw a fresh random orthonormal basis at every refresh, independent of the gradient."""

    def init(self, grad: torch.Tensor, rank: int, context: TrackerContext) -> torch.Tensor:
        return self._draw(grad, rank, context)

    def update(self, basis: torch.Tensor, grad: torch.Tensor, rank: int, context: TrackerContext) -> torch.Tensor:
        return self._draw(grad, rank, context)

    @staticmethod
    def _draw(grad: torch.Tensor, rank: int, context: TrackerContext) -> torch.Tensor:
        seed = seed_for(context.seed, context.param_index, context.refresh)
        return random_orthonormal_basis(grad.shape[0], rank, seed, grad.device)
