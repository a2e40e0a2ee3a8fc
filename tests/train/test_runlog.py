"""Run logs: the epoch JSONL log, atomic writes, run folders, curve plots and the progress display."""

from __future__ import annotations

import json
import logging
import math
import os
import pty
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest

from seqrec.errors import DataError
from seqrec.train.runlog import EpochLog, Progress, curves_figure, make_run_dir, plot_curves, write_json, write_text

SRC = Path(__file__).resolve().parents[2] / "src"


def _records(n: int) -> list[dict]:
    return [{"epoch": e, "loss": 1.0 / e, "valid": {"NDCG@10": 0.1 * e - 0.01 * max(0, e - 4) ** 2}}
            for e in range(1, n + 1)]


def test_epoch_log_append_and_records(tmp_path):
    log = EpochLog(tmp_path / "log.jsonl")
    assert log.records() == []
    for record in _records(3):
        log.append(record)
    assert log.records() == _records(3)
    lines = (tmp_path / "log.jsonl").read_text().splitlines()
    assert [json.loads(line) for line in lines] == _records(3)
    # A second instance on the same file (a resumed run) sees and extends the same log.
    EpochLog(tmp_path / "log.jsonl").append({"epoch": 4, "loss": 0.2})
    assert [r["epoch"] for r in log.records()] == [1, 2, 3, 4]


def test_truncate_after_drops_later_epochs(tmp_path):
    log = EpochLog(tmp_path / "log.jsonl")
    for record in _records(6):
        log.append(record)
    log.append({"note": "no epoch key"})
    log.truncate_after(3)
    assert [r.get("epoch") for r in log.records()] == [1, 2, 3, None]
    log.append({"epoch": 4, "loss": 9.0})
    assert log.records()[-1] == {"epoch": 4, "loss": 9.0}
    log.truncate_after(0)
    assert log.records() == [{"note": "no epoch key"}]
    assert [p.name for p in tmp_path.iterdir()] == ["log.jsonl"]  # no temp files left behind


def test_torn_last_line_is_dropped_with_a_warning_and_repaired_on_append(tmp_path, caplog):
    path = tmp_path / "log.jsonl"
    log = EpochLog(path)
    for record in _records(2):
        log.append(record)
    with open(path, "ab") as handle:  # what a kill in the middle of a write leaves
        handle.write(b'{"epoch": 3, "loss": 0.3')
    with caplog.at_level(logging.WARNING, logger="seqrec.train.runlog"):
        assert log.records() == _records(2)
    assert "torn last line 3" in caplog.text
    log.append({"epoch": 3, "loss": 0.25})
    assert log.records() == [*_records(2), {"epoch": 3, "loss": 0.25}]
    assert path.read_text().count("\n") == 3 and '"loss": 0.3,' not in path.read_text()


def test_complete_last_line_without_newline_is_kept(tmp_path):
    path = tmp_path / "log.jsonl"
    path.write_text('{"epoch": 1}\n{"epoch": 2}')
    log = EpochLog(path)
    assert log.records() == [{"epoch": 1}, {"epoch": 2}]
    log.append({"epoch": 3})
    assert log.records() == [{"epoch": 1}, {"epoch": 2}, {"epoch": 3}]


def test_damaged_middle_line_is_an_error_naming_the_line(tmp_path):
    path = tmp_path / "log.jsonl"
    path.write_text('{"epoch": 1}\n{"epoch": 2, oops\n{"epoch": 3}\n')
    with pytest.raises(DataError, match=r"log\.jsonl:2"):
        EpochLog(path).records()
    path.write_text('{"epoch": 1}\n[1, 2]\n')
    with pytest.raises(DataError, match="not a JSON object"):
        EpochLog(path).records()


def test_write_json_and_text_are_atomic_replacements(tmp_path):
    path = tmp_path / "config.json"
    write_json(path, {"a": 1, "b": [1.5, None]})
    assert json.loads(path.read_text()) == {"a": 1, "b": [1.5, None]}
    with pytest.raises(TypeError):
        write_json(path, {"bad": object()})
    assert json.loads(path.read_text()) == {"a": 1, "b": [1.5, None]}  # old content intact
    write_text(tmp_path / "notes.txt", "héllo\n")
    assert (tmp_path / "notes.txt").read_text(encoding="utf-8") == "héllo\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json", "notes.txt"]
    # Files get ordinary permissions (umask-based), not the 0600 of a raw temp file.
    mask = os.umask(0)
    os.umask(mask)
    assert (tmp_path / "notes.txt").stat().st_mode & 0o777 == 0o666 & ~mask


def test_make_run_dir_is_unique_and_named_after_time_and_hint(tmp_path, monkeypatch):
    monkeypatch.setattr(time, "strftime", lambda fmt, *args: "20240102-030405")
    made = [make_run_dir(tmp_path / "runs", "sasrec/ml 1m") for _ in range(3)]
    assert [p.name for p in made] == ["20240102-030405-sasrec-ml-1m", "20240102-030405-sasrec-ml-1m-2",
                                      "20240102-030405-sasrec-ml-1m-3"]
    assert all(p.is_dir() and p.parent == tmp_path / "runs" for p in made)


def test_make_run_dir_uses_the_current_time(tmp_path):
    before = time.strftime("%Y%m%d")
    path = make_run_dir(tmp_path, "gru4rec")
    assert path.name.startswith(before[:6]) and path.name.endswith("-gru4rec") and path.is_dir()


def _png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def test_plot_curves_writes_a_png(tmp_path):
    records = _records(8)
    del records[1]["valid"]  # epochs without validation are skipped
    records.append({"epoch": 9, "loss": 0.1, "valid": {"HR@10": 0.5}})
    pyplot_loaded = "matplotlib.pyplot" in sys.modules
    path = plot_curves(records, tmp_path / "curves.png")
    assert path == tmp_path / "curves.png"
    data = path.read_bytes()
    assert _png_size(data) == (1000, 400)
    assert len(data) > 10_000
    assert ("matplotlib.pyplot" in sys.modules) == pyplot_loaded  # no pyplot global state touched
    # Another metric that no record has still produces a (mostly empty) plot rather than failing.
    assert plot_curves(records, tmp_path / "other.png", metric="MRR@5").read_bytes()[:4] == b"\x89PNG"


def test_plot_curves_of_no_records_writes_nothing(tmp_path):
    assert plot_curves([], tmp_path / "curves.png") is None
    assert not (tmp_path / "curves.png").exists()


def test_disabled_progress_prints_nothing_and_measures(capsys):
    for enabled in (False, True):  # True, but stderr is not a terminal under capsys
        with Progress(10, "epoch 1", enabled=enabled) as progress:
            for batch in range(10):
                time.sleep(0.002)
                progress.update(loss=float(batch), sequences=32)
        seconds = progress.seconds
        assert seconds >= 0.02
        assert progress.seconds == seconds  # frozen once the epoch is over
        assert progress.batches == 10 and progress.sequences == 320
        assert progress.mean_loss == pytest.approx(4.5)
        assert progress.sequences_per_second == pytest.approx(320 / seconds)
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""


def test_progress_without_losses_reports_nan():
    with Progress(1, "x", enabled=False) as progress:
        progress.update(sequences=5)
    assert math.isnan(progress.mean_loss)
    assert progress.sequences_per_second > 0


_BAR = """
import time
from seqrec.train.runlog import Progress
with Progress(4, "epoch 7", enabled=True) as progress:
    for i in range(4):
        progress.update(loss=2.0, sequences=64)
        time.sleep(0.12)
"""


def test_progress_shows_a_bar_on_a_terminal():
    leader, follower = pty.openpty()
    env = {**os.environ, "PYTHONPATH": f"{SRC}{os.pathsep}{os.environ.get('PYTHONPATH', '')}", "TERM": "xterm",
           "COLUMNS": "120"}
    env.pop("NO_COLOR", None)
    proc = subprocess.Popen([sys.executable, "-c", _BAR], stderr=follower, stdout=subprocess.DEVNULL, env=env)
    os.close(follower)
    chunks = []
    while True:
        try:
            chunk = os.read(leader, 4096)
        except OSError:  # EIO once the child has exited and closed the terminal
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(leader)
    assert proc.wait(timeout=30) == 0
    shown = b"".join(chunks).decode("utf-8", "replace")
    assert "epoch 7" in shown and "loss 2.0000" in shown and "seq/s" in shown and "4/4" in shown


def test_curves_have_whole_epoch_ticks():
    figure = curves_figure(_records(3))                                          # 3 epochs: matplotlib's default
    for axes in figure.axes:                                                     # would tick 1.0, 1.25, 1.5, ...
        figure.canvas.draw()
        ticks = [t for t in axes.get_xticks() if 1 <= t <= 3]
        assert ticks and all(float(t).is_integer() for t in ticks)
