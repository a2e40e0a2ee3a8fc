"""`seqrec compare` on real run directories (two SASRec runs on the demo data) and on a real study."""

from __future__ import annotations

import json

import pytest
from exp_helpers import SPACE, TINY, own_cache, write

from seqrec import api
from seqrec.cli import main
from seqrec.errors import ConfigError
from seqrec.experiments.compare import compare, plot_comparison
from seqrec.experiments.study import tune

MODEL = {"name": "sasrec", "dim": 16, "num_blocks": 1, "max_len": 20, "dropout": 0.1}
TRAIN = {"epochs": 3, "progress": False, "seed": 3, "num_threads": 1}


@pytest.fixture(scope="module")
def module_dir(tmp_path_factory):
    with own_cache(tmp_path_factory.mktemp("compare")) as root:
        yield root


@pytest.fixture(scope="module")
def two_runs(module_dir):
    fast = module_dir / "fast"
    slow = module_dir / "slow"
    api.train("demo", model=MODEL, train={**TRAIN, "lr": 5e-3}, out=fast)
    api.train("demo", model=MODEL, train={**TRAIN, "lr": 1e-4}, out=slow)
    return fast, slow


def test_compare_two_runs_shows_the_differing_keys_metrics_and_costs(two_runs):
    fast, slow = two_runs
    result = compare([fast, slow])
    assert result.metric == "NDCG@10"
    assert result.keys == ["train.lr"]                      # everything else is the same
    assert [run.name for run in result.runs] == ["fast", "slow"]
    for run, path in zip(result.runs, two_runs, strict=True):
        stored = json.loads((path / "results.json").read_text())
        assert run.valid["NDCG@10"] == stored["valid"]["NDCG@10"] and run.test == stored["test"]
        assert run.best_epoch == stored["best_epoch"] and run.epochs == 3
        log = [json.loads(line) for line in (path / "log.jsonl").read_text().splitlines()]
        assert run.curve == [(r["epoch"], r["valid"]["NDCG@10"]) for r in log]
        assert run.seconds_per_epoch == pytest.approx(sum(r["seconds"] for r in log) / 3, abs=1e-3)
        assert run.peak_memory_mb == max(r["peak_memory_mb"] for r in log) > 10
    assert result.runs[0].valid["NDCG@10"] > result.runs[1].valid["NDCG@10"]    # lr 1e-4 barely learns in 3
    # no tracking was asked for: nothing but the run directory's own files
    assert not {"tensorboard", "mlflow.db", "mlflow.json"} & {p.name for p in fast.iterdir()}


def test_compare_cli_table_json_and_png(two_runs, tmp_path, capsys):
    fast, slow = two_runs
    png = tmp_path / "compare.png"
    assert main(["compare", str(fast), str(slow), "--metric", "hr@10", "-o", str(png)]) == 0
    table = capsys.readouterr().out
    assert "train.lr" in table and "valid HR@10" in table and "test HR@10" in table and "peak MiB" in table
    assert "model.dim" not in table
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    assert main(["compare", str(fast), str(slow), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["differing_keys"] == ["train.lr"]
    assert report["runs"][1]["config"] == {"train.lr": 1e-4}
    assert report["runs"][0]["test NDCG@10"] == json.loads((fast / "results.json").read_text())["test"]["NDCG@10"]


def test_compare_errors(two_runs, tmp_path, capsys):
    fast, _ = two_runs
    with pytest.raises(ConfigError, match=r"did you mean 'NDCG@10'\?"):
        compare([fast], "NDGC@10")
    (tmp_path / "empty").mkdir()
    assert main(["compare", str(tmp_path / "empty")]) == 1
    assert "neither a run directory" in capsys.readouterr().err


def test_compare_a_study_expands_to_its_trials(module_dir, tmp_path):
    out = module_dir / "study"
    study = tune(write(module_dir / "tiny.yaml", TINY), write(module_dir / "space.yaml", SPACE), out=out, trials=3,
                 prune=False, overrides=["train.epochs=2"])
    result = compare([out])
    assert [run.name for run in result.runs] == ["trial-0000", "trial-0001", "trial-0002"]
    assert set(result.keys) <= {"train.lr", "model.num_blocks", "loss.name"} and "train.lr" in result.keys
    tested = [run.name for run in result.runs if run.test]
    assert tested == [f"trial-{study.best['trial']:04d}"]        # only the best trial was tested
    assert [run.valid["NDCG@10"] for run in result.runs] == pytest.approx([row["value"] for row in study.rows])
    png = plot_comparison(result, tmp_path / "study.png")
    assert png.read_bytes()[:4] == b"\x89PNG"
