"""On-disk cache of prepared data: `<key>.npz` (arrays, no pickle) + `<key>.json` (metadata, written last).

The key is a hash of the source fingerprint (size, mtime, content hash) and every option that changes the
result, so a changed file or option misses the cache. The JSON records a digest of the `.npz`; a missing,
truncated or corrupt file, or arrays that do not form valid CSR sequences, are detected on load and the
entry is rebuilt rather than trusted. Writes go to temporary files renamed into place, so a crash mid-write
never leaves an entry that loads.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import zipfile
from pathlib import Path

import numpy as np

from seqrec.data.sequences import SequenceData
from seqrec.data.vocab import Vocab
from seqrec.fileio import atomic_write, write_json

log = logging.getLogger(__name__)

CACHE_FORMAT = 1
_CHUNK = 1 << 22


def file_digest(path: str | os.PathLike[str]) -> str:
    """blake2b-128 hex digest of a file's bytes, read in chunks."""
    digest = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def source_fingerprint(path: str | os.PathLike[str]) -> dict:
    """Size, modification time and content hash of a source file."""
    stat = os.stat(path)
    return {"path": str(Path(path).resolve()), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns,
            "blake2b": file_digest(path)}


def cache_key(fingerprint: dict, options: dict) -> str:
    """Key of a cache entry: hash of the source fingerprint (content, not path or mtime) and the options."""
    identity = {k: v for k, v in fingerprint.items() if k not in ("path", "mtime_ns")}
    blob = json.dumps({"format": CACHE_FORMAT, "source": identity, "options": options}, sort_keys=True)
    return hashlib.blake2b(blob.encode(), digest_size=12).hexdigest()


def save(data: SequenceData, folder: Path, key: str, meta: dict) -> Path:
    """Write an entry atomically; returns the `.npz` path."""
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {"offsets": data.offsets, "items": data.items, "times": data.times,
              "user_raw": data.users.raw, "item_raw": data.item_vocab.raw}
    if data.ratings is not None:
        arrays["ratings"] = data.ratings
    # the .npz first, then the .json that vouches for it: a kill in between leaves an entry `load` ignores
    npz_path = atomic_write(folder / f"{key}.npz", lambda handle: np.savez(handle, allow_pickle=False, **arrays))
    record = {"format": CACHE_FORMAT, "key": key, "npz_blake2b": file_digest(npz_path),
              "npz_size": npz_path.stat().st_size, "has_time": data.has_time, "source": data.source,
              "info": data.info, **meta}
    write_json(folder / f"{key}.json", record, indent=1, sort_keys=True)
    return npz_path


def load(folder: Path, key: str) -> SequenceData | None:
    """Load an entry; None when it is absent or fails any check (the caller then rebuilds it)."""
    json_path, npz_path = folder / f"{key}.json", folder / f"{key}.npz"
    if not json_path.exists():
        return None
    try:
        record = json.loads(json_path.read_text())
        if record.get("format") != CACHE_FORMAT or record.get("key") != key:
            raise ValueError("cache format or key mismatch")
        if npz_path.stat().st_size != record["npz_size"] or file_digest(npz_path) != record["npz_blake2b"]:
            raise ValueError("npz size or digest differs from the record")
        with np.load(npz_path, allow_pickle=False) as z:
            arrays = {name: z[name] for name in z.files}
        data = SequenceData(
            offsets=arrays["offsets"], items=arrays["items"], times=arrays["times"],
            users=Vocab(arrays["user_raw"], start=0, kind="user"),
            item_vocab=Vocab(arrays["item_raw"], start=1, kind="item"),
            ratings=arrays.get("ratings"), has_time=bool(record["has_time"]), source=record["source"],
            info=dict(record.get("info", {})),
        )
        _check(data)
        return data
    except (OSError, ValueError, KeyError, TypeError, zipfile.BadZipFile, json.JSONDecodeError) as exc:
        log.warning("ignoring unusable cache entry %s (%s); rebuilding", npz_path, exc)
        return None


def _check(data: SequenceData) -> None:
    """Structural checks: CSR offsets valid, arrays aligned, item ids within the vocabulary."""
    offsets, n = data.offsets, data.items.shape[0]
    if offsets.ndim != 1 or offsets.shape[0] != len(data.users) + 1 or offsets[0] != 0 or offsets[-1] != n:
        raise ValueError("offsets do not match the arrays")
    if np.any(np.diff(offsets) < 0):
        raise ValueError("offsets are not monotone")
    if data.times.shape[0] != n or (data.ratings is not None and data.ratings.shape[0] != n):
        raise ValueError("times or ratings not aligned with items")
    if n and (data.items.min() < 1 or data.items.max() > data.num_items):
        raise ValueError("item ids outside the vocabulary")
