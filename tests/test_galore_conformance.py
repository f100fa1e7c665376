"""External conformance: svd/keep/drop follows the galore-torch package's GaLoreAdamW trajectory."""

from __future__ import annotations

import copy
import warnings

import pytest
import torch

import lowrank

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    galore_torch = pytest.importorskip("galore_torch")

RANK, INTERVAL, SCALE, LR = 6, 3, 0.25, 1e-2
# ε sits differently in the two update rules (GaLore folds the bias corrections into the step
# size), so they agree exactly only as ε → 0; 1e-12 is far below every √v here.
EPS = 1e-12


class ThreeLayer(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.up = torch.nn.Linear(24, 40)  # (40, 24): right projection
        self.mid = torch.nn.Linear(40, 40)  # square: right projection
        self.down = torch.nn.Linear(40, 16)  # (16, 40): left projection

    def forward(self, inputs):
        return self.down(torch.tanh(self.mid(torch.tanh(self.up(inputs)))))


def _run(model, optimizer, steps: int) -> list[dict[str, torch.Tensor]]:
    generator = torch.Generator().manual_seed(1)
    trajectory = []
    for _ in range(steps):
        inputs = torch.randn(32, 24, generator=generator)
        targets = torch.randn(32, 16, generator=generator)
        torch.nn.functional.mse_loss(model(inputs), targets).backward()
        optimizer.step()
        optimizer.zero_grad()
        trajectory.append({name: p.detach().clone() for name, p in model.named_parameters()})
    return trajectory


def test_svd_keep_drop_matches_galore_torch():
    torch.manual_seed(0)
    reference_model = ThreeLayer()
    model = copy.deepcopy(reference_model)
    matrices = ["up.weight", "mid.weight", "down.weight"]

    def split(module):
        named = dict(module.named_parameters())
        return [named[n] for n in matrices], [p for n, p in named.items() if n not in matrices]

    low, dense = split(reference_model)
    reference = galore_torch.GaLoreAdamW(
        [
            {"params": dense},
            {"params": low, "rank": RANK, "update_proj_gap": INTERVAL, "scale": SCALE, "proj_type": "std"},
        ],
        lr=LR,
        eps=EPS,
        weight_decay=0.0,
        no_deprecation_warning=True,
    )
    ours = lowrank.build_optimizer(
        model,
        {
            "lr": LR,
            "eps": EPS,
            "groups": [
                {
                    "match": matrices,
                    "rank": RANK,
                    "update_interval": INTERVAL,
                    "scale": SCALE,
                    "tracker": "svd",
                    "transport": "keep",
                    "residual": "drop",
                }
            ],
        },
    )

    steps = 3 * INTERVAL + 1  # three refreshes after the first basis
    expected = _run(reference_model, reference, steps)
    actual = _run(model, ours, steps)

    for step, (want, got) in enumerate(zip(expected, actual)):
        for name in want:
            assert torch.allclose(got[name], want[name], rtol=1e-5, atol=1e-6), f"{name} at update {step}"
    moved = max((actual[-1][n] - actual[0][n]).abs().max().item() for n in matrices)
    assert moved > 1000 * 1e-6  # the weights moved far more than the tolerance
