"""Registries: decorators, lookups, contracts, and a user-registered tracker named in YAML."""

from __future__ import annotations

import dataclasses

import pytest
import torch

import lowrank
from lowrank.registry import Registry
from lowrank.trackers import top_singular_basis


@dataclasses.dataclass
class FrozenTracker(lowrank.Tracker):
    """Keeps the first SVD basis forever; counts its refreshes in a class attribute."""

    updates = 0

    def init(self, grad, rank, context):
        return top_singular_basis(grad, rank, context.transposed)

    def update(self, basis, grad, rank, context):
        FrozenTracker.updates += 1
        return basis


@pytest.fixture
def registered():
    """Register classes for one test and remove them afterwards, so other tests see the stock registries."""
    added = []

    def register(registry, name, cls):
        registry.register(name)(cls)
        added.append((registry, name))
        return cls

    yield register
    for registry, name in added:
        if name in registry:
            registry.unregister(name)


def test_list_functions_return_sorted_names():
    assert lowrank.list_trackers() == sorted(lowrank.list_trackers())
    assert {"svd", "random", "subtrack"} <= set(lowrank.list_trackers())
    assert lowrank.list_transports() == ["keep", "projection_aware", "reset"]
    assert lowrank.list_residuals() == ["drop", "recovery_scaling"]


def test_list_filters_by_glob():
    assert lowrank.list_trackers("s*") == ["subtrack", "svd"]
    assert lowrank.list_transports("*aware") == ["projection_aware"]
    assert lowrank.list_residuals("none*") == []


def test_duplicate_name_raises():
    with pytest.raises(ValueError, match="tracker 'svd' is already registered by SVDTracker"):

        @lowrank.register_tracker("svd")
        class Another(lowrank.Tracker):
            def init(self, grad, rank, context):
                return grad

            def update(self, basis, grad, rank, context):
                return grad


def test_registration_checks_base_class():
    with pytest.raises(ValueError, match="must subclass lowrank.optimizers.transport.MomentTransport"):

        @lowrank.register_transport("not_a_transport")
        class NotATransport:
            pass


def test_unregister_frees_the_name(registered):
    registered(lowrank.trackers.TRACKERS, "test_temporary", FrozenTracker)
    assert "test_temporary" in lowrank.list_trackers()

    lowrank.trackers.TRACKERS.unregister("test_temporary")
    registered(lowrank.trackers.TRACKERS, "test_temporary", FrozenTracker)

    assert lowrank.list_trackers("test_*") == ["test_temporary"]


def test_unknown_name_lists_registered_names():
    registry = Registry("widget", object)
    registry.register("b")(type("B", (), {}))
    registry.register("a")(type("A", (), {}))

    with pytest.raises(KeyError, match="unknown widget 'c'; registered widgets: a, b"):
        registry.get("c")


def test_non_dataclass_strategy_options_checked_by_signature(registered):
    class ScaledDrop(lowrank.ResidualHandler):
        def __init__(self, factor: float = 1.0):
            self.factor = factor

        def direction(self, grad, basis, projected, normalized, scale, state):
            return (basis @ normalized) * scale * self.factor

    registered(lowrank.recovery.RESIDUALS, "test_scaled_drop", ScaledDrop)
    registry = lowrank.recovery.RESIDUALS
    assert registry.build("test_scaled_drop", {"factor": 2.0}).factor == 2.0
    with pytest.raises(lowrank.ConfigError, match="unknown key 'residual.factr'; valid keys: name, factor"):
        registry.build("test_scaled_drop", {"factr": 2.0}, path="residual")


def test_custom_tracker_runs_from_yaml(registered):
    registered(lowrank.trackers.TRACKERS, "test_frozen", FrozenTracker)
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.Tanh(), torch.nn.Linear(32, 8))
    config = """
    lr: 1.0e-2
    groups:
      - match: "*.weight"
        rank: 4
        update_interval: 2
        tracker: test_frozen
    """
    optimizer = lowrank.build_optimizer(model, config)
    FrozenTracker.updates = 0
    first_basis = None
    for _ in range(5):
        model(torch.randn(4, 16)).square().mean().backward()
        optimizer.step()
        optimizer.zero_grad()
        if first_basis is None:
            first_basis = optimizer.state[model[0].weight]["basis"].clone()

    assert FrozenTracker.updates == 4  # two refreshes (updates 2 and 4) for each of two weights
    assert torch.equal(optimizer.state[model[0].weight]["basis"], first_basis)


def test_custom_tracker_with_bad_basis_is_reported(registered):
    class WrongShape(lowrank.Tracker):
        def init(self, grad, rank, context):
            return torch.zeros(grad.shape[0], rank + 1)

        def update(self, basis, grad, rank, context):
            return basis

    registered(lowrank.trackers.TRACKERS, "test_wrong_shape", WrongShape)
    weight = torch.nn.Parameter(torch.randn(12, 20))
    optimizer = lowrank.LowRankAdamW([{"params": [weight], "rank": 3, "tracker": "test_wrong_shape"}])
    weight.grad = torch.randn(12, 20)

    with pytest.raises(TypeError, match=r"tracker 'test_wrong_shape' returned \(12, 4\) torch.float32; expected"):
        optimizer.step()
