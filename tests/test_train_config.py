"""Run YAML loading: includes, dotted overrides, --set, strict validation, shipped configs, LR schedule."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from lowrank.config import ConfigError, from_dict, load_yaml
from lowrank.train.config import ModelConfig, RunConfig, load_run_config, parse_overrides
from lowrank.train.schedule import build_scheduler, lr_factor
from lowrank.train.config import ScheduleConfig
from train_support import ROOT, write_yaml


def test_include_merges_and_including_file_wins(tmp_path):
    write_yaml(tmp_path / "base.yaml", {"name": "base", "train": {"max_steps": 10, "batch_size": 8}, "seed": 3})
    write_yaml(tmp_path / "run.yaml", {"include": "base.yaml", "name": "child", "train": {"max_steps": 20}})

    run = load_run_config(tmp_path / "run.yaml")

    assert run.name == "child"
    assert run.train.max_steps == 20
    assert run.train.batch_size == 8
    assert run.seed == 3


def test_nested_include_is_relative_to_including_file(tmp_path):
    (tmp_path / "optim").mkdir()
    write_yaml(tmp_path / "optim" / "opt.yaml", {"lr": 0.5, "groups": [{"match": "*.q_proj.weight", "rank": 4}]})
    write_yaml(tmp_path / "run.yaml", {"optimizer": {"include": "optim/opt.yaml", "weight_decay": 0.1}})

    run = load_run_config(tmp_path / "run.yaml")

    assert run.optimizer.lr == 0.5
    assert run.optimizer.weight_decay == 0.1
    assert run.optimizer.groups[0].rank == 4


def test_dotted_key_overrides_list_item(tmp_path):
    write_yaml(
        tmp_path / "run.yaml",
        {
            "optimizer": {
                "include": str(ROOT / "configs/optim/subtrack_pp.yaml"),
                "groups[0].rank": 16,
                "groups[0].tracker.step_size": 2.0,
            }
        },
    )

    run = load_run_config(tmp_path / "run.yaml")

    group = run.optimizer.groups[0]
    assert group.rank == 16
    assert group.tracker.options["step_size"] == 2.0
    assert group.transport.name == "projection_aware"


def test_set_overrides_parse_yaml_values(tmp_path):
    write_yaml(tmp_path / "run.yaml", {"name": "x"})

    run = load_run_config(
        tmp_path / "run.yaml",
        ["train.max_steps=12", "optimizer.lr=3e-4", "model.num_key_value_heads=null", "data.train_files=[a.txt]"],
    )

    assert run.train.max_steps == 12
    assert run.optimizer.lr == pytest.approx(3e-4)
    assert run.model.num_key_value_heads is None
    assert run.data.train_files == ["a.txt"]


@pytest.mark.parametrize(
    "override, expected",
    [
        ("train.max_step=3", "unknown key 'train.max_step' (did you mean 'max_steps'?)"),
        ("optimizer.groups[0].tracker.rnak=3", "unknown key 'optimizer.groups[0].tracker.rnak'"),
        ("optimizer.groups[2].rank=3", "optimizer.groups has 1 items, no index 2"),
        ("model.hidden_size=abc", "model.hidden_size: expected an integer"),
        ("schedule.kind=linear", "schedule.kind: invalid value 'linear'"),
        ("train.batch_size=6", "batch_size 6 is not a multiple of micro_batch_size 4"),
    ],
)
def test_bad_value_names_dotted_path(tmp_path, override, expected):
    write_yaml(
        tmp_path / "run.yaml",
        {
            "optimizer": {"include": str(ROOT / "configs/optim/subtrack_pp.yaml")},
            "train": {"batch_size": 8, "micro_batch_size": 4},
        },
    )

    with pytest.raises(ConfigError) as error:
        load_run_config(tmp_path / "run.yaml", [override])

    assert expected in str(error.value)


def test_malformed_set_is_rejected():
    with pytest.raises(ConfigError, match="expected key=value"):
        parse_overrides(["train.max_steps"])


def test_include_cycle_is_rejected(tmp_path):
    write_yaml(tmp_path / "a.yaml", {"include": "b.yaml"})
    write_yaml(tmp_path / "b.yaml", {"include": "a.yaml"})

    with pytest.raises(ConfigError, match="include cycle"):
        load_run_config(tmp_path / "a.yaml")


def test_missing_include_names_file(tmp_path):
    write_yaml(tmp_path / "run.yaml", {"model": {"include": "model/nope.yaml"}})

    with pytest.raises(ConfigError, match="included file not found: .*model/nope.yaml"):
        load_run_config(tmp_path / "run.yaml")


@pytest.mark.parametrize("path", sorted((ROOT / "configs").glob("*.yaml")), ids=lambda path: path.name)
def test_shipped_run_configs_validate(path):
    run = load_run_config(path)

    assert isinstance(run, RunConfig)
    assert run.data.seq_len <= run.model.max_position_embeddings


@pytest.mark.parametrize("path", sorted((ROOT / "configs/model").glob("*.yaml")), ids=lambda path: path.name)
def test_shipped_model_configs_validate(path):
    model = from_dict(ModelConfig, load_yaml(path), "model")

    assert model.hidden_size % model.num_attention_heads == 0


def test_resolved_config_round_trips(tmp_path):
    run = load_run_config(ROOT / "configs/quickstart.yaml")

    again = from_dict(RunConfig, run.to_dict())

    assert again == run


def test_warmup_then_cosine_to_floor():
    config = ScheduleConfig(kind="cosine", warmup_steps=10, min_lr_ratio=0.1)

    assert lr_factor(0, 100, config) == pytest.approx(0.1)
    assert lr_factor(9, 100, config) == pytest.approx(1.0)
    assert lr_factor(10, 100, config) == pytest.approx(1.0)
    assert lr_factor(55, 100, config) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.5)))
    assert lr_factor(100, 100, config) == pytest.approx(0.1)
    assert lr_factor(150, 100, config) == pytest.approx(0.1)


def test_constant_schedule_after_warmup():
    config = ScheduleConfig(kind="constant", warmup_steps=4)

    assert [lr_factor(step, 50, config) for step in range(6)] == pytest.approx([0.25, 0.5, 0.75, 1.0, 1.0, 1.0])


def test_scheduler_scales_each_group_lr():
    weights = [torch.nn.Parameter(torch.zeros(2)), torch.nn.Parameter(torch.zeros(2))]
    optimizer = torch.optim.AdamW([{"params": [weights[0]], "lr": 1.0}, {"params": [weights[1]], "lr": 0.01}])
    scheduler = build_scheduler(optimizer, 10, ScheduleConfig(warmup_steps=2))

    first = [group["lr"] for group in optimizer.param_groups]
    optimizer.step()
    scheduler.step()
    second = [group["lr"] for group in optimizer.param_groups]

    assert first == pytest.approx([0.5, 0.005])
    assert second == pytest.approx([1.0, 0.01])


def test_quickstart_uses_subtrack_pp():
    run = load_run_config(Path(ROOT / "configs/quickstart.yaml"))

    group = run.optimizer.groups[0]
    assert (group.tracker.name, group.transport.name, group.residual.name) == (
        "subtrack",
        "projection_aware",
        "recovery_scaling",
    )
    assert group.rank < run.model.hidden_size
