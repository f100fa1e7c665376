"""Optimizer-state bytes per composition, measured from the state, against the analytic count.

For every composition in ``configs/optim``, and for the ``galore-torch`` package's GaLoreAdamW as a
comparison, one optimizer update runs on a LLaMA model's gradients. Then the bytes of every tensor
in ``optimizer.state`` are summed and compared with :func:`lowrank.memory.estimate_memory`: basis
``d·r`` plus moments ``2·k·r`` float32 per low-rank matrix, dense AdamW for the rest. GaLoreAdamW
keeps its basis and moments in the weight dtype and its step counters as Python integers, and its
analytic count says so. A second
table checks the whole estimate (weights, gradients, optimizer states, peak gradients in per-layer
mode) against a real model of each size given.

Run from the repository root::

    python -m bench.memory
    python -m bench.memory --state-model configs/model/llama_9m.yaml --rank 32

Target: measured and analytic optimizer-state bytes agree to within 1%.
"""

from __future__ import annotations

import argparse
import copy
import warnings
from pathlib import Path
from typing import Any

import torch

from bench.common import (
    REPO_ROOT,
    add_common_arguments,
    machine_info,
    new_console,
    new_table,
    print_machine,
    setup,
    write_json,
)
from bench.step import build_named_optimizer, composition_config, real_gradients
from lowrank.build import build_optimizer
from lowrank.layerwise import LayerwiseUpdate
from lowrank.memory import build_meta_model, estimate_memory, format_bytes, load_model_config, optimizer_state_bytes
from lowrank.train.model import build_model

COMPOSITIONS = ("adamw", "galore", "galore_reset", "random", "subtrack", "subtrack_pp", "fira")
MAX_RELATIVE_DIFFERENCE = 0.01


def galore_torch_analytic_bytes(named_parameters, rank: int, dtype: torch.dtype) -> int:
    """Count GaLoreAdamW's state: basis and moments in the weight dtype, dense moments, no step tensors."""
    estimate = estimate_memory(named_parameters, composition_config("galore", rank, 200), dtype)
    element_bytes = torch.empty((), dtype=dtype).element_size()
    total = 0
    for param in estimate.parameters:
        if param.rank is None:
            total += 2 * param.weight_bytes
        else:
            d, k = min(param.shape), max(param.shape)
            total += (d * rank + 2 * k * rank) * element_bytes
    return total


def galore_torch_state_bytes(optimizer: torch.optim.Optimizer) -> int:
    """Measure GaLoreAdamW's state: its tensors plus the basis kept inside each projector object."""
    total = optimizer_state_bytes(optimizer)
    for state in optimizer.state.values():
        projector = state.get("projector")
        if projector is not None and torch.is_tensor(projector.ortho_matrix):
            total += projector.ortho_matrix.numel() * projector.ortho_matrix.element_size()
    return total


def state_rows(model_path: Path, rank: int, batch: int, seq_len: int, device, dtype) -> list[dict[str, Any]]:
    """Measure each composition's optimizer-state bytes after one update; return table rows."""
    config = load_model_config(model_path)
    torch.manual_seed(0)
    model = build_model(config, config.vocab_size).to(device=device, dtype=dtype)
    gradients = real_gradients(model, batch, seq_len)

    rows = []
    for name in (*COMPOSITIONS, "galore-torch"):
        replica = copy.deepcopy(model)
        for parameter_name, param in replica.named_parameters():
            param.grad = gradients[parameter_name].clone()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # galore-torch's deprecation notice
            if name == "galore-torch":
                optimizer, _ = build_named_optimizer(name, replica, rank, 200)
            else:
                optimizer = build_optimizer(replica, composition_config(name, rank, 200))
        optimizer.step()

        named = replica.named_parameters(remove_duplicate=False)
        if name == "galore-torch":
            measured = galore_torch_state_bytes(optimizer)
            analytic = galore_torch_analytic_bytes(named, rank, dtype)
        else:
            measured = optimizer_state_bytes(optimizer)
            analytic = estimate_memory(named, composition_config(name, rank, 200), dtype).optimizer_states
        rows.append({"composition": name, "measured": measured, "analytic": analytic})
        del optimizer, replica
    return rows


def peak_layerwise_gradient_bytes(model: torch.nn.Module, optimizer, tokens: torch.Tensor) -> int:
    """Run one per-layer update and return the most gradient bytes alive at any parameter's hook."""
    params = [p for group in optimizer.param_groups for p in group["params"]]
    peak = 0

    def record(_: torch.Tensor) -> None:
        nonlocal peak
        alive = sum(p.grad.numel() * p.grad.element_size() for p in params if p.grad is not None)
        peak = max(peak, alive)

    # Registered before LayerwiseUpdate's hooks, so each runs while the gradient is still alive.
    handles = [p.register_post_accumulate_grad_hook(record) for p in params]
    layerwise = LayerwiseUpdate(optimizer)
    layerwise.begin_microbatch(last=True)
    model(input_ids=tokens, labels=tokens).loss.backward()
    layerwise.finish_update()
    layerwise.remove()
    for handle in handles:
        handle.remove()
    return peak


def estimate_rows(model_path: Path, rank: int, batch: int, seq_len: int, device, dtype) -> list[dict[str, Any]]:
    """Compare the meta-device estimate of one model with the real model; return table rows."""
    config = load_model_config(model_path)
    optimizer_config = composition_config("subtrack_pp", rank, 200)
    estimate = estimate_memory(
        build_meta_model(config).named_parameters(remove_duplicate=False), optimizer_config, dtype
    )

    torch.manual_seed(0)
    model = build_model(config, config.vocab_size).to(device=device, dtype=dtype)
    weights = sum(p.numel() * p.element_size() for p in model.parameters())
    gradients = real_gradients(model, batch, seq_len)
    gradient_bytes = sum(g.numel() * g.element_size() for g in gradients.values())
    for name, param in model.named_parameters():
        param.grad = gradients[name]
    optimizer = build_optimizer(model, optimizer_config)
    optimizer.step()
    states = optimizer_state_bytes(optimizer)
    model.zero_grad(set_to_none=True)
    tokens = torch.randint(0, config.vocab_size, (batch, seq_len), generator=torch.Generator().manual_seed(1))
    peak = peak_layerwise_gradient_bytes(model, optimizer, tokens.to(device))

    label = f"{model_path.stem}, subtrack_pp r={rank}"
    return [
        {"model": label, "what": "weights", "estimate": estimate.weights, "measured": weights},
        {"model": label, "what": "gradients", "estimate": estimate.gradients, "measured": gradient_bytes},
        {"model": label, "what": "optimizer states", "estimate": estimate.optimizer_states, "measured": states},
        {
            "model": label,
            "what": "gradients, per-layer peak",
            "estimate": estimate.gradients_layerwise,
            "measured": peak,
        },
    ]


def _difference(estimate: int, measured: int) -> float:
    return (estimate - measured) / measured if measured else float("nan")


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="python -m bench.memory", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--state-model",
        type=Path,
        default=REPO_ROOT / "configs/model/llama_60m.yaml",
        help="model YAML of the per-composition table (default: llama_60m)",
    )
    parser.add_argument("--rank", type=int, default=128, help="rank of the per-composition table (default: 128)")
    parser.add_argument(
        "--estimate-models",
        default="llama_9m:32,llama_20m:64,llama_60m:128",
        help="NAME:RANK list of configs/model files for the estimate table (default: llama_9m:32,llama_20m:64,llama_60m:128)",
    )
    parser.add_argument("--batch", type=int, default=2, help="sequences in the gradient batch (default: 2)")
    parser.add_argument("--seq-len", type=int, default=128, help="tokens per sequence (default: 128)")
    add_common_arguments(parser)
    args = parser.parse_args(argv)
    device, dtype = setup(args)

    console = new_console()
    info = machine_info(device)
    states = state_rows(args.state_model, args.rank, args.batch, args.seq_len, device, dtype)
    estimates = []
    for item in args.estimate_models.split(","):
        name, _, rank = item.strip().partition(":")
        if not rank.isdigit():
            raise SystemExit(f"--estimate-models: invalid entry {item!r}; expected NAME:RANK such as llama_9m:32")
        model_path = REPO_ROOT / "configs" / "model" / f"{name}.yaml"
        estimates.extend(estimate_rows(model_path, int(rank), args.batch, args.seq_len, device, dtype))

    table = new_table(
        f"Optimizer-state bytes after one update ({args.state_model.name}, rank {args.rank}, {args.dtype})",
        ["composition", "measured", "analytic", "difference", "size"],
    )
    for row in states:
        row["difference"] = _difference(row["analytic"], row["measured"])
        table.add_row(
            row["composition"],
            f"{row['measured']:,}",
            f"{row['analytic']:,}",
            f"{row['difference']:+.4%}",
            format_bytes(row["measured"]),
        )
    print_machine(console, info)
    console.print(table)
    worst = max(abs(row["difference"]) for row in states)
    mark = "[green]met[/green]" if worst <= MAX_RELATIVE_DIFFERENCE else "[red]missed[/red]"
    console.print(f"target: largest |analytic − measured| / measured = {worst:.4%} ≤ 1%: {mark}")

    table = new_table(
        f"lowrank.memory estimate (meta device) against the real model, {args.dtype}",
        ["model", "what", "estimate", "measured", "difference"],
    )
    for row in estimates:
        row["difference"] = _difference(row["estimate"], row["measured"])
        table.add_row(
            row["model"], row["what"], f"{row['estimate']:,}", f"{row['measured']:,}", f"{row['difference']:+.4%}"
        )
    console.print(table)

    payload = {"benchmark": "memory", "machine": info, "dtype": args.dtype, "states": states, "estimates": estimates}
    write_json(args.json, payload)
    return payload


if __name__ == "__main__":
    main()
