"""Serving soak: a long stream of requests, about 5% of them malformed, into a real `seqrec serve` process,
then a SIGTERM while requests are in flight.

    SEQREC_DATA=../shared/datasets python benchmarks/soak_serve.py [--run RUN] [--requests 100000]

The service runs as a process on 127.0.0.1; `--concurrency` keep-alive HTTP/1.1 connections of an asyncio
client in this process send `--requests` requests. Most are valid (a known user or a raw history, k 1..20,
sometimes `exclude_seen: false` or a `deny` list); every `--check-every`-th valid answer is compared with the
Python API's answer to the same request, computed before the soak (the client adds no model work while it
runs). The malformed ones (`--malformed`, about 5%) are interleaved in turn: bad JSON (expect 400), wrong
types (422), unknown item ids (422), a body over the size limit (413), a client that sends half a request and
disconnects (no answer expected; the service must carry on), and a slow client that sends its request in
pieces (a right answer expected).

Figures: 5xx count (target 0), wrong answers (0), other failures (a wrong status for a malformed request, a
dropped connection, a timeout), p50 / p99 latency, requests per second, the server's RSS in the first and the
last 10% of the soak (growth target < 5%), the load average. Then the shutdown check: 48 requests in flight (8
of them slow clients half-way through their body) when SIGTERM arrives, and 4 connections with half their
headers; the 48 must be answered right, the 4 closed unanswered, and the server must report its stop, exit by
the signal without a traceback, and refuse new connections.

Without --run it trains a small SASRec on the built-in demo data (seconds) into runs/soak-serve-demo.
Writes benchmarks/results/soak_serve.json. `soak()` is what the test suite runs, with 2,000 requests.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from bench_serve import _free_port as free_port  # noqa: E402 - the serving benchmark's helpers, beside this file
from bench_serve import _wait_healthy as wait_healthy  # noqa: E402
from bench_serve import read_response  # noqa: E402
from bench_serve import request_head as head  # noqa: E402

MALFORMED = ("bad_json", "wrong_type", "unknown_ids", "oversize", "disconnect", "slow")
EXPECTED_STATUS = {"bad_json": 400, "wrong_type": 422, "unknown_ids": 422, "oversize": 413, "slow": 200}
MAX_BODY = 20_000
TIMEOUT = 60.0


@dataclass
class Job:
    kind: str                       # "valid" or one of MALFORMED
    body: bytes
    expected: list | None = None    # [(item, score)] from the Python API, for the sampled valid requests


@dataclass
class Tally:
    latencies: list[float] = field(default_factory=list)
    statuses: dict[str, int] = field(default_factory=dict)
    by_kind: dict[str, dict[str, int]] = field(default_factory=dict)
    server_errors: int = 0
    wrong_answers: int = 0
    checked: int = 0
    failures: list[str] = field(default_factory=list)
    done: int = 0

    def count(self, kind: str, status: int | str) -> None:
        self.statuses[str(status)] = self.statuses.get(str(status), 0) + 1
        bucket = self.by_kind.setdefault(kind, {})
        bucket[str(status)] = bucket.get(str(status), 0) + 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", default=None, help="run directory (default: a demo SASRec trained here)")
    parser.add_argument("--requests", type=int, default=100_000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--malformed", type=float, default=0.05, help="share of malformed requests")
    parser.add_argument("--check-every", type=int, default=25, help="compare every n-th valid answer")
    parser.add_argument("--result", default=str(HERE / "results" / "soak_serve.json"))
    args = parser.parse_args()
    run_dir = Path(args.run) if args.run else demo_run(HERE.parent / "runs" / "soak-serve-demo")
    result = soak(run_dir, requests=args.requests, concurrency=args.concurrency, malformed=args.malformed,
                  check_every=args.check_every)
    Path(args.result).parent.mkdir(parents=True, exist_ok=True)
    Path(args.result).write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k not in ("rss_mb_samples", "by_kind")}, indent=1))
    print(f"wrote {args.result}")
    return 0 if result["passed"] else 1


def demo_run(out: Path) -> Path:
    """A small SASRec on the demo data (the test suite's demo run), trained once."""
    if (out / "config.yaml").exists():
        return out
    from seqrec import api

    api.train("demo", model={"name": "sasrec", "dim": 16, "num_blocks": 1, "max_len": 20, "dropout": 0.1},
              train={"epochs": 2, "progress": False, "seed": 3, "lr": 3e-3}, out=out)
    return out


def soak(run_dir: Path, *, requests: int, concurrency: int = 16, malformed: float = 0.05, check_every: int = 25,
         seed: int = 0, server_args: tuple[str, ...] = ()) -> dict:
    """Run the soak and the shutdown check against a fresh server for `run_dir`; the figures as a dict."""
    from seqrec.recommend import Recommender

    rec = Recommender.load(run_dir)
    jobs = make_jobs(rec, requests, malformed, check_every, seed)
    load_before = os.getloadavg()
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "seqrec.cli", "serve", str(run_dir), "--port", str(port),
                               "--max-body-bytes", str(MAX_BODY), *server_args],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        wait_healthy(port, server)
        tally, wall, rss = asyncio.run(drive(port, jobs, concurrency, server.pid))
        shutdown = asyncio.run(shutdown_check(port, server, rec))
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
    load_after = os.getloadavg()
    lat = np.array(tally.latencies) * 1000
    tenth = max(1, len(rss) // 10)
    first, last = float(np.mean([r for _, r in rss[:tenth]])), float(np.mean([r for _, r in rss[-tenth:]]))
    growth = (last - first) / first if first else None
    malformed_ok = all(tally.by_kind.get(kind, {}).get(str(status), 0) == sum(tally.by_kind.get(kind, {}).values())
                       for kind, status in EXPECTED_STATUS.items())
    result = {
        "date": date.today().isoformat(),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "torch": __import__("torch").__version__},
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in load_after],
        "run_dir": str(run_dir), "model": rec.describe()["model"], "items": rec.num_items,
        "requests": len(jobs), "concurrency": concurrency,
        "malformed": {kind: sum(1 for j in jobs if j.kind == kind) for kind in MALFORMED},
        "statuses": tally.statuses, "by_kind": tally.by_kind,
        "server_errors_5xx": tally.server_errors, "wrong_answers": tally.wrong_answers,
        "checked_against_python_api": tally.checked, "failures": len(tally.failures),
        "failure_examples": tally.failures[:10], "malformed_answered_as_expected": malformed_ok,
        "latency_ms": {"p50": round(float(np.percentile(lat, 50)), 2), "p99": round(float(np.percentile(lat, 99)), 2),
                       "max": round(float(lat.max()), 2)},
        "latency_of": "requests on the keep-alive connections (valid and malformed; not the slow or disconnecting "
                      "clients, which pause on purpose)",
        "throughput_rps": round(tally.done / wall, 1), "wall_seconds": round(wall, 1),
        "rss_mb_first_tenth": round(first / 1024, 1), "rss_mb_last_tenth": round(last / 1024, 1),
        "rss_growth": round(growth, 4) if growth is not None else None,
        "rss_mb_samples": [(done, round(kb / 1024, 1)) for done, kb in rss[:: max(1, len(rss) // 100)]],
        "shutdown": shutdown,
    }
    result["passed"] = bool(tally.server_errors == 0 and tally.wrong_answers == 0 and not tally.failures
                            and malformed_ok and shutdown["clean"])
    return result


def make_jobs(rec, count: int, malformed: float, check_every: int, seed: int) -> list[Job]:
    """The request stream: valid ones (every check_every-th with the Python API's answer) and malformed ones in
    turn, about `malformed` of them."""
    rng = np.random.default_rng(seed)
    data = rec.data
    jobs: list[Job] = []
    turn = 0
    valid = 0
    for _ in range(count):
        if rng.random() < malformed:
            kind = MALFORMED[turn % len(MALFORMED)]
            turn += 1
            jobs.append(malformed_job(kind, rec, rng))
            continue
        body = valid_body(rec, rng)
        valid += 1
        expected = None
        if valid % check_every == 0:
            answer = rec.recommend(body.get("user"), history=body.get("history"), k=body["k"],
                                   exclude_seen=body.get("exclude_seen", True), deny=body.get("deny"))
            expected = answer.items
        jobs.append(Job("valid", json.dumps(body).encode(), expected))
    del data
    return jobs


def valid_body(rec, rng) -> dict:
    data = rec.data
    u = int(rng.integers(0, data.num_users))
    body: dict = {"k": int(rng.integers(1, 21))}
    if rng.random() < 0.7:
        body["user"] = data.users.decode(np.array([u]))[0].item()
    else:
        sequence = data.sequence(u)
        length = int(rng.integers(1, min(2 * rec.max_len, sequence.size) + 1))
        body["history"] = data.item_vocab.decode(sequence[-length:]).tolist()
    if rng.random() < 0.1:
        body["exclude_seen"] = False
    if rng.random() < 0.1:
        body["deny"] = data.item_vocab.raw[rng.integers(0, data.num_items, 5)].tolist()
    return body


def malformed_job(kind: str, rec, rng) -> Job:
    items = rec.data.item_vocab.raw
    if kind == "bad_json":
        return Job(kind, b'{"user": 1, "k": ')
    if kind == "wrong_type":
        return Job(kind, json.dumps(rng.choice([{"user": [1]}, {"history": "1,2"}, {"user": 1, "k": "ten"},
                                                {"history": [True]}, {"k": 2.5, "user": 1}])).encode())
    if kind == "unknown_ids":
        return Job(kind, json.dumps({"history": [items[0].item(), 987654321], "k": 5}).encode())
    if kind == "oversize":
        return Job(kind, json.dumps({"history": [items[0].item()] * (MAX_BODY // 4)}).encode())
    if kind == "disconnect":
        return Job(kind, json.dumps({"user": rec.data.users.raw[0].item(), "k": 5}).encode())
    body = valid_body(rec, rng)                                                        # slow
    answer = rec.recommend(body.get("user"), history=body.get("history"), k=body["k"],
                           exclude_seen=body.get("exclude_seen", True), deny=body.get("deny"))
    return Job(kind, json.dumps(body).encode(), answer.items)


def check(job: Job, status: int, payload: bytes, tally: Tally) -> None:
    tally.count(job.kind, status)
    if status >= 500:
        tally.server_errors += 1
        tally.failures.append(f"{job.kind}: {status} {payload[:200]!r}")
        return
    answer = json.loads(payload)
    if status != 200:
        wanted = EXPECTED_STATUS.get(job.kind)
        if job.kind == "valid" or status != wanted or not answer.get("error"):
            tally.failures.append(f"{job.kind}: status {status}, wanted {wanted or 200}: {payload[:200]!r}")
        return
    if job.kind not in ("valid", "slow"):
        tally.failures.append(f"{job.kind}: accepted with 200")
        return
    if job.expected is not None:
        tally.checked += 1
        items = [(row["item"], row["score"]) for row in answer["items"]]
        same = [i for i, _ in items] == [i for i, _ in job.expected] and np.allclose(
            [s for _, s in items], [s for _, s in job.expected], atol=1e-4)
        if not same:
            tally.wrong_answers += 1
            tally.failures.append(f"wrong answer to {job.body[:120]!r}")


async def side_request(port: int, job: Job, tally: Tally) -> None:
    """A disconnecting or a slow client, on a connection of its own."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        raw = head(job.body) + job.body
        if job.kind == "disconnect":                  # half the request, then gone
            writer.write(raw[:len(raw) // 2])
            await writer.drain()
            tally.count(job.kind, "sent half, disconnected")
            return
        for piece in (raw[:20], raw[20:len(raw) // 2], raw[len(raw) // 2:]):
            writer.write(piece)
            await writer.drain()
            await asyncio.sleep(0.05)
        status, payload, _ = await asyncio.wait_for(read_response(reader), TIMEOUT)
        check(job, status, payload, tally)
    finally:
        writer.close()


async def connection(port: int, queue: list[Job], tally: Tally) -> None:
    reader = writer = None
    try:
        while queue:
            job = queue.pop()
            if job.kind in ("disconnect", "slow"):     # own connections; their pauses are not latency
                await side_request(port, job, tally)
                tally.done += 1
                continue
            if writer is None:
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
            t0 = time.perf_counter()
            try:
                writer.write(head(job.body) + job.body)
                status, payload, close = await asyncio.wait_for(read_response(reader), TIMEOUT)
            except (TimeoutError, ConnectionError, asyncio.IncompleteReadError) as error:
                tally.count(job.kind, type(error).__name__)
                tally.failures.append(f"{job.kind}: {type(error).__name__}: {error}")
                writer.close()
                writer = None
                continue
            tally.latencies.append(time.perf_counter() - t0)
            tally.done += 1
            check(job, status, payload, tally)
            if close:                                  # e.g. after a refused oversize body
                writer.close()
                writer = None
    finally:
        if writer is not None:
            writer.close()


async def drive(port: int, jobs: list[Job], concurrency: int, pid: int) -> tuple[Tally, float, list]:
    tally = Tally()
    queue = list(reversed(jobs))
    rss: list[tuple[int, int]] = []

    async def sample() -> None:
        while True:
            kb = rss_kb(pid)
            if kb is not None:
                rss.append((tally.done, kb))
            await asyncio.sleep(0.25)

    sampler = asyncio.create_task(sample())
    started = time.perf_counter()
    await asyncio.gather(*(connection(port, queue, tally) for _ in range(concurrency)))
    wall = time.perf_counter() - started
    sampler.cancel()
    return tally, wall, rss


async def shutdown_check(port: int, server: subprocess.Popen, rec) -> dict:
    """SIGTERM with 48 requests in flight (8 of them slow clients half-way through their body, whose rest comes
    after the signal) and 4 connections that have sent only part of their headers: the 48 must be answered
    right, the 4 closed without an answer (no request had arrived), the server must report its stop (answered
    everything) and exit by the signal (uvicorn's convention) or 0 without a traceback, and refuse new
    connections."""
    rng = np.random.default_rng(1)
    jobs = [malformed_job("slow", rec, rng) if i < 8 else Job("valid", b"", None) for i in range(48)]
    for job in jobs[8:]:
        body = valid_body(rec, rng)
        job.body = json.dumps(body).encode()
        job.expected = rec.recommend(body.get("user"), history=body.get("history"), k=body["k"],
                                     exclude_seen=body.get("exclude_seen", True), deny=body.get("deny")).items
    jobs += [Job("unstarted", jobs[-1].body) for _ in range(4)]
    tally = Tally()
    streams = [await asyncio.open_connection("127.0.0.1", port) for _ in jobs]
    for (reader, writer), job in zip(streams, jobs):
        raw = head(job.body) + job.body
        cut = {"valid": len(raw), "slow": len(head(job.body)) + len(job.body) // 2, "unstarted": 30}[job.kind]
        writer.write(raw[:cut])
        await writer.drain()
    await asyncio.sleep(0.05)
    server.send_signal(signal.SIGTERM)
    signalled = time.perf_counter()
    closed_unstarted = 0

    async def finish(reader, writer, job) -> None:
        nonlocal closed_unstarted
        try:
            if job.kind == "slow":
                await asyncio.sleep(0.2)                # the rest of the body after the SIGTERM
                raw = head(job.body) + job.body
                writer.write(raw[len(head(job.body)) + len(job.body) // 2:])
                await writer.drain()
            status, payload, _ = await asyncio.wait_for(read_response(reader), TIMEOUT)
            if job.kind == "unstarted":
                tally.failures.append(f"unstarted: answered {status}")
                return
            check(job, status, payload, tally)
        except (TimeoutError, ConnectionError, asyncio.IncompleteReadError) as error:
            if job.kind == "unstarted" and not isinstance(error, TimeoutError):
                closed_unstarted += 1
                return
            tally.count(job.kind, type(error).__name__)
            tally.failures.append(f"{job.kind}: {type(error).__name__}")
        finally:
            writer.close()

    await asyncio.gather(*(finish(r, w, j) for (r, w), j in zip(streams, jobs)))
    try:
        code = await asyncio.to_thread(server.wait, 60)
    except subprocess.TimeoutExpired:
        code = None
    exited = time.perf_counter() - signalled
    stderr = server.stderr.read() if code is not None else ""
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
        refused = False
    except OSError:
        refused = True
    answered = tally.statuses.get("200", 0)
    in_flight = sum(1 for j in jobs if j.kind != "unstarted")
    return {"in_flight": in_flight, "slow_mid_body": 8, "answered_200": answered,
            "checked_right": tally.checked - tally.wrong_answers, "unstarted_closed_unanswered": closed_unstarted,
            "failures": tally.failures[:5], "exit_code": code, "seconds_to_exit": round(exited, 2),
            "reported_stop": "stopped:" in stderr, "traceback": "Traceback" in stderr,
            "new_connections_refused": refused,
            "clean": bool(answered == in_flight == tally.checked and not tally.failures and closed_unstarted == 4
                          and code in (0, -signal.SIGTERM) and "stopped:" in stderr and "Traceback" not in stderr
                          and refused)}


def rss_kb(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


if __name__ == "__main__":
    sys.exit(main())
