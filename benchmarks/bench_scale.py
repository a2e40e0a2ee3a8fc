"""Scale benchmark: DDP training speed on ML-1M, and a million-item synthetic catalogue end to end (issue 20).

    SEQREC_DATA=../shared/datasets python benchmarks/bench_scale.py ddp [--epochs 3]
    python benchmarks/bench_scale.py catalogue [--items 1000000 10000] [--users 1000000] [--steps 300]
    python benchmarks/bench_scale.py --table

`ddp` trains `configs/ml1m_sasrec.yaml` back to back as 1 process x 2 threads, 1 x 1, and 2 processes x 1 thread
(`seqrec train --nproc 2`, gloo), each for `--epochs` epochs with the same global batch (128), and reports the
training rows per second (median over the epochs after the first), the scaling ratios, and the validation
NDCG@10 each reached (DDP against one process with the same global batch). Results: results/scale_ddp.json.

`catalogue` builds synthetic logs with the built-in generator (`seqrec.data.synthetic`: 1,000,000 users, lengths
10-32, about 21M interactions) over each catalogue size, writes each as Parquet, then in fresh processes:
prepares it (`seqrec data prepare`, timed, peak RSS), and trains SASRec with in-batch sampled softmax (log-Q) and
`train.sparse_embeddings` (rows/s over `--steps` steps, one full epoch's wall clock on the largest catalogue,
a dense-Adam comparison), validates on a 10,000-user sample over all items (the full-user figure extrapolated,
stated), and answers single top-10 requests exactly and with the faiss index (p50/p99). Peak RSS per process
from `wait4`. Results: results/scale_catalogue.json.

Timing figures count only on an otherwise idle machine (the JSON records the load average at start and end).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
RESULTS = HERE / "results"
SEQREC = [sys.executable, "-m", "seqrec"]


def run_measured(args: list[str], env: dict | None = None) -> tuple[float, float, str]:
    """(wall seconds, peak RSS in GiB of the process, stdout) of one command."""
    started = time.perf_counter()
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(args, stdout=out, stderr=err, text=True, env={**os.environ, **(env or {})})
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - started
        out.seek(0)
        err.seek(0)
        if status != 0:
            raise SystemExit(f"{' '.join(args)} failed (status {status}):\n{err.read()[-4000:]}")
        return wall, usage.ru_maxrss / 2**20, out.read()


def machine() -> dict:
    return {"date": str(date.today()), "machine": platform.machine(), "cpus": os.cpu_count(),
            "python": platform.python_version(), "load_average": os.getloadavg()}


# ------------------------------------------------------------------------------------------- ddp

def bench_ddp(epochs: int) -> dict:
    config = str(REPO / "configs" / "ml1m_sasrec.yaml")
    common = ["-c", config, "--set", f"train.epochs={epochs}", "--set", "train.patience=0", "--quiet"]
    settings = {"1x2": (None, 2), "1x1": (None, 1), "2x1": (2, 1)}
    rows = {}
    started = machine()
    with tempfile.TemporaryDirectory(prefix="seqrec-bench-scale-") as tmp:
        for name, (nproc, threads) in settings.items():
            out = Path(tmp) / name
            launch = ["--nproc", str(nproc)] if nproc else []
            wall, _, _ = run_measured([*SEQREC, "train", *launch, *common, "--set", f"train.num_threads={threads}",
                                       "--out", str(out)], env={"OMP_NUM_THREADS": str(threads)})
            records = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
            rates = [r["sequences_per_second"] for r in records]
            rows[name] = {"processes": nproc or 1, "threads_per_process": threads,
                          "rows_per_second": statistics.median(rates[1:] if len(rates) > 1 else rates),
                          "rows_per_second_by_epoch": rates,
                          "train_seconds_by_epoch": [r["train_seconds"] for r in records],
                          "valid_ndcg10_by_epoch": [r["valid"]["NDCG@10"] for r in records],
                          "wall_seconds": round(wall, 1)}
            print(f"{name}: {rows[name]['rows_per_second']:.1f} rows/s, valid NDCG@10 by epoch "
                  f"{rows[name]['valid_ndcg10_by_epoch']}", flush=True)
    ratio_1x1 = rows["2x1"]["rows_per_second"] / rows["1x1"]["rows_per_second"]
    ratio_1x2 = rows["2x1"]["rows_per_second"] / rows["1x2"]["rows_per_second"]
    return {"benchmark": "scale_ddp", "config": "configs/ml1m_sasrec.yaml", "epochs": epochs,
            "global_batch": 128, "settings": rows, "ddp_vs_1x1": round(ratio_1x1, 3),
            "ddp_vs_1x2": round(ratio_1x2, 3), "targets": {"ddp_vs_1x1": 1.6, "ddp_vs_1x2": 0.9},
            "start": started, "end": machine()}


# ------------------------------------------------------------------------------------------- catalogue

def make_log(path: Path, users: int, items: int) -> dict:
    from seqrec.data.synthetic import generate

    started = time.perf_counter()
    log = generate(num_users=users, num_items=items, min_length=10, max_length=32, num_clusters=200, seed=0)
    generated = time.perf_counter() - started
    log.frame.write_parquet(path)
    return {"interactions": log.frame.height, "generate_seconds": round(generated, 1),
            "write_seconds": round(time.perf_counter() - started - generated, 1),
            "file_mib": round(path.stat().st_size / 2**20, 1)}


def bench_catalogue(items_list: list[int], users: int, steps: int, full_epoch_items: int,
                    steps_only: bool = False) -> dict:
    out = {"benchmark": "scale_catalogue", "users": users, "start": machine(), "catalogues": {},
           "steps_only": steps_only}
    with tempfile.TemporaryDirectory(prefix="seqrec-bench-cat-") as tmp:
        env = {"SEQREC_CACHE": str(Path(tmp) / "cache")}
        for items in items_list:
            path = Path(tmp) / f"log_{items}.parquet"
            row = make_log(path, users, items)
            print(f"{items} items: {row}", flush=True)
            wall, rss, summary = run_measured([*SEQREC, "data", "prepare", str(path), "--split", "none", "--json"],
                                              env=env)
            row["prepare_seconds"] = round(wall, 1)
            row["prepare_peak_rss_gib"] = round(rss, 2)
            row["prepared"] = {k: v for k, v in json.loads(summary).items() if k in ("users", "items", "interactions")}
            result_file = Path(tmp) / f"worker_{items}.json"
            args = [sys.executable, __file__, "worker", str(path), str(result_file), "--steps", str(steps)]
            if items == full_epoch_items and not steps_only:
                args.append("--full-epoch")
            if steps_only:
                args.append("--steps-only")
            proc = subprocess.Popen(args, env={**os.environ, **env})
            _, status, usage = os.wait4(proc.pid, 0)
            if status != 0:
                raise SystemExit(f"worker for {items} items failed (status {status})")
            row.update(json.loads(result_file.read_text()))
            row["worker_peak_rss_gib"] = round(usage.ru_maxrss / 2**20, 2)
            if steps_only:
                out["catalogues"][str(items)] = row
                print(json.dumps(row, indent=1), flush=True)
                continue
            sample = row.pop("sample_users")
            wall, _, answer = run_measured([*SEQREC, "recommend", row.pop("run_dir"), "--user", str(sample[0]),
                                            "--json"], env=env)
            row["cli_recommend_seconds"] = round(wall, 1)                    # one command: load + answer
            assert len(json.loads(answer)["items"]) == 10
            row.update(serve_latency(Path(result_file).with_suffix(".run"), sample, env))
            out["catalogues"][str(items)] = row
            print(json.dumps(row, indent=1), flush=True)
    sizes = sorted(out["catalogues"], key=int)
    if len(sizes) > 1:
        small, large = out["catalogues"][sizes[0]], out["catalogues"][sizes[-1]]
        out["cost_per_row_ratio"] = round(small["train_rows_per_second"] / large["train_rows_per_second"], 3)
    out["end"] = machine()
    return out


def serve_latency(run_dir: Path, users: list, env: dict, requests: int = 300) -> dict:
    """p50/p99 of POST /recommend {"user": u, "k": 10} against `seqrec serve RUN` on loopback (one at a time)."""
    import socket
    import urllib.request

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = subprocess.Popen([*SEQREC, "serve", str(run_dir), "--port", str(port)], stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True, env={**os.environ, **env})
    base = f"http://127.0.0.1:{port}"
    try:
        started = time.perf_counter()
        while True:
            try:
                urllib.request.urlopen(f"{base}/health", timeout=2).read()
                break
            except OSError:
                if server.poll() is not None:
                    raise SystemExit(f"seqrec serve failed:\n{server.stderr.read()[-3000:]}") from None
                time.sleep(0.5)
        startup = time.perf_counter() - started
        times = []
        for i in range(requests):
            body = json.dumps({"user": users[i % len(users)], "k": 10}).encode()
            request = urllib.request.Request(f"{base}/recommend", data=body,
                                             headers={"Content-Type": "application/json"})
            began = time.perf_counter()
            answer = json.loads(urllib.request.urlopen(request, timeout=30).read())
            times.append(1000 * (time.perf_counter() - began))
            assert len(answer["items"]) == 10
    finally:
        server.terminate()
        server.wait(timeout=30)
    times = sorted(times[20:])
    return {"serve_startup_seconds": round(startup, 1),
            "serve_ms_p50": round(statistics.median(times), 2),
            "serve_ms_p99": round(times[int(0.99 * (len(times) - 1))], 2)}


def worker(path: str, result_file: str, steps: int, full_epoch: bool, steps_only: bool = False) -> None:
    """In a fresh process: train, validate on a sample, recommend; write the figures as JSON."""
    import numpy as np
    import torch

    from seqrec import api
    from seqrec.models import build_model
    from seqrec.recommend import Recommender
    from seqrec.train.trainer import Trainer

    sections = {"data": {"path": path}, "loss": {"name": "sampled_softmax", "negatives": "in_batch"},
                "train": {"batch_size": 256, "progress": False, "sparse_embeddings": True, "seed": 1},
                "eval": {"max_users": 10_000, "exclude_history": True}}
    config = api.make_config(model={"name": "sasrec", "dim": 64, "num_blocks": 2, "max_len": 50, "dropout": 0.1},
                             **sections)
    figures: dict = {}
    started = time.perf_counter()
    split = api.load_split(config)
    figures["load_seconds"] = round(time.perf_counter() - started, 1)
    torch.manual_seed(1)

    def timed_steps(trainer: Trainer, count: int) -> float:
        batches = trainer.epoch_batches(1)[:count + 5]
        for rows in batches[:5]:                                              # warm-up
            trainer._step(rows)
        began = time.perf_counter()
        for rows in batches[5:]:
            trainer._step(rows)
        return (time.perf_counter() - began) / max(len(batches) - 5, 1)

    dense_config = api.make_config(config, train={"sparse_embeddings": False})
    dense = Trainer(build_model("sasrec", split.data.num_items, config.model.params), split, dense_config)
    figures["dense_adam_ms_per_step"] = round(1000 * timed_steps(dense, min(steps, 50)), 1)
    del dense
    model = build_model("sasrec", split.data.num_items, config.model.params)
    trainer = Trainer(model, split, config)
    seconds = timed_steps(trainer, steps)
    figures["sparse_ms_per_step"] = round(1000 * seconds, 1)
    figures["train_rows_per_second"] = round(256 / seconds, 1)
    figures["training_rows"] = int(trainer.starts.shape[0])
    if steps_only:
        Path(result_file).write_text(json.dumps(figures))
        return
    if full_epoch:
        began = time.perf_counter()
        loss, rows, _ = trainer._train_epoch(1)
        figures["epoch_seconds"] = round(time.perf_counter() - began, 1)
        figures["epoch_loss"] = round(loss, 4)
    began = time.perf_counter()
    valid = trainer.validate()
    figures["valid_10k_users_seconds"] = round(time.perf_counter() - began, 1)
    figures["valid_10k_users_ndcg10"] = round(valid["NDCG@10"], 4)
    sampled = min(10_000, len(split.valid))
    figures["valid_users"] = len(split.valid)
    figures["valid_all_users_seconds_extrapolated"] = round(
        figures["valid_10k_users_seconds"] * len(split.valid) / sampled, 1)

    rec = Recommender(model, split.data, config=config)
    users = split.data.users.raw[np.random.default_rng(0).choice(len(split.data.users), 300, replace=False)]

    def latencies() -> list[float]:
        times = []
        for user in users:
            began = time.perf_counter()
            rec.recommend(user.item(), k=10)
            times.append(1000 * (time.perf_counter() - began))
        return times[20:]                                                     # after warm-up

    exact = latencies()
    figures["recommend_exact_ms_p50"] = round(float(np.percentile(exact, 50)), 2)
    figures["recommend_exact_ms_p99"] = round(float(np.percentile(exact, 99)), 2)
    try:
        began = time.perf_counter()
        rec.use_ann()
        figures["ann_build_seconds"] = round(time.perf_counter() - began, 1)
        approx = latencies()
        figures["recommend_ann_ms_p50"] = round(float(np.percentile(approx, 50)), 2)
        figures["recommend_ann_ms_p99"] = round(float(np.percentile(approx, 99)), 2)
    except ImportError as error:
        figures["recommend_ann"] = f"skipped: {error}"
    figures["threads"] = torch.get_num_threads()
    run_dir = Path(result_file).with_suffix(".run")              # a run directory for `seqrec recommend`/`serve`
    api._open_run_dir(run_dir, config, split)
    trainer.run_dir = run_dir
    trainer._save_last()
    figures["run_dir"] = str(run_dir)
    figures["sample_users"] = [u.item() for u in users[:50]]
    Path(result_file).write_text(json.dumps(figures))


def table() -> str:
    lines = []
    ddp_file, cat_file = RESULTS / "scale_ddp.json", RESULTS / "scale_catalogue.json"
    if ddp_file.exists():
        r = json.loads(ddp_file.read_text())
        lines += [f"ML-1M SASRec (`{r['config']}`, global batch {r['global_batch']}, {r['epochs']} epochs, "
                  f"{r['start']['date']}; load average at start {r['start']['load_average'][0]:.2f})", "",
                  "| setting | rows/s (median, epochs 2+) | train s/epoch | valid NDCG@10 by epoch |",
                  "|---|---:|---:|---|"]
        for name, s in r["settings"].items():
            lines.append(f"| {s['processes']} process(es) x {s['threads_per_process']} thread(s) | "
                         f"{s['rows_per_second']:.1f} | {statistics.median(s['train_seconds_by_epoch']):.1f} | "
                         f"{', '.join(f'{v:.4f}' for v in s['valid_ndcg10_by_epoch'])} |")
        lines += ["", f"2x1 / 1x1: {r['ddp_vs_1x1']:.2f} (target >= 1.6); 2x1 / 1x2: {r['ddp_vs_1x2']:.2f} "
                  "(target >= 0.9)", ""]
    if cat_file.exists():
        r = json.loads(cat_file.read_text())
        keys = ["interactions", "prepare_seconds", "prepare_peak_rss_gib", "dense_adam_ms_per_step",
                "sparse_ms_per_step", "train_rows_per_second", "epoch_seconds", "valid_10k_users_seconds",
                "valid_all_users_seconds_extrapolated", "recommend_exact_ms_p50", "recommend_exact_ms_p99",
                "recommend_ann_ms_p99", "cli_recommend_seconds", "serve_ms_p50", "serve_ms_p99",
                "worker_peak_rss_gib"]
        sizes = sorted(r["catalogues"], key=int)
        lines += [f"Synthetic catalogues ({r['users']:,} users; {r['start']['date']})", "",
                  "| figure | " + " | ".join(f"{int(s):,} items" for s in sizes) + " |",
                  "|---|" + "---:|" * len(sizes)]
        for key in keys:
            lines.append(f"| {key} | " + " | ".join(str(r["catalogues"][s].get(key, "-")) for s in sizes) + " |")
        if "cost_per_row_ratio" in r:
            lines += ["", f"training cost per row, largest / smallest catalogue: {r['cost_per_row_ratio']:.2f} "
                      "(target <= 1.5)"]
    steps_file = RESULTS / "scale_catalogue_steps.json"
    if steps_file.exists():
        r = json.loads(steps_file.read_text())
        sizes = sorted(r["catalogues"], key=int)
        lines += ["", f"Training steps only, remeasured ({r['start']['date']}, load average at start "
                  f"{r['start']['load_average'][0]:.2f})", "",
                  "| figure | " + " | ".join(f"{int(s):,} items" for s in sizes) + " |", "|---|" + "---:|" * len(sizes)]
        for key in ("dense_adam_ms_per_step", "sparse_ms_per_step", "train_rows_per_second", "worker_peak_rss_gib"):
            lines.append(f"| {key} | " + " | ".join(str(r["catalogues"][s].get(key, "-")) for s in sizes) + " |")
        if "cost_per_row_ratio" in r:
            lines += ["", f"training cost per row, largest / smallest catalogue: {r['cost_per_row_ratio']:.2f}"]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", nargs="?", choices=["ddp", "catalogue", "worker"])
    parser.add_argument("args", nargs="*")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--items", type=int, nargs="+", default=[1_000_000, 10_000])
    parser.add_argument("--users", type=int, default=1_000_000)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--full-epoch", action="store_true")
    parser.add_argument("--steps-only", action="store_true", help="catalogue: time the training steps only "
                        "(results/scale_catalogue_steps.json), no epoch, validation or recommendation")
    parser.add_argument("--table", action="store_true")
    args = parser.parse_args()
    if args.table:
        print(table())
        return 0
    if args.what == "worker":
        worker(*args.args, steps=args.steps, full_epoch=args.full_epoch, steps_only=args.steps_only)
        return 0
    RESULTS.mkdir(exist_ok=True)
    if args.what == "ddp":
        result = bench_ddp(args.epochs)
        (RESULTS / "scale_ddp.json").write_text(json.dumps(result, indent=1) + "\n")
    elif args.what == "catalogue":
        result = bench_catalogue(args.items, args.users, args.steps, full_epoch_items=max(args.items),
                                 steps_only=args.steps_only)
        name = "scale_catalogue_steps.json" if args.steps_only else "scale_catalogue.json"
        (RESULTS / name).write_text(json.dumps(result, indent=1) + "\n")
    else:
        parser.error("say what to run: ddp or catalogue (or --table)")
    print(table())
    return 0


if __name__ == "__main__":
    sys.exit(main())
