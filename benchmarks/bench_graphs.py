"""Session-graph construction benchmark: batched tensor ops vs a per-session loop.

Builds the SR-GNN graph (nodes, alias, in/out adjacency), LESSR's EOP multigraph (ordered incoming sources) and
shortcut graph for the first `--sessions` sessions of Diginetica's `train_sessions.txt`, in batches of
`--batch-size` rows padded to the batch's longest session. "batched" is `seqrec.models.layers.graphs` (padded
batch gathered from the CSR, then sort/scatter ops). Two per-session baselines build the same padded tensors
session by session: "python", the plain reference of `tests/models/test_session_graphs.py` (lists, sets,
comprehensions), and "numpy", a tighter loop in the style of SR-GNN's and LESSR's data loaders (dict lookups,
numpy matrices, Python loops over clicks). All outputs are checked equal before timing. Median of `--runs`
runs; writes `results/graphs.json`.

    SEQREC_DATA=../shared/datasets python benchmarks/bench_graphs.py [--sessions 10000] [--batch-size 256]

Target (session-based issue): batched >= 20x faster than the per-session reference on this 2-core CPU machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

from seqrec.data.sequences import gather_windows
from seqrec.data.sessions import load_session_files
from seqrec.models.layers.graphs import eop_multigraph, session_nodes, shortcut_graph, srgnn_graph

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "models"))
from test_session_graphs import reference  # noqa: E402  (the tests' per-session reference is the baseline)

HERE = Path(__file__).resolve().parent
DATA = Path(os.environ.get("SEQREC_DATA", HERE.parent.parent / "shared" / "datasets"))


def batched(items: np.ndarray, starts: np.ndarray, ends: np.ndarray, batch_size: int, keep: bool = False
            ) -> list[tuple]:
    """Every batch's graphs; kept only when `keep` (a training loop drops each batch's graphs after use)."""
    out = []
    for low in range(0, starts.shape[0], batch_size):
        s, e = starts[low:low + batch_size], ends[low:low + batch_size]
        rows = torch.from_numpy(gather_windows(items, s, e, int((e - s).max())).astype(np.int64))  # [B, L]
        nodes = session_nodes(rows)
        srgnn, eop, short = srgnn_graph(nodes), eop_multigraph(nodes), shortcut_graph(nodes)
        graphs = (nodes.items, nodes.alias, nodes.last, srgnn.adj_in, srgnn.adj_out, eop.sources,
                  eop.sources_valid, short.adjacency)
        if keep:
            out.append(graphs)
    return out


def python_graph(seq: list[int]) -> tuple:
    """One session by the plain-Python reference of the tests (`tests/models/test_session_graphs.py`)."""
    graph = reference(seq)
    n = len(graph["items"])
    shortcut = [[(u, v) in graph["shortcut"] for v in range(n)] for u in range(n)]
    return graph["items"], graph["seq"], graph["adj_in"], graph["adj_out"], graph["sources"], shortcut


def numpy_graph(seq: list[int]) -> tuple:
    """One session, SR-GNN/LESSR-loader style: dict lookups, numpy matrices, loops over clicks."""
    nodes, index = [], {}
    for item in seq:
        if item not in index:
            index[item] = len(nodes)
            nodes.append(item)
    alias = [index[item] for item in seq]
    n = len(nodes)
    linked = np.zeros((n, n), dtype=np.float32)
    sources: list[list[int]] = [[] for _ in range(n)]
    for u, v in zip(alias[:-1], alias[1:]):
        linked[u, v] = 1.0
        sources[v].append(u)
    adj_in = (linked / np.maximum(linked.sum(0), 1.0)).T
    adj_out = linked / np.maximum(linked.sum(1, keepdims=True), 1.0)
    shortcut = np.zeros((n, n), dtype=bool)
    for i in range(len(alias)):
        for j in range(i, len(alias)):
            shortcut[alias[i], alias[j]] = True
    return nodes, alias, adj_in, adj_out, sources, shortcut


def per_session(sessions: list[list[int]], batch_size: int, graph_fn, keep: bool = False) -> list[tuple]:
    out = []
    for low in range(0, len(sessions), batch_size):
        part = sessions[low:low + batch_size]
        graphs = [graph_fn(seq) for seq in part]
        b, length = len(part), max(len(seq) for seq in part)
        width = max(len(g[0]) for g in graphs)
        depth = max(max((len(s) for s in g[4]), default=0) for g in graphs) or 1
        items = np.zeros((b, width), np.int64)
        alias = np.zeros((b, length), np.int64)
        last = np.zeros(b, np.int64)
        adj_in = np.zeros((b, width, width), np.float32)
        adj_out = np.zeros((b, width, width), np.float32)
        sources = np.zeros((b, width, depth), np.int64)
        valid = np.zeros((b, width, depth), bool)
        shortcut = np.zeros((b, width, width), bool)
        for row, (nodes, seq_alias, a_in, a_out, srcs, short) in enumerate(graphs):
            n = len(nodes)
            items[row, :n] = nodes
            alias[row, length - len(seq_alias):] = seq_alias      # right-aligned, as gather_windows
            last[row] = seq_alias[-1]
            adj_in[row, :n, :n], adj_out[row, :n, :n], shortcut[row, :n, :n] = a_in, a_out, short
            for node, src in enumerate(srcs):
                sources[row, node, :len(src)] = src
                valid[row, node, :len(src)] = True
        graphs = tuple(torch.from_numpy(a) for a in (items, alias, last, adj_in, adj_out, sources, valid, shortcut))
        if keep:
            out.append(graphs)
    return out


def timed(fn, runs: int) -> tuple[float, float]:
    """Median wall-clock and median CPU (process) seconds of `runs` calls; CPU time is the steadier figure on a
    shared machine (torch runs on one thread here)."""
    wall, cpu = [], []
    for _ in range(runs):
        started, started_cpu = time.perf_counter(), time.process_time()
        fn()
        wall.append(time.perf_counter() - started)
        cpu.append(time.process_time() - started_cpu)
    return statistics.median(wall), statistics.median(cpu)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=10_000)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    folder = DATA / "diginetica-srgnn"
    split = load_session_files(folder / "train_sessions.txt", folder / "test_sessions.txt")
    data = split.data
    starts, ends = data.offsets[:args.sessions], data.offsets[1:args.sessions + 1]
    sessions = [data.items[s:e].astype(np.int64).tolist() for s, e in zip(starts, ends)]

    fast = batched(data.items, starts, ends, args.batch_size, keep=True)
    for graph_fn in (python_graph, numpy_graph):
        for got, want in zip(fast, per_session(sessions, args.batch_size, graph_fn, keep=True), strict=True):
            for a, b in zip(got, want):
                torch.testing.assert_close(a, b)

    del fast
    times = {"batched": timed(lambda: batched(data.items, starts, ends, args.batch_size), args.runs),
             "per_session_python": timed(lambda: per_session(sessions, args.batch_size, python_graph), args.runs),
             "per_session_numpy": timed(lambda: per_session(sessions, args.batch_size, numpy_graph), args.runs)}
    result = {"sessions": len(sessions), "clicks": int(ends[-1] - starts[0]), "batch_size": args.batch_size,
              "runs": args.runs}
    for name, (wall, cpu) in times.items():
        result[f"{name}_s"], result[f"{name}_cpu_s"] = round(wall, 4), round(cpu, 4)
    for name in ("python", "numpy"):
        result[f"speedup_vs_{name}"] = round(times[f"per_session_{name}"][0] / times["batched"][0], 1)
        result[f"speedup_vs_{name}_cpu"] = round(times[f"per_session_{name}"][1] / times["batched"][1], 1)
    result.update({"sessions_per_s_batched": round(len(sessions) / times["batched"][0]),
                   "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
                   "python": platform.python_version(), "machine": platform.machine(), "cpus": os.cpu_count(),
                   "load_average_1min": round(os.getloadavg()[0], 2)})
    print(f"{len(sessions)} sessions ({result['clicks']} clicks), batch {args.batch_size}, median of {args.runs}")
    print(f"{'':22}{'wall s':>9}{'cpu s':>9}{'x wall':>8}{'x cpu':>8}")
    for name, (wall, cpu) in times.items():
        ratio = (times[name][0] / times["batched"][0], times[name][1] / times["batched"][1])
        print(f"{name:22}{wall:9.3f}{cpu:9.3f}{ratio[0]:8.1f}{ratio[1]:8.1f}")
    out = HERE / "results" / "graphs.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
