"""What HSTU's time bias adds: MovieLens-100K (real timestamps), position bias only vs position + time bias.

Trains `configs/ml100k_hstu.yaml` with `model.time_bias=false` and `=true` for each seed (same seeds, same
everything else), and reports the test metrics of each run's best validation epoch, their mean and standard
deviation over the seeds, and the paired difference (time minus position only) per seed. ML-100K has 943 test
users, so one run's NDCG@10 moves by about +-0.01 between seeds: only the paired mean over seeds says much.

    SEQREC_DATA=../shared/datasets python benchmarks/bench_time_bias.py [--seeds 1 2 3] [--set key=value]

Writes `benchmarks/results/ml100k_time_bias.json` and prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from datetime import date
from pathlib import Path

HERE = Path(__file__).resolve().parent
METRICS = ("HR@10", "NDCG@10", "MRR", "HR@50", "NDCG@50")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(HERE.parent / "configs" / "ml100k_hstu.yaml"))
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--runs", default=str(HERE.parent / "runs" / "bench-ml100k-time"), help="run directories")
    parser.add_argument("--result", default=str(HERE / "results" / "ml100k_time_bias.json"))
    args = parser.parse_args()

    from seqrec import api
    from seqrec.config import config_to_dict, load_config

    runs = []
    for seed in args.seeds:
        for time_bias in (False, True):
            name = f"{'time' if time_bias else 'position'}-seed{seed}"
            config = load_config(args.config, [*args.overrides, f"model.time_bias={str(time_bias).lower()}",
                                               f"train.seed={seed}", "train.progress=false"])
            started = time.perf_counter()
            run = api.train(config=config, out=Path(args.runs) / name)
            wall = time.perf_counter() - started
            records = [json.loads(line) for line in (Path(args.runs) / name / "log.jsonl").read_text().splitlines()]
            runs.append({"name": name, "seed": seed, "time_bias": time_bias, "best_epoch": run.results["best_epoch"],
                         "epochs_run": run.results["epochs_run"], "valid": run.results["valid"],
                         "test": run.results["test"], "wall_seconds": round(wall, 1),
                         "train_seconds_per_epoch_median": round(statistics.median(
                             r["train_seconds"] for r in records), 3)})
            print(f"{name}: test NDCG@10 {run.results['test']['NDCG@10']:.4f} HR@10 {run.results['test']['HR@10']:.4f} "
                  f"(best epoch {run.results['best_epoch']} of {run.results['epochs_run']}, {wall:.0f} s)", flush=True)

    summary = {}
    for time_bias in (False, True):
        chosen = [r for r in runs if r["time_bias"] == time_bias]
        summary["time" if time_bias else "position"] = {
            m: {"mean": statistics.mean(r["test"][m] for r in chosen),
                "std": statistics.stdev(r["test"][m] for r in chosen) if len(chosen) > 1 else 0.0} for m in METRICS}
    paired = {m: [next(r for r in runs if r["seed"] == s and r["time_bias"])["test"][m]
                  - next(r for r in runs if r["seed"] == s and not r["time_bias"])["test"][m] for s in args.seeds]
              for m in METRICS}
    result = {"date": date.today().isoformat(),
              "machine": {"cpus": __import__("os").cpu_count(), "python": platform.python_version(),
                          "torch": __import__("torch").__version__},
              "config": config_to_dict(load_config(args.config, args.overrides)), "seeds": args.seeds, "runs": runs,
              "summary": summary, "paired_difference": paired}
    Path(args.result).parent.mkdir(parents=True, exist_ok=True)
    Path(args.result).write_text(json.dumps(result, indent=1) + "\n")
    print(table(result))
    print(f"wrote {args.result}")
    return 0


def table(result: dict) -> str:
    lines = ["| bias | " + " | ".join(f"test {m}" for m in METRICS) + " | best epochs | s/epoch |",
             "|---|" + "---:|" * (len(METRICS) + 2)]
    for key in ("position", "time"):
        chosen = [r for r in result["runs"] if r["time_bias"] == (key == "time")]
        cells = [f"{result['summary'][key][m]['mean']:.4f} ± {result['summary'][key][m]['std']:.4f}" for m in METRICS]
        epochs = ", ".join(str(r["best_epoch"]) for r in chosen)
        speed = statistics.median(r["train_seconds_per_epoch_median"] for r in chosen)
        lines.append(f"| {'position + time' if key == 'time' else 'position only'} | " + " | ".join(cells)
                     + f" | {epochs} | {speed:.2f} |")
    diffs = [f"{statistics.mean(v):+.4f} ({', '.join(f'{x:+.4f}' for x in v)})"
             for v in result["paired_difference"].values()]
    lines.append("| time − position, per seed | " + " | ".join(diffs) + " | | |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
