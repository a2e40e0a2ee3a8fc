"""Read interaction logs (csv, tsv, MovieLens .dat, RecBole .inter, Parquet, SASRec pairs, S3-Rec sequences,
SR-GNN session lists; any of them gzip-compressed) into `Interactions`.

This module knows the formats and the canonical columns; under it, `rawtext` loads and checks the bytes, `tables`
reads delimited text (separator and header from `sniffing`) and Parquet, and `typed_columns` types the columns.
The normal path is vectorised: the whole file is read into memory, checked with buffer scans and parsed by Polars
with dtypes guessed from a sample (all-string fallback when a later row disagrees). When something is wrong, a
slow line-by-line pass (`diagnosis`) finds the exact line, and the reader raises one `DataError` naming the file,
the line, the column, the value and what was expected.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import PurePath
from typing import NoReturn

import polars as pl

from seqrec.data import rawtext, sniffing, tables, typed_columns
from seqrec.data.columns import ALL, ITEM, RATING, SESSION, TIME, USER
from seqrec.data.formats import FORMATS
from seqrec.data.interactions import Interactions
from seqrec.errors import ConfigError, DataError

_EXTENSIONS = {".dat": "dat", ".csv": "csv", ".tsv": "tsv", ".parquet": "parquet", ".pq": "parquet",
               ".inter": "inter"}
# header names read as each canonical column (lower case)
COLUMN_ALIASES = {
    USER: ("user", "user_id", "userid", "uid", "user id", "reviewerid", "customer_id", "visitorid"),
    ITEM: ("item", "item_id", "itemid", "iid", "movie_id", "movieid", "product_id", "productid", "asin",
           "business_id", "track_id"),
    TIME: ("time", "timestamp", "ts", "datetime", "date", "eventdate", "event_time", "unixreviewtime"),
    RATING: ("rating", "score", "stars", "overall"),
    SESSION: ("session", "session_id", "sessionid"),
}
_KNOWN_NAMES = {name for names in COLUMN_ALIASES.values() for name in names}
_INTER_TYPE = re.compile(r"\S:(token|float|token_seq|float_seq)\b")

Source = str | os.PathLike[str]
ColumnMap = dict[str, str | int]


class ReaderOptionError(DataError, ConfigError):
    """A reader option does not fit (unknown format, bad column mapping): both a DataError and a ConfigError."""


def parse_column_mapping(text: str) -> dict[str, str | int]:
    """Parse `"user=uid,item=1,time=ts"` into `{"user": "uid", "item": 1, "time": "ts"}`.

    Digits are 0-based positions, anything else a column name (quote it, `item="1"`, for a name made of
    digits). Raises ConfigError naming the bad part.
    """
    if not isinstance(text, str) or not text.strip():
        raise ConfigError(f"empty column mapping {text!r}; expected canonical=column pairs, e.g. user=user_id,item=1")
    mapping: dict[str, str | int] = {}
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        key, eq, value = (s.strip() for s in part.partition("="))
        key = key.lower()
        if not eq or not key or not value:
            raise ConfigError(f"bad part {part!r} in column mapping {text!r}: expected canonical=column, "
                              "e.g. user=user_id or item=1")
        if key not in ALL:
            raise ConfigError(f"bad part {part!r} in column mapping {text!r}: unknown canonical column {key!r}; "
                              f"allowed: {', '.join(ALL)}")
        if key in mapping:
            raise ConfigError(f"bad part {part!r} in column mapping {text!r}: {key!r} is mapped twice")
        if re.fullmatch(r"-\d+", value):
            raise ConfigError(f"bad part {part!r} in column mapping {text!r}: positions are 0-based and ≥ 0")
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            mapping[key] = value[1:-1]
        else:
            mapping[key] = int(value) if value.isdigit() else value
    if not mapping:
        raise ConfigError(f"empty column mapping {text!r}; expected canonical=column pairs, e.g. user=user_id,item=1")
    return mapping


def detect_format(path: Source) -> str:
    """The reader format of `path`: from its extension (`.gz` ignored), else from its first 64 KB."""
    p = rawtext.check_path(path)
    name = p.name.lower().removesuffix(".gz")
    suffix = PurePath(name).suffix
    if suffix in _EXTENSIONS:
        return _EXTENSIONS[suffix]
    head = rawtext.read_bytes(p, limit=sniffing.SAMPLE_BYTES)
    if head.startswith(rawtext.PARQUET_MAGIC):
        return "parquet"
    if len(head) >= sniffing.SAMPLE_BYTES and b"\n" in head:
        head = head[:head.rfind(b"\n") + 1]  # do not cut a character in two
    lines = sniffing.head_lines(rawtext.check_text(head, p))
    fmt = _sniff_format(lines)
    if fmt is None:
        raise DataError("cannot tell the format from the file name or its content", path=p, line=1,
                        value=lines[0][:80], expected=f"a known extension or format= one of {', '.join(FORMATS)}")
    return fmt


def _sniff_format(lines: list[str]) -> str | None:
    first = lines[0]
    if "::" in first:
        return "dat"
    if _INTER_TYPE.search(first):
        return "inter"
    sep = sniffing.sniff_separator(lines)
    if sep is None:
        return None
    records = sniffing.split_records(lines, sep, True)
    if sniffing.looks_like_header(records[0], records[1] if len(records) > 1 else None, _KNOWN_NAMES):
        return "tsv" if sep == "\t" else "csv"
    counts = {len(rec) for rec in records}
    table = len(counts) == 1 and min(counts) >= 3 and len(records) >= 10
    if sep == ",":
        return "csv" if table else "sessions"
    if sep in (" ", "\t"):
        words = {len(line.split()) for line in lines}
        if words == {2}:
            return "pairs"
        if len(words) > 1 and min(words) >= 2:
            return "sequences"
        return "tsv" if sep == "\t" else ("csv" if table else "sequences")
    return "csv"


def read_interactions(path: Source, *, format: str | None = None, columns: Mapping[str, str | int] | None = None,
                      separator: str | None = None, header: bool | None = None) -> Interactions:
    """Read an interaction file into `Interactions` (canonical columns, rows in file order).

    Args:
        path: the file (plain or gzip-compressed).
        format: one of `FORMATS`; detected from the name or content when None.
        columns: canonical name (user, item, time, rating, session) -> the file's column name or 0-based
            position. Default: well-known names from the header (user_id, item_id, timestamp, ...), or by
            position without a header (2 fields: user item; 3: user item time; 4+: user item rating time).
            With `session` but no `user`, the session is the sequence key (`user`).
        separator: field separator (csv/tsv/dat/inter; the item separator for pairs/sequences/sessions).
        header: whether the first line names the columns; detected when None.

    pairs, sequences and sessions files have no time: `time` is then the order of the rows (`has_time=False`).
    A sessions file (one session per line) gets user = session = the 0-based line number; `format="sessions"`
    with a column mapping or `header=True` reads a click table whose sequence key is the session column.

    Raises:
        DataError: the file is missing or unusable; the message names the line, column, value and the fix.
    """
    fmt = _check_format(format, path)
    mapping = _check_mapping(columns, path)
    if separator is not None and (not isinstance(separator, str) or not separator):
        raise ReaderOptionError("bad separator", path=path, value=separator, expected="a non-empty string")
    separator = "\t" if separator == "\\t" else separator
    fmt = fmt or detect_format(path)
    raw = rawtext.read_bytes(path)
    if fmt == "parquet":
        frame, has_time = _read_parquet(raw, path, mapping)
    else:
        data = rawtext.check_text(raw, path)
        del raw
        if fmt in ("pairs", "sequences") or (fmt == "sessions" and mapping is None and not header):
            if mapping is not None:
                raise ReaderOptionError(f"format {fmt!r} has fixed columns and takes no column mapping", path=path,
                                        expected="format='csv' (with separator=' ') to map columns yourself")
            frame, has_time = _read_lists(data, path, fmt, separator)
        else:
            frame, has_time = _read_table(data, path, fmt, mapping, separator, header)
    return Interactions(frame, has_time=has_time, source=str(path), meta={"format": fmt})


def _check_format(format: str | None, path: Source) -> str | None:
    if format is None:
        return None
    name = str(format).strip().lower()
    if name not in FORMATS:
        raise ReaderOptionError(f"unknown format {format!r}", path=path, expected=f"one of {', '.join(FORMATS)}")
    return name


def _check_mapping(columns: object, path: Source) -> ColumnMap | None:
    if columns is None:
        return None
    if not isinstance(columns, Mapping):
        raise ReaderOptionError("the column mapping is not a mapping", path=path, value=columns,
                                expected="a dict such as {'user': 'user_id', 'item': 1}")
    for key, ref in columns.items():
        if key not in ALL:
            raise ReaderOptionError(f"unknown canonical column {key!r} in the column mapping", path=path,
                                    expected=f"keys among {', '.join(ALL)}")
        if isinstance(ref, bool) or not isinstance(ref, (str, int)) or ref == "" or (isinstance(ref, int) and ref < 0):
            raise ReaderOptionError(f"bad column reference for {key!r} in the column mapping", path=path, value=ref,
                                    expected="a column name or a 0-based position")
    if ITEM not in columns or (USER not in columns and SESSION not in columns):
        raise ReaderOptionError(f"the column mapping {dict(columns)} lacks 'item' or both 'user' and 'session'",
                                path=path, expected="at least item and user (or session)")
    return dict(columns)

# ---------------------------------------------------------------------------------------------- delimited tables

def _read_table(data: bytes, path: Source, fmt: str, mapping: ColumnMap | None, separator: str | None,
                header: bool | None) -> tuple[pl.DataFrame, bool]:
    uses_names = mapping is not None and any(isinstance(ref, str) for ref in mapping.values())
    if header is False and uses_names:
        raise ReaderOptionError("columns are mapped by name but header=False", path=path, value=mapping,
                                expected="0-based positions, or a file with a header line")
    if header is None and (fmt == "inter" or uses_names):
        header = True
    resolved: dict[str, int] = {}

    def resolve(names: list[str] | None, n_fields: int, first_line: int) -> dict[str, int]:
        resolved.update(_resolve(mapping, names, n_fields, path, first_line, fmt))
        return resolved

    def dtypes(text: bytes, sep: str, sample: list[list[str]]) -> dict[int, type[pl.DataType]]:
        padded = sniffing.padded_integers(text, sep)           # "007" beside "7": ids read as text, then checked
        return {i: _guess_dtype(canon, [rec[i].strip() for rec in sample if len(rec) > i])
                for canon, i in resolved.items() if not (padded and canon in (USER, ITEM, SESSION))}

    table = tables.text_table(data, path, separator=separator or {"dat": "::", "inter": "\t"}.get(fmt),
                              quote=fmt != "dat", header=header, prefer_tab=fmt == "tsv", typed_header=fmt == "inter",
                              known_names=_KNOWN_NAMES, resolve=resolve, dtypes=dtypes)
    raw = table.frame.select([pl.col(f"f{i}").alias(canon) for canon, i in resolved.items()])

    def fail(row: int, canon: str, reason: str, expected: str) -> NoReturn:
        table.fail(row, resolved[canon], raw.get_column(canon)[row], reason, expected, canon)

    return typed_columns.build_columns(raw, fail)


def _resolve(mapping: ColumnMap | None, names: list[str] | None, n_fields: int, path: Source, line: int | None,
             fmt: str) -> dict[str, int]:
    """Map canonical names to 0-based field positions; the sequence key `user` falls back on `session`."""
    if mapping is None:
        mapping = _default_mapping(names, n_fields, path, line)
    resolved: dict[str, int] = {}
    for canon, ref in mapping.items():
        if isinstance(ref, int):
            if ref >= n_fields:
                raise DataError(f"column position {ref} (for {canon!r}) is beyond the last field: the file has "
                                f"{n_fields} fields, positions 0 to {n_fields - 1}", path=path, line=line,
                                column=canon, value=ref, expected=f"a position below {n_fields}")
            resolved[canon] = ref
            continue
        lowered = [n.lower() for n in names or []]
        if names is not None and ref in names:
            resolved[canon] = names.index(ref)
        elif names is not None and lowered.count(ref.lower()) == 1:
            resolved[canon] = lowered.index(ref.lower())
        else:
            raise DataError(f"the column mapped to {canon!r} is not in the file", path=path, line=line, column=ref,
                            expected=f"one of the file's columns: {', '.join(map(repr, names or []))}")
    if SESSION in resolved and (USER not in resolved or fmt == "sessions"):
        resolved[USER] = resolved[SESSION]
    return resolved


def _default_mapping(names: list[str] | None, n_fields: int, path: Source, line: int | None) -> ColumnMap:
    if names is None:
        if n_fields < 2:
            raise DataError("the lines have a single field", path=path, line=line,
                            expected="at least a user and an item field (or pass separator= / columns=)")
        layout = ((USER, ITEM), (USER, ITEM, TIME), (USER, ITEM, RATING, TIME))[min(n_fields, 4) - 2]
        return {canon: i for i, canon in enumerate(layout)}
    lowered = [n.lower() for n in names]
    found: ColumnMap = {}
    for canon, aliases in COLUMN_ALIASES.items():
        hit = next((alias for alias in aliases if alias in lowered), None)
        if hit is not None:
            found[canon] = names[lowered.index(hit)]
    if ITEM not in found or (USER not in found and SESSION not in found):
        raise DataError("cannot tell which columns hold the user and the item", path=path, line=line,
                        expected=f"columns= mapping, e.g. {{'user': ..., 'item': ...}}; the file's columns: "
                                 f"{', '.join(map(repr, names))}")
    return found


def _guess_dtype(canon: str, values: list[str]) -> type[pl.DataType]:
    if values and all(sniffing.INT_RE.match(v) for v in values):
        return pl.Int64
    if canon in (TIME, RATING) and values and all(sniffing.NUMBER_RE.match(v) for v in values):
        return pl.Float64
    return pl.String


# ---------------------------------------------------------------------------------------------- line formats

def _read_lists(data: bytes, path: Source, fmt: str, separator: str | None) -> tuple[pl.DataFrame, bool]:
    """pairs (`user item`), sequences (`user item item ...`) and sessions (`item,item,...`), one per line."""
    if fmt == "pairs" and (fast := _read_pairs_fast(data, path, separator or " ")) is not None:
        return fast
    lines = pl.read_csv(data, has_header=False, separator="\x00", quote_char=None, schema={"text": pl.String})
    frame = lines.with_row_index("line").with_columns(pl.col("text").str.strip_chars())
    frame = frame.filter(pl.col("text").is_not_null() & (pl.col("text") != ""))
    if frame.height == 0:
        raise DataError("file is empty", path=path, expected="interaction lines")
    sep = separator or ("," if fmt == "sessions" and b"," in data else " ")
    text = pl.col("text")
    if sep == " " and (b"\t" in data or b"  " in data):
        text = text.str.replace_all(r"\s+", " ")
    frame = frame.with_columns(tokens=text.str.split(sep))
    count = frame.get_column("tokens").list.len()
    bad = count != 2 if fmt == "pairs" else count < (2 if fmt == "sequences" else 1)
    if bad.any():
        row = int(bad.arg_true()[0])
        n = int(count[row])
        shown = "tab" if sep == "\t" else repr(sep)
        expected = {"pairs": "2 fields: user item", "sequences": "a user id followed by at least one item"}
        raise DataError(f"{'too few' if n < 2 else 'too many'} fields: the line has {n} field{'s' * (n != 1)} "
                        f"separated by {shown}",
                        path=path, line=int(frame["line"][row]) + 1, value=frame["text"][row],
                        expected=expected.get(fmt, "items"))
    tokens = pl.col("tokens")
    if fmt == "pairs":
        raw = frame.select("line", tokens.list.get(0).alias(USER), tokens.list.get(1).alias(ITEM))
    elif fmt == "sequences":
        raw = frame.select("line", tokens.list.first().alias(USER), tokens.list.slice(1).alias(ITEM))
        raw = raw.explode(ITEM)
    else:
        raw = frame.select("line", pl.col("line").cast(pl.Int64).alias(SESSION), tokens.alias(ITEM))
        raw = raw.explode(ITEM).with_columns(pl.col(SESSION).alias(USER))
    line_index = raw.get_column("line")

    def fail(row: int, canon: str, reason: str, expected: str) -> NoReturn:
        line = int(line_index[row])
        position = row - int((line_index == line).arg_true()[0])
        column = canon if fmt == "pairs" or canon != ITEM else f"item {position + (1 if fmt == 'sessions' else 2)}"
        raise DataError(reason, path=path, line=line + 1, column=column, value=raw.get_column(canon)[row],
                        expected=expected)

    frame, _ = typed_columns.build_columns(raw.drop("line"), fail)
    return frame, False


def _read_pairs_fast(data: bytes, path: Source, sep: str) -> tuple[pl.DataFrame, bool] | None:
    """Pairs split by exactly one separator byte, read as a 2-column table; None when any line is irregular
    (extra or missing fields, runs of blanks, ids beyond the sample's type): the line-based reader then
    handles the file and names the bad line."""
    if len(sep.encode()) != 1 or (sep == " " and b"\t" in data):
        return None
    sample = sniffing.split_records(sniffing.head_lines(data), sep, False)
    dtype = pl.Int64 if all(sniffing.INT_RE.match(v) for rec in sample for v in rec) else pl.String
    if dtype == pl.Int64 and sniffing.padded_integers(data, sep):     # "007" beside "7": text, then checked
        dtype = pl.String
    try:
        frame = pl.read_csv(data, has_header=False, separator=sep, quote_char=None,
                            schema={USER: dtype, ITEM: dtype})
    except typed_columns.POLARS_ERRORS:
        return None
    nulls = frame.select(pl.any_horizontal(pl.all().is_null()).alias("any"),
                         pl.all_horizontal(pl.all().is_null()).alias("all"))
    if (nulls["any"] & ~nulls["all"]).any():
        return None
    if nulls["all"].any():  # blank lines
        frame = frame.filter(~nulls["all"])
    if dtype == pl.String and ((frame[USER].str.len_bytes() == 0) | (frame[ITEM].str.len_bytes() == 0)).any():
        return None

    def fail(row: int, canon: str, reason: str, expected: str) -> NoReturn:  # pragma: no cover - checked above
        raise DataError(f"{reason} (data row {row + 1})", path=path, column=canon, value=frame[canon][row],
                        expected=expected)

    frame, _ = typed_columns.build_columns(frame, fail)
    return frame, False


# ---------------------------------------------------------------------------------------------- parquet

def _read_parquet(raw: bytes, path: Source, mapping: ColumnMap | None) -> tuple[pl.DataFrame, bool]:
    frame = tables.parquet_frame(raw, path)
    names = frame.columns
    resolved = _resolve(mapping, names, len(names), path, None, "parquet")
    raw_frame = frame.select([pl.col(names[i]).alias(canon) for canon, i in resolved.items()])

    def fail(row: int, canon: str, reason: str, expected: str) -> NoReturn:
        raise DataError(f"{reason} (row {row + 1})", path=path, column=names[resolved[canon]],
                        value=raw_frame.get_column(canon)[row], expected=expected)

    return typed_columns.build_columns(raw_frame, fail)
