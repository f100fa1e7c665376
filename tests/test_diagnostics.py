"""Subspace diagnostics: captured energy and principal angles on constructed cases, and recording."""

from __future__ import annotations

import math

import pytest
import torch

import lowrank
from lowrank.diagnostics import SubspaceDiagnostics, captured_energy, largest_principal_angle
from lowrank.trackers import random_orthonormal_basis


def test_gradient_inside_subspace_captures_all_energy():
    basis = random_orthonormal_basis(20, 4, seed=1)
    grad = basis @ torch.randn(4, 30)

    assert captured_energy(grad, basis.T @ grad) == pytest.approx(1.0, abs=1e-6)


def test_gradient_orthogonal_to_subspace_captures_none():
    basis = torch.eye(20)[:, :4]
    grad = torch.zeros(20, 30)
    grad[10:] = torch.randn(10, 30)

    assert captured_energy(grad, basis.T @ grad) == 0.0


@pytest.mark.parametrize("degrees", [0.0, 10.0, 45.0, 90.0])
def test_rotated_basis_gives_known_angle(degrees):
    theta = math.radians(degrees)
    old = torch.eye(6)[:, :2]  # span(e1, e2)
    new = old.clone()
    new[:, 1] = math.cos(theta) * torch.eye(6)[:, 1] + math.sin(theta) * torch.eye(6)[:, 4]

    assert largest_principal_angle(old, new) == pytest.approx(theta, abs=1e-6)


def test_unmoved_float32_basis_has_zero_angle():
    basis = random_orthonormal_basis(300, 16, seed=3)

    assert largest_principal_angle(basis, basis.clone()) < 1e-6


def test_diagnostics_record_each_refresh():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(16, 24), torch.nn.Tanh(), torch.nn.Linear(24, 8))
    rule = {
        "match": ["0.weight", "2.weight"],
        "rank": 4,
        "update_interval": 2,
        "tracker": "subtrack",
        "residual": "recovery_scaling",
    }
    optimizer = lowrank.build_optimizer(model, {"groups": [rule]})
    diagnostics = SubspaceDiagnostics(optimizer)

    for _ in range(5):
        model(torch.randn(8, 16)).square().mean().backward()
        optimizer.step()
        optimizer.zero_grad()

    records = diagnostics.records
    assert [(r["step"], r["param"]) for r in records] == [
        (step, name) for step in (0, 2, 4) for name in ("0.weight", "2.weight")
    ]
    assert "angle" not in records[0]
    assert all(0.0 <= r["angle"] <= math.pi / 2 for r in records[2:])
    assert all(0.0 < r["captured_energy"] <= 1.0 for r in records)
    assert records[2]["residual_scale"] > 0  # the previous step's mean recovery factor
    summary = diagnostics.summary()
    assert summary["refreshes"] == 6
    assert summary["mean_captured_energy"] == pytest.approx(
        sum(r["captured_energy"] for r in records) / 6
    )
    assert len(diagnostics.drain()) == 6
    assert diagnostics.drain() == []
