"""Raw columns -> typed canonical ones, vectorised (Polars expressions, no loop over rows): ids as Int64 when every
text is a distinct integer, else String; times as Int64 or Float64 seconds (ISO dates parsed as UTC); ratings as
Float64. A bad value calls `fail(row, column, reason, expected)`, which the reader turns into a DataError naming
the file's line (through `diagnosis`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NoReturn

import polars as pl

from seqrec.data.columns import ITEM, RATING, SESSION, TIME, USER
from seqrec.data.diagnosis import EXPECTED_TIME

ISO_FORMATS = ("%Y-%m-%d", "%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M", "%Y-%m-%dT%H:%M",
               "%Y-%m-%dT%H:%M:%S%.f%z", "%Y-%m-%d %H:%M:%S%.f%z", "%Y-%m-%dT%H:%M%z", "%Y-%m-%d %H:%M%z")
POLARS_ERRORS = (Exception, pl.exceptions.PanicException)
Fail = Callable[[int, str, str, str], NoReturn]


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
