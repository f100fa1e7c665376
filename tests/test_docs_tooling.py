"""The generators behind the docs site: the configuration reference and the docstring rewriter."""

from __future__ import annotations

import dataclasses
import sys
import typing
from pathlib import Path

import pytest
import yaml

import lowrank
from lowrank.config import from_dict
from lowrank.optim_config import GroupConfig, OptimizerConfig
from lowrank.optimizers.transport import TRANSPORTS
from lowrank.recovery.base import RESIDUALS
from lowrank.trackers.base import TRACKERS

TOOLING = Path(__file__).resolve().parent.parent / "docs" / "tooling"
sys.path.insert(0, str(TOOLING))
import config_reference  # noqa: E402  (lives in docs/tooling, not in the package)


@pytest.fixture(scope="module")
def sections():
    return config_reference.build_sections()


def _section(sections, title_part: str):
    matches = [section for section in sections if title_part in section.title]
    assert len(matches) == 1, f"{len(matches)} sections match {title_part!r}"
    return matches[0]


def test_reference_lists_every_group_key(sections):
    section = _section(sections, "GroupConfig")
    keys = [row.key.strip("`") for row in section.rows]
    assert keys == [field.name for field in dataclasses.fields(GroupConfig)]


def test_reference_lists_every_registered_strategy(sections):
    titles = {section.title.strip("`") for section in sections if section.is_strategy}
    registered = set(TRACKERS.names()) | set(TRANSPORTS.names()) | set(RESIDUALS.names())
    assert titles == registered


def test_reference_lists_strategy_options(sections):
    section = _section(sections, "`subtrack`")
    keys = [row.key.strip("`") for row in section.rows]
    assert keys == ["step_size", "max_angle", "power_iterations", "orthonormality_tolerance"]


def test_core_config_fields_all_described(sections):
    core = [name for section in sections for name in section.missing_docs if not name.startswith("lowrank.train.")]
    assert core == []


@pytest.mark.parametrize("config_class", [OptimizerConfig, GroupConfig])
def test_rendered_defaults_load_back_equal(config_class, sections):
    # Each Default cell, read as YAML by the real loader, must give the dataclass default back.
    section = _section(sections, config_class.__name__)
    hints = typing.get_type_hints(config_class)
    # A group needs match or regex; with both set, either one may take its default of null.
    required = {"match": ["*"], "regex": [".*"]} if config_class is GroupConfig else {}
    for row, config_field in zip(section.rows, dataclasses.fields(config_class)):
        text = row.default.strip("`")
        if "](" in text:  # a link to a nested section
            continue
        value = yaml.safe_load(text)
        built = from_dict(config_class, {**required, config_field.name: value})
        if config_field.default is not dataclasses.MISSING:
            expected = config_field.default
        else:
            expected = config_field.default_factory()
        assert getattr(built, config_field.name) == expected, (
            f"{config_field.name}: {row.default} read back as {value!r} ({hints[config_field.name]})"
        )


def test_float_defaults_written_as_yaml_floats():
    assert config_reference._yaml_float(1e-8) == "1.0e-8"
    assert config_reference._yaml_float(0.25) == "0.25"
    assert isinstance(yaml.safe_load(config_reference._yaml_float(1e-8)), float)


def test_field_docstrings_include_inherited_fields():
    @dataclasses.dataclass
    class Base:
        alpha: int = 1
        """First."""

    @dataclasses.dataclass
    class Child(Base):
        beta: int = 2
        """Second."""

        gamma: int = 3

    docs = config_reference.field_docstrings(Child)
    assert docs == {"alpha": "First.", "beta": "Second."}


@pytest.mark.parametrize(
    "description, unit",
    [
        ("Optimizer updates between basis refreshes (GaLore's update_proj_gap).", "optimizer updates"),
        ("Sequences per optimizer update.", "sequences"),
        ("Largest rotation per refresh, in radians; steps beyond pi/2 overshoot.", "radians"),
        ("Learning rate (the peak value when a schedule is used).", ""),
        ("Seed of random trackers. Refreshes happen every few optimizer updates.", ""),
    ],
)
def test_unit_read_from_first_sentence(description, unit):
    assert config_reference.unit_of(description) == unit


def test_shipped_configs_table_has_every_file():
    config_dir = Path(lowrank.__file__).resolve().parent.parent / "configs" / "optim"
    table = config_reference.render_shipped_configs(config_dir)
    for path in config_dir.glob("*.yaml"):
        assert f"`{path.name}`" in table


def test_literal_block_becomes_fenced_code():
    griffe_markup = pytest.importorskip("griffe_markup", reason="needs griffe from the docs extra")
    text = "Example::\n\n    x = 1\n    y = x + 1\n\nAfter."
    assert griffe_markup.convert_literal_blocks(text) == "Example:\n\n```python\nx = 1\ny = x + 1\n```\n\nAfter."


def test_literal_block_language_guess():
    griffe_markup = pytest.importorskip("griffe_markup", reason="needs griffe from the docs extra")
    assert griffe_markup._language(["lr: 1.0e-3", "groups:", "  - rank: 4"]) == "yaml"
    assert griffe_markup._language(["import lowrank"]) == "python"
    assert griffe_markup._language(["W ← W − lr·U"]) == "text"


def test_paragraph_without_block_is_unchanged():
    griffe_markup = pytest.importorskip("griffe_markup", reason="needs griffe from the docs extra")
    text = "A ratio written a::b stays.\nNext line."
    assert griffe_markup.convert_literal_blocks(text) == text
