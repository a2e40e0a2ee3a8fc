"""Telling how a delimited text file is laid out, from a sample of its lines: the separator, whether the first line
is a header, where records start and end (a quoted field may span lines), and whether integer ids may be written
with leading zeros. Cheap: a sample of at most `SAMPLE_BYTES`, or vectorised byte scans of the whole buffer.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Collection

import numpy as np

SAMPLE_BYTES = 1 << 16
SEPARATORS = (",", ";", "\t", "|", " ")

INT_RE = re.compile(r"[+-]?\d+\Z")
NUMBER_RE = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?\Z")
_BLANK_LINES = re.compile(rb"(?:[ \t]*\n)*")


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


def looks_like_header(first: list[str], second: list[str] | None, names: Collection[str]) -> bool:
    """A header: a field is a well-known column name, or is text where the next row holds a number."""
    if any(field.strip().lower() in names for field in first):
        return True
    if second is None:
        return False
    return any(not is_number(a) and is_number(b) for a, b in zip(first, second))
