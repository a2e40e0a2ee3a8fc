"""Durable atomic file writes: a path holds its old complete content or its new one, never a partial file.

Every file seqrec writes for later reading (checkpoints, run logs and results, the prepared-data cache,
evaluation reports) goes through `atomic_write`: the content is written to a temp file beside the target,
flushed and fsynced, renamed onto it (`os.replace`, atomic on one file system) and the directory fsynced. A
writer killed mid-write (even by SIGKILL) leaves a temp file named after its pid, which the next write to the
same path removes. No heavy imports: the data path and the CLI use it too.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import re
import tempfile
from collections.abc import Callable
from os import PathLike
from pathlib import Path
from typing import IO, Any

logger = logging.getLogger(__name__)

TMP_MARK = ".tmp-"


def _fsync_dir(directory: Path) -> None:
    """Flush a directory entry so a completed rename survives a power loss, where the OS supports it."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # e.g. Windows cannot open directories; the rename is still atomic there
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@functools.cache
def _umask() -> int:
    # The only portable way to read the umask is to set it and put it back; done once, at the first write.
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # exists but belongs to someone else, or we cannot tell: leave its file alone
    return True


def _remove_stale_temps(path: Path) -> None:
    """Delete temp files left beside `path` by writers that were killed mid-save.

    A temp file carries its writer's pid, so files of a writer that is still running (a concurrent save) are
    kept; only those of dead processes are removed.
    """
    prefix = f".{path.name}{TMP_MARK}"
    for stale in path.parent.glob(f"{_glob_escape(prefix)}*"):
        pid_text = stale.name[len(prefix):].split("-", 1)[0]
        if pid_text.isdigit() and int(pid_text) != os.getpid() and not _pid_alive(int(pid_text)):
            with contextlib.suppress(OSError):
                stale.unlink()
                logger.debug("removed stale temp file %s", stale)


def _glob_escape(text: str) -> str:
    """Escape glob metacharacters so a file name is matched literally."""
    return re.sub(r"([\[\]*?])", r"[\1]", text)


def atomic_write(path: str | PathLike[str], write: Callable[[IO[bytes]], object]) -> Path:
    """Write a file so that `path` always holds either its old or its new complete content.

    `write` fills a temp file in the same directory (same file system, so the rename is atomic); the temp file
    is flushed and fsynced, renamed onto `path` with `os.replace`, and the directory is fsynced.

    Args:
        path: the destination file; its parent directory must exist.
        write: called with a binary file object to write the content to.

    Returns:
        `path` as a Path.
    """
    path = Path(path)
    _remove_stale_temps(path)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}{TMP_MARK}{os.getpid()}-", dir=path.parent)
    tmp = Path(tmp_name)
    try:
        # mkstemp creates mode 0600; give the result the permissions an ordinary open() would have.
        with contextlib.suppress(OSError, AttributeError):
            os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    _fsync_dir(path.parent)
    return path


def write_bytes(path: str | PathLike[str], data: bytes) -> Path:
    """`atomic_write` of a bytes object."""
    return atomic_write(path, lambda handle: handle.write(data))


def write_json(path: str | PathLike[str], value: Any, **dumps: Any) -> Path:
    """`atomic_write` of `json.dumps(value, **dumps)` and a final newline."""
    import json

    return write_bytes(path, (json.dumps(value, **dumps) + "\n").encode())
