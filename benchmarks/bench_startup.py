"""CLI start-up: wall time of `seqrec --help` and of a cached `seqrec data prepare` of ML-1M, fresh processes.

    SEQREC_DATA=../shared/datasets python benchmarks/bench_startup.py [--runs 7]

Each command runs `--runs` times in a new process (the first data prepare fills the cache and is not counted);
the median and the spread are reported, with the load average (a figure counts only on an idle machine).
Target (issue 22): at most 0.5 s each. Writes `results/startup.json`.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

HERE = Path(__file__).resolve().parent
SEQREC = str(Path(sys.executable).with_name("seqrec"))


def timed(argv: list[str], runs: int) -> list[float]:
    seconds = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run(argv, check=True, capture_output=True)
        seconds.append(time.perf_counter() - started)
    return seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--result", default=str(HERE / "results" / "startup.json"))
    args = parser.parse_args()
    data = Path(os.environ.get("SEQREC_DATA", HERE.parent.parent / "shared" / "datasets"))
    ml1m = str(data / "ml-1m-sasrec" / "ml-1m.txt")
    commands = {"seqrec --help": [SEQREC, "--help"],
                "seqrec data prepare ML-1M (cached)": [SEQREC, "data", "prepare", ml1m, "--format", "pairs"]}
    subprocess.run(commands["seqrec data prepare ML-1M (cached)"], check=True, capture_output=True)  # fill cache
    load_at_start = os.getloadavg()
    rows = {}
    for name, argv in commands.items():
        seconds = timed(argv, args.runs)
        rows[name] = {"median_s": round(statistics.median(seconds), 3), "min_s": round(min(seconds), 3),
                      "max_s": round(max(seconds), 3)}
        print(f"{name}: median {rows[name]['median_s']} s (min {rows[name]['min_s']}, max {rows[name]['max_s']}, "
              f"{args.runs} runs)")
    result = {"date": date.today().isoformat(), "runs": args.runs, "commands": rows, "target_s": 0.5,
              "loadavg_1_5_15_at_start": [round(x, 2) for x in load_at_start],
              "loadavg_1_5_15_at_end": [round(x, 2) for x in os.getloadavg()]}
    Path(args.result).write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {args.result}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
