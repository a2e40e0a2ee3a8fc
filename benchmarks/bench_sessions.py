"""Session-based benchmark: SR-GNN / GC-SAN on Diginetica or Yoochoose 1/64 (configs/<dataset>_<model>.yaml).

Trains the config (every prefix of every training session is a sample; the epoch is chosen on validation
MRR@20, the latest `split.valid_fraction` of the training sessions: 1% in the configs) and reports test P@20
(= HR@20) and MRR@20 in %, plus what the papers' choice of epoch on the test set would give (the test metrics
are logged after every validation with `eval.report_test`, never used to choose), seconds per epoch, sequences
(prefixes) per second, peak RSS and the wall clock to the best epoch.

    SEQREC_DATA=../shared/datasets python benchmarks/bench_sessions.py --dataset diginetica --model srgnn \
        [--set train.epochs=10] [--out DIR] [--resume] [--tag NAME]
    python benchmarks/bench_sessions.py --table

Writes benchmarks/results/<dataset>_<model>.json. Paper figures (test, %): Diginetica SR-GNN 50.73 / 17.59,
LESSR 51.71 / 18.15 (its own preprocessing), GC-SAN >= SR-GNN; Yoochoose 1/64 SR-GNN 70.57 / 30.94.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import sys
import time
from datetime import date
from pathlib import Path

HERE = Path(__file__).resolve().parent
PAPERS = {("diginetica", "srgnn"): (50.73, 17.59), ("diginetica", "lessr"): (51.71, 18.15),
          ("diginetica", "gcsan"): (50.73, 17.59), ("yoochoose64", "srgnn"): (70.57, 30.94),
          ("yoochoose64", "gcsan"): (70.57, 30.94)}   # GC-SAN: at least SR-GNN's figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="diginetica", choices=["diginetica", "yoochoose64"])
    parser.add_argument("--model", default="srgnn")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--out", default=None, help="run directory (default: runs/bench-<dataset>-<model>)")
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--tag", default=None, help="variant name: results go to <dataset>_<model>_<tag>.json and "
                        "the run directory defaults to runs/bench-<dataset>-<model>-<tag>")
    parser.add_argument("--table", action="store_true", help="print the markdown table of the results and exit")
    args = parser.parse_args()
    if args.table:
        print(table(sorted((HERE / "results").glob("*.json"))))
        return 0

    from seqrec import api
    from seqrec.config import config_to_dict, load_config

    name = f"{args.dataset}_{args.model}"
    config = load_config(HERE.parent / "configs" / f"{name}.yaml",
                         [*args.overrides, "train.progress=false", "eval.report_test=true"])
    suffix = f"-{args.tag}" if args.tag else ""
    out = Path(args.out) if args.out else HERE.parent / "runs" / f"bench-{args.dataset}-{args.model}{suffix}"
    load_at_start = os.getloadavg()
    started = time.perf_counter()
    run = api.train(config=config, out=out, resume=args.resume)
    wall = time.perf_counter() - started
    load_at_end = os.getloadavg()
    records = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    best = run.results["best_epoch"]
    by_test = max(records, key=lambda r: r.get("test", {}).get("MRR@20", -1))       # the papers' choice
    result = {
        "date": date.today().isoformat(),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "torch": __import__("torch").__version__},
        "load": {"threads": __import__("torch").get_num_threads(),
                 "loadavg_1_5_15_at_start": [round(x, 2) for x in load_at_start],
                 "loadavg_1_5_15_at_end": [round(x, 2) for x in load_at_end]},
        "dataset": args.dataset, "model": args.model, "tag": args.tag, "overrides": args.overrides,
        "config": config_to_dict(config), "run_dir": str(out),
        "split": run.split.summary(),
        "best_epoch": best, "epochs_run": run.results["epochs_run"], "stopped": run.results.get("stopped"),
        "valid": run.results["valid"], "test": run.results["test"],
        "test_at_best_test_epoch": {"epoch": by_test["epoch"], **by_test.get("test", {})},
        "seconds_to_best_epoch": next((r["elapsed"] for r in records if r["epoch"] == best), None),
        "seconds_per_epoch_median": _median(r["seconds"] for r in records),
        "train_seconds_per_epoch_median": _median(r["train_seconds"] for r in records),
        "sequences_per_second_median": _median(r["sequences_per_second"] for r in records),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "wall_seconds": round(wall, 1),
        "paper_p20_mrr20": PAPERS.get((args.dataset, args.model)),
    }
    path = HERE / "results" / f"{name}{'_' + args.tag if args.tag else ''}.json"
    path.write_text(json.dumps(result, indent=1) + "\n")
    test = result["test"]
    print(f"{name}: test P@20 {100 * test['HR@20']:.2f}  MRR@20 {100 * test['MRR@20']:.2f} (best valid epoch {best} "
          f"of {result['epochs_run']}); test-chosen epoch {by_test['epoch']}: P@20 "
          f"{100 * by_test.get('test', {}).get('HR@20', float('nan')):.2f} MRR@20 "
          f"{100 * by_test.get('test', {}).get('MRR@20', float('nan')):.2f}; paper {result['paper_p20_mrr20']}")
    print(f"{result['seconds_per_epoch_median']} s/epoch, {result['sequences_per_second_median']} prefixes/s, "
          f"peak RSS {result['peak_rss_mb']:.0f} MB; wrote {path}")
    return 0


def _median(values):
    values = [v for v in values if v is not None]
    return round(statistics.median(values), 2) if values else None


def table(paths: list[Path]) -> str:
    rows = [json.loads(p.read_text()) for p in paths]
    rows = [r for r in rows if r.get("dataset") in ("diginetica", "yoochoose64")]
    lines = ["| dataset | model | test P@20 | test MRR@20 | epoch (valid) | P@20 / MRR@20 at test-chosen epoch | "
             "paper P@20 / MRR@20 | s/epoch | prefixes/s | peak RSS MB |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        t, bt = r["test"], r["test_at_best_test_epoch"]
        paper = r.get("paper_p20_mrr20")
        model = r["model"] + (f" ({r['tag']})" if r.get("tag") else "")
        lines.append(f"| {r['dataset']} | {model} | {100 * t['HR@20']:.2f} | {100 * t['MRR@20']:.2f} | "
                     f"{r['best_epoch']} / {r['epochs_run']} | {100 * bt.get('HR@20', float('nan')):.2f} / "
                     f"{100 * bt.get('MRR@20', float('nan')):.2f} (epoch {bt['epoch']}) | "
                     f"{f'{paper[0]} / {paper[1]}' if paper else '-'} | {r['seconds_per_epoch_median']} | "
                     f"{r['sequences_per_second_median']} | {r['peak_rss_mb']:.0f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
