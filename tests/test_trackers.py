"""Subspace trackers: orthonormality, the SVD subspace, geodesic descent and seeded reproducibility."""

from __future__ import annotations

import math

import pytest
import torch

import lowrank
from lowrank.trackers import Refresh, TrackerContext, grassmann_step, top_singular_basis
from lowrank.trackers.base import TRACKERS
from lowrank.trackers.subtrack import orthonormality_error

from conftest import low_rank_gradient, oriented


def _context(transposed: bool, refresh: int = 0, param_index: int = 0) -> TrackerContext:
    return TrackerContext(param_index=param_index, refresh=refresh, seed=0, transposed=transposed)


def _basis_of(result) -> torch.Tensor:
    return result.basis if isinstance(result, Refresh) else result


def _projection_error(basis: torch.Tensor, grad: torch.Tensor) -> float:
    return torch.linalg.norm(grad - basis @ (basis.T @ grad)).item()


@pytest.mark.parametrize("name", lowrank.list_trackers())
def test_tracker_stays_orthonormal_over_100_refreshes(name, shape, dtype):
    rows, cols, rank = shape
    generator = torch.Generator().manual_seed(1)
    tracker = TRACKERS.build(name)

    grad, transposed = oriented(torch.randn(rows, cols, generator=generator).to(dtype))
    basis = tracker.init(grad, rank, _context(transposed))
    assert basis.dtype == torch.float32
    assert basis.shape == (min(rows, cols), rank)

    for refresh in range(1, 101):
        grad, transposed = oriented(torch.randn(rows, cols, generator=generator).to(dtype))
        basis = _basis_of(tracker.update(basis, grad, rank, _context(transposed, refresh)))

    assert basis.dtype == torch.float32
    assert basis.shape == (min(rows, cols), rank)
    assert orthonormality_error(basis).item() < 1e-5


@pytest.mark.parametrize("name", lowrank.list_trackers())
def test_tracker_does_not_modify_inputs(name, shape):
    rows, cols, rank = shape
    generator = torch.Generator().manual_seed(2)
    tracker = TRACKERS.build(name)
    grad, transposed = oriented(torch.randn(rows, cols, generator=generator))
    basis = tracker.init(grad, rank, _context(transposed))
    grad_copy, basis_copy = grad.clone(), basis.clone()

    tracker.update(basis, grad, rank, _context(transposed, 1))

    assert torch.equal(grad, grad_copy)
    assert torch.equal(basis, basis_copy)


def test_svd_basis_spans_top_singular_subspace(shape):
    rows, cols, rank = shape
    generator = torch.Generator().manual_seed(3)
    grad, transposed = oriented(low_rank_gradient(rows, cols, rank, generator))

    basis = lowrank.trackers.SVDTracker().init(grad, rank, _context(transposed))

    # Independent float64 reference: the projector onto the top-r left singular vectors.
    u, _, _ = torch.linalg.svd(grad.double())
    reference = u[:, :rank] @ u[:, :rank].T
    projector = basis.double() @ basis.double().T
    assert torch.linalg.norm(projector - reference).item() < 1e-4


def test_svd_matches_galore_sign_convention():
    generator = torch.Generator().manual_seed(4)
    weight_grad = torch.randn(40, 24, generator=generator)  # tall: right projection

    basis = top_singular_basis(weight_grad.T, 6, transposed=True)

    _, _, vh = torch.linalg.svd(weight_grad, full_matrices=False)
    assert torch.equal(basis, vh[:6].T.contiguous())


@pytest.mark.parametrize("side", ["wide", "tall", "square"])
def test_subtrack_step_reduces_projection_error(side):
    rows, cols, rank = {"wide": (24, 40, 6), "tall": (40, 24, 6), "square": (32, 32, 5)}[side]
    generator = torch.Generator().manual_seed(5)
    grad, transposed = oriented(low_rank_gradient(rows, cols, rank, generator))
    basis = lowrank.trackers.random_orthonormal_basis(grad.shape[0], rank, seed=7)

    tangent_scale = torch.linalg.norm(grad).item() ** 2
    step_size = 0.05 / tangent_scale  # a small angle
    new_basis, projected, angle = grassmann_step(basis, grad, step_size, math.pi / 2, power_iterations=8)

    assert 0 < angle.item() < 0.2
    assert _projection_error(new_basis, grad) < _projection_error(basis, grad)
    assert orthonormality_error(new_basis).item() < 1e-5
    assert torch.allclose(projected, new_basis.T @ grad, atol=1e-4, rtol=1e-4)


def test_subtrack_converges_to_low_rank_subspace():
    generator = torch.Generator().manual_seed(6)
    grad, transposed = oriented(low_rank_gradient(40, 24, 4, generator, noise=0.0))
    tracker = lowrank.trackers.SubTrackTracker(step_size=1.0 / torch.linalg.norm(grad).item() ** 2)
    basis = lowrank.trackers.random_orthonormal_basis(grad.shape[0], 4, seed=3)
    start = _projection_error(basis, grad)

    for refresh in range(200):
        basis = _basis_of(tracker.update(basis, grad, 4, _context(transposed, refresh)))

    assert _projection_error(basis, grad) < 1e-3 * start


def test_subtrack_angle_is_clipped():
    generator = torch.Generator().manual_seed(7)
    grad, _ = oriented(torch.randn(24, 40, generator=generator))
    basis = lowrank.trackers.random_orthonormal_basis(24, 6, seed=1)

    _, _, angle = grassmann_step(basis, grad, step_size=1e6, max_angle=0.3, power_iterations=4)

    assert angle.item() == pytest.approx(0.3)


def test_subtrack_zero_gradient_keeps_basis():
    basis = lowrank.trackers.random_orthonormal_basis(24, 6, seed=1)
    grad = torch.zeros(24, 40)

    new_basis, projected, angle = grassmann_step(basis, grad, 10.0, math.pi / 2, 4)

    assert angle.item() == 0.0
    assert torch.allclose(new_basis, basis, atol=1e-7)
    assert torch.count_nonzero(projected) == 0


def test_subtrack_rejects_bad_options():
    with pytest.raises(ValueError, match="step_size"):
        lowrank.trackers.SubTrackTracker(step_size=0.0)
    with pytest.raises(ValueError, match="max_angle"):
        lowrank.trackers.SubTrackTracker(max_angle=3.0)
    with pytest.raises(ValueError, match="power_iterations"):
        lowrank.trackers.SubTrackTracker(power_iterations=0)


def test_random_tracker_reproducible_from_seed():
    grad = torch.randn(24, 40)
    tracker = lowrank.trackers.RandomTracker()

    first = tracker.init(grad, 6, TrackerContext(param_index=3, refresh=2, seed=11, transposed=False))
    again = tracker.init(grad, 6, TrackerContext(param_index=3, refresh=2, seed=11, transposed=False))
    other_refresh = tracker.init(grad, 6, TrackerContext(param_index=3, refresh=3, seed=11, transposed=False))
    other_param = tracker.init(grad, 6, TrackerContext(param_index=4, refresh=2, seed=11, transposed=False))

    assert torch.equal(first, again)
    assert not torch.equal(first, other_refresh)
    assert not torch.equal(first, other_param)


def test_random_tracker_identical_across_optimizer_instances():
    def train() -> list[torch.Tensor]:
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.Tanh(), torch.nn.Linear(32, 8))
        optimizer = lowrank.LowRankAdamW(
            [{"params": [model[0].weight, model[2].weight], "rank": 4}],
            update_interval=2,
            tracker="random",
            seed=5,
        )
        data_generator = torch.Generator().manual_seed(1)
        for _ in range(5):
            inputs = torch.randn(8, 16, generator=data_generator)
            model(inputs).square().mean().backward()
            optimizer.step()
            optimizer.zero_grad()
        return [optimizer.state[p]["basis"] for p in (model[0].weight, model[2].weight)]

    first, second = train(), train()
    assert all(torch.equal(a, b) for a, b in zip(first, second))
