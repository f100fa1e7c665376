"""The contract of a moment transport.

When a weight's basis changes from ``S_old`` to ``S_new``, Adam's moments ``exp_avg`` and
``exp_avg_sq`` (both ``r×k``, indexed by the old basis along their first axis) no longer match the
new coordinates. A transport decides what they become. It runs in the same optimizer step as the
basis change, before the moments absorb that step's gradient.
"""

from __future__ import annotations

import abc

import torch

from lowrank.registry import Registry

__all__ = ["TRANSPORTS", "MomentTransport", "list_transports", "register_transport"]


class MomentTransport(abc.ABC):
    """Base class of every registered moment transport.

    :meth:`transport` updates ``exp_avg`` and ``exp_avg_sq`` in place and returns the new
    bias-correction count (the number of updates the moments have absorbed). Bases are float32
    ``(d, r)`` tensors with orthonormal columns.
    """

    registered_name: str = ""

    @abc.abstractmethod
    def transport(
        self,
        exp_avg: torch.Tensor,
        exp_avg_sq: torch.Tensor,
        moment_step: int,
        old_basis: torch.Tensor,
        new_basis: torch.Tensor,
        betas: tuple[float, float],
    ) -> int:
        """Carry the moments from ``old_basis`` to ``new_basis``; return the new ``moment_step``."""


TRANSPORTS: Registry[MomentTransport] = Registry("transport", MomentTransport)
"""Every registered moment transport. A registered class must subclass :class:`MomentTransport`."""


def register_transport(name: str):
    """Register a :class:`MomentTransport` subclass under ``name`` so that YAML can select it."""
    return TRANSPORTS.register(name)


def list_transports(pattern: str | None = None) -> list[str]:
    """Return the registered transport names, optionally filtered by a glob pattern."""
    return TRANSPORTS.names(pattern)
