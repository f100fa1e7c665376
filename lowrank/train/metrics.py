"""Run metrics: a JSON Lines log, a loss plot, and memory measures of the optimizer."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import torch

__all__ = ["MetricsLog", "optimizer_state_bytes", "plot_losses", "read_metrics"]


class MetricsLog:
    """Append-only JSON Lines file of metric records, one object per line.

    Every record has ``kind`` (``train``, ``eval`` or ``nonfinite``) and ``step`` (optimizer
    updates applied so far). Non-finite floats are written as ``null``, so every line is strict JSON.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def append(self, record: dict[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(_finite(record)) + "\n")

    def truncate_after(self, step: int) -> None:
        """Drop records of steps after ``step``, which a resumed run is about to repeat."""
        if not self.path.is_file():
            return
        kept = [record for record in read_metrics(self.path) if record.get("step", 0) <= step]
        temporary = self.path.with_name(self.path.name + ".tmp")
        with open(temporary, "w", encoding="utf-8") as handle:
            for record in kept:
                handle.write(json.dumps(record) + "\n")
        os.replace(temporary, self.path)


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(item) for item in value]
    return value


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    """Return the records of a metrics file; a torn last line (from a crash) is skipped."""
    records = []
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return records


def plot_losses(metrics_path: str | Path, image_path: str | Path, title: str = "") -> Path:
    """Draw training and evaluation loss against optimizer updates into a PNG file."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = read_metrics(metrics_path)
    train = [(r["step"], r["loss"]) for r in records if r.get("kind") == "train" and r.get("loss") is not None]
    evaluation = [(r["step"], r["loss"]) for r in records if r.get("kind") == "eval" and r.get("loss") is not None]

    figure, axes = plt.subplots(figsize=(7, 4.2), dpi=120)
    if train:
        axes.plot(*zip(*train), label="train loss (mean over the log interval)", linewidth=1.2)
    if evaluation:
        axes.plot(*zip(*evaluation), "o-", label="eval loss", linewidth=1.5, markersize=4)
    axes.set_xlabel("optimizer update")
    axes.set_ylabel("cross-entropy (nats per token)")
    axes.set_title(title)
    axes.grid(alpha=0.3)
    axes.legend()
    figure.tight_layout()
    image_path = Path(image_path)
    figure.savefig(image_path)
    plt.close(figure)
    return image_path


def optimizer_state_bytes(optimizer: torch.optim.Optimizer) -> int:
    """Return the bytes of every tensor in ``optimizer.state`` (moments, bases, step counters)."""
    total = 0
    for state in optimizer.state.values():
        for value in state.values():
            if torch.is_tensor(value):
                total += value.numel() * value.element_size()
    return total
