r"""AdamW with low-rank gradient projection, composed from a tracker, a transport and a residual handler.

For a low-rank weight $W \in \mathbb{R}^{m \times n}$, let $g$ be its float32 gradient oriented so
that the projected axis comes first: $g = G$ if $m < n$, else $g = G^\top$. Then
$g \in \mathbb{R}^{d \times k}$ with $d = \min(m, n)$ and $k = \max(m, n)$, and the basis
$S \in \mathbb{R}^{d \times r}$ has orthonormal columns. At optimizer update $t$ of a parameter
(counted in optimizer updates, never in micro-batches):

1. Choose the basis. At $t = 0$, $S = \operatorname{tracker.init}(g)$. At a refresh step,
   $S_\text{new} = \operatorname{tracker.update}(S, g)$, and the transport carries the moments $m$
   and $v$ from $S$ to $S_\text{new}$ in this same step, before they absorb $g$.
2. Project: $R = S^\top g \in \mathbb{R}^{r \times k}$.
3. Run Adam in the subspace, with $\tau$ the number of updates the moments have absorbed, this one
   included (a reset transport restarts the count):

    $$
    \begin{aligned}
    m &\leftarrow \beta_1 m + (1 - \beta_1) R \\
    v &\leftarrow \beta_2 v + (1 - \beta_2) R^{2} \\
    N &= \frac{m / (1 - \beta_1^{\tau})}{\sqrt{v / (1 - \beta_2^{\tau})} + \epsilon}
    \end{aligned}
    $$

4. Project back: $U = \operatorname{residual.direction}(g, S, R, N, \alpha)$, which is
   $\alpha S N$ plus the residual handler's term for the part of $g$ outside the subspace
   ($\alpha$ is the group's ``scale``).
5. Apply decoupled weight decay to the old weight, then the update, with $\eta$ the learning rate,
   $\lambda$ the weight decay and $U$ transposed back for a right projection:

    $$
    W \leftarrow W - \eta \lambda W, \qquad W \leftarrow W - \eta U
    $$

Squares and divisions of $R$, $m$ and $v$ are element-wise. Refresh steps are the $t > 0$ with
$t \equiv \text{offset} \pmod{\text{update\_interval}}$; the offset is 0 unless the group staggers
refreshes across its parameters. Dense groups (``rank: None``) take exactly
``torch.optim.AdamW``'s update, through its own functional kernel.
"""

from __future__ import annotations

import json
import logging
import math
import time
from typing import Any, Callable, Iterable

import torch
from torch.optim.adamw import adamw as functional_adamw

from lowrank.optimizers.transport import TRANSPORTS, MomentTransport
from lowrank.recovery.base import RESIDUALS, ResidualHandler
from lowrank.trackers.base import TRACKERS, Refresh, Tracker, TrackerContext
from lowrank.trackers.random import random_orthonormal_basis, seed_for

__all__ = ["LowRankAdamW", "RefreshInfo"]

logger = logging.getLogger(__name__)

_STRATEGY_KEYS = ("tracker", "transport", "residual")
# Device types on which torch (2.4 and later) has a fused AdamW kernel.
_FUSED_DEVICE_TYPES = ("cpu", "cuda")
_REGISTRIES = {"tracker": TRACKERS, "transport": TRANSPORTS, "residual": RESIDUALS}


class RefreshInfo:
    """One parameter's basis change, passed to refresh hooks with the tensors the step already had.

    Attributes:
        param: The parameter itself (its optimizer state is ``optimizer.state[param]``).
        name: The parameter's name, or ``"param<index>"`` when its group gave no names.
        param_index: Position of the parameter among all parameters of the optimizer.
        step: The parameter's optimizer update count at the refresh.
        old_basis: ``(d, r)`` basis before the refresh, or ``None`` for the first basis.
        new_basis: ``(d, r)`` basis after the refresh.
        grad: Oriented float32 gradient ``(d, k)``.
        projected: ``new_basisᵀ grad``, ``(r, k)``.
        seconds: Wall time of the tracker call. On an asynchronous device this is the launch time
            only, unless the hook's owner synchronizes.
        skipped: True when the gradient was non-finite and the old basis was kept.
    """

    __slots__ = ("param", "name", "param_index", "step", "old_basis", "new_basis", "grad", "projected", "seconds", "skipped")

    def __init__(self, **values: Any):
        for key in self.__slots__:
            setattr(self, key, values.get(key))


class LowRankAdamW(torch.optim.Optimizer):
    """AdamW whose low-rank groups keep Adam's moments in a tracked rank-``r`` subspace.

    Args:
        params: Parameters or parameter groups. A group with ``rank`` set is low-rank; every
            parameter in it must be 2-D with ``rank < min(shape)``.
        lr: Learning rate.
        betas: Coefficients of the running averages of the gradient and its square.
        eps: Added to the denominator, as in ``torch.optim.AdamW``.
        weight_decay: Decoupled weight decay, applied to the weight before the update.
        rank: Default rank of low-rank groups; ``None`` makes groups dense unless they set it.
        update_interval: Optimizer updates between two basis refreshes (GaLore's
            ``update_proj_gap``, SubTrack's ``subspace_update_interval``).
        scale: α, the factor applied to the back-projected low-rank update (GaLore uses 0.25).
        tracker: The subspace tracker: a registered name, a mapping ``{"name": ..., **options}``,
            or an instance of a registered dataclass strategy.
        transport: The moment transport, given in any of the forms of ``tracker``.
        residual: The residual handler, given in any of the forms of ``tracker``.
        stagger: Spread the refresh steps of a group's parameters over the interval (offsets from
            the golden-ratio sequence of each parameter's index), so that expensive refreshes do
            not all fall on one step.
        seed: Seed of random trackers; the basis depends on (seed, parameter index, refresh count).
        foreach: Use torch's multi-tensor AdamW kernel for dense groups.
        fused: Use torch's fused AdamW kernel for dense groups. ``None`` picks it when every dense
            parameter is a floating-point tensor on the CPU or a CUDA device, unless ``foreach`` is
            set; on the CPU it updates LLaMA-60M's dense parameters several times faster than the
            multi-tensor kernel.

    Each group may also carry ``names``, a list of parameter names used in messages and hooks;
    ``param_indices``, the parameters' global indices (for an optimizer that contains a shard of a
    larger parameter list: seeds and stagger offsets follow them); and ``label``, its name in logs.

    State per low-rank parameter (tensors and numbers only): ``step`` (updates applied),
    ``moment_step`` (updates absorbed by the moments, for bias correction; a reset transport
    restarts it), ``refresh_count``, ``refresh_offset``, ``param_index``, ``transposed``,
    ``basis`` ``(d, r)`` float32, ``exp_avg`` and ``exp_avg_sq`` ``(r, k)`` float32, and the
    residual handler's own keys. Dense parameters keep ``torch.optim.AdamW``'s state.
    """

    def __init__(
        self,
        params: Iterable[torch.Tensor] | Iterable[dict],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        *,
        rank: int | None = None,
        update_interval: int = 200,
        scale: float = 0.25,
        tracker: Any = "svd",
        transport: Any = "keep",
        residual: Any = "drop",
        stagger: bool = False,
        seed: int = 0,
        foreach: bool | None = None,
        fused: bool | None = None,
    ):
        defaults = dict(
            lr=lr,
            betas=betas,
            eps=eps,
            weight_decay=weight_decay,
            rank=rank,
            update_interval=update_interval,
            scale=scale,
            tracker=tracker,
            transport=transport,
            residual=residual,
            stagger=stagger,
            seed=seed,
            foreach=foreach,
            fused=fused,
            label=None,
        )
        self._strategies: dict[str, Any] = {}
        self._param_positions: dict[torch.Tensor, int] | None = None
        self._names: dict[torch.Tensor, str] = {}
        self._indices: dict[torch.Tensor, int] = {}
        self._groups_by_param: dict[torch.Tensor, dict] | None = None
        self._refresh_hooks: list[Callable[[RefreshInfo], None]] = []
        super().__init__(params, defaults)

    # ------------------------------------------------------------------ groups and validation

    def add_param_group(self, param_group: dict) -> None:
        """Validate a group, normalize its strategy specs, and add it."""
        group = dict(param_group)
        for key in _STRATEGY_KEYS:
            if key in group:
                group[key], group[f"{key}_options"] = _normalize_strategy(key, group[key], group.get(f"{key}_options"))
        for key in _STRATEGY_KEYS:
            if key not in group and f"{key}_options" not in group:
                group[key], group[f"{key}_options"] = _normalize_strategy(key, self.defaults[key], None)
        super().add_param_group(group)

        group = self.param_groups[-1]
        _validate_group(group)
        # Per-parameter metadata lives on the optimizer, not in the group, so that wrappers which
        # split a group's parameters (ZeroRedundancyOptimizer) cannot pair it with the wrong ones.
        names = group.pop("names", None)
        indices = group.pop("param_indices", None)
        for position, param in enumerate(group["params"]):
            if names:
                self._names[param] = names[position]
            if indices is not None:
                self._indices[param] = indices[position]
        for key in _STRATEGY_KEYS:
            self._strategy(group, key)  # builds it now, so bad options fail at construction
        self._param_positions = None
        self._groups_by_param = None

    def _strategy(self, group: dict, key: str) -> Any:
        options = group[f"{key}_options"]
        cache_key = f"{key}:{group[key]}:{json.dumps(options, sort_keys=True, default=repr)}"
        if cache_key not in self._strategies:
            self._strategies[cache_key] = _REGISTRIES[key].build(group[key], options, path=key)
        return self._strategies[cache_key]

    def param_name(self, param: torch.Tensor) -> str:
        """Return the name given to ``param`` in its group's ``names``, or ``param<index>``."""
        return self._names.get(param) or f"param{self._position(param)}"

    def _position(self, param: torch.Tensor) -> int:
        """Return the parameter's global index: the one its group assigned, else its position."""
        if param in self._indices:
            return self._indices[param]
        if self._param_positions is None:
            params = [p for g in self.param_groups for p in g["params"]]
            self._param_positions = {p: i for i, p in enumerate(params)}
        return self._param_positions[param]

    def _group_of(self, param: torch.Tensor) -> dict:
        if self._groups_by_param is None:
            self._groups_by_param = {p: group for group in self.param_groups for p in group["params"]}
        try:
            return self._groups_by_param[param]
        except KeyError:
            raise KeyError(f"parameter of shape {tuple(param.shape)} is not managed by this optimizer") from None

    def register_refresh_hook(self, hook: Callable[[RefreshInfo], None]) -> Callable[[], None]:
        """Call ``hook(info)`` after every basis choice of a low-rank parameter; return a remover.

        Hooks cost nothing when none is registered: the refresh then builds no :class:`RefreshInfo`.
        """
        self._refresh_hooks.append(hook)

        def remove() -> None:
            if hook in self._refresh_hooks:
                self._refresh_hooks.remove(hook)

        return remove

    # ------------------------------------------------------------------ the step

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:
        """Perform one optimizer update on every parameter that has a gradient."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()

        for group in self.param_groups:
            if group["rank"] is None:
                self._dense_step(group)
            else:
                self._lowrank_step(group)
        return loss

    def step_parameter(self, param: torch.Tensor) -> None:
        """Perform one optimizer update on ``param`` alone (the layer-wise mode calls this).

        The update equals the one :meth:`step` would apply to this parameter.
        """
        group = self._group_of(param)
        if param.grad is None:
            return
        if group["rank"] is None:
            self._dense_update(group, [param])
        else:
            self._lowrank_update(group, param, self._strategies_of(group))

    def _dense_step(self, group: dict) -> None:
        self._dense_update(group, [param for param in group["params"] if param.grad is not None])

    def _dense_update(self, group: dict, params: list[torch.Tensor]) -> None:
        if not params:
            return
        fused = group["fused"]
        if fused is None:
            fused = group["foreach"] is None and all(
                p.is_floating_point() and p.device.type in _FUSED_DEVICE_TYPES for p in params
            )

        grads, exp_avgs, exp_avg_sqs, steps = [], [], [], []
        for param in params:
            if param.grad.is_sparse:
                raise RuntimeError("LowRankAdamW does not support sparse gradients")
            state = self.state[param]
            if not state:
                state["step"] = torch.tensor(0.0, dtype=torch.float32)
                state["exp_avg"] = torch.zeros_like(param, memory_format=torch.preserve_format)
                state["exp_avg_sq"] = torch.zeros_like(param, memory_format=torch.preserve_format)
            if fused and state["step"].device != param.device:
                state["step"] = state["step"].to(param.device)  # the fused kernel reads it on the device
            grads.append(param.grad)
            exp_avgs.append(state["exp_avg"])
            exp_avg_sqs.append(state["exp_avg_sq"])
            steps.append(state["step"])

        beta1, beta2 = group["betas"]
        functional_adamw(
            params,
            grads,
            exp_avgs,
            exp_avg_sqs,
            [],
            steps,
            foreach=None if fused else group["foreach"],
            fused=fused,
            amsgrad=False,
            beta1=beta1,
            beta2=beta2,
            lr=group["lr"],
            weight_decay=group["weight_decay"],
            eps=group["eps"],
            maximize=False,
        )

    def _lowrank_step(self, group: dict) -> None:
        strategies = self._strategies_of(group)
        for param in group["params"]:
            if param.grad is not None:
                self._lowrank_update(group, param, strategies)

    def _strategies_of(self, group: dict) -> tuple[Tracker, MomentTransport, ResidualHandler]:
        return self._strategy(group, "tracker"), self._strategy(group, "transport"), self._strategy(group, "residual")

    def _lowrank_update(
        self, group: dict, param: torch.Tensor, strategies: tuple[Tracker, MomentTransport, ResidualHandler]
    ) -> None:
        if param.grad.is_sparse:
            raise RuntimeError("LowRankAdamW does not support sparse gradients")
        tracker, transport, residual = strategies

        state = self.state[param]
        if not state:
            self._init_lowrank_state(group, param, residual)
        grad = param.grad.float()
        if state["transposed"]:
            grad = grad.T  # (d, k)

        projected = self._update_basis(group, param, state, grad, tracker, transport)
        if projected is None:
            projected = state["basis"].T @ grad  # R: (r, k)
        normalized = self._adam_in_subspace(group, state, projected)  # N: (r, k)
        update = residual.direction(grad, state["basis"], projected, normalized, group["scale"], state)
        if state["transposed"]:
            update = update.T  # back to the weight's (m, n)

        if group["weight_decay"] != 0:
            param.mul_(1.0 - group["lr"] * group["weight_decay"])
        param.add_(update.to(param.dtype), alpha=-group["lr"])
        state["step"] += 1

    def _init_lowrank_state(self, group: dict, param: torch.Tensor, residual: ResidualHandler) -> None:
        rows, cols = param.shape
        transposed = rows >= cols
        d, k = (cols, rows) if transposed else (rows, cols)
        rank = group["rank"]
        interval = group["update_interval"]

        state = self.state[param]
        state["step"] = 0
        state["moment_step"] = 0
        state["refresh_count"] = 0
        state["param_index"] = self._position(param)
        state["refresh_offset"] = _stagger_offset(state["param_index"], interval) if group["stagger"] else 0
        state["transposed"] = transposed
        state["exp_avg"] = torch.zeros((rank, k), dtype=torch.float32, device=param.device)
        state["exp_avg_sq"] = torch.zeros((rank, k), dtype=torch.float32, device=param.device)
        residual.init_state(state, torch.empty((d, k), dtype=torch.float32, device=param.device))

    def _update_basis(
        self,
        group: dict,
        param: torch.Tensor,
        state: dict,
        grad: torch.Tensor,
        tracker: Tracker,
        transport: MomentTransport,
    ) -> torch.Tensor | None:
        """Choose the first basis or refresh it when due; return ``Sᵀg`` if the tracker gave it."""
        step = state["step"]
        first = "basis" not in state
        due = step > 0 and step % group["update_interval"] == state["refresh_offset"] % group["update_interval"]
        if not first and not due:
            return None

        context = TrackerContext(
            param_index=state["param_index"],
            refresh=state["refresh_count"],
            seed=group["seed"],
            transposed=state["transposed"],
        )
        old_basis = state.get("basis")
        started = time.perf_counter()
        # NOTE: the finiteness check synchronizes with the device, at refresh steps only.
        finite = bool(torch.isfinite(grad).all())
        skipped = False
        projected = None

        if not finite:
            skipped = True
            name = self.param_name(param)
            if first:
                logger.warning("non-finite gradient for %s at its first step; starting from a random basis", name)
                seed = seed_for(group["seed"], state["param_index"], -1)
                new_basis = random_orthonormal_basis(grad.shape[0], group["rank"], seed, grad.device)
            else:
                logger.warning("non-finite gradient for %s at refresh step %d; keeping the old basis", name, step)
                new_basis = old_basis
        elif first:
            new_basis = _check_basis(tracker.init(grad, group["rank"], context), grad, group["rank"], tracker)
        else:
            result = tracker.update(old_basis, grad, group["rank"], context)
            if isinstance(result, Refresh):
                new_basis, projected = result.basis, result.projected
            else:
                new_basis = result
            new_basis = _check_basis(new_basis, grad, group["rank"], tracker)
        seconds = time.perf_counter() - started

        if old_basis is not None and new_basis is not old_basis:
            state["moment_step"] = transport.transport(
                state["exp_avg"], state["exp_avg_sq"], state["moment_step"], old_basis, new_basis, group["betas"]
            )
        state["basis"] = new_basis
        if not skipped:
            state["refresh_count"] += 1

        if self._refresh_hooks:
            if projected is None:
                projected = new_basis.T @ grad
            info = RefreshInfo(
                param=param,
                name=self.param_name(param),
                param_index=state["param_index"],
                step=step,
                old_basis=old_basis,
                new_basis=new_basis,
                grad=grad,
                projected=projected,
                seconds=seconds,
                skipped=skipped,
            )
            for hook in self._refresh_hooks:
                hook(info)
        return projected

    @staticmethod
    def _adam_in_subspace(group: dict, state: dict, projected: torch.Tensor) -> torch.Tensor:
        beta1, beta2 = group["betas"]
        exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
        state["moment_step"] += 1
        moment_step = state["moment_step"]

        exp_avg.lerp_(projected, 1.0 - beta1)
        exp_avg_sq.mul_(beta2).addcmul_(projected, projected, value=1.0 - beta2)

        bias_correction1 = 1.0 - beta1**moment_step
        bias_correction2 = 1.0 - beta2**moment_step
        denom = exp_avg_sq.sqrt().div_(math.sqrt(bias_correction2)).add_(group["eps"])
        return (exp_avg / bias_correction1).div_(denom)  # N: (r, k)

    # ------------------------------------------------------------------ state dict

    def load_state_dict(self, state_dict: dict) -> None:
        """Load a state dict, keeping float32 low-rank state float32 on low-precision parameters.

        ``torch.optim.Optimizer.load_state_dict`` casts floating state to each parameter's dtype,
        which would round a float32 basis and moments of a bf16 weight to bf16. Those tensors are
        set aside, the rest is loaded as usual, and they are restored in float32 on the
        parameter's device.
        """
        float32_state: dict[Any, dict[str, torch.Tensor]] = {}
        other_state: dict[Any, Any] = {}
        for key, param_state in state_dict["state"].items():
            if isinstance(param_state, dict) and "basis" in param_state:
                float32_state[key] = {
                    name: value
                    for name, value in param_state.items()
                    if torch.is_tensor(value) and value.is_floating_point()
                }
                other_state[key] = {name: value for name, value in param_state.items() if name not in float32_state[key]}
            else:
                other_state[key] = param_state

        super().load_state_dict({**state_dict, "state": other_state})

        saved_ids = [index for group in state_dict["param_groups"] for index in group["params"]]
        params = [p for group in self.param_groups for p in group["params"]]
        by_saved_id = dict(zip(saved_ids, params))
        for key, tensors in float32_state.items():
            param = by_saved_id[key]
            for name, value in tensors.items():
                self.state[param][name] = value.to(device=param.device, dtype=torch.float32)
        self._param_positions = None
        self._groups_by_param = None


def _normalize_strategy(key: str, spec: Any, options: dict | None) -> tuple[str, dict]:
    """Turn a strategy given as a name, a mapping or an instance into ``(name, options)``."""
    import dataclasses

    if isinstance(spec, str):
        return spec, dict(options or {})
    if isinstance(spec, dict):
        spec = dict(spec)
        if "name" not in spec:
            raise ValueError(f"{key} mapping needs a 'name' key, got {spec!r}")
        name = spec.pop("name")
        return name, {**spec, **(options or {})}
    registered = getattr(type(spec), "registered_name", "")
    if registered and dataclasses.is_dataclass(spec):
        return registered, {f.name: getattr(spec, f.name) for f in dataclasses.fields(spec) if f.init}
    raise ValueError(
        f"{key} must be a registered name, a mapping with 'name', or an instance of a registered "
        f"dataclass strategy; got {spec!r}"
    )


def _validate_group(group: dict) -> None:
    lr, eps, weight_decay = group["lr"], group["eps"], group["weight_decay"]
    if isinstance(lr, torch.Tensor) or not lr >= 0.0:
        raise ValueError(f"invalid learning rate lr={lr!r}: expected a float >= 0")
    if not eps >= 0.0:
        raise ValueError(f"invalid eps={eps!r}: expected a float >= 0")
    if not weight_decay >= 0.0:
        raise ValueError(f"invalid weight_decay={weight_decay!r}: expected a float >= 0")
    betas = group["betas"]
    if len(betas) != 2 or not all(0.0 <= beta < 1.0 for beta in betas):
        raise ValueError(f"invalid betas={betas!r}: expected two floats in [0, 1)")
    group["betas"] = (float(betas[0]), float(betas[1]))

    rank = group["rank"]
    if rank is None:
        return
    if isinstance(rank, bool) or not isinstance(rank, int) or rank < 1:
        raise ValueError(f"invalid rank={rank!r}: expected an integer >= 1, or None for a dense group")
    interval = group["update_interval"]
    if isinstance(interval, bool) or not isinstance(interval, int) or interval < 1:
        raise ValueError(f"invalid update_interval={interval!r}: expected an integer >= 1 (optimizer updates)")
    if not group["scale"] > 0.0:
        raise ValueError(f"invalid scale={group['scale']!r}: expected a float > 0")
    if isinstance(group["seed"], bool) or not isinstance(group["seed"], int):
        raise ValueError(f"invalid seed={group['seed']!r}: expected an integer")

    names = group.get("names") or [None] * len(group["params"])
    if len(names) != len(group["params"]):
        raise ValueError(f"group has {len(group['params'])} parameters but {len(names)} names")
    indices = group.get("param_indices")
    if indices is not None and len(indices) != len(group["params"]):
        raise ValueError(f"group has {len(group['params'])} parameters but {len(indices)} param_indices")
    for index, (param, name) in enumerate(zip(group["params"], names)):
        label = repr(name) if name else f"at position {index} of its group"
        if _is_sharded(param):
            raise ValueError(
                f"parameter {label} is a sharded DTensor (FSDP2 fully_shard): a low-rank projection needs "
                "the whole gradient matrix, and projecting one shard would be silently wrong; train with "
                "DDP, optionally with ZeroRedundancyOptimizer to shard the optimizer state"
            )
        if param.dim() != 2:
            raise ValueError(
                f"parameter {label} has shape {tuple(param.shape)}: only 2-D parameters can be low-rank; "
                "put it in a dense group (rank: null)"
            )
        if rank >= min(param.shape):
            raise ValueError(
                f"rank={rank} is not below min{tuple(param.shape)} = {min(param.shape)} for parameter {label}; "
                "lower the rank or make this parameter dense"
            )


def _is_sharded(param: torch.Tensor) -> bool:
    try:
        from torch.distributed.tensor import DTensor
    except ImportError:  # torch built without distributed support
        return False
    return isinstance(param, DTensor)


def _check_basis(basis: Any, grad: torch.Tensor, rank: int, tracker: Tracker) -> torch.Tensor:
    expected = (grad.shape[0], rank)
    if not isinstance(basis, torch.Tensor) or tuple(basis.shape) != expected or basis.dtype != torch.float32:
        got = f"{tuple(basis.shape)} {basis.dtype}" if isinstance(basis, torch.Tensor) else repr(basis)
        raise TypeError(
            f"tracker {tracker.registered_name or type(tracker).__name__!r} returned {got}; "
            f"expected a float32 tensor of shape {expected}"
        )
    return basis


def _stagger_offset(param_index: int, interval: int) -> int:
    """Spread refresh offsets over ``[0, interval)`` by the golden-ratio sequence of the index.

    The offset depends on the parameter's global index only, so a sharded optimizer that contains a
    subset of the parameters staggers them exactly as the unsharded one does.
    """
    golden = (math.sqrt(5.0) - 1.0) / 2.0
    return int(((param_index * golden) % 1.0) * interval)
