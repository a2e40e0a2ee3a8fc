"""Experiment tracking: TensorBoard event files and the MLflow store hold what the run directory logged, read back
with their own readers."""

from __future__ import annotations

import importlib.util
import json

import pytest
from mlflow import MlflowClient
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from seqrec import api
from seqrec.errors import ConfigError

MODEL = {"name": "sasrec", "dim": 16, "num_blocks": 1, "max_len": 20, "dropout": 0.1}
TRAIN = {"epochs": 2, "progress": False, "seed": 3, "num_threads": 1, "lr": 3e-3}


def _log(run_dir):
    return [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]


def test_tensorboard_events_hold_the_per_epoch_metrics_and_the_config(tmp_path):
    out = tmp_path / "run"
    run = api.train("demo", model=MODEL, train={**TRAIN, "tensorboard": True}, out=out)
    events = EventAccumulator(str(out / "tensorboard"))
    events.Reload()
    tags = events.Tags()["scalars"]
    assert {"loss", "lr", "valid/NDCG@10", "valid/HR@10", "seconds", "final/test/NDCG@10"} <= set(tags)
    log = _log(out)
    assert [(e.step, e.value) for e in events.Scalars("loss")] == [
        (r["epoch"], pytest.approx(r["loss"], rel=1e-6)) for r in log]
    assert [e.value for e in events.Scalars("valid/NDCG@10")] == pytest.approx(
        [r["valid"]["NDCG@10"] for r in log], rel=1e-6)
    assert [e.value for e in events.Scalars("lr")] == pytest.approx([3e-3, 3e-3])
    final = events.Scalars("final/test/NDCG@10")
    assert final[0].value == pytest.approx(run.results["test"]["NDCG@10"], rel=1e-6)
    assert final[0].step == run.results["best_epoch"]
    config_text = events.Tensors("config/text_summary")[0].tensor_proto.string_val[0].decode()
    assert "lr: 0.003" in config_text and "name: sasrec" in config_text


def test_mlflow_store_holds_params_metrics_and_continues_on_resume(tmp_path):
    out = tmp_path / "run"
    api.train("demo", model=MODEL, train={**TRAIN, "mlflow": True}, out=out)
    marker = json.loads((out / "mlflow.json").read_text())
    assert marker["tracking_uri"] == f"sqlite:///{(out / 'mlflow.db').resolve()}"
    client = MlflowClient(tracking_uri=marker["tracking_uri"])
    run = client.get_run(marker["run_id"])
    assert run.info.status == "FINISHED"
    assert run.data.params["train.lr"] == "0.003" and run.data.params["model.dim"] == "16"
    assert run.data.params["model.name"] == "sasrec"
    history = client.get_metric_history(marker["run_id"], "valid/NDCG_at_10")
    log = _log(out)
    assert [(m.step, m.value) for m in history] == [
        (r["epoch"], pytest.approx(r["valid"]["NDCG@10"])) for r in log]
    results = json.loads((out / "results.json").read_text())
    assert run.data.metrics["final/test/NDCG_at_10"] == pytest.approx(results["test"]["NDCG@10"])
    # --resume with more epochs: the same MLflow run gets the new epochs
    api.train("demo", model=MODEL, train={**TRAIN, "mlflow": True, "epochs": 3}, out=out, resume=True)
    assert json.loads((out / "mlflow.json").read_text())["run_id"] == marker["run_id"]
    steps = [m.step for m in client.get_metric_history(marker["run_id"], "loss")]
    assert steps == [1, 2, 3]
    assert client.get_run(marker["run_id"]).info.status == "FINISHED"
    assert len(client.search_runs([run.info.experiment_id])) == 1


def test_a_missing_tracking_package_is_a_clear_error(tmp_path, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "mlflow" else real(name, *a))
    with pytest.raises(ConfigError, match=r"train.mlflow: true needs the mlflow package.*pip install "
                                          r"'seqrec\[mlflow\]'"):
        api.train("demo", model=MODEL, train={**TRAIN, "mlflow": True}, out=tmp_path / "run")
    assert not (tmp_path / "run").exists()                   # refused before the run directory was made
    with pytest.raises(ConfigError, match="train.tensorboard: the event files go in the run directory"):
        api.train("demo", model=MODEL, train={**TRAIN, "tensorboard": True})
