"""End-to-end training throughput: ``train.py`` tokens/s of one model with each optimizer.

Each optimizer trains the same LLaMA on the embedded corpus (``bash setup.sh`` builds it) through
``train.main``, in this process, with evaluation and plots off. Runs alternate between the
optimizers for ``--rounds`` rounds. Every run logs tokens/s over windows of ``--window`` updates;
the first window of each run contains the first basis and the warm-up, so it is dropped. A run's
tokens/s covers everything ``train.py`` does per update: batching, forward, backward, clipping,
the optimizer step and logging.

The compositions keep their refresh interval of 200 updates, so these short runs contain no
refresh after the first basis; ``python -m bench.step`` gives the refresh cost averaged over the
interval.

Run from the repository root::

    python -m bench.end_to_end                  # LLaMA-60m, 4×128 tokens per update, AdamW and SubTrack++

Target: ``subtrack_pp`` reaches at least 0.95× AdamW's tokens/s.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path
from typing import Any

import yaml

from bench.common import (
    REPO_ROOT,
    add_common_arguments,
    machine_info,
    milliseconds,
    new_console,
    new_table,
    print_machine,
    setup,
    verdict,
    write_json,
)

MIN_THROUGHPUT_RATIO = 0.95


def run_config(
    optimizer: str, model_path: Path, output_dir: Path, *, rank: int, steps: int, window: int, batch: int,
    seq_len: int, device: str, precision: str,
) -> dict[str, Any]:
    """Return a ``train.py`` run configuration for one short throughput run."""
    optimizer_path = REPO_ROOT / "configs" / "optim" / f"{optimizer}.yaml"
    optimizer_config: dict[str, Any] = {"include": str(optimizer_path)}
    groups = yaml.safe_load(optimizer_path.read_text(encoding="utf-8")).get("groups") or []
    for index, group in enumerate(groups):
        if group.get("rank") is not None:
            optimizer_config[f"groups[{index}].rank"] = rank
    return {
        "name": f"throughput_{optimizer}",
        "seed": 0,
        "device": device,
        "model": {"include": str(model_path.resolve())},
        "data": {
            "source": "embedded",
            "corpus_dir": str(REPO_ROOT / "data" / "corpus"),
            "tokenizer": str(REPO_ROOT / "data" / "tokenizer.json"),
            "seq_len": seq_len,
        },
        "optimizer": optimizer_config,
        "schedule": {"kind": "constant"},
        "train": {"max_steps": steps, "batch_size": batch, "grad_clip": 1.0, "precision": precision},
        "eval": {"batches": 0},
        "log": {"interval": window, "output_dir": str(output_dir), "progress": False, "plot": False},
        "checkpoint": {"interval": 0, "keep_last": 1},
    }


def train_once(config: dict[str, Any], folder: Path) -> list[dict[str, Any]]:
    """Run ``train.py`` on ``config``; return its training records after the first window."""
    import train

    path = folder / f"{config['name']}.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    status = train.main([str(path), "--overwrite"])
    if status != 0:
        raise SystemExit(f"train.py exited with status {status} on {path}")
    metrics = Path(config["log"]["output_dir"]) / config["name"] / "metrics.jsonl"
    records = [json.loads(line) for line in metrics.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [record for record in records if record.get("kind") == "train"][1:]


def measure_throughput(
    optimizers: list[str],
    model_path: Path,
    *,
    rank: int,
    rounds: int,
    window: int,
    windows: int,
    batch: int,
    seq_len: int,
    device: str,
    precision: str,
) -> tuple[dict[str, dict[str, float]], dict[str, list[dict[str, Any]]]]:
    """Alternate ``rounds`` runs of each optimizer; return medians per optimizer and the raw records."""
    if not (REPO_ROOT / "data" / "tokenizer.json").is_file():
        raise SystemExit("data/tokenizer.json not found: run `bash setup.sh` first to build the embedded corpus")
    records: dict[str, list[dict[str, Any]]] = {name: [] for name in optimizers}
    with tempfile.TemporaryDirectory(prefix="lowrank-throughput-") as folder:
        for _ in range(rounds):
            for name in optimizers:
                config = run_config(
                    name,
                    model_path,
                    Path(folder) / "runs",
                    rank=rank,
                    steps=window * windows,
                    window=window,
                    batch=batch,
                    seq_len=seq_len,
                    device=device,
                    precision=precision,
                )
                records[name].extend(train_once(config, Path(folder)))
    summary = {
        name: {
            "tokens_per_s": statistics.median(r["tokens_per_s"] for r in rows),
            "optimizer_step_s": statistics.median(r["optimizer_step_s"] for r in rows),
            "windows": len(rows),
        }
        for name, rows in records.items()
    }
    return summary, records


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="python -m bench.end_to_end", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--model", type=Path, default=REPO_ROOT / "configs/model/llama_60m.yaml", help="model YAML (default: llama_60m)"
    )
    parser.add_argument(
        "--optimizers", default="adamw,subtrack_pp", help="configs/optim names, the first is the reference"
    )
    parser.add_argument("--rank", type=int, default=128, help="rank of the low-rank compositions (default: 128)")
    parser.add_argument("--rounds", type=int, default=2, help="runs per optimizer, alternated (default: 2)")
    parser.add_argument("--window", type=int, default=4, help="updates per tokens/s window (default: 4)")
    parser.add_argument("--windows", type=int, default=4, help="windows per run, the first dropped (default: 4)")
    parser.add_argument("--batch", type=int, default=4, help="sequences per update (default: 4)")
    parser.add_argument("--seq-len", type=int, default=128, help="tokens per sequence (default: 128)")
    add_common_arguments(parser)
    args = parser.parse_args(argv)
    if args.rounds < 1 or args.window < 1 or args.windows < 2:
        raise SystemExit("--rounds and --window must be at least 1, --windows at least 2")
    device, _ = setup(args)
    optimizers = [name.strip() for name in args.optimizers.split(",") if name.strip()]
    precision = "bfloat16" if args.dtype == "bfloat16" else "float32"

    console = new_console()
    info = machine_info(device)
    summary, records = measure_throughput(
        optimizers,
        args.model,
        rank=args.rank,
        rounds=args.rounds,
        window=args.window,
        windows=args.windows,
        batch=args.batch,
        seq_len=args.seq_len,
        device=str(device),
        precision=precision,
    )
    info["load_average_after"] = machine_info(device)["load_average"]

    reference = summary[optimizers[0]]["tokens_per_s"]
    table = new_table(
        f"train.py throughput ({args.model.name}, {args.batch}×{args.seq_len} tokens per update, {precision}; "
        f"median of {summary[optimizers[0]]['windows']} windows of {args.window} updates)",
        ["optimizer", "tokens/s", "optimizer step, ms", f"tokens/s / {optimizers[0]}"],
    )
    for name in optimizers:
        row = summary[name]
        table.add_row(
            name,
            f"{row['tokens_per_s']:,.0f}",
            milliseconds(row["optimizer_step_s"]),
            f"{row['tokens_per_s'] / reference:.3f}",
        )
    print_machine(console, info)
    console.print(table)
    if "subtrack_pp" in summary and optimizers[0] == "adamw":
        ratio = summary["subtrack_pp"]["tokens_per_s"] / reference
        console.print(f"target: subtrack_pp / adamw tokens/s {verdict(ratio, MIN_THROUGHPUT_RATIO, at_most=False)}")

    payload = {
        "benchmark": "end_to_end",
        "machine": info,
        "model": str(args.model),
        "precision": precision,
        "rank": args.rank,
        "tokens_per_update": args.batch * args.seq_len,
        "summary": summary,
        "records": records,
    }
    write_json(args.json, payload)
    return payload


if __name__ == "__main__":
    main()
