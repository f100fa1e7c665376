"""Refresh cost of each tracker on LLaMA-like weight shapes, against one project-and-back.

One refresh is one ``tracker.update(basis, grad, rank, context)`` call on the float32 gradient,
oriented as the optimizer passes it: for a wide weight (``m < n``, left projection) the gradient
itself, for a tall weight (``m > n``, right projection) a transposed view of it. The floor is one
project-and-back ``S (Sᵀ g)``: the two ``d·k·r`` products that every low-rank step pays anyway.

Run from the repository root::

    python -m bench.refresh                     # 1024×2752 r=256 and 2048×5461 r=512, both sides
    python -m bench.refresh --shapes 512x1376:128 --svd-repeats 1

Targets: at 2048×5461 r=512 a ``subtrack`` refresh costs at most 1.5× the floor, and the ``svd``
refresh at least 25× a ``subtrack`` one.
"""

from __future__ import annotations

import argparse
import re
from typing import Any

import torch

from bench.common import (
    Case,
    add_common_arguments,
    machine_info,
    median,
    milliseconds,
    new_console,
    new_table,
    print_machine,
    setup,
    time_interleaved,
    verdict,
    write_json,
)
from lowrank.trackers import TRACKERS, TrackerContext, random_orthonormal_basis
from lowrank.trackers.subtrack import grassmann_step, orthonormality_error

DEFAULT_SHAPES = "1024x2752:256,2048x5461:512"
TARGET_SHAPE = (2048, 5461, 512)
MAX_SUBTRACK_OVER_FLOOR = 1.5
MIN_SVD_OVER_SUBTRACK = 25.0


def parse_shapes(text: str) -> list[tuple[int, int, int]]:
    """Parse ``"DxK:R,..."`` into ``(d, k, r)`` triples with ``d < k`` and ``r < d``."""
    shapes = []
    for item in text.split(","):
        match = re.fullmatch(r"\s*(\d+)x(\d+):(\d+)\s*", item)
        if not match:
            raise SystemExit(f"--shapes: invalid entry {item!r}; expected SMALLxLARGE:RANK such as 1024x2752:256")
        d, k, r = (int(value) for value in match.groups())
        if not 1 <= r < d < k:
            raise SystemExit(f"--shapes: {item!r} needs 1 <= rank < smaller side < larger side")
        shapes.append((d, k, r))
    return shapes


def benchmark_shape(
    d: int,
    k: int,
    rank: int,
    transposed: bool,
    *,
    device: torch.device,
    dtype: torch.dtype,
    repeats: int,
    svd_repeats: int,
    warmup: int,
) -> dict[str, Any]:
    """Time one refresh of every tracker and the floor on one weight shape and orientation."""
    generator = torch.Generator().manual_seed(0)
    weight_shape = (k, d) if transposed else (d, k)
    weight_grad = torch.randn(weight_shape, generator=generator).to(device=device, dtype=dtype)
    grad = weight_grad.float()  # what the optimizer does; a copy only for bf16 gradients
    if transposed:
        grad = grad.T  # (d, k) view, as the optimizer passes it
    basis = random_orthonormal_basis(d, rank, seed=1, device=device)  # (d, r)
    context = TrackerContext(param_index=0, refresh=1, seed=0, transposed=transposed)

    trackers = {name: TRACKERS.build(name) for name in ("subtrack", "random", "svd")}
    cases = [
        Case("project+back", lambda: basis @ (basis.T @ grad), repeats, warmup),
        Case("subtrack", lambda: trackers["subtrack"].update(basis, grad, rank, context), repeats, warmup),
        Case("random", lambda: trackers["random"].update(basis, grad, rank, context), repeats, warmup),
        Case("svd", lambda: trackers["svd"].update(basis, grad, rank, context), svd_repeats, min(warmup, 1)),
    ]
    times = time_interleaved(cases, device)

    # Whether this refresh also pays the QR fallback (float drift above the tolerance).
    tracker = trackers["subtrack"]
    new_basis, _, _ = grassmann_step(basis, grad, tracker.step_size, tracker.max_angle, tracker.power_iterations)
    qr_fallback = bool(orthonormality_error(new_basis) > tracker.orthonormality_tolerance)

    return {
        "weight": f"{weight_shape[0]}x{weight_shape[1]}",
        "d": d,
        "k": k,
        "rank": rank,
        "projection": "right" if transposed else "left",
        "seconds": {name: median(values) for name, values in times.items()},
        "samples": {name: len(values) for name, values in times.items()},
        "qr_fallback": qr_fallback,
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="python -m bench.refresh", description=__doc__.split("\n\n")[0])
    parser.add_argument("--shapes", default=DEFAULT_SHAPES, help=f"SMALLxLARGE:RANK list (default: {DEFAULT_SHAPES})")
    parser.add_argument("--repeats", type=int, default=9, help="recorded calls of the fast cases (default: 9)")
    parser.add_argument("--svd-repeats", type=int, default=3, help="recorded SVD refreshes per shape (default: 3)")
    parser.add_argument("--warmup", type=int, default=2, help="unrecorded calls per case first (default: 2; SVD: 1)")
    add_common_arguments(parser)
    args = parser.parse_args(argv)
    if args.repeats < 1 or args.svd_repeats < 1 or args.warmup < 0:
        raise SystemExit("--repeats and --svd-repeats must be at least 1, --warmup at least 0")
    device, dtype = setup(args)
    shapes = parse_shapes(args.shapes)

    console = new_console()
    info = machine_info(device)
    rows = []
    for d, k, rank in shapes:
        for transposed in (False, True):
            rows.append(
                benchmark_shape(
                    d,
                    k,
                    rank,
                    transposed,
                    device=device,
                    dtype=dtype,
                    repeats=args.repeats,
                    svd_repeats=args.svd_repeats,
                    warmup=args.warmup,
                )
            )
    info["load_average_after"] = machine_info(device)["load_average"]

    table = new_table(
        f"Refresh cost per tracker, ms (median of {args.repeats}; svd: {args.svd_repeats}), {args.dtype} gradients",
        ["weight", "r", "projection", "project+back", "subtrack", "random", "svd", "subtrack/floor", "svd/subtrack"],
    )
    for row in rows:
        seconds = row["seconds"]
        table.add_row(
            row["weight"],
            str(row["rank"]),
            row["projection"] + (" (QR)" if row["qr_fallback"] else ""),
            milliseconds(seconds["project+back"]),
            milliseconds(seconds["subtrack"]),
            milliseconds(seconds["random"]),
            milliseconds(seconds["svd"]),
            f"{seconds['subtrack'] / seconds['project+back']:.2f}",
            f"{seconds['svd'] / seconds['subtrack']:.0f}",
        )
    print_machine(console, info)
    console.print(table)

    for row in rows:
        if (row["d"], row["k"], row["rank"]) != TARGET_SHAPE:
            continue
        seconds = row["seconds"]
        console.print(
            f"target at {row['weight']} r={row['rank']} ({row['projection']}): subtrack/floor "
            f"{verdict(seconds['subtrack'] / seconds['project+back'], MAX_SUBTRACK_OVER_FLOOR, at_most=True)}; "
            f"svd/subtrack {verdict(seconds['svd'] / seconds['subtrack'], MIN_SVD_OVER_SUBTRACK, at_most=False)}"
        )

    payload = {"benchmark": "refresh", "machine": info, "dtype": args.dtype, "rows": rows}
    write_json(args.json, payload)
    return payload


if __name__ == "__main__":
    main()
