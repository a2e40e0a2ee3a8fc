"""The HTTP service as a real process on a free loopback port, driven by real HTTP requests."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch

from seqrec.recommend import Recommender

MAX_LEN = 20   # of the conftest demo run


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(run_dir: Path, cache: Path, *extra: str, env: dict | None = None,
                 log: Path | None = None) -> tuple[subprocess.Popen, str]:
    """A `seqrec serve` process on a free loopback port, once it answers /health; its stdout and stderr go to
    `log` when given (readable while it runs), else to pipes."""
    port = free_port()
    env = {**os.environ, "SEQREC_CACHE": str(cache), **(env or {})}
    out = open(log, "w") if log is not None else subprocess.PIPE                # noqa: SIM115 - the child holds it
    proc = subprocess.Popen([sys.executable, "-m", "seqrec.cli", "serve", str(run_dir), "--port", str(port), *extra],
                            env=env, stdout=out, stderr=subprocess.STDOUT if log is not None else subprocess.PIPE,
                            text=True)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            shown = log.read_text() if log is not None else proc.stderr.read()
            raise AssertionError(f"server exited with {proc.returncode}: {shown}")
        try:
            with urllib.request.urlopen(base + "/health", timeout=2) as response:
                if response.status == 200:
                    return proc, base
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(0.2)
    proc.kill()
    raise AssertionError("server did not answer /health within 90 s")


def request(base: str, path: str, body=None, *, method: str | None = None, raw: bytes | None = None,
            content_type: str = "application/json", headers: dict | None = None) -> tuple[int, dict]:
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    req = urllib.request.Request(base + path, data=data, method=method or ("POST" if data is not None else "GET"),
                                 headers=headers or {})
    if data is not None:
        req.add_header("Content-Type", content_type)
    try:
        with urllib.request.urlopen(req, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


@pytest.fixture(scope="module")
def served(demo_run):
    """(base URL, Recommender over the same run, run dir, cache) for the demo SASRec run being served."""
    run_dir, cache = demo_run
    mp = pytest.MonkeyPatch()
    mp.setenv("SEQREC_CACHE", str(cache))
    rec = Recommender.load(run_dir)
    proc, base = start_server(run_dir, cache, "--max-k", "100", "--max-items", "500", "--max-body-bytes", "20000")
    yield base, rec, run_dir, cache
    proc.terminate()
    proc.wait(timeout=30)
    mp.undo()


def test_health_and_model(served):
    base, rec, run_dir, _ = served
    assert request(base, "/health") == (200, {"status": "ok"})
    status, info = request(base, "/model")
    assert status == 200 and info["model"] == "sasrec"
    assert info["items"] == rec.data.num_items and info["max_len"] == MAX_LEN
    results = json.loads((run_dir / "results.json").read_text())
    assert info["metrics"]["test"] == pytest.approx(results["test"])
    assert info["data"]["interactions"] == rec.data.num_interactions
    assert info["limits"]["max_k"] == 100
    status, spec = request(base, "/openapi.json")
    assert status == 200 and "/recommend" in spec["paths"]


def test_answers_equal_the_python_api(served):
    base, rec, _, _ = served
    user = rec.data.users.decode(np.array([11]))[0].item()
    status, body = request(base, "/recommend", {"user": user, "k": 7})
    expected = rec.recommend(user, k=7)
    assert status == 200 and body["k"] == 7
    assert body["truncated"] == (rec.data.sequence(11).size > MAX_LEN)
    assert [row["item"] for row in body["items"]] == [item for item, _ in expected.items]
    assert [row["score"] for row in body["items"]] == pytest.approx([s for _, s in expected.items], abs=1e-5)
    history = rec.data.item_vocab.decode(rec.data.sequence(4)[-6:]).tolist()
    status, body = request(base, "/recommend", {"history": history, "k": 5, "exclude_seen": False,
                                                "deny": [history[-1]]})
    expected = rec.recommend(history=history, k=5, exclude_seen=False, deny=[history[-1]])
    assert status == 200 and [row["item"] for row in body["items"]] == [i for i, _ in expected.items]
    allow = rec.data.item_vocab.raw[:6].tolist()
    status, body = request(base, "/recommend", {"history": history, "k": 3, "allow": allow})
    assert status == 200 and [row["item"] for row in body["items"]] == \
        [i for i, _ in rec.recommend(history=history, k=3, allow=allow).items]
    assert {row["item"] for row in body["items"]} <= set(allow) - set(history)


def test_concurrent_requests_are_batched_and_each_answered_right(served):
    base, rec, _, _ = served
    users = [u.item() for u in rec.data.users.decode(np.arange(48))]
    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(lambda u: request(base, "/recommend", {"user": u, "k": 5}), users))
    for user, (status, body) in zip(users, answers):
        assert status == 200
        assert [row["item"] for row in body["items"]] == [i for i, _ in rec.recommend(user, k=5).items]


def test_seen_items_are_excluded(served):
    base, rec, _, _ = served
    user = rec.data.users.decode(np.array([2]))[0].item()
    seen = set(rec.data.item_vocab.decode(rec.data.sequence(2)).tolist())
    status, body = request(base, "/recommend", {"user": user, "k": 50})
    assert status == 200 and len(body["items"]) == 50 and not seen & {row["item"] for row in body["items"]}
    status, body = request(base, "/recommend", {"user": user, "k": 50, "exclude_seen": False})
    assert status == 200 and seen & {row["item"] for row in body["items"]}


def test_long_history_is_truncated_and_said_so(served):
    base, rec, _, _ = served
    history = rec.data.item_vocab.decode(np.resize(rec.data.sequence(1), 60)).tolist()
    status, body = request(base, "/recommend", {"history": history, "k": 3, "exclude_seen": False})
    assert status == 200 and body["truncated"] and body["used_length"] == MAX_LEN
    assert body["history_length"] == 60 and "most recent" in body["note"]
    expected = rec.recommend(history=history[-MAX_LEN:], k=3, exclude_seen=False)
    assert [row["item"] for row in body["items"]] == [i for i, _ in expected.items]


def test_unknown_items_can_be_ignored(served):
    base, rec, _, _ = served
    known = rec.data.item_vocab.raw[:2].tolist()
    status, body = request(base, "/recommend", {"history": [*known, 987654321, "zz"], "k": 3})
    assert status == 422 and "987654321" in body["error"] and "'zz'" in body["error"] and body["field"] == "history"
    status, body = request(base, "/recommend", {"history": [*known, 987654321], "k": 3, "ignore_unknown": True})
    assert status == 200 and body["ignored"] == [987654321] and body["history_length"] == 2


BAD = [
    ({"user": "no-such-user"}, 404, "unknown user 'no-such-user'"),
    ({"history": []}, 422, "history is empty"),
    ({"history": [987654321]}, 422, "unknown item id(s) in history: 987654321"),
    ({"user": 1, "k": 0}, 422, "k must be between 1 and 100, got 0"),
    ({"user": 1, "k": 101}, 422, "k must be between 1 and 100, got 101"),
    ({"user": 1, "k": "ten"}, 422, "k: Input should be a valid integer (got 'ten')"),
    ({"user": 1, "k": 2.5}, 422, "k: Input should be a valid integer"),
    ({"user": 1, "exclude_seen": "yes"}, 422, "exclude_seen: Input should be a valid boolean"),
    ({"history": "1,2,3"}, 422, "history: Input should be a valid list"),
    ({"history": [True]}, 422, "history.0: an id must be an integer or a string (got True)"),
    ({"history": [1, 2], "user": 1}, 422, "exactly one of 'user' or 'history'"),
    ({}, 422, "exactly one of 'user' or 'history'"),
    ({"user": 1, "colour": "red"}, 422, "unknown field 'colour'"),
    ([1, 2, 3], 422, "the body must be a JSON object"),
    ({"history": list(range(1, 502))}, 422, "history has 501 items; at most 500"),
    ({"history": [1, 2], "times": [5]}, 422, "times has 1 values but the history has 2 items"),
    ({"history": [1], "times": ["noon"]}, 422, "times.0: Input should be a valid integer"),
    ({"user": 1, "times": [5]}, 422, "times go with a raw history"),
    ({"history": [2 ** 64]}, 422, "unknown item id(s) in history: 18446744073709551616"),   # was a 500 (fuzzing)
    ({"user": 2 ** 70}, 404, "unknown user 1180591620717411303424"),                          # was a 500 (fuzzing)
]


@pytest.mark.parametrize(("body", "status", "message"), BAD, ids=[m[:30] for _, _, m in BAD])
def test_bad_requests_get_4xx_json_with_a_clear_message(served, body, status, message):
    base, _, _, _ = served
    got_status, got = request(base, "/recommend", body)
    assert got_status == status and message in got["error"], got


def test_malformed_json_oversized_body_wrong_method_and_path(served):
    base, _, _, _ = served
    status, body = request(base, "/recommend", raw=b'{"user": 1, "k": ')
    assert status == 400 and "malformed JSON" in body["error"]
    status, body = request(base, "/recommend", raw=b"user=1", content_type="application/x-www-form-urlencoded")
    assert status == 422 and "JSON object" in body["error"]
    status, body = request(base, "/recommend", raw=json.dumps({"history": list(range(5000))}).encode())
    assert status == 413 and "over the limit of 20000 bytes" in body["error"]
    status, body = request(base, "/recommend", method="GET")
    assert status == 405 and "allowed: POST" in body["error"]
    status, body = request(base, "/nowhere")
    assert status == 404 and "POST /recommend" in body["error"]


def test_service_listens_on_loopback_only_by_default(served):
    base, _, _, _ = served
    port = int(base.rsplit(":", 1)[1])
    table = Path("/proc/net/tcp")
    if not table.exists():
        pytest.skip("no /proc/net/tcp on this system")
    listening = [line.split()[1] for line in table.read_text().splitlines()[1:] if line.split()[3] == "0A"]
    ours = [address for address in listening if int(address.split(":")[1], 16) == port]
    assert ours == [f"0100007F:{port:04X}"]                                  # 127.0.0.1, not 0.0.0.0


def test_pickle_payload_checkpoint_is_refused_by_serve(served, tmp_path):
    _, _, run_dir, cache = served
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    sentinel = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {sentinel}",))

    torch.save({"format": 1, "state_dict": Payload()}, copy / "checkpoints" / "best.pt")
    env = {**os.environ, "SEQREC_CACHE": str(cache)}
    done = subprocess.run([sys.executable, "-m", "seqrec.cli", "serve", str(copy), "--port", str(free_port())],
                          env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1 and "refused" in done.stderr and "Traceback" not in done.stderr
    assert not sentinel.exists()


# ---------------------------------------------------------------------------------------------------- API key

KEY = "k3y-" + "Zq9" * 8                     # 28 characters, as a key file would hold
WRONG = "k3y-" + "Zq8" * 8


@pytest.fixture(scope="module")
def guarded(demo_run, tmp_path_factory):
    """(base URL, Recommender, log file of the server's stdout + stderr) of a served demo run that needs KEY
    (from --api-key-file), with the access log on."""
    run_dir, cache = demo_run
    folder = tmp_path_factory.mktemp("key")
    key_file = folder / "api.key"
    key_file.write_text(KEY + "\n")
    key_file.chmod(0o600)
    log = folder / "server.log"
    proc, base = start_server(run_dir, cache, "--api-key-file", str(key_file), "--access-log",
                              env={"SEQREC_API_KEY": ""}, log=log)
    mp = pytest.MonkeyPatch()
    mp.setenv("SEQREC_CACHE", str(cache))
    yield base, Recommender.load(run_dir), log
    mp.undo()
    proc.terminate()
    proc.wait(timeout=30)


@pytest.mark.parametrize(("method", "path"), [("POST", "/recommend"), ("GET", "/model"), ("GET", "/openapi.json"),
                                              ("GET", "/docs"), ("GET", "/nowhere")])
def test_every_endpoint_but_health_needs_the_key(guarded, method, path):
    base, _, _ = guarded
    body = {"user": 1, "k": 3} if method == "POST" else None
    status, got = request(base, path, body, method=method)
    assert status == 401 and "needs an API key" in got["error"] and "Bearer" in got["error"]
    for headers in ({"Authorization": f"Bearer {WRONG}"}, {"X-API-Key": WRONG}, {"Authorization": f"Bearer {KEY}x"},
                    {"Authorization": f"Bearer {KEY[:-1]}"}):
        status, got = request(base, path, body, method=method, headers=headers)
        assert (status, got) == (401, {"error": "invalid API key", "field": None})
    status, got = request(base, path, body, method=method, headers={"Authorization": f"Basic {KEY}"})
    assert status == 401 and "needs an API key" in got["error"]                 # only the Bearer scheme


def test_health_is_open_and_the_right_key_gets_the_right_answer(guarded):
    base, rec, _ = guarded
    assert request(base, "/health") == (200, {"status": "ok"})
    user = rec.data.users.decode(np.array([5]))[0].item()
    expected = [item for item, _ in rec.recommend(user, k=6).items]
    for headers in ({"Authorization": f"Bearer {KEY}"}, {"authorization": f"bearer {KEY}"}, {"X-API-Key": KEY}):
        status, body = request(base, "/recommend", {"user": user, "k": 6}, headers=headers)
        assert status == 200 and [row["item"] for row in body["items"]] == expected
        status, info = request(base, "/model", headers=headers)
        assert status == 200 and KEY not in json.dumps(info)                   # not among the limits either
    status, body = request(base, "/recommend", {"user": "nobody"}, headers={"X-API-Key": KEY})
    assert status == 404 and KEY not in json.dumps(body)                        # errors as usual, past the key


def test_the_key_never_reaches_the_logs(guarded):
    base, _, log = guarded
    for headers in ({"Authorization": f"Bearer {KEY}"}, {"X-API-Key": WRONG}, {}):
        request(base, "/recommend", {"user": 1, "k": 2}, headers=headers)
        request(base, "/recommend", raw=b'{"user": ', headers=headers)
        request(base, "/model", headers=headers)
    time.sleep(0.5)
    text = log.read_text()
    assert "POST /recommend" in text and " 401" in text and " 200" in text     # the access log is on
    assert "API key from --api-key-file" in text                               # the banner names the source
    assert KEY not in text and WRONG not in text and KEY[4:] not in text


def test_a_public_host_without_a_key_is_refused_before_loading(demo_run, tmp_path):
    run_dir, cache = demo_run
    env = {**os.environ, "SEQREC_CACHE": str(cache), "SEQREC_API_KEY": ""}
    command = [sys.executable, "-m", "seqrec.cli", "serve", str(run_dir), "--port", str(free_port())]
    for host in ("0.0.0.0", "::", "192.168.1.7", "example.org"):
        started = time.monotonic()
        done = subprocess.run([*command, "--host", host], env=env, capture_output=True, text=True, timeout=60)
        assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
        assert f"--host {host} exposes the service" in done.stderr and "--no-auth" in done.stderr
        assert time.monotonic() - started < 30
    done = subprocess.run([*command, "--host", "0.0.0.0", "--no-auth"], env={**env, "SEQREC_API_KEY": KEY},
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 1 and "--no-auth contradicts the API key" in done.stderr
    short = tmp_path / "short.key"
    short.write_text("hunter2x\n")
    for extra, shown in ((["--api-key-file", str(short)], "at least 16"),
                         (["--api-key-file", str(tmp_path / "none.key")], "cannot read the key")):
        done = subprocess.run([*command, *extra], env=env, capture_output=True, text=True, timeout=60)
        assert done.returncode == 1 and shown in done.stderr and "Traceback" not in done.stderr, done.stderr
        assert "hunter2x" not in done.stderr


def test_key_sources_and_loopback_hosts():
    from seqrec.errors import ConfigError
    from seqrec.serve import check_exposure, is_loopback, resolve_api_key

    assert resolve_api_key(environ={"SEQREC_API_KEY": f" {KEY}\n"}) == (KEY, "$SEQREC_API_KEY")
    assert resolve_api_key(environ={}) == (None, None)
    assert resolve_api_key(environ={"SEQREC_API_KEY": ""}) == (None, None)
    with pytest.raises(ConfigError, match="printable ASCII") as caught:
        resolve_api_key(environ={"SEQREC_API_KEY": "two words in a key"})
    assert "two words" not in str(caught.value)                                 # never echoed
    for host in ("127.0.0.1", "127.8.9.1", "::1", "[::1]", "localhost"):
        assert is_loopback(host)
        check_exposure(host, has_key=False, no_auth=False)
    for host in ("0.0.0.0", "::", "10.0.0.1", "myhost"):
        assert not is_loopback(host)
        check_exposure(host, has_key=True, no_auth=False)
        check_exposure(host, has_key=False, no_auth=True)
