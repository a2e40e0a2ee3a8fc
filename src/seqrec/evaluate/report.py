"""Reporting evaluation results: a plain-text table for terminals and logs, and atomic JSON files."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np

from seqrec.fileio import write_bytes


def format_table(rows: dict[str, dict[str, float]], metrics: list[str] | None = None) -> str:
    """An aligned plain-text table: one line per row name (model, split ...), one column per metric.

    Args:
        rows: `{name: {metric: value}}`, e.g. `{"SASRec": evaluate(...)}`.
        metrics: the columns, in order; by default every metric of the rows, in order of first appearance.

    Returns:
        The table, values with 4 decimals, "-" where a row lacks a metric; no trailing newline.
    """
    if metrics is None:
        metrics = list(dict.fromkeys(key for values in rows.values() for key in values))
    header = ["", *metrics]
    body = [[str(name), *(_cell(values.get(metric)) for metric in metrics)] for name, values in rows.items()]
    widths = [max(len(line[col]) for line in [header, *body]) for col in range(len(header))]
    lines = []
    for line in [header, *body]:
        # names left-aligned, numbers right-aligned so decimal points line up
        cells = [line[0].ljust(widths[0])] + [cell.rjust(width) for cell, width in zip(line[1:], widths[1:],
                                                                                       strict=True)]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


def _cell(value: float | None) -> str:
    if value is None:
        return "-"
    value = float(value)
    return f"{value:.4f}" if math.isfinite(value) else str(value)


def to_json(obj: object, path: str | os.PathLike[str]) -> Path:
    """Write `obj` as indented JSON to `path` atomically (a temporary file in the same folder, then rename).

    Readers never see a half-written file, and a failed write leaves any previous file untouched. numpy
    scalars and arrays are written as numbers and lists.

    Returns:
        The path written.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(obj, indent=2, default=_json_default) + "\n"  # serialise first: no temp file on failure
    return write_bytes(path, text.encode("utf-8"))


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    raise TypeError(f"cannot write {type(value).__name__} as JSON")
