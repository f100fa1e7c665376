"""LowRankAdamW: dense equality with torch AdamW, the low-rank step, validation and bookkeeping."""

from __future__ import annotations

import itertools
import logging

import pytest
import torch

import lowrank
from lowrank import LowRankAdamW


class SmallMLP(torch.nn.Module):
    """Three linear layers with wide, tall and square weights, plus biases and a norm."""

    def __init__(self, dtype: torch.dtype = torch.float32):
        super().__init__()
        self.up = torch.nn.Linear(24, 40, dtype=dtype)  # weight (40, 24): tall
        self.mid = torch.nn.Linear(40, 40, dtype=dtype)  # weight (40, 40): square
        self.down = torch.nn.Linear(40, 16, dtype=dtype)  # weight (16, 40): wide
        self.norm = torch.nn.LayerNorm(40, dtype=dtype)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        hidden = torch.tanh(self.up(inputs))
        hidden = self.norm(torch.tanh(self.mid(hidden)))
        return self.down(hidden)


def _batches(count: int, dtype: torch.dtype = torch.float32, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    for _ in range(count):
        inputs = torch.randn(32, 24, generator=generator).to(dtype)
        targets = torch.randn(32, 16, generator=generator).to(dtype)
        yield inputs, targets


def _train(model, optimizer, steps: int, dtype=torch.float32, seed: int = 0) -> list[float]:
    losses = []
    for inputs, targets in _batches(steps, dtype, seed):
        loss = torch.nn.functional.mse_loss(model(inputs).float(), targets.float())
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    return losses


LOWRANK_RULE = {"match": ["up.weight", "mid.weight", "down.weight"], "rank": 6, "update_interval": 4}


KERNELS = {
    "default": {},
    "for_loop": {"foreach": False},
    "foreach": {"foreach": True},
    "fused": {"fused": True},
}


@pytest.mark.parametrize("kernel", list(KERNELS))
def test_dense_group_equals_torch_adamw(kernel):
    torch.manual_seed(0)
    reference_model = SmallMLP()
    model = SmallMLP()
    model.load_state_dict(reference_model.state_dict())
    hyper = dict(lr=3e-3, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1)

    reference = torch.optim.AdamW(reference_model.parameters(), **KERNELS[kernel], **hyper)
    ours = LowRankAdamW(model.parameters(), **KERNELS[kernel], **hyper)
    _train(reference_model, reference, 20)
    _train(model, ours, 20)

    for (name, expected), actual in zip(reference_model.named_parameters(), model.parameters()):
        assert torch.allclose(actual, expected, atol=1e-6, rtol=0), name


@pytest.mark.parametrize(
    "tracker,transport,residual",
    list(itertools.product(lowrank.list_trackers(), lowrank.list_transports(), lowrank.list_residuals())),
)
def test_every_composition_trains(tracker, transport, residual):
    torch.manual_seed(0)
    model = SmallMLP()
    rule = dict(LOWRANK_RULE, tracker=tracker, transport=transport, residual=residual, scale=1.0)
    optimizer = lowrank.build_optimizer(model, {"lr": 1e-2, "groups": [rule]})

    losses = _train(model, optimizer, 30)

    assert all(torch.isfinite(torch.tensor(losses)))
    assert sum(losses[-5:]) < sum(losses[:5])


def test_lowrank_step_matches_float64_reference():
    torch.manual_seed(1)
    weight = torch.nn.Parameter(torch.randn(16, 40))
    optimizer = LowRankAdamW(
        [{"params": [weight], "rank": 4}], lr=0.01, betas=(0.9, 0.99), eps=1e-8, weight_decay=0.1, scale=0.5
    )
    grads = [torch.randn(16, 40) for _ in range(3)]

    # Independent float64 computation of three steps with a fixed SVD basis (interval 200).
    w = weight.detach().double().clone()
    u, _, _ = torch.linalg.svd(grads[0].double(), full_matrices=False)
    basis = u[:, :4]
    m = torch.zeros(4, 40, dtype=torch.float64)
    v = torch.zeros(4, 40, dtype=torch.float64)
    for t, grad in enumerate(grads, start=1):
        r = basis.T @ grad.double()
        m = 0.9 * m + 0.1 * r
        v = 0.99 * v + 0.01 * r**2
        n = (m / (1 - 0.9**t)) / ((v / (1 - 0.99**t)).sqrt() + 1e-8)
        w = w - 0.01 * 0.1 * w
        w = w - 0.01 * 0.5 * basis @ n

    for grad in grads:
        weight.grad = grad
        optimizer.step()

    assert torch.allclose(weight.detach().double(), w, atol=1e-5)


def test_grad_and_weight_keep_their_shapes():
    torch.manual_seed(0)
    model = SmallMLP()
    optimizer = lowrank.build_optimizer(model, {"groups": [LOWRANK_RULE]})
    for inputs, targets in _batches(2):
        torch.nn.functional.mse_loss(model(inputs), targets).backward()
        shapes = {name: (p.shape, p.grad.shape) for name, p in model.named_parameters()}
        optimizer.step()
        for name, p in model.named_parameters():
            assert (p.shape, p.grad.shape) == shapes[name], name
        optimizer.zero_grad()


def test_bf16_weights_keep_float32_state():
    torch.manual_seed(0)
    model = SmallMLP(dtype=torch.bfloat16)
    rule = dict(LOWRANK_RULE, residual="recovery_scaling")
    optimizer = lowrank.build_optimizer(model, {"groups": [rule]})
    _train(model, optimizer, 3, dtype=torch.bfloat16)

    state = optimizer.state[model.up.weight]
    assert model.up.weight.dtype == torch.bfloat16
    for key in ("basis", "exp_avg", "exp_avg_sq", "residual_norm"):
        assert state[key].dtype == torch.float32, key


def test_step_counters_count_optimizer_updates():
    torch.manual_seed(0)
    model = SmallMLP()
    optimizer = lowrank.build_optimizer(model, {"groups": [dict(LOWRANK_RULE, update_interval=3)]})
    _train(model, optimizer, 7)

    state = optimizer.state[model.up.weight]
    assert state["step"] == 7
    assert state["moment_step"] == 7
    assert state["refresh_count"] == 3  # first basis at update 0, refreshes at 3 and 6


def test_stagger_spreads_refresh_steps():
    params = [torch.nn.Parameter(torch.randn(12, 20)) for _ in range(4)]
    optimizer = LowRankAdamW([{"params": params, "rank": 3}], update_interval=8, stagger=True)
    refreshed_at: dict[int, list[int]] = {}
    optimizer.register_refresh_hook(lambda info: refreshed_at.setdefault(info.param_index, []).append(info.step))

    for _ in range(17):
        for p in params:
            p.grad = torch.randn(12, 20)
        optimizer.step()

    offsets = [optimizer.state[p]["refresh_offset"] for p in params]
    assert offsets == [0, 4, 1, 6]  # golden-ratio sequence of the index, times the interval
    for index, offset in enumerate(offsets):
        first_refresh = offset if offset > 0 else 8
        assert refreshed_at[index] == [0, first_refresh, first_refresh + 8], index


def test_refresh_hook_receives_basis_change():
    weight = torch.nn.Parameter(torch.randn(12, 20))
    optimizer = LowRankAdamW([{"params": [weight], "rank": 3, "names": ["w"]}], update_interval=2)
    infos = []
    remove = optimizer.register_refresh_hook(infos.append)
    for _ in range(3):
        weight.grad = torch.randn(12, 20)
        optimizer.step()
    remove()
    weight.grad = torch.randn(12, 20)
    optimizer.step()

    assert [info.step for info in infos] == [0, 2]
    assert infos[0].old_basis is None
    assert infos[1].name == "w"
    assert torch.allclose(infos[1].projected, infos[1].new_basis.T @ infos[1].grad, atol=1e-5)


def test_non_finite_gradient_at_refresh_keeps_basis(caplog):
    weight = torch.nn.Parameter(torch.randn(12, 20))
    optimizer = LowRankAdamW([{"params": [weight], "rank": 3, "names": ["layer.w"]}], update_interval=2, lr=0.0)
    weight.grad = torch.randn(12, 20)
    optimizer.step()
    weight.grad = torch.randn(12, 20)
    optimizer.step()
    basis = optimizer.state[weight]["basis"].clone()

    weight.grad = torch.full((12, 20), float("nan"))
    with caplog.at_level(logging.WARNING, logger="lowrank"):
        optimizer.step()

    assert torch.equal(optimizer.state[weight]["basis"], basis)
    assert optimizer.state[weight]["refresh_count"] == 1
    assert "layer.w" in caplog.text
    assert "keeping the old basis" in caplog.text


def test_non_finite_gradient_at_first_step_uses_random_basis(caplog):
    weight = torch.nn.Parameter(torch.randn(12, 20))
    optimizer = LowRankAdamW([{"params": [weight], "rank": 3}], lr=0.0)
    weight.grad = torch.full((12, 20), float("inf"))
    with caplog.at_level(logging.WARNING, logger="lowrank"):
        optimizer.step()

    basis = optimizer.state[weight]["basis"]
    assert torch.allclose(basis.T @ basis, torch.eye(3), atol=1e-5)
    assert "random basis" in caplog.text


def test_parameters_without_grad_are_skipped():
    used = torch.nn.Parameter(torch.randn(12, 20))
    unused = torch.nn.Parameter(torch.randn(12, 20))
    optimizer = LowRankAdamW([{"params": [used, unused], "rank": 3}])
    used.grad = torch.randn(12, 20)
    optimizer.step()

    assert len(optimizer.state[unused]) == 0
    assert optimizer.state[used]["step"] == 1


def test_strategy_instance_becomes_name_and_options():
    weight = torch.nn.Parameter(torch.randn(12, 20))
    tracker = lowrank.trackers.SubTrackTracker(step_size=3.0)
    optimizer = LowRankAdamW([{"params": [weight], "rank": 3, "tracker": tracker}])

    group = optimizer.param_groups[0]
    assert group["tracker"] == "subtrack"
    assert group["tracker_options"]["step_size"] == 3.0


BAD_HYPERPARAMETERS = [
    ({"lr": -1.0}, "lr=-1.0"),
    ({"eps": -1e-8}, "eps=-1e-08"),
    ({"weight_decay": -0.1}, "weight_decay=-0.1"),
    ({"betas": (0.9, 1.0)}, "betas=(0.9, 1.0)"),
    ({"rank": 0}, "rank=0"),
    ({"rank": 2.5}, "rank=2.5"),
    ({"rank": 3, "update_interval": 0}, "update_interval=0"),
    ({"rank": 3, "scale": 0.0}, "scale=0.0"),
    ({"rank": 3, "seed": "a"}, "seed='a'"),
    ({"rank": 12}, "rank=12 is not below min(12, 20)"),
    ({"rank": 3, "tracker": "svdd"}, "unknown tracker 'svdd'; registered trackers: random, subtrack, svd"),
    ({"rank": 3, "tracker": {"name": "subtrack", "stepsize": 1}}, "unknown key 'tracker.stepsize'"),
    ({"rank": 3, "transport": {"kind": "keep"}}, "needs a 'name' key"),
    ({"rank": 3, "residual": 5}, "residual must be a registered name"),
]


@pytest.mark.parametrize("options,message", BAD_HYPERPARAMETERS, ids=[m for _, m in BAD_HYPERPARAMETERS])
def test_bad_hyperparameter_raises_value_error(options, message):
    weight = torch.nn.Parameter(torch.randn(12, 20))
    with pytest.raises(ValueError) as error:
        LowRankAdamW([{"params": [weight], **options}])
    assert message in str(error.value)


def test_non_matrix_in_lowrank_group_raises():
    bias = torch.nn.Parameter(torch.randn(20))
    with pytest.raises(ValueError, match=r"'b' has shape \(20,\): only 2-D parameters can be low-rank"):
        LowRankAdamW([{"params": [bias], "rank": 3, "names": ["b"]}])
