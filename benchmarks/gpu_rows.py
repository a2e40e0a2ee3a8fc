"""The reproduction rows that need the most epochs, on a CUDA device within a device-time budget (issue 21).

A lent GPU comes with minutes, not hours (15 minutes a session, start-up included), so this script is prepared and
checked on CPU first (`--smoke`), then run once on the device. It trains the chosen rows one after another with
`bench_ml1m.py` (one process per row), on `cuda`, each with its share of the budget as `train.max_minutes`, and
writes `<out>/results/ml1m_<row>_cuda.json` (the device's name is in `machine.device`) and the run directories
under `<out>/runs/`.

    SEQREC_DATA=../shared/datasets python benchmarks/gpu_rows.py --out "$OUT" --minutes 9 \\
        [--rows hstu_large_noval,bert4rec] [--precision bf16]
    SEQREC_DATA=../shared/datasets python benchmarks/gpu_rows.py --out /tmp/gpu-smoke --smoke   # on CPU

Rows: `hstu_large`, `hstu_large_noval` (the HSTU paper's own protocol: no validation item, 101 epochs, last
epoch tested, only the 200 items the model reads removed from the ranking), `hstu_large_mol` (the RAILS
reference's MoL settings), `hstu_large_mol_noval` (and its protocol), `bert4rec`, `hstu_noval`,
`sasrec_sampled_noval`. Copy the results files into `benchmarks/results/` and run
`python benchmarks/tables.py` to put them in the README's tables.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
# the HSTU paper's protocol: no validation item, 101 epochs, the last tested, only the model's window unranked
NOVAL = ["split.validation=none", "train.epochs=101", "eval.report_test=true", "eval.exclude_history=window"]
ROWS: dict[str, tuple[str, list[str]]] = {
    "hstu_large": ("ml1m_hstu_large.yaml", []),
    "hstu_large_noval": ("ml1m_hstu_large.yaml", NOVAL),
    "hstu_large_mol": ("ml1m_hstu_large_mol.yaml", []),
    "hstu_large_mol_noval": ("ml1m_hstu_large_mol.yaml", NOVAL),   # the RAILS reference's protocol too
    "bert4rec": ("ml1m_bert4rec.yaml", []),
    "hstu_noval": ("ml1m_hstu.yaml", NOVAL),
    "sasrec_sampled_noval": ("ml1m_sasrec_sampled.yaml", NOVAL),
}
SMOKE = ["train.epochs=1", "model.max_len=20", "train.num_threads=1"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="folder for results/ and runs/ (on the device: $OUT)")
    parser.add_argument("--rows", default="hstu_large_noval,bert4rec",
                        help=f"comma-separated, in order; known: {', '.join(ROWS)}")
    parser.add_argument("--minutes", type=float, default=9.0, help="training minutes for all rows together")
    parser.add_argument("--precision", default="bf16", choices=["fp32", "bf16"])
    parser.add_argument("--smoke", action="store_true", help="on CPU: one short epoch per row, to check the script")
    args = parser.parse_args()
    rows = [row.strip() for row in args.rows.split(",") if row.strip()]
    unknown = [row for row in rows if row not in ROWS]
    if unknown:
        parser.error(f"unknown row(s) {', '.join(unknown)}; known: {', '.join(ROWS)}")
    device = "cpu" if args.smoke else "cuda"
    if not args.smoke:
        import torch

        if not torch.cuda.is_available():
            print("no CUDA device here; use --smoke to check the script on CPU", file=sys.stderr)
            return 2
        print(f"device: {torch.cuda.get_device_name(0)}", flush=True)
    out = Path(args.out)
    (out / "results").mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + args.minutes * 60
    failed = []
    for i, row in enumerate(rows):
        left = (deadline - time.monotonic()) / 60
        share = max(0.5, left / (len(rows) - i))                   # what is left, split over the rows to come
        config, overrides = ROWS[row]
        # whole batches on a GPU: micro-batches save padded work that a GPU does in parallel anyway, and would
        # multiply its kernel launches (not measured there)
        settings = [*overrides, f"train.device={device}", f"train.precision={args.precision}", "train.micro_batches=1",
                    f"train.max_minutes={share:.2f}", *(SMOKE if args.smoke else [])]
        command = [sys.executable, str(HERE / "bench_ml1m.py"), "--config", str(HERE.parent / "configs" / config),
                   "--out", str(out / "runs" / row), "--result", str(out / "results" / f"ml1m_{row}_cuda.json"),
                   *(item for setting in settings for item in ("--set", setting))]
        print(f"[{row}] {share:.1f} min: {' '.join(command[1:])}", flush=True)
        started = time.monotonic()
        code = subprocess.call(command, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        print(f"[{row}] exit {code} after {time.monotonic() - started:.0f} s", flush=True)
        if code:
            failed.append(row)
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
