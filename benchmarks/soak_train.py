"""Crash soak: `seqrec train` and `seqrec data prepare` killed with SIGKILL at random moments, then resumed.

    SEQREC_DATA=../shared/datasets python benchmarks/soak_train.py [--kills 50] [--prepare-kills 20] [--seed 0]

Training: a small SASRec run on the demo data (`soak` config below, one thread) runs once uninterrupted for
the reference, then again and again in a fresh process, each time killed after a random delay (uniform over
the reference run's wall time, so kills land in start-up, data loading, training steps, validation,
checkpoint writes, the log append and the final results) and resumed with `--resume` (or started again
when the kill came before the run wrote its config). After every kill each file of the run directory must
load (config, every JSONL record but a torn last line, every checkpoint, the JSON files, curves.png whole),
and every restart must either finish or be killed by us: an error exit fails the soak. A run that finishes
must give exactly the reference's validation and test metrics (one thread: the arithmetic is the same);
then the next run starts in a new directory, until `--kills` kills have been made.

Data preparation: `seqrec data prepare` of a synthetic CSV (`--rows`, written once) into a fresh cache
folder, killed at random moments while it reads, prepares or writes the cache entry; after each kill the same
command runs to the end and must report the reference summary (a hit on an entry written whole, or a
clean rebuild), and the entry must load.

Writes `results/soak_train.json`; the test suite runs a short version (`tests/test_soak.py`).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

from seqrec.fileio import TMP_MARK  # the temp files of atomic writes: .<name>.tmp-<pid>-<random>

HERE = Path(__file__).resolve().parent
SEQREC = [sys.executable, "-m", "seqrec"]
SOAK_CONFIG = """\
data: {path: demo}
model: {name: sasrec, dim: 16, num_blocks: 1, max_len: 20, dropout: 0.1}
train: {lr: 0.002, batch_size: 128, epochs: 5, patience: 0, seed: 11, num_threads: 1, progress: false}
eval: {ks: [10], metric: NDCG@10}
"""
PNG_END = b"IEND\xaeB`\x82"


def check_run_dir(run: Path) -> list[str]:
    """Problems with the files of a run directory (empty: every file loads)."""
    from seqrec.config import load_config
    from seqrec.train.checkpoint import load_checkpoint
    from seqrec.train.runlog import EpochLog

    problems = []
    checks = {"config.yaml": lambda p: load_config(p), "log.jsonl": lambda p: EpochLog(p).records(),
              "results.json": lambda p: json.loads(p.read_text()), "data.json": lambda p: json.loads(p.read_text()),
              "curves.png": lambda p: _check_png(p)}
    for name, check in checks.items():
        path = run / name
        if path.exists():
            try:
                check(path)
            except Exception as error:  # noqa: BLE001 (any failure to load is the finding)
                problems.append(f"{path}: {type(error).__name__}: {error}")
    for path in sorted((run / "checkpoints").glob("*.pt")) if (run / "checkpoints").exists() else []:
        try:
            load_checkpoint(path)
        except Exception as error:  # noqa: BLE001
            problems.append(f"{path}: {type(error).__name__}: {error}")
    return problems


def _check_png(path: Path) -> None:
    data = path.read_bytes()
    if not (data.startswith(b"\x89PNG") and data.endswith(PNG_END)):
        raise ValueError("not a whole PNG")


def _temps(run: Path) -> int:
    return sum(1 for p in run.rglob(".*") if ".tmp" in p.name)


def train_command(config: Path, run: Path) -> list[str]:
    resume = ["--resume"] if (run / "config.yaml").exists() else []
    return [*SEQREC, "train", "-c", str(config), "--out", str(run), "--quiet", *resume]


def soak_training(work: Path, kills: int, rng: random.Random, log=print) -> dict:
    config = work / "soak.yaml"
    config.write_text(SOAK_CONFIG)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONHASHSEED": "0"}
    started = time.perf_counter()
    reference_dir = work / "reference"
    done = subprocess.run(train_command(config, reference_dir), env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"reference run failed:\n{done.stderr}")
    wall = time.perf_counter() - started
    reference = json.loads((reference_dir / "results.json").read_text())
    stats = {"kills": 0, "restarts": 0, "runs_finished": 0, "mismatches": [], "corrupt": [], "errors": [],
             "kills_with_temp_files_left": 0, "kills_by_epochs_logged": {}, "reference_wall_s": round(wall, 1)}
    run_index = 0
    run = work / f"victim-{run_index}"
    while stats["kills"] < kills:
        process = subprocess.Popen(train_command(config, run), env=env, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.PIPE, text=True)
        stats["restarts"] += 1
        try:
            process.wait(timeout=rng.uniform(0.3, wall))
        except subprocess.TimeoutExpired:
            process.send_signal(signal.SIGKILL)
            process.wait()
            stats["kills"] += 1
            epochs = len((run / "log.jsonl").read_text().splitlines()) if (run / "log.jsonl").exists() else 0
            stats["kills_by_epochs_logged"][str(epochs)] = stats["kills_by_epochs_logged"].get(str(epochs), 0) + 1
            stats["kills_with_temp_files_left"] += _temps(run) > 0
            stats["corrupt"] += check_run_dir(run)
            continue
        if process.returncode != 0:
            stats["errors"].append(f"{run}: exit {process.returncode}: {process.stderr.read()[-2000:]}")
            break
        stats["runs_finished"] += 1
        results = json.loads((run / "results.json").read_text())
        for split in ("valid", "test"):
            for key, value in reference[split].items():
                if abs(results[split][key] - value) > 1e-9:
                    stats["mismatches"].append(f"{run.name} {split} {key}: {results[split][key]} != {value}")
        log(f"  {run.name} finished after {stats['kills']} kills so far, metrics "
            f"{'equal' if not stats['mismatches'] else 'DIFFERENT'}")
        run_index += 1
        run = work / f"victim-{run_index}"
    if stats["kills"] and (run / "config.yaml").exists() and not stats["errors"]:   # finish the last run too
        done = subprocess.run(train_command(config, run), env=env, capture_output=True, text=True)
        if done.returncode != 0:
            stats["errors"].append(f"{run}: exit {done.returncode}: {done.stderr[-2000:]}")
        else:
            stats["runs_finished"] += 1
            results = json.loads((run / "results.json").read_text())
            stats["mismatches"] += [f"{run.name} {s} {k}" for s in ("valid", "test")
                                    for k, v in reference[s].items() if abs(results[s][k] - v) > 1e-9]
    return stats


def soak_writes(work: Path, kills: int, rng: random.Random, log=print, timeout: float = 600) -> dict:
    """Kills aimed at file writes: poll the run directory every ~0.5 ms and SIGKILL the moment the n-th temp file
    of an atomic write (config, checkpoints, results, curves; n drawn at random per start) appears; resume;
    every file must load and a finished run must give the reference metrics (`soak_training` writes the
    reference first)."""
    config = work / "soak.yaml"
    reference = json.loads((work / "reference" / "results.json").read_text())
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONHASHSEED": "0"}
    stats = {"kills_inside_a_write": 0, "attempts": 0, "written_files_hit": {}, "corrupt": [], "mismatches": [],
             "errors": []}
    run = work / "writes"
    deadline = time.monotonic() + timeout
    while stats["kills_inside_a_write"] < kills and time.monotonic() < deadline:
        process = subprocess.Popen(train_command(config, run), env=env, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.PIPE, text=True)
        stats["attempts"] += 1
        hit, seen, wanted = None, set(), rng.randrange(1, 16)
        while process.poll() is None and hit is None:
            for folder in (run, run / "checkpoints"):
                try:
                    seen.update(e.name for e in os.scandir(folder) if TMP_MARK in e.name)
                except FileNotFoundError:
                    continue
            if len(seen) >= wanted:
                process.send_signal(signal.SIGKILL)
                hit = True
            time.sleep(0.0005)
        process.wait()
        if hit and process.returncode == -signal.SIGKILL and _temps(run):      # killed while a temp file was open
            stats["kills_inside_a_write"] += 1
            for temp in run.rglob(f".*{TMP_MARK}*"):                     # the writes the kill interrupted
                target = temp.name[1:].split(TMP_MARK)[0]
                stats["written_files_hit"][target] = stats["written_files_hit"].get(target, 0) + 1
            stats["corrupt"] += check_run_dir(run)
            continue
        if process.returncode != 0:
            stats["errors"].append(f"exit {process.returncode}: {process.stderr.read()[-2000:]}")
            break
        results = json.loads((run / "results.json").read_text())      # finished: compare, start a new run
        stats["mismatches"] += [f"{s} {k}" for s in ("valid", "test") for k, v in reference[s].items()
                                if abs(results[s][k] - v) > 1e-9]
        run = work / f"writes-{stats['attempts']}"
    log(f"  writes: {stats['kills_inside_a_write']} kills inside a write over {stats['attempts']} starts: "
        f"{stats['written_files_hit']}")
    return stats


def soak_prepare(work: Path, kills: int, rows: int, rng: random.Random, log=print) -> dict:
    from seqrec.data.synthetic import write_csv_log

    source = work / "log.csv"
    write_csv_log(source, num_rows=rows, num_users=max(rows // 40, 1), num_items=max(rows // 200, 10))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}

    def prepare(cache: Path) -> subprocess.CompletedProcess:
        return subprocess.run([*SEQREC, "data", "prepare", str(source), "--cache-dir", str(cache), "--json"],
                              env=env, capture_output=True, text=True)

    started = time.perf_counter()
    done = prepare(work / "reference-cache")
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"reference prepare failed:\n{done.stderr}")
    keep = ("users", "items", "interactions", "split")
    reference = {k: v for k, v in json.loads(done.stdout).items() if k in keep}
    stats = {"kills": 0, "mismatches": [], "errors": [], "hits_after_kill": 0, "rebuilds_after_kill": 0,
             "reference_wall_s": round(wall, 1), "rows": rows}
    cache = work / "cache"
    while stats["kills"] < kills:
        process = subprocess.Popen([*SEQREC, "data", "prepare", str(source), "--cache-dir", str(cache)], env=env,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            process.wait(timeout=rng.uniform(0.2, wall))
            continue                                                   # finished before the kill: try again
        except subprocess.TimeoutExpired:
            process.send_signal(signal.SIGKILL)
            process.wait()
            stats["kills"] += 1
        done = prepare(cache)
        if done.returncode != 0:
            stats["errors"].append(done.stderr[-2000:])
            break
        summary = json.loads(done.stdout)
        stats["hits_after_kill" if summary["cache_hit"] else "rebuilds_after_kill"] += 1
        if {k: v for k, v in summary.items() if k in keep} != reference:
            stats["mismatches"].append(summary)
        for entry in cache.glob("*.json"):                            # start the next round with an empty cache
            entry.unlink()
        for entry in cache.glob("*.npz"):
            entry.unlink()
    log(f"  prepare: {stats['kills']} kills, {stats['hits_after_kill']} hits and {stats['rebuilds_after_kill']} "
        "rebuilds after them")
    return stats


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=50, help="kills of training runs")
    parser.add_argument("--write-kills", type=int, default=20, help="kills inside an atomic file write")
    parser.add_argument("--prepare-kills", type=int, default=20, help="kills of `seqrec data prepare`")
    parser.add_argument("--rows", type=int, default=2_000_000, help="rows of the CSV that data prepare reads")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--result", default=str(HERE / "results" / "soak_train.json"))
    args = parser.parse_args()
    rng = random.Random(args.seed)
    load_at_start = os.getloadavg()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="seqrec-soak-") as work:
        training = soak_training(Path(work), args.kills, rng)
        print(f"training: {training['kills']} kills over {training['restarts']} starts, {training['runs_finished']} "
              f"runs finished, {len(training['corrupt'])} corrupt files, {len(training['mismatches'])} mismatches, "
              f"{len(training['errors'])} errors")
        writes = soak_writes(Path(work), args.write_kills, rng)
        print(f"writes: {writes['kills_inside_a_write']} kills inside a write, {len(writes['corrupt'])} corrupt "
              f"files, {len(writes['mismatches'])} mismatches, {len(writes['errors'])} errors")
        preparing = soak_prepare(Path(work), args.prepare_kills, args.rows, rng)
    result = {"date": date.today().isoformat(), "seed": args.seed, "training": training, "writes": writes,
              "prepare": preparing,
              "wall_s": round(time.perf_counter() - started, 1),
              "loadavg_1_5_15_at_start": [round(x, 2) for x in load_at_start],
              "loadavg_1_5_15_at_end": [round(x, 2) for x in os.getloadavg()]}
    Path(args.result).write_text(json.dumps(result, indent=1) + "\n")
    ok = (not any(training[k] or writes[k] for k in ("corrupt", "mismatches", "errors"))
          and not any(preparing[k] for k in ("mismatches", "errors")))
    print(f"{'PASS' if ok else 'FAIL'}; wrote {args.result}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
