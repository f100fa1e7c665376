"""Language-model loss of one batch, and evaluation over a fixed set of batches."""

from __future__ import annotations

import contextlib
import math
from typing import Callable, ContextManager

import torch

__all__ = ["NonFiniteLossError", "compute_loss", "evaluate"]


class NonFiniteLossError(RuntimeError):
    """Training stopped after too many consecutive updates with a non-finite loss or gradient norm."""


def compute_loss(model: torch.nn.Module, input_ids: torch.Tensor) -> torch.Tensor:
    """Return the mean next-token cross-entropy (nats) over the ``seq_len - 1`` predicted positions.

    ``input_ids`` is ``(batch, seq_len)``; the model shifts the labels itself.
    """
    return model(input_ids=input_ids, labels=input_ids).loss


@torch.no_grad()
def evaluate(
    model: torch.nn.Module,
    batches: list[torch.Tensor],
    device: torch.device,
    autocast: Callable[[], ContextManager] = contextlib.nullcontext,
    loss_fn: Callable[[torch.nn.Module, torch.Tensor], torch.Tensor] = compute_loss,
) -> dict:
    """Evaluate on exactly ``batches`` and return the token-weighted mean loss and its perplexity.

    Each batch's mean loss is weighted by its predicted tokens, ``rows × (seq_len - 1)``, so with
    equal batches the result is the plain mean of the batch losses. The model is left in the
    training mode it had before.

    Returns:
        ``{"loss", "perplexity", "batches", "tokens"}``; ``loss`` is in nats per token.
    """
    was_training = model.training
    model.eval()
    total = torch.zeros((), dtype=torch.float64, device=device)
    tokens = 0
    try:
        for batch in batches:
            batch = batch.to(device, non_blocking=True)
            with autocast():
                loss = loss_fn(model, batch)
            predicted = batch.shape[0] * (batch.shape[1] - 1)
            total += loss.double() * predicted
            tokens += predicted
    finally:
        model.train(was_training)
    if tokens == 0:
        raise ValueError("evaluate() needs at least one batch")
    mean = total.item() / tokens
    return {
        "loss": mean,
        "perplexity": math.exp(mean) if mean < 700 else math.inf,
        "batches": len(batches),
        "tokens": tokens,
    }
