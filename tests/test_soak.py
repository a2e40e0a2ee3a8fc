"""The crash soak's short version (benchmarks/soak_train.py runs the long one): training and data preparation
killed with SIGKILL at random moments and resumed leave no corrupt file and end with the uninterrupted
run's metrics and summary."""

import random
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import soak_train  # noqa: E402


@pytest.mark.slow
def test_random_kills_of_training_and_resumes(tmp_path):
    stats = soak_train.soak_training(tmp_path, kills=3, rng=random.Random(1), log=lambda *_: None)
    assert stats["kills"] == 3 and stats["runs_finished"] >= 1
    assert stats["corrupt"] == [] and stats["mismatches"] == [] and stats["errors"] == []


@pytest.mark.slow
def test_kills_inside_atomic_writes(tmp_path):
    soak_train.soak_training(tmp_path, kills=0, rng=random.Random(1), log=lambda *_: None)      # the reference
    stats = soak_train.soak_writes(tmp_path, kills=3, rng=random.Random(4), log=lambda *_: None, timeout=300)
    assert stats["kills_inside_a_write"] == 3 and sum(stats["written_files_hit"].values()) >= 3
    assert stats["corrupt"] == [] and stats["mismatches"] == [] and stats["errors"] == []


@pytest.mark.slow
def test_random_kills_of_data_prepare(tmp_path):
    stats = soak_train.soak_prepare(tmp_path, kills=2, rows=300_000, rng=random.Random(2), log=lambda *_: None)
    assert stats["kills"] == 2 and stats["mismatches"] == [] and stats["errors"] == []
    assert stats["hits_after_kill"] + stats["rebuilds_after_kill"] == 2


def test_the_integrity_check_notices_a_torn_checkpoint(tmp_path):
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "last.pt").write_bytes(b"PK\x03\x04 torn")
    (run / "curves.png").write_bytes(b"\x89PNG\r\n\x1a\n half")
    problems = soak_train.check_run_dir(run)
    assert len(problems) == 2 and "last.pt" in problems[0] + problems[1] and "curves.png" in " ".join(problems)
