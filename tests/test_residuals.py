"""Residual handlers: the exact residual, per-column scaling and the norm-growth limiter."""

from __future__ import annotations

import pytest
import torch

import lowrank
from lowrank.recovery import RecoveryScaling, recovery_scaling_direction
from lowrank.recovery.base import RESIDUALS
from lowrank.trackers import random_orthonormal_basis

from conftest import oriented


def _problem(rows: int = 24, cols: int = 40, rank: int = 6, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    grad, _ = oriented(torch.randn(rows, cols, generator=generator))
    basis = random_orthonormal_basis(grad.shape[0], rank, seed=seed + 1)
    projected = basis.T @ grad
    normalized = torch.randn(projected.shape, generator=generator)
    return grad, basis, projected, normalized


@pytest.mark.parametrize("name", lowrank.list_residuals())
def test_direction_contains_low_rank_part(name, shape):
    rows, cols, rank = shape
    grad, basis, projected, normalized = _problem(rows, cols, rank)
    handler = RESIDUALS.build(name)
    state: dict = {}
    handler.init_state(state, grad)

    update = handler.direction(grad, basis, projected, normalized, 0.25, state)

    # Whatever the handler adds lies outside the subspace, so Sᵀ U = α N.
    assert update.shape == grad.shape
    assert torch.allclose(basis.T @ update, 0.25 * normalized, atol=1e-5)


@pytest.mark.parametrize("scale_residual", [False, True])
def test_recovery_scaling_equals_float64_reference(shape, scale_residual):
    rows, cols, rank = shape
    grad, basis, projected, normalized = _problem(rows, cols, rank, seed=3)
    scale = 0.25

    update, next_norm, _ = recovery_scaling_direction(
        grad, basis, projected, normalized, scale, torch.tensor(0.0), 1.01, scale_residual
    )

    # Independent float64 computation: E = (I − S Sᵀ) g, φ_j = ‖N_j‖ / ‖R_j‖.
    g, s, n = grad.double(), basis.double(), normalized.double()
    residual = (torch.eye(g.shape[0], dtype=torch.float64) - s @ s.T) @ g
    factors = n.norm(dim=0) / (s.T @ g).norm(dim=0)
    scaled = residual * factors * (scale if scale_residual else 1.0)
    expected = scale * s @ n + scaled
    assert torch.allclose(update.double(), expected, rtol=1e-4, atol=1e-5)
    assert next_norm.item() == pytest.approx(torch.linalg.norm(scaled).item(), rel=1e-4)


def test_recovery_scaling_tiny_residual_uses_explicit_norm():
    generator = torch.Generator().manual_seed(4)
    basis = random_orthonormal_basis(24, 6, seed=2)
    inside = basis @ torch.randn(6, 40, generator=generator)
    outside = torch.randn(24, 40, generator=generator)
    outside -= basis @ (basis.T @ outside)
    grad = inside + 1e-4 * outside  # residual holds about 1e-8 of the energy
    projected = basis.T @ grad
    normalized = torch.randn(6, 40, generator=generator)

    _, next_norm, factors = recovery_scaling_direction(
        grad, basis, projected, normalized, 1.0, torch.tensor(0.0), 1.01, False
    )

    reference = ((grad.double() - basis.double() @ projected.double()) * factors.double()).norm()
    assert next_norm.item() == pytest.approx(reference.item(), rel=1e-2)


def test_limiter_caps_growth():
    grad, basis, projected, normalized = _problem(seed=5)
    _, first_norm, _ = recovery_scaling_direction(grad, basis, projected, normalized, 0.25, torch.tensor(0.0), 1.01, False)

    _, second_norm, _ = recovery_scaling_direction(
        grad, basis, projected, 10 * normalized, 0.25, first_norm, 1.01, False
    )

    assert second_norm.item() == pytest.approx(1.01 * first_norm.item(), rel=1e-5)


def test_limiter_recovers_after_zero_gradient_step():
    grad, basis, projected, normalized = _problem(seed=6)
    handler = RecoveryScaling(growth_limit=1.01)
    state: dict = {}
    handler.init_state(state, grad)

    handler.direction(grad, basis, projected, normalized, 0.25, state)
    norm_before = state["residual_norm"].item()
    zero_update = handler.direction(
        torch.zeros_like(grad), basis, torch.zeros_like(projected), torch.zeros_like(normalized), 0.25, state
    )
    norm_after_zero = state["residual_norm"].item()
    handler.direction(grad, basis, projected, normalized, 0.25, state)
    norm_next = state["residual_norm"].item()

    assert torch.count_nonzero(zero_update) == 0
    assert norm_after_zero == norm_before
    assert norm_next == pytest.approx(norm_before, rel=1e-5)


def test_limiter_ignores_non_finite_norm():
    grad, basis, projected, normalized = _problem(seed=7)
    handler = RecoveryScaling()
    state: dict = {}
    handler.init_state(state, grad)
    handler.direction(grad, basis, projected, normalized, 0.25, state)
    norm_before = state["residual_norm"].item()

    bad = grad.clone()
    bad[0, 0] = float("nan")
    handler.direction(bad, basis, basis.T @ bad, normalized, 0.25, state)

    assert state["residual_norm"].item() == norm_before


def test_recovery_scaling_rejects_growth_limit_below_one():
    with pytest.raises(ValueError, match="growth_limit"):
        RecoveryScaling(growth_limit=0.5)
