"""Render the configuration reference from the configuration dataclasses and the strategy registries.

Everything on the generated page comes from code. Keys and defaults come from
``dataclasses.fields`` and types from the annotations. A key's meaning is the string literal written
under its field (the attribute docstring, read from the class source with ``ast``), and its unit is
the first unit phrase of that string. To document another configuration, add its root dataclass to ``ROOTS``;
nested dataclasses are found by following the fields.

The module needs only the standard library and lowrank, so the tests can import it without mkdocs.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import re
import textwrap
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Literal, Union

from pathlib import Path

from lowrank.build import load_optimizer_config
from lowrank.config import to_dict
from lowrank.optim_config import OptimizerConfig, ResidualSpec, StrategySpec, TrackerSpec, TransportSpec
from lowrank.optimizers.transport import TRANSPORTS
from lowrank.recovery.base import RESIDUALS
from lowrank.registry import Registry
from lowrank.trackers.base import TRACKERS
from lowrank.train.config import RunConfig

# (YAML location, root dataclass). A run file contains the whole RunConfig; a file in
# configs/optim/ contains the OptimizerConfig alone, which a run file nests under ``optimizer``.
ROOTS: list[tuple[str, type]] = [
    ("", RunConfig),
]

# Other places a dataclass is read from, besides its place under a root.
ALSO_READ_AS = {
    OptimizerConfig: "A file in `configs/optim/` contains this mapping at its top level.",
}

STRATEGY_KINDS: list[tuple[type[StrategySpec], Registry, str]] = [
    (TrackerSpec, TRACKERS, "Subspace trackers"),
    (TransportSpec, TRANSPORTS, "Moment transports"),
    (ResidualSpec, RESIDUALS, "Residual handlers"),
]

# The unit of a key is the earliest of these phrases in the first sentence of its description.
UNIT_PATTERNS: list[tuple[str, str]] = [
    (r"\boptimizer updates?\b", "optimizer updates"),
    (r"\bradians\b", "radians"),
    (r"\bsequences?\b", "sequences"),
    (r"\btokens?\b", "tokens"),
    (r"\bbatches\b", "batches"),
    (r"\bexamples\b", "examples"),
    (r"\bprocesses\b", "processes"),
    (r"\bseconds\b", "seconds"),
    (r"\bfraction of\b", "fraction"),
]


@dataclass
class Row:
    """One key of a configuration table."""

    key: str
    type: str
    default: str
    unit: str
    meaning: str


@dataclass
class Section:
    """One configuration table: a dataclass at a YAML location, or the options of a strategy."""

    anchor: str
    title: str
    description: str
    rows: list[Row] = field(default_factory=list)
    missing_docs: list[str] = field(default_factory=list)
    """Qualified names of fields that have no description."""
    level: int = 2
    """Heading level on the page."""
    is_strategy: bool = False
    """True for one registered strategy, whose empty table reads "No options"."""


# ----------------------------------------------------------------------------------------- fields


def field_docstrings(cls: type) -> dict[str, str]:
    """Return the string literal under each annotated field of ``cls`` and its dataclass bases."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if klass is object or not dataclasses.is_dataclass(klass):
            continue
        try:
            source = textwrap.dedent(inspect.getsource(klass))
        except (OSError, TypeError):  # defined in an interactive session or generated
            continue
        class_node = ast.parse(source).body[0]
        body = getattr(class_node, "body", [])
        for statement, following in zip(body, body[1:]):
            if not (isinstance(statement, ast.AnnAssign) and isinstance(statement.target, ast.Name)):
                continue
            if (
                isinstance(following, ast.Expr)
                and isinstance(following.value, ast.Constant)
                and isinstance(following.value.value, str)
            ):
                docs[statement.target.id] = inspect.cleandoc(following.value.value)
    return docs


def unit_of(description: str) -> str:
    """Return the unit that the first sentence of ``description`` names, or an empty string."""
    first_sentence = re.split(r"(?<=\.)\s", description, maxsplit=1)[0]
    found = [
        (match.start(), unit)
        for pattern, unit in UNIT_PATTERNS
        if (match := re.search(pattern, first_sentence, flags=re.IGNORECASE))
    ]
    return min(found)[1] if found else ""


def format_type(annotation: Any, links: dict[type, str]) -> str:
    """Write ``annotation`` as the YAML value it accepts, linking documented dataclasses."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)

    if annotation is type(None):
        return "null"
    if annotation is Any:
        return "any"
    if origin in (Union, types.UnionType):
        return " or ".join(format_type(arg, links) for arg in args)
    if origin is Literal:
        return "one of " + ", ".join(f"`{arg!r}`".replace("'", '"') for arg in args)
    if origin is list:
        return f"list of {format_type(args[0], links)}" if args else "list"
    if origin is tuple:
        if args and args[-1] is not Ellipsis:
            return "[" + ", ".join(format_type(arg, links) for arg in args) + "]"
        return f"list of {format_type(args[0], links)}" if args else "list"
    if origin is dict:
        return f"mapping of string to {format_type(args[1], links)}" if len(args) == 2 else "mapping"
    if isinstance(annotation, type) and annotation in links:
        return f"[{_type_label(annotation)}](#{links[annotation]})"
    simple = {bool: "bool", int: "int", float: "float", str: "string"}
    if annotation in simple:
        return simple[annotation]
    return f"`{getattr(annotation, '__name__', annotation)}`"


def _type_label(cls: type) -> str:
    if isinstance(cls, type) and issubclass(cls, StrategySpec):
        return f"{cls.registry.kind} name or mapping"
    return "mapping"


def format_default(config_field: dataclasses.Field, links: dict[type, str]) -> str:
    """Write a field's default as YAML, or a link for a nested section, or *required*."""
    if config_field.default is not dataclasses.MISSING:
        value = config_field.default
    elif config_field.default_factory is not dataclasses.MISSING:
        value = config_field.default_factory()
    else:
        return "*required*"

    if dataclasses.is_dataclass(value) and type(value) in links and not isinstance(value, StrategySpec):
        return f"[see below](#{links[type(value)]})"
    return f"`{_yaml_value(to_dict(value))}`"


def _yaml_float(value: float) -> str:
    # Written as the files in configs/ write floats (1.0e-3, 0.25, 10.0): YAML 1.1, which PyYAML
    # follows, reads a number as a float only with a dot before the exponent.
    text = repr(value)
    if "e" in text:
        mantissa, exponent = text.split("e")
        if "." not in mantissa:
            mantissa += ".0"
        return f"{mantissa}e{int(exponent)}"
    return text


def _yaml_value(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return _yaml_float(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_yaml_value(item) for item in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{key}: {_yaml_value(item)}" for key, item in value.items()) + "}"
    return str(value)


# ----------------------------------------------------------------------------------------- sections


def dataclass_rows(cls: type, links: dict[type, str]) -> tuple[list[Row], list[str]]:
    """Return the table rows of ``cls`` and the qualified names of fields without a description."""
    hints = typing.get_type_hints(cls)
    docs = field_docstrings(cls)
    rows, missing = [], []
    for config_field in dataclasses.fields(cls):
        if not config_field.init:
            continue
        annotation = hints[config_field.name]
        meaning = docs.get(config_field.name, "")
        if not meaning and _is_section(annotation):
            meaning = summary_of(annotation).split("\n\n")[0]  # a nested section: its class summary
        if not meaning:
            missing.append(f"{cls.__module__}.{cls.__qualname__}.{config_field.name}")
        unit = "" if annotation is bool or _is_section(annotation) else unit_of(meaning)
        rows.append(
            Row(
                key=f"`{config_field.name}`",
                type=format_type(annotation, links),
                default=format_default(config_field, links),
                unit=unit,
                meaning=" ".join(meaning.split()),
            )
        )
    return rows, missing


def _is_section(annotation: Any) -> bool:
    return isinstance(annotation, type) and dataclasses.is_dataclass(annotation) and not issubclass(annotation, StrategySpec)


def nested_dataclasses(cls: type) -> list[tuple[str, type]]:
    """Return ``(key suffix, dataclass)`` for each field of ``cls`` that contains configuration dataclasses."""
    found = []
    for name, annotation in typing.get_type_hints(cls).items():
        for inner, suffix in _dataclasses_in(annotation):
            found.append((name + suffix, inner))
    return found


def _dataclasses_in(annotation: Any) -> list[tuple[type, str]]:
    origin = typing.get_origin(annotation)
    if origin in (Union, types.UnionType):
        return [item for arg in typing.get_args(annotation) for item in _dataclasses_in(arg)]
    if origin is list:
        return [(inner, "[i]" + suffix) for inner, suffix in _dataclasses_in(typing.get_args(annotation)[0])]
    if _is_section(annotation):
        return [(annotation, "")]
    return []


def collect_dataclasses(roots: list[tuple[str, type]]) -> list[tuple[str, type]]:
    """Walk the roots depth-first and return each configuration dataclass once, with its YAML path."""
    seen: set[type] = set()
    ordered: list[tuple[str, type]] = []

    def visit(path: str, cls: type) -> None:
        if cls in seen:
            return
        seen.add(cls)
        ordered.append((path, cls))
        for suffix, inner in nested_dataclasses(cls):
            visit(f"{path}.{suffix}" if path else suffix, inner)

    for path, cls in roots:
        visit(path, cls)
    return ordered


def summary_of(obj: Any) -> str:
    """Return the docstring of ``obj`` without its leading indentation, or an empty string."""
    return inspect.cleandoc(obj.__doc__) if obj.__doc__ else ""


def _anchor(text: str) -> str:
    return "config-" + (re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "root")


def build_sections(roots: list[tuple[str, type]] | None = None) -> list[Section]:
    """Build every section of the configuration reference, dataclasses first, then strategies."""
    classes = collect_dataclasses(ROOTS if roots is None else roots)
    links: dict[type, str] = {cls: _anchor(path) for path, cls in classes}
    for spec, registry, title in STRATEGY_KINDS:
        links[spec] = _anchor(title)

    sections = []
    for path, cls in classes:
        rows, missing = dataclass_rows(cls, links)
        description = summary_of(cls)
        if cls in ALSO_READ_AS:
            description += "\n\n" + ALSO_READ_AS[cls]
        title = f"`{path}`" if path else "Top level"
        sections.append(Section(_anchor(path), f"{title}: {cls.__name__}", description, rows, missing))

    for spec, registry, title in STRATEGY_KINDS:
        sections.extend(strategy_sections(registry, title, links))
    return sections


def strategy_sections(registry: Registry, title: str, links: dict[type, str]) -> list[Section]:
    """Return a heading section for ``registry`` and one section per registered strategy."""
    names = registry.names()
    heading = Section(
        _anchor(title),
        title,
        f"Written in YAML as `{registry.kind}: NAME` or `{registry.kind}: {{name: NAME, OPTION: VALUE}}`. "
        f"Registered: {', '.join(f'`{name}`' for name in names)}.",
    )
    sections = [heading]
    for name in names:
        cls = registry.get(name)
        description = summary_of(cls)
        if dataclasses.is_dataclass(cls):
            rows, missing = dataclass_rows(cls, links)
        else:
            rows, missing = _signature_rows(cls), []
        anchor = _anchor(f"{registry.kind}-{name}")
        sections.append(Section(anchor, f"`{name}`", description, rows, missing, level=3, is_strategy=True))
    return sections


def _signature_rows(cls: type) -> list[Row]:
    rows = []
    for parameter in inspect.signature(cls).parameters.values():
        if parameter.kind in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD):
            continue
        default = "*required*" if parameter.default is inspect.Parameter.empty else f"`{_yaml_value(parameter.default)}`"
        annotation = parameter.annotation
        type_text = "any" if annotation is inspect.Parameter.empty else format_type(annotation, {})
        rows.append(Row(f"`{parameter.name}`", type_text, default, "", ""))
    return rows


# ----------------------------------------------------------------------------------------- markdown


def render_markdown(sections: list[Section], preamble: str = "") -> str:
    """Return the Markdown of the configuration reference page, with ``preamble`` before the tables."""
    lines = [
        "# Configuration reference",
        "",
        "Generated at build time from the configuration dataclasses and the strategy registries, so "
        "it lists exactly the keys the loader accepts. An unknown or mistyped key is an error that "
        "names its dotted path (`optimizer.groups[0].tracker.rnak`) and the valid keys. The unit "
        "column is read from the key's description; an empty cell means a plain number, a flag or "
        "a name.",
        "",
    ]
    if preamble:
        lines += [preamble, ""]
    for section in sections:
        lines.append(f"{'#' * section.level} {section.title} {{#{section.anchor}}}")
        lines.append("")
        if section.description:
            lines.append(section.description)
            lines.append("")
        if section.rows:
            lines.append("| Key | Type | Default | Unit | Meaning |")
            lines.append("| --- | --- | --- | --- | --- |")
            for row in section.rows:
                cells = [row.key, row.type, row.default, row.unit, row.meaning]
                lines.append("| " + " | ".join(_cell(cell) for cell in cells) + " |")
            lines.append("")
        elif section.is_strategy:
            lines.append("No options.")
            lines.append("")
    return "\n".join(lines)


def render_shipped_configs(config_dir: Path) -> str:
    """Return a Markdown table of the optimizer files in ``config_dir``, read with the real loader.

    The description is the file's leading comment block.
    """
    lines = [
        "## Shipped optimizer configurations {#config-shipped}",
        "",
        f"The files in `{config_dir.parent.name}/{config_dir.name}/` that a run includes with `optimizer: {{include: ...}}`. "
        "Each low-rank rule is shown as rank, update interval, scale, tracker, transport and residual "
        "handler; parameters that no rule matches are dense AdamW.",
        "",
        "| File | Learning rate | Low-rank rules | Description |",
        "| --- | --- | --- | --- |",
    ]
    for path in sorted(config_dir.glob("*.yaml")):
        config = load_optimizer_config(path)
        rules = []
        for group in config.groups:
            if group.rank is None:
                rules.append(f"{group.name or 'unnamed'}: dense")
                continue
            strategies = ", ".join(
                f"`{_yaml_value(spec.to_config())}`" for spec in (group.tracker, group.transport, group.residual)
            )
            rules.append(
                f"{group.name or 'unnamed'}: r = {group.rank}, T = {group.update_interval}, "
                f"α = {_yaml_value(group.scale)}, {strategies}"
            )
        comment = []
        for line in path.read_text(encoding="utf-8").splitlines():
            if not line.startswith("#"):
                break
            comment.append(line.lstrip("#").strip())
        cells = [f"`{path.name}`", f"`{_yaml_value(config.lr)}`", "<br>".join(rules) or "none", " ".join(comment)]
        lines.append("| " + " | ".join(_cell(cell) for cell in cells) + " |")
    return "\n".join(lines) + "\n"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")
