"""Loading a data file's bytes and checking that they are text.

`read_bytes` reads a file whole (plain, or gzip by its magic, concatenated members included) and refuses one that
changed while it was read; `check_text` refuses binary, UTF-16, zip, Parquet and non-UTF-8 input with the line and
byte of the first bad byte, strips a BOM and turns CRLF/CR line ends into LF. Whole-buffer scans only, no loop over
rows. Every reader of text files (interaction logs, sessions, user-id lists, item titles) starts here.
"""

from __future__ import annotations

import os
import stat
import zlib
from pathlib import Path
from typing import Any

from seqrec.errors import DataError

GZIP_MAGIC = b"\x1f\x8b"
PARQUET_MAGIC = b"PAR1"
ZIP_MAGIC = b"PK\x03\x04"
BOM = b"\xef\xbb\xbf"


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


def check_text(raw: bytes, path: Any, *, latin1: bool = False) -> bytes:
    """Reject binary or non-UTF-8 input; return the text with the BOM stripped and line ends turned into LF.

    `latin1`: a file that is not valid UTF-8 is read as ISO-8859-1 (MovieLens' `movies.dat`, `u.item`) instead
    of refused, and returned as UTF-8."""
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
        bad = _first_non_utf8(raw)
        if bad is not None and latin1:
            raw = raw.decode("latin-1").encode("utf-8")
        elif bad is not None:
            line, column = line_and_column(raw, bad)
            raise DataError(f"invalid UTF-8: byte 0x{raw[bad]:02x} at byte {column} of line {line}", path=path,
                            line=line, value=line_at(raw, bad),
                            expected="UTF-8 text (convert it, e.g. `iconv -f latin1 -t utf-8`)")
    if raw.startswith(BOM):
        raw = raw[len(BOM):]
    if b"\r" in raw:
        raw = raw.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
    return raw


def _first_non_utf8(raw: bytes, chunk: int = 1 << 24) -> int | None:
    """The offset of the first byte that is not part of valid UTF-8, or None; decodes in chunks."""
    view = memoryview(raw)
    start = 0
    while start < len(raw):
        end = min(start + chunk, len(raw))
        while end < len(raw) and raw[end] & 0xC0 == 0x80:  # do not cut a multi-byte character
            end -= 1
        try:
            str(view[start:end], "utf-8")
        except UnicodeDecodeError as exc:
            return start + exc.start
        start = end
    return None
