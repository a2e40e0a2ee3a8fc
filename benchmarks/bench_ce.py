"""Fused full-softmax cross-entropy: the [c, N] and the transposed [N, c] score-block layouts, timed per batch.

`seqrec.train.losses._DotSoftmaxCE` scores a block of c rows against all N items at a time, turns the block into
the gradient in place and folds it into both gradients. It picks the layout itself: [c, N] blocks of ~2^20
scores while that keeps c >= 2D, otherwise c = 2D rows computed as `items @ part.T` ([N, c]). This script
times forward + backward of one batch under each layout, and under the automatic choice, at the shapes of the
configs that train with full softmax CE (rows per batch, embedding width D, catalogue size N), in interleaved
rounds (each round runs every layout on the same tensors, so background load hits them alike), and reports
medians and the ratio of the [c, N] layout to the chosen one.

    python benchmarks/bench_ce.py [--rounds 7] [--threads 1]

Writes `benchmarks/results/ce_layout.json`.
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

import torch

from seqrec.train.losses import _DotSoftmaxCE

HERE = Path(__file__).resolve().parent
# name: (rows per batch, D, N). Session models score one state per session prefix (LESSR's batch 512, SR-GNN's and
# GC-SAN's 100); SASRec on ML-1M scores every real position of a 128 x 200 batch, ~6,400 on average.
SHAPES = {
    "lessr, diginetica (batch 512, D 32)": (512, 32, 43097),
    "srgnn/gcsan, diginetica (batch 100, D 100)": (100, 100, 43097),
    "srgnn/gcsan, yoochoose 1/64 (batch 100, D 100)": (100, 100, 37483),
    "sasrec, ml-1m (6,400 rows, D 50)": (6400, 50, 3416),
}
LAYOUTS = {"rows [c, N]": False, "items [N, c]": True, "auto": None}


def time_once(states: torch.Tensor, table: torch.Tensor, targets: torch.Tensor, transposed: bool | None) -> float:
    states.grad, table.grad = None, None
    start = time.perf_counter()
    _DotSoftmaxCE.apply(states, table, targets, transposed).backward()
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7, help="interleaved rounds (the median is over them)")
    parser.add_argument("--repeats", type=int, default=3, help="timed batches per layout per round")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--result", default=str(HERE / "results" / "ce_layout.json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows_out = []
    for name, (rows, dim, num_items) in SHAPES.items():
        g = torch.Generator().manual_seed(0)
        states = (torch.randn(rows, dim, generator=g) * 0.3).requires_grad_()
        table = (torch.randn(num_items + 1, dim, generator=g) * 0.3).requires_grad_()
        targets = torch.randint(1, num_items + 1, (rows,), generator=g)
        losses = {lay: _DotSoftmaxCE.apply(states, table, targets, flag).item() for lay, flag in LAYOUTS.items()}
        spread = max(losses.values()) - min(losses.values())
        assert spread < 1e-4 * abs(losses["auto"]), f"{name}: the layouts disagree ({losses})"
        for flag in LAYOUTS.values():                                           # warm-up
            time_once(states, table, targets, flag)
        samples: dict[str, list[float]] = {lay: [] for lay in LAYOUTS}
        for _ in range(args.rounds):
            for lay, flag in LAYOUTS.items():
                samples[lay].append(min(time_once(states, table, targets, flag) for _ in range(args.repeats)))
        median = {lay: statistics.median(v) * 1e3 for lay, v in samples.items()}
        cached = (1 << 20) // num_items
        row = {"case": name, "rows": rows, "dim": dim, "items": num_items,
               "auto_layout": "items [N, c]" if cached < 2 * dim else "rows [c, N]",
               "ms_median": {k: round(v, 1) for k, v in median.items()},
               "ms_all": {k: [round(x * 1e3, 1) for x in v] for k, v in samples.items()},
               "rows_layout_over_auto": round(median["rows [c, N]"] / median["auto"], 2)}
        rows_out.append(row)
        print(f"{name:46s} auto={row['auto_layout']:13s} " + "  ".join(
            f"{k} {v:7.1f} ms" for k, v in row["ms_median"].items()) + f"  [c,N]/auto {row['rows_layout_over_auto']}x",
            flush=True)
    result = {"date": str(date.today()), "machine": platform.processor() or platform.machine(),
              "torch": torch.__version__, "threads": args.threads, "rounds": args.rounds,
              "repeats": args.repeats, "cases": rows_out}
    Path(args.result).write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.result}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
