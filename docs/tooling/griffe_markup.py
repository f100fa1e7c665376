"""A griffe extension that turns the reStructuredText habits of lowrank's docstrings into Markdown.

The docstrings follow Google style, which mkdocstrings parses, but also use two reST constructs
that Markdown shows literally:

- roles such as ``:class:`Tracker``` or ``:func:`~lowrank.config.from_dict```. A role whose target
  resolves to a documented object of the ``lowrank`` package becomes a cross-reference link. Any
  other role (``torch`` objects, names griffe cannot resolve) becomes inline code.
- a paragraph ending in ``::`` followed by an indented block. The block becomes a fenced code block,
  highlighted as Python when it parses as Python and as YAML when it parses as YAML.

Only the rendered docs change: the docstrings in the source stay as they are.
"""

from __future__ import annotations

import ast
import re

import griffe
import yaml

ROLE = re.compile(r":(?:class|func|meth|mod|attr|data|exc|obj):`(~?)([^`]+)`")
LITERAL_INTRO = re.compile(r"^(?P<text>.*?)\s*::\s*$")


class MarkdownDocstrings(griffe.Extension):
    """Rewrite reST roles and literal blocks in every docstring of the ``lowrank`` package."""

    def on_package(self, *, pkg: griffe.Module, **kwargs) -> None:
        if pkg.name != "lowrank":
            return
        for obj in _walk(pkg):
            if obj.docstring is not None:
                obj.docstring.value = convert_literal_blocks(convert_roles(obj.docstring.value, obj))


def _walk(obj: griffe.Object):
    yield obj
    for member in obj.members.values():
        if member.is_alias:
            continue
        yield from _walk(member)


def convert_roles(text: str, scope: griffe.Object) -> str:
    """Replace each reST role in ``text`` by a cross-reference or by inline code."""

    def replace(match: re.Match) -> str:
        short, target = match.group(1), match.group(2).strip()
        label = target.rsplit(".", 1)[-1] if short else target
        path = _resolve(target, scope)
        if path is None:
            return f"`{label}`"
        return f"[`{label}`][{path}]"

    return ROLE.sub(replace, text)


def _resolve(target: str, scope: griffe.Object) -> str | None:
    """Return the full path of ``target`` seen from ``scope`` if it is a public lowrank object."""
    head, _, rest = target.partition(".")
    if target.startswith("lowrank."):
        path = target
    else:
        try:
            path = scope.resolve(head)
        except (griffe.NameResolutionError, AttributeError):
            return None
        path = f"{path}.{rest}" if rest else path
    try:
        obj = scope.modules_collection[path]
    except KeyError:
        return None
    if obj.is_alias:
        try:
            obj = obj.final_target
        except griffe.AliasResolutionError:
            return None
    if not obj.path.startswith("lowrank.") and obj.path != "lowrank":
        return None
    if any(part.startswith("_") for part in obj.path.split(".")):
        return None  # private objects get no page
    if not obj.is_module and not obj.has_docstring:
        return None  # the API pages leave out members without a docstring
    return obj.path


def convert_literal_blocks(text: str) -> str:
    """Turn ``Paragraph::`` plus an indented block into ``Paragraph:`` plus a fenced code block."""
    lines = text.split("\n")
    output: list[str] = []
    index = 0
    while index < len(lines):
        line = lines[index]
        intro = LITERAL_INTRO.match(line)
        block_start = _next_non_blank(lines, index + 1)
        if intro is None or block_start is None or not _indent(lines[block_start]) > _indent(line):
            output.append(line)
            index += 1
            continue

        block_end = block_start
        base = _indent(line)
        while block_end < len(lines) and (not lines[block_end].strip() or _indent(lines[block_end]) > base):
            block_end += 1
        while block_end > block_start and not lines[block_end - 1].strip():
            block_end -= 1

        block = lines[block_start:block_end]
        margin = min(_indent(item) for item in block if item.strip())
        code = [item[margin:] for item in block]
        prefix = " " * base
        if intro.group("text").strip():
            output.append(f"{intro.group('text')}:")
        output.append("")
        output.append(f"{prefix}```{_language(code)}")
        output.extend(f"{prefix}{item}" if item else "" for item in code)
        output.append(f"{prefix}```")
        index = block_end
    return "\n".join(output)


def _next_non_blank(lines: list[str], start: int) -> int | None:
    for index in range(start, len(lines)):
        if lines[index].strip():
            return index
    return None


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def _language(code: list[str]) -> str:
    source = "\n".join(code)
    try:
        ast.parse(source)
        return "python"
    except SyntaxError:
        pass
    try:
        if isinstance(yaml.safe_load(source), (dict, list)):
            return "yaml"
    except yaml.YAMLError:
        pass
    return "text"
