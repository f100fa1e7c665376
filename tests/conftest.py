"""Shared fixtures: gradient shapes with rank below the smaller side, on both projection sides."""

from __future__ import annotations

import os

import pytest
import torch

# (rows, cols, rank): wide (left projection), tall and square (right projection).
SHAPES = {
    "wide": (24, 40, 6),
    "tall": (40, 24, 6),
    "square": (32, 32, 5),
}

# Importing galore_torch imports bitsandbytes, which requests a CPU kernel from the Hugging Face Hub;
# offline mode turns that request into a local cache miss. Nothing in the tests may reach a hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


def oriented(grad: torch.Tensor) -> tuple[torch.Tensor, bool]:
    """Return the float32 gradient with the projected (smaller) axis first, and whether it was transposed."""
    rows, cols = grad.shape
    transposed = rows >= cols
    grad = grad.float()
    return (grad.T if transposed else grad), transposed


@pytest.fixture(params=list(SHAPES), ids=list(SHAPES))
def shape(request) -> tuple[int, int, int]:
    return SHAPES[request.param]


@pytest.fixture(params=list(DTYPES), ids=list(DTYPES))
def dtype(request) -> torch.dtype:
    return DTYPES[request.param]


def low_rank_gradient(rows: int, cols: int, rank: int, generator: torch.Generator, noise: float = 0.05) -> torch.Tensor:
    """A gradient whose energy sits mostly in a rank-``rank`` subspace, plus small noise."""
    left = torch.randn(rows, rank, generator=generator)
    right = torch.randn(rank, cols, generator=generator)
    return left @ right + noise * torch.randn(rows, cols, generator=generator)
