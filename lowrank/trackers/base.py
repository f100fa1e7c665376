r"""The contract of a subspace tracker.

A tracker chooses the basis $S \in \mathbb{R}^{d \times r}$, with orthonormal columns, of the
subspace that a weight's gradient is projected onto. Gradients reach it already oriented so that the
projected axis comes first: ``grad`` is $d \times k$ with $d = \min(m, n)$, whatever the weight's
own layout.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass

import torch

from lowrank.registry import Registry

__all__ = ["TRACKERS", "Refresh", "Tracker", "TrackerContext", "list_trackers", "register_tracker"]


@dataclass(frozen=True)
class TrackerContext:
    """Position in training at which a basis is chosen; random trackers derive their seed from it."""

    param_index: int
    """Position of the parameter among all parameters of the optimizer, stable across ranks."""
    refresh: int
    """How many times this parameter's basis was chosen before (0 for the first basis)."""
    seed: int
    """The optimizer group's seed."""
    transposed: bool
    """True when ``grad`` is the transpose of the weight's gradient (a right projection)."""


@dataclass
class Refresh:
    """A new basis, and the gradient projected onto it when the tracker computed that cheaply."""

    basis: torch.Tensor
    """``(d, r)`` float32 with orthonormal columns."""
    projected: torch.Tensor | None = None
    """``basisᵀ @ grad`` of shape ``(r, k)``, or ``None`` to let the optimizer compute it."""


class Tracker(abc.ABC):
    """Base class of every registered subspace tracker.

    Subclasses implement :meth:`init` (the first basis) and :meth:`update` (every later refresh).
    Both receive a float32 ``(d, k)`` gradient and must return a float32 basis with orthonormal
    columns on the gradient's device; they must not modify ``grad`` or ``basis`` in place. A
    tracker object is shared by every parameter of a group, so per-parameter data must come from
    the arguments, never from attributes set during a call.
    """

    registered_name: str = ""

    @abc.abstractmethod
    def init(self, grad: torch.Tensor, rank: int, context: TrackerContext) -> torch.Tensor:
        """Return the first ``(d, rank)`` basis for ``grad``."""

    @abc.abstractmethod
    def update(
        self, basis: torch.Tensor, grad: torch.Tensor, rank: int, context: TrackerContext
    ) -> Refresh | torch.Tensor:
        """Return the basis that replaces ``basis`` given the current ``grad``."""


TRACKERS: Registry[Tracker] = Registry("tracker", Tracker)
"""Every registered tracker. A registered class must subclass :class:`Tracker`; a dataclass gets its
fields filled from the YAML options with strict checking."""


def register_tracker(name: str):
    """Register a :class:`Tracker` subclass under ``name`` so that YAML can select it.

    Example::

        @lowrank.register_tracker("frozen")
        @dataclasses.dataclass
        class FrozenTracker(lowrank.Tracker):
            def init(self, grad, rank, context):
                return lowrank.trackers.top_singular_basis(grad, rank, context.transposed)

            def update(self, basis, grad, rank, context):
                return basis
    """
    return TRACKERS.register(name)


def list_trackers(pattern: str | None = None) -> list[str]:
    """Return the registered tracker names, optionally filtered by a glob such as ``"s*"``."""
    return TRACKERS.names(pattern)
