"""Estimate the training memory of a model and optimizer composition without allocating either.

The model is built on the ``meta`` device, so a 7B configuration costs a few seconds and no
memory, and its parameters are assigned to groups by the same rules as :func:`lowrank.build_optimizer`.
Bytes are then counted analytically:

- weights and gradients: every trainable parameter in the weight dtype, tied weights once;
- optimizer state of a low-rank ``m×n`` matrix at rank ``r`` (``d = min(m, n)``, ``k = max(m, n)``):
  the basis ``d·r`` and the moments ``2·k·r``, all float32, plus whatever the residual handler
  keeps (recovery scaling: one float32 scalar);
- optimizer state of a dense parameter: ``torch.optim.AdamW``'s two moments in the parameter's
  dtype plus its float32 step counter.

Per-layer mode (:class:`lowrank.LayerwiseUpdate`) frees each gradient as soon as its parameter is
updated, so only one parameter's gradient is alive at a time. The exception is a tied weight: its
gradient accumulates over both uses and so stays alive through the backward pass.

Command line::

    python -m lowrank.memory configs/model/llama_7b.yaml configs/optim/subtrack_pp.yaml --dtype bfloat16

NOTE: activations, autograd buffers and the transient ``d×k`` update of a low-rank step are not
counted; they depend on batch size and sequence length, not on the optimizer.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable

import torch
from torch import nn

from lowrank.build import load_optimizer_config, select_parameters
from lowrank.config import ConfigError, from_dict, load_yaml
from lowrank.optim_config import OptimizerConfig
from lowrank.recovery.base import RESIDUALS

__all__ = [
    "MemoryEstimate",
    "ParameterEstimate",
    "build_meta_model",
    "estimate_memory",
    "load_model_config",
    "lowrank_state_bytes",
    "optimizer_state_bytes",
]

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}

_FLOAT32_BYTES = 4


@dataclass
class ParameterEstimate:
    """Bytes that one trainable parameter costs, by kind."""

    name: str
    shape: tuple[int, ...]
    group: str
    """Label of the optimizer group the parameter joins."""
    rank: int | None
    """Rank of its low-rank group, or ``None`` for dense AdamW."""
    weight_bytes: int
    grad_bytes: int
    state_bytes: int
    tied: bool = False
    """True when the module uses this tensor under more than one name (tied embeddings)."""


@dataclass
class MemoryEstimate:
    """The estimate for one model, optimizer composition and weight dtype; every value in bytes."""

    dtype: str
    parameters: list[ParameterEstimate] = field(default_factory=list)

    @property
    def weights(self) -> int:
        return sum(p.weight_bytes for p in self.parameters)

    @property
    def gradients(self) -> int:
        """Gradients of every parameter, alive together until ``optimizer.step()``."""
        return sum(p.grad_bytes for p in self.parameters)

    @property
    def gradients_layerwise(self) -> int:
        """Peak gradient bytes in per-layer mode: tied gradients plus the largest untied one."""
        tied = sum(p.grad_bytes for p in self.parameters if p.tied)
        untied = max((p.grad_bytes for p in self.parameters if not p.tied), default=0)
        return tied + untied

    @property
    def optimizer_states(self) -> int:
        return sum(p.state_bytes for p in self.parameters)

    @property
    def dense_adamw_states(self) -> int:
        """Optimizer state bytes if every parameter were trained with dense AdamW, for comparison."""
        return sum(_dense_state_bytes(p.weight_bytes) for p in self.parameters)

    @property
    def total(self) -> int:
        return self.weights + self.gradients + self.optimizer_states

    @property
    def total_layerwise(self) -> int:
        return self.weights + self.gradients_layerwise + self.optimizer_states

    def groups(self) -> list[dict]:
        """Summarize the parameters by optimizer group, in the order the groups appear."""
        summary: dict[str, dict] = {}
        for p in self.parameters:
            entry = summary.setdefault(
                p.group, {"group": p.group, "rank": p.rank, "parameters": 0, "elements": 0, "state_bytes": 0}
            )
            entry["parameters"] += 1
            entry["elements"] += _numel(p.shape)
            entry["state_bytes"] += p.state_bytes
        return list(summary.values())

    def to_dict(self) -> dict:
        """Return the totals, the groups and the per-parameter rows as plain data."""
        return {
            "dtype": self.dtype,
            "weights": self.weights,
            "gradients": self.gradients,
            "gradients_layerwise": self.gradients_layerwise,
            "optimizer_states": self.optimizer_states,
            "dense_adamw_states": self.dense_adamw_states,
            "total": self.total,
            "total_layerwise": self.total_layerwise,
            "groups": self.groups(),
            "parameters": [asdict(p) for p in self.parameters],
        }


def load_model_config(path: str | Path, vocab_size: int | None = None):
    """Read a model YAML (``configs/model/*.yaml``) into a validated ``ModelConfig``.

    ``include:`` entries are resolved as in run files. ``vocab_size`` fills in a configuration whose
    own ``vocab_size`` is null (``train.py`` takes it from the tokenizer).

    Raises:
        ConfigError: on a missing file, an unknown key or a bad value (naming the key), or a
            vocabulary size that neither the file nor ``vocab_size`` gives.
    """
    from lowrank.train.config import ModelConfig, resolve_includes

    path = Path(path)
    data = resolve_includes(load_yaml(path), path.parent, [path.resolve()])
    config = from_dict(ModelConfig, data, "model")
    if vocab_size is not None:
        if vocab_size < 1:
            raise ConfigError(f"vocab_size must be at least 1, got {vocab_size}")
        config.vocab_size = vocab_size
    if config.vocab_size is None:
        raise ConfigError(
            f"{str(path)!r} leaves vocab_size null, because train.py takes it from the tokenizer. "
            "Pass the vocabulary size with --vocab-size"
        )
    return config


def build_meta_model(config) -> nn.Module:
    """Build the ``LlamaForCausalLM`` of a ``ModelConfig`` on the meta device (no memory)."""
    from lowrank.train.model import build_model

    with torch.device("meta"):
        return build_model(config, config.vocab_size)


def lowrank_state_bytes(shape: tuple[int, int], rank: int, residual_name: str, residual_options: dict) -> int:
    """Return the optimizer-state bytes of one low-rank matrix: basis, moments, residual memory."""
    d, k = min(shape), max(shape)
    state: dict = {}
    residual = RESIDUALS.build(residual_name, dict(residual_options), path="residual")
    residual.init_state(state, torch.empty((d, k), dtype=torch.float32, device="meta"))
    residual_bytes = sum(_tensor_bytes(value) for value in state.values() if torch.is_tensor(value))
    return (d * rank + 2 * k * rank) * _FLOAT32_BYTES + residual_bytes


def estimate_memory(
    named_parameters: Iterable[tuple[str, torch.Tensor]],
    config: str | Path | dict | OptimizerConfig,
    dtype: torch.dtype = torch.float32,
) -> MemoryEstimate:
    """Count weight, gradient and optimizer-state bytes per parameter, with weights in ``dtype``.

    ``named_parameters`` may live on any device, the meta device included: only names, shapes and
    ``requires_grad`` are read. Parameters that appear under several names count once and are
    marked tied.

    Raises:
        ConfigError: when the optimizer configuration does not fit the parameters (a rule that
            matches nothing, a rank too large, a 1-D parameter in a low-rank rule).
    """
    config = load_optimizer_config(config)
    named = list(named_parameters)
    uses: dict[int, int] = {}
    for _, param in named:
        uses[id(param)] = uses.get(id(param), 0) + 1

    groups = select_parameters(named, config)
    element_bytes = torch.empty((), dtype=dtype).element_size()

    estimate = MemoryEstimate(dtype=str(dtype).removeprefix("torch."))
    for group in groups:
        for name, param in zip(group["names"], group["params"]):
            weight_bytes = param.numel() * element_bytes
            if group["rank"] is None:
                state_bytes = _dense_state_bytes(weight_bytes)
            else:
                state_bytes = lowrank_state_bytes(
                    tuple(param.shape), group["rank"], group["residual"], group["residual_options"]
                )
            estimate.parameters.append(
                ParameterEstimate(
                    name=name,
                    shape=tuple(param.shape),
                    group=group["label"],
                    rank=group["rank"],
                    weight_bytes=weight_bytes,
                    grad_bytes=weight_bytes if param.requires_grad else 0,
                    state_bytes=state_bytes,
                    tied=uses[id(param)] > 1,
                )
            )
    return estimate


def optimizer_state_bytes(optimizer: torch.optim.Optimizer) -> int:
    """Measure the bytes allocated for the tensors in ``optimizer.state``, each storage counted once."""
    storages: dict[int, int] = {}  # data pointer -> bytes; only empty storages share pointer 0
    for state in optimizer.state.values():
        for value in state.values():
            if torch.is_tensor(value):
                storage = value.untyped_storage()
                storages[storage.data_ptr()] = storage.nbytes()
    return sum(storages.values())


def _dense_state_bytes(weight_bytes: int) -> int:
    return 2 * weight_bytes + _FLOAT32_BYTES  # exp_avg, exp_avg_sq, and the float32 step tensor


def _tensor_bytes(tensor: torch.Tensor) -> int:
    return tensor.numel() * tensor.element_size()


def _numel(shape: tuple[int, ...]) -> int:
    count = 1
    for size in shape:
        count *= size
    return count


# ----------------------------------------------------------------------------------------- command line


def format_bytes(count: int) -> str:
    """Format a byte count in binary units (KiB, MiB, GiB)."""
    value = float(count)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:,.0f} {unit}" if unit == "B" else f"{value:,.2f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def _print_estimate(estimate: MemoryEstimate, model_path: str, optimizer_path: str) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    if not console.is_terminal:
        console = Console(width=120)  # no wrapping of table cells in pipes and files
    totals = Table(title=f"Memory estimate: {model_path} with {optimizer_path}, {estimate.dtype} weights")
    totals.add_column("what")
    totals.add_column("bytes", justify="right")
    totals.add_column("size", justify="right")
    rows = [
        ("weights", estimate.weights),
        ("gradients", estimate.gradients),
        ("optimizer states", estimate.optimizer_states),
        ("total", estimate.total),
        ("gradients, per-layer mode (peak)", estimate.gradients_layerwise),
        ("total, per-layer mode", estimate.total_layerwise),
        ("optimizer states with dense AdamW, for comparison", estimate.dense_adamw_states),
    ]
    for label, count in rows:
        totals.add_row(label, f"{count:,}", format_bytes(count))
    console.print(totals)

    groups = Table(title="Optimizer states by group")
    for column in ("group", "mode", "parameters", "elements", "state bytes", "state size"):
        groups.add_column(column, justify="left" if column in ("group", "mode") else "right")
    for entry in estimate.groups():
        mode = "dense AdamW" if entry["rank"] is None else f"low-rank, r={entry['rank']}"
        groups.add_row(
            entry["group"],
            mode,
            str(entry["parameters"]),
            f"{entry['elements']:,}",
            f"{entry['state_bytes']:,}",
            format_bytes(entry["state_bytes"]),
        )
    console.print(groups)
    console.print(
        "[dim]Not counted: activations, autograd buffers and the transient d×k update of a step.[/dim]"
    )


def main(argv: list[str] | None = None) -> int:
    """Run the estimator from the command line; return the exit status."""
    parser = argparse.ArgumentParser(
        prog="python -m lowrank.memory",
        description="Estimate weights, gradients and optimizer-state bytes of a LLaMA model config "
        "trained with an optimizer config, without allocating the model.",
    )
    parser.add_argument("model", help="model YAML, such as configs/model/llama_7b.yaml")
    parser.add_argument("optimizer", help="optimizer YAML, such as configs/optim/subtrack_pp.yaml")
    parser.add_argument(
        "--dtype", choices=sorted(DTYPES), default="float32", help="dtype of weights and gradients (default: float32)"
    )
    parser.add_argument("--vocab-size", type=int, default=None, help="vocabulary size when the model YAML has none")
    parser.add_argument("--json", action="store_true", help="print the estimate as JSON instead of tables")
    args = parser.parse_args(argv)

    try:
        model_config = load_model_config(args.model, args.vocab_size)
        model = build_meta_model(model_config)
        estimate = estimate_memory(model.named_parameters(remove_duplicate=False), args.optimizer, DTYPES[args.dtype])
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2

    if args.json:
        print(json.dumps(estimate.to_dict(), indent=2))
    else:
        _print_estimate(estimate, args.model, args.optimizer)
    return 0


if __name__ == "__main__":
    sys.exit(main())
