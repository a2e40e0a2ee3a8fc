"""Delimited text and Parquet files read as tables of raw fields: the layer under `readers.read_interactions` and
`sidefiles` (user-id lists, item titles).

`text_table` finds the separator (or takes it), tells a header line, reads the body with Polars (guessed types for
some fields, text for the rest; blank lines dropped) and keeps the layout, so that `TextTable.fail` can name the
file line, column and value of a bad field through `diagnosis`. A body Polars cannot parse is walked by
`diagnosis.diagnose` for the exact bad line. `parquet_frame` refuses empty, truncated and corrupt Parquet files.
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any, NoReturn

import polars as pl

from seqrec.data import diagnosis, rawtext, sniffing, typed_columns
from seqrec.errors import DataError

Source = str | os.PathLike[str]


@dataclass(frozen=True)
class TextTable:
    """A delimited text file read into columns `f0`, `f1`, ... (blank lines dropped), with what it takes to name the
    file line of a bad value (`fail`)."""

    frame: pl.DataFrame
    names: list[str] | None        # the header's column names; None without a header
    layout: diagnosis.Layout
    body: bytes                    # the text after the header, as the layout's line numbers count it
    kept: pl.Series | None         # the body row of each frame row when blank lines were dropped (None: all kept)
    sample: list[list[str]]        # the first records of the body, split as the file is

    def shown(self, index: int, canon: str = "field") -> str:
        """Field `index` as messages name it: its header name, else e.g. `item (field 2)`."""
        return self.names[index] if self.names else f"{canon} (field {index + 1})"

    def fail(self, row: int, index: int, value: Any, reason: str, expected: str, canon: str = "field") -> NoReturn:
        """Raise the DataError for the value of field `index` at frame row `row`, naming its file line."""
        body_row = row if self.kept is None else int(self.kept[row])
        hint = diagnosis.Hint(body_row, self.shown(index, canon), value, reason, expected)
        raise diagnosis.diagnose_row(self.body, self.layout, hint) from None


def read_text_table(path: Source, *, separator: str | None = None, header: bool | None = None,
                    separators: tuple[str, ...] = sniffing.SEPARATORS, known_names: Collection[str] = (),
                    latin1: bool = False, rows: str = "data") -> TextTable:
    """Read a small delimited text file (an id list, item metadata) as text columns, with the interaction readers'
    loading (gzip, BOM, line ends, UTF-8 checks), separator and header detection, CSV quoting and error messages.

    Args:
        separator: the field separator; else the first of `separators` that splits the sampled lines evenly
            ("::" when listed and on the first line); a file that none of them splits is one column.
        header: whether the first line names the columns; detected when None (`known_names` are header words).
        latin1: read a file that is not UTF-8 as ISO-8859-1 instead of refusing it.
        rows: what a row is, for messages ("user id", "item title").

    Raises:
        DataError: naming the file, line, column, value and what was expected.
    """
    data = rawtext.check_text(rawtext.read_bytes(path), path, latin1=latin1)
    names = {name.lower() for name in known_names}
    return text_table(data, path, separator=separator, quote=True, header=header, separators=separators,
                       known_names=names, single_column=True, rows=rows)


def text_table(data: bytes, path: Source, *, separator: str | None, quote: bool, header: bool | None,
                separators: tuple[str, ...] = sniffing.SEPARATORS, prefer_tab: bool = False,
                known_names: Collection[str] = (), single_column: bool = False, rows: str = "interaction",
                typed_header: bool = False,
                resolve: Callable[[list[str] | None, int, int], dict[str, int]] | None = None,
                dtypes: Callable[[bytes, str, list[list[str]]], dict[int, type[pl.DataType]]] | None = None
                ) -> TextTable:
    """Separator, header and body of a delimited text, then the body through Polars. `resolve(names, n_fields,
    first_line)` may refuse the columns before the body is read, and names the fields the diagnosis checks;
    `dtypes(text, separator, sample)` guesses the types of some fields (the rest are read as text);
    `typed_header`: RecBole's `user_id:token` names."""
    start = sniffing.skip_blank_lines(data, 0)
    first_line = data.count(b"\n", 0, start) + 1
    lines = sniffing.head_lines(data, start)
    sep = separator
    if sep is None and "::" in separators and "::" in lines[0]:
        sep = "::"
    shown_sep = sep
    if sep is not None and len(sep.encode()) > 1:  # Polars splits on one byte: "::" -> \x1f
        data, sep, quote = data.replace(sep.encode(), b"\x1f"), "\x1f", False
        lines = sniffing.head_lines(data, start)
    if sep is None:
        candidates = tuple(c for c in separators if len(c) == 1)      # the csv module splits on one character
        sep = "\t" if prefer_tab and "\t" in lines[0] else sniffing.sniff_separator(lines, candidates)
        if sep is None and single_column:
            sep = "\x1f"                         # a byte text does not hold: every line is one field
        elif sep is None:
            raise DataError("cannot find the field separator", path=path, line=first_line, value=lines[0],
                            expected="fields separated by ',', ';', tab, '|' or space (or pass separator=)")
        shown_sep = sep
    records = sniffing.split_records(lines, sep, quote)
    if header is None:
        header = sniffing.looks_like_header(records[0], records[1] if len(records) > 1 else None, known_names)
    n_fields = len(records[0])
    names = [f.strip() for f in records[0]] if header else None
    if names and typed_header:
        names = [n.split(":", 1)[0] for n in names]
    resolved = resolve(names, n_fields, first_line) if resolve is not None else {}
    body_start = sniffing.end_of_record(data, start, quote) if header else start
    body_start = sniffing.skip_blank_lines(data, body_start)
    tail = data[body_start:body_start + 4096]
    if not tail.strip() and len(data) - body_start <= 4096:
        raise DataError("the file has a header line but no data rows" if header else "file is empty", path=path,
                        line=first_line, expected=f"at least one {rows} row")
    skip = data.count(b"\n", 0, body_start)
    checks = tuple((canon, i, names[i] if names else f"{canon} (field {i + 1})") for canon, i in resolved.items())
    layout = diagnosis.Layout(str(path), sep, shown_sep or sep, quote, n_fields, bool(header), skip + 1, checks)
    sample = records[1:] if header else records
    schema: dict[str, type[pl.DataType]] = {f"f{i}": pl.String for i in range(n_fields)}
    if dtypes is not None:
        schema.update({f"f{i}": dtype for i, dtype in dtypes(data, sep, sample).items()})
    frame, kept = _read_body(data, body_start, layout, schema, rows)
    return TextTable(frame, names, layout, data[body_start:], kept, sample)


def _read_body(data: bytes, body_start: int, layout: diagnosis.Layout, schema: dict[str, type[pl.DataType]],
               rows: str = "interaction") -> tuple[pl.DataFrame, pl.Series | None]:
    """The body as a frame of raw fields f0, f1, ... without blank lines, and the file rows kept (None: all)."""
    def read(dtypes: dict[str, type[pl.DataType]]) -> pl.DataFrame:
        return pl.read_csv(data, schema=dtypes, has_header=False, separator=layout.sep,
                           quote_char='"' if layout.quote else None, skip_lines=layout.first_line - 1)

    try:
        frame = read(schema)
    except typed_columns.POLARS_ERRORS:
        try:  # a row beyond the sample disagrees with the guessed dtypes: read text, convert later
            frame = read(dict.fromkeys(schema, pl.String))
        except typed_columns.POLARS_ERRORS as exc:
            error = diagnosis.diagnose(data[body_start:], layout)
            raise (error or DataError(f"cannot parse the file ({_first_line(exc)})", path=layout.path)) from None
    blank = frame.select(pl.all_horizontal(pl.all().is_null())).to_series()
    if not blank.any():
        return frame, None
    frame = frame.filter(~blank)  # blank lines come back as all-null rows
    if frame.height == 0:
        raise DataError(f"no {rows} rows: every data line is blank or has only empty fields", path=layout.path,
                        line=layout.first_line, expected=f"at least one {rows} row")
    return frame, (~blank).arg_true()


def parquet_frame(raw: bytes, path: Source, rows: str = "interaction") -> pl.DataFrame:
    """The Parquet file whose bytes are `raw` as a frame; DataError for an empty, truncated or corrupt file."""
    if not raw:
        raise DataError("file is empty", path=path, expected="a Parquet file")
    if not raw.startswith(rawtext.PARQUET_MAGIC):
        raise DataError("not a Parquet file (it does not start with the PAR1 marker)", path=path,
                        expected="a Parquet file, or the right format= for a text file")
    if len(raw) < 12 or not raw.endswith(rawtext.PARQUET_MAGIC):
        raise DataError("truncated Parquet file (the PAR1 marker at its end is missing)", path=path,
                        expected="a complete Parquet file (write or download it again)")
    try:
        frame = pl.read_parquet(io.BytesIO(raw))
    except typed_columns.POLARS_ERRORS as exc:
        raise DataError(f"corrupt Parquet file ({_first_line(exc)})", path=path,
                        expected="a readable Parquet file (write or download it again)") from None
    if frame.height == 0:
        raise DataError("the Parquet file has no rows", path=path, expected=f"at least one {rows} row")
    return frame


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else type(exc).__name__
