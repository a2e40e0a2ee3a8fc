"""Load test of `seqrec serve` (SASRec on ML-1M) and the batch recommendation of every ML-1M user.

Starts the service as a real process on 127.0.0.1, then drives it with `--requests` POST /recommend requests
(k = 10) from `--concurrency` keep-alive HTTP/1.1 connections of an asyncio client in this process (the
script stops by itself once all are answered). Requests mix known users (`--user-share`, drawn uniformly) and
raw histories (the last 1..200 items of a random user's log). Every answer is checked (status 200, k items);
anything else counts as an error. Reports p50/p95/p99 latency, throughput, errors and the server's peak RSS,
then times `Recommender.recommend_batch` for all 6,040 users (median of 3).

Targets (issue "serve"): 0 errors, p99 <= 50 ms, >= 500 requests/s on 2 cores; batch of all users <= 3 s.

    SEQREC_DATA=../shared/datasets python benchmarks/bench_serve.py [--run runs/bench-ml1m-sasrec]

Without --run (or when it does not exist) it trains configs/ml1m_sasrec.yaml for one epoch into
runs/bench-serve-sasrec first: latency depends on the architecture (2 blocks, dim 64, max length 200), not on
how long it was trained. Writes benchmarks/results/serve.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from datetime import date
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", default=str(HERE.parent / "runs" / "bench-ml1m-sasrec"), help="run directory")
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--user-share", type=float, default=0.8, help="share of requests by user id")
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--server-args", default="", help="extra `seqrec serve` options, e.g. '--max-batch 32'")
    parser.add_argument("--result", default=str(HERE / "results" / "serve.json"))
    args = parser.parse_args()

    run_dir = Path(args.run)
    if not (run_dir / "config.yaml").exists():
        run_dir = _train_quick_run()
    from seqrec.recommend import Recommender

    rec = Recommender.load(run_dir)
    bodies = _request_bodies(rec, args.requests, args.user_share, args.k)

    port = _free_port()
    server = subprocess.Popen([sys.executable, "-m", "seqrec.cli", "serve", str(run_dir), "--port", str(port),
                               *args.server_args.split()], stderr=subprocess.PIPE, text=True)
    try:
        _wait_healthy(port, server)
        _load(port, bodies[:200], args.concurrency, args.k)                    # warm-up, not counted
        started = time.perf_counter()
        latencies, errors = _load(port, bodies, args.concurrency, args.k)
        wall = time.perf_counter() - started
        peak_rss_mb = _peak_rss_mb(server.pid)
    finally:
        server.terminate()
        server.wait(timeout=30)

    batch_seconds = []
    for _ in range(3):
        t0 = time.perf_counter()
        table = rec.recommend_batch(k=args.k)
        batch_seconds.append(time.perf_counter() - t0)
    ann = _ann_recall(rec, run_dir, args.k)
    lat = np.array(latencies) * 1000
    result = {
        "date": date.today().isoformat(),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "torch": __import__("torch").__version__},
        "run_dir": str(run_dir), "model": rec.describe()["model"], "items": rec.num_items,
        "requests": len(bodies), "concurrency": args.concurrency, "k": args.k, "user_share": args.user_share,
        "server_args": args.server_args, "errors": errors,
        "latency_ms": {"p50": round(float(np.percentile(lat, 50)), 2), "p95": round(float(np.percentile(lat, 95)), 2),
                       "p99": round(float(np.percentile(lat, 99)), 2), "max": round(float(lat.max()), 2)},
        "throughput_rps": round(len(bodies) / wall, 1), "wall_seconds": round(wall, 2),
        "server_peak_rss_mb": peak_rss_mb,
        "batch_all_users_seconds_median": round(statistics.median(batch_seconds), 3),
        "batch_all_users_seconds_all": [round(s, 3) for s in batch_seconds], "batch_rows": table.height,
        "ann": ann,
    }
    Path(args.result).parent.mkdir(parents=True, exist_ok=True)
    Path(args.result).write_text(json.dumps(result, indent=1) + "\n")
    print(f"{len(bodies)} requests, concurrency {args.concurrency}: {errors} errors, "
          f"{result['throughput_rps']} requests/s, latency ms p50 {result['latency_ms']['p50']} "
          f"p95 {result['latency_ms']['p95']} p99 {result['latency_ms']['p99']}; server peak RSS {peak_rss_mb} MB")
    print(f"batch top-{args.k} for all {rec.data.num_users} users: {result['batch_all_users_seconds_median']} s "
          "(median of 3)")
    if ann:
        print(f"approximate search (faiss HNSW): recall@{args.k} {ann['recall']:.4f} against exact over all users "
              f"(seen items kept), batch {ann['batch_seconds']} s vs exact {ann['exact_batch_seconds']} s")
    print(f"wrote {args.result}")
    return 0


def _ann_recall(rec, run_dir: Path, k: int) -> dict | None:
    """Recall@k of the faiss HNSW search against the exact top-k for every user (seen items not excluded:
    excluding ML-1M histories of up to 2,000 items makes the approximate path fall back to the exact one)."""
    try:
        import faiss  # noqa: F401
    except ImportError:
        return None
    import polars as pl

    from seqrec.recommend import Recommender

    approx = Recommender.load(run_dir, ann=True)
    t0 = time.perf_counter()
    exact = rec.recommend_batch(k=k, exclude_seen=False)
    exact_seconds = time.perf_counter() - t0
    t0 = time.perf_counter()
    found = approx.recommend_batch(k=k, exclude_seen=False)
    seconds = time.perf_counter() - t0
    common = exact.join(found, on=["query", "item"], how="inner").height
    return {"recall": common / exact.height, "k": k, "settings": approx.ann.settings,
            "batch_seconds": round(seconds, 3), "exact_batch_seconds": round(exact_seconds, 3),
            "users": int(exact["query"].n_unique()), "rows": exact.height, "polars": pl.__version__}


def _train_quick_run() -> Path:
    from seqrec import api
    from seqrec.config import load_config

    out = HERE.parent / "runs" / "bench-serve-sasrec"
    if (out / "config.yaml").exists():
        return out
    config = load_config(HERE.parent / "configs" / "ml1m_sasrec.yaml", ["train.epochs=1", "train.progress=false"])
    api.train(config=config, out=out)
    return out


def _request_bodies(rec, count: int, user_share: float, k: int) -> list[bytes]:
    rng = np.random.default_rng(0)
    data = rec.data
    users = data.users.decode(rng.integers(0, data.num_users, count))
    by_user = rng.random(count) < user_share
    bodies = []
    for i in range(count):
        if by_user[i]:
            body = {"user": users[i].item(), "k": k}
        else:
            u = int(rng.integers(0, data.num_users))
            sequence = data.sequence(u)
            length = int(rng.integers(1, min(200, sequence.size) + 1))
            body = {"history": data.item_vocab.decode(sequence[-length:]).tolist(), "k": k}
        bodies.append(json.dumps(body).encode())
    return bodies


def request_head(body: bytes) -> bytes:
    """HTTP/1.1 head of a JSON POST /recommend with `body` (keep-alive)."""
    return (f"POST /recommend HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode()


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bytes, bool]:
    """(status, body, whether the server will close the connection) of one HTTP/1.1 response."""
    status_line = await reader.readline()
    if not status_line:
        raise ConnectionError("connection closed without an answer")
    length, close = 0, False
    while True:
        line = await reader.readline()
        if line in (b"\r\n", b""):
            break
        name, _, value = line.decode().partition(":")
        if name.lower() == "content-length":
            length = int(value)
        elif name.lower() == "connection" and value.strip().lower() == "close":
            close = True
    return int(status_line.split()[1]), await reader.readexactly(length), close


async def _client(port: int, queue: list[bytes], k: int, latencies: list[float], errors: list[int]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        while queue:
            body = queue.pop()
            t0 = time.perf_counter()
            writer.write(request_head(body) + body)
            status, payload, _ = await read_response(reader)
            latencies.append(time.perf_counter() - t0)
            ok = status == 200 and len(json.loads(payload)["items"]) == k
            if not ok:
                errors.append(1)
    finally:
        writer.close()


def _load(port: int, bodies: list[bytes], concurrency: int, k: int) -> tuple[list[float], int]:
    latencies: list[float] = []
    errors: list[int] = []
    queue = list(reversed(bodies))

    async def run() -> None:
        await asyncio.gather(*(_client(port, queue, k, latencies, errors) for _ in range(concurrency)))

    asyncio.run(run())
    return latencies, len(errors) + (len(bodies) - len(latencies))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_healthy(port: int, server: subprocess.Popen) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"server exited: {server.stderr.read()}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2):
                return
        except OSError:
            time.sleep(0.2)
    raise SystemExit("server did not become healthy in 120 s")


def _peak_rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        return None
    return None


if __name__ == "__main__":
    sys.exit(main())
