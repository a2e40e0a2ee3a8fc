"""Errors seqrec raises on bad input.

Every problem a user can cause (a malformed file, a wrong option, an unknown dataset) is raised as a
`SeqrecError` subclass whose message names what is wrong and where: file, line, column, value, and what was
expected. The CLI prints the message and exits non-zero without a traceback; the Python API lets it propagate.
"""

from __future__ import annotations

from os import PathLike
from typing import Any


class SeqrecError(Exception):
    """Base class of every error seqrec raises on bad input or a bad option."""


class DataError(SeqrecError):
    """A data file or data set is unusable; the message says where and why.

    Attributes:
        path: the file, when the problem is in one.
        line: 1-based line (or row) number, when known.
        column: the column name or 1-based position, when known.
        value: the offending value, when there is one.
        expected: what would have been accepted.
    """

    def __init__(
        self,
        message: str,
        *,
        path: str | PathLike[str] | None = None,
        line: int | None = None,
        column: str | int | None = None,
        value: Any = None,
        expected: str | None = None,
    ) -> None:
        self.reason = message
        self.path = None if path is None else str(path)
        self.line = line
        self.column = column
        self.value = value
        self.expected = expected
        super().__init__(self._format())

    def _format(self) -> str:
        where = ""
        if self.path is not None:
            where = self.path
            if self.line is not None:
                where += f":{self.line}"
            where += ": "
        elif self.line is not None:
            where = f"line {self.line}: "
        parts = [where + self.reason]
        if self.column is not None:
            parts.append(f"column {self.column!r}" if isinstance(self.column, str) else f"column {self.column}")
        if self.value is not None:
            shown = repr(self.value)
            parts.append(f"value {shown[:80] + '…' if len(shown) > 80 else shown}")
        if self.expected is not None:
            parts.append(f"expected {self.expected}")
        return "; ".join(parts)


class ConfigError(SeqrecError):
    """An option or configuration value is invalid; the message names the key, the value and what is allowed."""
