"""lowrank: memory-efficient full-parameter training by low-rank gradient projection.

Three strategy families compose one optimizer: subspace trackers choose the basis, moment
transports carry Adam's moments across basis changes, and residual handlers decide what happens to
the gradient outside the subspace. Each family is a registry that user code can extend::

    import lowrank

    optimizer = lowrank.build_optimizer(model, "configs/optim/subtrack_pp.yaml")
"""

from lowrank.build import build_optimizer, load_optimizer_config, select_parameters
from lowrank.config import ConfigError
from lowrank.layerwise import LayerwiseUpdate
from lowrank.optim_config import GroupConfig, OptimizerConfig
from lowrank.optimizers import (
    LowRankAdamW,
    MomentTransport,
    RefreshInfo,
    list_transports,
    register_transport,
)
from lowrank.recovery import ResidualHandler, list_residuals, register_residual
from lowrank.trackers import Refresh, Tracker, TrackerContext, list_trackers, register_tracker

__version__ = "0.1.0"

__all__ = [
    "ConfigError",
    "GroupConfig",
    "LayerwiseUpdate",
    "LowRankAdamW",
    "MomentTransport",
    "OptimizerConfig",
    "Refresh",
    "RefreshInfo",
    "ResidualHandler",
    "Tracker",
    "TrackerContext",
    "build_optimizer",
    "list_residuals",
    "list_trackers",
    "list_transports",
    "load_optimizer_config",
    "register_residual",
    "register_tracker",
    "register_transport",
    "select_parameters",
]
