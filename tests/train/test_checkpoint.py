"""Checkpoints: round trips, refusal of pickled code, damaged files, atomicity under SIGKILL, RNG state."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
import torch

from seqrec.train.checkpoint import (
    CHECKPOINT_FORMAT,
    CheckpointError,
    load_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
)

SRC = Path(__file__).resolve().parents[2] / "src"


class Opaque:
    """An arbitrary class: torch.save pickles it by reference, weights_only loading must refuse it."""

    def __init__(self) -> None:
        self.value = 42


class Exploit:
    """Unpickling this runs a shell command; a safe loader must never do so."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


def _trained_model_and_optimizer():
    torch.manual_seed(0)
    model = torch.nn.Linear(5, 3)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    for _ in range(2):
        optimizer.zero_grad()
        model(torch.randn(8, 5)).pow(2).mean().backward()
        optimizer.step()
    return model, optimizer


def _assert_same(a, b):
    assert type(a) is type(b) or (isinstance(a, dict) and isinstance(b, dict))
    if isinstance(a, torch.Tensor):
        assert a.dtype == b.dtype and torch.equal(a, b)
    elif isinstance(a, dict):
        assert list(a) == list(b)
        for key in a:
            _assert_same(a[key], b[key])
    elif isinstance(a, list | tuple):
        assert len(a) == len(b)
        for x, y in zip(a, b, strict=True):
            _assert_same(x, y)
    else:
        assert a == b


def test_round_trip_of_model_optimizer_and_nested_values(tmp_path):
    model, optimizer = _trained_model_and_optimizer()
    payload = {
        "format": CHECKPOINT_FORMAT,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "meta": {"epoch": 7, "best": {"NDCG@10": 0.25, "epoch": 5}, "tags": ["a", ("b", 2)], "note": None,
                 "flag": True, "ordered": OrderedDict(x=1), "shape": torch.Size([2, 3]), "dtype": torch.int64},
    }
    path = tmp_path / "ckpt.pt"
    save_checkpoint(path, payload)
    loaded = load_checkpoint(path)
    _assert_same(payload, loaded)

    # The loaded state really restores a working model and optimizer.
    fresh, fresh_opt = torch.nn.Linear(5, 3), None
    fresh.load_state_dict(loaded["model"])
    fresh_opt = torch.optim.Adam(fresh.parameters(), lr=0.01)
    fresh_opt.load_state_dict(loaded["optimizer"])
    assert torch.equal(fresh.weight, model.weight)
    assert fresh_opt.state_dict()["state"][0]["step"] == optimizer.state_dict()["state"][0]["step"]


def test_format_is_added_when_missing(tmp_path):
    save_checkpoint(tmp_path / "c.pt", {"x": torch.ones(2)})
    assert load_checkpoint(tmp_path / "c.pt")["format"] == CHECKPOINT_FORMAT


def test_checkpoint_holding_an_arbitrary_object_is_refused(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"format": 1, "x": Opaque()}, path)
    with pytest.raises(CheckpointError, match="pickled code/objects.*refused") as info:
        load_checkpoint(path)
    assert "Opaque" in str(info.value)


@pytest.mark.parametrize("zip_format", [True, False])
def test_checkpoint_with_reduce_payload_is_refused_without_running_it(tmp_path, zip_format):
    sentinel = tmp_path / "SENTINEL"
    path = tmp_path / "evil.pt"
    torch.save({"format": 1, "x": Exploit(f"touch '{sentinel}'")}, path, _use_new_zipfile_serialization=zip_format)
    with pytest.raises(CheckpointError, match="pickled code/objects.*refused"):
        load_checkpoint(path)
    assert not sentinel.exists()
    # Proof that the file is a live exploit: an unsafe load does run the command.
    torch.load(path, weights_only=False)
    assert sentinel.exists()


@pytest.mark.parametrize("keep", [0.5, 0.9, 10, 0])
def test_truncated_checkpoint_is_reported(tmp_path, keep):
    path = tmp_path / "c.pt"
    save_checkpoint(path, {"w": torch.arange(1000.0), "meta": {"epoch": 3}})
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep) if isinstance(keep, float) else keep])
    with pytest.raises(CheckpointError, match="not a readable checkpoint \\(truncated or corrupt\\)"):
        load_checkpoint(path)


def test_garbage_file_is_reported(tmp_path):
    path = tmp_path / "c.pt"
    path.write_bytes(b"definitely not a checkpoint" * 10)
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_checkpoint(path)


def test_missing_checkpoint_names_the_path(tmp_path):
    path = tmp_path / "nope" / "c.pt"
    with pytest.raises(CheckpointError, match="does not exist") as info:
        load_checkpoint(path)
    assert str(path) in str(info.value)
    with pytest.raises(CheckpointError, match="directory"):
        load_checkpoint(tmp_path)


@pytest.mark.parametrize("payload", [{"format": 2, "x": 1}, {"x": 1}, [1, 2]])
def test_wrong_format_is_refused(tmp_path, payload):
    path = tmp_path / "c.pt"
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match="expected 1"):
        load_checkpoint(path)


@pytest.mark.parametrize(
    ("bad", "where"),
    [
        (np.zeros(3), "payload['extra']['arr']"),
        (np.float64(1.0), "payload['extra']['arr']"),
        (Opaque(), "payload['extra']['arr']"),
        ([1, {"deep": {1, 2}}], "payload['extra']['arr'][1]['deep']"),
    ],
)
def test_save_refuses_values_that_could_not_be_loaded(tmp_path, bad, where):
    path = tmp_path / "c.pt"
    save_checkpoint(path, {"epoch": 1})
    before = path.read_bytes()
    with pytest.raises(TypeError) as info:
        save_checkpoint(path, {"epoch": 2, "extra": {"ok": torch.ones(1), "arr": bad}})
    assert where in str(info.value)
    assert path.read_bytes() == before  # the good checkpoint was not replaced
    assert [p.name for p in tmp_path.iterdir()] == ["c.pt"]  # and no temp file was left


def test_save_refuses_non_plain_keys(tmp_path):
    with pytest.raises(TypeError, match="np.int64|int64"):
        save_checkpoint(tmp_path / "c.pt", {"counts": {np.int64(3): 1}})


def test_stale_temp_files_of_dead_writers_are_cleaned(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = tmp_path / f".c.pt.tmp-{dead.pid}-abc123"
    live = tmp_path / f".c.pt.tmp-{os.getppid()}-def456"  # a running process: a concurrent save, keep it
    other = tmp_path / f".other.pt.tmp-{dead.pid}-xyz"  # belongs to another file
    for p in (stale, live, other):
        p.write_bytes(b"partial")
    save_checkpoint(tmp_path / "c.pt", {"x": 1})
    assert not stale.exists()
    assert live.exists() and other.exists()


_WRITER = """
import sys, torch
from seqrec.train.checkpoint import save_checkpoint
path, version = sys.argv[1], int(sys.argv[2])
big = torch.empty(3_000_000)
while True:
    big.fill_(float(version))
    save_checkpoint(path, {"version": version, "big": big, "tail": torch.full((7,), version)})
    print(version, flush=True)
    version += 1
"""


def _check_complete(path: Path, low: int, high: int) -> int:
    payload = load_checkpoint(path)
    version = payload["version"]
    assert low <= version <= high
    assert payload["big"].shape == (3_000_000,) and bool((payload["big"] == version).all())
    assert torch.equal(payload["tail"], torch.full((7,), version))
    return version


@pytest.mark.slow
def test_save_is_atomic_under_sigkill(tmp_path):
    """Writers saving 12 MB checkpoints in a loop are SIGKILLed at random moments; the file stays whole."""
    env = {**os.environ, "PYTHONPATH": f"{SRC}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    paths = [tmp_path / f"w{i}" / "ckpt.pt" for i in range(2)]
    for p in paths:
        p.parent.mkdir()
    rng = random.Random(1234)
    killed_pids: list[list[int]] = []
    for round_ in range(3):
        start = round_ * 100_000
        writers = [subprocess.Popen([sys.executable, "-c", _WRITER, str(p), str(start)], env=env,
                                    stdout=subprocess.PIPE, text=True) for p in paths]
        printed = []
        for writer in writers:
            # Wait for one completed save so each round kills a process that is in its save loop.
            first = writer.stdout.readline()
            assert first.strip() == str(start), f"writer failed to start (rc={writer.poll()})"
            printed.append(int(first))
        time.sleep(rng.uniform(0.0, 0.25))
        for writer in writers:
            os.kill(writer.pid, signal.SIGKILL)
        for i, writer in enumerate(writers):
            writer.wait()
            lines = writer.stdout.read().split()
            writer.stdout.close()
            last_done = int(lines[-1]) if lines else printed[i]
            # The save in flight may have been renamed into place before its print ran: allow last_done + 1.
            _check_complete(paths[i], start, last_done + 1)
        killed_pids.append([w.pid for w in writers])
    # Every round after the first saved at least once, so temp files of earlier rounds' (dead) writers are gone.
    for p in paths:
        leftovers = {int(t.name.split(".tmp-")[1].split("-")[0]) for t in p.parent.glob(".ckpt.pt.tmp-*")}
        assert not leftovers & set(killed_pids[0] + killed_pids[1])


def _draws(generator: np.random.Generator):
    return (torch.rand(5), torch.randint(0, 1000, (4,)), generator.random(3), generator.integers(0, 10**9, 3),
            [random.random() for _ in range(3)], random.getrandbits(64), np.random.rand(2))


@pytest.mark.parametrize("bit_generator", [np.random.PCG64, np.random.MT19937, np.random.Philox])
def test_rng_state_round_trip_through_a_checkpoint(tmp_path, bit_generator):
    generator = np.random.Generator(bit_generator(2024))
    generator.random(17)  # move away from the seed state
    random.gauss(0, 1)  # leaves a cached gaussian in python's state
    state = rng_state(generator)
    save_checkpoint(tmp_path / "c.pt", {"rng": state})
    expected = _draws(generator)
    # Scramble everything, then restore from disk.
    torch.manual_seed(99)
    random.seed(99)
    np.random.seed(99)
    other = np.random.Generator(bit_generator(7))
    set_rng_state(load_checkpoint(tmp_path / "c.pt")["rng"], other)
    got = _draws(other)
    for a, b in zip(got, expected, strict=True):
        if isinstance(a, torch.Tensor):
            assert torch.equal(a, b)
        elif isinstance(a, np.ndarray):
            assert np.array_equal(a, b)
        else:
            assert a == b
    # Sanity: the scrambled generators really would have drawn something else.
    assert not torch.equal(torch.manual_seed(99) and torch.rand(5), expected[0])


def test_set_rng_state_without_numpy_state_refuses_a_generator():
    state = rng_state()
    set_rng_state(state)  # fine without a generator
    with pytest.raises(CheckpointError, match="numpy Generator"):
        set_rng_state(state, np.random.default_rng(0))
    with pytest.raises(CheckpointError, match="incomplete"):
        set_rng_state({"torch": state["torch"]})
