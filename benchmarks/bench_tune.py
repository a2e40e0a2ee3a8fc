"""A 20-trial SASRec study on MovieLens-100K against the shipped default config (issue 23's target).

Protocol: `configs/ml100k_sasrec.yaml` (leave-one-out, full ranking, history excluded, epoch chosen on validation
NDCG@10). The baseline is that config trained as shipped (up to 200 epochs, early stop after 10 validations
without improvement). The study searches `configs/spaces/sasrec.yaml` with `seqrec tune` (TPE, median pruning,
seed 42), each trial limited to `--trial-minutes` of training (`train.max_minutes`) and the study to `--timeout`
minutes, so that it fits in 30 minutes on this CPU. Trials are chosen on validation NDCG@10 only; the best trial
and the baseline are each tested once.

    SEQREC_DATA=../shared/datasets OMP_NUM_THREADS=1 python benchmarks/bench_tune.py \
        [--trials 20] [--trial-minutes 2.5] [--timeout 30] [--set train.num_threads=1] [--note "..."]

Both runs resume where they stopped when started again with the same --out. Writes
`benchmarks/results/tune_ml100k.json` and prints the trial table and the comparison.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from datetime import date
from pathlib import Path

HERE = Path(__file__).resolve().parent
METRICS = ("HR@10", "NDCG@10", "MRR")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(HERE.parent / "configs" / "ml100k_sasrec.yaml"))
    parser.add_argument("--space", default=str(HERE.parent / "configs" / "spaces" / "sasrec.yaml"))
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--trial-minutes", type=float, default=2.5, help="training budget of each trial")
    parser.add_argument("--timeout", type=float, default=30, help="start no trial after this many minutes")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="fixed for the baseline and every trial, e.g. train.num_threads=1")
    parser.add_argument("--out", default=str(HERE.parent / "runs" / "bench-tune-ml100k"))
    parser.add_argument("--skip-baseline", action="store_true", help="study only")
    parser.add_argument("--baseline-minutes", type=float, default=None,
                        help="cap the baseline's training (train.max_minutes); default: as shipped (early stop)")
    parser.add_argument("--note", default="", help="load conditions, recorded in the result")
    parser.add_argument("--result", default=str(HERE / "results" / "tune_ml100k.json"))
    args = parser.parse_args()

    from seqrec import api
    from seqrec.config import load_config
    from seqrec.experiments.study import tune

    out = Path(args.out)
    fixed = [*args.overrides, "train.progress=false"]
    baseline = None
    if not args.skip_baseline:
        started = time.perf_counter()
        resume = (out / "baseline" / "config.yaml").exists()
        cap = [f"train.max_minutes={args.baseline_minutes}"] if args.baseline_minutes else []
        run = api.train(config=load_config(args.config, [*fixed, *cap]), out=out / "baseline", resume=resume)
        baseline = {"valid": run.results["valid"], "test": run.results["test"], "best_epoch": run.results["best_epoch"],
                    "epochs_run": run.results["epochs_run"], "train_seconds": run.results["train_seconds"],
                    "stopped": run.results["stopped"], "max_minutes": args.baseline_minutes,
                    "wall_seconds_this_session": round(time.perf_counter() - started, 1)}
        print(f"baseline (shipped config): test NDCG@10 {baseline['test']['NDCG@10']:.4f}, best epoch "
              f"{baseline['best_epoch']} of {baseline['epochs_run']}, {baseline['train_seconds'] / 60:.1f} min",
              flush=True)

    started = time.perf_counter()
    study_dir = out / "study"
    result = tune(args.config, args.space, out=study_dir, trials=args.trials, timeout_minutes=args.timeout,
                  overrides=[*fixed, f"train.max_minutes={args.trial_minutes}"], seed=args.seed,
                  resume=(study_dir / "study.json").exists())
    wall = time.perf_counter() - started
    print(table(result.rows))
    best = result.best
    print(f"\nstudy: {len(result.rows)} trials in {wall / 60:.1f} min this session")
    if best is not None:
        print(f"best trial {best['trial']}: valid NDCG@10 {best['valid']['NDCG@10']:.4f}, "
              f"test NDCG@10 {best['test']['NDCG@10']:.4f}  {best['params']}")
    if best is not None and baseline is not None:
        gain = best["test"]["NDCG@10"] / baseline["test"]["NDCG@10"] - 1
        print(f"best trial vs shipped config, test NDCG@10: {best['test']['NDCG@10']:.4f} vs "
              f"{baseline['test']['NDCG@10']:.4f} ({gain:+.1%})")

    report = {
        "date": str(date.today()), "benchmark": "bench_tune.py", "config": args.config, "space": args.space,
        "trials_asked": args.trials, "trial_minutes": args.trial_minutes, "timeout_minutes": args.timeout,
        "seed": args.seed, "overrides": fixed,
        "machine": {"python": sys.version.split()[0], "platform": platform.platform(), "cpus": os.cpu_count(),
                    "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS")},
        "note": args.note,
        "study_wall_minutes_this_session": round(wall / 60, 2),
        "trials": result.rows,
        "best": best, "baseline": baseline,
        "best_beats_baseline_test_ndcg10": (best["test"]["NDCG@10"] > baseline["test"]["NDCG@10"]
                                            if best is not None and baseline is not None else None),
    }
    Path(args.result).parent.mkdir(parents=True, exist_ok=True)
    Path(args.result).write_text(json.dumps(report, indent=1, default=str) + "\n")
    print(f"wrote {args.result}")
    return 0


def table(rows: list[dict]) -> str:
    """The trials as a markdown table."""
    keys = list(dict.fromkeys(key for row in rows for key in row["params"]))
    head = ["trial", "state", "valid NDCG@10", *keys, "best epoch", "epochs", "minutes"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        cells = [row["trial"], row["state"], row["value"], *(row["params"].get(k) for k in keys), row["best_epoch"],
                 row["epochs"], row["minutes"]]
        lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    return "\n".join(lines)


def _cell(value) -> str:
    if value is None:
        return "-"
    return f"{value:.4g}" if isinstance(value, float) else str(value)


if __name__ == "__main__":
    sys.exit(main())
