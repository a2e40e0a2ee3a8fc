"""The reproduction rows that need the most epochs, on a CUDA device within a device-time budget (issue 21).

A lent GPU comes with minutes, not hours (15 minutes a session, start-up included), so this script is prepared and
checked on CPU first (`--smoke`), then run on the device. It trains the chosen rows one after another with
`bench_ml1m.py` (one process per row), on `cuda`, each with its share of the budget as `train.max_minutes`, and
writes `<out>/results/ml1m_<row>_cuda.json` (the device's name is in `machine.device`) and each row's run
directory packed as `<out>/<row>.run.tar.gz` (in numbered parts `.1`, `.2`, ... when over `--part-mib`; the run
directories themselves live under `--runs`, outside `<out>`: a device returns at most 8 files from its $OUT, each
at most 16 MiB, none more than two folders down).

    SEQREC_DATA=../shared/datasets python benchmarks/gpu_rows.py --out "$OUT" --minutes 9 \\
        [--rows hstu_large_noval,bert4rec] [--precision bf16]
    SEQREC_DATA=../shared/datasets python benchmarks/gpu_rows.py --out /tmp/gpu-smoke --smoke   # on CPU

A row longer than one loan continues on the next: `--resume-from DIR` takes the `<row>.run.tar.gz` files a
previous loan returned, and each row found there continues from its last finished epoch, bit for bit as `--resume`
does, with this loan's minutes added to the time it has trained. `benchmarks/gpu_prepare.py` puts them, the rows'
data (the device has no `../shared`; a resumed run may read its data from another path when the content is the
same) and the wheels the device lacks into folders that travel, and prints the device command.

Rows: `hstu_large`, `hstu_large_noval` (the HSTU paper's own protocol: no validation item, 101 epochs, last
epoch tested, only the 200 items the model reads removed from the ranking), `hstu_large_mol` (the RAILS
reference's MoL settings), `hstu_large_mol_noval` (and its protocol), `bert4rec`, `hstu_noval`,
`sasrec_sampled_noval`. Copy the results files of finished rows into `benchmarks/results/` and run
`python benchmarks/tables.py` to put them in the README's tables.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
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
PACKED = ".run.tar.gz"       # <row>.run.tar.gz: one row's run directory, what a loan hands to the next
RETURN_FILES = 8             # a device returns at most 8 files from $OUT, each at most 16 MiB


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True,
                        help=f"folder for results/ and the <row>{PACKED} files (on the device: $OUT)")
    parser.add_argument("--rows", default="hstu_large_noval,bert4rec",
                        help=f"comma-separated, in order; known: {', '.join(ROWS)}")
    parser.add_argument("--minutes", type=float, default=9.0, help="training minutes for all rows together")
    parser.add_argument("--precision", default="bf16", choices=["fp32", "bf16"])
    parser.add_argument("--smoke", action="store_true", help="on CPU: one short epoch per row, to check the script")
    parser.add_argument("--runs", default=str(HERE.parent / "runs" / "gpu"),
                        help="folder for the rows' run directories (default: runs/gpu in the repository)")
    parser.add_argument("--resume-from", default=None, metavar="DIR",
                        help=f"folder with a previous loan's <row>{PACKED} files: those rows continue from them")
    parser.add_argument("--epochs", type=int, default=None, help="train.epochs for every row (default: the row's)")
    parser.add_argument("--part-mib", type=float, default=15.5,
                        help=f"a packed run larger than this is written in parts <row>{PACKED}.1, .2, ... (a device "
                             "returns no file over 16 MiB; HSTU-large + MoL's is ~14 MiB)")
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
    out, runs = Path(args.out), Path(args.runs)
    (out / "results").mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + args.minutes * 60
    failed = []
    for i, row in enumerate(rows):
        left = (deadline - time.monotonic()) / 60
        share = max(0.5, left / (len(rows) - i))                   # what is left, split over the rows to come
        config, overrides = ROWS[row]
        run_dir = runs / row
        trained = unpack(Path(args.resume_from), row, run_dir) if args.resume_from else None
        if trained is None and run_dir.exists():
            shutil.rmtree(run_dir)                                 # a fresh row: no leftovers of an earlier call
        # whole batches on a GPU: micro-batches save padded work that a GPU does in parallel anyway, and would
        # multiply its kernel launches (not measured there)
        budget = share + (trained or 0.0)                          # train.max_minutes counts all loans' minutes
        settings = [*overrides, f"train.device={device}", f"train.precision={args.precision}", "train.micro_batches=1",
                    f"train.max_minutes={budget:.2f}", *(SMOKE if args.smoke else []),
                    *([f"train.epochs={args.epochs}"] if args.epochs else [])]
        command = [sys.executable, str(HERE / "bench_ml1m.py"), "--config", str(HERE.parent / "configs" / config),
                   "--out", str(run_dir), "--result", str(out / "results" / f"ml1m_{row}_cuda.json"),
                   *(["--resume"] if trained is not None else []),
                   *(item for setting in settings for item in ("--set", setting))]
        resumed = f" (resumed after {trained:.1f} min)" if trained is not None else ""
        print(f"[{row}] {share:.1f} min{resumed}: {' '.join(command[1:])}", flush=True)
        started = time.monotonic()
        code = subprocess.call(command, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        print(f"[{row}] exit {code} after {time.monotonic() - started:.0f} s", flush=True)
        if run_dir.exists():
            pack(run_dir, out, int(args.part_mib * 2**20))
        if code:
            failed.append(row)
    returned = [path for path in out.rglob("*") if path.is_file()]
    if len(returned) > RETURN_FILES:
        print(f"warning: {out} holds {len(returned)} files; a device returns only {RETURN_FILES}: run fewer rows "
              f"or raise --part-mib", file=sys.stderr)
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


def pack(run_dir: Path, out: Path, part_bytes: int) -> list[Path]:
    """Write `run_dir` to `out` as `<name>.run.tar.gz` (the directory's name inside), in numbered parts of at most
    `part_bytes` when larger; returns the files written."""
    archive = out / f"{run_dir.name}{PACKED}"
    for old in [archive, *_parts(out, run_dir.name)]:
        old.unlink(missing_ok=True)
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(run_dir, arcname=run_dir.name)
    size = archive.stat().st_size
    if size <= part_bytes:
        return [archive]
    blob = archive.read_bytes()
    archive.unlink()
    parts = []
    for number, start in enumerate(range(0, size, part_bytes), 1):
        parts.append(out / f"{archive.name}.{number}")
        parts[-1].write_bytes(blob[start:start + part_bytes])
    print(f"{run_dir.name}: packed run {size / 2**20:.1f} MiB, written in {len(parts)} parts", flush=True)
    return parts


def unpack(folder: Path, row: str, run_dir: Path) -> float | None:
    """Replace `run_dir` with the run `row` packed in `folder` (whole or in parts); returns the minutes it has
    trained (the elapsed clock of its last logged epoch), or None when `folder` holds no such run (a fresh row)."""
    archive, parts = folder / f"{row}{PACKED}", _parts(folder, row)
    if not archive.exists() and not parts:
        return None
    blob = archive.read_bytes() if archive.exists() else b"".join(part.read_bytes() for part in parts)
    if run_dir.exists():
        shutil.rmtree(run_dir)
    staging = run_dir.parent / f".unpacking-{row}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    with tarfile.open(fileobj=io.BytesIO(blob), mode="r:gz") as tar:
        names = {member.name.split("/")[0] for member in tar.getmembers()}
        if names != {row}:
            raise SystemExit(f"{archive} holds {', '.join(sorted(names))}, not the run directory {row}")
        tar.extractall(staging, filter="data")
    (staging / row).rename(run_dir)
    staging.rmdir()
    log = run_dir / "log.jsonl"
    records = [json.loads(line) for line in log.read_text().splitlines() if line.strip()] if log.exists() else []
    return max((r.get("elapsed", 0.0) for r in records), default=0.0) / 60


def _parts(folder: Path, row: str) -> list[Path]:
    """`<row>.run.tar.gz.1`, `.2`, ... in `folder`, in order."""
    found = [p for p in folder.glob(f"{row}{PACKED}.*") if p.suffix[1:].isdigit()]
    return sorted(found, key=lambda p: int(p.suffix[1:]))


if __name__ == "__main__":
    sys.exit(main())
