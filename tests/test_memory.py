"""Memory estimator: analytic counts against measured bytes on a small LLaMA, and its input checks."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from lowrank.build import build_optimizer, load_optimizer_config
from lowrank.config import ConfigError
from lowrank.layerwise import LayerwiseUpdate
from lowrank.memory import (
    build_meta_model,
    estimate_memory,
    load_model_config,
    main,
    optimizer_state_bytes,
)
from lowrank.train.model import build_model

CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "optim"
RANK = 8

TINY_MODEL = """\
hidden_size: 64
intermediate_size: 176
num_hidden_layers: 2
num_attention_heads: 4
vocab_size: 96
max_position_embeddings: 32
"""


@pytest.fixture
def model_yaml(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.yaml"
    path.write_text(TINY_MODEL)
    return path


def _optimizer_config(name: str):
    config = load_optimizer_config(CONFIGS / f"{name}.yaml")
    for group in config.groups:
        group.rank = RANK
    return config


def _model_with_gradients(model_yaml: Path) -> torch.nn.Module:
    torch.manual_seed(0)
    config = load_model_config(model_yaml)
    model = build_model(config, config.vocab_size)
    tokens = torch.randint(0, config.vocab_size, (2, 16), generator=torch.Generator().manual_seed(1))
    model(input_ids=tokens, labels=tokens).loss.backward()
    return model


@pytest.mark.parametrize("name", sorted(path.stem for path in CONFIGS.glob("*.yaml")))
def test_state_estimate_matches_measured_bytes(name, model_yaml):
    model = _model_with_gradients(model_yaml)
    config = _optimizer_config(name)
    optimizer = build_optimizer(model, config)
    optimizer.step()

    measured = optimizer_state_bytes(optimizer)
    estimated = estimate_memory(model.named_parameters(remove_duplicate=False), config).optimizer_states

    assert measured > 0
    assert abs(estimated - measured) <= 0.01 * measured


def test_lowrank_state_is_basis_plus_two_moments(model_yaml):
    model = _model_with_gradients(model_yaml)
    estimate = estimate_memory(model.named_parameters(), _optimizer_config("galore"))

    gate = next(p for p in estimate.parameters if p.name.endswith("layers.0.mlp.gate_proj.weight"))
    d, k = min(gate.shape), max(gate.shape)
    assert gate.shape == (176, 64)
    assert gate.state_bytes == 4 * (d * RANK + 2 * k * RANK)
    embedding = next(p for p in estimate.parameters if p.name.endswith("embed_tokens.weight"))
    assert embedding.rank is None
    assert embedding.state_bytes == 2 * embedding.weight_bytes + 4


def test_meta_estimate_matches_real_model(model_yaml):
    config = load_model_config(model_yaml)
    meta_model = build_meta_model(config)
    real_model = _model_with_gradients(model_yaml)
    optimizer_config = _optimizer_config("subtrack_pp")

    estimate = estimate_memory(meta_model.named_parameters(remove_duplicate=False), optimizer_config)

    assert all(param.device.type == "meta" for param in meta_model.parameters())
    assert estimate.weights == sum(p.numel() * p.element_size() for p in real_model.parameters())
    assert estimate.gradients == sum(p.grad.numel() * p.grad.element_size() for p in real_model.parameters())


def test_bfloat16_estimate_halves_weights_not_lowrank_state(model_yaml):
    model = build_meta_model(load_model_config(model_yaml))
    config = _optimizer_config("galore")

    full = estimate_memory(model.named_parameters(), config, torch.float32)
    half = estimate_memory(model.named_parameters(), config, torch.bfloat16)

    assert half.weights * 2 == full.weights
    lowrank_full = sum(p.state_bytes for p in full.parameters if p.rank is not None)
    lowrank_half = sum(p.state_bytes for p in half.parameters if p.rank is not None)
    assert lowrank_half == lowrank_full  # basis and moments stay float32


def test_layerwise_peak_matches_measured(model_yaml):
    model = _model_with_gradients(model_yaml)
    config = _optimizer_config("subtrack_pp")
    optimizer = build_optimizer(model, config)
    optimizer.step()
    model.zero_grad(set_to_none=True)
    params = [p for group in optimizer.param_groups for p in group["params"]]
    peak = 0

    def record(_: torch.Tensor) -> None:
        nonlocal peak
        peak = max(peak, sum(p.grad.numel() * p.grad.element_size() for p in params if p.grad is not None))

    for param in params:
        param.register_post_accumulate_grad_hook(record)  # runs before the layer-wise hook frees it
    layerwise = LayerwiseUpdate(optimizer)
    layerwise.begin_microbatch(last=True)
    tokens = torch.randint(0, 96, (2, 16), generator=torch.Generator().manual_seed(2))
    model(input_ids=tokens, labels=tokens).loss.backward()
    layerwise.finish_update()

    estimate = estimate_memory(model.named_parameters(), config)
    assert peak == estimate.gradients_layerwise
    assert estimate.gradients_layerwise < estimate.gradients


def test_tied_embeddings_count_once(tmp_path):
    path = tmp_path / "tied.yaml"
    path.write_text(TINY_MODEL + "tie_word_embeddings: true\n")
    model = build_meta_model(load_model_config(path))

    estimate = estimate_memory(model.named_parameters(remove_duplicate=False), _optimizer_config("galore"))

    tied = [p for p in estimate.parameters if p.tied]
    assert len(tied) == 1
    assert estimate.weights == sum(p.numel() * 4 for p in model.parameters())  # parameters() dedups
    untied_max = max(p.grad_bytes for p in estimate.parameters if not p.tied)
    assert estimate.gradients_layerwise == tied[0].grad_bytes + untied_max


def test_cli_prints_breakdown(model_yaml, capsys):
    status = main([str(model_yaml), str(CONFIGS / "adamw.yaml"), "--dtype", "bfloat16"])

    output = capsys.readouterr().out
    assert status == 0
    assert "optimizer states" in output
    assert "per-layer mode" in output


def test_cli_missing_file_is_an_error(tmp_path, capsys):
    status = main([str(tmp_path / "missing.yaml"), str(CONFIGS / "galore.yaml")])

    assert status == 2
    assert "config file not found" in capsys.readouterr().err


def test_cli_unknown_key_names_it(tmp_path, capsys):
    path = tmp_path / "typo.yaml"
    path.write_text(TINY_MODEL + "hiden_size: 32\n")

    status = main([str(path), str(CONFIGS / "galore.yaml")])

    assert status == 2
    assert "hiden_size" in capsys.readouterr().err


def test_missing_vocab_size_asks_for_it(tmp_path):
    path = tmp_path / "novocab.yaml"
    path.write_text(TINY_MODEL.replace("vocab_size: 96\n", ""))

    with pytest.raises(ConfigError, match="--vocab-size"):
        load_model_config(path)
    assert load_model_config(path, vocab_size=50).vocab_size == 50


def test_rank_too_large_is_an_error(model_yaml):
    model = build_meta_model(load_model_config(model_yaml))
    config = load_optimizer_config(CONFIGS / "galore.yaml")  # rank 128 > hidden size 64

    with pytest.raises(ConfigError, match="rank"):
        estimate_memory(model.named_parameters(), config)
