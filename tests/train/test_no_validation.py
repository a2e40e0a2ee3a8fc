"""`split.validation: none`: the BERT4Rec and HSTU papers' protocol (the second-to-last item trains too, no
validation target, the last epoch's model is tested), on MovieLens-100K."""

import json

import numpy as np
import pytest
from click.testing import CliRunner

from seqrec import api
from seqrec.cli import cli
from seqrec.config import load_config
from seqrec.data import splits
from seqrec.data.pipeline import load
from seqrec.errors import ConfigError

MODEL = {"name": "sasrec", "dim": 16, "num_blocks": 1, "max_len": 30, "dropout": 0.1}


@pytest.fixture(scope="module")
def ml100k(tmp_path_factory):
    from conftest import _dataset_path

    path = _dataset_path("ml-100k/u.data")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SEQREC_CACHE", str(tmp_path_factory.mktemp("cache")))
        return path, load(path)


def test_the_second_to_last_item_trains_and_the_test_targets_do_not_change(ml100k):
    data = ml100k[1]
    with_valid, without = splits.leave_one_out(data), splits.leave_one_out(data, validation=False)
    assert len(without.valid) == 0 and len(with_valid.valid) == data.num_users
    np.testing.assert_array_equal(without.test.positions, with_valid.test.positions)
    np.testing.assert_array_equal(without.train_end, with_valid.train_end + 1)     # every ML-100K user has >= 20
    np.testing.assert_array_equal(without.train_end, with_valid.valid.positions + 1)
    assert without.summary()["validation"].startswith("none")
    with pytest.raises(ConfigError, match="no validation targets"):
        without.targets("valid")


def test_training_keeps_and_tests_the_last_epoch(ml100k, tmp_path):
    path = ml100k[0]
    run = api.train(path, model=MODEL, split={"validation": "none"},
                    train={"epochs": 3, "patience": 1, "progress": False, "seed": 0, "lr": 3e-3},
                    eval={"ks": [10], "report_test": True}, out=tmp_path / "run")
    assert run.results["valid"] == {} and run.results["best_epoch"] == run.results["epochs_run"] == 3
    records = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1, 2, 3] and all("valid" not in r and "test" in r for r in records)
    assert records[-1]["test"] == pytest.approx(run.results["test"])               # the last epoch is tested
    assert run.evaluate("test") == pytest.approx(run.results["test"])
    with pytest.raises(ConfigError, match="no validation targets"):
        run.evaluate("valid")
    again = api.Run.load(tmp_path / "run")                                          # the split comes back the same
    assert len(again.split.valid) == 0 and again.evaluate("test") == pytest.approx(run.results["test"])


def test_a_resumed_run_keeps_its_latest_epoch_and_writes_it_as_best(ml100k, tmp_path):
    """Without validation, best.pt holds the last epoch's weights, also after a resume (nothing from an earlier
    best.pt comes back over the resumed weights)."""
    import torch

    from seqrec.train.checkpoint import load_checkpoint

    path, out = ml100k[0], tmp_path / "run"
    common = {"model": MODEL, "split": {"validation": "none"}, "eval": {"ks": [10]}}
    train = {"patience": 1, "progress": False, "seed": 0, "lr": 3e-3}
    api.train(path, **common, train={**train, "epochs": 2}, out=out)
    first = load_checkpoint(out / "checkpoints" / "best.pt")
    assert first["epoch"] == 2
    run = api.train(path, **common, train={**train, "epochs": 3}, out=out, resume=True)
    best, last = (load_checkpoint(out / "checkpoints" / name) for name in ("best.pt", "last.pt"))
    assert run.results["best_epoch"] == best["epoch"] == 3
    for name, value in run.model.state_dict().items():
        assert torch.equal(best["state_dict"][name], value) and torch.equal(last["state_dict"][name], value)
    assert any(not torch.equal(first["state_dict"][n], v) for n, v in best["state_dict"].items())


def test_cli_says_which_epoch_it_tested(ml100k, tmp_path):
    path = ml100k[0]
    result = CliRunner().invoke(cli, ["train", "--set", f"data.path={path}", "--out", str(tmp_path / "run"),
                                      "--set", "model.name=sasrec",
                                      "--set", "model.dim=8", "--set", "model.max_len=10", "--set", "train.epochs=1",
                                      "--set", "split.validation=none", "--quiet"])
    assert result.exit_code == 0, result.output
    assert "sasrec: last epoch (no validation) 1" in result.output
    rows = [line.split()[0] for line in result.output.splitlines() if line.startswith(("valid ", "test "))]
    assert rows == ["test"]


def test_the_temporal_protocol_refuses_the_option():
    with pytest.raises(ConfigError, match="split.validation"):
        load_config(None, ["split.protocol=temporal", "split.valid_fraction=0.1", "split.test_fraction=0.1",
                           "split.validation=none"])


def test_a_search_refuses_a_split_without_validation(tmp_path):
    from pathlib import Path

    from seqrec.experiments.study import tune

    space = Path(__file__).resolve().parents[2] / "configs" / "spaces" / "sasrec.yaml"
    with pytest.raises(ConfigError, match="split.validation is 'none'"):
        tune(None, space, out=tmp_path / "study", trials=1, overrides=["split.validation=none"])
    assert not (tmp_path / "study").exists()
