"""Shared pieces of the experiment tests: a tiny SASRec config on the demo data, a small search space, a private
cache for module fixtures. (Not a conftest.py: tests/models imports `conftest` by name, and a second one would
shadow it.)"""

from __future__ import annotations

import os
import textwrap
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

TINY = """\
data: {path: demo}
model: {name: sasrec, dim: 16, num_blocks: 1, max_len: 20, dropout: 0.1}
train: {epochs: 3, batch_size: 128, progress: false, num_threads: 1, seed: 5}
"""

SPACE = """\
train.lr: {type: float, low: 1.0e-4, high: 1.0e-2, log: true}
model.num_blocks: {type: int, low: 1, high: 2}
loss.name: {type: categorical, choices: [ce, sampled_softmax]}
"""


def write(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text))
    return path


@contextmanager
def own_cache(root: Path) -> Iterator[Path]:
    """Set SEQREC_CACHE to `root / "cache"` while a module-scoped fixture runs (those run before the per-test
    private cache of tests/conftest.py), then restore it."""
    old = os.environ.get("SEQREC_CACHE")
    os.environ["SEQREC_CACHE"] = str(root / "cache")
    try:
        yield root
    finally:
        if old is None:
            os.environ.pop("SEQREC_CACHE", None)
        else:
            os.environ["SEQREC_CACHE"] = old
