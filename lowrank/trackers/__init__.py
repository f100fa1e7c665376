"""Subspace trackers: how the low-rank basis of each weight is chosen and refreshed."""

from lowrank.trackers.base import TRACKERS, Refresh, Tracker, TrackerContext, list_trackers, register_tracker
from lowrank.trackers.random import RandomTracker, random_orthonormal_basis
from lowrank.trackers.subtrack import SubTrackTracker, grassmann_step
from lowrank.trackers.svd import SVDTracker, top_singular_basis

__all__ = [
    "TRACKERS",
    "RandomTracker",
    "Refresh",
    "SVDTracker",
    "SubTrackTracker",
    "Tracker",
    "TrackerContext",
    "grassmann_step",
    "list_trackers",
    "random_orthonormal_basis",
    "register_tracker",
    "top_singular_basis",
]
