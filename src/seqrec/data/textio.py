"""Low-level helpers for `seqrec.data.readers`.

Loading (plain or gzip), checking that a file is UTF-8 text, sniffing separators and header lines, turning raw
columns into typed canonical ones (`build_columns`, vectorised), and the slow exact diagnosis of a bad row.
On the normal path nothing here loops over rows: the checks are whole-buffer scans (`bytes.find`,
`bytes.isascii`, chunked UTF-8 decoding) and Polars expressions. `diagnose` walks the file record by record
with the csv module, and runs only after the fast path found a problem, to name the exact line, column and value.
"""

from __future__ import annotations

import csv
import io
import os
import re
import stat
import zlib
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any, NoReturn

import numpy as np
import polars as pl

from seqrec.data.columns import ITEM, RATING, SESSION, TIME, USER
from seqrec.errors import DataError

GZIP_MAGIC = b"\x1f\x8b"
PARQUET_MAGIC = b"PAR1"
ZIP_MAGIC = b"PK\x03\x04"
BOM = b"\xef\xbb\xbf"
SAMPLE_BYTES = 1 << 16
SEPARATORS = (",", ";", "\t", "|", " ")

INT_RE = re.compile(r"[+-]?\d+\Z")
NUMBER_RE = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?\Z")
ISO_RE = re.compile(r"\d{4}-\d{2}-\d{2}(?:[ T]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:?\d{2})?)?\Z")
_BLANK_LINES = re.compile(rb"(?:[ \t]*\n)*")
ISO_FORMATS = ("%Y-%m-%d", "%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M", "%Y-%m-%dT%H:%M",
               "%Y-%m-%dT%H:%M:%S%.f%z", "%Y-%m-%d %H:%M:%S%.f%z", "%Y-%m-%dT%H:%M%z", "%Y-%m-%d %H:%M%z")
POLARS_ERRORS = (Exception, pl.exceptions.PanicException)
Fail = Callable[[int, str, str, str], NoReturn]
EXPECTED_TIME = ("an integer or decimal timestamp, or an ISO date/datetime such as 2016-05-09, "
                 "2016-05-09 12:00:01 or 2016-05-09T12:00:01Z")


def check_path(path: Any) -> Path:
    """The path as a `Path`; DataError when it does not exist or is a directory."""
    p = Path(path)
    if not p.exists():
        raise DataError("no such file", path=p, expected="the path of an existing interaction file")
    if p.is_dir():
        raise DataError("is a directory, not a file", path=p,
                        expected="an interaction file (csv, tsv, parquet, dat, inter, txt, optionally .gz)")
    return p


def read_bytes(path: Any, limit: int | None = None) -> bytes:
    """The file's bytes, gunzipped when it starts with the gzip magic; at most about `limit` bytes if given."""
    p = check_path(path)
    try:
        with open(p, "rb") as handle:
            before = os.fstat(handle.fileno())
            raw = handle.read() if limit is None else handle.read(limit)
            after = os.fstat(handle.fileno())
    except OSError as exc:
        raise DataError(f"cannot read the file ({exc.strerror or exc})", path=p) from None
    changed = (before.st_size, before.st_mtime_ns) != (after.st_size, after.st_mtime_ns)
    if limit is None and stat.S_ISREG(after.st_mode) and (changed or len(raw) != after.st_size):
        raise DataError(f"the file changed while it was being read ({before.st_size:,} bytes, then "
                        f"{after.st_size:,}; {len(raw):,} read)", path=p,
                        expected="a complete file that nothing writes to meanwhile (read it again once it is "
                                 "written)")
    if raw[:2] != GZIP_MAGIC:
        return raw
    try:
        inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
        if limit is not None:  # a prefix, for sniffing: a partial stream is expected here
            return inflater.decompress(raw, limit)
        parts = [inflater.decompress(raw)]
        while inflater.eof and inflater.unused_data:  # concatenated gzip members
            rest = inflater.unused_data
            inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
            parts.append(inflater.decompress(rest))
    except zlib.error as exc:
        raise DataError(f"corrupt gzip data ({exc})", path=p,
                        expected="a valid gzip file (check it with `gzip -t`)") from None
    if not inflater.eof:
        raise DataError("truncated gzip file: the compressed stream ends early", path=p,
                        expected="a complete gzip file (check it with `gzip -t`; download it again)")
    return b"".join(parts)


def line_and_column(data: bytes, offset: int) -> tuple[int, int]:
    """1-based line and 1-based byte column of `offset` in `data`."""
    line = data.count(b"\n", 0, offset) + 1
    return line, offset - data.rfind(b"\n", 0, offset)


def line_at(data: bytes, offset: int, width: int = 120) -> str:
    """The text of the line holding `offset` (bad bytes replaced), cut to `width` characters."""
    start = data.rfind(b"\n", 0, offset) + 1
    end = data.find(b"\n", offset)
    return data[start:end if end >= 0 else len(data)][:width * 4].decode("utf-8", "replace").rstrip("\r")[:width]


def check_text(raw: bytes, path: Any) -> bytes:
    """Reject binary or non-UTF-8 input; return the text with the BOM stripped and line ends turned into LF."""
    if not raw or raw.isspace() or raw.startswith(BOM) and (len(raw) == len(BOM) or raw[len(BOM):].isspace()):
        raise DataError("file is empty", path=path, expected="interaction rows")
    if raw[:2] in (b"\xff\xfe", b"\xfe\xff"):
        raise DataError("file is UTF-16 encoded", path=path, expected="UTF-8 text (convert it, e.g. with iconv)")
    if raw.startswith(ZIP_MAGIC):
        raise DataError("file is a zip archive", path=path, expected="the interaction file inside it (unzip it)")
    if raw.startswith(PARQUET_MAGIC):
        raise DataError("file is a Parquet file, not text", path=path, expected="format='parquet'")
    nul = raw.find(b"\x00")
    if nul >= 0:
        line, column = line_and_column(raw, nul)
        raise DataError(f"looks like a binary file, not text: NUL byte at byte {column} of line {line}",
                        path=path, line=line, expected="a text file (csv, tsv, dat, inter, txt) or a Parquet file")
    if not raw.isascii():
        _check_utf8(raw, path)
    if raw.startswith(BOM):
        raw = raw[len(BOM):]
    if b"\r" in raw:
        raw = raw.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
    return raw


def _check_utf8(raw: bytes, path: Any, chunk: int = 1 << 24) -> None:
    view = memoryview(raw)
    start = 0
    while start < len(raw):
        end = min(start + chunk, len(raw))
        while end < len(raw) and raw[end] & 0xC0 == 0x80:  # do not cut a multi-byte character
            end -= 1
        try:
            str(view[start:end], "utf-8")
        except UnicodeDecodeError as exc:
            offset = start + exc.start
            line, column = line_and_column(raw, offset)
            raise DataError(f"invalid UTF-8: byte 0x{raw[offset]:02x} at byte {column} of line {line}", path=path,
                            line=line, value=line_at(raw, offset),
                            expected="UTF-8 text (convert it, e.g. `iconv -f latin1 -t utf-8`)") from None
        start = end


def padded_integers(data: bytes, sep: str, chunk: int = 1 << 20) -> bool:
    """Whether some field may be an integer written with a leading zero or a sign (`007`, `+7`, `-0`).

    Parsed as integers, such a field becomes the same id as another (`7`): files where this may happen read
    their id columns as text first, and `_ids` keeps them as text unless every text is a different integer.
    A vectorised byte scan in chunks (false alarms only cost that slower path)."""
    ends_field = np.zeros(256, dtype=bool)
    ends_field[list(b"\n\t \"" + sep.encode()[:1])] = True
    padded = b"\n" + data[:chunk + 1]             # the first field starts after a virtual line end
    for start in range(0, len(data) + 1, chunk):
        a = np.frombuffer(padded, dtype=np.uint8)
        head, nxt = a[1:-1], a[2:]
        hit = ((head == 48) | (head == 43)) & ((nxt - np.uint8(48)) < 10) | (head == 45) & (nxt == 48)
        if hit.any() and ends_field[a[np.flatnonzero(hit)]].any():      # a[i] is the byte before head[i]
            return True
        padded = data[start + chunk - 1:start + 2 * chunk + 1]
    return False


def skip_blank_lines(data: bytes, offset: int) -> int:
    """The offset of the first non-blank line at or after `offset` (a line start)."""
    blank = _BLANK_LINES.match(data, offset)      # always matches (maybe nothing)
    return offset if blank is None else blank.end()


def end_of_record(data: bytes, offset: int, quote: bool) -> int:
    """Offset just past the record starting at `offset` (a quoted field may span lines)."""
    end = data.find(b"\n", offset)
    while quote and end >= 0 and data.count(b'"', offset, end) % 2:
        end = data.find(b"\n", end + 1)
    return len(data) if end < 0 else end + 1


def head_lines(data: bytes, offset: int = 0, size: int = SAMPLE_BYTES) -> list[str]:
    """The complete lines in the first `size` bytes from `offset`, blank lines dropped."""
    chunk = data[offset:offset + size]
    if offset + size < len(data) and b"\n" in chunk:
        chunk = chunk[:chunk.rfind(b"\n")]
    return [line for line in chunk.decode("utf-8", "replace").split("\n") if line.strip(" \t")]


def split_records(lines: list[str], sep: str, quote: bool) -> list[list[str]]:
    return [rec for rec in csv.reader(lines, delimiter=sep, quoting=csv.QUOTE_MINIMAL if quote else csv.QUOTE_NONE)
            if rec]


def sniff_separator(lines: list[str], candidates: tuple[str, ...] = SEPARATORS) -> str | None:
    """The candidate that splits every sampled line into the same number (≥ 2) of fields; else the one with
    the most fields per line on average; None when no candidate splits the lines at all."""
    best, best_mean = None, 1.0
    for sep in candidates:
        counts = [len(rec) for rec in split_records(lines[:200], sep, True)]
        if not counts or min(counts) < 2:
            mean = sum(counts) / len(counts) if counts else 0
            if mean > best_mean:
                best, best_mean = sep, mean
            continue
        if len(set(counts)) == 1:
            return sep
        if sum(counts) / len(counts) > best_mean:
            best, best_mean = sep, sum(counts) / len(counts)
    return best


def is_number(text: str) -> bool:
    return bool(NUMBER_RE.match(text.strip()))


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


def looks_like_header(first: list[str], second: list[str] | None, names: set[str]) -> bool:
    """A header: a field is a well-known column name, or is text where the next row holds a number."""
    if any(field.strip().lower() in names for field in first):
        return True
    if second is None:
        return False
    return any(not is_number(a) and is_number(b) for a, b in zip(first, second))


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


def diagnose(body: bytes, layout: Layout, hint: Hint | None = None) -> DataError | None:
    """Walk the body record by record; return a DataError for the first bad record (or for `hint`'s row).

    Slow (a Python loop): for the error path only.
    """
    text = io.StringIO(body.decode("utf-8", "replace"), newline="")
    reader = csv.reader(text, delimiter=layout.sep, quoting=csv.QUOTE_MINIMAL if layout.quote else csv.QUOTE_NONE,
                        strict=False)
    like = "the header" if layout.header else f"line {layout.first_line}"
    first_kind = None
    row, consumed = 0, 0
    while True:
        try:
            record = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            return DataError(f"malformed line ({exc})", path=layout.path, line=layout.first_line + consumed)
        line = layout.first_line + consumed
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
        local = replace(layout, first_line=layout.first_line + hint.row)
        error = diagnose(body[start:end], local, replace(hint, row=0))
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


# ------------------------------------------------------------------------------------- typed columns (vectorised)

def build_columns(raw: pl.DataFrame, fail: Fail) -> tuple[pl.DataFrame, bool]:
    """Typed canonical frame from raw columns; `fail(row, column, reason, expected)` raises on a bad value."""
    out = {USER: _ids(raw, USER, fail), ITEM: _ids(raw, ITEM, fail)}
    has_time = TIME in raw.columns
    out[TIME] = _times(raw, fail) if has_time else pl.int_range(0, raw.height, dtype=pl.Int64, eager=True)
    if RATING in raw.columns:
        out[RATING] = _ratings(raw, fail)
    if SESSION in raw.columns:
        out[SESSION] = _ids(raw, SESSION, fail)
    return pl.DataFrame(out), has_time


def _first(mask: pl.Series) -> int:
    return int(mask.fill_null(True).arg_true()[0])


def _ids(raw: pl.DataFrame, canon: str, fail: Fail) -> pl.Series:
    s = raw.get_column(canon)
    if s.dtype == pl.Boolean:
        fail(0, canon, f"the {canon} column holds booleans (true/false), not ids", "integer or text ids")
    if s.dtype.is_float():      # e.g. a Parquet column of whole numbers stored as floats: integers, or refused
        whole = s.is_null() | (s.is_finite() & (s.round(0) == s) & (s.abs() < 2.0 ** 63))
        if not whole.all():
            fail(_first(~whole), canon, f"{canon} id is not a whole number within 64 bits",
                 "integer or text ids (a fractional, infinite or NaN id would change meaning)")
        s = s.cast(pl.Int64)
    if s.dtype.is_integer():
        if s.null_count():
            fail(_first(s.is_null()), canon, f"empty {canon} field", "a non-empty id")
        as_int = s.cast(pl.Int64, strict=False)
        if not as_int.null_count():
            return as_int.alias(canon)
        s = s.cast(pl.String)  # unsigned ids beyond the Int64 range stay exact as text
    s = s.cast(pl.String).str.strip_chars()
    empty = s.is_null() | (s.str.len_bytes() == 0)
    if empty.any():
        fail(_first(empty), canon, f"empty {canon} field", "a non-empty id")
    as_int = s.cast(pl.Int64, strict=False)
    if as_int.null_count() or not _same_ids(s, as_int):
        return s.alias(canon)
    return as_int.alias(canon)


def _same_ids(text: pl.Series, numbers: pl.Series) -> bool:
    """Whether reading the id texts as integers keeps different texts apart ("007" and "7" would merge)."""
    return bool((numbers.cast(pl.String) == text).all()) or text.n_unique() == numbers.n_unique()


def _times(raw: pl.DataFrame, fail: Fail) -> pl.Series:
    s = raw.get_column(TIME)
    dtype = s.dtype
    if s.null_count():
        fail(_first(s.is_null()), TIME, "empty time field", EXPECTED_TIME)
    if dtype.is_integer():
        as_int = s.cast(pl.Int64, strict=False)
        if as_int.null_count():
            fail(_first(as_int.is_null()), TIME, "time does not fit in a 64-bit integer", EXPECTED_TIME)
        return as_int
    if dtype.is_float():
        if not s.is_finite().all():
            fail(_first(~s.is_finite()), TIME, "time is not a finite number", EXPECTED_TIME)
        return s.cast(pl.Float64)
    if dtype == pl.Date:
        return s.cast(pl.Datetime("ms")).dt.epoch("s").alias(TIME)
    if isinstance(dtype, pl.Datetime):
        return s.dt.epoch("s").alias(TIME)
    if dtype not in (pl.String, pl.Categorical):
        fail(0, TIME, f"time column has the unsupported type {dtype}", EXPECTED_TIME)
    return _text_times(s.cast(pl.String).str.strip_chars(), fail)


def _text_times(s: pl.Series, fail: Fail) -> pl.Series:
    """Text times: all integers, all decimals (when the first value is a number), else all ISO dates."""
    empty = s.str.len_bytes() == 0
    if empty.any():
        fail(_first(empty), TIME, "empty time field", EXPECTED_TIME)
    as_int = s.cast(pl.Int64, strict=False)
    if as_int.null_count() == 0:
        return as_int
    as_float = s.cast(pl.Float64, strict=False)
    if as_float[0] is not None:  # the first value is a number: all must be
        bad = (as_float.is_null() | ~as_float.is_finite()).fill_null(True)
        if bad.any():
            fail(_first(bad), TIME, "time is not a number (earlier rows hold numbers)", "a number like them")
        return as_float
    parsed = _parse_iso(s)
    if parsed.null_count():
        fail(_first(parsed.is_null()), TIME, "time is not a number or an ISO date", EXPECTED_TIME)
    return parsed


def _parse_iso(s: pl.Series) -> pl.Series:
    """ISO dates/datetimes (naive ones taken as UTC) as Int64 epoch seconds; null where none of the forms fit."""
    s = s.str.replace(r"Z$", "+00:00")
    out = pl.Series(TIME, [None] * len(s), dtype=pl.Int64)
    for fmt in ISO_FORMATS:
        try:
            part = s.str.to_datetime(fmt, strict=False, time_unit="us", time_zone="UTC").dt.epoch("s")
        except POLARS_ERRORS:
            continue
        out = out.fill_null(part)
        if out.null_count() == 0:
            break
    return out.cast(pl.Int64).alias(TIME)


def _ratings(raw: pl.DataFrame, fail: Fail) -> pl.Series:
    s = raw.get_column(RATING)
    if s.null_count():
        fail(_first(s.is_null()), RATING, "empty rating field", "a number such as 4 or 3.5")
    if not s.dtype.is_numeric():
        s = s.cast(pl.String).str.strip_chars().cast(pl.Float64, strict=False)
    bad = (s.is_null() | ~s.is_finite()).fill_null(True)
    if bad.any():
        fail(_first(bad), RATING, "rating is not a number", "a number such as 4 or 3.5")
    return s.cast(pl.Float64).alias(RATING)
