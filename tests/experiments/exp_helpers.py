"""Shared pieces of the experiment tests: a tiny SASRec config on the demo data and a small search space."""

from __future__ import annotations

import textwrap
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
