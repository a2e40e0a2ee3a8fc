"""Prepared-data cache: hits, rebuilds on changed files or options, recovery from corrupt entries."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from seqrec.data.pipeline import load
from seqrec.errors import DataError

CSV = "user,item,time\n" + "".join(f"u{u},i{(u * 7 + k) % 13},{100 * k + u}\n" for u in range(8) for k in range(6))


@pytest.fixture
def log_file(tmp_path):
    path = tmp_path / "log.csv"
    path.write_text(CSV)
    return path


def _same(a, b):
    return (np.array_equal(a.offsets, b.offsets) and np.array_equal(a.items, b.items)
            and np.array_equal(a.times, b.times) and np.array_equal(a.users.raw, b.users.raw)
            and np.array_equal(a.item_vocab.raw, b.item_vocab.raw))


def test_second_load_is_a_cache_hit_with_identical_data(log_file, cache_dir):
    first = load(log_file, cache_dir=cache_dir)
    second = load(log_file, cache_dir=cache_dir)
    assert (first.info["cache_hit"], second.info["cache_hit"]) == (False, True)
    assert _same(first, second)
    assert second.summary()["users"] == 8 and second.has_time
    assert sorted(p.suffix for p in cache_dir.iterdir()) == [".json", ".npz"]   # no temporary files left


def test_changed_file_rebuilds(log_file, cache_dir):
    load(log_file, cache_dir=cache_dir)
    log_file.write_text(CSV + "u99,i1,5\n")
    again = load(log_file, cache_dir=cache_dir)
    assert not again.info["cache_hit"]
    assert again.num_users == 9


def test_touched_file_with_same_bytes_still_hits(log_file, cache_dir):
    load(log_file, cache_dir=cache_dir)
    os.utime(log_file, ns=(1, 1))
    assert load(log_file, cache_dir=cache_dir).info["cache_hit"]


def test_changed_option_rebuilds(log_file, cache_dir):
    plain = load(log_file, cache_dir=cache_dir)
    filtered = load(log_file, cache_dir=cache_dir, min_item_count=4)
    assert not filtered.info["cache_hit"]
    assert filtered.num_interactions < plain.num_interactions
    assert load(log_file, cache_dir=cache_dir).info["cache_hit"]


@pytest.mark.parametrize("damage", ["truncate_npz", "flip_npz", "delete_npz", "garble_json"])
def test_corrupt_cache_entry_is_rebuilt_not_trusted(log_file, cache_dir, damage):
    good = load(log_file, cache_dir=cache_dir)
    npz = next(cache_dir.glob("*.npz"))
    meta = next(cache_dir.glob("*.json"))
    if damage == "truncate_npz":
        npz.write_bytes(npz.read_bytes()[: npz.stat().st_size // 2])
    elif damage == "flip_npz":
        raw = bytearray(npz.read_bytes())
        raw[len(raw) // 2] ^= 0xFF
        npz.write_bytes(bytes(raw))
    elif damage == "delete_npz":
        npz.unlink()
    else:
        meta.write_text("{not json")
    rebuilt = load(log_file, cache_dir=cache_dir)
    assert not rebuilt.info["cache_hit"]
    assert _same(good, rebuilt)
    assert load(log_file, cache_dir=cache_dir).info["cache_hit"]


def test_cache_entry_with_invalid_arrays_is_rebuilt(log_file, cache_dir):
    """A structurally wrong entry whose digest matches (e.g. written by a buggy version) is still refused."""
    load(log_file, cache_dir=cache_dir)
    npz = next(cache_dir.glob("*.npz"))
    meta = next(cache_dir.glob("*.json"))
    with np.load(npz) as z:
        arrays = {k: z[k] for k in z.files}
    arrays["offsets"] = arrays["offsets"][::-1].copy()
    with open(npz, "wb") as f:
        np.savez(f, **arrays)
    from seqrec.data.cache import file_digest
    record = json.loads(meta.read_text())
    record.update(npz_blake2b=file_digest(npz), npz_size=npz.stat().st_size)
    meta.write_text(json.dumps(record))
    assert not load(log_file, cache_dir=cache_dir).info["cache_hit"]


def test_bad_file_writes_nothing_to_the_cache(tmp_path, cache_dir):
    bad = tmp_path / "bad.csv"
    bad.write_text("user,item,time\nu1,i1,10\nu1,i2,yesterday\n")
    with pytest.raises(DataError, match="yesterday"):
        load(bad, cache_dir=cache_dir)
    assert list(cache_dir.iterdir()) == []


def test_missing_and_directory_sources(tmp_path, cache_dir):
    with pytest.raises(DataError, match="no such file"):
        load(tmp_path / "nope.csv", cache_dir=cache_dir)
    with pytest.raises(DataError, match="is a directory"):
        load(tmp_path, cache_dir=cache_dir)


def test_demo_source_is_cached(cache_dir):
    first = load("demo", cache_dir=cache_dir)
    second = load("demo", cache_dir=cache_dir)
    assert second.info["cache_hit"] and _same(first, second)
    assert first.num_users > 100 and first.has_time


@pytest.mark.realdata
def test_real_ml1m_through_the_cache(dataset, cache_dir):
    path = dataset("ml-1m-sasrec/ml-1m.txt")
    first = load(path, format="pairs", cache_dir=cache_dir)
    second = load(path, format="pairs", cache_dir=cache_dir)
    assert second.info["cache_hit"] and _same(first, second)
    assert (second.num_users, second.num_items, second.num_interactions) == (6040, 3416, 999_611)
