"""Fixtures of the experiment tests (their shared texts are in exp_helpers.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from exp_helpers import SPACE, TINY, write


@pytest.fixture
def tiny_config(tmp_path) -> Path:
    return write(tmp_path / "tiny.yaml", TINY)


@pytest.fixture
def space_file(tmp_path) -> Path:
    return write(tmp_path / "space.yaml", SPACE)


@pytest.fixture(scope="module")
def module_dir(tmp_path_factory, request):
    """A folder for one test module's shared study or runs, its own prepared-data cache set while it is made
    (module fixtures run before the per-test private cache of tests/conftest.py)."""
    import os

    root = tmp_path_factory.mktemp(request.module.__name__.rpartition(".")[2])
    old = os.environ.get("SEQREC_CACHE")
    os.environ["SEQREC_CACHE"] = str(root / "cache")
    yield root
    if old is None:
        os.environ.pop("SEQREC_CACHE", None)
    else:
        os.environ["SEQREC_CACHE"] = old
