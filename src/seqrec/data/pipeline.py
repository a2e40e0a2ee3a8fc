"""From a source (a file, the built-in demo data, or an Interactions table) to cached SequenceData.

`load` is what `seqrec.load` and `seqrec data prepare` call: it fingerprints the source, returns the cached
prepared data when the source and every option are unchanged, and otherwise reads, prepares and caches it.
A file that fails to read raises before anything is written to the cache.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from seqrec import paths
from seqrec.data import cache
from seqrec.data.options import PrepareOptions
from seqrec.data.sequences import SequenceData
from seqrec.errors import DataError

if TYPE_CHECKING:
    from seqrec.data.interactions import Interactions

DEMO = "demo"


def load(source: str | os.PathLike[str] | Interactions, *, format: str | None = None,
         columns: Mapping[str, str | int] | None = None, separator: str | None = None,
         header: bool | None = None, options: PrepareOptions | None = None, use_cache: bool = True,
         cache_dir: str | os.PathLike[str] | None = None, **prepare_overrides: Any) -> SequenceData:
    """Read, clean and cache an interaction log.

    Args:
        source: a file path, `"demo"` for the built-in synthetic data, or an Interactions table (not cached).
        format: reader format (`dat`, `csv`, `tsv`, `parquet`, `inter`, `pairs`, `sequences`, `sessions`);
            detected from the extension and content when None.
        columns: mapping of canonical names (`user`, `item`, `time`, `rating`, `session`) to the file's
            column names or 0-based positions.
        separator, header: CSV/TSV details; detected when None.
        options, prepare_overrides: cleaning options (`dedupe`, `min_rating`, `min_user_count`,
            `min_item_count`).
        use_cache: read and write the prepared-data cache.
        cache_dir: cache folder (default `seqrec.paths.cache_dir()`).

    Raises:
        seqrec.DataError: the source cannot be read or nothing is left after cleaning.
    """
    options = PrepareOptions(**{**asdict(options or PrepareOptions()), **prepare_overrides})
    if not isinstance(source, str | os.PathLike):                  # an Interactions table: prepared, not cached
        from seqrec.data.prepare import prepare

        return prepare(source, options)

    started = time.perf_counter()
    read_options = {"format": format, "columns": dict(columns) if columns else None, "separator": separator,
                    "header": header}
    if str(source) == DEMO:
        fingerprint = {"demo": _demo_config()}
    else:
        _check_path(Path(source))
        fingerprint = cache.source_fingerprint(source)
    folder = Path(cache_dir) if cache_dir is not None else paths.cache_dir()
    key = cache.cache_key(fingerprint, {"read": read_options, "prepare": options.to_dict()})

    data = cache.load(folder, key) if use_cache else None
    hit = data is not None
    if data is None:
        from seqrec.data.prepare import prepare

        interactions = _read(source, read_options)
        if str(source) != DEMO:
            _check_unchanged(Path(source), fingerprint)
        data = prepare(interactions, options)
        if use_cache:
            try:
                cache.save(data, folder, key, {"fingerprint": fingerprint, "read": read_options,
                                               "prepare": options.to_dict()})
            except OSError as error:      # a read-only, full or misnamed cache folder: the data is still right
                logging.getLogger(__name__).warning(
                    "cannot write the prepared-data cache in %s (%s); continuing without it (point SEQREC_CACHE or "
                    "--cache-dir at a writable folder, or turn the cache off)", folder,
                    error.strerror or type(error).__name__)
                use_cache = False
    data.info.update({"fingerprint": key, "cache_file": str(folder / f"{key}.npz") if use_cache else None,
                      "cache_hit": hit,
                      "seconds": round(time.perf_counter() - started, 4)})
    if hit and str(source) != DEMO:
        object.__setattr__(data, "source", str(source))
    return data


def _check_unchanged(path: Path, fingerprint: dict) -> None:
    """The file read is the one fingerprinted: else its rows would be cached under another content's key."""
    stat = os.stat(path)
    if (stat.st_size, stat.st_mtime_ns) != (fingerprint["size"], fingerprint["mtime_ns"]):
        raise DataError(f"{path} changed while it was being read (size {fingerprint['size']:,} -> "
                        f"{stat.st_size:,} bytes); nothing was cached: read it again once it is complete")


def _check_path(path: Path) -> None:
    if not path.exists():
        raise DataError(f"no such file: {path}")
    if path.is_dir():
        raise DataError(f"{path} is a directory; expected an interaction file (csv, tsv, parquet, dat, inter, txt)")


def _read(source: str | os.PathLike[str], read_options: dict) -> Interactions:
    if str(source) == DEMO:
        from seqrec.data.synthetic import generate
        return generate()
    from seqrec.data.readers import read_interactions
    return read_interactions(source, **read_options)


def _demo_config() -> dict:
    from seqrec.data.synthetic import GENERATOR_VERSION, SyntheticConfig
    return {"generator_version": GENERATOR_VERSION, **asdict(SyntheticConfig())}
