"""Files that go beside an interaction log: user-id lists (`seqrec recommend --users-file`) and item titles
(`--titles`), read with the interaction readers (`tables.read_text_table`, `tables.parquet_frame`).

So gzip, BOMs, line ends, CSV quoting, separators, headers and blank lines get the same handling as in a log, and
a bad line the same message: file, line, column, value and what was expected.
"""

from __future__ import annotations

import os
from pathlib import PurePath

import polars as pl

from seqrec.data import rawtext, readers, tables
from seqrec.data.columns import ITEM, USER
from seqrec.errors import DataError

USER_NAMES = readers.COLUMN_ALIASES[USER]
ITEM_NAMES = readers.COLUMN_ALIASES[ITEM]
TITLE_NAMES = ("title", "name", "movie_title")
TABLE_SEPARATORS = (",", "\t", ";", "|")      # never a blank: ids and titles may hold blanks


def read_user_ids(path: str | os.PathLike[str]) -> list:
    """User ids, in file order: a text file with one id per line (taken whole, blanks around it dropped), a CSV/TSV
    file (its `user` column by header name, else the first) or a Parquet file (likewise). Ids from text files are
    text; a run whose user ids are integers reads them as integers.

    Raises:
        DataError: naming the file, line, column and value of an empty id or a short line.
    """
    p = rawtext.check_path(path)
    name = p.name.lower().removesuffix(".gz")
    if name.endswith((".parquet", ".pq")) or rawtext.read_bytes(p, limit=4) == rawtext.PARQUET_MAGIC:
        frame = tables.parquet_frame(rawtext.read_bytes(p), p, rows="user id")
        column = _pick(frame.columns, USER_NAMES, 0)
        values = frame.get_column(frame.columns[column])
        if values.null_count():
            row = int(values.is_null().arg_true()[0])
            raise DataError(f"empty user id (row {row + 1})", path=p, column=frame.columns[column],
                            expected="a user id in every row")
        return values.to_list()
    table_like = PurePath(name).suffix in (".csv", ".tsv")
    table = tables.read_text_table(p, separators=TABLE_SEPARATORS if table_like else (),
                                    header=None if table_like else False, known_names=USER_NAMES, rows="user id")
    column = _pick(table.names, USER_NAMES, 0)
    return _column(table, column, "user id", skip_blank=table.layout.n_fields == 1).to_list()


def read_titles(path: str | os.PathLike[str]) -> dict[str, str]:
    """Item id (as text) -> title, from MovieLens `movies.dat` (`id::title::genres`), ML-100K `u.item`
    (`id|title|date|...`) or a CSV/TSV: the id is the column named like an item id (else the first), the title
    the `title` column (else the next one). A file that is not UTF-8 is read as ISO-8859-1, as MovieLens' are.

    Raises:
        DataError: a file with a single column, or a line without an id or a title (file, line, column, value).
    """
    table = tables.read_text_table(path, separators=("::", *TABLE_SEPARATORS),
                                    known_names=(*ITEM_NAMES, *TITLE_NAMES), latin1=True, rows="item title")
    if table.layout.n_fields < 2:
        raise DataError("item metadata needs an id column and a title column", path=path,
                        value=table.sample[0][0] if table.sample else None,
                        expected="at least 2 fields per line, e.g. 'id::title::genres', 'id|title|...' or "
                                 "a CSV with item and title columns")
    item = _pick(table.names, ITEM_NAMES, 0)
    title = _pick(table.names, TITLE_NAMES, 1 if item == 0 else 0)
    ids, titles = _column(table, item, "item id"), _column(table, title, "title")
    return dict(zip(ids.to_list(), titles.to_list()))


def _pick(names: list[str] | None, wanted: tuple[str, ...], default: int) -> int:
    """The position of the first column named like one of `wanted` (any case), else `default`."""
    lowered = [name.lower() for name in names or ()]
    return next((lowered.index(name) for name in wanted if name in lowered), default)


def _column(table: tables.TextTable, index: int, what: str, skip_blank: bool = False) -> pl.Series:
    """Field `index` of every row, blanks around it dropped; an empty one raises the DataError naming its line
    (`skip_blank`: a one-column file's blank lines are skipped instead)."""
    values = table.frame.get_column(f"f{index}").str.strip_chars()
    empty = values.is_null() | (values.str.len_bytes() == 0)
    if skip_blank:
        return values.filter(~empty)
    if empty.any():
        row = int(empty.arg_true()[0])
        table.fail(row, index, table.frame.get_column(f"f{index}")[row], f"empty {what}", f"a {what} on every line")
    return values
