"""ML-1M benchmark of one model on the literature protocol (configs/ml1m_<model>.yaml), and the table of all.

Trains the model with its config on `ml-1m-sasrec/ml-1m.txt` (leave-one-out, max length 200, history
excluded from the ranking, full ranking, epoch chosen on validation NDCG@10), then reports:

- test metrics of the best validation epoch (target: NDCG@10 >= 0.175, aim 0.185);
- wall clock from the start to the first validation NDCG@10 >= 0.17 (target <= 15 minutes), seconds per
  epoch and sequences/s (medians over epochs);
- peak RSS of the training process (target <= 2 GB);
- one full-ranking evaluation of all 6,040 test users (median of 3, target <= 3 s).

    SEQREC_DATA=../shared/datasets python benchmarks/bench_ml1m.py --model sasrec [--out DIR] [--set key=value]
    python benchmarks/bench_ml1m.py --table      # the markdown table of every results/ml1m_*.json

Writes `benchmarks/results/ml1m_<model>.json` and prints its figures. Published references on this protocol:
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
    parser.add_argument("--model", default="sasrec", help="model name; its config is configs/ml1m_<model>.yaml")
    parser.add_argument("--config", default=None, help="config file (default: configs/ml1m_<model>.yaml)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--out", default=None, help="run directory (default: a new one under runs/)")
    parser.add_argument("--result", default=None, help="results JSON (default: results/ml1m_<model>.json)")
    parser.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint "
                        "(epoch times and the elapsed clock in its log carry over)")
    parser.add_argument("--table", action="store_true", help="print the markdown table of all results and exit")
    args = parser.parse_args()
    if args.table:
        print(table(sorted((HERE / "results").glob("ml1m_*.json"))))
        return 0
    args.config = args.config or str(HERE.parent / "configs" / f"ml1m_{args.model}.yaml")
    args.result = args.result or str(HERE / "results" / f"ml1m_{args.model}.json")

    from seqrec import api
    from seqrec.config import config_to_dict, load_config
    from seqrec.evaluate import evaluate

    config = load_config(args.config, [*args.overrides, "train.progress=false"])
    out = Path(args.out) if args.out else api.default_run_dir(config, HERE.parent / "runs")
    started = time.perf_counter()
    run = api.train(config=config, out=out, resume=args.resume)
    wall = time.perf_counter() - started

    log_file = out / "log.jsonl"                                     # absent for models that are not trained
    records = [json.loads(line) for line in log_file.read_text().splitlines()] if log_file.exists() else []
    reached = next((r["elapsed"] for r in records if r.get("valid", {}).get("NDCG@10", 0) >= 0.17), None)
    best = run.results.get("best_epoch")
    to_best = next((r["elapsed"] for r in records if r.get("epoch") == best), None)
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
        "model": config.model.name, "config": config_to_dict(config), "run_dir": str(out),
        "best_epoch": run.results["best_epoch"], "epochs_run": run.results["epochs_run"],
        "stopped": run.results.get("stopped"),
        "valid": run.results["valid"], "test": run.results["test"],
        "seconds_to_valid_ndcg10_0.17": reached, "seconds_to_best_epoch": to_best, "wall_seconds": round(wall, 1),
        "seconds_per_epoch_median": _median(r["seconds"] for r in records),
        "train_seconds_per_epoch_median": _median(r["train_seconds"] for r in records),
        "sequences_per_second_median": _median(r["sequences_per_second"] for r in records),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "full_ranking_eval_seconds_median": round(statistics.median(eval_seconds), 3),
        "references": REFERENCES,
    }
    Path(args.result).parent.mkdir(parents=True, exist_ok=True)
    Path(args.result).write_text(json.dumps(result, indent=1) + "\n")
    test = result["test"]
    print(f"test HR@10 {test['HR@10']:.4f}  NDCG@10 {test['NDCG@10']:.4f}  (best epoch {result['best_epoch']} of "
          f"{result['epochs_run']})")
    print(f"valid NDCG@10 >= 0.17 after {reached} s; best epoch after {to_best} s; "
          f"{result['seconds_per_epoch_median']} s/epoch; {result['sequences_per_second_median']} sequences/s")
    print(f"peak RSS {result['peak_rss_mb']:.0f} MB; full-ranking eval {result['full_ranking_eval_seconds_median']} s")
    print(f"wrote {args.result}")
    return 0


def _median(values):
    values = [v for v in values if v is not None]
    return round(statistics.median(values), 2) if values else None


def table(paths: list[Path]) -> str:
    """Markdown table, one row per results file (models in the issue's order, then any others)."""
    order = ["pop", "sasrec", "gru4rec", "bert4rec", "nextitnet"]
    rows = [json.loads(p.read_text()) for p in paths]
    rows.sort(key=lambda r: (order.index(r["model"]) if r.get("model") in order else len(order), r.get("model", "")))
    lines = ["| model | test HR@10 | test NDCG@10 | test MRR | best epoch / run | s/epoch | seq/s | peak RSS MB | "
             "wall to best | eval s |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        test = r["test"]
        to_best = r.get("seconds_to_best_epoch")
        lines.append(
            f"| {r.get('model', '?')} | {test['HR@10']:.4f} | {test['NDCG@10']:.4f} | {test['MRR']:.4f} | "
            f"{r.get('best_epoch')} / {r.get('epochs_run')} | {r.get('seconds_per_epoch_median') or '-'} | "
            f"{r.get('sequences_per_second_median') or '-'} | {r['peak_rss_mb']:.0f} | "
            f"{f'{to_best / 60:.1f} min' if to_best else '-'} | {r['full_ranking_eval_seconds_median']} |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
