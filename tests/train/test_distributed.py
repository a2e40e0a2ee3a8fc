"""DDP on PyTorch's own engine: real torchrun launches of 2 gloo processes on the demo data.

- one DDP epoch from the same initial weights and global batches gives the parameters of one process (float
  tolerance: gradients are summed in another order, so 1e-4 absolute after a whole epoch of Adam steps);
- the ranks shard every global batch disjointly and cover it; distributed evaluation gives exactly the
  one-process ranks;
- `seqrec train --nproc 2`: only rank 0 writes the run directory; the run resumes with another world size;
- a killed rank ends the run with a non-zero exit within a stated time, leaving a loadable checkpoint;
- two "machines" (two torchrun launchers, c10d rendezvous on 127.0.0.1) train one run, with in-batch negatives
  gathered from both ranks and sparse item gradients (gloo all-reduces them).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from seqrec import api
from seqrec.evaluate.ranking import target_ranks
from seqrec.models import build_model
from seqrec.train import distributed
from seqrec.train.checkpoint import load_checkpoint
from seqrec.train.distributed import Dist
from seqrec.train.trainer import Trainer

HERE = Path(__file__).resolve().parent
TORCHRUN = [sys.executable, "-m", "torch.distributed.run"]
SEQREC = [sys.executable, "-m", "seqrec"]
TINY = ["--set", "model.dim=16", "--set", "model.num_blocks=1", "--set", "model.max_len=20",
        "--set", "train.batch_size=256", "--set", "train.progress=false"]
KILL_DEADLINE_S = 60   # a killed rank must end the whole run within this


def _env() -> dict:
    env = dict(os.environ)
    env["OMP_NUM_THREADS"] = "1"
    env.pop("WORLD_SIZE", None)
    return env


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _run(args: list[str], timeout: float = 240) -> subprocess.CompletedProcess:
    result = subprocess.run(args, capture_output=True, text=True, timeout=timeout, env=_env())
    assert result.returncode == 0, f"{' '.join(args)} failed ({result.returncode}):\n{result.stderr[-3000:]}"
    return result


# ------------------------------------------------------------------------------------------- in-process units

def test_shards_of_a_global_batch_are_disjoint_and_cover_it():
    rows = np.arange(11)
    parts = [distributed.shard_rows(rows, Dist(rank, 3, rank, 3)) for rank in range(3)]
    assert sorted(np.concatenate(parts).tolist()) == rows.tolist()
    assert [p.shape[0] for p in parts] == [4, 4, 3]
    assert distributed.shard_rows(rows, Dist()) is rows


def test_a_short_last_batch_joins_the_one_before_so_no_rank_is_empty():
    batches = [np.arange(0, 4), np.arange(4, 8), np.arange(8, 9)]
    merged = distributed.merge_short_tail(batches, 2)
    assert [b.tolist() for b in merged] == [[0, 1, 2, 3], [4, 5, 6, 7, 8]]
    assert distributed.merge_short_tail(batches, 1) is batches


def test_sharded_evaluation_sums_to_the_one_process_ranks():
    config = api.make_config(model={"name": "sasrec", "dim": 16, "num_blocks": 1, "max_len": 20})
    split = api.load_split(config)
    torch.manual_seed(0)
    model = build_model("sasrec", split.data.num_items, config.model.params)
    whole = target_ranks(model, split.test, batch_size=50, exclude_history=True)
    shards = [target_ranks(model, split.test, batch_size=50, exclude_history=True, shard=(r, 3)) for r in range(3)]
    assert all((s > 0).sum() > 0 for s in shards)
    assert ((np.stack(shards) > 0).sum(axis=0) == 1).all()               # every target ranked by one shard
    np.testing.assert_array_equal(np.sum(shards, axis=0), whole)
    with pytest.raises(ValueError, match="shard must be"):
        target_ranks(model, split.test, shard=(3, 3))


def test_the_environment_names_the_ranks(monkeypatch):
    for name in distributed.ENV:
        monkeypatch.delenv(name, raising=False)
    assert distributed.env_dist() == Dist()
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("RANK", "2")
    monkeypatch.setenv("LOCAL_RANK", "0")
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    assert distributed.env_dist() == Dist(2, 4, 0, 2)
    monkeypatch.setenv("RANK", "7")
    with pytest.raises(Exception, match="do not fit WORLD_SIZE 4"):
        distributed.env_dist()
    assert distributed.default_threads(2) == max(1, len(os.sched_getaffinity(0)) // 2)


# ------------------------------------------------------------------------------------------- real DDP runs

@pytest.mark.slow
@pytest.mark.parametrize("micro_batches", [1, 3])
def test_one_ddp_epoch_equals_one_process_and_evaluation_is_exact(tmp_path, micro_batches):
    """With micro_batches 3 each rank cuts its rows into parts whose backward passes do not synchronise but the
    last: the epoch still equals one process taking whole batches."""
    _run([*TORCHRUN, "--standalone", "--nproc-per-node", "2", str(HERE / "ddp_worker.py"), str(tmp_path),
          str(micro_batches)])
    result = torch.load(tmp_path / "result.pt", weights_only=False)
    rows = [torch.load(tmp_path / f"rows{r}.pt", weights_only=False)["rows"] for r in range(2)]
    batches = result["batches"]
    assert len(rows[0]) == len(rows[1]) == len(batches)
    for batch, part0, part1 in zip(batches, *rows, strict=True):       # disjoint halves of each global batch
        assert not set(part0.tolist()) & set(part1.tolist())
        assert sorted([*part0.tolist(), *part1.tolist()]) == sorted(batch.tolist())

    # the same epoch in one process: same initial weights, same global batches
    sys.path.insert(0, str(HERE))
    try:
        from ddp_worker import CONFIG
    finally:
        sys.path.remove(str(HERE))
    config = api.make_config(**CONFIG)
    torch.set_num_threads(1)
    split = api.load_split(config)
    model = build_model("sasrec", split.data.num_items, config.model.params)
    model.load_state_dict(result["initial"])
    trainer = Trainer(model, split, config)
    trainer._train_epoch(1)
    worst = max(float((model.state_dict()[k] - v).abs().max()) for k, v in result["trained"].items())
    moved = max(float((result["initial"][k] - v).abs().max()) for k, v in result["trained"].items())
    assert moved > 1e-2                                     # the epoch did train
    assert worst < 1e-4, f"DDP and one process differ by {worst} after one epoch"
    print(f"largest parameter difference DDP vs one process after one epoch: {worst:.2e}")  # noqa: T201

    # distributed evaluation: exactly the one-process ranks of the DDP-trained weights
    model.load_state_dict(result["trained"])
    expected = target_ranks(model, split.test, batch_size=97)
    np.testing.assert_array_equal(result["ranks"].numpy(), expected)
    assert 0 < int((result["own_ranks"] > 0).sum()) < len(expected)      # rank 0 ranked only its share


def _launch_nproc(out: Path, *extra: str) -> subprocess.CompletedProcess:
    return _run([*SEQREC, "train", "--nproc", "2", *TINY, "--out", str(out), *extra])


@pytest.mark.slow
def test_nproc_run_writes_once_and_resumes_with_another_world_size(tmp_path):
    out = tmp_path / "run"
    first = _launch_nproc(out, "--set", "train.epochs=2")
    records = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1, 2]                       # one writer: no duplicated records
    assert first.stdout.count("best epoch") == 1                          # one results table, from rank 0
    assert first.stderr.count("epoch 2  loss") == 1
    results = json.loads((out / "results.json").read_text())
    assert results["distributed"] == {"world_size": 2, "backend": "gloo", "batch_size": "global"}
    assert load_checkpoint(out / "checkpoints" / "last.pt")["world_size"] == 2
    assert not [p.name for p in out.rglob(".*tmp*")]                      # no half-written files

    # continue in one process, then back in two
    _run([*SEQREC, "train", "--out", str(out), "--resume", "--set", "train.epochs=3", "--quiet"])
    assert load_checkpoint(out / "checkpoints" / "last.pt")["world_size"] == 1
    _launch_nproc(out, "--resume", "--set", "train.epochs=4")
    records = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1, 2, 3, 4]
    assert json.loads((out / "results.json").read_text())["epochs_run"] == 4


def test_nproc_reports_a_bad_config_once_before_starting_processes(tmp_path):
    result = subprocess.run([*SEQREC, "train", "--nproc", "2", "--set", "train.lr=-1", "--out", str(tmp_path / "r")],
                            capture_output=True, text=True, timeout=120, env=_env())
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "error: train.lr: value -1 is not allowed; expected a number > 0 (from --set train.lr=-1)"]
    assert not (tmp_path / "r").exists()


def _children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        text = (task / "children").read_text().split()
        found.extend(int(child) for child in text)
    return found


@pytest.mark.slow
def test_a_killed_rank_ends_the_run_cleanly(tmp_path):
    out = tmp_path / "run"
    args = [*TORCHRUN, "--standalone", "--nproc-per-node", "2", "-m", "seqrec", "train", *TINY,
            "--set", "train.epochs=500", "--set", "train.patience=0", "--out", str(out)]
    launcher = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env())
    try:
        deadline = time.monotonic() + 180
        while not (out / "checkpoints" / "last.pt").exists():
            assert launcher.poll() is None, launcher.communicate()[1][-3000:]
            assert time.monotonic() < deadline, "no checkpoint within 180 s"
            time.sleep(0.2)
        ranks = _children(launcher.pid)
        assert len(ranks) == 2
        os.kill(ranks[1], signal.SIGKILL)
        killed = time.monotonic()
        _, stderr = launcher.communicate(timeout=KILL_DEADLINE_S)
        took = time.monotonic() - killed
    finally:
        if launcher.poll() is None:
            launcher.kill()
    assert launcher.returncode != 0
    assert took < KILL_DEADLINE_S
    print(f"the run ended {took:.1f} s after one rank was killed")  # noqa: T201
    assert "SIGKILL" in stderr or "Signal 9" in stderr                    # torchrun names the dead rank
    assert load_checkpoint(out / "checkpoints" / "last.pt")["epoch"] >= 1  # still loadable


@pytest.mark.slow
def test_two_machines_on_loopback_with_c10d_rendezvous(tmp_path):
    out = tmp_path / "run"
    port = _free_port()
    args = [*TORCHRUN, "--nnodes", "2", "--nproc-per-node", "1", "--rdzv-backend", "c10d",
            "--rdzv-endpoint", f"127.0.0.1:{port}", "--rdzv-id", "seqrec-test", "-m", "seqrec", "train", *TINY,
            "--set", "train.epochs=2", "--set", "loss.name=sampled_softmax", "--set", "loss.negatives=in_batch",
            "--set", "loss.negatives_across_ranks=true", "--set", "train.sparse_embeddings=true", "--out", str(out)]
    nodes = [subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env())
             for _ in range(2)]
    outputs = [node.communicate(timeout=240) for node in nodes]
    for node, (_, stderr) in zip(nodes, outputs, strict=True):
        assert node.returncode == 0, stderr[-3000:]
    results = json.loads((out / "results.json").read_text())
    assert results["distributed"]["world_size"] == 2
    assert sum(stdout.count("best epoch") for stdout, _ in outputs) == 1
    assert results["test"]["HR@10"] > 0.08         # in-batch negatives from both ranks learned (Pop: 0.043)
