"""Checkpoints that survive a crash during the write, and the random-number state they carry.

A checkpoint is one ``torch.save`` file, ``step_<8 digits>.pt``, that contains plain tensors and
Python values only, so ``torch.load(path, weights_only=True)`` reads it. It is written to a hidden
temporary file in the same folder, flushed to disk, and renamed to its final name with
``os.replace``, which is atomic on POSIX file systems. A crash or kill during the write therefore
leaves at most a stray temporary file, never a truncated checkpoint, and the previous checkpoints
stay loadable.
"""

from __future__ import annotations

import logging
import os
import random
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

__all__ = [
    "capture_rng_state",
    "list_checkpoints",
    "load_checkpoint",
    "restore_rng_state",
    "save_checkpoint",
]

logger = logging.getLogger(__name__)

CHECKPOINT_FORMAT = 1
_NAME = re.compile(r"^step_(\d+)\.pt$")


def list_checkpoints(folder: str | Path) -> list[tuple[int, Path]]:
    """Return ``(step, path)`` of the complete checkpoints in ``folder``, oldest first."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    found = []
    for path in folder.iterdir():
        match = _NAME.match(path.name)
        if match:
            found.append((int(match.group(1)), path))
    return sorted(found)


def save_checkpoint(folder: str | Path, step: int, state: dict[str, Any], keep_last: int) -> Path:
    """Write ``state`` as the checkpoint of ``step`` atomically, then delete all but the last ``keep_last``.

    Returns:
        The checkpoint's path.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"step_{step:08d}.pt"
    temporary = folder / f".{path.name}.tmp"
    try:
        torch.save({"format": CHECKPOINT_FORMAT, "step": step, **state}, temporary)
        with open(temporary, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    finally:
        if temporary.exists():
            temporary.unlink()
    _fsync_folder(folder)

    for _, old in list_checkpoints(folder)[:-keep_last]:
        old.unlink()
        logger.debug("deleted old checkpoint %s", old)
    return path


def _fsync_folder(folder: Path) -> None:
    # Makes the rename itself durable; not every platform can open a folder, so this is best effort.
    try:
        descriptor = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint onto the CPU with ``weights_only=True``.

    Raises:
        ValueError: when the file is not a checkpoint of this format.
    """
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path} is not a lowrank checkpoint of format {CHECKPOINT_FORMAT}")
    return state


def capture_rng_state() -> dict[str, Any]:
    """Return the states of Python's, NumPy's, torch's CPU and every CUDA generator, as tensors and lists."""
    version, python_state, gauss = random.getstate()
    numpy_kind, numpy_keys, numpy_pos, numpy_has_gauss, numpy_gauss = np.random.get_state()
    state = {
        "python": [version, list(python_state), gauss],
        "numpy": {
            "kind": numpy_kind,
            "keys": torch.from_numpy(numpy_keys.astype(np.int64)),
            "pos": int(numpy_pos),
            "has_gauss": int(numpy_has_gauss),
            "gauss": float(numpy_gauss),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    """Restore the generators that :func:`capture_rng_state` saved; CUDA only when both sides have it."""
    version, python_state, gauss = state["python"]
    random.setstate((version, tuple(python_state), gauss))
    numpy = state["numpy"]
    np.random.set_state(
        (numpy["kind"], numpy["keys"].numpy().astype(np.uint32), numpy["pos"], numpy["has_gauss"], numpy["gauss"])
    )
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        cuda_states = state["cuda"]
        if len(cuda_states) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda_states)
        else:
            logger.warning(
                "the checkpoint has %d CUDA generator states but %d devices are visible; CUDA generators not restored",
                len(cuda_states), torch.cuda.device_count(),
            )
