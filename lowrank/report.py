"""Compare training runs: a table of final and best eval loss, speed and memory, plus plots.

    python -m lowrank.report runs/ablations/components/* --output docs/results/components

Each argument is a run folder written by ``train.py`` (``config.yaml`` and ``metrics.jsonl``).
Runs that differ only in their seed form one row, with the mean ± sample standard deviation over
seeds; a sweep records each variant's axis labels in ``labels.json``, and the ``seed`` axis is the
one averaged over. Without labels, runs whose names differ only in a trailing ``-s<N>`` or
``-seed<N>`` are grouped.

The console gets a rich table. With ``--output``, the folder receives ``report.md`` (the same table
in Markdown) and PNG plots: eval loss against step and against wall time, and the fraction of
gradient energy the bases captured at each refresh.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import statistics
import sys
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["RunSummary", "group_runs", "load_run", "main", "markdown_table"]

_SEED_SUFFIX = re.compile(r"[-_](?:s|seed)\d+$")


@dataclass
class RunSummary:
    """Quantities the report reads from one run folder."""

    path: Path
    name: str
    group: str
    eval_steps: list[int] = field(default_factory=list)
    eval_losses: list[float] = field(default_factory=list)
    eval_seconds: list[float] = field(default_factory=list)
    tokens_per_s: float | None = None
    optimizer_step_s: float | None = None
    peak_memory_bytes: int | None = None
    optimizer_state_bytes: int | None = None
    energy_steps: list[int] = field(default_factory=list)
    captured_energy: list[float] = field(default_factory=list)
    steps: int = 0

    @property
    def final_eval_loss(self) -> float | None:
        return self.eval_losses[-1] if self.eval_losses else None

    @property
    def best_eval_loss(self) -> float | None:
        return min(self.eval_losses) if self.eval_losses else None


def load_run(path: str | Path) -> RunSummary:
    """Read one run folder.

    Raises:
        FileNotFoundError: when the folder has no ``metrics.jsonl``.
    """
    path = Path(path)
    metrics_path = path / "metrics.jsonl"
    if not metrics_path.is_file():
        raise FileNotFoundError(f"{path}: no metrics.jsonl; is this a run folder written by train.py?")
    records = []
    for line in metrics_path.read_text(encoding="utf-8").splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue  # a torn last line from a crash

    labels_path = path / "labels.json"
    if labels_path.is_file():
        labels = json.loads(labels_path.read_text(encoding="utf-8"))
        group = ", ".join(f"{axis}={label}" for axis, label in labels.items() if axis != "seed") or path.name
    else:
        group = _SEED_SUFFIX.sub("", path.name)

    run = RunSummary(path=path, name=path.name, group=group)
    train_records = [r for r in records if r.get("kind") == "train"]
    for record in records:
        if record.get("kind") == "eval" and record.get("loss") is not None:
            run.eval_steps.append(record["step"])
            run.eval_losses.append(record["loss"])
            run.eval_seconds.append(record.get("elapsed_s", math.nan))
        elif record.get("kind") == "subspace" and record.get("captured_energy") is not None:
            run.energy_steps.append(record["step"])
            run.captured_energy.append(record["captured_energy"])
    if train_records:
        run.steps = max(r["step"] for r in train_records)
        run.tokens_per_s = _mean(r.get("tokens_per_s") for r in train_records)
        run.optimizer_step_s = _mean(r.get("optimizer_step_s") for r in train_records)
        run.peak_memory_bytes = max((r.get("peak_memory_bytes") or 0 for r in train_records), default=None)
        run.optimizer_state_bytes = train_records[-1].get("optimizer_state_bytes")
    return run


def _mean(values) -> float | None:
    present = [value for value in values if value is not None]
    return statistics.fmean(present) if present else None


def group_runs(runs: list[RunSummary]) -> dict[str, list[RunSummary]]:
    """Group runs by their group key, keeping the order in which groups first appear."""
    groups: dict[str, list[RunSummary]] = {}
    for run in runs:
        groups.setdefault(run.group, []).append(run)
    return groups


def _spread(values: list[float | None], digits: int = 4) -> str:
    present = [value for value in values if value is not None]
    if not present:
        return "-"
    if len(present) == 1:
        return f"{present[0]:.{digits}f}"
    return f"{statistics.fmean(present):.{digits}f} ± {statistics.stdev(present):.{digits}f}"


def table_rows(groups: dict[str, list[RunSummary]]) -> tuple[list[str], list[list[str]]]:
    """Return the header and one row of formatted cells per group."""
    header = [
        "run", "seeds", "steps", "final eval loss", "best eval loss", "final ppl", "tokens/s",
        "opt. step ms", "peak MiB", "opt. state MiB", "captured energy",
    ]
    rows = []
    for name, runs in groups.items():
        perplexities = [math.exp(r.final_eval_loss) if r.final_eval_loss is not None else None for r in runs]
        energies = [statistics.fmean(r.captured_energy) if r.captured_energy else None for r in runs]
        tokens = [r.tokens_per_s for r in runs]
        step_ms = [1000 * r.optimizer_step_s if r.optimizer_step_s is not None else None for r in runs]
        peak = [r.peak_memory_bytes / 2**20 if r.peak_memory_bytes else None for r in runs]
        state = [r.optimizer_state_bytes / 2**20 if r.optimizer_state_bytes is not None else None for r in runs]
        rows.append([
            name,
            str(len(runs)),
            str(max(r.steps for r in runs)),
            _spread([r.final_eval_loss for r in runs]),
            _spread([r.best_eval_loss for r in runs]),
            _spread(perplexities, 2),
            _spread(tokens, 0),
            _spread(step_ms, 1),
            _spread(peak, 0),
            _spread(state, 2),
            _spread(energies, 3),
        ])
    return header, rows


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    """Format a table as GitHub-flavoured Markdown."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def write_plots(groups: dict[str, list[RunSummary]], output: Path) -> list[Path]:
    """Write the three PNG plots into ``output``; return their paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    for filename, x_label, x_of, y_of, y_label in [
        ("eval_loss_vs_step.png", "optimizer update", lambda r: r.eval_steps, lambda r: r.eval_losses, "eval loss"),
        ("eval_loss_vs_time.png", "wall time (s)", lambda r: r.eval_seconds, lambda r: r.eval_losses, "eval loss"),
        ("captured_energy.png", "optimizer update", lambda r: r.energy_steps, lambda r: r.captured_energy,
         "captured gradient energy ‖Sᵀg‖²/‖g‖²"),
    ]:
        figure, axes = plt.subplots(figsize=(8, 5))
        drawn = False
        for color, (name, runs) in zip(_colors(), groups.items()):
            for index, run in enumerate(runs):
                x, y = x_of(run), y_of(run)
                if not y:
                    continue
                axes.plot(x, y, color=color, alpha=0.85, linewidth=1.4, label=name if index == 0 else None)
                drawn = True
        if not drawn:
            plt.close(figure)
            continue
        axes.set_xlabel(x_label)
        axes.set_ylabel(y_label)
        axes.grid(alpha=0.3)
        axes.legend(fontsize=8)
        figure.tight_layout()
        path = output / filename
        figure.savefig(path, dpi=120)
        plt.close(figure)
        paths.append(path)
    return paths


def _colors():
    """Yield distinct colours for the groups, repeating after the palette's ten."""
    import itertools

    import matplotlib

    return itertools.cycle(matplotlib.colormaps["tab10"].colors)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lowrank.report", description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", help="run folders (each with metrics.jsonl), e.g. runs/sweep/*")
    parser.add_argument("--output", help="folder for report.md and the PNG plots")
    parser.add_argument("--title", default="Run comparison", help="heading of report.md")
    args = parser.parse_args(argv)

    runs = []
    for path in args.runs:
        if Path(path).is_dir() and not (Path(path) / "metrics.jsonl").is_file():
            continue  # e.g. a sweep's output folder listed by a glob alongside its runs
        try:
            runs.append(load_run(path))
        except FileNotFoundError as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
    if not runs:
        print("error: no run folders with metrics.jsonl among the arguments", file=sys.stderr)
        return 2

    groups = group_runs(runs)
    header, rows = table_rows(groups)

    from rich.console import Console
    from rich.table import Table

    table = Table(title=args.title)
    for column in header:
        table.add_column(column, justify="left" if column == "run" else "right")
    for row in rows:
        table.add_row(*row)
    console = Console()
    if not console.is_terminal:
        console = Console(width=220)  # a pipe or a log file: do not wrap the table at 80 columns
    console.print(table)

    if args.output:
        output = Path(args.output)
        output.mkdir(parents=True, exist_ok=True)
        plots = write_plots(groups, output)
        lines = [f"# {args.title}\n", markdown_table(header, rows)]
        lines += [f"![{path.stem}]({path.name})\n" for path in plots]
        (output / "report.md").write_text("\n".join(lines), encoding="utf-8")
        print(f"wrote {output / 'report.md'} and {len(plots)} plots")
    return 0


if __name__ == "__main__":
    sys.exit(main())
