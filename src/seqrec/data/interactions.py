"""Interactions: a validated columnar table of who interacted with what and when.

The table is a Polars frame with canonical columns (see `columns`):

- `user`    Int64 or String, no nulls: the sequence key (a user, or a session for session logs).
- `item`    Int64 or String, no nulls.
- `time`    Int64 or Float64, no nulls. Files without a time column get the line order (0, 1, 2, ...) and
            `has_time=False`: the order of lines is then the order of events.
- `rating`  Float64, optional.
- `session` Int64 or String, optional.

Rows are in file order; later steps rely on that to keep ties in file order.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

import polars as pl

from seqrec.data import columns as C
from seqrec.errors import DataError

_ID_TYPES = (pl.Int64, pl.String)
_TIME_TYPES = (pl.Int64, pl.Float64)


@dataclass(frozen=True)
class Interactions:
    """A log of interactions with canonical columns, in file order.

    Attributes:
        frame: the table (columns described in the module docstring).
        has_time: False when `time` is only the line order of a file without timestamps.
        source: where the rows came from (a path or a generator description), for messages and summaries.
    """

    frame: pl.DataFrame
    has_time: bool = True
    source: str = "<memory>"
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.validate()

    def __len__(self) -> int:
        return self.frame.height

    def __repr__(self) -> str:
        return (f"Interactions({len(self):,} rows, columns {self.columns}"
                f"{'' if self.has_time else ' (time = line order)'}, source={self.source!r})")

    @property
    def columns(self) -> list[str]:
        return self.frame.columns

    def validate(self) -> None:
        """Check canonical names and dtypes; raise DataError naming the column otherwise."""
        frame = self.frame
        for name in C.REQUIRED + (C.TIME,):
            if name not in frame.columns:
                raise DataError(f"interactions from {self.source} have no {name!r} column; columns: {frame.columns}")
        unknown = [c for c in frame.columns if c not in C.ALL]
        if unknown:
            raise DataError(f"interactions from {self.source} have non-canonical columns {unknown}; allowed: {C.ALL}")
        checks = {C.USER: _ID_TYPES, C.ITEM: _ID_TYPES, C.TIME: _TIME_TYPES, C.RATING: (pl.Float64,),
                  C.SESSION: _ID_TYPES}
        for name, allowed in checks.items():
            if name in frame.columns and frame.schema[name] not in allowed:
                raise DataError(
                    f"interactions from {self.source}: column {name!r} has dtype {frame.schema[name]}",
                    expected=" or ".join(str(t) for t in allowed),
                )
        for name in (C.USER, C.ITEM, C.TIME):
            nulls = frame.get_column(name).null_count()
            if nulls:
                row = int(frame.get_column(name).is_null().arg_max() or 0)
                raise DataError(f"interactions from {self.source}: column {name!r} has {nulls} missing values",
                                line=row + 1, expected="a value in every row")

    @classmethod
    def from_columns(cls, *, user: Collection[Any], item: Collection[Any], time: Collection[Any] | None = None,
                     rating: Collection[Any] | None = None, session: Collection[Any] | None = None,
                     source: str = "<memory>") -> Interactions:
        """Build from array-likes (numpy arrays, lists). Without `time`, the row order is the time order."""
        data: dict[str, Any] = {C.USER: user, C.ITEM: item}
        has_time = time is not None
        n = len(user)
        data[C.TIME] = time if has_time else pl.int_range(0, n, eager=True)
        if rating is not None:
            data[C.RATING] = rating
        if session is not None:
            data[C.SESSION] = session
        frame = pl.DataFrame(data)
        casts: dict[str, type[pl.DataType]] = {}
        for name in (C.USER, C.ITEM, C.SESSION):
            if name in frame.columns and frame.schema[name] not in _ID_TYPES:
                casts[name] = pl.Int64 if frame.schema[name].is_integer() else pl.String
        if frame.schema[C.TIME] not in _TIME_TYPES:
            casts[C.TIME] = pl.Int64 if frame.schema[C.TIME].is_integer() else pl.Float64
        if C.RATING in frame.columns and frame.schema[C.RATING] != pl.Float64:
            casts[C.RATING] = pl.Float64
        if casts:
            frame = frame.with_columns([pl.col(k).cast(v) for k, v in casts.items()])
        return cls(frame, has_time=has_time, source=source)
