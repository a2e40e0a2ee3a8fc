"""Data-pipeline benchmark: interaction log -> prepared, cached, leave-one-out split.

Each measurement runs in a fresh Python process (imports timed separately, not included), so peak RSS is that
of one run. Cold = empty cache folder (read + prepare + write cache + split); cached = the same call again.
Prints a table and writes `benchmarks/results/data.json`.

    SEQREC_DATA=../shared/datasets python benchmarks/bench_data.py [--runs 3] [--rows 20000000] [--skip-large]

Targets (issue 3, this 2-core machine): ML-1M and ML-100K cold <= 2 s, cached <= 0.3 s; a 20M-row CSV
(1M users, 100k items) prepared and split in <= 60 s with peak RSS <= 4 GB.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
DATA = Path(os.environ.get("SEQREC_DATA", HERE.parent.parent / "shared" / "datasets"))
CASES = {
    "ml-1m (pairs)": {"path": DATA / "ml-1m-sasrec" / "ml-1m.txt", "format": "pairs"},
    "ml-100k (u.data)": {"path": DATA / "ml-100k" / "u.data", "format": "tsv",
                         "columns": {"user": 0, "item": 1, "rating": 2, "time": 3}},
}


def child(spec: dict, cache_dir: str) -> dict:
    """One measured run inside a fresh process."""
    started = time.perf_counter()
    from seqrec.data.pipeline import load
    from seqrec.data.splits import leave_one_out
    imported = time.perf_counter()
    data = load(spec["path"], format=spec.get("format"), columns=spec.get("columns"), cache_dir=cache_dir)
    split = leave_one_out(data)
    done = time.perf_counter()
    return {"seconds": done - imported, "import_seconds": imported - started,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "cache_hit": data.info["cache_hit"], "users": data.num_users, "items": data.num_items,
            "interactions": data.num_interactions, "test_targets": len(split.test)}


def run_child(spec: dict, cache_dir: str) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", json.dumps({**spec, "path": str(spec["path"])}),
                          "--cache-dir", cache_dir], capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"benchmark child failed:\n{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def measure(name: str, spec: dict, runs: int) -> dict:
    cold, cached = [], []
    for _ in range(runs):
        with tempfile.TemporaryDirectory() as cache_dir:
            cold.append(run_child(spec, cache_dir))
            cached.append(run_child(spec, cache_dir))
    assert not any(r["cache_hit"] for r in cold) and all(r["cache_hit"] for r in cached)
    row = {"case": name, "runs": runs, **{k: cold[0][k] for k in ("users", "items", "interactions", "test_targets")},
           "cold_s_median": statistics.median(r["seconds"] for r in cold),
           "cached_s_median": statistics.median(r["seconds"] for r in cached),
           "cold_peak_rss_mb": max(r["peak_rss_mb"] for r in cold),
           "cached_peak_rss_mb": max(r["peak_rss_mb"] for r in cached),
           "import_s_median": statistics.median(r["import_seconds"] for r in cold),
           "cold_s_all": [round(r["seconds"], 3) for r in cold],
           "cached_s_all": [round(r["seconds"], 3) for r in cached]}
    row["cold_over_cached"] = row["cold_s_median"] / row["cached_s_median"]
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--cache-dir", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--rows", type=int, default=20_000_000, help="rows of the large synthetic CSV")
    parser.add_argument("--skip-large", action="store_true", help="skip the large synthetic CSV")
    parser.add_argument("--workdir", default=None, help="where to write the large CSV (default: a temp folder)")
    parser.add_argument("--out", default=str(HERE / "results" / "data.json"))
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(json.loads(args.child), args.cache_dir)))
        return

    rows = [measure(name, spec, args.runs) for name, spec in CASES.items() if spec["path"].exists()]
    if not args.skip_large:
        from seqrec.data.synthetic import write_csv_log
        with tempfile.TemporaryDirectory(dir=args.workdir) as work:
            path = Path(work) / "synthetic_20m.csv"
            started = time.perf_counter()
            write_csv_log(path, num_rows=args.rows, num_users=1_000_000, num_items=100_000, seed=0)
            written = time.perf_counter() - started
            row = measure(f"synthetic csv ({args.rows:,} rows)", {"path": path, "format": "csv"}, args.runs)
            row["csv_bytes"] = path.stat().st_size
            row["csv_write_s"] = written
            rows.append(row)
    print_table(rows)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                                                      "platform": platform.platform()},
                                          "date": time.strftime("%Y-%m-%d"), "results": rows}, indent=1))
    print(f"wrote {args.out}")


def print_table(rows: list[dict]) -> None:
    header = f"{'case':32} {'users':>9} {'items':>8} {'interactions':>13} {'cold s':>8} {'cached s':>9} " \
             f"{'ratio':>6} {'peak RSS MB':>12}"
    print(header)
    print("-" * len(header))
    for r in rows:
        print(f"{r['case']:32} {r['users']:>9,} {r['items']:>8,} {r['interactions']:>13,} {r['cold_s_median']:>8.3f} "
              f"{r['cached_s_median']:>9.3f} {r['cold_over_cached']:>6.1f} {r['cold_peak_rss_mb']:>12.0f}")


if __name__ == "__main__":
    main()
