"""Checkpoint files: atomic writes, pruning, weights_only loading, RNG state, metrics and evaluation."""

from __future__ import annotations

import json
import math
import random

import numpy as np
import pytest
import torch

from lowrank.train import checkpoint as checkpoint_module
from lowrank.train.checkpoint import (
    capture_rng_state,
    list_checkpoints,
    load_checkpoint,
    restore_rng_state,
    save_checkpoint,
)
from lowrank.train.loss import evaluate
from lowrank.train.metrics import MetricsLog, read_metrics


def state(value: float) -> dict:
    return {"model": {"weight": torch.full((3, 3), value)}, "config": {"name": "x", "lr": 0.1}, "rng": capture_rng_state()}


def test_save_then_load_with_weights_only(tmp_path):
    path = save_checkpoint(tmp_path, 5, state(1.0), keep_last=2)

    loaded = load_checkpoint(path)

    assert path.name == "step_00000005.pt"
    assert loaded["step"] == 5
    assert torch.equal(loaded["model"]["weight"], torch.ones(3, 3))
    assert loaded["config"] == {"name": "x", "lr": 0.1}


def test_keep_last_prunes_oldest(tmp_path):
    for step in (1, 2, 3, 4):
        save_checkpoint(tmp_path, step, state(step), keep_last=2)

    assert [step for step, _ in list_checkpoints(tmp_path)] == [3, 4]


def test_failed_write_keeps_previous_checkpoint(tmp_path, monkeypatch):
    save_checkpoint(tmp_path, 1, state(1.0), keep_last=1)
    real_save = torch.save

    def crash_midway(obj, path):
        real_save(obj, path)
        with open(path, "r+b") as handle:  # leave a truncated file behind, as a kill would
            handle.truncate(100)
        raise OSError("simulated crash during checkpoint write")

    monkeypatch.setattr(checkpoint_module.torch, "save", crash_midway)
    with pytest.raises(OSError, match="simulated crash"):
        save_checkpoint(tmp_path, 2, state(2.0), keep_last=1)
    monkeypatch.undo()

    assert [step for step, _ in list_checkpoints(tmp_path)] == [1]
    assert torch.equal(load_checkpoint(list_checkpoints(tmp_path)[-1][1])["model"]["weight"], torch.ones(3, 3))
    assert sorted(path.name for path in tmp_path.iterdir()) == ["step_00000001.pt"]


def test_stray_temporary_file_is_ignored(tmp_path):
    save_checkpoint(tmp_path, 1, state(1.0), keep_last=2)
    (tmp_path / ".step_00000002.pt.tmp").write_bytes(b"partial")

    assert [step for step, _ in list_checkpoints(tmp_path)] == [1]


def test_non_checkpoint_file_is_rejected(tmp_path):
    torch.save({"weights": torch.zeros(1)}, tmp_path / "step_00000001.pt")

    with pytest.raises(ValueError, match="not a lowrank checkpoint"):
        load_checkpoint(tmp_path / "step_00000001.pt")


def test_rng_state_round_trip(tmp_path):
    torch.manual_seed(3)
    random.seed(3)
    np.random.seed(3)
    saved = load_checkpoint(save_checkpoint(tmp_path, 1, {"rng": capture_rng_state()}, keep_last=1))["rng"]
    expected = (torch.rand(4), random.random(), np.random.rand())

    torch.manual_seed(99)
    random.seed(99)
    np.random.seed(99)
    restore_rng_state(saved)

    assert torch.equal(torch.rand(4), expected[0])
    assert random.random() == expected[1]
    assert np.random.rand() == expected[2]


class FixedLoss:
    """A stand-in model whose loss for batch i is values[i], to check how evaluation averages."""

    def __init__(self, values):
        self.values = values
        self.calls = 0
        self.training = True

    def eval(self):
        self.training = False

    def train(self, mode=True):
        self.training = mode

    def __call__(self, model, batch):
        value = self.values[self.calls]
        self.calls += 1
        return torch.tensor(value)


def test_eval_averages_exactly_the_given_batches():
    losses = FixedLoss([1.0, 2.0, 6.0, 100.0])
    batches = [torch.zeros(2, 5, dtype=torch.long)] * 3

    result = evaluate(losses, batches, torch.device("cpu"), loss_fn=losses)

    assert losses.calls == 3
    assert result["batches"] == 3
    assert result["tokens"] == 3 * 2 * 4
    assert result["loss"] == pytest.approx(3.0)
    assert result["perplexity"] == pytest.approx(math.exp(3.0))
    assert losses.training


def test_eval_weights_short_last_batch_by_tokens():
    losses = FixedLoss([1.0, 4.0])
    batches = [torch.zeros(3, 5, dtype=torch.long), torch.zeros(1, 5, dtype=torch.long)]

    result = evaluate(losses, batches, torch.device("cpu"), loss_fn=losses)

    assert result["loss"] == pytest.approx((1.0 * 3 + 4.0 * 1) / 4)


def test_metrics_truncate_after_step(tmp_path):
    log = MetricsLog(tmp_path / "metrics.jsonl")
    for step in range(1, 6):
        log.append({"kind": "train", "step": step, "loss": float(step)})
    log.append({"kind": "nonfinite", "step": 5, "loss": math.nan})

    log.truncate_after(3)

    records = read_metrics(log.path)
    assert [record["step"] for record in records] == [1, 2, 3]
    assert all(json.loads(line) for line in log.path.read_text().splitlines())


def test_nonfinite_values_are_written_as_null(tmp_path):
    log = MetricsLog(tmp_path / "metrics.jsonl")

    log.append({"kind": "nonfinite", "step": 1, "loss": math.inf, "grad_norm": math.nan})

    assert read_metrics(log.path) == [{"kind": "nonfinite", "step": 1, "loss": None, "grad_norm": None}]
