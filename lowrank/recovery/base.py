r"""The contract of a residual handler.

After Adam runs in the subspace, a residual handler turns the normalized low-rank update
$N \in \mathbb{R}^{r \times k}$ into the full update direction $U \in \mathbb{R}^{d \times k}$ of
the oriented weight. It decides what happens to the part of the gradient outside the subspace,
$E = g - S S^\top g$.
"""

from __future__ import annotations

import abc

import torch

from lowrank.registry import Registry

__all__ = ["RESIDUALS", "ResidualHandler", "list_residuals", "register_residual"]


class ResidualHandler(abc.ABC):
    """Base class of every registered residual handler.

    :meth:`direction` returns ``U`` such that the optimizer applies ``W ← W − lr·U``. It must
    include the low-rank part ``scale · S N``. Handlers that need memory across steps create it in
    :meth:`init_state` as tensors or numbers under their own keys of the parameter's optimizer
    state, so that it is saved and restored with the optimizer.
    """

    registered_name: str = ""

    def init_state(self, state: dict, grad: torch.Tensor) -> None:
        """Add this handler's entries to a parameter's fresh optimizer ``state``."""

    @abc.abstractmethod
    def direction(
        self,
        grad: torch.Tensor,
        basis: torch.Tensor,
        projected: torch.Tensor,
        normalized: torch.Tensor,
        scale: float,
        state: dict,
    ) -> torch.Tensor:
        """Return the ``(d, k)`` update direction.

        Args:
            grad: Oriented float32 gradient ``g``, ``(d, k)``.
            basis: ``S``, ``(d, r)``.
            projected: ``R = Sᵀ g``, ``(r, k)``.
            normalized: Adam's bias-corrected update in the subspace ``N``, ``(r, k)``.
            scale: The group's ``scale`` α applied to the low-rank part.
            state: The parameter's optimizer state.
        """


RESIDUALS: Registry[ResidualHandler] = Registry("residual", ResidualHandler)
"""Every registered residual handler. A registered class must subclass :class:`ResidualHandler`."""


def register_residual(name: str):
    """Register a :class:`ResidualHandler` subclass under ``name`` so that YAML can select it."""
    return RESIDUALS.register(name)


def list_residuals(pattern: str | None = None) -> list[str]:
    """Return the registered residual handler names, optionally filtered by a glob pattern."""
    return RESIDUALS.names(pattern)
