"""Residual handlers: what happens to the part of the gradient outside the subspace."""

from lowrank.recovery.base import RESIDUALS, ResidualHandler, list_residuals, register_residual
from lowrank.recovery.drop import DropResidual
from lowrank.recovery.recovery_scaling import RecoveryScaling, recovery_scaling_direction

__all__ = [
    "RESIDUALS",
    "DropResidual",
    "RecoveryScaling",
    "ResidualHandler",
    "list_residuals",
    "recovery_scaling_direction",
    "register_residual",
]
