"""The composed optimizer and the moment transports it applies when a basis changes."""

from lowrank.optimizers.keep import KeepTransport
from lowrank.optimizers.lowrank_adamw import LowRankAdamW, RefreshInfo
from lowrank.optimizers.projection_aware import ProjectionAwareTransport, transport_moments
from lowrank.optimizers.reset import ResetTransport
from lowrank.optimizers.transport import TRANSPORTS, MomentTransport, list_transports, register_transport

__all__ = [
    "TRANSPORTS",
    "KeepTransport",
    "LowRankAdamW",
    "MomentTransport",
    "ProjectionAwareTransport",
    "RefreshInfo",
    "ResetTransport",
    "list_transports",
    "register_transport",
    "transport_moments",
]
