"""Assemble a :class:`LowRankAdamW` for a model from a YAML configuration.

Parameter selection follows the configuration's ordered rules: each trainable parameter goes to
the first rule whose glob or regular expression matches its name, or to a dense default group when
none matches. Tied weights appear once, under their first name. A rule that matches nothing is an
error, because it is almost always a typo in a pattern.
"""

from __future__ import annotations

import fnmatch
import logging
import re
from pathlib import Path
from typing import Any, Iterable

import torch
from torch import nn

from lowrank.config import ConfigError, from_dict, load_yaml
from lowrank.optim_config import GroupConfig, OptimizerConfig
from lowrank.optimizers.lowrank_adamw import LowRankAdamW

__all__ = ["build_optimizer", "load_optimizer_config", "select_parameters"]

logger = logging.getLogger(__name__)


def load_optimizer_config(config: str | Path | dict | OptimizerConfig, path: str = "") -> OptimizerConfig:
    """Read an :class:`OptimizerConfig` from a YAML path, a YAML string, a dict or a config object."""
    if isinstance(config, OptimizerConfig):
        return config
    return from_dict(OptimizerConfig, load_yaml(config), path)


def build_optimizer(
    model: nn.Module | Iterable[tuple[str, torch.Tensor]],
    config: str | Path | dict | OptimizerConfig,
    *,
    path: str = "",
) -> LowRankAdamW:
    """Build the optimizer that ``config`` describes for ``model``'s trainable parameters.

    Args:
        model: A module, or ``(name, parameter)`` pairs such as ``model.named_parameters()``.
        config: A YAML file path, a YAML string, a dict, or an :class:`OptimizerConfig`.
        path: Where the configuration sits inside a larger one (``"optimizer"``), for messages.

    Raises:
        ConfigError: on an unknown key, a bad value, a rule that matches no parameter, a
            non-2-D parameter under a low-rank rule without ``fallback_dense``, or a rank that is
            not below a matched parameter's smaller dimension.
    """
    config = load_optimizer_config(config, path)
    named = model.named_parameters() if isinstance(model, nn.Module) else model
    groups = select_parameters(named, config, path=path)
    try:
        return LowRankAdamW(groups, lr=config.lr, betas=config.betas, eps=config.eps, weight_decay=config.weight_decay)
    except ValueError as error:
        raise ConfigError(f"{path + ': ' if path else ''}{error}") from error


def select_parameters(
    named_parameters: Iterable[tuple[str, torch.Tensor]], config: OptimizerConfig, *, path: str = ""
) -> list[dict]:
    """Assign every trainable parameter to exactly one group; return ``torch.optim`` param groups."""
    prefix = f"{path}." if path else ""
    seen: set[int] = set()
    params: list[tuple[str, torch.Tensor]] = []
    for name, param in named_parameters:
        if not param.requires_grad or id(param) in seen:
            continue
        seen.add(id(param))
        params.append((name, param))
    if not params:
        raise ConfigError("the model has no trainable parameters")

    matchers = [_matcher(rule, f"{prefix}groups[{i}]") for i, rule in enumerate(config.groups)]
    members: list[list[tuple[str, torch.Tensor]]] = [[] for _ in config.groups]
    unmatched: list[tuple[str, torch.Tensor]] = []
    for name, param in params:
        for index, matches in enumerate(matchers):
            if matches(name):
                members[index].append((name, param))
                break
        else:
            unmatched.append((name, param))

    groups = []
    for index, (rule, selected) in enumerate(zip(config.groups, members)):
        label = rule.name or f"groups[{index}]"
        where = f"{prefix}groups[{index}]"
        if not selected:
            patterns = rule.match or rule.regex
            raise ConfigError(
                f"{where} ({label}) matches no trainable parameter with {patterns}; "
                f"parameter names look like {params[0][0]!r}"
            )
        groups.extend(_rule_groups(rule, selected, config, label, where))
    if unmatched:
        groups.append(_dense_group(unmatched, config, None, "unmatched (dense)"))

    for group in groups:
        _log_group(group)
    return groups


def _matcher(rule: GroupConfig, where: str):
    globs = list(rule.match or [])
    try:
        regexes = [re.compile(pattern) for pattern in rule.regex or []]
    except re.error as error:
        raise ConfigError(f"{where}.regex: invalid regular expression: {error}") from error

    def matches(name: str) -> bool:
        return any(fnmatch.fnmatchcase(name, glob) for glob in globs) or any(
            regex.fullmatch(name) for regex in regexes
        )

    return matches


def _rule_groups(
    rule: GroupConfig, selected: list[tuple[str, torch.Tensor]], config: OptimizerConfig, label: str, where: str
) -> list[dict]:
    if rule.rank is None:
        return [_dense_group(selected, config, rule, label)]

    lowrank, fallback = [], []
    for name, param in selected:
        if param.dim() == 2:
            if rule.rank >= min(param.shape):
                raise ConfigError(
                    f"{where}.rank: rank {rule.rank} is not below min{tuple(param.shape)} = {min(param.shape)} "
                    f"for parameter {name!r}; lower the rank or exclude this parameter from the rule"
                )
            lowrank.append((name, param))
        elif rule.fallback_dense:
            fallback.append((name, param))
        else:
            raise ConfigError(
                f"{where} ({label}) matches parameter {name!r} of shape {tuple(param.shape)}, but only 2-D "
                "parameters can be low-rank; narrow the pattern or set fallback_dense: true"
            )

    groups = []
    if lowrank:
        group = _dense_group(lowrank, config, rule, label)
        group.update(
            rank=rule.rank,
            update_interval=rule.update_interval,
            scale=rule.scale,
            tracker=rule.tracker.name,
            tracker_options=dict(rule.tracker.options),
            transport=rule.transport.name,
            transport_options=dict(rule.transport.options),
            residual=rule.residual.name,
            residual_options=dict(rule.residual.options),
            stagger=rule.stagger,
            seed=rule.seed,
        )
        groups.append(group)
    if fallback:
        groups.append(_dense_group(fallback, config, rule, f"{label} (dense fallback)"))
    return groups


def _dense_group(
    selected: list[tuple[str, torch.Tensor]], config: OptimizerConfig, rule: GroupConfig | None, label: str
) -> dict[str, Any]:
    def pick(key: str) -> Any:
        value = getattr(rule, key) if rule is not None else None
        return getattr(config, key) if value is None else value

    return {
        "params": [param for _, param in selected],
        "names": [name for name, _ in selected],
        "label": label,
        "rank": None,
        "lr": pick("lr"),
        "weight_decay": pick("weight_decay"),
        "betas": tuple(pick("betas")),
        "eps": pick("eps"),
        "foreach": config.foreach,
        "fused": config.fused,
    }


def _log_group(group: dict) -> None:
    count = len(group["params"])
    numel = sum(param.numel() for param in group["params"])
    if group["rank"] is None:
        logger.info(
            "group %s: %d parameters (%d elements), dense AdamW, lr=%g, weight_decay=%g",
            group["label"], count, numel, group["lr"], group["weight_decay"],
        )
        return
    logger.info(
        "group %s: %d parameters (%d elements), rank=%d, update_interval=%d, scale=%g, tracker=%s %s, "
        "transport=%s %s, residual=%s %s, lr=%g, weight_decay=%g",
        group["label"], count, numel, group["rank"], group["update_interval"], group["scale"],
        group["tracker"], group["tracker_options"], group["transport"], group["transport_options"],
        group["residual"], group["residual_options"], group["lr"], group["weight_decay"],
    )
