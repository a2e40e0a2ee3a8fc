"""Resources: a data file that changes while being read, a cache folder that cannot be written, a read-only run
directory, and requests sized beyond what there is; each a clear error or a right answer, never a traceback."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from seqrec.data.readers import read_interactions
from seqrec.errors import DataError
from seqrec.recommend import Recommender, RecommendError


def test_a_file_growing_while_read_is_refused_not_half_read(tmp_path):
    """Regression: a file appended to during the read was parsed from whatever prefix was read, its last
    line possibly cut in the middle of an id (`u1,12` of `u1,1234`)."""
    path = tmp_path / "log.csv"
    rows = "".join(f"u{n % 997},{n % 5003},{n}\n" for n in range(400_000))
    path.write_text("user,item,time\n" + rows)
    appender = ("import sys, itertools\n"
                "with open(sys.argv[1], 'a') as f:\n"
                "    for n in itertools.count():\n"
                "        f.write(f'u{n % 997},{n % 5003},{10 ** 7 + n}\\n'); f.flush()\n")
    writer = subprocess.Popen([sys.executable, "-c", appender, str(path)])   # a process: no GIL to share
    refused = reads = 0
    try:
        while refused < 3 and reads < 200:
            reads += 1
            try:
                data = read_interactions(path)
            except DataError as error:
                assert "changed while it was being read" in str(error) and str(path) in str(error)
                refused += 1
            else:            # read between two appends: every row whole (each line ends as written)
                assert data.frame["time"].is_sorted() and data.frame.height >= 400_000
    finally:
        writer.kill()
        writer.wait()
    assert refused >= 1, f"no read of {reads} overlapped an append"
    complete = read_interactions(path)                                       # once written, it reads
    assert complete.frame.height == len(path.read_text().splitlines()) - 1


def test_a_cache_folder_that_cannot_be_written_only_costs_the_cache(demo_run, tmp_path, monkeypatch):
    """Regression: SEQREC_CACHE naming a file (or any folder that cannot be written) made `Recommender.load` and
    every command fail with FileExistsError / PermissionError tracebacks; the data is rebuilt without it."""
    run_dir, cache = demo_run
    monkeypatch.setenv("SEQREC_CACHE", str(cache))
    reference = Recommender.load(run_dir).recommend(history=[1007, 1014], k=5).items
    not_a_folder = tmp_path / "cache-is-a-file"
    not_a_folder.write_text("x")
    monkeypatch.setenv("SEQREC_CACHE", str(not_a_folder))
    rec = Recommender.load(run_dir)
    assert rec.recommend(history=[1007, 1014], k=5).items == reference
    assert not_a_folder.read_text() == "x"                                   # what was there is intact
    env = {**os.environ, "SEQREC_CACHE": str(not_a_folder)}
    done = subprocess.run([sys.executable, "-m", "seqrec.cli", "recommend", str(run_dir), "--items", "1007,1014",
                           "-k", "5"], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
    assert "cannot write the prepared-data cache" in done.stderr and str(reference[0][0]) in done.stdout


def _small_tmpfs(target: Path, size: str) -> bool:
    """Mount a tmpfs of `size` at `target` (a full disk after a few writes); False without the rights."""
    target.mkdir()
    return os.geteuid() == 0 and subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(target)],
                                                capture_output=True).returncode == 0


def _read_only_bind(source: Path, target: Path) -> bool:
    """Bind-mount `source` read-only at `target` (needs root and mount rights); False when not possible."""
    target.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        return False
    first = subprocess.run(["mount", "--bind", str(source), str(target)], capture_output=True)
    if first.returncode != 0:
        return False
    again = subprocess.run(["mount", "-o", "remount,bind,ro", str(target)], capture_output=True)
    if again.returncode != 0:
        subprocess.run(["umount", str(target)], capture_output=True)
        return False
    return True


def test_a_read_only_run_directory_and_cache_still_recommend(demo_run, tmp_path, monkeypatch):
    run_dir, cache = demo_run
    ro_run, ro_cache = tmp_path / "ro-run", tmp_path / "ro-cache"
    if not _read_only_bind(run_dir, ro_run):
        pytest.skip("needs root and mount rights for a read-only bind mount")
    try:
        if not _read_only_bind(cache, ro_cache):
            pytest.skip("needs root and mount rights for a read-only bind mount")
        with pytest.raises(OSError):
            (ro_run / "probe").write_text("x")                               # truly read-only, even for root
        before = sorted(p.name for p in ro_run.rglob("*"))
        monkeypatch.setenv("SEQREC_CACHE", str(ro_cache))
        rec = Recommender.load(ro_run)
        monkeypatch.setenv("SEQREC_CACHE", str(cache))
        assert rec.recommend(history=[1007, 1014], k=5).items == \
            Recommender.load(run_dir).recommend(history=[1007, 1014], k=5).items
        empty = tmp_path / "empty-cache"
        empty.mkdir()
        if _read_only_bind(empty, tmp_path / "ro-empty"):                  # a miss that cannot be written
            try:
                monkeypatch.setenv("SEQREC_CACHE", str(tmp_path / "ro-empty"))
                assert Recommender.load(ro_run).recommend(history=[1007, 1014], k=5).items == \
                    rec.recommend(history=[1007, 1014], k=5).items
            finally:
                subprocess.run(["umount", str(tmp_path / "ro-empty")], capture_output=True)
        assert sorted(p.name for p in ro_run.rglob("*")) == before
    finally:
        subprocess.run(["umount", str(ro_cache)], capture_output=True)
        subprocess.run(["umount", str(ro_run)], capture_output=True)


def test_a_huge_k_or_a_bad_batch_size_is_bounded_or_refused(demo_run, monkeypatch):
    """Regression: recommend_batch(k=10**12) tried to allocate a [users, 10**12] table (MemoryError), and
    batch_size=0 raised numpy's ValueError."""
    run_dir, cache = demo_run
    monkeypatch.setenv("SEQREC_CACHE", str(cache))
    rec = Recommender.load(run_dir)
    users = rec.data.users.raw[:3].tolist()
    table = rec.recommend_batch(users, k=10 ** 12)                  # every unseen item, ranked, for each user
    assert table.height == sum(rec.num_items - np.unique(rec.data.sequence(i)).size for i in range(3))
    first = table.filter(table["query"] == users[0]).sort("rank")
    assert first["item"].to_list() == [item for item, _ in rec.recommend(users[0], k=10 ** 12).items]
    for bad in (0, -1, 2.5, True):
        with pytest.raises(RecommendError, match="batch_size must be a positive integer"):
            rec.recommend_batch(users, k=3, batch_size=bad)
    with pytest.raises(RecommendError, match="k must be a positive integer"):
        rec.recommend_batch(users, k=2.5)


def test_recommendations_to_a_full_disk_fail_clearly_and_keep_the_old_file(demo_run, tmp_path, capsys, monkeypatch):
    """Regression: `seqrec recommend --users-file ... -o` on a full disk or into a missing folder ended in a
    polars traceback, after truncating a file already there."""
    from seqrec.cli import main

    run_dir, cache = demo_run
    monkeypatch.setenv("SEQREC_CACHE", str(cache))
    users = tmp_path / "users.txt"
    users.write_text("".join(f"{u}\n" for u in Recommender.load(run_dir).data.users.raw[:500].tolist()))
    assert main(["recommend", str(run_dir), "--users-file", str(users), "-o", str(tmp_path / "no" / "x.csv")]) == 1
    assert "the folder" in capsys.readouterr().err and not (tmp_path / "no").exists()
    full = tmp_path / "full"
    if not _small_tmpfs(full, "16k"):
        pytest.skip("needs root and mount rights for a small tmpfs")
    try:
        (full / "top.csv").write_text("old\n")
        assert main(["recommend", str(run_dir), "--users-file", str(users), "-k", "20", "-o",
                     str(full / "top.csv")]) == 1
        err = capsys.readouterr().err
        assert "No space left on device" in err and "Traceback" not in err
        assert [p.name for p in full.iterdir()] == ["top.csv"] and (full / "top.csv").read_text() == "old\n"
    finally:
        subprocess.run(["umount", str(full)], capture_output=True)
    assert main(["recommend", str(run_dir), "--users-file", str(users), "-k", "2", "-o", str(tmp_path / "t.csv")]) == 0
    assert len((tmp_path / "t.csv").read_text().splitlines()) == 1 + 2 * 500


def test_training_onto_a_full_or_read_only_disk_is_one_clear_error(tmp_path, capsys):
    from seqrec.cli import main

    tiny = ["--set", "model.dim=8", "--set", "model.max_len=10", "--set", "train.epochs=2", "--quiet"]
    full = tmp_path / "full"
    if not _small_tmpfs(full, "48k"):
        pytest.skip("needs root and mount rights for a small tmpfs")
    try:
        assert main(["train", *tiny, "--out", str(full / "run")]) == 1          # the checkpoints do not fit
        err = capsys.readouterr().err
        assert "Traceback" not in err and err.splitlines()[-1].startswith("error: ")
        assert "disk" in err or "No space left" in err
    finally:
        subprocess.run(["umount", str(full)], capture_output=True)
    source, read_only = tmp_path / "ro-source", tmp_path / "ro"
    source.mkdir()
    if not _read_only_bind(source, read_only):
        pytest.skip("needs root and mount rights for a read-only bind mount")
    try:
        assert main(["train", *tiny, "--out", str(read_only / "run")]) == 1
        err = capsys.readouterr().err
        assert "Read-only file system" in err and str(read_only / "run") in err and "Traceback" not in err
    finally:
        subprocess.run(["umount", str(read_only)], capture_output=True)


def test_loading_a_file_that_grows_meanwhile_caches_nothing(tmp_path):
    """Regression: the file was fingerprinted, then read; a change in between cached the new rows under the old
    content's key. Now a load overlapping appends is refused (by the reader or by the pipeline's check that the
    file read is the one fingerprinted) and leaves no cache entry."""
    from seqrec.data.pipeline import load

    path, cache = tmp_path / "log.csv", tmp_path / "cache"
    path.write_text("user,item,time\n" + "".join(f"u{n % 997},{n % 5003},{n}\n" for n in range(300_000)))
    appender = ("import sys, itertools, time\n"
                "with open(sys.argv[1], 'a') as f:\n"
                "    for n in itertools.count():\n"
                "        f.write(f'u{n % 997},{n % 5003},{10 ** 7 + n}\\n'); f.flush(); time.sleep(0.001)\n")
    writer = subprocess.Popen([sys.executable, "-c", appender, str(path)])
    refused = 0
    try:
        for _ in range(5):
            with pytest.raises(DataError, match="changed while it was being read"):
                load(path, cache_dir=cache)
            refused += 1
    finally:
        writer.kill()
        writer.wait()
    assert refused == 5 and not (cache.exists() and list(cache.glob("*.npz")))
    assert load(path, cache_dir=cache).info["cache_hit"] is False                # complete now: read and cached
    assert load(path, cache_dir=cache).info["cache_hit"] is True
