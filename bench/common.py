"""Shared pieces of the benchmarks: machine description, interleaved timing, tables, JSON output.

Timing rules, the same in every benchmark: ``time.perf_counter`` around each call, a device
synchronization before and after it on CUDA, warm-up calls that are not recorded, and the median of
the recorded repeats. Cases that are compared with each other run round-robin in one process, so
that a change of load on a shared machine hits all of them alike and their ratios stay meaningful.
"""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import os
import statistics
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

# galore_torch imports bitsandbytes, which requests a CPU kernel from the Hugging Face Hub at
# import time and logs a warning when it gets none. Benchmarks never need that kernel: offline mode turns
# the request into a local cache miss, and the two loggers are silenced below.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
for _noisy_logger in ("bitsandbytes", "kernels"):
    logging.getLogger(_noisy_logger).setLevel(logging.ERROR)

import torch  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[1]

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


@dataclass
class Case:
    """One timed callable: ``warmup`` unrecorded calls, then ``repeats`` recorded ones."""

    name: str
    function: Callable[[], Any]
    repeats: int
    warmup: int = 1


def add_common_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``--threads``, ``--device``, ``--dtype`` and ``--json`` to a benchmark's parser."""
    parser.add_argument(
        "--threads", type=int, default=None, help="torch intra-op threads (default: torch's own choice)"
    )
    parser.add_argument("--device", default="cpu", help="device to run on: cpu, cuda or cuda:<index> (default: cpu)")
    parser.add_argument(
        "--dtype", choices=sorted(DTYPES), default="float32", help="dtype of weights and gradients (default: float32)"
    )
    parser.add_argument("--json", type=Path, default=None, help="also write the results to this JSON file")


def setup(args: argparse.Namespace) -> tuple[torch.device, torch.dtype]:
    """Apply ``--threads`` and check ``--device``; return the device and dtype to benchmark."""
    if args.threads is not None:
        if args.threads < 1:
            raise SystemExit(f"--threads must be at least 1, got {args.threads}")
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit(f"--device {args.device}: CUDA is not available on this machine")
    return device, DTYPES[args.dtype]


def synchronize(device: torch.device) -> None:
    """Wait for queued work on ``device`` (a no-op on the CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def machine_info(device: torch.device) -> dict[str, Any]:
    """Describe where and when a benchmark ran: date, CPU, threads, load, commit, versions."""
    info: dict[str, Any] = {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "load_average": [round(value, 2) for value in os.getloadavg()],
        "commit": _git_commit(),
        "torch": torch.__version__,
        "device": str(device),
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


# The files a benchmark result depends on; uncommitted edits elsewhere do not mark it dirty.
_MEASURED_PATHS = ("lowrank", "bench", "configs", "train.py")


def _git_commit() -> str:
    """Return the short commit hash, with ``-dirty`` when measured files differ from it."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
        changes = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no", "--", *_MEASURED_PATHS],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return f"{commit}-dirty" if changes else commit


def new_console() -> Console:
    """Return a console that never wraps a table, also when output goes to a file or a pipe."""
    console = Console()
    if not console.is_terminal:
        console = Console(width=200)
    return console


def print_machine(console: Console, info: dict[str, Any]) -> None:
    """Print the machine description as one line above a table."""
    load = ", ".join(f"{value:g}" for value in info["load_average"])
    where = info.get("gpu", info["cpu"])
    console.print(
        f"[dim]{info['date']} · {where} · {info['threads']} threads of {info['cores']} cores · "
        f"load {load} · torch {info['torch']} · commit {info['commit']}[/dim]"
    )


def time_interleaved(cases: list[Case], device: torch.device) -> dict[str, list[float]]:
    """Run ``cases`` round-robin and return each case's recorded wall times in seconds.

    Every case first makes its warm-up calls. Then round ``i`` calls each case whose ``repeats``
    exceed ``i``, in list order, so a slow case with few repeats still sits between the fast ones.
    """
    for case in cases:
        for _ in range(case.warmup):
            case.function()
        synchronize(device)

    times: dict[str, list[float]] = {case.name: [] for case in cases}
    for round_index in range(max(case.repeats for case in cases)):
        for case in cases:
            if round_index >= case.repeats:
                continue
            synchronize(device)
            started = time.perf_counter()
            case.function()
            synchronize(device)
            times[case.name].append(time.perf_counter() - started)
    return times


def median(values: list[float]) -> float:
    """Return the median, or NaN for an empty list."""
    return statistics.median(values) if values else float("nan")


def milliseconds(seconds: float) -> str:
    """Format seconds as milliseconds for a table cell."""
    if seconds != seconds:  # NaN
        return "-"
    if seconds >= 10.0:
        return f"{seconds * 1e3:,.0f}"
    return f"{seconds * 1e3:,.1f}"


def verdict(value: float, limit: float, *, at_most: bool) -> str:
    """Return a colored ``met``/``missed`` cell for ``value`` against ``limit``."""
    ok = value <= limit if at_most else value >= limit
    sign = "≤" if at_most else "≥"
    mark = "[green]met[/green]" if ok else "[red]missed[/red]"
    return f"{value:.2f} {sign} {limit:g}: {mark}"


def new_table(title: str, columns: list[str]) -> Table:
    """Return a rich table with right-aligned numeric columns after the first one."""
    table = Table(title=title, title_justify="left")
    for index, column in enumerate(columns):
        table.add_column(column, justify="left" if index == 0 else "right")
    return table


def write_json(path: Path | None, payload: dict[str, Any]) -> None:
    """Write ``payload`` as indented JSON when ``path`` is given."""
    if path is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
