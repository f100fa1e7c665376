"""The benchmarks on a CUDA GPU in bf16, in a few minutes, summarized in one table.

It runs shortened versions of ``bench.refresh``, ``bench.step``, ``bench.memory`` and
``bench.end_to_end`` with the same code and targets, on bf16 weights (bases and moments stay
float32). Run it as ``bash bench/gpu_check.sh``; ``--device cpu --dtype float32`` with small sizes
exercises the same path on a machine without a GPU.
"""

from __future__ import annotations

import argparse
import warnings
from pathlib import Path
from typing import Any

from bench import end_to_end, memory, refresh, step
from bench.common import (
    REPO_ROOT,
    add_common_arguments,
    machine_info,
    milliseconds,
    new_console,
    new_table,
    print_machine,
    setup,
    write_json,
)


def _check(value: float, limit: float, at_most: bool) -> str:
    ok = value <= limit if at_most else value >= limit
    return "[green]met[/green]" if ok else "[red]missed[/red]"


def refresh_rows(shapes, device, dtype) -> list[tuple[str, str, str, str]]:
    """Time the refresh of every tracker; return summary rows."""
    rows = []
    for d, k, rank in shapes:
        for transposed in (False, True):
            result = refresh.benchmark_shape(
                d, k, rank, transposed, device=device, dtype=dtype, repeats=20, svd_repeats=3, warmup=3
            )
            seconds = result["seconds"]
            label = f"{result['weight']} r={rank} {result['projection']}"
            over_floor = seconds["subtrack"] / seconds["project+back"]
            svd_over = seconds["svd"] / seconds["subtrack"]
            is_target = (d, k, rank) == refresh.TARGET_SHAPE
            rows.append(
                (
                    "refresh",
                    f"{label}: subtrack / project+back ({milliseconds(seconds['subtrack'])} / "
                    f"{milliseconds(seconds['project+back'])} ms)",
                    f"{over_floor:.2f}",
                    f"≤ {refresh.MAX_SUBTRACK_OVER_FLOOR:g}: {_check(over_floor, refresh.MAX_SUBTRACK_OVER_FLOOR, True)}"
                    if is_target
                    else "",
                )
            )
            rows.append(
                (
                    "refresh",
                    f"{label}: svd / subtrack (svd {milliseconds(seconds['svd'])} ms, random "
                    f"{milliseconds(seconds['random'])} ms)",
                    f"{svd_over:.1f}",
                    f"≥ {refresh.MIN_SVD_OVER_SUBTRACK:g}: {_check(svd_over, refresh.MIN_SVD_OVER_SUBTRACK, False)}"
                    if is_target
                    else "",
                )
            )
    return rows


def step_rows(model_path: Path, rank: int, device, dtype) -> list[tuple[str, str, str, str]]:
    """Time plain and refresh steps of every optimizer; return summary rows."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        samples = step.run(
            model_path,
            list(step.ALL_OPTIMIZERS),
            rank=rank,
            sample_interval=5,
            refreshes=3,
            batch=8,
            seq_len=256,
            device=device,
            dtype=dtype,
        )
    summary = step.summarize(samples, 200)
    rows = []
    for name, row in summary.items():
        rows.append(
            (
                "step",
                f"{name}: plain / refresh / average over 200, ms",
                f"{milliseconds(row['plain'])} / {milliseconds(row['refresh'])} / {milliseconds(row['average'])}",
                "",
            )
        )
    plain_ratio = summary["subtrack_pp"]["plain"] / summary["galore"]["plain"]
    average_ratio = summary["subtrack_pp"]["average"] / summary["galore-torch"]["average"]
    rows.append(
        (
            "step",
            "subtrack_pp plain / galore plain",
            f"{plain_ratio:.2f}",
            f"≤ {step.MAX_PLAIN_OVER_GALORE:g}: {_check(plain_ratio, step.MAX_PLAIN_OVER_GALORE, True)}",
        )
    )
    rows.append(
        (
            "step",
            "subtrack_pp / galore-torch, averaged over 200",
            f"{average_ratio:.2f}",
            f"≤ {step.MAX_AVERAGE_OVER_GALORE_TORCH:g}: "
            f"{_check(average_ratio, step.MAX_AVERAGE_OVER_GALORE_TORCH, True)}",
        )
    )
    return rows


def memory_rows(model_path: Path, rank: int, device, dtype) -> list[tuple[str, str, str, str]]:
    """Compare measured and analytic optimizer-state bytes; return summary rows."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        states = memory.state_rows(model_path, rank, 2, 128, device, dtype)
    worst = max(abs(row["analytic"] - row["measured"]) / row["measured"] for row in states)
    by_name = {row["composition"]: row["measured"] for row in states}
    return [
        (
            "memory",
            "optimizer states, subtrack_pp / adamw (measured)",
            f"{by_name['subtrack_pp'] / by_name['adamw']:.3f}",
            "",
        ),
        (
            "memory",
            "largest |analytic − measured| / measured over compositions",
            f"{worst:.4%}",
            f"≤ 1%: {_check(worst, memory.MAX_RELATIVE_DIFFERENCE, True)}",
        ),
    ]


def end_to_end_rows(model_path: Path, rank: int, device, precision: str, batch: int, seq_len: int):
    """Measure train.py tokens/s with AdamW and SubTrack++; return summary rows."""
    if not (REPO_ROOT / "data" / "tokenizer.json").is_file():
        return [("end-to-end", "skipped: data/ not found (run `bash setup.sh`)", "-", "")]
    summary, _ = end_to_end.measure_throughput(
        ["adamw", "subtrack_pp"],
        model_path,
        rank=rank,
        rounds=2,
        window=5,
        windows=4,
        batch=batch,
        seq_len=seq_len,
        device=str(device),
        precision=precision,
    )
    ratio = summary["subtrack_pp"]["tokens_per_s"] / summary["adamw"]["tokens_per_s"]
    return [
        (
            "end-to-end",
            f"tokens/s, adamw / subtrack_pp ({batch}×{seq_len} tokens per update)",
            f"{summary['adamw']['tokens_per_s']:,.0f} / {summary['subtrack_pp']['tokens_per_s']:,.0f}",
            "",
        ),
        (
            "end-to-end",
            "subtrack_pp / adamw tokens/s",
            f"{ratio:.3f}",
            f"≥ {end_to_end.MIN_THROUGHPUT_RATIO:g}: {_check(ratio, end_to_end.MIN_THROUGHPUT_RATIO, False)}",
        ),
    ]


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="bash bench/gpu_check.sh", description=__doc__.split("\n\n")[0])
    parser.add_argument("--shapes", default=refresh.DEFAULT_SHAPES, help="refresh shapes, SMALLxLARGE:RANK list")
    parser.add_argument(
        "--model", type=Path, default=REPO_ROOT / "configs/model/llama_60m.yaml", help="model YAML (default: llama_60m)"
    )
    parser.add_argument("--rank", type=int, default=128, help="rank of the low-rank optimizers (default: 128)")
    parser.add_argument("--e2e-batch", type=int, default=32, help="sequences per train.py update (default: 32)")
    parser.add_argument("--e2e-seq-len", type=int, default=256, help="tokens per train.py sequence (default: 256)")
    parser.add_argument("--skip-end-to-end", action="store_true", help="leave out the train.py throughput runs")
    add_common_arguments(parser)
    parser.set_defaults(device="cuda", dtype="bfloat16")
    args = parser.parse_args(argv)
    device, dtype = setup(args)
    precision = "bfloat16" if args.dtype == "bfloat16" else "float32"

    console = new_console()
    info = machine_info(device)
    rows = refresh_rows(refresh.parse_shapes(args.shapes), device, dtype)
    rows += step_rows(args.model, args.rank, device, dtype)
    rows += memory_rows(args.model, args.rank, device, dtype)
    if not args.skip_end_to_end:
        rows += end_to_end_rows(args.model, args.rank, device, precision, args.e2e_batch, args.e2e_seq_len)
    info["load_average_after"] = machine_info(device)["load_average"]

    table = new_table(
        f"GPU check on {info.get('gpu', info['cpu'])}, {args.dtype} weights ({args.model.name}, rank {args.rank})",
        ["benchmark", "measurement", "value", "target"],
    )
    for row in rows:
        table.add_row(*row)
    print_machine(console, info)
    console.print(table)

    payload = {"benchmark": "gpu_check", "machine": info, "dtype": args.dtype, "rows": [list(row) for row in rows]}
    write_json(args.json, payload)
    return payload


if __name__ == "__main__":
    main()
