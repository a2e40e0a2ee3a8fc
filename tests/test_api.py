"""End to end through the Python API: train, evaluate, resume after kill -9, recommend."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import polars as pl
import pytest

import seqrec
from seqrec import api
from seqrec.errors import DataError

SASREC = {"name": "sasrec", "dim": 32, "num_blocks": 2, "max_len": 50, "dropout": 0.2}
TRAIN = {"lr": 2e-3, "batch_size": 128, "patience": 3, "progress": False, "seed": 7}


@pytest.fixture(scope="module")
def demo_split():
    return seqrec.leave_one_out(seqrec.load("demo"))


@pytest.fixture(scope="module")
def demo_runs(demo_split):
    pop = api.train(demo_split, model="pop", train={"progress": False})
    sasrec = api.train(demo_split, model=SASREC, train={**TRAIN, "epochs": 8})
    return pop, sasrec


def test_sasrec_beats_pop_clearly_on_demo_data(demo_runs):
    pop, sasrec = demo_runs
    assert set(pop.results) >= {"valid", "test"}
    assert pop.results["test"]["NDCG@10"] < 0.1
    assert sasrec.results["test"]["NDCG@10"] > 3 * pop.results["test"]["NDCG@10"]
    assert sasrec.results["test"]["HR@10"] > 0.4
    # results are those of the best validation epoch, and evaluate() reproduces them
    assert sasrec.evaluate("test") == pytest.approx(sasrec.results["test"])
    assert sasrec.evaluate("valid")["NDCG@10"] == pytest.approx(sasrec.results["valid"]["NDCG@10"])


def test_recommend_for_a_user_and_a_raw_history(demo_runs, demo_split):
    _, sasrec = demo_runs
    data = demo_split.data
    user = data.users.decode(np.array([0]))[0].item()
    recs = sasrec.recommend(user=user, k=5)
    assert len(recs) == 5 and all(isinstance(item, int) for item, _ in recs)
    seen = set(data.item_vocab.decode(data.sequence(0)).tolist())
    assert not seen & {item for item, _ in recs}
    scores = [s for _, s in recs]
    assert scores == sorted(scores, reverse=True)
    history = data.item_vocab.decode(data.sequence(0)[-5:]).tolist()
    by_history = sasrec.recommend(history=history, k=3)
    assert len(by_history) == 3 and not set(history) & {i for i, _ in by_history}
    with pytest.raises(DataError):
        sasrec.recommend(history=[10**9], k=3)


def test_training_is_deterministic_under_a_seed(demo_split):
    runs = [api.train(demo_split, model=SASREC, train={**TRAIN, "epochs": 2})
            for _ in range(2)]
    assert runs[0].results["test"] == runs[1].results["test"]
    assert runs[0].results["valid"] == runs[1].results["valid"]


def test_run_directory_contents(demo_split, tmp_path):
    out = tmp_path / "run"
    run = api.train(demo_split, model=SASREC, out=out, train={**TRAIN, "epochs": 2})
    names = {p.name for p in out.iterdir()}
    assert {"config.yaml", "data.json", "log.jsonl", "checkpoints", "curves.png", "results.json"} <= names
    assert (out / "curves.png").read_bytes()[:4] == b"\x89PNG"
    results = json.loads((out / "results.json").read_text())
    assert set(results["test"]) >= {"HR@10", "NDCG@10", "MRR@10", "MRR", "HR@100"}
    records = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1, 2]
    assert all({"loss", "valid", "seconds", "sequences_per_second"} <= set(r) for r in records)
    loaded = api.Run.load(out)
    assert loaded.evaluate("test") == pytest.approx(run.results["test"])


RESUMABLE = textwrap.dedent("""
    import sys, seqrec
    from seqrec import api
    split = seqrec.leave_one_out(seqrec.load("demo"))
    api.train(split, out=sys.argv[1], resume=len(sys.argv) > 2,
              model={"name": "sasrec", "dim": 32, "num_blocks": 2, "max_len": 50, "dropout": 0.2},
              train={"lr": 2e-3, "batch_size": 32, "epochs": 4, "patience": 0, "progress": False, "seed": 3,
                     "num_threads": 1})
""")


def _train_subprocess(*args: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    return subprocess.Popen([sys.executable, "-c", RESUMABLE, *args], env=env, stderr=subprocess.PIPE)


@pytest.mark.slow
def test_kill_mid_epoch_then_resume_matches_an_uninterrupted_run(tmp_path):
    whole, broken = tmp_path / "whole", tmp_path / "broken"
    reference = _train_subprocess(str(whole))
    victim = _train_subprocess(str(broken))
    log = broken / "log.jsonl"
    deadline = time.time() + 240
    while time.time() < deadline and victim.poll() is None:
        if log.exists() and len(log.read_text().splitlines()) >= 2:
            break
        time.sleep(0.05)
    time.sleep(0.4)                                          # into epoch 3
    assert victim.poll() is None, "the run ended before it could be killed"
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    epochs_done = len(log.read_text().splitlines())
    assert 2 <= epochs_done < 4
    resumed = _train_subprocess(str(broken), "--resume")
    assert resumed.wait(timeout=300) == 0, resumed.stderr.read().decode()
    assert reference.wait(timeout=300) == 0, reference.stderr.read().decode()
    a = json.loads((whole / "results.json").read_text())
    b = json.loads((broken / "results.json").read_text())
    # tolerance: identical arithmetic on one thread; allow float noise only
    for split in ("valid", "test"):
        for key, value in a[split].items():
            assert b[split][key] == pytest.approx(value, abs=1e-9), (split, key)
    assert [json.loads(x)["epoch"] for x in (broken / "log.jsonl").read_text().splitlines()] == [1, 2, 3, 4]


def test_no_user_long_enough_to_split_is_a_clear_error(tmp_path):
    path = tmp_path / "short.csv"
    pl.DataFrame({"user": [1, 1, 2, 2, 3], "item": [1, 2, 1, 3, 2], "time": [1, 2, 3, 4, 5]}).write_csv(path)
    with pytest.raises(DataError, match="at least 3 interactions"):
        api.train(str(path), model="pop", train={"progress": False})


def test_unknown_section_and_model_are_config_errors(demo_split):
    with pytest.raises(seqrec.ConfigError, match="unknown config section"):
        api.train(demo_split, model="pop", trainer={"epochs": 1})
    with pytest.raises(seqrec.ConfigError, match="did you mean 'sasrec'"):
        api.train(demo_split, model="sasrek")


def test_resume_with_a_larger_budget_continues_a_run_that_stopped_on_it(demo_split, tmp_path):
    out = tmp_path / "run"
    model = {"name": "sasrec", "dim": 16, "num_blocks": 1, "max_len": 20}
    # patience 1: the first validation without improvement stops the run, well before 30 epochs
    first = api.train(demo_split, model=model, train={**TRAIN, "epochs": 30, "patience": 1}, out=out)
    stopped_at = first.results["epochs_run"]
    assert first.results["stopped"].startswith("early stop") and stopped_at < 30
    # the same config resumes into the same stop; a larger patience and more epochs continue the run (and how a
    # step is computed, micro-batches, may change)
    again = api.train(demo_split, model=model, train={**TRAIN, "epochs": 30, "patience": 1}, out=out, resume=True)
    assert again.results["epochs_run"] == stopped_at
    longer = api.train(demo_split, model=model, out=out, resume=True,
                       train={**TRAIN, "epochs": stopped_at + 2, "patience": 0, "micro_batches": 2})
    assert longer.results["epochs_run"] == stopped_at + 2 and longer.results["stopped"] is None
    epochs = [json.loads(line)["epoch"] for line in (out / "log.jsonl").read_text().splitlines()]
    assert epochs == list(range(1, stopped_at + 3))
    assert "patience: 0" in (out / "config.yaml").read_text()                  # the run dir says what ran
    assert "micro_batches: 2" in (out / "config.yaml").read_text()
    with pytest.raises(seqrec.ConfigError, match=r"train\.lr"):                 # what it computes may not change
        api.train(demo_split, model=model, train={**TRAIN, "epochs": 9, "patience": 0, "lr": 0.1}, out=out,
                  resume=True)


def test_a_run_moved_to_another_machine_resumes_from_a_copy_of_its_data(dataset, tmp_path):
    """`data.path` may change on resume (a run directory carried to another machine, whose data lies elsewhere) when
    the file there is the same data; a different file is refused, naming both paths, before anything is written."""
    source = dataset("ml-100k/u.data").read_bytes()
    here, there, other = (tmp_path / name / "u.data" for name in ("here", "there", "other"))
    for path, content in ((here, source), (there, source), (other, source[: source.rindex(b"\n", 0, -1) + 1])):
        path.parent.mkdir()
        path.write_bytes(content)
    out = tmp_path / "run"
    model = {"name": "sasrec", "dim": 16, "num_blocks": 1, "max_len": 20}
    train = {**TRAIN, "patience": 0, "num_threads": 1}
    api.train(str(here), model=model, train={**train, "epochs": 1}, out=out)
    here.unlink()                                                               # the first machine's copy is gone
    log_before = (out / "log.jsonl").read_text()
    with pytest.raises(seqrec.ConfigError, match=r"moved from .*here/u\.data to .*other/u\.data.*not the data"):
        api.train(str(other), model=model, train={**train, "epochs": 2}, out=out, resume=True)
    assert (out / "log.jsonl").read_text() == log_before and "here/u.data" in (out / "config.yaml").read_text()
    moved = api.train(str(there), model=model, train={**train, "epochs": 2}, out=out, resume=True)
    assert moved.results["epochs_run"] == 2
    assert [json.loads(line)["epoch"] for line in (out / "log.jsonl").read_text().splitlines()] == [1, 2]
    assert "there/u.data" in (out / "config.yaml").read_text()                  # the run dir says what it reads now
    with pytest.raises(seqrec.ConfigError, match=r"model\.dim"):                # what it computes still may not change
        api.train(str(there), model={**model, "dim": 8}, train={**train, "epochs": 3}, out=out, resume=True)


def test_step_learning_rate_decay_is_logged_and_survives_resume(demo_split, tmp_path):
    out = tmp_path / "run"
    model = {"name": "sasrec", "dim": 16, "num_blocks": 1, "max_len": 20}
    train = {**TRAIN, "patience": 0, "lr": 1e-3, "lr_decay": 0.1, "lr_decay_every": 2}
    api.train(demo_split, model=model, train={**train, "epochs": 3}, out=out)
    api.train(demo_split, model=model, train={**train, "epochs": 5}, out=out, resume=True)
    lrs = [json.loads(line)["lr"] for line in (out / "log.jsonl").read_text().splitlines()]
    assert lrs == pytest.approx([1e-3, 1e-3, 1e-4, 1e-4, 1e-5])
    with pytest.raises(seqrec.ConfigError, match="lr_decay"):
        api.train(demo_split, model=model, train={**train, "lr_decay": 1.5})


def test_learning_rate_decay_can_start_early_as_srgnns_scheduler(demo_split, tmp_path):
    """SR-GNN's code steps StepLR(3, 0.1) before each epoch: epochs 1-2 at lr, 3-5 at lr/10, 6-8 at lr/100."""
    train = {**TRAIN, "patience": 0, "epochs": 7, "lr": 1e-2, "lr_decay": 0.1, "lr_decay_every": 3,
             "lr_decay_start": 3}
    out = tmp_path / "run"
    api.train(demo_split, model={"name": "gru4rec", "dim": 8}, train=train, out=out)
    lrs = [json.loads(line)["lr"] for line in (out / "log.jsonl").read_text().splitlines()]
    assert lrs == pytest.approx([1e-2, 1e-2, 1e-3, 1e-3, 1e-3, 1e-4, 1e-4])
    with pytest.raises(seqrec.ConfigError, match="lr_decay_start"):
        api.train(demo_split, model="gru4rec", train={**train, "lr_decay_start": 1})


def test_loading_an_unfinished_run_says_so(tmp_path, caplog):
    out = tmp_path / "run"
    api.train("demo", model={**SASREC, "max_len": 20}, out=out, train={**TRAIN, "epochs": 1})
    (out / "results.json").unlink()                                              # as while it still trains
    with caplog.at_level("WARNING", logger="seqrec.runs"):
        run = api.Run.load(out)
    assert run.results == {} and "has not finished" in caplog.text and "epoch 1" in caplog.text
    for checkpoint in (out / "checkpoints").iterdir():                           # before its first epoch ends
        checkpoint.unlink()
    with pytest.raises(seqrec.ConfigError, match="no checkpoint yet"):
        api.Run.load(out)
