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
import os
import platform
import resource
import statistics
import sys
import time
from datetime import date
from pathlib import Path

HERE = Path(__file__).resolve().parent
AT_KS = (10, 50, 200)
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
    parser.add_argument("--add-metrics", metavar="RESULT_JSON", default=None,
                        help="add the test metrics at k = 10, 50, 200 (test_at) and with only the model's window "
                             "excluded (test_window) of the run named in RESULT_JSON, from its best checkpoint, "
                             "to that file, and exit")
    args = parser.parse_args()
    if args.table:
        print(table(sorted((HERE / "results").glob("ml1m_*.json"))))
        return 0
    if args.add_metrics:
        return add_metrics(Path(args.add_metrics))
    args.config = args.config or str(HERE.parent / "configs" / f"ml1m_{args.model}.yaml")
    args.result = args.result or str(HERE / "results" / f"ml1m_{args.model}.json")

    from seqrec import api
    from seqrec.config import config_to_dict, load_config
    from seqrec.evaluate import evaluate

    config = load_config(args.config, [*args.overrides, "train.progress=false"])
    out = Path(args.out) if args.out else api.default_run_dir(config, HERE.parent / "runs")
    load_at_start = os.getloadavg()
    started = time.perf_counter()
    run = api.train(config=config, out=out, resume=args.resume)
    wall = time.perf_counter() - started
    load_at_end = os.getloadavg()

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
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "torch": __import__("torch").__version__, "device": _device_name(run.model)},
        "load": {"threads": __import__("torch").get_num_threads(),
                 "loadavg_1_5_15_at_start": [round(x, 2) for x in load_at_start],
                 "loadavg_1_5_15_at_end": [round(x, 2) for x in load_at_end]},
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
        "valid_ndcg10_by_epoch": [round(r["valid"]["NDCG@10"], 4) for r in records if "valid" in r],
        "test_ndcg10_by_epoch": test_curve(records),     # logged with eval.report_test, never used to choose
        "test_at": test_at(run, config),
        "test_window": test_window(run, config),
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


def test_at(run, config) -> dict:
    """Test metrics at k = 10, 50, 200 (HR, NDCG, MRR) of the run's model, history excluded as configured."""
    from seqrec.evaluate import evaluate

    return evaluate(run.model, run.split.test, ks=AT_KS, exclude_history=config.eval.exclude_history,
                    batch_size=config.eval.batch_size)


def test_window(run, config) -> dict | None:
    """Test metrics of the run's model with only the window it reads (the last `max_len` items) excluded from
    the ranking, generative-recommenders' filter, when the config excludes the whole history (else None: the
    run's own test figures already say what its filter gives)."""
    from seqrec.evaluate import evaluate

    if config.eval.exclude_history is not True:
        return None
    return evaluate(run.model, run.split.test, ks=tuple(config.eval.ks), exclude_history="window",
                    batch_size=config.eval.batch_size)


def _device_name(model) -> str:
    """Where the model trained: `cpu`, or the CUDA device's name."""
    import torch

    device = next(iter(model.parameters()), torch.empty(0)).device
    return torch.cuda.get_device_name(device) if device.type == "cuda" else device.type


def test_curve(records: list[dict]) -> list[float]:
    """Test NDCG@10 after each epoch that logged it (`eval.report_test`)."""
    return [round(r["test"]["NDCG@10"], 4) for r in records if "test" in r]


def add_metrics(result_path: Path) -> int:
    """Load the run of a results file (best checkpoint) and add its `test_at` and `test_window` metrics (and its
    logged test curve) to the file."""
    from seqrec.api import Run

    result = json.loads(result_path.read_text())
    run = Run.load(result["run_dir"])
    log_file = Path(result["run_dir"]) / "log.jsonl"
    if log_file.exists():
        result["test_ndcg10_by_epoch"] = test_curve([json.loads(line) for line in log_file.read_text().splitlines()])
    result["test_at"] = test_at(run, run.config)
    if abs(result["test_at"]["NDCG@10"] - result["test"]["NDCG@10"]) > 1e-6:
        print(f"the run's best checkpoint gives test NDCG@10 {result['test_at']['NDCG@10']:.6f}, the file says "
              f"{result['test']['NDCG@10']:.6f}: not the same model", file=sys.stderr)
        return 1
    result["test_window"] = test_window(run, run.config)
    result_path.write_text(json.dumps(result, indent=1) + "\n")
    if result["test_window"]:
        print(f"test NDCG@10 with only the model's window excluded: {result['test_window']['NDCG@10']:.4f}")
    print(f"added test_at to {result_path}: " + ", ".join(f"{k} {v:.4f}" for k, v in result["test_at"].items()
                                                          if k.startswith(("HR", "NDCG"))))
    return 0


def _median(values):
    values = [v for v in values if v is not None]
    return round(statistics.median(values), 2) if values else None


def table(paths: list[Path]) -> str:
    """Markdown table, one row per results file, named after it (`ml1m_<name>.json`; the issue's models first)."""
    order = ["pop", "sasrec", "gru4rec", "bert4rec", "nextitnet", "sasrec_sampled", "hstu", "hstu_large",
             "hstu_large_mol"]
    rows = [(p.stem.removeprefix("ml1m_"), json.loads(p.read_text())) for p in paths]
    rows.sort(key=lambda nr: (order.index(nr[0]) if nr[0] in order else len(order), nr[0]))
    lines = ["| config | test HR@10 | test NDCG@10 | test MRR | HR@50 | HR@200 | NDCG@200 | best epoch / run | "
             "s/epoch | seq/s | peak RSS MB | wall to best | eval s |", "|---|" + "---:|" * 12]
    for name, r in rows:
        test, at = r["test"], r.get("test_at", {})
        to_best = r.get("seconds_to_best_epoch")
        extra = " | ".join(f"{at[m]:.4f}" if m in at else "-" for m in ("HR@50", "HR@200", "NDCG@200"))
        lines.append(
            f"| {name} | {test['HR@10']:.4f} | {test['NDCG@10']:.4f} | {test['MRR']:.4f} | {extra} | "
            f"{r.get('best_epoch')} / {r.get('epochs_run')} | {r.get('seconds_per_epoch_median') or '-'} | "
            f"{r.get('sequences_per_second_median') or '-'} | {r['peak_rss_mb']:.0f} | "
            f"{f'{to_best / 60:.1f} min' if to_best else '-'} | {r['full_ranking_eval_seconds_median']} |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
