"""Optimizer state dicts: save, load into a fresh optimizer, continue exactly; weights_only loads."""

from __future__ import annotations

import io

import pytest
import torch

import lowrank

from test_optimizer import SmallMLP, _batches

COMPOSITIONS = {
    "galore": {"tracker": "svd", "transport": "keep", "residual": "drop"},
    "subtrack_pp": {"tracker": "subtrack", "transport": "projection_aware", "residual": "recovery_scaling"},
    "random_reset": {"tracker": "random", "transport": "reset", "residual": "drop"},
}


def _config(composition: str) -> dict:
    rule = {"match": ["up.weight", "mid.weight", "down.weight"], "rank": 6, "update_interval": 3}
    return {"lr": 1e-2, "weight_decay": 0.05, "groups": [dict(rule, **COMPOSITIONS[composition])]}


def _steps(model, optimizer, batches, dtype) -> list[float]:
    losses = []
    for inputs, targets in batches:
        loss = torch.nn.functional.mse_loss(model(inputs.to(dtype)).float(), targets)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    return losses


@pytest.mark.parametrize("composition", list(COMPOSITIONS))
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["float32", "bfloat16"])
def test_resume_from_state_dict_equals_uninterrupted(composition, dtype):
    batches = list(_batches(10))
    torch.manual_seed(0)
    initial = SmallMLP(dtype=dtype).state_dict()

    model = SmallMLP(dtype=dtype)
    model.load_state_dict(initial)
    optimizer = lowrank.build_optimizer(model, _config(composition))
    expected_losses = _steps(model, optimizer, batches, dtype)
    expected = {name: p.detach().clone() for name, p in model.named_parameters()}

    first = SmallMLP(dtype=dtype)
    first.load_state_dict(initial)
    first_optimizer = lowrank.build_optimizer(first, _config(composition))
    losses = _steps(first, first_optimizer, batches[:5], dtype)
    buffer = io.BytesIO()
    torch.save({"model": first.state_dict(), "optimizer": first_optimizer.state_dict()}, buffer)
    del first, first_optimizer

    buffer.seek(0)
    checkpoint = torch.load(buffer, weights_only=True)
    second = SmallMLP(dtype=dtype)
    second.load_state_dict(checkpoint["model"])
    second_optimizer = lowrank.build_optimizer(second, _config(composition))
    second_optimizer.load_state_dict(checkpoint["optimizer"])
    losses += _steps(second, second_optimizer, batches[5:], dtype)

    assert losses == expected_losses
    for name, p in second.named_parameters():
        assert torch.equal(p, expected[name]), name


def test_float32_state_survives_load_on_bf16_weights():
    torch.manual_seed(0)
    model = SmallMLP(dtype=torch.bfloat16)
    optimizer = lowrank.build_optimizer(model, _config("subtrack_pp"))
    _steps(model, optimizer, _batches(4), torch.bfloat16)
    saved = optimizer.state_dict()

    fresh = lowrank.build_optimizer(model, _config("subtrack_pp"))
    fresh.load_state_dict(saved)

    state = fresh.state[model.up.weight]
    for key in ("basis", "exp_avg", "exp_avg_sq", "residual_norm"):
        assert state[key].dtype == torch.float32, key
        assert torch.equal(state[key], saved["state"][0][key]), key
    # Dense state follows torch.optim.AdamW: moments in the parameter's dtype.
    assert fresh.state[model.up.bias]["exp_avg"].dtype == torch.bfloat16


def test_state_dict_holds_only_tensors_and_numbers():
    torch.manual_seed(0)
    model = SmallMLP()
    optimizer = lowrank.build_optimizer(model, _config("subtrack_pp"))
    _steps(model, optimizer, _batches(2), torch.float32)

    allowed = (torch.Tensor, int, float, bool, str, type(None))

    def check(value, where):
        if isinstance(value, dict):
            for key, item in value.items():
                check(item, f"{where}.{key}")
        elif isinstance(value, (list, tuple)):
            for index, item in enumerate(value):
                check(item, f"{where}[{index}]")
        else:
            assert isinstance(value, allowed), f"{where} is a {type(value).__name__}"

    check(optimizer.state_dict(), "state_dict")
