"""Moment transports: identity on an unmoved basis, timing within the step, reset, and the math."""

from __future__ import annotations

import pytest
import torch

import lowrank
from lowrank.optimizers import transport_moments
from lowrank.optimizers.transport import TRANSPORTS
from lowrank.trackers import random_orthonormal_basis

BETAS = (0.9, 0.999)


def _moments(rank: int = 5, cols: int = 12, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    exp_avg = torch.randn(rank, cols, generator=generator) * 0.1
    exp_avg_sq = torch.rand(rank, cols, generator=generator) * 0.01 + exp_avg.square()
    return exp_avg, exp_avg_sq


@pytest.mark.parametrize("name", [n for n in lowrank.list_transports() if n != "reset"])
def test_unmoved_basis_leaves_moments_bit_identical(name):
    exp_avg, exp_avg_sq = _moments()
    before = exp_avg.clone(), exp_avg_sq.clone()
    basis = random_orthonormal_basis(20, 5, seed=1)

    for new_basis in (basis, basis.clone()):
        step = TRANSPORTS.build(name).transport(exp_avg, exp_avg_sq, 7, basis, new_basis, BETAS)
        assert step == 7
        assert torch.equal(exp_avg, before[0])
        assert torch.equal(exp_avg_sq, before[1])


@pytest.mark.parametrize("name", lowrank.list_transports())
def test_transport_keeps_second_moment_nonnegative(name):
    exp_avg, exp_avg_sq = _moments()
    old = random_orthonormal_basis(20, 5, seed=1)
    new = random_orthonormal_basis(20, 5, seed=2)

    TRANSPORTS.build(name).transport(exp_avg, exp_avg_sq, 7, old, new, BETAS)

    assert bool((exp_avg_sq >= 0).all())
    assert bool(torch.isfinite(exp_avg).all())


def test_projection_aware_matches_float64_formula():
    exp_avg, exp_avg_sq = _moments()
    old = random_orthonormal_basis(20, 5, seed=1)
    new = random_orthonormal_basis(20, 5, seed=2)
    step = 7
    bc1, bc2 = 1 - BETAS[0] ** step, 1 - BETAS[1] ** step

    # Independent float64 computation of m' = C m, v' = bc2·|(C∘C)(v̂ − m̂²) + (C m̂)²|.
    change = new.double().T @ old.double()
    mean = exp_avg.double() / bc1
    variance = exp_avg_sq.double() / bc2 - mean**2
    expected_avg = change @ exp_avg.double()
    expected_sq = bc2 * ((change**2) @ variance + (change @ mean) ** 2).abs()

    lowrank.optimizers.ProjectionAwareTransport().transport(exp_avg, exp_avg_sq, step, old, new, BETAS)

    assert torch.allclose(exp_avg.double(), expected_avg, rtol=1e-5, atol=1e-7)
    assert torch.allclose(exp_avg_sq.double(), expected_sq, rtol=1e-5, atol=1e-9)


def test_projection_aware_identity_change_is_identity_up_to_rounding():
    exp_avg, exp_avg_sq = _moments()

    new_avg, new_sq = transport_moments(exp_avg, exp_avg_sq, torch.eye(5), 0.5, 0.25)

    assert torch.allclose(new_avg, exp_avg, rtol=1e-6, atol=0)
    assert torch.allclose(new_sq, exp_avg_sq, rtol=1e-5, atol=1e-9)


def test_projection_aware_skips_empty_moments():
    exp_avg, exp_avg_sq = torch.zeros(5, 12), torch.zeros(5, 12)
    old = random_orthonormal_basis(20, 5, seed=1)
    new = random_orthonormal_basis(20, 5, seed=2)

    step = lowrank.optimizers.ProjectionAwareTransport().transport(exp_avg, exp_avg_sq, 0, old, new, BETAS)

    assert step == 0
    assert torch.count_nonzero(exp_avg) == 0


def test_reset_zeroes_moments_and_restarts_bias_correction():
    exp_avg, exp_avg_sq = _moments()
    old = random_orthonormal_basis(20, 5, seed=1)
    new = random_orthonormal_basis(20, 5, seed=2)

    step = lowrank.optimizers.ResetTransport().transport(exp_avg, exp_avg_sq, 9, old, new, BETAS)

    assert step == 0
    assert torch.count_nonzero(exp_avg) == 0
    assert torch.count_nonzero(exp_avg_sq) == 0


def test_reset_step_after_refresh_is_a_first_adam_step():
    torch.manual_seed(0)
    weight = torch.nn.Parameter(torch.randn(12, 20))
    optimizer = lowrank.LowRankAdamW(
        [{"params": [weight], "rank": 4}], lr=0.1, update_interval=3, tracker="random", transport="reset", eps=1e-12
    )
    for step in range(4):
        weight.grad = torch.randn(12, 20)
        before = weight.detach().clone()
        optimizer.step()

    state = optimizer.state[weight]
    assert state["moment_step"] == 1
    # A first Adam step moves each low-rank coordinate by exactly lr·sign: N = R / |R|.
    basis = state["basis"]
    expected = before - 0.1 * 0.25 * basis @ torch.sign(basis.T @ weight.grad)
    assert torch.allclose(weight.detach(), expected, atol=1e-5)


class _RecordingTransport(lowrank.MomentTransport):
    """Wraps another transport and records the bases it is called with."""

    def __init__(self, inner, calls: list):
        self.inner = inner
        self.calls = calls

    def transport(self, exp_avg, exp_avg_sq, moment_step, old_basis, new_basis, betas):
        self.calls.append((old_basis.clone(), new_basis.clone(), moment_step))
        return self.inner.transport(exp_avg, exp_avg_sq, moment_step, old_basis, new_basis, betas)


@pytest.mark.parametrize("name", lowrank.list_transports())
def test_transport_fires_in_same_step_as_basis_change(name, monkeypatch):
    torch.manual_seed(0)
    weight = torch.nn.Parameter(torch.randn(12, 20))
    calls: list = []
    optimizer = lowrank.LowRankAdamW(
        [{"params": [weight], "rank": 4}], update_interval=3, tracker="random", transport=name
    )
    original = optimizer._strategy

    def instrumented(group, key):
        strategy = original(group, key)
        return _RecordingTransport(strategy, calls) if key == "transport" else strategy

    monkeypatch.setattr(optimizer, "_strategy", instrumented)

    bases, calls_per_step = [], []
    for _ in range(7):
        weight.grad = torch.randn(12, 20)
        optimizer.step()
        bases.append(optimizer.state[weight]["basis"].clone())
        calls_per_step.append(len(calls))

    # Refreshes at updates 3 and 6: exactly one transport call in each, none elsewhere.
    assert calls_per_step == [0, 0, 0, 1, 1, 1, 2]
    old, new, moment_step = calls[0]
    assert torch.equal(old, bases[2])
    assert torch.equal(new, bases[3])
    assert moment_step == 3
