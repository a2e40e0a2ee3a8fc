"""ML-1M SASRec benchmark (the literature protocol of configs/ml1m_sasrec.yaml).

Trains SASRec with full cross-entropy on `ml-1m-sasrec/ml-1m.txt` (leave-one-out, max length 200, history
excluded from the ranking, full ranking, epoch chosen on validation NDCG@10), then reports:

- test metrics of the best validation epoch (target: NDCG@10 >= 0.175, aim 0.185);
- wall clock from the start to the first validation NDCG@10 >= 0.17 (target <= 15 minutes), seconds per
  epoch and sequences/s (medians over epochs);
- peak RSS of the training process (target <= 2 GB);
- one full-ranking evaluation of all 6,040 test users (median of 3, target <= 3 s).

    SEQREC_DATA=../shared/datasets python benchmarks/bench_ml1m_sasrec.py [--out DIR] [--set key=value ...]

Writes `benchmarks/results/ml1m_sasrec.json` and prints a table. Published references on this protocol:
SASRec full CE HR@10 0.3152 / NDCG@10 0.1821 (Klenitskiy & Vasilev, RecSys 2023); gSASRec 0.3003 / 0.1726
(Petrov & Macdonald, RecSys 2023).
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
import sys
import time
from datetime import date
from pathlib import Path

HERE = Path(__file__).resolve().parent
REFERENCES = {"SASRec+ (Klenitskiy & Vasilev 2023)": {"HR@10": 0.3152, "NDCG@10": 0.1821},
              "gSASRec (Petrov & Macdonald 2023)": {"HR@10": 0.3003, "NDCG@10": 0.1726}}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(HERE.parent / "configs" / "ml1m_sasrec.yaml"))
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--out", default=None, help="run directory (default: a new one under runs/)")
    parser.add_argument("--result", default=str(HERE / "results" / "ml1m_sasrec.json"))
    args = parser.parse_args()

    from seqrec import api
    from seqrec.config import config_to_dict, load_config
    from seqrec.evaluate import evaluate

    config = load_config(args.config, [*args.overrides, "train.progress=false"])
    out = Path(args.out) if args.out else api.default_run_dir(config, HERE.parent / "runs")
    started = time.perf_counter()
    run = api.train(config=config, out=out)
    wall = time.perf_counter() - started

    records = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    reached = next((r["elapsed"] for r in records if r.get("valid", {}).get("NDCG@10", 0) >= 0.17), None)
    eval_seconds = []
    for _ in range(3):
        t0 = time.perf_counter()
        evaluate(run.model, run.split.test, ks=tuple(config.eval.ks), exclude_history=config.eval.exclude_history,
                 batch_size=config.eval.batch_size)
        eval_seconds.append(time.perf_counter() - t0)
    result = {
        "date": date.today().isoformat(),
        "machine": {"cpus": __import__("os").cpu_count(), "python": platform.python_version(),
                    "torch": __import__("torch").__version__},
        "config": config_to_dict(config), "run_dir": str(out),
        "best_epoch": run.results["best_epoch"], "epochs_run": run.results["epochs_run"],
        "stopped": run.results.get("stopped"),
        "valid": run.results["valid"], "test": run.results["test"],
        "seconds_to_valid_ndcg10_0.17": reached, "wall_seconds": round(wall, 1),
        "seconds_per_epoch_median": statistics.median(r["seconds"] for r in records),
        "train_seconds_per_epoch_median": statistics.median(r["train_seconds"] for r in records),
        "sequences_per_second_median": statistics.median(r["sequences_per_second"] for r in records),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "full_ranking_eval_seconds_median": round(statistics.median(eval_seconds), 3),
        "references": REFERENCES,
    }
    Path(args.result).parent.mkdir(parents=True, exist_ok=True)
    Path(args.result).write_text(json.dumps(result, indent=1) + "\n")
    test = result["test"]
    print(f"test HR@10 {test['HR@10']:.4f}  NDCG@10 {test['NDCG@10']:.4f}  (best epoch {result['best_epoch']} of "
          f"{result['epochs_run']})")
    print(f"valid NDCG@10 >= 0.17 after {reached} s; {result['seconds_per_epoch_median']:.1f} s/epoch; "
          f"{result['sequences_per_second_median']:.0f} sequences/s")
    print(f"peak RSS {result['peak_rss_mb']:.0f} MB; full-ranking eval {result['full_ranking_eval_seconds_median']} s")
    print(f"wrote {args.result}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
