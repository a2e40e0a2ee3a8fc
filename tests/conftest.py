"""Shared test fixtures.

Real datasets are read from `$SEQREC_DATA` (default: `../shared/datasets` beside the repository). Tests that
need them use the `dataset` fixture: when a file is missing they are skipped with a message saying how to get
the data, unless `SEQREC_REQUIRE_DATA=1` (set by CI), which turns the skip into a failure.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DATA_ROOT = Path(os.environ.get("SEQREC_DATA", REPO.parent / "shared" / "datasets"))
REQUIRE_DATA = os.environ.get("SEQREC_REQUIRE_DATA", "") not in ("", "0", "false", "no")


def _dataset_path(relative: str) -> Path:
    path = DATA_ROOT / relative
    if not path.exists():
        message = (
            f"real dataset {relative!r} not found under {DATA_ROOT}; set SEQREC_DATA to the folder holding the "
            "datasets (see ../shared/datasets/README.md, or `seqrec data download` for the public ones)"
        )
        if REQUIRE_DATA:
            pytest.fail(message + " [SEQREC_REQUIRE_DATA is set, so this is a failure]")
        pytest.skip(message)
    return path


@pytest.fixture
def dataset():
    """Return a function mapping a path relative to $SEQREC_DATA to an existing Path (skip/fail if missing)."""
    return _dataset_path


@pytest.fixture
def cache_dir(tmp_path: Path) -> Path:
    """A private cache folder for one test."""
    path = tmp_path / "cache"
    path.mkdir()
    return path


@pytest.fixture(autouse=True)
def _private_seqrec_folders(tmp_path_factory, monkeypatch):
    """Keep every test's caches and downloads out of the user's home folder."""
    base = tmp_path_factory.mktemp("seqrec-home")
    monkeypatch.setenv("SEQREC_CACHE", str(base / "prepared"))
    monkeypatch.setenv("SEQREC_DATASETS", str(base / "datasets"))


DEMO_RUN_MODEL = {"name": "sasrec", "dim": 16, "num_blocks": 1, "max_len": 20, "dropout": 0.1}


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory) -> tuple[Path, Path]:
    """(run directory, its prepared-data cache) of a small SASRec trained for 2 epochs on the demo data.

    Shared by the recommend and serve tests; the run reloads its data from that cache."""
    from seqrec import api

    root = tmp_path_factory.mktemp("demo-run")
    cache = root / "cache"
    old = os.environ.get("SEQREC_CACHE")
    os.environ["SEQREC_CACHE"] = str(cache)
    try:
        api.train("demo", model=DEMO_RUN_MODEL, train={"epochs": 2, "progress": False, "seed": 3, "lr": 3e-3},
                  out=root / "run")
    finally:
        if old is None:
            os.environ.pop("SEQREC_CACHE", None)
        else:
            os.environ["SEQREC_CACHE"] = old
    return root / "run", cache
