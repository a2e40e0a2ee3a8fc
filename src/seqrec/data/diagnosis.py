"""The slow, exact diagnosis of a bad record: walk a file's body record by record with the csv module and name
the first bad line, column and value (`diagnose`), or jump to the line of a problem the vectorised path found
(`diagnose_row`). Runs only after the fast path failed, so it may loop over rows.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

import numpy as np

from seqrec.data.columns import ITEM, SESSION, USER
from seqrec.data.sniffing import NUMBER_RE, is_number
from seqrec.errors import DataError

ISO_RE = re.compile(r"\d{4}-\d{2}-\d{2}(?:[ T]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:?\d{2})?)?\Z")
EXPECTED_TIME = ("an integer or decimal timestamp, or an ISO date/datetime such as 2016-05-09, "
                 "2016-05-09 12:00:01 or 2016-05-09T12:00:01Z")


def time_kind(text: str) -> str | None:
    """'number', 'date' (an ISO date/datetime) or None for a time field's text."""
    text = text.strip()
    if NUMBER_RE.match(text):
        return "number"
    if ISO_RE.match(text):
        try:
            datetime.fromisoformat(text)
        except ValueError:
            return None
        return "date"
    return None


@dataclass(frozen=True)
class Layout:
    """How the body of a delimited text file (the lines after any header) is laid out, for diagnostics."""

    path: str
    sep: str                 # the separator in the body bytes (a multi-byte one was replaced by \\x1f)
    shown_sep: str           # the separator as the user knows it
    quote: bool
    n_fields: int
    header: bool
    first_line: int          # real 1-based line number of the body's first line
    checks: tuple[tuple[str, int, str], ...]  # (canonical name, 0-based field, column as shown in messages)


@dataclass(frozen=True)
class Hint:
    """A problem the fast path found at data row `row` (0-based, counting blank lines as Polars does)."""

    row: int
    column: str
    value: Any
    reason: str
    expected: str


def diagnose(body: bytes, layout: Layout, hint: Hint | None = None, skipped: int = 0) -> DataError | None:
    """Walk the body record by record; return a DataError for the first bad record (or for `hint`'s row).

    Slow (a Python loop): for the error path only.
    """
    text = io.StringIO(body.decode("utf-8", "replace"), newline="")
    reader = csv.reader(text, delimiter=layout.sep, quoting=csv.QUOTE_MINIMAL if layout.quote else csv.QUOTE_NONE,
                        strict=False)
    like = "the header" if layout.header else f"line {layout.first_line}"
    first_line = layout.first_line + skipped      # `body` starts `skipped` lines into the layout's body
    first_kind = None
    row, consumed = 0, 0
    while True:
        try:
            record = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            return DataError(f"malformed line ({exc})", path=layout.path, line=first_line + consumed)
        line = first_line + consumed
        consumed = reader.line_num
        if record and not (len(record) == 1 and not record[0].strip()):
            if len(record) != layout.n_fields:
                what = "too few" if len(record) < layout.n_fields else "too many"
                shown = "tab" if layout.shown_sep == "\t" else repr(layout.shown_sep)
                return DataError(f"{what} fields: the line has {len(record)} field{'s' * (len(record) != 1)} "
                                 f"separated by {shown}",
                                 path=layout.path, line=line, value=layout.shown_sep.join(record),
                                 expected=f"{layout.n_fields} fields like {like}")
            for canon, index, shown in layout.checks:
                value = record[index]
                problem = _field_problem(canon, value, first_kind)
                if problem:
                    return DataError(problem[0], path=layout.path, line=line, column=shown, value=value,
                                     expected=problem[1])
                if canon == "time" and first_kind is None:
                    first_kind = time_kind(value)
        if hint is not None and row == hint.row:
            return DataError(hint.reason, path=layout.path, line=line, column=hint.column, value=hint.value,
                             expected=hint.expected)
        row += 1
    if hint is not None:
        return DataError(f"{hint.reason} (data row {hint.row + 1})", path=layout.path, column=hint.column,
                         value=hint.value, expected=hint.expected)
    return None


def diagnose_row(body: bytes, layout: Layout, hint: Hint) -> DataError:
    """The DataError for `hint`: without quoted fields (rows are lines) jump straight to its line; otherwise
    walk the file from the top (`diagnose`), as a quoted field may span lines."""
    if layout.quote and b'"' in body:
        error = diagnose(body, layout, hint)
    else:
        ends = np.flatnonzero(np.frombuffer(body, dtype=np.uint8) == 10)
        start = 0 if hint.row == 0 else int(ends[hint.row - 1]) + 1
        end = int(ends[hint.row]) + 1 if hint.row < len(ends) else len(body)
        error = diagnose(body[start:end], layout, replace(hint, row=0), skipped=hint.row)
    assert error is not None      # with a hint, diagnose always returns an error
    return error


def _field_problem(canon: str, value: str, first_kind: str | None) -> tuple[str, str] | None:
    text = value.strip()
    if not text:
        return f"empty {canon} field", ("a non-empty id" if canon in (USER, ITEM, SESSION) else "a value")
    if canon == "rating" and not is_number(text):
        return "rating is not a number", "a number such as 4 or 3.5"
    if canon == "time":
        kind = time_kind(text)
        if kind is None:
            return "time is not a number or an ISO date", EXPECTED_TIME
        if first_kind is not None and kind != first_kind:
            return (f"time is a {kind} but earlier rows hold a {first_kind}",
                    f"every time value of one kind ({'numbers' if first_kind == 'number' else 'ISO dates'})")
    return None
