#!/usr/bin/env python
"""Pre-train a LLaMA model with any optimizer composition, from a run YAML.

    python train.py configs/quickstart.yaml
    python train.py configs/quickstart.yaml --set train.max_steps=50 --set optimizer.lr=3e-3
    python train.py configs/c4_llama_60m.yaml --device cuda
    python train.py configs/quickstart.yaml --resume            # continue from the last checkpoint

Everything lands in ``<log.output_dir>/<name>/``: ``config.yaml`` (the resolved configuration),
``metrics.jsonl``, ``loss.png`` and ``checkpoints/``. Ctrl-C (or SIGTERM) finishes the current
optimizer update, saves a checkpoint and exits.

Exit status: 0 finished; 1 training failed (too many non-finite losses in a row); 2 invalid
configuration or input, reported before training starts; 130 interrupted, checkpoint saved.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import math
import os
import shutil
import signal
import sys
import threading
import time
from pathlib import Path

import torch
import yaml

import lowrank
from lowrank.config import ConfigError
from lowrank.diagnostics import SubspaceDiagnostics, aggregate_by_step
from lowrank.distributed import build_zero_optimizer
from lowrank.train.checkpoint import (
    capture_rng_state,
    list_checkpoints,
    load_checkpoint,
    restore_rng_state,
    save_checkpoint,
)
from lowrank.train.config import RunConfig, load_run_config
from lowrank.train.data import build_block_datasets, check_data_source, eval_batches, load_tokenizer, make_batches
from lowrank.train.loss import NonFiniteLossError, compute_loss, evaluate
from lowrank.train.metrics import MetricsLog, optimizer_state_bytes, plot_losses
from lowrank.train.model import build_model, count_parameters
from lowrank.train.schedule import build_scheduler

logger = logging.getLogger("train")

EXIT_FAILED, EXIT_CONFIG, EXIT_INTERRUPTED = 1, 2, 130


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Pre-train a LLaMA model from a run YAML.")
    parser.add_argument("config", help="run YAML, for example configs/quickstart.yaml")
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
        help="override a configuration value, e.g. --set train.max_steps=100 (repeatable; the value is YAML)",
    )
    parser.add_argument("--device", help="auto, cpu, cuda or cuda:<index> (default: the config's device, auto)")
    parser.add_argument(
        "--resume", nargs="?", const="latest", metavar="CHECKPOINT",
        help="continue from the run folder's last checkpoint, or from the given checkpoint file",
    )
    parser.add_argument(
        "--sweep", action="store_true",
        help="treat CONFIG as a sweep YAML and run its variants one after another (finished ones are skipped)",
    )
    parser.add_argument(
        "--jobs", type=int, default=1, metavar="N",
        help="with --sweep: variants to run at once, each in its own process (default: 1)",
    )
    parser.add_argument(
        "--overwrite", action="store_true",
        help="start afresh in a run folder that already has checkpoints, deleting them and its metrics",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run ``train.py`` with ``argv`` and return its exit status; configuration errors print no traceback."""
    args = parse_args(argv)
    root_level = logging.getLogger().level
    handler, console = setup_logging()
    try:
        if args.sweep:
            if args.resume or args.overwrite:
                raise ConfigError("--sweep resumes unfinished variants by itself; drop --resume and --overwrite")
            from lowrank.train.sweep import run_sweep

            return run_sweep(args.config, args.overrides, device=args.device, jobs=args.jobs)
        if args.resume and args.overwrite:
            raise ConfigError("--resume and --overwrite exclude each other; pass one of them")
        # The progress bar draws on the same console as the log lines.
        return train(args, console)
    except ConfigError as error:
        logger.error("%s", error)
        return EXIT_CONFIG
    except KeyboardInterrupt:
        # Before the training loop, or a second Ctrl-C inside it: stop without a checkpoint.
        logger.warning("interrupted; no checkpoint was written for this interruption")
        return EXIT_INTERRUPTED
    except NonFiniteLossError as error:
        logger.error("%s", error)
        return EXIT_FAILED
    finally:
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
        logging.getLogger().removeHandler(handler)
        logging.getLogger().setLevel(root_level)  # leaves an embedding program's logging as it was


def setup_logging():
    """Attach a console log handler to the root logger; return ``(handler, console)``."""
    # Only rank 0 logs at INFO; other ranks (torchrun sets RANK) log warnings and errors.
    # In a terminal, rich draws log lines above the live progress bar. Elsewhere (CI, pipes) lines
    # stay plain, because rich would wrap them at 80 columns.
    from rich.console import Console
    from rich.logging import RichHandler

    console = Console()
    if console.is_terminal:
        handler: logging.Handler = RichHandler(console=console, show_path=False, log_time_format="[%X]", markup=False)
        handler.setFormatter(logging.Formatter("%(message)s"))
    else:
        handler = logging.StreamHandler(sys.stdout)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s", datefmt="%H:%M:%S"))
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(logging.INFO if int(os.environ.get("RANK", "0")) == 0 else logging.WARNING)
    for noisy in ("datasets", "transformers", "filelock", "fsspec", "urllib3", "httpx", "matplotlib"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    return handler, console


def train(args: argparse.Namespace, console) -> int:
    # ------------------------------------------------------------------ configuration
    # Every check that can fail runs before any training, so a typo costs seconds, not a run.
    overrides = list(args.overrides) + ([f"device={args.device}"] if args.device else [])
    run = load_run_config(args.config, overrides)

    # torchrun sets WORLD_SIZE, RANK and LOCAL_RANK; a plain `python train.py` is one process.
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    is_main = rank == 0
    distributed = world_size > 1
    if run.train.layerwise and distributed:
        raise ConfigError(
            "train.layerwise is not supported with several processes: its gradient hooks fire before DDP "
            "averages the gradients; set train.layerwise: false or launch one process"
        )
    if run.train.zero_redundancy and not distributed:
        raise ConfigError("train.zero_redundancy needs several processes; launch with torchrun --nproc_per_node N")
    micro_batch_size, accumulation = run.train.split(world_size)
    if run.schedule.warmup_steps >= run.train.max_steps:
        logger.warning(
            "schedule.warmup_steps %d is not below train.max_steps %d: the learning rate never reaches its peak",
            run.schedule.warmup_steps, run.train.max_steps,
        )

    device = resolve_device(run.device)
    if distributed:
        device = init_distributed(device)
    precision = run.train.precision
    if precision == "auto":
        # bf16 weights on a GPU, as GaLore's LLaMA scripts use (--dtype bfloat16). float32 on the CPU.
        precision = "bfloat16" if device.type == "cuda" else "float32"
    param_dtype = torch.bfloat16 if precision == "bfloat16" else torch.float32
    autocast = (
        (lambda: torch.autocast(device_type=device.type, dtype=torch.bfloat16))
        if precision == "bf16-autocast"
        else contextlib.nullcontext
    )
    if device.type == "cuda":
        # TF32 matrix products keep float32's range with a 10-bit mantissa and use tensor cores.
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True

    needs_eval = run.eval.batches > 0
    check_data_source(run.data, needs_validation=needs_eval)
    if run.data.seq_len > run.model.max_position_embeddings:
        raise ConfigError(
            f"data.seq_len {run.data.seq_len} exceeds model.max_position_embeddings "
            f"{run.model.max_position_embeddings}; shorten the sequences or use a larger model config"
        )

    run_dir = Path(run.log.output_dir) / run.name
    checkpoint_dir = run_dir / "checkpoints"
    metrics = MetricsLog(run_dir / "metrics.jsonl")
    resume_path = find_resume_checkpoint(args, checkpoint_dir, run_dir, metrics, is_main)
    if distributed:
        torch.distributed.barrier()  # rank 0 may have cleared the folder (--overwrite)

    # ------------------------------------------------------------------ tokenizer, model, optimizer
    tokenizer = load_tokenizer(run.data.tokenizer)
    vocab_size = run.model.vocab_size or len(tokenizer)
    if len(tokenizer) > vocab_size:
        logger.warning(
            "the tokenizer has %d tokens but model.vocab_size is %d; a batch with a larger id stops the run",
            len(tokenizer), vocab_size,
        )

    torch.manual_seed(run.seed)
    with device:
        model = build_model(run.model, vocab_size, eos_token_id=tokenizer.eos_token_id)
    model.to(dtype=param_dtype)
    model.train()
    total_params, body_params = count_parameters(model)
    logger.info(
        "model: LLaMA with %.2fM parameters (%.2fM without embeddings), %s on %s",
        total_params / 1e6, body_params / 1e6, precision, device,
    )

    # build_optimizer raises ConfigError for a pattern that matches nothing or a rank too large.
    if run.train.zero_redundancy:
        optimizer = build_zero_optimizer(model, run.optimizer, path="optimizer")
        local_optimizer = optimizer.optim  # this process's shard of whole matrices
    else:
        optimizer = lowrank.build_optimizer(model, run.optimizer, path="optimizer")
        local_optimizer = optimizer
    # Captured energy, basis rotation and refresh time at every refresh, logged as "subspace" records
    # (with zero_redundancy, rank 0 logs the matrices whose state it holds).
    diagnostics = SubspaceDiagnostics(local_optimizer, keep_records=False)
    scheduler = build_scheduler(optimizer, run.train.max_steps, run.schedule)

    # ------------------------------------------------------------------ data
    logger.info("data: loading %s (tokenized blocks are cached after the first run)", describe_source(run))
    train_blocks, validation_blocks = build_block_datasets(
        run.data, tokenizer, seed=run.seed, with_validation=needs_eval
    )
    batches = make_batches(train_blocks, micro_batch_size, run.seed, rank, world_size)
    eval_set = eval_batches(validation_blocks, run.eval.batches, run.eval.batch_size or micro_batch_size) if needs_eval else []
    tokens_per_update = run.train.batch_size * run.data.seq_len
    logger.info(
        "data: %s training blocks of %d tokens, %d evaluation batches; each update takes %d sequences "
        "(%d processes × %d accumulation steps × %d)",
        getattr(batches, "size", "streamed"), run.data.seq_len, len(eval_set), run.train.batch_size,
        world_size, accumulation, micro_batch_size,
    )

    # ------------------------------------------------------------------ run folder and resume
    step, tokens, elapsed_before = 0, 0, 0.0
    if resume_path is not None:
        checkpoint = load_checkpoint(resume_path)
        warn_config_changes(checkpoint["config"], run.to_dict())
        model.load_state_dict(checkpoint["model"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        scheduler.load_state_dict(checkpoint["scheduler"])
        batches.load_state_dict(checkpoint["data"])
        restore_rng_state(checkpoint["rng"])
        step = checkpoint["step"]
        tokens = checkpoint["progress"]["tokens"]
        elapsed_before = checkpoint["progress"]["elapsed_s"]
        if is_main:
            metrics.truncate_after(step)
        del checkpoint
        logger.info("resumed from %s at step %d", resume_path, step)
    if is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "config.yaml").write_text(yaml.safe_dump(run.to_dict(), sort_keys=False), encoding="utf-8")

    def state_for_checkpoint() -> dict:
        return {
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "data": batches.state_dict(),
            "rng": capture_rng_state(),
            "config": run.to_dict(),
            "progress": {"tokens": tokens, "elapsed_s": elapsed_before + (time.perf_counter() - started)},
        }

    last_saved_step = step if resume_path is not None else -1

    def save(reason: str) -> None:
        nonlocal last_saved_step
        if run.train.zero_redundancy:
            optimizer.consolidate_state_dict(to=0)  # a collective: every rank takes part
        if is_main:
            path = save_checkpoint(checkpoint_dir, step, state_for_checkpoint(), run.checkpoint.keep_last)
            logger.info("checkpoint (%s): %s", reason, path)
        if distributed:
            torch.distributed.barrier()
        last_saved_step = step

    def run_eval() -> dict:
        result = evaluate_sharded(model, eval_set, device, autocast, rank, world_size)
        record = {
            "kind": "eval", "step": step, "tokens": tokens, "loss": result["loss"],
            "perplexity": result["perplexity"], "batches": result["batches"], "eval_tokens": result["tokens"],
            "elapsed_s": elapsed_before + time.perf_counter() - started,
        }
        if is_main:
            metrics.append(record)
        logger.info(
            "eval at step %d: loss %.4f, perplexity %.2f (%d batches, %d tokens)",
            step, result["loss"], result["perplexity"], result["batches"], result["tokens"],
        )
        return result

    # ------------------------------------------------------------------ training loop
    # DDP averages gradients across processes during backward; the optimizer then sees the same
    # gradient on every rank, so every tracker computes the same basis everywhere.
    train_model = model
    if distributed:
        from torch.nn.parallel import DistributedDataParallel

        train_model = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    layerwise = lowrank.LayerwiseUpdate(optimizer, accumulation) if run.train.layerwise else None

    stop = StopRequest()
    started = time.perf_counter()
    params = [param for param in model.parameters() if param.requires_grad]
    max_norm = run.train.grad_clip if run.train.grad_clip > 0 else math.inf
    synchronize = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    nonfinite_in_a_row = 0
    window = Window()
    last_eval_step = step if resume_path is not None else -1

    progress = make_progress(run, is_main, console)
    with stop.installed(), progress:
        task = progress.add_task("train", total=run.train.max_steps, completed=step, loss="-", lr="-", speed="-")
        if needs_eval and resume_path is None:
            run_eval()
            last_eval_step = step
        window.reset()

        while step < run.train.max_steps:
            if stop.agreed(distributed):
                save("interrupted")
                logger.warning("interrupted at step %d; continue with --resume", step)
                return EXIT_INTERRUPTED

            # Accumulate gradients over micro-batches. Each micro-batch loss is divided by their
            # count, so the summed gradient is the gradient of the mean loss over the whole batch.
            # Under DDP, no_sync skips the gradient all-reduce on all but the last micro-batch.
            loss_sum = torch.zeros((), device=device)
            for micro in range(accumulation):
                last = micro == accumulation - 1
                batch = batches.next_batch()
                check_token_ids(batch, vocab_size)
                batch = batch.to(device, non_blocking=True)
                if layerwise is not None:
                    layerwise.begin_microbatch(last=last)
                sync = contextlib.nullcontext() if last or not distributed else train_model.no_sync()
                with sync:
                    with autocast():
                        loss = compute_loss(train_model, batch)
                    (loss / accumulation).backward()
                loss_sum += loss.detach().float()
            if distributed:
                torch.distributed.all_reduce(loss_sum)  # every rank sees the same loss and decides alike
            step_loss = loss_sum.item() / (accumulation * world_size)
            if layerwise is not None:
                # The hooks have already applied the update and freed the gradients.
                layerwise.finish_update()
                grad_norm = math.nan
            else:
                grad_norm = torch.nn.utils.clip_grad_norm_(params, max_norm).item()

            # A non-finite loss or gradient would poison the weights and the moments: skip the update.
            # (In layer-wise mode the update is already applied; the loss check still stops the run.)
            if not (math.isfinite(step_loss) and (layerwise is not None or math.isfinite(grad_norm))):
                optimizer.zero_grad(set_to_none=True)
                nonfinite_in_a_row += 1
                logger.warning(
                    "step %d: non-finite loss %s or gradient norm %s; update skipped (%d in a row, limit %d)",
                    step + 1, step_loss, grad_norm, nonfinite_in_a_row, run.train.max_nonfinite_in_a_row,
                )
                if is_main:
                    metrics.append({"kind": "nonfinite", "step": step, "loss": step_loss, "grad_norm": grad_norm})
                if nonfinite_in_a_row >= run.train.max_nonfinite_in_a_row:
                    raise NonFiniteLossError(
                        f"{nonfinite_in_a_row} updates in a row had a non-finite loss or gradient norm (last at "
                        f"step {step + 1}); lower optimizer.lr, raise schedule.warmup_steps or set train.grad_clip, "
                        f"then resume from the last checkpoint"
                    )
                continue
            nonfinite_in_a_row = 0

            # NOTE: on CUDA the timer synchronizes around every optimizer step, which costs a little
            # throughput in exchange for a true per-step time.
            synchronize()
            step_started = time.perf_counter()
            if layerwise is None:
                optimizer.step()
            synchronize()
            window.optimizer_seconds += time.perf_counter() - step_started
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            tokens += tokens_per_update
            window.add(step_loss, tokens_per_update)

            if step % run.log.interval == 0 or step == run.train.max_steps:
                record = window.record(step, tokens, optimizer, scheduler, grad_norm)
                record.update(
                    elapsed_s=elapsed_before + time.perf_counter() - started,
                    epoch=batches.epoch,
                    peak_memory_bytes=peak_memory_bytes(device),
                    optimizer_state_bytes=optimizer_state_bytes(local_optimizer),  # this process's share
                )
                if is_main:
                    metrics.append(record)
                    for refresh in aggregate_by_step(diagnostics.drain()):
                        metrics.append({"kind": "subspace", **refresh})
                logger.info(
                    "step %d/%d: loss %.4f, lr %.3g, grad norm %.3g, %.0f tokens/s, optimizer step %.1f ms",
                    step, run.train.max_steps, record["loss"], record["lr"], grad_norm,
                    record["tokens_per_s"], 1000 * record["optimizer_step_s"],
                )
                progress.update(
                    task, loss=f"{record['loss']:.3f}", lr=f"{record['lr']:.2e}", speed=f"{record['tokens_per_s']:,.0f}"
                )
                window.reset()
            progress.update(task, completed=step)

            if needs_eval and run.eval.interval and step % run.eval.interval == 0:
                run_eval()
                last_eval_step = step
                window.reset()
            if run.checkpoint.interval and step % run.checkpoint.interval == 0 and step < run.train.max_steps:
                save("periodic")
                window.reset()

    # ------------------------------------------------------------------ the end
    if needs_eval and last_eval_step != step:
        run_eval()
    if last_saved_step != step:
        save("final")
    if is_main and run.log.plot and metrics.path.is_file():
        image = plot_losses(metrics.path, run_dir / "loss.png", title=f"{run.name}: {describe_optimizer(run)}")
        logger.info("loss plot: %s", image)
    wall = elapsed_before + time.perf_counter() - started
    logger.info("done: %d steps, %d tokens in %.1f s; metrics in %s", step, tokens, wall, metrics.path)
    return 0


# ---------------------------------------------------------------------------------------- helpers


def init_distributed(device: torch.device) -> torch.device:
    """Join the process group that torchrun describes: NCCL on CUDA, gloo on the CPU.

    On CUDA each process takes the GPU of its ``LOCAL_RANK``.
    """
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
        backend = "nccl"
    else:
        backend = "gloo"
    if not torch.distributed.is_initialized():
        torch.distributed.init_process_group(backend)
    return device


def evaluate_sharded(model, eval_set, device, autocast, rank: int, world_size: int) -> dict:
    """Evaluate on the fixed set, each process taking every ``world_size``-th batch.

    The result is the token-weighted mean over exactly the batches of ``eval_set``, the same as
    one process evaluating all of them.
    """
    if world_size == 1:
        return evaluate(model, eval_set, device, autocast)
    totals = torch.zeros(2, dtype=torch.float64, device=device)  # loss × tokens, tokens
    shard = eval_set[rank::world_size]
    if shard:
        result = evaluate(model, shard, device, autocast)
        totals[0] = result["loss"] * result["tokens"]
        totals[1] = result["tokens"]
    torch.distributed.all_reduce(totals)
    mean = (totals[0] / totals[1]).item()
    return {
        "loss": mean,
        "perplexity": math.exp(mean) if mean < 700 else math.inf,
        "batches": len(eval_set),
        "tokens": int(totals[1].item()),
    }


def resolve_device(name: str) -> torch.device:
    """Turn ``auto``, ``cpu``, ``cuda`` or ``cuda:<index>`` into a device that exists here."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(
                f"device {name!r}: CUDA is not available (torch {torch.__version__}, "
                f"CUDA build {torch.version.cuda}); use --device cpu or --device auto"
            )
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ConfigError(f"device {name!r}: only {torch.cuda.device_count()} CUDA devices are visible")
    return device


def find_resume_checkpoint(
    args: argparse.Namespace, checkpoint_dir: Path, run_dir: Path, metrics: MetricsLog, is_main: bool = True
):
    """Return the checkpoint to resume from, or ``None`` for a fresh start (rank 0 clears the folder on --overwrite)."""
    existing = list_checkpoints(checkpoint_dir)
    if args.resume == "latest":
        if not existing:
            raise ConfigError(f"--resume: no checkpoint in {checkpoint_dir}; start without --resume")
        return existing[-1][1]
    if args.resume:
        path = Path(args.resume)
        if not path.is_file():
            raise ConfigError(f"--resume: checkpoint file {args.resume!r} not found")
        return path
    if existing and not args.overwrite:
        raise ConfigError(
            f"run folder {run_dir} already has checkpoints (last at step {existing[-1][0]}); continue it with "
            "--resume, start afresh with --overwrite, or choose another name with --set name=..."
        )
    if args.overwrite and is_main:
        if existing or metrics.path.is_file():
            logger.warning("--overwrite: deleting the checkpoints and metrics in %s", run_dir)
        shutil.rmtree(checkpoint_dir, ignore_errors=True)
        for leftover in (metrics.path, run_dir / "loss.png"):
            leftover.unlink(missing_ok=True)
    return None


def warn_config_changes(saved: dict, current: dict, prefix: str = "") -> None:
    """Log each configuration value that differs from the checkpoint's."""
    for key in sorted(set(saved) | set(current)):
        old, new = saved.get(key), current.get(key)
        if isinstance(old, dict) and isinstance(new, dict):
            warn_config_changes(old, new, f"{prefix}{key}.")
        elif old != new:
            logger.warning("resuming with %s%s = %r (the checkpoint had %r)", prefix, key, new, old)


def check_token_ids(batch: torch.Tensor, vocab_size: int) -> None:
    largest = int(batch.max())
    if largest >= vocab_size:
        raise ConfigError(
            f"the data has token id {largest}, but model.vocab_size is {vocab_size}; "
            "set model.vocab_size to at least the tokenizer's size"
        )


def peak_memory_bytes(device: torch.device) -> int:
    """Return peak memory in bytes: CUDA memory allocated by tensors, or on the CPU the process's maximum
    resident set size (0 where the platform does not report it)."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device)
    try:
        import resource
    except ImportError:  # Windows has no resource module
        return 0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024  # Linux reports KiB, macOS bytes


def describe_source(run: RunConfig) -> str:
    data = run.data
    if data.source == "embedded":
        return f"the embedded corpus in {data.corpus_dir}"
    if data.source == "files":
        return f"files {data.train_files}"
    streamed = ", streamed" if data.streaming else ""
    return f"{data.source} dataset {data.path!r}" + (f" ({data.name}{streamed})" if data.name else streamed)


def describe_optimizer(run: RunConfig) -> str:
    lowrank_groups = [group for group in run.optimizer.groups if group.rank is not None]
    if not lowrank_groups:
        return "AdamW"
    group = lowrank_groups[0]
    return f"rank {group.rank}, {group.tracker.name} / {group.transport.name} / {group.residual.name}"


class Window:
    """Training statistics since the last log line: mean loss, throughput and optimizer-step time."""

    def reset(self) -> None:
        self.loss_sum = 0.0
        self.updates = 0
        self.tokens = 0
        self.optimizer_seconds = 0.0
        self.started = time.perf_counter()

    def add(self, loss: float, tokens: int) -> None:
        self.loss_sum += loss
        self.updates += 1
        self.tokens += tokens

    def record(self, step, tokens, optimizer, scheduler, grad_norm) -> dict:
        seconds = max(time.perf_counter() - self.started, 1e-9)
        lrs = scheduler.get_last_lr()
        labels = [group.get("label") or f"group{index}" for index, group in enumerate(optimizer.param_groups)]
        return {
            "kind": "train",
            "step": step,
            "tokens": tokens,
            "loss": self.loss_sum / max(self.updates, 1),
            "lr": lrs[0],
            "lr_by_group": dict(zip(labels, lrs)),
            "grad_norm": grad_norm,
            "tokens_per_s": self.tokens / seconds,
            "optimizer_step_s": self.optimizer_seconds / max(self.updates, 1),
        }


class StopRequest:
    """Turns the first Ctrl-C (SIGINT) or SIGTERM into a flag the loop checks between updates.

    A second Ctrl-C raises ``KeyboardInterrupt`` at once. Handlers are only installed from the main
    thread, where Python delivers signals.
    """

    def __init__(self):
        self.requested = False

    def agreed(self, distributed: bool) -> bool:
        """Return whether any process was asked to stop, so that all of them stop at the same update."""
        if not distributed:
            return self.requested
        flag = torch.tensor([1.0 if self.requested else 0.0])
        torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
        return bool(flag.item())

    def _handle(self, signum, frame):
        if self.requested and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.requested = True
        logger.warning(
            "%s received: finishing the current update and saving a checkpoint (Ctrl-C again stops at once)",
            signal.Signals(signum).name,
        )

    @contextlib.contextmanager
    def installed(self):
        if threading.current_thread() is not threading.main_thread():
            yield self
            return
        previous = {sig: signal.signal(sig, self._handle) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield self
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


def make_progress(run: RunConfig, is_main: bool, console):
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]}  lr {task.fields[lr]}  {task.fields[speed]} tok/s"),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=console,
        disable=not (is_main and run.log.progress and console.is_terminal),
        transient=False,
    )


if __name__ == "__main__":
    sys.exit(main())
