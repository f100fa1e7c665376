"""Layer-wise updates: same trajectory as the normal optimizer, one update per optimizer step, guards."""

from __future__ import annotations

import pytest
import torch

import lowrank
from lowrank.layerwise import LayerwiseUpdate

from test_optimizer import SmallMLP

CONFIG = {
    "lr": 1e-2,
    "weight_decay": 0.05,
    "foreach": False,
    "groups": [
        {
            "match": ["up.weight", "mid.weight", "down.weight"],
            "rank": 6,
            "update_interval": 3,
            "tracker": "subtrack",
            "transport": "projection_aware",
            "residual": "recovery_scaling",
        }
    ],
}


def _microbatches(updates: int, accumulation: int, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    return [
        [(torch.randn(8, 24, generator=generator), torch.randn(8, 16, generator=generator)) for _ in range(accumulation)]
        for _ in range(updates)
    ]


def _loss(model, batch) -> torch.Tensor:
    inputs, targets = batch
    return torch.nn.functional.mse_loss(model(inputs), targets)


def _train_normal(model, optimizer, data, scheduler=None):
    for update in data:
        for batch in update:
            (_loss(model, batch) / len(update)).backward()
        optimizer.step()
        optimizer.zero_grad()
        if scheduler is not None:
            scheduler.step()


def _train_layerwise(model, optimizer, data, scheduler=None, **options):
    layerwise = LayerwiseUpdate(optimizer, accumulation_steps=len(data[0]), **options)
    updated = []
    for update in data:
        for index, batch in enumerate(update):
            layerwise.begin_microbatch(last=index == len(update) - 1)
            (_loss(model, batch) / len(update)).backward()
        updated.append(layerwise.finish_update())
        if scheduler is not None:
            scheduler.step()
    layerwise.remove()
    return updated


def _pair():
    torch.manual_seed(0)
    reference = SmallMLP()
    model = SmallMLP()
    model.load_state_dict(reference.state_dict())
    return reference, lowrank.build_optimizer(reference, CONFIG), model, lowrank.build_optimizer(model, CONFIG)


@pytest.mark.parametrize("accumulation", [1, 3])
def test_layerwise_matches_normal_optimizer(accumulation):
    reference, reference_optimizer, model, optimizer = _pair()
    data = _microbatches(7, accumulation)

    _train_normal(reference, reference_optimizer, data)
    updated = _train_layerwise(model, optimizer, data)

    assert updated == [len(list(model.parameters()))] * 7
    for (name, expected), actual in zip(reference.named_parameters(), model.parameters()):
        torch.testing.assert_close(actual, expected, rtol=1e-6, atol=1e-7, msg=name)
        assert actual.grad is None, name
    state = optimizer.state[model.up.weight]
    assert state["step"] == 7  # one update per optimizer step, whatever the accumulation
    assert state["refresh_count"] == 3  # first basis plus refreshes at updates 3 and 6


def test_layerwise_checkpoint_holds_real_state():
    reference, reference_optimizer, model, optimizer = _pair()
    data = _microbatches(4, 2)
    _train_normal(reference, reference_optimizer, data)
    _train_layerwise(model, optimizer, data)

    expected, actual = reference_optimizer.state_dict()["state"], optimizer.state_dict()["state"]
    assert expected.keys() == actual.keys()
    for index in expected:
        for key, value in expected[index].items():
            if torch.is_tensor(value):
                torch.testing.assert_close(actual[index][key], value, rtol=1e-5, atol=1e-7)
            else:
                assert actual[index][key] == value, (index, key)


def test_schedule_advances_once_per_update():
    _, _, model, optimizer = _pair()
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda update: 1.0 / (1 + update))
    seen = []
    optimizer.register_refresh_hook(lambda info: seen.append((info.step, optimizer.param_groups[0]["lr"])))

    _train_layerwise(model, optimizer, _microbatches(4, 3), scheduler=scheduler)

    assert scheduler.last_epoch == 4
    assert optimizer.param_groups[0]["lr"] == pytest.approx(1e-2 / 5)
    refresh_lrs = {step: lr for step, lr in seen}
    assert refresh_lrs[3] == pytest.approx(1e-2 / 4)


def test_layerwise_frees_gradients_early():
    def peak_live_gradient_bytes(layerwise: bool) -> int:
        torch.manual_seed(0)
        model = SmallMLP()
        optimizer = lowrank.build_optimizer(model, CONFIG)
        params = list(model.parameters())
        driver = LayerwiseUpdate(optimizer) if layerwise else None
        peak = 0

        def measure(_):
            nonlocal peak
            live = sum(p.grad.numel() * p.grad.element_size() for p in params if p.grad is not None)
            peak = max(peak, live)

        for param in params:  # registered after the layer-wise hooks, so they run after them
            param.register_post_accumulate_grad_hook(measure)
        for batch in _microbatches(2, 1)[0]:
            if driver is not None:
                driver.begin_microbatch(last=True)
            _loss(model, batch).backward()
            if driver is None:
                optimizer.step()
        return peak

    normal, layerwise = peak_live_gradient_bytes(False), peak_live_gradient_bytes(True)
    all_bytes = sum(p.numel() * p.element_size() for p in SmallMLP().parameters())

    assert normal == all_bytes
    assert layerwise < 0.5 * normal


def test_per_parameter_clipping_bounds_each_gradient():
    reference, reference_optimizer, model, optimizer = _pair()
    data = _microbatches(3, 1)
    for update in data:
        _loss(reference, update[0]).backward()
        for param in reference.parameters():
            torch.nn.utils.clip_grad_norm_([param], 0.01)
        reference_optimizer.step()
        reference_optimizer.zero_grad()

    _train_layerwise(model, optimizer, data, max_grad_norm_per_parameter=0.01)

    for (name, expected), actual in zip(reference.named_parameters(), model.parameters()):
        torch.testing.assert_close(actual, expected, rtol=1e-5, atol=1e-6, msg=name)


def test_global_clipping_is_rejected():
    _, _, _, optimizer = _pair()
    with pytest.raises(ValueError, match="clip_grad_norm=1.0 is global gradient-norm clipping"):
        LayerwiseUpdate(optimizer, clip_grad_norm=1.0)


def test_data_parallel_is_rejected(monkeypatch):
    _, _, _, optimizer = _pair()
    monkeypatch.setattr(torch.distributed, "is_initialized", lambda: True)
    monkeypatch.setattr(torch.distributed, "get_world_size", lambda: 2)

    with pytest.raises(ValueError, match="not supported with data-parallel training"):
        LayerwiseUpdate(optimizer)


@pytest.mark.parametrize(
    "options,message",
    [
        ({"accumulation_steps": 0}, "accumulation_steps must be an integer >= 1, got 0"),
        ({"max_grad_norm_per_parameter": 0.0}, "max_grad_norm_per_parameter must be positive"),
    ],
)
def test_bad_arguments_are_rejected(options, message):
    _, _, _, optimizer = _pair()
    with pytest.raises(ValueError, match=message):
        LayerwiseUpdate(optimizer, **options)


def test_microbatch_declarations_are_checked():
    _, _, model, optimizer = _pair()
    layerwise = LayerwiseUpdate(optimizer, accumulation_steps=2)

    with pytest.raises(RuntimeError, match="micro-batch 1 of 2 declared last=True; expected last=False"):
        layerwise.begin_microbatch(last=True)
    layerwise.begin_microbatch(last=False)
    with pytest.raises(RuntimeError, match="finish_update after 1 of 2 micro-batches"):
        layerwise.finish_update()
