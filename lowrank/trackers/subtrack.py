r"""Grassmannian subspace tracker (SubTrack++).

The basis $S \in \mathbb{R}^{d \times r}$ is a point on the Grassmannian. Each refresh takes one
geodesic step that decreases the projection error $F(S) = \lVert g - S S^\top g \rVert^2$ of the
current gradient $g \in \mathbb{R}^{d \times k}$, with step size $\eta$ (``step_size``) and
largest angle $\theta_\text{max}$ (``max_angle``):

$$
\begin{aligned}
A &= S^\top g && (r \times k) \\
\nabla F &= -2 (g - S A) A^\top = -2 \big(g A^\top - S (A A^\top)\big) && (d \times r) \\
\Delta &= \nabla F - S (S^\top \nabla F) && \text{tangent part} \\
\sigma u v^\top &\approx \text{top singular triplet of } \Delta && \text{power iteration on } \Delta^\top \Delta \\
\theta &= \min(\eta \sigma, \theta_\text{max}) \\
S' &= (S v \cos\theta - u \sin\theta) v^\top + S (I - v v^\top)
\end{aligned}
$$

The power iteration runs on the $r \times r$ matrix $\Delta^\top \Delta$. A refresh costs
$O(d k r)$, the order of one projection, and never forms a $d \times d$ matrix.
The gradient projected onto the new basis comes with it at the price of one $d \cdot k$ product,
because $S' - S$ has rank one: $S'^\top g = A + v \big((\cos\theta - 1) v^\top A - \sin\theta\, u^\top g\big)$.

The first basis is the SVD basis, as in the paper. In exact arithmetic $S'$ stays orthonormal;
when float error makes $\max \lvert S'^\top S' - I \rvert$ exceed the tolerance, the basis is
re-orthonormalized by QR.

Rajabi, Nonta, Rambhatla, "SubTrack++: Gradient Subspace Tracking for Scalable LLM Training",
NeurIPS 2025, arXiv:2502.01586.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import torch

from lowrank.trackers.base import Refresh, Tracker, TrackerContext, register_tracker
from lowrank.trackers.svd import top_singular_basis

__all__ = ["SubTrackTracker", "grassmann_step", "orthonormality_error", "top_right_singular_vector"]

logger = logging.getLogger(__name__)


def top_right_singular_vector(matrix: torch.Tensor, iterations: int) -> torch.Tensor:
    """Approximate the top right singular vector of ``matrix`` (``d×r``) by power iteration.

    The iteration runs on the ``r×r`` Gram matrix, so each step costs ``O(r²)`` after one
    ``O(d·r²)`` product. It starts from the Gram column with the largest diagonal entry, which is
    never orthogonal to the top singular vector unless the matrix is zero.
    """
    gram = matrix.T @ matrix  # (r, r)
    vector = gram[:, torch.argmax(torch.diagonal(gram))]  # (r,)
    for _ in range(iterations):
        vector = gram @ vector
        vector = vector / vector.norm().clamp_min(torch.finfo(vector.dtype).tiny)
    # A zero Gram matrix leaves a zero vector; any unit vector is then a valid result.
    fallback = torch.zeros_like(vector)
    fallback[0] = 1.0
    norm = vector.norm()
    return torch.where(norm > 0, vector / norm.clamp_min(torch.finfo(vector.dtype).tiny), fallback)


def grassmann_step(
    basis: torch.Tensor,
    grad: torch.Tensor,
    step_size: float,
    max_angle: float,
    power_iterations: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Move ``basis`` one geodesic step along the direction that decreases ``‖g − S Sᵀ g‖²``.

    Returns:
        The new basis ``(d, r)``, the gradient projected onto it ``(r, k)``, and the rotation
        angle ``θ`` in radians as a 0-d tensor.
    """
    projected = basis.T @ grad  # A: (r, k)
    euclidean = -2.0 * (grad @ projected.T - basis @ (projected @ projected.T))  # ∇F: (d, r)
    tangent = euclidean - basis @ (basis.T @ euclidean)  # Δ: (d, r)

    right = top_right_singular_vector(tangent, power_iterations)  # v: (r,)
    image = tangent @ right  # σ u: (d,)
    sigma = image.norm()
    left = image / sigma.clamp_min(torch.finfo(image.dtype).tiny)  # u: (d,)

    angle = torch.clamp(step_size * sigma, max=max_angle)
    cos, sin = torch.cos(angle), torch.sin(angle)

    direction = (basis @ right) * (cos - 1.0) - left * sin  # (d,)
    new_basis = basis + torch.outer(direction, right)  # (d, r)

    row_change = (cos - 1.0) * (right @ projected) - sin * (left @ grad)  # (k,)
    new_projected = projected + torch.outer(right, row_change)  # (r, k)
    return new_basis, new_projected, angle


def orthonormality_error(basis: torch.Tensor) -> torch.Tensor:
    """Return ``max |SᵀS − I|`` as a 0-d tensor."""
    gram = basis.T @ basis  # (r, r)
    gram.diagonal().sub_(1.0)
    return gram.abs().max()


def _orthonormalize(basis: torch.Tensor) -> torch.Tensor:
    q, r = torch.linalg.qr(basis)  # q: (d, r)
    signs = torch.sign(torch.diagonal(r))
    signs[signs == 0] = 1.0
    return q * signs


@register_tracker("subtrack")
@dataclass
class SubTrackTracker(Tracker):
    """Track the gradient subspace by one Grassmannian geodesic step per refresh (SubTrack++)."""

    step_size: float = 10.0
    """Geodesic step size η. The rotation angle is ``η·σ`` and ``σ`` grows with ``‖g‖²``, so
    useful values depend on the gradient scale (the SubTrack++ scripts use 10 to 10⁴)."""
    max_angle: float = math.pi / 2
    """Largest rotation per refresh, in radians; steps beyond ``π/2`` overshoot the minimum."""
    power_iterations: int = 8
    """Power iterations for the top singular pair of the tangent gradient."""
    orthonormality_tolerance: float = 1e-5
    """Re-orthonormalize by QR when ``max |SᵀS − I|`` exceeds this value."""

    def __post_init__(self):
        if not self.step_size > 0:
            raise ValueError(f"step_size must be positive, got {self.step_size}")
        if not 0 < self.max_angle <= math.pi / 2:
            raise ValueError(f"max_angle must be in (0, pi/2] radians, got {self.max_angle}")
        if self.power_iterations < 1:
            raise ValueError(f"power_iterations must be at least 1, got {self.power_iterations}")
        if not self.orthonormality_tolerance > 0:
            raise ValueError(f"orthonormality_tolerance must be positive, got {self.orthonormality_tolerance}")

    def init(self, grad: torch.Tensor, rank: int, context: TrackerContext) -> torch.Tensor:
        return top_singular_basis(grad, rank, context.transposed)

    def update(self, basis: torch.Tensor, grad: torch.Tensor, rank: int, context: TrackerContext) -> Refresh:
        new_basis, projected, _ = grassmann_step(
            basis, grad, self.step_size, self.max_angle, self.power_iterations
        )
        # One O(d·r²) product per refresh; cheaper than the step itself.
        if orthonormality_error(new_basis) > self.orthonormality_tolerance:
            logger.debug("re-orthonormalizing the basis of parameter %d", context.param_index)
            return Refresh(_orthonormalize(new_basis))
        return Refresh(new_basis, projected)
