r"""Recovery scaling residual handler (Fira, used by SubTrack++).

The residual $E = g - S S^\top g$ ($d \times k$) is added back to the update after a per-column
rescaling that borrows Adam's adaptivity from the subspace. For each column $j$ of the unprojected
axis, with $c = \alpha$ when ``scale_residual`` is set and $c = 1$ otherwise:

$$
\begin{aligned}
\phi_j &= \lVert N_{:,j} \rVert \,/\, \lVert R_{:,j} \rVert && (0 \text{ where } \lVert R_{:,j} \rVert = 0) \\
\tilde E &= c \, E \operatorname{diag}(\phi) \\
U &= \alpha S N + \tilde E
\end{aligned}
$$

A norm-growth limiter with factor $\gamma$ (``growth_limit``) keeps
$\lVert \tilde E_t \rVert \le \gamma \lVert \tilde E_{t-1} \rVert$ by rescaling $\tilde E_t$. The
limiter's memory is the last limited norm. A zero or non-finite norm does not overwrite it, so one
all-zero gradient cannot pin the residual near zero afterwards.

No third $d \cdot k \cdot r$ product is needed. Since
$\tilde E = (g - S R) \operatorname{diag}(\phi)$, with $c$ folded into $\phi$,

$$
U = S \big(\alpha N - R \operatorname{diag}(\phi)\big) + g \operatorname{diag}(\phi)
$$

and, because $S R$ and $g - S R$ are orthogonal column by column,
$\lVert E_{:,j} \rVert^2 = \lVert g_{:,j} \rVert^2 - \lVert R_{:,j} \rVert^2$. When the residual
contains less than 0.1% of the gradient's energy, that difference loses its float32 precision, and
$E$ is formed explicitly instead.

Chen et al., "Fira: Can We Achieve Full-rank Training of LLMs Under Low-rank Constraint?",
arXiv:2410.01623. Fira's paper multiplies the residual by α too, its code does not; the
``scale_residual`` option selects the paper's form.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from lowrank.recovery.base import ResidualHandler, register_residual

__all__ = ["RecoveryScaling", "recovery_scaling_direction"]

# Below this share of the gradient's energy, the residual's norm is computed from E itself.
_EXPLICIT_RESIDUAL_SHARE = 1e-3


def recovery_scaling_direction(
    grad: torch.Tensor,
    basis: torch.Tensor,
    projected: torch.Tensor,
    normalized: torch.Tensor,
    scale: float,
    previous_norm: torch.Tensor,
    growth_limit: float,
    scale_residual: bool,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Return the update ``U`` ``(d, k)``, the limiter's next memory and the column factors ``φ``.

    ``previous_norm`` is the 0-d limiter memory ``‖Ẽ_{t−1}‖``; 0 means no previous step.
    """
    tiny = torch.finfo(torch.float32).tiny
    # Column sums of squares reduce along the contiguous axis of these layouts, which is several
    # times faster on the CPU than a column-wise vector_norm.
    projected_energy = projected.square().sum(dim=0)  # ‖R_j‖²: (k,)
    projected_norms = projected_energy.sqrt()  # ‖R_j‖: (k,)
    normalized_norms = normalized.square().sum(dim=0).sqrt_()  # ‖N_j‖: (k,)
    factors = torch.where(projected_norms > 0, normalized_norms / projected_norms.clamp_min(tiny), 0.0)  # φ: (k,)
    if scale_residual:
        factors = factors * scale

    column_energy = grad.square().sum(dim=0)  # ‖g_j‖²: (k,)
    residual_energy = (column_energy - projected_energy).clamp_min_(0.0)  # ‖E_j‖²: (k,)
    # NOTE: this comparison synchronizes with the device once per parameter and step.
    if residual_energy.sum() < _EXPLICIT_RESIDUAL_SHARE * column_energy.sum():
        residual_energy = (grad - basis @ projected).square().sum(dim=0)

    norm = torch.dot(factors.square(), residual_energy).sqrt()  # ‖Ẽ_t‖ before limiting
    limit = previous_norm * growth_limit
    # Where the limiter applies, norm > limit > 0, so the division is safe.
    limiter = torch.where((previous_norm > 0) & (norm > limit), limit / norm, 1.0)
    factors = factors * limiter
    limited_norm = norm * limiter
    next_norm = torch.where(torch.isfinite(limited_norm) & (limited_norm > 0), limited_norm, previous_norm)

    # U = g diag(φ) + S (α N − R diag(φ)). The product accumulates into g diag(φ), which has
    # grad's memory layout: for a right projection grad is a transposed view, so Uᵀ comes out
    # contiguous like the weight and no element-wise pass reads memory across the grain.
    low_rank = torch.addcmul(normalized * scale, projected, factors, value=-1.0)  # (r, k)
    update = torch.mul(grad, factors)  # (d, k), strides of grad
    update.addmm_(basis, low_rank)
    return update, next_norm, factors


@register_residual("recovery_scaling")
@dataclass
class RecoveryScaling(ResidualHandler):
    """Add back the out-of-subspace gradient, scaled per column like Adam's update (Fira)."""

    growth_limit: float = 1.01
    """γ of the norm-growth limiter: the residual's norm may grow by at most this factor per step."""
    scale_residual: bool = False
    """Multiply the residual by the group's ``scale`` α as well (Fira's paper); off in Fira's code."""

    def __post_init__(self):
        if not self.growth_limit >= 1.0:
            raise ValueError(f"growth_limit must be at least 1.0, got {self.growth_limit}")

    def init_state(self, state: dict, grad: torch.Tensor) -> None:
        state["residual_norm"] = torch.zeros((), dtype=torch.float32, device=grad.device)
        state["residual_scale"] = torch.zeros((), dtype=torch.float32, device=grad.device)

    def direction(
        self,
        grad: torch.Tensor,
        basis: torch.Tensor,
        projected: torch.Tensor,
        normalized: torch.Tensor,
        scale: float,
        state: dict,
    ) -> torch.Tensor:
        update, next_norm, factors = recovery_scaling_direction(
            grad,
            basis,
            projected,
            normalized,
            scale,
            # ZeroRedundancyOptimizer.load_state_dict moves 0-d state tensors to the CPU.
            state["residual_norm"].to(grad.device),
            self.growth_limit,
            self.scale_residual,
        )
        state["residual_norm"] = next_norm
        state["residual_scale"] = factors.mean()  # for diagnostics: the mean φ after limiting
        return update
