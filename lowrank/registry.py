"""Name-to-class registries for the three strategy families.

A registry maps a name used in YAML (``tracker: subtrack``) to a class. Classes are added with a
decorator from any module, so user code can extend lowrank without editing it::

    @lowrank.register_tracker("my_tracker")
    @dataclasses.dataclass
    class MyTracker(lowrank.Tracker):
        ...

The builder checks each registered class against the registry's contract (its base class) and
builds it from options with the same strict validation as every other configuration.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import inspect
from typing import Any, Callable, Generic, TypeVar

from lowrank.config import ConfigError, from_dict

__all__ = ["Registry"]

T = TypeVar("T")


class Registry(Generic[T]):
    """A named collection of strategy classes that all subclass ``base``.

    Args:
        kind: What the registry contains, used in messages (``"tracker"``).
        base: The abstract base class every registered class must subclass.
    """

    def __init__(self, kind: str, base: type[T]):
        self.kind = kind
        self.base = base
        self._classes: dict[str, type[T]] = {}

    def register(self, name: str) -> Callable[[type[T]], type[T]]:
        """Return a class decorator that registers its class under ``name``.

        Raises:
            ValueError: if ``name`` is taken or the class does not subclass the registry's base.
        """
        if not isinstance(name, str) or not name:
            raise ValueError(f"{self.kind} name must be a non-empty string, got {name!r}")

        def decorator(cls: type[T]) -> type[T]:
            if not (inspect.isclass(cls) and issubclass(cls, self.base)):
                raise ValueError(
                    f"cannot register {cls!r} as {self.kind} {name!r}: it must subclass "
                    f"{self.base.__module__}.{self.base.__qualname__}"
                )
            if name in self._classes:
                raise ValueError(
                    f"{self.kind} {name!r} is already registered by {self._classes[name].__qualname__}; "
                    "choose another name"
                )
            self._classes[name] = cls
            cls.registered_name = name
            return cls

        return decorator

    def unregister(self, name: str) -> type[T]:
        """Remove ``name`` and return its class, so that the name can be registered again.

        Raises:
            KeyError: naming ``name`` and listing every registered name.
        """
        cls = self.get(name)
        del self._classes[name]
        return cls

    def get(self, name: str) -> type[T]:
        """Return the class registered as ``name``.

        Raises:
            KeyError: naming ``name`` and listing every registered name.
        """
        try:
            return self._classes[name]
        except KeyError:
            known = ", ".join(sorted(self._classes)) or "none"
            raise KeyError(f"unknown {self.kind} {name!r}; registered {self.kind}s: {known}") from None

    def names(self, pattern: str | None = None) -> list[str]:
        """Return the registered names in sorted order, optionally filtered by a glob pattern."""
        names = sorted(self._classes)
        if pattern is not None:
            names = [name for name in names if fnmatch.fnmatchcase(name, pattern)]
        return names

    def build(self, name: str, options: dict[str, Any] | None = None, path: str = "") -> T:
        """Build an instance of ``name`` from ``options``, checking each key strictly.

        Dataclass strategies are built through :func:`lowrank.config.from_dict`; other classes
        have their options checked against the ``__init__`` signature.
        """
        options = dict(options or {})
        try:
            cls = self.get(name)
        except KeyError as error:
            raise ConfigError(f"{path + ': ' if path else ''}{error.args[0]}") from None

        if dataclasses.is_dataclass(cls):
            instance = from_dict(cls, options, path)
        else:
            instance = _build_from_signature(cls, options, path)

        if not isinstance(instance, self.base):
            raise TypeError(f"{self.kind} {name!r} built {instance!r}, which is not a {self.base.__name__}")
        return instance

    def __contains__(self, name: str) -> bool:
        return name in self._classes


def _build_from_signature(cls: type, options: dict[str, Any], path: str) -> Any:
    parameters = inspect.signature(cls).parameters
    accepts_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())
    valid = [name for name, p in parameters.items() if p.kind is not inspect.Parameter.VAR_POSITIONAL]
    unknown = [key for key in options if key not in valid]
    if unknown and not accepts_any:
        location = f"{path}.{unknown[0]}" if path else unknown[0]
        raise ConfigError(f"unknown key {location!r}; valid keys: name, {', '.join(valid)}")
    try:
        return cls(**options)
    except (TypeError, ValueError) as error:
        raise ConfigError(f"{path + ': ' if path else ''}{error}") from error
