"""Random JSON bodies (and random bytes) into a real `seqrec serve` process on loopback.

Property: every request gets a JSON answer; a 200 equals the Python API's answer to the same request; every
refusal is a 4xx `{"error": message, "field": ...}`; never a 5xx, a dropped connection or a hang.
"""

from __future__ import annotations

import http.client
import json

import pytest
from fuzzing import fuzz
from hypothesis import event, given
from hypothesis import strategies as st

from seqrec.recommend import Recommender
from test_serve import start_server

FIELDS = ["user", "history", "times", "ratings", "k", "exclude_seen", "allow", "deny", "ignore_unknown"]


@pytest.fixture(scope="module")
def service(demo_run):
    """(a POST function on one keep-alive connection, Recommender) of the demo run served by a real process."""
    run_dir, cache = demo_run
    mp = pytest.MonkeyPatch()
    mp.setenv("SEQREC_CACHE", str(cache))
    rec = Recommender.load(run_dir)
    proc, base = start_server(run_dir, cache, "--max-k", "200", "--max-items", "300", "--max-body-bytes", "50000")
    host, port = base.removeprefix("http://").split(":")
    state = {"conn": http.client.HTTPConnection(host, int(port), timeout=30)}

    def post(body: bytes, content_type: str = "application/json") -> tuple[int, dict]:
        for attempt in range(2):
            conn = state["conn"]
            try:
                conn.request("POST", "/recommend", body=body, headers={"Content-Type": content_type})
                response = conn.getresponse()
                status, raw = response.status, response.read()
                break
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                conn.close()          # the server may close a connection after a refused body: open a new one
                state["conn"] = http.client.HTTPConnection(host, int(port), timeout=30)
                if attempt:
                    raise
        return status, json.loads(raw)

    yield post, rec
    state["conn"].close()
    proc.terminate()
    proc.wait(timeout=30)
    mp.undo()


json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False)
                           | st.text(max_size=10),
                           lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=8), inner,
                                                                                          max_size=5),
                           max_leaves=20)


def check_refusal(status: int, body: dict) -> None:
    assert 400 <= status < 500, (status, body)
    assert set(body) == {"error", "field"} and isinstance(body["error"], str) and body["error"], body
    event(f"refused {status}")


@fuzz(120)
@given(body=json_values)
def test_any_json_value_is_answered_or_refused_with_4xx(service, body):
    post, _ = service
    status, answer = post(json.dumps(body).encode())
    if status != 200:
        check_refusal(status, answer)


def ids(rec: Recommender):
    known = rec.data.item_vocab.raw[:40].tolist()
    return st.one_of(st.sampled_from(known), st.sampled_from(known), st.sampled_from(known).map(str),
                     st.integers(-5, 10 ** 5), st.integers(2 ** 62, 2 ** 80), st.text(max_size=5), st.booleans(),
                     st.floats(allow_nan=False), st.none())


@fuzz(300)
@given(data=st.data())
def test_request_shaped_bodies_equal_the_python_api_or_are_refused(service, data):
    post, rec = service
    item = ids(rec)
    users = rec.data.users.raw[:20].tolist()
    odd = json_values | st.integers(2 ** 63, 2 ** 70)
    known = rec.data.item_vocab.raw[:40].tolist()
    clean = st.lists(st.sampled_from(known), min_size=1, max_size=25)
    values = {
        "user": st.sampled_from(users) | st.sampled_from(users).map(str) | item,
        "history": clean | clean | st.lists(item, max_size=25) | odd,
        "times": st.lists(st.integers(0, 2 ** 40), max_size=25) | odd,
        "ratings": st.lists(st.floats(0, 5), max_size=25) | odd,
        "k": st.integers(1, 30) | st.integers(1, 30) | st.integers(-3, 300) | odd,
        "exclude_seen": st.booleans() | st.booleans() | odd,
        "allow": clean | clean | st.lists(item, max_size=30) | odd,
        "deny": clean | clean | st.lists(item, max_size=30) | odd,
        "ignore_unknown": st.booleans() | st.booleans() | odd,
    }
    rest = ["k", "exclude_seen", "allow", "deny", "ignore_unknown"]
    chosen = data.draw(st.lists(st.sampled_from(rest), unique=True, max_size=4), label="fields")
    start = data.draw(st.sampled_from([["user"], ["history"], ["history"], ["user", "history"], ["times"], []]),
                      label="query")
    body = {name: data.draw(values[name], label=name) for name in start + chosen}
    status, answer = post(json.dumps(body).encode())
    if status != 200:
        check_refusal(status, answer)
        return
    event("answered")
    expected = rec.recommend(body.get("user"), history=body.get("history"), k=body.get("k", 10),
                             exclude_seen=body.get("exclude_seen", True), allow=body.get("allow"),
                             deny=body.get("deny"), ignore_unknown=body.get("ignore_unknown", False),
                             times=body.get("times"), ratings=body.get("ratings"))
    assert [row["item"] for row in answer["items"]] == [i for i, _ in expected.items]
    assert [row["score"] for row in answer["items"]] == pytest.approx([s for _, s in expected.items], abs=1e-5)
    assert answer["history_length"] == expected.history_length and answer["ignored"] == expected.ignored


@fuzz(100)
@given(raw=st.binary(max_size=300) | st.text(max_size=200).map(str.encode)
       | st.sampled_from([b"[" * 5000, b'{"user":' * 3000, b'{"k": 1e999, "user": 1}', b'{"user": NaN}',
                          b'{"history": [1, 2], "ratings": [Infinity, 1]}', b"\xef\xbb\xbf{}", b'{"user": 1}' * 2]),
       content_type=st.sampled_from(["application/json", "text/plain", "application/x-www-form-urlencoded", ""]))
def test_random_bytes_are_refused_with_4xx_json(service, raw, content_type):
    post, _ = service
    status, answer = post(raw, content_type)
    if status != 200:
        check_refusal(status, answer)
