"""Configuration of a composed optimizer, as read from YAML.

Example (``configs/optim/subtrack_pp.yaml``)::

    lr: 1.0e-3
    weight_decay: 0.0
    groups:
      - name: attention_and_mlp
        match: ["*.self_attn.*_proj.weight", "*.mlp.*_proj.weight"]
        rank: 128
        update_interval: 200
        scale: 0.25
        tracker: {name: subtrack, step_size: 10.0}
        transport: projection_aware
        residual: recovery_scaling

Parameters that no rule matches form a dense AdamW group with the top-level hyperparameters.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from lowrank.config import ConfigError
from lowrank.optimizers.transport import TRANSPORTS
from lowrank.recovery.base import RESIDUALS
from lowrank.registry import Registry
from lowrank.trackers.base import TRACKERS

__all__ = ["GroupConfig", "OptimizerConfig", "ResidualSpec", "TrackerSpec", "TransportSpec"]


@dataclass
class StrategySpec:
    """A registered strategy's name and options, written in YAML as ``name`` or ``{name: ..., option: ...}``."""

    name: str
    options: dict[str, Any] = field(default_factory=dict)

    registry: ClassVar[Registry]

    @classmethod
    def from_config(cls, value: Any, path: str) -> "StrategySpec":
        """Read a spec and check its options by building the strategy once."""
        if isinstance(value, cls):
            return value
        if isinstance(value, str):
            name, options = value, {}
        elif isinstance(value, dict):
            if "name" not in value:
                raise ConfigError(f"missing required key '{path}.name' (one of: {', '.join(cls.registry.names())})")
            options = dict(value)
            name = options.pop("name")
        else:
            raise ConfigError(f"{path}: expected a {cls.registry.kind} name or a mapping with 'name', got {value!r}")
        cls.registry.build(name, options, path=path)
        return cls(name, options)

    def to_config(self) -> str | dict[str, Any]:
        """Return the YAML form: the bare name when there are no options."""
        return {"name": self.name, **self.options} if self.options else self.name


@dataclass
class TrackerSpec(StrategySpec):
    registry: ClassVar[Registry] = TRACKERS


@dataclass
class TransportSpec(StrategySpec):
    registry: ClassVar[Registry] = TRANSPORTS


@dataclass
class ResidualSpec(StrategySpec):
    registry: ClassVar[Registry] = RESIDUALS


@dataclass
class GroupConfig:
    """One parameter-selection rule and the options of the group it forms.

    Rules are tried in order and the first match wins. A rule with ``rank`` forms a low-rank group;
    a rule without one forms a dense AdamW group.
    """

    match: list[str] | str | None = None
    """Glob patterns on parameter names (``fnmatch``, case-sensitive), e.g. ``"*.mlp.*.weight"``."""
    regex: list[str] | str | None = None
    """Regular expressions that must match the whole parameter name (``re.fullmatch``)."""
    name: str | None = None
    """Label of the group in logs; defaults to ``groups[i]``."""
    rank: int | None = None
    """Rank r of the projected subspace; leave unset for a dense group."""
    update_interval: int = 200
    """Optimizer updates between basis refreshes (GaLore's ``update_proj_gap``)."""
    scale: float = 0.25
    """α, the factor on the back-projected low-rank update."""
    tracker: TrackerSpec = field(default_factory=lambda: TrackerSpec("svd"))
    """Subspace tracker: a registered name or ``{name: ..., option: value}``."""
    transport: TransportSpec = field(default_factory=lambda: TransportSpec("keep"))
    """Moment transport applied when the basis changes."""
    residual: ResidualSpec = field(default_factory=lambda: ResidualSpec("drop"))
    """Residual handler for the gradient outside the subspace."""
    stagger: bool = False
    """Spread the group's refresh steps evenly over the interval instead of refreshing all at once."""
    seed: int = 0
    """Seed of random trackers."""
    fallback_dense: bool = False
    """Put matched parameters that are not 2-D into a dense group instead of raising."""
    lr: float | None = None
    """Learning rate of this group; defaults to the top-level ``lr``."""
    weight_decay: float | None = None
    """Weight decay of this group; defaults to the top-level ``weight_decay``."""
    betas: tuple[float, float] | None = None
    """Adam's betas for this group; defaults to the top-level ``betas``."""
    eps: float | None = None
    """Adam's epsilon for this group; defaults to the top-level ``eps``."""

    def __post_init__(self):
        if isinstance(self.match, str):
            self.match = [self.match]
        if isinstance(self.regex, str):
            self.regex = [self.regex]
        if not self.match and not self.regex:
            raise ConfigError("a group needs 'match' (glob patterns) or 'regex' to select parameters")
        if self.rank is not None and self.rank < 1:
            raise ConfigError(f"rank must be at least 1, got {self.rank}")
        if self.update_interval < 1:
            raise ConfigError(f"update_interval must be at least 1 optimizer update, got {self.update_interval}")
        if not self.scale > 0:
            raise ConfigError(f"scale must be positive, got {self.scale}")


@dataclass
class OptimizerConfig:
    """A composed optimizer: AdamW hyperparameters plus ordered parameter-selection rules."""

    lr: float = 1e-3
    """Learning rate (the peak value when a schedule is used)."""
    betas: tuple[float, float] = (0.9, 0.999)
    """Coefficients of Adam's running averages of the gradient and its square."""
    eps: float = 1e-8
    """Term added to Adam's denominator."""
    weight_decay: float = 0.0
    """Decoupled weight decay, applied to the weight before each update."""
    foreach: bool | None = None
    """Use torch's multi-tensor AdamW kernel for dense groups."""
    fused: bool | None = None
    """Use torch's fused AdamW kernel for dense groups; ``None`` uses it on the CPU and CUDA unless
    ``foreach`` is set."""
    groups: list[GroupConfig] = field(default_factory=list)
    """Parameter-selection rules, first match wins; unmatched parameters are dense."""

    def __post_init__(self):
        if not self.lr >= 0:
            raise ConfigError(f"lr must be >= 0, got {self.lr}")
        if not self.eps >= 0:
            raise ConfigError(f"eps must be >= 0, got {self.eps}")
        if not self.weight_decay >= 0:
            raise ConfigError(f"weight_decay must be >= 0, got {self.weight_decay}")
        if not all(0 <= beta < 1 for beta in self.betas):
            raise ConfigError(f"betas must lie in [0, 1), got {list(self.betas)}")
