"""Where seqrec keeps files it makes: prepared-data cache and downloaded datasets.

Both default to folders under `~/.cache/seqrec` (or `$XDG_CACHE_HOME/seqrec`) and can be moved with
`SEQREC_CACHE` (prepared data) and `SEQREC_DATASETS` (downloads).
"""

from __future__ import annotations

import os
from pathlib import Path


def _home() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "seqrec"


def cache_dir() -> Path:
    """Folder for prepared-data caches (`SEQREC_CACHE` overrides)."""
    return Path(os.environ["SEQREC_CACHE"]) if os.environ.get("SEQREC_CACHE") else _home() / "prepared"


def datasets_dir() -> Path:
    """Folder for downloaded public datasets (`SEQREC_DATASETS` overrides)."""
    return Path(os.environ["SEQREC_DATASETS"]) if os.environ.get("SEQREC_DATASETS") else _home() / "datasets"
