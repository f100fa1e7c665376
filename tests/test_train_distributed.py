"""train.py under torchrun with two CPU processes (gloo on loopback), and the layer-wise mode."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from lowrank.train.checkpoint import list_checkpoints, load_checkpoint
from lowrank.train.metrics import read_metrics
from train_support import ROOT, lowrank_optimizer, make_tokenizer, run_config, write_corpus, write_yaml

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def run_yaml(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ddp")
    corpus = write_corpus(folder / "corpus")
    tokenizer = make_tokenizer(corpus, folder / "tokenizer.json")
    config = run_config(corpus, tokenizer, folder, optimizer=lowrank_optimizer("subtrack_pp"))
    config["train"] = {"max_steps": 6, "batch_size": 8, "micro_batch_size": 2}
    config["checkpoint"] = {"interval": 3, "keep_last": 2}
    config["log"]["plot"] = False
    return write_yaml(folder / "run.yaml", config), folder / "runs"


def _train(run_yaml, *args: str, processes: int = 1) -> None:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    launcher = [sys.executable]
    if processes > 1:
        # --standalone runs the rendezvous on a free localhost port.
        launcher += ["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}"]
    command = [*launcher, str(ROOT / "train.py"), str(run_yaml), *args]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]


def _final(runs, name: str, step: int = 6) -> dict:
    checkpoints = dict(list_checkpoints(runs / name / "checkpoints"))
    return load_checkpoint(checkpoints[step])


def test_two_processes_match_one_and_zero_matches_ddp(run_yaml):
    path, runs = run_yaml
    _train(path, "--set", "name=single")
    _train(path, "--set", "name=ddp", processes=2)
    _train(path, "--set", "name=zero", "--set", "train.zero_redundancy=true", processes=2)

    single, ddp, zero = (_final(runs, name)["model"] for name in ("single", "ddp", "zero"))
    for key in single:
        # Two half-batch means averaged by all-reduce round differently from one full-batch mean.
        torch.testing.assert_close(ddp[key], single[key], rtol=1e-4, atol=1e-5, msg=key)
        assert torch.equal(zero[key], ddp[key]), key
    evals = [[r["loss"] for r in read_metrics(runs / n / "metrics.jsonl") if r["kind"] == "eval"] for n in ("single", "ddp")]
    assert evals[0] == pytest.approx(evals[1], rel=1e-4)


def test_zero_checkpoint_resumes_under_two_processes(run_yaml):
    path, runs = run_yaml
    _train(path, "--set", "name=zero_full", "--set", "train.zero_redundancy=true", processes=2)
    halfway = dict(list_checkpoints(runs / "zero_full" / "checkpoints"))[3]

    _train(
        path, "--set", "name=zero_resumed", "--set", "train.zero_redundancy=true", "--resume", str(halfway),
        processes=2,
    )

    expected, resumed = _final(runs, "zero_full"), _final(runs, "zero_resumed")
    for key in expected["model"]:
        assert torch.equal(resumed["model"][key], expected["model"][key]), key
    # The consolidated optimizer state holds every low-rank matrix's basis.
    bases = [state for state in resumed["optimizer"]["state"].values() if "basis" in state]
    assert len(bases) == 2 * 7  # two layers of q, k, v, o, gate, up, down


def test_layerwise_matches_normal_training(run_yaml):
    path, runs = run_yaml
    _train(path, "--set", "name=normal_noclip", "--set", "train.grad_clip=0")
    _train(path, "--set", "name=layerwise", "--set", "train.grad_clip=0", "--set", "train.layerwise=true")

    normal, layerwise = _final(runs, "normal_noclip"), _final(runs, "layerwise")
    for key in normal["model"]:
        assert torch.equal(layerwise["model"][key], normal["model"][key]), key
    steps = [state["step"] for state in layerwise["optimizer"]["state"].values() if "basis" in state]
    assert steps and all(step == 6 for step in steps)  # once per update, with 4 micro-batches each
