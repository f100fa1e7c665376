r"""Projection-aware transport (SubTrack++, after LDAdam).

With the change of basis $C = S_\text{new}^\top S_\text{old}$ ($r \times r$) and the bias-corrected
moments of the $\tau$ updates absorbed so far, $\hat m = m / (1 - \beta_1^\tau)$ and
$\hat v = v / (1 - \beta_2^\tau)$:

$$
\begin{aligned}
m' &= C m \\
v' &= (1 - \beta_2^\tau) \, \big\lvert (C \circ C)(\hat v - \hat m^2) + (C \hat m)^2 \big\rvert
\end{aligned}
$$

where $C \circ C$ is the element-wise square of $C$ used as a matrix, and squares and the absolute
value of moments are element-wise. The first moment rotates with the basis. The second moment is
split into a variance part, mapped with the squared coefficients as for independent coordinates, and
a squared-mean part, rotated exactly. When the basis does not move ($S_\text{new}$ equal to
$S_\text{old}$), both moments are left bit-identical.

Rajabi, Nonta, Rambhatla, "SubTrack++", NeurIPS 2025, arXiv:2502.01586; Robert et al., "LDAdam:
Adaptive Optimization from Low-Dimensional Gradient Statistics", ICLR 2025, arXiv:2410.16103.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from lowrank.optimizers.transport import MomentTransport, register_transport

__all__ = ["ProjectionAwareTransport", "transport_moments"]


def transport_moments(
    exp_avg: torch.Tensor,
    exp_avg_sq: torch.Tensor,
    change_of_basis: torch.Tensor,
    bias_correction1: float,
    bias_correction2: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Return the moments ``(r, k)`` carried by ``change_of_basis`` ``C = S_newᵀ S_old`` ``(r, r)``."""
    mean = exp_avg / bias_correction1  # m̂: (r, k)
    variance = exp_avg_sq / bias_correction2 - mean.square()  # v̂ − m̂²: (r, k)
    rotated_mean = change_of_basis @ mean  # C m̂: (r, k)
    new_exp_avg_sq = (change_of_basis.square() @ variance + rotated_mean.square()).abs_()
    return rotated_mean * bias_correction1, new_exp_avg_sq.mul_(bias_correction2)


@register_transport("projection_aware")
@dataclass
class ProjectionAwareTransport(MomentTransport):
    """Rotate the first moment and re-project the second moment's variance into the new basis."""

    def transport(
        self,
        exp_avg: torch.Tensor,
        exp_avg_sq: torch.Tensor,
        moment_step: int,
        old_basis: torch.Tensor,
        new_basis: torch.Tensor,
        betas: tuple[float, float],
    ) -> int:
        if moment_step == 0 or new_basis is old_basis or torch.equal(new_basis, old_basis):
            return moment_step

        beta1, beta2 = betas
        change_of_basis = new_basis.T @ old_basis  # C: (r, r)
        new_exp_avg, new_exp_avg_sq = transport_moments(
            exp_avg, exp_avg_sq, change_of_basis, 1.0 - beta1**moment_step, 1.0 - beta2**moment_step
        )
        exp_avg.copy_(new_exp_avg)
        exp_avg_sq.copy_(new_exp_avg_sq)
        return moment_step
