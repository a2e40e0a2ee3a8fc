"""Dataset registry and downloader, against a real HTTP server on 127.0.0.1 (no test reaches the internet)."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import re
import socket
import threading
import time
import zipfile
from dataclasses import replace
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from seqrec.data import download as dl
from seqrec.data.download import MARKER, download, downloaded, source_url
from seqrec.data.formats import FORMATS
from seqrec.data.registry import (
    ARCHIVE_KINDS,
    DATASETS,
    DatasetSpec,
    get_dataset,
    list_datasets,
    parse_checksum,
)
from seqrec.errors import ConfigError, DataError

RATINGS = "".join(f"{u}::{i}::{(u + i) % 5 + 1}::{978300000 + 10 * k}\n"
                  for k, (u, i) in enumerate((u, i) for u in range(1, 4) for i in range(1, 6)))


def _zip_bytes(members: dict[str, str]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, text in members.items():
            zf.writestr(name, text)
    return buffer.getvalue()


def _md5(data: bytes) -> str:
    return "md5:" + hashlib.md5(data).hexdigest()


def _sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


class _Handler(SimpleHTTPRequestHandler):
    """Serves the site folder; `/truncated/<file>` lies about Content-Length; `/slow/<file>` stalls."""

    def do_GET(self):  # noqa: N802 - http.server's name
        self.server.requests.append(self.path)
        if self.path.startswith("/truncated/"):
            body = b"PK\x03\x04 only the beginning of a zip"
            self.send_response(200)
            self.send_header("Content-Type", "application/zip")
            self.send_header("Content-Length", str(len(body) + 100_000))
            self.end_headers()
            self.wfile.write(body)
            self.wfile.flush()
            self.close_connection = True
            return
        if self.path.startswith("/slow/"):
            time.sleep(1.5)
            return
        super().do_GET()

    def log_message(self, *args):  # keep pytest output clean
        pass


@pytest.fixture
def server(tmp_path):
    """A real HTTP server on a free 127.0.0.1 port serving `tmp_path/site`; yields (base_url, site, requests)."""
    site = tmp_path / "site"
    site.mkdir()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), partial(_Handler, directory=str(site)))
    httpd.requests = []
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", site, httpd.requests
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture
def ml(server):
    """A small `ml-1m.zip` on the server and a DatasetSpec for it with its real md5."""
    base, site, requests = server
    data = _zip_bytes({"ml-1m/ratings.dat": RATINGS, "ml-1m/movies.dat": "1::Toy Story (1995)::Animation\n",
                       "ml-1m/users.dat": "1::F::1::10::48067\n", "ml-1m/README": "tiny test copy\n"})
    (site / "ml-1m.zip").write_bytes(data)
    spec = replace(DATASETS["ml-1m"], url=f"{base}/ml-1m.zip", checksum=_md5(data), size=len(data))
    return spec, data, base, site, requests


def _leftovers(dest: Path) -> list[str]:
    return sorted(p.name for p in dest.iterdir()) if dest.exists() else []


# ----------------------------------------------------------------------------------------------------------
# downloads


def test_download_unpacks_and_marks_complete(ml, tmp_path):
    spec, data, _, _, requests = ml
    dest = tmp_path / "datasets"
    folder = download(spec, dest, progress=False)
    assert folder == dest / "ml-1m"
    assert (folder / "ml-1m/ratings.dat").read_text() == RATINGS
    marker = json.loads((folder / MARKER).read_text())
    assert marker["checksum"] == spec.checksum and marker["checksums"]["sha256"] == _sha256(data)[7:]
    assert marker["bytes"] == len(data) and marker["files"] == list(spec.files)
    assert _leftovers(dest) == ["ml-1m"]                      # no .part, no temporary folders
    assert requests == ["/ml-1m.zip"]
    assert downloaded(spec, dest) == folder
    assert folder.stat().st_mode & 0o755 == 0o755


def test_download_with_files_missing_from_archive_is_refused(ml, tmp_path):
    spec, *_ = ml
    spec = replace(spec, files=("ml-1m/ratings.dat", "ml-1m/tags.dat"))
    dest = tmp_path / "datasets"
    with pytest.raises(DataError, match=r"lacks ml-1m/tags\.dat; it holds: ml-1m/README, ml-1m/movies\.dat, "):
        download(spec, dest, progress=False)
    assert _leftovers(dest) == []


def test_second_call_does_not_download_again_unless_forced(ml, tmp_path):
    spec, _, _, _, requests = ml
    dest = tmp_path / "datasets"
    first = download(spec, dest, progress=False)
    started = time.perf_counter()
    assert download(spec, dest, progress=False) == first
    assert time.perf_counter() - started < 0.5
    assert len(requests) == 1
    (first / "ml-1m/ratings.dat").write_text("edited\n")
    assert download(spec, dest, progress=False, force=True) == first
    assert len(requests) == 2 and (first / "ml-1m/ratings.dat").read_text() == RATINGS
    assert _leftovers(dest) == ["ml-1m"]


def test_folder_without_marker_is_replaced(ml, tmp_path):
    spec, _, _, _, requests = ml
    dest = tmp_path / "datasets"
    (dest / "ml-1m/ml-1m").mkdir(parents=True)
    (dest / "ml-1m/ml-1m/ratings.dat").write_text("half a file")
    folder = download(spec, dest, progress=False)
    assert (folder / "ml-1m/ratings.dat").read_text() == RATINGS and len(requests) == 1
    assert _leftovers(dest) == ["ml-1m"]


def test_default_destination_is_the_datasets_dir(ml, monkeypatch, tmp_path):
    spec, *_ = ml
    monkeypatch.setenv("SEQREC_DATASETS", str(tmp_path / "elsewhere"))
    assert download(spec, progress=False) == tmp_path / "elsewhere" / "ml-1m"


def test_progress_bar_goes_to_stderr(ml, tmp_path, capsys):
    spec, *_ = ml
    download(spec, tmp_path / "datasets", progress=True)
    captured = capsys.readouterr()
    assert captured.out == "" and "ml-1m.zip" in captured.err


def test_sha256_checksum_is_accepted(ml, tmp_path):
    spec, data, *_ = ml
    spec = replace(spec, checksum=_sha256(data))
    assert (download(spec, tmp_path / "d", progress=False) / "ml-1m/ratings.dat").is_file()


def test_wrong_checksum_names_expected_and_actual_and_leaves_nothing(ml, tmp_path):
    spec, data, *_ = ml
    wrong = "md5:" + "0" * 32
    dest = tmp_path / "datasets"
    with pytest.raises(DataError) as info:
        download(replace(spec, checksum=wrong), dest, progress=False)
    message = str(info.value)
    assert wrong in message and _md5(data) in message and spec.url in message
    assert _leftovers(dest) == []


def test_explicit_checksum_overrides_the_registry(ml, tmp_path):
    spec, data, *_ = ml
    with pytest.raises(DataError, match="checksum mismatch"):
        download(spec, tmp_path / "d", checksum="sha256:" + "1" * 64, progress=False)
    assert download(replace(spec, checksum="md5:" + "0" * 32), tmp_path / "d", checksum=_md5(data),
                    progress=False).is_dir()


def test_malformed_checksum_is_a_config_error(ml, tmp_path):
    spec, *_ = ml
    with pytest.raises(ConfigError, match="malformed checksum"):
        download(spec, tmp_path / "d", checksum="md5:xyz", progress=False)


def test_http_404_names_status_and_url(server, tmp_path):
    base, *_ = server
    spec = replace(DATASETS["ml-1m"], url=f"{base}/missing/ml-1m.zip", checksum="md5:" + "0" * 32)
    dest = tmp_path / "datasets"
    with pytest.raises(DataError, match=re.escape("HTTP 404 File not found")) as info:
        download(spec, dest, progress=False)
    assert spec.url in str(info.value)
    assert _leftovers(dest) == []


def test_connection_closed_mid_body_leaves_nothing(server, tmp_path):
    base, *_ = server
    spec = replace(DATASETS["ml-1m"], url=f"{base}/truncated/ml-1m.zip", checksum="md5:" + "0" * 32)
    dest = tmp_path / "datasets"
    with pytest.raises(DataError, match=r"incomplete: the connection closed after 32 of 100032 bytes"):
        download(spec, dest, progress=False)
    assert _leftovers(dest) == []


def test_connection_refused(tmp_path):
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    spec = replace(DATASETS["ml-1m"], url=f"http://127.0.0.1:{port}/ml-1m.zip")
    dest = tmp_path / "datasets"
    with pytest.raises(DataError, match=rf"cannot download http://127\.0\.0\.1:{port}/ml-1m\.zip: .*refused"):
        download(spec, dest, progress=False)
    assert _leftovers(dest) == []


def test_timeout(server, tmp_path):
    base, *_ = server
    spec = replace(DATASETS["ml-1m"], url=f"{base}/slow/ml-1m.zip")
    dest = tmp_path / "datasets"
    with pytest.raises(DataError, match=r"timed out after 0\.3 s"):
        download(spec, dest, progress=False, timeout=0.3)
    assert _leftovers(dest) == []


def test_ctrl_c_mid_download_leaves_nothing(ml, tmp_path, monkeypatch):
    spec, *_ = ml
    from rich.progress import Progress

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(Progress, "update", interrupted)
    dest = tmp_path / "datasets"
    with pytest.raises(DataError, match="interrupted; nothing was kept"):
        download(spec, dest, progress=False)
    assert _leftovers(dest) == []


def test_zip_slip_member_is_refused(server, tmp_path):
    base, site, _ = server
    data = _zip_bytes({"ml-1m/ratings.dat": RATINGS, "../evil": "gotcha\n"})
    (site / "evil.zip").write_bytes(data)
    spec = replace(DATASETS["ml-1m"], url=f"{base}/evil.zip", checksum=_md5(data))
    dest = tmp_path / "datasets"
    with pytest.raises(DataError, match=r"member '\.\./evil' would be written outside"):
        download(spec, dest, progress=False)
    assert _leftovers(dest) == [] and not (tmp_path / "evil").exists()


@pytest.mark.parametrize("name", ["/etc/evil", "C:/evil", "a/../../evil", "a\\..\\evil"])
def test_unsafe_member_names(name):
    assert dl._unsafe_member(name)
    assert not dl._unsafe_member("ml-1m/ratings.dat") and not dl._unsafe_member("a/..b/c")


def test_corrupt_zip_is_refused(server, tmp_path):
    base, site, _ = server
    data = b"this is not a zip file at all" * 10
    (site / "bad.zip").write_bytes(data)
    spec = replace(DATASETS["ml-1m"], url=f"{base}/bad.zip", checksum=_md5(data))
    dest = tmp_path / "datasets"
    with pytest.raises(DataError, match="zip archive from .* is corrupt"):
        download(spec, dest, progress=False)
    assert _leftovers(dest) == []


def test_gz_and_plain_files(server, tmp_path):
    base, site, _ = server
    csv = "A1,B1,5.0,1369699200\nA2,B1,3.0,1355443200\n"
    (site / "ratings_Beauty.csv").write_text(csv)
    (site / "ratings.csv.gz").write_bytes(gzip.compress(csv.encode()))
    plain = replace(DATASETS["amazon-beauty"], url=f"{base}/ratings_Beauty.csv", checksum=_md5(csv.encode()))
    folder = download(plain, tmp_path / "d", progress=False)
    assert (folder / "ratings_Beauty.csv").read_text() == csv
    packed = DatasetSpec(name="beauty-gz", url=f"{base}/ratings.csv.gz",
                         checksum=_sha256((site / "ratings.csv.gz").read_bytes()), archive="gz",
                         files=("ratings.csv",), format="csv", columns=None, description="", homepage="",
                         licence="")
    folder = download(packed, tmp_path / "d", progress=False)
    assert (folder / "ratings.csv").read_text() == csv
    assert _leftovers(tmp_path / "d") == ["amazon-beauty", "beauty-gz"]


def test_html_page_instead_of_archive_is_explained(server, tmp_path):
    base, site, _ = server
    (site / "confirm.html").write_text("<html>Google Drive can't scan this file for viruses</html>")
    spec = replace(DATASETS["diginetica"], url=f"{base}/confirm.html", checksum="md5:" + "0" * 32)
    with pytest.raises(DataError, match="HTML page instead of dataset-train-diginetica.zip"):
        download(spec, tmp_path / "d", progress=False)
    assert _leftovers(tmp_path / "d") == []


def test_mirror_rewrites_the_url(ml, tmp_path):
    spec, data, base, site, requests = ml
    (site / "mirror").mkdir()
    (site / "mirror/ml-1m.zip").write_bytes(data)
    official = replace(spec, url="https://files.grouplens.org/datasets/movielens/ml-1m.zip")
    assert source_url(official, base + "/mirror/") == f"{base}/mirror/ml-1m.zip"
    assert source_url(official, base + "/mirror") == f"{base}/mirror/ml-1m.zip"
    folder = download(official, tmp_path / "d", mirror=base + "/mirror/", progress=False)
    assert requests == ["/mirror/ml-1m.zip"]
    assert json.loads((folder / MARKER).read_text())["url"] == f"{base}/mirror/ml-1m.zip"


def test_mirror_can_be_a_local_folder(ml, tmp_path):
    spec, data, *_ = ml
    local = tmp_path / "by hand"
    local.mkdir()
    (local / "ml-1m.zip").write_bytes(data)
    folder = download(DATASETS["ml-1m"], tmp_path / "d", mirror=str(local), checksum=spec.checksum,
                      progress=False)
    assert (folder / "ml-1m/ratings.dat").read_text() == RATINGS


def test_mirror_keeps_the_registry_file_name_for_drive_urls():
    url = source_url(DATASETS["diginetica"], "http://127.0.0.1:8765/")
    assert url == "http://127.0.0.1:8765/dataset-train-diginetica.zip"
    assert urlsplit(source_url(DATASETS["ml-20m"], "http://m/x/")).path == "/x/ml-20m.zip"


def test_entry_without_checksum_needs_one(server, tmp_path):
    base, site, requests = server
    views = "sessionId;userId;itemId;timeframe;eventdate\n1;NA;81766;526309;2016-05-09\n"
    data = _zip_bytes({"train-item-views.csv": views})
    (site / "dataset-train-diginetica.zip").write_bytes(data)
    dest = tmp_path / "d"
    assert DATASETS["diginetica"].checksum == ""
    with pytest.raises(DataError, match=r"no published checksum is known for dataset 'diginetica'.*--checksum"):
        download("diginetica", dest, mirror=base, progress=False)
    assert requests == [] and _leftovers(dest) == []
    folder = download("diginetica", dest, mirror=base, checksum=_md5(data), progress=False)
    assert (folder / "train-item-views.csv").is_file()
    assert download("diginetica", dest, progress=False) == folder  # already there: no checksum needed
    assert len(requests) == 1


def test_locked_part_file_means_another_download(ml, tmp_path):
    spec, *_ = ml
    fcntl = pytest.importorskip("fcntl")
    dest = tmp_path / "d"
    dest.mkdir()
    with open(dest / "ml-1m.part", "wb") as other:
        fcntl.flock(other.fileno(), fcntl.LOCK_EX)
        with pytest.raises(DataError, match="another process is downloading 'ml-1m'"):
            download(spec, dest, progress=False)


# ----------------------------------------------------------------------------------------------------------
# registry


def test_get_dataset_suggests_the_closest_name():
    assert get_dataset("ml-1m") is DATASETS["ml-1m"] and get_dataset("ML-1M") is DATASETS["ml-1m"]
    with pytest.raises(ConfigError, match=r"unknown dataset 'ml1m'; did you mean 'ml-1m'\? known: ml-100k, ml-1m"):
        get_dataset("ml1m")
    with pytest.raises(ConfigError, match=r"did you mean 'diginetica'"):
        get_dataset("digenetica")
    with pytest.raises(ConfigError) as info:
        get_dataset("zzzz")
    assert "did you mean" not in str(info.value) and "amazon-beauty" in str(info.value)


def test_download_of_unknown_name_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="did you mean 'ml-20m'"):
        download("ml20m", tmp_path, progress=False)


def test_registry_has_the_required_datasets():
    assert {"ml-100k", "ml-1m", "ml-20m", "amazon-beauty", "diginetica"} <= set(DATASETS)
    assert list_datasets() == list(DATASETS.values())
    assert DATASETS["ml-1m"].checksum == "md5:c4d9eecfca2ab87c1945afe126590906"
    assert DATASETS["ml-1m"].url == "https://files.grouplens.org/datasets/movielens/ml-1m.zip"
    assert DATASETS["amazon-beauty"].file_name == "ratings_Beauty.csv"


@pytest.mark.parametrize("spec", list(DATASETS.values()), ids=list(DATASETS))
def test_registry_entries_are_well_formed(spec):
    parts = urlsplit(spec.url)
    assert parts.scheme in ("https", "http") and parts.netloc and " " not in spec.url
    assert spec.archive in ARCHIVE_KINDS and spec.format in FORMATS
    assert spec.checksum == "" or re.fullmatch(r"md5:[0-9a-f]{32}|sha256:[0-9a-f]{64}", spec.checksum)
    if spec.checksum:
        assert parse_checksum(spec.checksum)[0] in ("md5", "sha256")
    assert spec.files and all(not dl._unsafe_member(f) for f in spec.files)
    assert spec.file_name and (spec.archive != "zip" or spec.file_name.endswith(".zip"))
    assert spec.size is None or spec.size > 0
    assert spec.description and spec.homepage.startswith(("https://", "http://")) and spec.licence
    assert spec.columns is None or set(spec.columns) <= {"user", "item", "time", "rating", "session"}
    assert spec.read_options()["format"] == spec.format
    dl._check_spec(spec)


def test_parse_checksum():
    assert parse_checksum("MD5:" + "A" * 32) == ("md5", "a" * 32)
    assert parse_checksum("b" * 64) == ("sha256", "b" * 64)
    for bad in ("md5:" + "0" * 31, "crc32:deadbeef", "sha256:" + "g" * 64, ""):
        with pytest.raises(ConfigError):
            parse_checksum(bad)
