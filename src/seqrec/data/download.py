"""Download a registered public dataset, verify it and unpack it into the datasets folder.

    from seqrec.data.download import download
    folder = download("ml-1m")                 # ~/.cache/seqrec/datasets/ml-1m/  (SEQREC_DATASETS moves it)
    ratings = folder / "ml-1m/ratings.dat"

The file is streamed in chunks to `<dest>/<name>.part` while its checksum is computed, unpacked into a temporary
folder beside the destination, and renamed into place in one step; the folder's `.complete` marker (JSON: URL,
checksums, files) is written before that rename, so `<dest>/<name>/` either is complete or does not exist. On any
failure (HTTP error, refused connection, timeout, truncated body, checksum mismatch, corrupt archive, Ctrl-C)
everything partial is deleted and a `seqrec.DataError` says what went wrong.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import json
import os
import re
import shutil
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import IO, TYPE_CHECKING

from seqrec import paths
from seqrec.data.registry import ARCHIVE_KINDS, DatasetSpec, get_dataset, parse_checksum
from seqrec.errors import ConfigError, DataError

if TYPE_CHECKING:
    from rich.progress import Progress, TaskID

try:  # advisory lock so two processes never write the same .part file; POSIX only
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]  # checked before use: no lock where the OS has none

MARKER = ".complete"
CHUNK = 1 << 20
_RECORDED = ("md5", "sha256")  # digests recorded in the marker besides the verified one
_USER_AGENT = "seqrec (+https://pypi.org/project/seqrec/)"


def download(dataset: str | DatasetSpec, dest: str | os.PathLike[str] | None = None, *, mirror: str | None = None,
             checksum: str | None = None, force: bool = False, progress: bool = True, timeout: float = 60) -> Path:
    """Download, verify and unpack a dataset; return its folder `dest/<name>/`.

    Args:
        dataset: a registered name (`"ml-1m"`, see `seqrec.data.registry.list_datasets`) or a `DatasetSpec`.
        dest: parent folder (default `seqrec.paths.datasets_dir()`, moved with `SEQREC_DATASETS`).
        mirror: base URL (or local folder) holding the same file; replaces scheme, host and directory of the
            official URL and keeps the file name: `mirror="http://127.0.0.1:8765/"` fetches
            `http://127.0.0.1:8765/ml-1m.zip`.
        checksum: `"md5:<hex>"` or `"sha256:<hex>"` to verify against instead of the registry's; required for
            datasets whose publisher gives none.
        force: download again even when a complete copy is there.
        progress: show a progress bar (bytes, speed, ETA) on stderr.
        timeout: seconds to wait for the connection and for each read.

    Returns:
        The unpacked folder; the registry's `files` are relative to it.

    Raises:
        seqrec.DataError: the download or its verification failed (nothing partial is left behind), or no
            checksum is known for the dataset and none was given.
        seqrec.ConfigError: unknown dataset name, malformed checksum or malformed spec.
    """
    spec = dataset if isinstance(dataset, DatasetSpec) else get_dataset(dataset)
    _check_spec(spec)
    root = Path(dest).expanduser() if dest is not None else paths.datasets_dir()
    target = root / spec.name
    expected = parse_checksum(checksum) if checksum else parse_checksum(spec.checksum) if spec.checksum else None
    if not force and _is_complete(target, spec, expected):
        return target
    if expected is None:
        raise DataError(
            f"no published checksum is known for dataset {spec.name!r} ({spec.url}), so its download cannot be "
            f"verified; give the checksum you trust: download({spec.name!r}, checksum='sha256:<hex>') in Python "
            f"or `seqrec data download {spec.name} --checksum sha256:<hex>` (md5:<hex> works too)")
    url = source_url(spec, mirror)
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(f"cannot create the datasets folder: {exc.strerror or exc}", path=root) from None
    return _download_locked(spec, root, url, expected, force=force, progress=progress, timeout=timeout)


def source_url(spec: DatasetSpec, mirror: str | None = None) -> str:
    """The URL `download` fetches: the official one, or `mirror` + the file name."""
    if not mirror:
        return spec.url
    base = str(mirror)
    if "://" not in base:  # a local folder
        base = Path(base).expanduser().resolve().as_uri()
    return base.rstrip("/") + "/" + urllib.parse.quote(spec.file_name)


def downloaded(dataset: str | DatasetSpec, dest: str | os.PathLike[str] | None = None) -> Path | None:
    """The folder of a complete earlier download of `dataset`, or None."""
    spec = dataset if isinstance(dataset, DatasetSpec) else get_dataset(dataset)
    root = Path(dest).expanduser() if dest is not None else paths.datasets_dir()
    target = root / spec.name
    return target if _is_complete(target, spec, None) else None


# --------------------------------------------------------------------------------------------------------------

def _check_spec(spec: DatasetSpec) -> None:
    name = spec.name
    if not name or name in (".", "..") or re.search(r"[/\\\x00]", name) or name.startswith("."):
        raise ConfigError(f"dataset name {name!r} cannot be used as a folder name")
    if spec.archive not in ARCHIVE_KINDS:
        raise ConfigError(f"dataset {name!r}: unknown archive kind {spec.archive!r}; allowed: {ARCHIVE_KINDS}")
    if not spec.files:
        raise ConfigError(f"dataset {name!r} lists no files")
    for relative in spec.files:
        if _unsafe_member(relative):
            raise ConfigError(f"dataset {name!r}: file {relative!r} is not a relative path inside the folder")
    if not spec.file_name:
        raise ConfigError(f"dataset {name!r}: cannot tell the file name from {spec.url!r}; set `filename`")


def _is_complete(target: Path, spec: DatasetSpec, expected: tuple[str, str] | None) -> bool:
    try:
        record = json.loads((target / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    if not isinstance(record, dict):
        return False
    if expected is not None:
        algorithm, digest = expected
        if (record.get("checksums") or {}).get(algorithm) != digest:
            return False  # an earlier download of a different file
    return all((target / relative).is_file() for relative in spec.files)


def _download_locked(spec: DatasetSpec, root: Path, url: str, expected: tuple[str, str], *, force: bool,
                     progress: bool, timeout: float) -> Path:
    target = root / spec.name
    part = root / f"{spec.name}.part"
    tmp: Path | None = None
    handle: IO[bytes] | None = None
    try:
        handle = _open_part(part, spec, root)
        if not force and _is_complete(target, spec, expected):  # another process finished meanwhile
            return target
        digests, size = _fetch(url, handle, expected[0], progress=progress, timeout=timeout, spec=spec)
        handle.flush()
        algorithm, want = expected
        if digests[algorithm] != want:
            raise DataError(
                f"checksum mismatch for {url}: expected {algorithm}:{want}, got {algorithm}:{digests[algorithm]} "
                f"({size} bytes); the download was deleted. If the file is a new release you trust, pass its "
                "checksum with checksum= (--checksum)")
        tmp = Path(tempfile.mkdtemp(prefix=f".{spec.name}.tmp-", dir=root))
        tmp.chmod(0o755)  # mkdtemp makes it private; the dataset folder is an ordinary one
        _unpack(spec, part, tmp, url)
        _check_files(spec, tmp, url)
        record = {"name": spec.name, "url": url, "checksum": f"{algorithm}:{want}", "checksums": digests,
                  "bytes": size, "files": list(spec.files), "archive": spec.archive,
                  "downloaded_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        (tmp / MARKER).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")  # the last file written
        _install(tmp, target)
        tmp = None
        return target
    except KeyboardInterrupt:
        raise DataError(f"download of {url} interrupted; nothing was kept") from None
    except DataError:
        raise
    except OSError as exc:  # disk full, permissions, ...
        raise DataError(f"download of {url} failed: {exc.strerror or exc}", path=exc.filename or root) from None
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
        if handle is not None:
            with contextlib.suppress(OSError):
                part.unlink()
            handle.close()  # closing releases the lock, after the file is gone


def _open_part(part: Path, spec: DatasetSpec, root: Path) -> IO[bytes]:
    handle = open(part, "a+b")  # noqa: SIM115 - closed by the caller
    if fcntl is not None:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            raise DataError(f"another process is downloading {spec.name!r} into {root} ({part.name} is locked); "
                            "wait for it to finish or use another destination") from None
    handle.seek(0)
    handle.truncate()
    return handle


def _fetch(url: str, out: IO[bytes], algorithm: str, *, progress: bool, timeout: float,
           spec: DatasetSpec) -> tuple[dict[str, str], int]:
    """Stream `url` into `out`; return the hex digests (`algorithm` and md5/sha256) and the byte count."""
    request = urllib.request.Request(url, headers={"User-Agent": _USER_AGENT})
    try:
        response = urllib.request.urlopen(request, timeout=timeout)  # noqa: S310 - http(s)/file by design
    except urllib.error.HTTPError as exc:
        exc.close()
        raise DataError(f"download of {url} failed: HTTP {exc.code} {exc.reason}") from None
    except urllib.error.URLError as exc:
        raise DataError(f"cannot download {url}: {_reason(exc.reason, timeout)}") from None
    except (OSError, http.client.HTTPException, ValueError) as exc:
        raise DataError(f"cannot download {url}: {_reason(exc, timeout)}") from None

    hashers = {name: hashlib.new(name) for name in {algorithm, *_RECORDED}}
    received = 0
    with response:
        length = response.headers.get("Content-Length")
        total = int(length) if length and length.isdigit() else None
        content_type = response.headers.get_content_type()
        if content_type == "text/html" and not spec.file_name.lower().endswith((".html", ".htm")):
            raise DataError(
                f"{url} answered with an HTML page instead of {spec.file_name} (a login, error or confirmation "
                "page; Google Drive does this for large files); download the file in a browser and point "
                "mirror= (--mirror) at the folder holding it")
        with _progress_bar(progress, spec.file_name, total or spec.size) as (bar, task):
            try:
                while True:
                    chunk = response.read(CHUNK)
                    if not chunk:
                        break
                    out.write(chunk)
                    for hasher in hashers.values():
                        hasher.update(chunk)
                    received += len(chunk)
                    bar.update(task, advance=len(chunk))
            except (OSError, http.client.HTTPException, ValueError) as exc:
                raise DataError(f"download of {url} broke off after {received} bytes: "
                                f"{_reason(exc, timeout)}") from None
    if total is not None and received < total:
        raise DataError(f"download of {url} is incomplete: the connection closed after {received} of "
                        f"{total} bytes")
    return {name: hasher.hexdigest() for name, hasher in sorted(hashers.items())}, received


def _reason(exc: object, timeout: float) -> str:
    if isinstance(exc, TimeoutError) or "timed out" in str(exc):
        return f"timed out after {timeout:g} s"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


@contextlib.contextmanager
def _progress_bar(show: bool, label: str, total: int | None) -> Iterator[tuple[Progress, TaskID]]:
    from rich.console import Console
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn

    columns = (TextColumn("[bold]{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
               TimeRemainingColumn())
    with Progress(*columns, console=Console(stderr=True), disable=not show) as bar:
        task = bar.add_task(label, total=total)
        yield bar, task


# --------------------------------------------------------------------------------------------------------------
# unpacking

def _unsafe_member(name: str) -> bool:
    """True for archive member names that could escape the folder: absolute, drive-letter or `..` paths."""
    if not name or name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", name) or "\x00" in name:
        return True
    return ".." in re.split(r"[/\\]", name)


def _unpack(spec: DatasetSpec, part: Path, folder: Path, url: str) -> None:
    if spec.archive == "zip":
        _unzip(part, folder, url)
    elif spec.archive == "gz":
        _gunzip(part, folder / _gunzipped_name(spec.file_name), url)
    else:
        os.replace(part, folder / spec.file_name)


def _unzip(archive: Path, folder: Path, url: str) -> None:
    base = folder.resolve()
    try:
        with zipfile.ZipFile(archive) as zf:
            members = zf.infolist()
            for info in members:
                if _unsafe_member(info.filename):
                    raise DataError(f"refusing the zip archive from {url}: member {info.filename!r} would be "
                                    "written outside the dataset folder")
            for info in members:
                destination = folder.joinpath(*PurePosixPath(info.filename.replace("\\", "/")).parts)
                if not destination.resolve().is_relative_to(base):  # belt and braces
                    raise DataError(f"refusing the zip archive from {url}: member {info.filename!r} would be "
                                    "written outside the dataset folder")
                if info.is_dir():
                    destination.mkdir(parents=True, exist_ok=True)
                    continue
                destination.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(info) as source, open(destination, "wb") as sink:
                    shutil.copyfileobj(source, sink, CHUNK)
    except DataError:
        raise
    except (zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error, EOFError, NotImplementedError,
            RuntimeError) as exc:
        raise DataError(f"the zip archive from {url} is corrupt or unreadable: {exc}") from None


def _gunzipped_name(file_name: str) -> str:
    stem = file_name[:-3] if file_name.lower().endswith(".gz") else file_name
    return stem if stem and stem != file_name else file_name + ".out"


def _gunzip(archive: Path, destination: Path, url: str) -> None:
    import gzip

    try:
        with gzip.open(archive, "rb") as source, open(destination, "wb") as sink:
            shutil.copyfileobj(source, sink, CHUNK)
    except (gzip.BadGzipFile, zlib.error, EOFError) as exc:
        raise DataError(f"the gzip file from {url} is corrupt or unreadable: {exc}") from None


def _check_files(spec: DatasetSpec, folder: Path, url: str) -> None:
    missing = [relative for relative in spec.files if not (folder / relative).is_file()]
    if missing:
        present = sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())
        shown = ", ".join(present[:10]) + (f", … ({len(present)} files)" if len(present) > 10 else "")
        raise DataError(f"the download from {url} lacks {', '.join(missing)}; it holds: {shown or 'nothing'}")


def _install(tmp: Path, target: Path) -> None:
    """Move the finished folder into place; an older copy is swapped out first and deleted after."""
    if not target.exists() and not target.is_symlink():
        os.replace(tmp, target)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
    aside = old / "previous"
    os.replace(target, aside)
    try:
        os.replace(tmp, target)
    except BaseException:
        os.replace(aside, target)
        shutil.rmtree(old, ignore_errors=True)
        raise
    shutil.rmtree(old, ignore_errors=True)
