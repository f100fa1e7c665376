"""Strict loading of configuration dataclasses from YAML, strings and dicts.

Every configuration in lowrank (optimizer groups, strategy options, training runs) is a dataclass.
:func:`from_dict` builds one from plain data and rejects what does not fit with a
:class:`ConfigError` that names the dotted path of the offending key (for example
``optimizer.groups[1].tracker.rnak``) and lists the valid keys, so a typo never falls back to a
default silently.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from pathlib import Path
from typing import Any, Literal, Union

import yaml

__all__ = ["ConfigError", "from_dict", "load_yaml", "to_dict"]


class ConfigError(ValueError):
    """A configuration value is missing, unknown, mistyped or out of range."""


def load_yaml(source: str | Path | dict) -> dict:
    """Read a mapping from a YAML file path, a YAML string or an existing dict.

    A string is taken as a path when it names an existing file or ends in ``.yaml``/``.yml``;
    otherwise it is parsed as YAML text.
    """
    if isinstance(source, dict):
        return dict(source)

    if isinstance(source, Path) or _looks_like_path(source):
        path = Path(source)
        if not path.is_file():
            raise ConfigError(f"config file not found: {str(path)!r}; check the path")
        text = path.read_text(encoding="utf-8")
        origin = str(path)
    else:
        text = source
        origin = "<string>"

    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise ConfigError(f"invalid YAML in {origin}: {error}") from error
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{origin} must contain a mapping at the top level, got {type(data).__name__}")
    return data


def _looks_like_path(text: str) -> bool:
    if "\n" in text:
        return False
    return text.endswith((".yaml", ".yml")) or Path(text).is_file()


def from_dict(cls: type, data: Any, path: str = "") -> Any:
    """Build dataclass ``cls`` from ``data``, checking every key and value against its fields.

    Args:
        cls: A dataclass type. Its fields' annotations drive the conversion: nested dataclasses,
            ``list[...]``, ``tuple[...]``, ``dict[str, ...]``, ``Optional``, ``Literal``, the
            scalar types ``int``, ``float``, ``str`` and ``bool``, and any class with a
            ``from_config(value, path)`` class method (its inverse is ``to_config()``).
        data: A mapping of field names to values, or an instance of ``cls`` (returned as is).
        path: The dotted location of ``data`` inside the whole configuration, used in errors.

    Raises:
        ConfigError: on an unknown key, a missing required key or a value of the wrong type.
            ``__post_init__`` may raise ``ValueError`` too; it is re-raised as ``ConfigError``
            with the path prefixed.
    """
    if isinstance(data, cls):
        return data
    if not isinstance(data, dict):
        raise ConfigError(f"{_where(path)}expected a mapping for {cls.__name__}, got {data!r}")

    fields = {field.name: field for field in dataclasses.fields(cls) if field.init}
    unknown = [key for key in data if key not in fields]
    if unknown:
        key = unknown[0]
        hint = difflib.get_close_matches(str(key), fields, n=1)
        suggestion = f" (did you mean {hint[0]!r}?)" if hint else ""
        raise ConfigError(
            f"unknown key {_join(path, str(key))!r}{suggestion}; valid keys: {', '.join(sorted(fields))}"
        )

    hints = typing.get_type_hints(cls)
    kwargs = {}
    for name, field in fields.items():
        if name in data:
            kwargs[name] = _convert(hints[name], data[name], _join(path, name))
        elif field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
            raise ConfigError(f"missing required key {_join(path, name)!r}")

    try:
        return cls(**kwargs)
    except ConfigError as error:
        raise ConfigError(f"{_where(path)}{error}") from error
    except (ValueError, TypeError) as error:
        raise ConfigError(f"{_where(path)}{error}") from error


def to_dict(config: Any) -> Any:
    """Convert a configuration dataclass (and what it contains) back to plain YAML-ready data."""
    if hasattr(config, "to_config"):
        return config.to_config()
    if dataclasses.is_dataclass(config) and not isinstance(config, type):
        return {field.name: to_dict(getattr(config, field.name)) for field in dataclasses.fields(config)}
    if isinstance(config, (list, tuple)):
        return [to_dict(item) for item in config]
    if isinstance(config, dict):
        return {key: to_dict(value) for key, value in config.items()}
    return config


def _convert(annotation: Any, value: Any, path: str) -> Any:
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)

    if annotation is Any:
        return value
    if isinstance(annotation, type) and hasattr(annotation, "from_config"):
        return annotation.from_config(value, path)
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for option in args:
            if option is type(None):
                continue
            try:
                return _convert(option, value, path)
            except ConfigError as error:
                errors.append(str(error))
        raise ConfigError(errors[0] if len(errors) == 1 else f"{path}: {value!r} fits none of {annotation}")
    if origin is Literal:
        if value not in args:
            choices = ", ".join(repr(arg) for arg in args)
            raise ConfigError(f"{path}: invalid value {value!r}; expected one of {choices}")
        return value
    if origin in (list, tuple):
        if isinstance(value, (str, dict)) or not isinstance(value, (list, tuple)):
            raise ConfigError(f"{path}: expected a list, got {value!r}")
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(value) != len(args):
                raise ConfigError(f"{path}: expected {len(args)} items, got {len(value)}")
            return tuple(_convert(arg, item, f"{path}[{i}]") for i, (arg, item) in enumerate(zip(args, value)))
        item_type = args[0] if args else Any
        items = [_convert(item_type, item, f"{path}[{i}]") for i, item in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{path}: expected a mapping, got {value!r}")
        value_type = args[1] if len(args) == 2 else Any
        return {key: _convert(value_type, item, f"{path}.{key}") for key, item in value.items()}
    if dataclasses.is_dataclass(annotation):
        return from_dict(annotation, value, path)
    if annotation is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{path}: expected true or false, got {value!r}")
        return value
    if annotation is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{path}: expected an integer, got {value!r}")
        return value
    if annotation is float:
        return _to_float(value, path)
    if annotation is str:
        if not isinstance(value, str):
            raise ConfigError(f"{path}: expected a string, got {value!r}")
        return value
    if isinstance(annotation, type) and isinstance(value, annotation):
        return value
    raise ConfigError(f"{path}: cannot read {value!r} as {annotation}")


def _to_float(value: Any, path: str) -> float:
    # PyYAML reads "1e-3" (no dot before the exponent) as a string, following YAML 1.1, so
    # numeric strings are accepted here.
    if isinstance(value, bool):
        raise ConfigError(f"{path}: expected a number, got {value!r}")
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            pass
    raise ConfigError(f"{path}: expected a number, got {value!r}")


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _where(path: str) -> str:
    return f"{path}: " if path else ""
