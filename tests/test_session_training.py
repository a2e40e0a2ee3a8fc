"""Session-based training end to end: the session protocol from config, prefix training of SR-GNN and GC-SAN,
full-ranking P@20 / MRR@20 on every test prefix, reloading the run."""

from __future__ import annotations

import numpy as np
import pytest

from seqrec import api
from seqrec.api import Run
from seqrec.errors import ConfigError
from seqrec.models import build_model
from seqrec.train.objectives import expand_rows, make_batch


def _write_sessions(folder, seed=0):
    """Sessions following a hidden item-to-item chain (next = current + 1 mostly), so a model can learn them."""
    rng = np.random.default_rng(seed)
    lines = []
    for _ in range(900):
        start, length = int(rng.integers(1, 60)), int(rng.integers(2, 8))
        items = [(start + t + (rng.random() < 0.1) * int(rng.integers(1, 30))) % 60 + 1 for t in range(length)]
        lines.append(",".join(map(str, items)))
    (folder / "train.txt").write_text("\n".join(lines[:800]) + "\n")
    (folder / "test.txt").write_text("\n".join(lines[800:]) + "\n")


def test_prefix_rows_cover_every_prefix_once():
    model = build_model("srgnn", 10, {"dim": 8, "max_len": 3})
    starts, ends = expand_rows(model, np.array([0, 4, 5]), np.array([4, 5, 8]))
    assert list(zip(starts.tolist(), ends.tolist())) == [(0, 2), (0, 3), (0, 4), (5, 7), (5, 8)]
    items = np.array([1, 2, 3, 4, 9, 5, 6, 7])
    batch = make_batch(model, items, starts, ends)
    assert batch.items.tolist() == [[0, 0, 1], [0, 1, 2], [1, 2, 3], [0, 0, 5], [0, 5, 6]]
    assert batch.targets.tolist() == [[0, 0, 2], [0, 0, 3], [0, 0, 4], [0, 0, 6], [0, 0, 7]]
    sasrec = build_model("sasrec", 10, {"dim": 8, "max_len": 3})
    assert expand_rows(sasrec, starts, ends)[0] is starts                      # other objectives: unchanged


@pytest.mark.parametrize("name", ["srgnn", "gcsan", "lessr"])
def test_session_protocol_trains_evaluates_and_reloads(name, tmp_path):
    _write_sessions(tmp_path)
    config = {"data": {"path": str(tmp_path / "train.txt"), "test_path": str(tmp_path / "test.txt"),
                       "format": "sessions"},
              "split": {"protocol": "session", "valid_fraction": 0.1},
              "train": {"epochs": 3, "batch_size": 64, "lr": 5e-3, "progress": False, "seed": 1},
              "eval": {"ks": [10, 20], "metric": "MRR@20"}}
    run = api.train(config=api.make_config(model={"name": name, "dim": 24, "max_len": 10}, **config),
                    out=tmp_path / "run")
    split = run.split
    assert split.summary()["test_sessions"] == 100 and len(split.test) == split.summary()["test_targets"]
    test = run.results["test"]
    assert set(test) >= {"HR@20", "MRR@20", "HR@10", "NDCG@10", "MRR@10"}
    pop = api.train(split, model="pop", train={"progress": False}, eval=config["eval"]).results["test"]
    assert test["HR@20"] > 2 * pop["HR@20"] and test["MRR@20"] > 2 * pop["MRR@20"], (test, pop)
    again = Run.load(tmp_path / "run")
    assert again.evaluate("test") == pytest.approx(test)


def test_session_protocol_cannot_split_prepared_data(tmp_path):
    _write_sessions(tmp_path)
    import seqrec

    data = seqrec.load(tmp_path / "train.txt", format="sessions")
    with pytest.raises(ConfigError, match="session"):
        api.train(data, model="pop", split={"protocol": "session"})


def test_session_protocol_without_validation_trains_on_every_training_session(tmp_path):
    _write_sessions(tmp_path)
    config = {"data": {"path": str(tmp_path / "train.txt"), "test_path": str(tmp_path / "test.txt"),
                       "format": "sessions"},
              "split": {"protocol": "session", "validation": "none"},
              "train": {"epochs": 2, "patience": 1, "batch_size": 64, "lr": 5e-3, "progress": False, "seed": 1},
              "eval": {"ks": [20], "metric": "MRR@20"}}
    run = api.train(config=api.make_config(model={"name": "srgnn", "dim": 16, "max_len": 10}, **config),
                    out=tmp_path / "run")
    summary = run.split.summary()
    assert summary["train_sessions"] == 800 and summary["valid_sessions"] == 0 and len(run.split.valid) == 0
    assert run.results["valid"] == {} and run.results["best_epoch"] == run.results["epochs_run"] == 2
    assert Run.load(tmp_path / "run").evaluate("test") == pytest.approx(run.results["test"])
    with pytest.raises(ConfigError, match="valid_fraction is 0.01"):
        api.make_config(split={"protocol": "session", "validation": "none", "valid_fraction": 0.01})
