"""`seqrec tune`: real Optuna studies of real (tiny) SASRec trainings on the demo data."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
import yaml
from exp_helpers import SPACE, TINY, own_cache, write
from optuna.trial import TrialState

from seqrec import api
from seqrec.cli import main
from seqrec.config import config_to_dict, load_config
from seqrec.errors import ConfigError
from seqrec.experiments.study import tune

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def tiny_config(tmp_path) -> Path:
    return write(tmp_path / "tiny.yaml", TINY)


@pytest.fixture
def space_file(tmp_path) -> Path:
    return write(tmp_path / "space.yaml", SPACE)


@pytest.fixture(scope="module")
def module_dir(tmp_path_factory):
    with own_cache(tmp_path_factory.mktemp("tune")) as root:
        yield root


def _study(out: Path) -> optuna.Study:
    return optuna.load_study(study_name="seqrec", storage=f"sqlite:///{out / 'study.db'}")


@pytest.fixture(scope="module")
def six_trials(module_dir):
    config, space = write(module_dir / "tiny.yaml", TINY), write(module_dir / "space.yaml", SPACE)
    out = module_dir / "study"
    result = tune(config, space, out=out, trials=6, seed=11)
    return result, out


def test_six_trials_find_a_config_better_than_the_worst_and_write_a_loadable_best(six_trials):
    result, out = six_trials
    assert len(result.rows) == 6
    complete = [row for row in result.rows if row["state"] == "complete"]
    assert len(complete) >= 3
    values = [row["value"] for row in complete]
    best = result.best
    assert best["value"] == max(values) > min(values)
    # the objective is the trial's own validation metric, read from its ordinary run directory
    run_dir = out / best["run_dir"]
    results = json.loads((run_dir / "results.json").read_text())
    assert results["valid"]["NDCG@10"] == pytest.approx(best["value"])
    assert {"config.yaml", "log.jsonl", "checkpoints", "curves.png"} <= {p.name for p in run_dir.iterdir()}
    # best.yaml is a ready config: it loads, is the best trial's config, and carries the searched values
    config = load_config(out / "best.yaml")
    assert config_to_dict(config) == config_to_dict(load_config(run_dir / "config.yaml"))
    for key, value in best["params"].items():
        section, name = key.split(".")
        assert config_to_dict(config)[section][name] == pytest.approx(value) if isinstance(value, float) else value
    assert config.train.seed == 11                          # every trial trains with the study's seed
    # test metrics: evaluated once, for the best trial only, and they are what its checkpoint gives
    assert set(best["test"]) >= {"NDCG@10", "HR@10"}
    assert api.Run.load(run_dir).evaluate("test") == pytest.approx(best["test"])
    tested = [row["trial"] for row in result.rows
              if "test" in json.loads((out / row["run_dir"] / "results.json").read_text())]
    assert tested == [best["trial"]]


def test_the_best_config_trains_with_seqrec_train(six_trials, tmp_path, capsys):
    _, out = six_trials
    code = main(["train", "-c", str(out / "best.yaml"), "--set", "train.epochs=1", "--out", str(tmp_path / "again"),
                 "--quiet"])
    assert code == 0, capsys.readouterr().err
    assert (tmp_path / "again" / "results.json").exists()


def test_a_study_is_reproduced_by_its_seed(tiny_config, space_file, tmp_path):
    runs = [tune(tiny_config, space_file, out=tmp_path / f"s{i}", trials=3, seed=3, prune=False) for i in range(2)]
    assert [r["params"] for r in runs[0].rows] == [r["params"] for r in runs[1].rows]
    assert [r["value"] for r in runs[0].rows] == pytest.approx([r["value"] for r in runs[1].rows], abs=1e-9)
    other = tune(tiny_config, space_file, out=tmp_path / "s2", trials=3, seed=4, prune=False)
    assert [r["params"] for r in other.rows] != [r["params"] for r in runs[0].rows]


def test_a_trial_made_bad_is_pruned(tiny_config, tmp_path):
    space = write(tmp_path / "lr.yaml", "train.lr: {type: float, low: 1.0e-6, high: 1.0e-2, log: true}\n")
    out = tmp_path / "study"
    tune(tiny_config, space, out=out, trials=0, overrides=["train.epochs=4"], prune_after=2)   # the study only
    study = _study(out)
    for lr in (8e-3, 9e-3, 1e-2, 1e-6):                   # three good trials, then one that cannot learn
        study.enqueue_trial({"train.lr": lr})
    result = tune(None, None, out=out, trials=4, resume=True)
    states = [row["state"] for row in result.rows]
    assert states == ["complete", "complete", "complete", "pruned"]
    bad = result.rows[3]
    results = json.loads((out / bad["run_dir"] / "results.json").read_text())
    assert results["stopped"].startswith("pruned by the study")
    assert results["epochs_run"] < 4 and "test" not in results
    epochs = [json.loads(line)["epoch"] for line in (out / bad["run_dir"] / "log.jsonl").read_text().splitlines()]
    assert epochs == list(range(1, results["epochs_run"] + 1))
    assert result.best["params"]["train.lr"] >= 8e-3


def _tune_process(*args: str) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO / "src")}
    return subprocess.Popen([sys.executable, "-m", "seqrec", "tune", *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)


def test_a_killed_study_resumes_without_repeating_finished_trials(tiny_config, space_file, tmp_path):
    out = tmp_path / "study"
    args = ["-c", str(tiny_config), "--space", str(space_file), "--set", "train.epochs=8", "--no-prune",
            "--out", str(out)]
    victim = _tune_process(*args, "--trials", "4")
    running = out / "trials" / "trial-0002" / "log.jsonl"
    deadline = time.time() + 240
    while time.time() < deadline and victim.poll() is None and not (running.exists() and running.read_text()):
        time.sleep(0.05)
    assert victim.poll() is None, victim.stderr.read().decode()
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    study = _study(out)
    assert [t.state for t in study.trials] == [TrialState.COMPLETE, TrialState.COMPLETE, TrialState.RUNNING]
    finished = {n: (out / "trials" / f"trial-000{n}" / "results.json").read_bytes() for n in (0, 1)}
    interrupted_epochs = len(running.read_text().splitlines())
    assert 1 <= interrupted_epochs < 8

    resumed = _tune_process("--out", str(out), "--resume", "--trials", "4", "--json")
    stdout, stderr = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, stderr.decode()
    report = json.loads(stdout)
    study = _study(out)
    states = [t.state for t in study.trials]
    assert states == [TrialState.COMPLETE, TrialState.COMPLETE, TrialState.FAIL, TrialState.COMPLETE,
                      TrialState.COMPLETE]
    # the finished trials were not run again: their run directories are untouched, no trial has their params
    assert {n: (out / "trials" / f"trial-000{n}" / "results.json").read_bytes() for n in (0, 1)} == finished
    retry = study.trials[3]
    assert retry.user_attrs["retry_of"] == 2 and retry.params == study.trials[2].params
    assert retry.user_attrs["run_dir"] == "trials/trial-0002"
    # the interrupted trial's run directory resumed from its last finished epoch: every epoch logged once
    epochs = [json.loads(line)["epoch"] for line in running.read_text().splitlines()]
    assert epochs == list(range(1, 9))
    assert len(report["trials"]) == 5 and report["best"]["test"]["NDCG@10"] > 0
    assert report["trials"][2]["note"] == "interrupted (queued again)"
    # a third --resume has nothing left to do
    again = tune(None, None, out=out, trials=4, resume=True)
    assert len(again.rows) == 5 and again.best == report["best"]


def test_space_errors_name_the_key_and_suggest(tiny_config, tmp_path):
    cases = {
        "trian.lr: {type: float, low: 0.001, high: 0.01}": "unknown section 'trian'; did you mean 'train.lr'?",
        "train.learning_rate: {type: float, low: 0.001, high: 0.01}": "did you mean 'train.lr'?",
        "model.num_blokcs: {type: int, low: 1, high: 3}": "did you mean 'model.num_blocks'?",
        "train.lr: {type: flaot, low: 0.001, high: 0.01}": "unknown distribution type 'flaot'; did you mean 'float'?",
        "train.lr: {type: float, low: 0.001, high: 0.01, lg: true}": "unknown field 'lg' of a float distribution; "
                                                                     "did you mean 'log'?",
        "train.lr: {type: float, low: 0.01}": "a float distribution needs high",
        "train.lr: {type: float, low: 0.01, high: 0.001}": "low 0.01 is above high 0.001",
        "train.lr: {type: float, low: 0, high: 0.01, log: true}": "log-scale distribution needs low > 0",
        "model.dropout: {type: float, low: 0.0, high: 1.5}": "model.dropout: the value 1.5",
        "loss.name: {type: categorical, choices: [ce, softmax]}": "the value 'softmax' (one of ce, softmax) is not a "
                                                                 "valid config value",
        "model.num_blocks: {type: int, low: 1.5, high: 3}": "low 1.5 is not an integer",
        "[1, 2]": "expected a mapping from config key to distribution",
    }
    for text, expected in cases.items():
        space = write(tmp_path / "bad.yaml", text + "\n")
        with pytest.raises(ConfigError, match=None) as caught:
            tune(tiny_config, space, out=tmp_path / "never", trials=1)
        assert expected in str(caught.value), (text, str(caught.value))
        assert str(space) in str(caught.value)
    assert not (tmp_path / "never").exists()                 # checked before anything was written


def test_cli_errors_before_any_trial(tiny_config, space_file, tmp_path, capsys):
    out = tmp_path / "study"
    assert main(["tune", "-c", str(tiny_config), "--space", str(space_file), "--trials", "2", "--out", str(out),
                 "--set", "train.lr=0.1"]) == 1
    assert "train.lr: the key is both searched and fixed by --set" in capsys.readouterr().err
    assert main(["tune", "--out", str(out), "--resume", "--trials", "2"]) == 1
    assert "holds no study" in capsys.readouterr().err
    assert main(["tune", "-c", str(tiny_config), "--space", str(space_file), "--trials", "1", "--out", str(out),
                 "--no-prune", "--json", "--set", "train.epochs=1"]) == 0
    assert json.loads(capsys.readouterr().out)["best"]["trial"] == 0
    assert main(["tune", "-c", str(tiny_config), "--space", str(space_file), "--trials", "1", "--out",
                 str(out)]) == 1
    assert "already holds a study; pass --resume" in capsys.readouterr().err
    assert main(["tune", "--out", str(out), "--resume", "--trials", "1", "--seed", "99"]) == 1
    assert "the seed (5 -> 99)" in capsys.readouterr().err
    stored = yaml.safe_load((out / "space.yaml").read_text())
    assert stored["train.lr"] == {"type": "float", "low": 1e-4, "high": 1e-2, "log": True, "step": None}


def test_two_processes_share_one_study(tiny_config, space_file, tmp_path):
    out = tmp_path / "study"
    # creates the study only; trials of 6 epochs, so that both processes are up before the 4 are done
    tune(tiny_config, space_file, out=out, trials=0, prune=False, overrides=["train.epochs=6"])
    workers = [_tune_process("--out", str(out), "--resume", "--trials", "4") for _ in range(2)]
    for worker in workers:
        _, stderr = worker.communicate(timeout=300)
        assert worker.returncode == 0, stderr.decode()
    trials = _study(out).trials
    assert 4 <= len(trials) <= 5                              # each process stops once 4 have finished
    assert all(t.state == TrialState.COMPLETE for t in trials)
    assert len({t.user_attrs["run_dir"] for t in trials}) == len(trials)
    assert len({t.user_attrs["process"] for t in trials}) == 2                 # both processes ran trials
    for trial in trials:
        assert (out / trial.user_attrs["run_dir"] / "results.json").exists()


def test_the_shipped_space_fits_the_shipped_configs(monkeypatch, tmp_path):
    from seqrec.experiments.space import check_space, read_space

    monkeypatch.setenv("SEQREC_DATA", str(tmp_path))          # the configs' data paths are only expanded here
    space = read_space(REPO / "configs" / "spaces" / "sasrec.yaml")
    assert {dim.key for dim in space} >= {"train.lr", "model.num_blocks", "model.dim"}
    for config in ("ml100k_sasrec.yaml", "demo_sasrec.yaml", "ml1m_sasrec.yaml"):
        check_space(space, REPO / "configs" / config)


def test_the_timeout_stops_starting_trials(tiny_config, space_file, tmp_path):
    result = tune(tiny_config, space_file, out=tmp_path / "study", trials=5, timeout_minutes=1e-4, prune=False,
                  overrides=["train.epochs=1"])
    assert len(result.rows) == 1 and result.rows[0]["state"] == "complete"     # the trial it started finished
    assert result.best["trial"] == 0
