"""Prepare here, before a GPU loan, what `benchmarks/gpu_rows.py` needs there, and print the call that runs it.

The device has no `../shared`, no package registry, and of seqrec's dependencies it lacks pydantic (and polars,
which only a cold data preparation needs). So this writes, into folders git ignores:

- `runs/gpu-carry/data/...`: the rows' data files, at their paths under $SEQREC_DATA;
- `runs/gpu-carry/cache/`: their prepared entries, which the device finds by content (no polars needed there);
- `runs/gpu-carry/loans/`: with `--loans DIR`, the `<row>.run.tar.gz` files a previous loan returned (its
  files_at), which the printed command resumes;
- `.whl/`: wheels of pydantic and what it needs (typing-extensions too: pydantic needs a recent one), for the
  device's Python 3.12 (`--no-wheels` skips them);

and prints the device command and its carry list (the working tree travels too; 64 MiB in all).

    SEQREC_DATA=../shared/datasets python benchmarks/gpu_prepare.py --rows hstu_large_mol_noval [--loans DIR]
"""

from __future__ import annotations

import argparse
import importlib.metadata
import os
import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
from gpu_rows import PACKED, ROWS  # noqa: E402

# on the device's image but pydantic and what it needs (KINDS.md's package list); pinned to the versions here
WHEELS = ["pydantic", "pydantic-core", "annotated-types", "typing-inspection", "typing-extensions"]
PIP_PLATFORMS = ["manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64",
                 "manylinux1_x86_64"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", default="hstu_large_noval,bert4rec", help="the rows the loan will train")
    parser.add_argument("--carry", default=str(ROOT / "runs" / "gpu-carry"), help="folder that travels to the device")
    parser.add_argument("--loans", default=None, metavar="DIR",
                        help=f"a previous loan's returned files: its <row>{PACKED} files are resumed")
    parser.add_argument("--wheels", default=str(ROOT / ".whl"), help="folder for the wheels")
    parser.add_argument("--no-wheels", action="store_true", help="skip the wheels (they need the package registry)")
    parser.add_argument("--minutes", type=float, default=7.0, help="training minutes in the printed command")
    args = parser.parse_args()
    rows = [row.strip() for row in args.rows.split(",") if row.strip()]
    unknown = [row for row in rows if row not in ROWS]
    if unknown:
        parser.error(f"unknown row(s) {', '.join(unknown)}; known: {', '.join(ROWS)}")
    if not os.environ.get("SEQREC_DATA"):
        parser.error("set SEQREC_DATA to the folder holding the datasets (e.g. ../shared/datasets)")
    carry, data_root = Path(args.carry).resolve(), Path(os.environ["SEQREC_DATA"]).resolve()
    os.environ["SEQREC_CACHE"] = str(carry / "cache")                # before seqrec reads it

    from seqrec.config import load_config
    from seqrec.runs import load_data

    for row in rows:
        config_file, overrides = ROWS[row]
        config = load_config(ROOT / "configs" / config_file, overrides)
        source = Path(config.data.path).resolve()
        if not source.is_relative_to(data_root):
            raise SystemExit(f"{row}: its data {source} is not under SEQREC_DATA ({data_root})")
        target = carry / "data" / source.relative_to(data_root)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
        info = load_data(config).info                               # writes the prepared entry into the carry
        print(f"{row}: {target.relative_to(ROOT) if target.is_relative_to(ROOT) else target}, prepared entry "
              f"{info['fingerprint']}", flush=True)
    if args.loans:
        loans = carry / "loans"
        shutil.rmtree(loans, ignore_errors=True)
        loans.mkdir(parents=True)
        for path in sorted(Path(args.loans).glob(f"*{PACKED}*")):
            shutil.copyfile(path, loans / path.name)
            print(f"resumes {path.name}", flush=True)
    if not args.no_wheels:
        download_wheels(Path(args.wheels))

    size = sum(p.stat().st_size for folder in (carry, Path(args.wheels)) if folder.exists()
               for p in folder.rglob("*") if p.is_file())
    rel, wheels = os.path.relpath(carry, ROOT), os.path.relpath(Path(args.wheels).resolve(), ROOT)
    install = ("python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "
               f"/tmp/site {wheels}/*.whl || exit; ") if not args.no_wheels else ""
    command = (f"{install}"
               f"export PYTHONPATH=/tmp/site:src SEQREC_DATA=$PWD/{rel}/data SEQREC_CACHE=$PWD/{rel}/cache "
               "PYTHONUNBUFFERED=1; set -o pipefail; "
               f"python3 benchmarks/gpu_rows.py --out $OUT --rows {','.join(rows)} --minutes {args.minutes:g}"
               f"{f' --resume-from {rel}/loans' if args.loans else ''} 2>&1 | tee $OUT/log.txt")
    print(f"\ncarried: {size / 2**20:.1f} MiB besides the working tree (64 MiB in all)")
    print(f"device command: {command}")
    print(f"carry: {[wheels, rel] if not args.no_wheels else [rel]}")
    return 0


def download_wheels(folder: Path) -> None:
    """The `WHEELS`, at the versions installed here, for CPython 3.12 on x86-64 Linux (the device's Python)."""
    folder.mkdir(parents=True, exist_ok=True)
    pins = [f"{name}=={importlib.metadata.version(name)}" for name in WHEELS]
    platforms = [item for platform in PIP_PLATFORMS for item in ("--platform", platform)]
    subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
                    "--python-version", "3.12", "--implementation", "cp", *platforms, "-d", str(folder), *pins],
                   check=True)
    print(f"wheels: {', '.join(sorted(p.name for p in folder.glob('*.whl')))}", flush=True)


if __name__ == "__main__":
    sys.exit(main())
