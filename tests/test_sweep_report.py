"""Sweeps and the comparison report: a two-variant sweep runs, is skipped on re-run, and reports."""

from __future__ import annotations

import json

import pytest
import yaml

from lowrank import ConfigError
from lowrank.report import load_run, main as report_main
from lowrank.train.sweep import expand_sweep, load_sweep
from train_support import load_train_script, lowrank_optimizer, make_tokenizer, run_config, write_corpus, write_yaml


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    folder = tmp_path_factory.mktemp("sweep")
    corpus = write_corpus(folder / "corpus")
    tokenizer = make_tokenizer(corpus, folder / "tokenizer.json")
    base = run_config(corpus, tokenizer, folder, optimizer=lowrank_optimizer("subtrack_pp"))
    base["train"]["max_steps"] = 4
    base["checkpoint"]["interval"] = 0
    base["log"]["plot"] = False
    write_yaml(folder / "base.yaml", base)
    sweep = {
        "base": "base.yaml",
        "output_dir": str(folder / "out"),
        "set": {"eval.interval": 2},
        "axes": [
            {
                "name": "composition",
                "values": {
                    "galore": {"optimizer.groups[0].tracker": "svd", "optimizer.groups[0].residual": "drop"},
                    "subtrack_pp": {},
                },
            },
        ],
    }
    write_yaml(folder / "sweep.yaml", sweep)
    return folder


def test_sweep_expands_and_validates(setup):
    sweep, base_dir = load_sweep(setup / "sweep.yaml")
    variants = expand_sweep(sweep, base_dir)

    assert [variant.name for variant in variants] == ["galore", "subtrack_pp"]
    assert variants[0].run.optimizer.groups[0].tracker.name == "svd"
    assert variants[1].run.optimizer.groups[0].tracker.name == "subtrack"
    assert variants[0].labels == {"composition": "galore"}
    assert str(variants[0].run_dir) == str(setup / "out" / "galore")


@pytest.mark.parametrize(
    "change,message",
    [
        ({"axes": [{"name": "x", "values": {"a": {"train.max_stepz": 3}}}]}, "sweep variant 'a': unknown key 'train.max_stepz'"),
        ({"base": "missing.yaml"}, "run YAML"),
        ({"axes": [], "variants": []}, "a sweep needs 'axes'"),
        ({"colour": "blue"}, "unknown key 'sweep.colour'"),
    ],
)
def test_bad_sweep_is_rejected(setup, change, message):
    data = yaml.safe_load((setup / "sweep.yaml").read_text())
    data.update(change)
    path = write_yaml(setup / "bad_sweep.yaml", data)

    with pytest.raises(ConfigError, match=message):
        sweep, base_dir = load_sweep(path)
        expand_sweep(sweep, base_dir)


@pytest.mark.slow
def test_sweep_runs_skips_finished_and_reports(setup, capsys):
    train = load_train_script()
    sweep_path = str(setup / "sweep.yaml")

    assert train.main([sweep_path, "--sweep"]) == 0
    out = setup / "out"
    for name in ("galore", "subtrack_pp"):
        assert json.loads((out / name / "sweep_status.json").read_text())["status"] == "done"
    first_mtime = (out / "galore" / "metrics.jsonl").stat().st_mtime_ns

    assert train.main([sweep_path, "--sweep"]) == 0
    assert (out / "galore" / "metrics.jsonl").stat().st_mtime_ns == first_mtime  # skipped, not rerun

    run = load_run(out / "subtrack_pp")
    assert run.group == "composition=subtrack_pp"
    assert run.eval_steps == [0, 2, 4]
    assert run.captured_energy and all(0 < value <= 1 for value in run.captured_energy)

    report_dir = setup / "report"
    capsys.readouterr()
    assert report_main([str(out / "galore"), str(out / "subtrack_pp"), "--output", str(report_dir)]) == 0
    printed = capsys.readouterr().out
    assert "composition=galore" in printed
    assert "composition=subtrack_pp" in printed
    markdown = (report_dir / "report.md").read_text()
    assert "| composition=galore | 1 | 4 |" in markdown
    for plot in ("eval_loss_vs_step.png", "eval_loss_vs_time.png", "captured_energy.png"):
        assert (report_dir / plot).stat().st_size > 1000, plot


def test_report_groups_seeds_with_mean_and_spread(tmp_path):
    for name, losses in (("galore-s0", [5.0, 4.0]), ("galore-s1", [5.0, 3.0]), ("adamw-s0", [5.0, 3.5])):
        folder = tmp_path / name
        folder.mkdir()
        lines = [{"kind": "eval", "step": 10 * i, "loss": loss, "elapsed_s": float(i)} for i, loss in enumerate(losses)]
        lines.append({"kind": "train", "step": 10, "tokens_per_s": 100.0, "optimizer_step_s": 0.01})
        (folder / "metrics.jsonl").write_text("\n".join(json.dumps(line) for line in lines) + "\n")

    assert report_main([str(tmp_path / n) for n in ("galore-s0", "galore-s1", "adamw-s0")] + ["--output", str(tmp_path / "r")]) == 0

    markdown = (tmp_path / "r" / "report.md").read_text()
    assert "| galore | 2 | 10 | 3.5000 ± 0.7071 |" in markdown
    assert "| adamw | 1 | 10 | 3.5000 |" in markdown


def test_report_rejects_folder_without_metrics(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    (tmp_path / "file.txt").write_text("x")

    assert report_main([str(tmp_path / "file.txt")]) == 2
    assert "no metrics.jsonl" in capsys.readouterr().err


@pytest.mark.slow
def test_sweep_runs_variants_in_parallel(setup):
    data = yaml.safe_load((setup / "sweep.yaml").read_text())
    data["output_dir"] = str(setup / "parallel")
    path = write_yaml(setup / "parallel.yaml", data)

    assert load_train_script().main([str(path), "--sweep", "--jobs", "2"]) == 0
    for name in ("galore", "subtrack_pp"):
        assert json.loads((setup / "parallel" / name / "sweep_status.json").read_text())["status"] == "done"


def test_sweep_rejects_zero_jobs(setup):
    from lowrank.train.sweep import run_sweep

    with pytest.raises(ConfigError, match="--jobs must be at least 1, got 0"):
        run_sweep(setup / "sweep.yaml", jobs=0)
