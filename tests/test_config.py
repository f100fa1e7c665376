"""YAML assembly: strict validation with dotted paths, and parameter selection rules."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch
import yaml

import lowrank
from lowrank import ConfigError

CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "optim"


class TinyLlama(torch.nn.Module):
    """Parameter names shaped like transformers' LlamaForCausalLM, with tied embeddings."""

    def __init__(self, hidden: int = 32, intermediate: int = 48, layers: int = 2, vocab: int = 64):
        super().__init__()
        self.embed_tokens = torch.nn.Embedding(vocab, hidden)
        self.layers = torch.nn.ModuleList()
        for _ in range(layers):
            layer = torch.nn.Module()
            layer.self_attn = torch.nn.Module()
            for name in ("q_proj", "k_proj", "v_proj", "o_proj"):
                setattr(layer.self_attn, name, torch.nn.Linear(hidden, hidden, bias=False))
            layer.mlp = torch.nn.Module()
            layer.mlp.gate_proj = torch.nn.Linear(hidden, intermediate, bias=False)
            layer.mlp.up_proj = torch.nn.Linear(hidden, intermediate, bias=False)
            layer.mlp.down_proj = torch.nn.Linear(intermediate, hidden, bias=False)
            layer.input_layernorm = torch.nn.LayerNorm(hidden)
            self.layers.append(layer)
        self.lm_head = torch.nn.Linear(hidden, vocab, bias=False)
        self.lm_head.weight = self.embed_tokens.weight


def _model() -> torch.nn.Module:
    model = torch.nn.Module()
    model.model = TinyLlama()
    return model


def _names(optimizer, label: str) -> list[str]:
    return [optimizer.param_name(p) for group in optimizer.param_groups if group["label"] == label for p in group["params"]]


def _all_names(optimizer) -> list[str]:
    return [optimizer.param_name(p) for group in optimizer.param_groups for p in group["params"]]


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("*.yaml")), ids=lambda p: p.stem)
def test_shipped_config_builds(path):
    data = yaml.safe_load(path.read_text())
    for group in data.get("groups", []):
        group["rank"] = 8  # the tiny model's matrices are 32 wide
    optimizer = lowrank.build_optimizer(_model(), data)

    assert isinstance(optimizer, lowrank.LowRankAdamW)


def test_config_from_path_string_and_dict_agree():
    text = (CONFIGS / "subtrack_pp.yaml").read_text()
    from_path = lowrank.load_optimizer_config(str(CONFIGS / "subtrack_pp.yaml"))
    from_text = lowrank.load_optimizer_config(text)
    from_dict = lowrank.load_optimizer_config(yaml.safe_load(text))

    assert from_path == from_text == from_dict
    assert from_path.groups[0].tracker.name == "subtrack"
    assert from_path.groups[0].residual.options == {"growth_limit": 1.01}


def test_selection_first_match_wins_and_rest_is_dense():
    config = {
        "groups": [
            {"name": "attention", "match": "*.self_attn.*.weight", "rank": 8},
            {"name": "everything_2d", "regex": r".*layers\.\d+\..*_proj\.weight", "rank": 4},
        ]
    }
    optimizer = lowrank.build_optimizer(_model(), config)

    attention = _names(optimizer, "attention")
    mlp = _names(optimizer, "everything_2d")
    dense = _names(optimizer, "unmatched (dense)")
    assert len(attention) == 8 and all("self_attn" in name for name in attention)
    assert len(mlp) == 6 and all(".mlp." in name for name in mlp)
    assert "model.embed_tokens.weight" in dense
    total = sum(len(group["params"]) for group in optimizer.param_groups)
    assert total == len(list(_model().parameters()))


def test_tied_weights_assigned_once():
    optimizer = lowrank.build_optimizer(_model(), {"groups": [{"match": "*embed*", "lr": 0.1}]})
    all_names = _all_names(optimizer)

    assert "model.embed_tokens.weight" in all_names
    assert "model.lm_head.weight" not in all_names
    assert len(all_names) == len(set(all_names))


def test_frozen_parameters_are_left_out():
    model = _model()
    model.model.embed_tokens.weight.requires_grad_(False)
    optimizer = lowrank.build_optimizer(model, {})
    names = _all_names(optimizer)

    assert "model.embed_tokens.weight" not in names


def test_fallback_dense_moves_vectors_to_dense_group():
    config = {"groups": [{"name": "layers", "match": "*.layers.*", "rank": 8, "fallback_dense": True}]}
    optimizer = lowrank.build_optimizer(_model(), config)

    fallback = _names(optimizer, "layers (dense fallback)")
    assert fallback and all("layernorm" in name for name in fallback)


def test_group_overrides_hyperparameters():
    config = {"lr": 1e-3, "groups": [{"match": "*.mlp.*", "rank": 8, "lr": 5e-3, "weight_decay": 0.1}]}
    optimizer = lowrank.build_optimizer(_model(), config)

    assert optimizer.param_groups[0]["lr"] == 5e-3
    assert optimizer.param_groups[0]["weight_decay"] == 0.1
    assert optimizer.param_groups[1]["lr"] == 1e-3


def test_one_log_line_per_group(caplog):
    config = {"groups": [{"name": "mlp", "match": "*.mlp.*", "rank": 8, "tracker": "subtrack"}]}
    with caplog.at_level(logging.INFO, logger="lowrank"):
        lowrank.build_optimizer(_model(), config)

    lines = [record.getMessage() for record in caplog.records if record.name == "lowrank.build"]
    assert len(lines) == 2
    assert lines[0].startswith("group mlp: 6 parameters")
    assert "tracker=subtrack" in lines[0]
    assert lines[1].startswith("group unmatched (dense):")


def test_scientific_notation_strings_are_numbers():
    config = lowrank.load_optimizer_config("lr: 1e-3\neps: 1e-8\n")

    assert config.lr == 1e-3
    assert config.eps == 1e-8


BAD_CONFIGS = [
    ({"lrr": 1e-3}, "unknown key 'optimizer.lrr' (did you mean 'lr'?); valid keys: betas, eps, foreach, fused, groups, lr"),
    ({"lr": "fast"}, "optimizer.lr: expected a number, got 'fast'"),
    ({"lr": -1}, "optimizer: lr must be >= 0, got -1.0"),
    ({"betas": [0.9]}, "optimizer.betas: expected 2 items, got 1"),
    ({"groups": {"match": "*"}}, "optimizer.groups: expected a list"),
    ({"groups": [{"rank": 8}]}, "optimizer.groups[0]: a group needs 'match'"),
    ({"groups": [{"match": "*.mlp.*", "rnak": 8}]}, "unknown key 'optimizer.groups[0].rnak' (did you mean 'rank'?)"),
    ({"groups": [{"match": "*.mlp.*", "rank": "8"}]}, "optimizer.groups[0].rank: expected an integer, got '8'"),
    ({"groups": [{"match": "*.mlp.*", "rank": 0}]}, "optimizer.groups[0]: rank must be at least 1"),
    ({"groups": [{"match": "*.mlp.*", "rank": 8, "stagger": "yes"}]}, "optimizer.groups[0].stagger: expected true or false"),
    (
        {"groups": [{"match": "*", "rank": 8}, {"match": "*.mlp.*", "rank": 8, "tracker": {"name": "subtrack", "rnak": 1}}]},
        "unknown key 'optimizer.groups[1].tracker.rnak'; valid keys: ",
    ),
    (
        {"groups": [{"match": "*.mlp.*", "rank": 8, "tracker": "grassmann"}]},
        "optimizer.groups[0].tracker: unknown tracker 'grassmann'; registered trackers: random, subtrack, svd",
    ),
    (
        {"groups": [{"match": "*.mlp.*", "rank": 8, "transport": {"growth_limit": 1}}]},
        "missing required key 'optimizer.groups[0].transport.name' (one of: keep, projection_aware, reset)",
    ),
    (
        {"groups": [{"match": "*.mlp.*", "rank": 8, "residual": {"name": "recovery_scaling", "growth_limit": 0.5}}]},
        "optimizer.groups[0].residual: growth_limit must be at least 1.0, got 0.5",
    ),
    ({"groups": [{"match": "*.attention.*", "rank": 8}]}, "optimizer.groups[0] (groups[0]) matches no trainable parameter"),
    ({"groups": [{"regex": "[", "rank": 8}]}, "optimizer.groups[0].regex: invalid regular expression"),
    (
        {"groups": [{"match": "*.layers.*", "rank": 8}]},
        "matches parameter 'model.layers.0.input_layernorm.weight' of shape (32,), but only 2-D parameters can be low-rank",
    ),
    (
        {"groups": [{"match": "*.mlp.*", "rank": 32}]},
        "optimizer.groups[0].rank: rank 32 is not below min(48, 32) = 32 for parameter 'model.layers.0.mlp.gate_proj.weight'",
    ),
]


@pytest.mark.parametrize("config,message", BAD_CONFIGS, ids=[str(i) for i in range(len(BAD_CONFIGS))])
def test_bad_config_raises_config_error(config, message):
    with pytest.raises(ConfigError) as error:
        lowrank.build_optimizer(_model(), config, path="optimizer")
    assert message in str(error.value)


def test_missing_config_file_names_path():
    with pytest.raises(ConfigError, match="config file not found: 'nope/missing.yaml'"):
        lowrank.load_optimizer_config("nope/missing.yaml")


def test_invalid_yaml_is_reported():
    with pytest.raises(ConfigError, match="invalid YAML"):
        lowrank.load_optimizer_config("lr: [1\n  groups: x")


def test_to_dict_round_trips():
    config = lowrank.load_optimizer_config(CONFIGS / "subtrack_pp.yaml")
    again = lowrank.load_optimizer_config(lowrank.config.to_dict(config))

    assert again == config
