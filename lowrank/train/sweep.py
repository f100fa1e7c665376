"""Sweeps: a base run plus a grid or a list of variants, run one after another, resumably.

A sweep YAML names a base run YAML and the variants to derive from it::

    base: ../quickstart.yaml            # relative to the sweep file
    output_dir: runs/ablations/components
    set:                                # applied to every variant (dotted keys allowed)
      train.max_steps: 400
    axes:                               # the grid: every combination of one value per axis
      - name: composition
        values:
          galore: {optimizer: {include: ../optim/galore.yaml}}
          subtrack_pp: {optimizer.groups[0].tracker: subtrack}
      - name: seed
        values: {s0: {seed: 0}, s1: {seed: 1}}
    variants:                           # extra single variants, outside the grid
      - name: adamw-s0
        set: {optimizer.groups: []}

Each variant becomes a fully resolved run YAML in ``<output_dir>/<variant>/variant.yaml`` and runs
``train.py`` on it in a subprocess, so one variant's failure or memory cannot leak into the next.
Every variant is validated before the first one starts. A variant that finished is skipped on a
re-run; one that was interrupted resumes from its last checkpoint.
"""

from __future__ import annotations

import copy
import itertools
import json
import logging
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from lowrank.config import ConfigError, from_dict, load_yaml
from lowrank.train.checkpoint import list_checkpoints
from lowrank.train.config import RunConfig, apply_override, resolve_includes

__all__ = ["SweepConfig", "Variant", "expand_sweep", "load_sweep", "run_sweep"]

logger = logging.getLogger(__name__)

STATUS_FILE = "sweep_status.json"


@dataclass
class SweepAxis:
    """One axis of the grid: labelled values, each a mapping of configuration overrides."""

    name: str
    """Axis name, recorded with each variant for the report (e.g. ``composition``, ``seed``)."""
    values: dict[str, dict[str, Any]]
    """Label → overrides. Labels form the variant's name; overrides use dotted keys or nesting."""


@dataclass
class SweepVariant:
    """A single variant outside the grid."""

    name: str
    """The variant's name and run folder."""
    set: dict[str, Any] = field(default_factory=dict)
    """Overrides applied to the base run, after the sweep-wide ``set``."""
    labels: dict[str, str] = field(default_factory=dict)
    """Axis labels for the report, e.g. ``{composition: adamw, seed: s0}``."""


@dataclass
class SweepConfig:
    """A base run and the variants derived from it."""

    base: str
    """The base run YAML, relative to the sweep file."""
    output_dir: str = "runs/sweeps"
    """Folder that receives one run folder per variant (relative to the working directory)."""
    set: dict[str, Any] = field(default_factory=dict)
    """Overrides applied to every variant."""
    axes: list[SweepAxis] = field(default_factory=list)
    """The grid: every combination of one value per axis is a variant."""
    variants: list[SweepVariant] = field(default_factory=list)
    """Extra variants, run after the grid."""

    def __post_init__(self):
        if not self.axes and not self.variants:
            raise ConfigError("a sweep needs 'axes' (a grid) or 'variants' (a list), or both")
        for axis in self.axes:
            if not axis.values:
                raise ConfigError(f"axis {axis.name!r} has no values")


@dataclass
class Variant:
    """One expanded, validated variant."""

    name: str
    labels: dict[str, str]
    data: dict[str, Any]
    run: RunConfig

    @property
    def run_dir(self) -> Path:
        return Path(self.run.log.output_dir) / self.run.name


def load_sweep(path: str | Path) -> tuple[SweepConfig, Path]:
    """Read a sweep YAML; return it with the folder its relative paths start from."""
    path = Path(path)
    return from_dict(SweepConfig, load_yaml(path), "sweep"), path.parent


def expand_sweep(sweep: SweepConfig, base_dir: Path, extra_overrides: list[tuple[str, Any]] = ()) -> list[Variant]:
    """Expand the grid and the list into validated variants, in run order.

    Raises:
        ConfigError: naming the variant, for a duplicate name or an invalid run configuration.
    """
    base_path = base_dir / sweep.base
    if not base_path.is_file():
        raise ConfigError(f"sweep.base: run YAML {str(base_path)!r} not found; paths are relative to the sweep file")
    base = resolve_includes(load_yaml(base_path), base_path.parent, [base_path.resolve()])

    specs: list[tuple[str, dict[str, str], list[dict[str, Any]]]] = []
    if sweep.axes:
        choices = [[(axis.name, label, overrides) for label, overrides in axis.values.items()] for axis in sweep.axes]
        for combination in itertools.product(*choices):
            name = "-".join(label for _, label, _ in combination)
            labels = {axis: label for axis, label, _ in combination}
            specs.append((name, labels, [overrides for _, _, overrides in combination]))
    for variant in sweep.variants:
        specs.append((variant.name, dict(variant.labels) or {"variant": variant.name}, [variant.set]))

    variants, seen = [], set()
    for name, labels, override_sets in specs:
        if name in seen:
            raise ConfigError(f"sweep: two variants are named {name!r}; rename one")
        seen.add(name)
        data = copy.deepcopy(base)
        for overrides in [sweep.set, *override_sets]:
            _apply(data, overrides, base_dir)
        for key, value in extra_overrides:
            apply_override(data, key, value)
        data["name"] = name
        data.setdefault("log", {})["output_dir"] = sweep.output_dir
        try:
            run = from_dict(RunConfig, data)
        except ConfigError as error:
            raise ConfigError(f"sweep variant {name!r}: {error}") from error
        variants.append(Variant(name, labels, data, run))
    return variants


def _apply(data: dict, overrides: dict[str, Any], base_dir: Path) -> None:
    for key, value in overrides.items():
        value = resolve_includes(value, base_dir)
        if isinstance(value, dict) and isinstance(data.get(key), dict) and "." not in key and "[" not in key:
            # A nested mapping replaces the section, so that an included optimizer config does
            # not inherit the base's groups.
            data[key] = value
        else:
            apply_override(data, key, value)


def variant_status(variant: Variant) -> str:
    """Return ``done``, ``partial`` (has checkpoints) or ``new``."""
    status_path = variant.run_dir / STATUS_FILE
    if status_path.is_file():
        try:
            if json.loads(status_path.read_text(encoding="utf-8")).get("status") == "done":
                return "done"
        except json.JSONDecodeError:
            pass
    if list_checkpoints(variant.run_dir / "checkpoints"):
        return "partial"
    return "new"


def run_sweep(
    path: str | Path,
    extra_overrides: list[str] | None = None,
    train_script: str | Path | None = None,
    device: str | None = None,
    jobs: int = 1,
) -> int:
    """Run every variant of the sweep at ``path`` that has not finished; return the exit status.

    ``extra_overrides`` (``key=value`` strings) apply to every variant after the sweep's own.
    ``jobs`` variants run at once, each in its own process; when ``OMP_NUM_THREADS`` is unset, each
    gets an equal share of the CPU cores. After a variant fails, no new one starts, the running
    ones finish, and the first failure's exit status is returned; the failed variant's run folder
    keeps its last checkpoint, so a re-run resumes it.
    """
    from lowrank.train.config import parse_overrides

    if jobs < 1:
        raise ConfigError(f"--jobs must be at least 1, got {jobs}")
    sweep, base_dir = load_sweep(path)
    variants = expand_sweep(sweep, base_dir, parse_overrides(extra_overrides or []))
    script = Path(train_script) if train_script else Path(__file__).resolve().parents[2] / "train.py"
    statuses = {variant.name: variant_status(variant) for variant in variants}
    queue = [variant for variant in variants if statuses[variant.name] != "done"]
    logger.info(
        "sweep %s: %d variants, %d finished, %d to run (%d at a time), in %s",
        path, len(variants), len(variants) - len(queue), len(queue), jobs, sweep.output_dir,
    )
    environment = dict(os.environ)
    if jobs > 1 and "OMP_NUM_THREADS" not in environment:
        environment["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // jobs))

    running: list[tuple[Variant, subprocess.Popen]] = []
    failure = 0
    started = 0
    while queue or running:
        while queue and len(running) < jobs and not failure:
            variant = queue.pop(0)
            started += 1
            logger.info("sweep variant %d/%d: %s (%s)", started, started + len(queue), variant.name, statuses[variant.name])
            running.append((variant, subprocess.Popen(_command(variant, statuses[variant.name], script, device), env=environment)))
        if not running:
            break
        time.sleep(0.5)
        for variant, process in list(running):
            if process.poll() is None:
                continue
            running.remove((variant, process))
            if process.returncode == 0:
                (variant.run_dir / STATUS_FILE).write_text(json.dumps({"status": "done"}), encoding="utf-8")
                continue
            logger.error(
                "sweep variant %s failed with exit status %d; fix it and re-run the sweep to resume",
                variant.name, process.returncode,
            )
            failure = failure or process.returncode

    if failure:
        return failure
    logger.info(
        "sweep %s: all %d variants finished; compare them with python -m lowrank.report %s/*",
        path, len(variants), sweep.output_dir,
    )
    return 0


def _command(variant: Variant, status: str, script: Path, device: str | None) -> list[str]:
    """Write the variant's resolved run YAML and labels; return the train.py command for it."""
    variant.run_dir.mkdir(parents=True, exist_ok=True)
    variant_yaml = variant.run_dir / "variant.yaml"
    variant_yaml.write_text(yaml.safe_dump(variant.data, sort_keys=False), encoding="utf-8")
    (variant.run_dir / "labels.json").write_text(json.dumps(variant.labels), encoding="utf-8")

    command = [sys.executable, str(script), str(variant_yaml)]
    if device:
        command += ["--device", device]
    command.append("--resume" if status == "partial" else "--overwrite")
    return command
