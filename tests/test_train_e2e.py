"""train.py end to end on a tiny model and corpus: runs, resume, crashes, bad input, non-finite losses."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest
import torch

from lowrank.train import checkpoint as checkpoint_module
from lowrank.train.checkpoint import list_checkpoints, load_checkpoint
from lowrank.train.metrics import read_metrics
from train_support import (
    ROOT,
    load_train_script,
    lowrank_optimizer,
    make_tokenizer,
    run_config,
    write_corpus,
    write_yaml,
)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    folder = write_corpus(tmp_path_factory.mktemp("corpus"))
    return folder, make_tokenizer(folder, folder / "tokenizer.json")


@pytest.fixture(scope="module")
def train_script():
    return load_train_script()


@pytest.fixture
def make_run(corpus, tmp_path):
    """Write a run YAML for the tiny setup with ``changes`` applied; return its path and run folder."""

    def make(name="tiny", optimizer=None, **changes):
        config = run_config(corpus[0], corpus[1], tmp_path, optimizer=optimizer, name=name, **changes)
        path = write_yaml(tmp_path / f"{name}.yaml", config)
        return path, tmp_path / "runs" / name

    return make


def records(run_dir, kind):
    return [record for record in read_metrics(run_dir / "metrics.jsonl") if record["kind"] == kind]


def final_model(run_dir):
    return load_checkpoint(list_checkpoints(run_dir / "checkpoints")[-1][1])["model"]


OPTIMIZERS = {
    "adamw": None,
    "galore": lowrank_optimizer("galore"),
    "subtrack_pp": lowrank_optimizer("subtrack_pp"),
}


@pytest.mark.slow
@pytest.mark.parametrize("composition", list(OPTIMIZERS))
def test_tiny_run_completes(train_script, make_run, composition):
    path, run_dir = make_run(optimizer=OPTIMIZERS[composition])

    status = train_script.main([str(path)])

    assert status == 0
    train = records(run_dir, "train")
    evals = records(run_dir, "eval")
    assert [record["step"] for record in train] == [1, 2, 3, 4, 5, 6]
    assert [record["step"] for record in evals] == [0, 3, 6]
    assert all(record["batches"] == 2 for record in evals)
    assert evals[-1]["loss"] < evals[0]["loss"]
    for key in ("tokens", "loss", "lr", "tokens_per_s", "elapsed_s", "optimizer_step_s", "peak_memory_bytes",
                "optimizer_state_bytes"):
        assert key in train[-1], key
    assert train[-1]["tokens"] == 6 * 4 * 32
    assert (run_dir / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (run_dir / "config.yaml").is_file()
    assert [step for step, _ in list_checkpoints(run_dir / "checkpoints")] == [3, 6]


@pytest.mark.slow
def test_checkpoint_holds_tracker_state_and_config(train_script, make_run):
    path, run_dir = make_run(optimizer=lowrank_optimizer("subtrack_pp"))
    assert train_script.main([str(path)]) == 0

    checkpoint = load_checkpoint(list_checkpoints(run_dir / "checkpoints")[-1][1])

    states = checkpoint["optimizer"]["state"].values()
    assert any("basis" in state for state in states)
    assert checkpoint["config"]["optimizer"]["groups"][0]["rank"] == 8
    assert checkpoint["data"]["position"] == 6 * 2
    assert set(checkpoint) >= {"model", "optimizer", "scheduler", "data", "rng", "config", "progress"}


@pytest.mark.slow
def test_interrupt_then_resume_matches_uninterrupted(train_script, make_run, monkeypatch):
    sections = dict(train={"max_steps": 8}, checkpoint={"interval": 0, "keep_last": 2}, eval={"interval": 4, "batches": 2})
    reference_path, reference_dir = make_run("reference", optimizer=lowrank_optimizer("subtrack_pp"), **sections)
    assert train_script.main([str(reference_path)]) == 0

    path, run_dir = make_run("interrupted", optimizer=lowrank_optimizer("subtrack_pp"), **sections)
    real_loss = train_script.compute_loss
    calls = {"count": 0}

    def interrupt_during_step_4(model, batch):
        calls["count"] += 1
        if calls["count"] == 7:  # first micro-batch of update 4 (2 micro-batches per update)
            os.kill(os.getpid(), signal.SIGINT)
        return real_loss(model, batch)

    monkeypatch.setattr(train_script, "compute_loss", interrupt_during_step_4)
    assert train_script.main([str(path)]) == train_script.EXIT_INTERRUPTED
    monkeypatch.undo()
    assert [step for step, _ in list_checkpoints(run_dir / "checkpoints")] == [4]

    assert train_script.main([str(path), "--resume"]) == 0

    expected, resumed = final_model(reference_dir), final_model(run_dir)
    assert expected.keys() == resumed.keys()
    for name in expected:
        assert torch.equal(expected[name], resumed[name]), name
    assert [(r["step"], r["loss"]) for r in records(run_dir, "train")] == [
        (r["step"], r["loss"]) for r in records(reference_dir, "train")
    ]
    assert [r["loss"] for r in records(run_dir, "eval")] == [r["loss"] for r in records(reference_dir, "eval")]


@pytest.mark.slow
def test_checkpoint_write_crash_resumes_previous(train_script, make_run, monkeypatch):
    sections = dict(checkpoint={"interval": 2, "keep_last": 3})
    reference_path, reference_dir = make_run("reference", **sections)
    assert train_script.main([str(reference_path)]) == 0

    path, run_dir = make_run("crashed", **sections)
    real_save = torch.save
    saves = {"count": 0}

    def crash_on_second_save(obj, file):
        saves["count"] += 1
        real_save(obj, file)
        if saves["count"] == 2:
            with open(file, "r+b") as handle:
                handle.truncate(64)
            raise OSError("simulated kill during checkpoint write")

    monkeypatch.setattr(checkpoint_module.torch, "save", crash_on_second_save)
    with pytest.raises(OSError, match="simulated kill"):
        train_script.main([str(path)])
    monkeypatch.undo()

    assert [step for step, _ in list_checkpoints(run_dir / "checkpoints")] == [2]
    assert train_script.main([str(path), "--resume"]) == 0
    expected, resumed = final_model(reference_dir), final_model(run_dir)
    assert all(torch.equal(expected[name], resumed[name]) for name in expected)
    assert [r["step"] for r in records(run_dir, "train")] == [1, 2, 3, 4, 5, 6]


@pytest.mark.slow
def test_nonfinite_losses_skip_updates_then_stop(train_script, make_run, monkeypatch, capsys):
    path, run_dir = make_run(train={"max_nonfinite_in_a_row": 3})
    real_loss = train_script.compute_loss
    monkeypatch.setattr(train_script, "compute_loss", lambda model, batch: real_loss(model, batch) * float("nan"))

    status = train_script.main([str(path)])

    assert status == train_script.EXIT_FAILED
    assert "3 updates in a row had a non-finite loss" in capsys.readouterr().out
    assert [record["step"] for record in records(run_dir, "nonfinite")] == [0, 0, 0]
    assert records(run_dir, "train") == []


@pytest.mark.slow
def test_single_nonfinite_loss_is_skipped(train_script, make_run, monkeypatch):
    path, run_dir = make_run()
    real_loss = train_script.compute_loss
    calls = {"count": 0}

    def nan_once(model, batch):
        calls["count"] += 1
        loss = real_loss(model, batch)
        return loss * float("nan") if calls["count"] == 5 else loss

    monkeypatch.setattr(train_script, "compute_loss", nan_once)

    assert train_script.main([str(path)]) == 0
    assert [record["step"] for record in records(run_dir, "nonfinite")] == [2]
    assert [record["step"] for record in records(run_dir, "train")] == [1, 2, 3, 4, 5, 6]
    assert load_checkpoint(list_checkpoints(run_dir / "checkpoints")[-1][1])["data"]["position"] == 7 * 2


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"train": {"max_step": 3}}, "unknown key 'train.max_step' (did you mean 'max_steps'?)"),
        ({"data": {"train_files": ["/nonexistent/corpus/*.txt"]}}, "data.train_files: no file matches '/nonexistent"),
        ({"optimizer": lowrank_optimizer("galore", rank=64)}, "optimizer.groups[0].rank: rank 64 is not below"),
        ({"data": {"tokenizer": "/nonexistent/tokenizer.json"}}, "run 'bash setup.sh'"),
        ({"data": {"seq_len": 128}}, "data.seq_len 128 exceeds model.max_position_embeddings 64"),
    ],
    ids=["unknown-key", "missing-data-file", "rank-too-large", "missing-tokenizer", "seq-len-too-long"],
)
def test_bad_run_config_fails_before_training(train_script, make_run, capsys, changes, message):
    optimizer = changes.pop("optimizer", None)
    path, run_dir = make_run(optimizer=optimizer, **changes)

    status = train_script.main([str(path)])

    output = capsys.readouterr()
    assert status == train_script.EXIT_CONFIG
    assert message in output.out
    assert "Traceback" not in output.out + output.err
    assert not (run_dir / "metrics.jsonl").exists()


def test_existing_run_needs_resume_or_overwrite(train_script, make_run, capsys):
    path, run_dir = make_run(train={"max_steps": 2}, eval={"batches": 0})
    assert train_script.main([str(path)]) == 0

    assert train_script.main([str(path)]) == train_script.EXIT_CONFIG
    assert "already has checkpoints" in capsys.readouterr().out
    assert train_script.main([str(path), "--overwrite"]) == 0
    assert [record["step"] for record in records(run_dir, "train")] == [1, 2]


def test_resume_with_overwrite_is_config_error(train_script, make_run, capsys):
    path, _ = make_run()

    assert train_script.main([str(path), "--resume", "--overwrite"]) == train_script.EXIT_CONFIG
    assert "exclude each other" in capsys.readouterr().out


def test_resume_without_checkpoint_is_config_error(train_script, make_run, capsys):
    path, _ = make_run()

    assert train_script.main([str(path), "--resume"]) == train_script.EXIT_CONFIG
    assert "no checkpoint in" in capsys.readouterr().out


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without CUDA")
def test_cuda_request_without_cuda_is_config_error(train_script, make_run, capsys):
    path, _ = make_run()

    assert train_script.main([str(path), "--device", "cuda"]) == train_script.EXIT_CONFIG
    assert "CUDA is not available" in capsys.readouterr().out


@pytest.mark.parametrize(
    "train_changes,message",
    [
        ({"zero_redundancy": True}, "train.zero_redundancy needs several processes"),
        ({"layerwise": True}, "layerwise: true cannot apply grad_clip 1.0"),
        ({"layerwise": True, "grad_clip": 0.0, "zero_redundancy": True}, "cannot be combined"),
        ({"batch_size": 6, "micro_batch_size": 4}, "not a multiple of micro_batch_size 4"),
    ],
)
def test_bad_parallelism_options_are_rejected(train_script, make_run, capsys, train_changes, message):
    path, _ = make_run(train=train_changes)

    assert train_script.main([str(path)]) == train_script.EXIT_CONFIG
    assert message in capsys.readouterr().out


@pytest.mark.slow
def test_cli_config_error_prints_no_traceback(make_run):
    path, _ = make_run(train={"max_step": 3})
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}

    result = subprocess.run(
        [sys.executable, str(ROOT / "train.py"), str(path)], capture_output=True, text=True, env=env, timeout=300
    )

    assert result.returncode == 2
    assert "unknown key 'train.max_step'" in result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr
