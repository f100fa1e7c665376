"""Optimizer step time on a LLaMA model's real gradients: refresh steps, plain steps, their average.

Every optimizer gets its own copy of one randomly initialized LLaMA and the same gradients, taken
from one forward and backward pass on a batch of random tokens. The default batch of 8×256 tokens
exceeds every weight's row count, so no gradient is low-rank by construction. The gradients stay in
place, so each timed call is exactly one ``optimizer.step()``. ``adamw-fused`` is
``torch.optim.AdamW(fused=True)``, a reference for the cost of the dense AdamW part. Low-rank optimizers project the attention
and MLP weights (``*.self_attn.*_proj.weight``, ``*.mlp.*_proj.weight``) at the same rank; the rest
is dense AdamW. The optimizers step round-robin in one process, one step each per round.

To sample several refreshes in a short run, every low-rank optimizer refreshes every
``--sample-interval`` steps; a step's cost does not depend on the interval. The average over an
interval of ``T`` updates (``--interval``, default 200) is then ``(refresh + (T − 1)·plain) / T``.
The first two steps (the first basis and one more warm-up) are not recorded.

Run from the repository root::

    python -m bench.step                        # LLaMA-60m shapes, rank 128
    python -m bench.step --model configs/model/llama_9m.yaml --rank 32 --refreshes 2

Targets: a ``subtrack_pp`` plain step at most 1.1× a ``galore`` plain step, and ``subtrack_pp``
averaged over the interval at most 0.95× ``galore-torch``.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time
import warnings
from pathlib import Path
from typing import Any, Callable

import torch

from bench.common import (
    REPO_ROOT,
    add_common_arguments,
    machine_info,
    milliseconds,
    new_console,
    new_table,
    print_machine,
    setup,
    synchronize,
    verdict,
    write_json,
)
from lowrank.build import build_optimizer, load_optimizer_config, select_parameters
from lowrank.memory import load_model_config
from lowrank.train.model import build_model

COMPOSITIONS = ("galore", "subtrack", "subtrack_pp", "fira")
ALL_OPTIMIZERS = ("adamw", "adamw-fused", "galore-torch", *COMPOSITIONS)
MAX_PLAIN_OVER_GALORE = 1.1
MAX_AVERAGE_OVER_GALORE_TORCH = 0.95


def real_gradients(model: torch.nn.Module, batch: int, seq_len: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """Return every parameter's gradient from one next-token loss on random tokens."""
    device = next(model.parameters()).device
    generator = torch.Generator().manual_seed(seed)
    tokens = torch.randint(0, model.config.vocab_size, (batch, seq_len), generator=generator).to(device)
    model.zero_grad(set_to_none=True)
    model(input_ids=tokens, labels=tokens).loss.backward()
    gradients = {name: param.grad.detach().clone() for name, param in model.named_parameters()}
    model.zero_grad(set_to_none=True)
    return gradients


def composition_config(name: str, rank: int, interval: int) -> Any:
    """Load ``configs/optim/<name>.yaml`` with its low-rank rule set to ``rank`` and ``interval``."""
    config = load_optimizer_config(REPO_ROOT / "configs" / "optim" / f"{name}.yaml")
    for group in config.groups:
        if group.rank is not None:
            group.rank = rank
            group.update_interval = interval
    return config


def build_named_optimizer(
    name: str, model: torch.nn.Module, rank: int, interval: int
) -> tuple[torch.optim.Optimizer, Callable[[int], bool]]:
    """Build optimizer ``name`` for ``model``; also return whether its step ``t`` refreshes bases."""
    if name == "adamw":
        return torch.optim.AdamW(model.parameters(), lr=1e-3, foreach=True), lambda step: False
    if name == "adamw-fused":
        return torch.optim.AdamW(model.parameters(), lr=1e-3, fused=True), lambda step: False
    if name == "galore-torch":
        import galore_torch

        groups = select_parameters(model.named_parameters(), composition_config("galore", rank, interval))
        lowrank = [p for g in groups if g["rank"] is not None for p in g["params"]]
        dense = [p for g in groups if g["rank"] is None for p in g["params"]]
        optimizer = galore_torch.GaLoreAdamW(
            [
                {"params": dense},
                {"params": lowrank, "rank": rank, "update_proj_gap": interval, "scale": 0.25, "proj_type": "std"},
            ],
            lr=1e-2,
            no_deprecation_warning=True,
        )
        return optimizer, lambda step: step > 0 and step % interval == 0
    if name in COMPOSITIONS:
        optimizer = build_optimizer(model, composition_config(name, rank, interval))
        return optimizer, lambda step: step > 0 and step % interval == 0
    raise SystemExit(f"unknown optimizer {name!r}; choose from {', '.join(ALL_OPTIMIZERS)}")


def profile_plain_step(optimizer: torch.optim.Optimizer, rows: int) -> str:
    """Profile one plain ``optimizer.step()`` on the CPU; return the top ``rows`` ops by self time."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as profiler:
        optimizer.step()
    return profiler.key_averages().table(sort_by="self_cpu_time_total", row_limit=rows, max_name_column_width=40)


def run(
    model_path: Path,
    optimizers: list[str],
    *,
    rank: int,
    sample_interval: int,
    refreshes: int,
    batch: int,
    seq_len: int,
    device: torch.device,
    dtype: torch.dtype,
    profiled: tuple[str, ...] = (),
) -> dict[str, Any]:
    """Time ``refreshes·sample_interval`` steps of every optimizer, round-robin; return the samples.

    Optimizers named in ``profiled`` then run one more plain step under ``torch.profiler``, and
    its op table is stored under ``samples[name]["profile"]``.
    """
    torch.manual_seed(0)
    model = build_model(load_model_config(model_path), load_model_config(model_path).vocab_size)
    model = model.to(device=device, dtype=dtype)
    gradients = real_gradients(model, batch, seq_len)

    runs = {}
    for name in optimizers:
        replica = copy.deepcopy(model)
        for parameter_name, param in replica.named_parameters():
            param.grad = gradients[parameter_name].clone()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # galore-torch's deprecation notice
            optimizer, refreshes_at = build_named_optimizer(name, replica, rank, sample_interval)
        runs[name] = {"model": replica, "optimizer": optimizer, "refreshes_at": refreshes_at}

    samples = {name: {"plain": [], "refresh": [], "plain_steps": []} for name in optimizers}
    steps = refreshes * sample_interval + 1
    for step in range(steps):
        order = optimizers[step % len(optimizers):] + optimizers[: step % len(optimizers)]
        for name in order:
            optimizer = runs[name]["optimizer"]
            synchronize(device)
            started = time.perf_counter()
            optimizer.step()
            synchronize(device)
            seconds = time.perf_counter() - started
            if step < 2:
                continue  # the first basis, and one more warm-up step
            kind = "refresh" if runs[name]["refreshes_at"](step) else "plain"
            samples[name][kind].append(seconds)
            if kind == "plain":
                samples[name]["plain_steps"].append(step)

    for name in profiled:
        # The run ended on a refresh step, so the next step is a plain one.
        samples[name]["profile"] = profile_plain_step(runs[name]["optimizer"], rows=12)
    return samples


def paired_plain_ratio(samples: dict[str, dict[str, list]], numerator: str, denominator: str) -> float:
    """Return the median over rounds of ``numerator``'s plain-step time over ``denominator``'s.

    Both step in the same rounds, so each ratio compares two calls made seconds apart; on a shared
    machine this is steadier than the ratio of two medians.
    """
    first = dict(zip(samples[numerator]["plain_steps"], samples[numerator]["plain"]))
    second = dict(zip(samples[denominator]["plain_steps"], samples[denominator]["plain"]))
    return statistics.median(first[step] / second[step] for step in first.keys() & second.keys())


def summarize(samples: dict[str, dict[str, list[float]]], interval: int) -> dict[str, dict[str, float]]:
    """Return median plain and refresh step times and their average over ``interval`` updates."""
    summary = {}
    for name, kinds in samples.items():
        plain = statistics.median(kinds["plain"])
        refresh = statistics.median(kinds["refresh"]) if kinds["refresh"] else plain
        summary[name] = {
            "plain": plain,
            "plain_min": min(kinds["plain"]),
            "refresh": refresh,
            "average": (refresh + (interval - 1) * plain) / interval,
            "plain_samples": len(kinds["plain"]),
            "refresh_samples": len(kinds["refresh"]),
        }
    return summary


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="python -m bench.step", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--model", type=Path, default=REPO_ROOT / "configs/model/llama_60m.yaml", help="model YAML (default: llama_60m)"
    )
    parser.add_argument("--rank", type=int, default=128, help="rank of every low-rank optimizer (default: 128)")
    parser.add_argument(
        "--optimizers", default=",".join(ALL_OPTIMIZERS), help=f"comma-separated subset of {', '.join(ALL_OPTIMIZERS)}"
    )
    parser.add_argument("--interval", type=int, default=200, help="interval the average is taken over (default: 200)")
    parser.add_argument(
        "--sample-interval", type=int, default=5, help="refresh interval used while measuring (default: 5)"
    )
    parser.add_argument("--refreshes", type=int, default=3, help="refresh steps recorded per optimizer (default: 3)")
    parser.add_argument(
        "--profile", default="", help="comma-separated optimizers whose plain step is profiled after the timing"
    )
    parser.add_argument("--batch", type=int, default=8, help="sequences in the gradient batch (default: 8)")
    parser.add_argument("--seq-len", type=int, default=256, help="tokens per sequence (default: 256)")
    add_common_arguments(parser)
    args = parser.parse_args(argv)
    if args.sample_interval < 3 or args.refreshes < 1 or args.interval < 1:
        raise SystemExit("--sample-interval must be at least 3, --refreshes and --interval at least 1")
    device, dtype = setup(args)
    optimizers = [name.strip() for name in args.optimizers.split(",") if name.strip()]
    profiled = tuple(name.strip() for name in args.profile.split(",") if name.strip())
    unknown = [name for name in (*optimizers, *profiled) if name not in ALL_OPTIMIZERS]
    if unknown:
        raise SystemExit(f"unknown optimizer {unknown[0]!r}; choose from {', '.join(ALL_OPTIMIZERS)}")
    if not set(profiled) <= set(optimizers):
        raise SystemExit("--profile names must also be in --optimizers")

    console = new_console()
    info = machine_info(device)
    samples = run(
        args.model,
        optimizers,
        rank=args.rank,
        sample_interval=args.sample_interval,
        refreshes=args.refreshes,
        batch=args.batch,
        seq_len=args.seq_len,
        device=device,
        dtype=dtype,
        profiled=profiled,
    )
    info["load_average_after"] = machine_info(device)["load_average"]
    summary = summarize(samples, args.interval)

    reference = summary.get("galore-torch")
    table = new_table(
        f"Optimizer step time, ms ({args.model.name}, rank {args.rank}, {args.dtype}; median of "
        f"{summary[optimizers[0]]['plain_samples']} plain and {args.refreshes} refresh steps)",
        ["optimizer", "plain step", "plain, min", "refresh step", f"average over {args.interval}", "average / galore-torch"],
    )
    for name in optimizers:
        row = summary[name]
        relative = f"{row['average'] / reference['average']:.2f}" if reference else "-"
        refresh = "-" if name.startswith("adamw") else milliseconds(row["refresh"])
        table.add_row(
            name, milliseconds(row["plain"]), milliseconds(row["plain_min"]), refresh, milliseconds(row["average"]), relative
        )
    print_machine(console, info)
    console.print(table)

    if "subtrack_pp" in summary and "galore" in summary:
        ratio = summary["subtrack_pp"]["plain"] / summary["galore"]["plain"]
        paired = paired_plain_ratio(samples, "subtrack_pp", "galore")
        console.print(
            f"target: subtrack_pp plain / galore plain {verdict(ratio, MAX_PLAIN_OVER_GALORE, at_most=True)} "
            f"(median of per-round ratios {paired:.2f})"
        )
    if "subtrack_pp" in summary and reference:
        ratio = summary["subtrack_pp"]["average"] / reference["average"]
        paired = paired_plain_ratio(samples, "subtrack_pp", "galore-torch")
        console.print(
            f"target: subtrack_pp / galore-torch over {args.interval} "
            f"{verdict(ratio, MAX_AVERAGE_OVER_GALORE_TORCH, at_most=True)} "
            f"(plain steps alone, median of per-round ratios: {paired:.2f})"
        )

    for name in profiled:
        console.print(f"\nProfile of one {name} plain step (self CPU time, top ops):")
        console.print(samples[name]["profile"], markup=False, highlight=False)

    payload = {
        "benchmark": "step",
        "machine": info,
        "model": str(args.model),
        "rank": args.rank,
        "dtype": args.dtype,
        "interval": args.interval,
        "sample_interval": args.sample_interval,
        "summary": summary,
        "samples": samples,
    }
    write_json(args.json, payload)
    return payload


if __name__ == "__main__":
    main()
