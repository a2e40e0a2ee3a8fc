"""benchmarks/gpu_rows.py, the script a lent GPU session runs, works before it gets there: --smoke on CPU trains
one short epoch of a row through bench_ml1m.py and writes its results file."""

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_smoke_run_writes_a_results_file(dataset, tmp_path):
    dataset("ml-1m-sasrec/ml-1m.txt")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_rows.py"), "--out", str(tmp_path),
                           "--smoke", "--rows", "hstu_noval", "--minutes", "2"],
                          capture_output=True, text=True, timeout=300, env=env, cwd=ROOT)
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads((tmp_path / "results" / "ml1m_hstu_noval_cuda.json").read_text())
    assert result["machine"]["device"] == "cpu" and result["valid"] == {}
    assert result["config"]["split"]["validation"] == "none" and len(result["test_ndcg10_by_epoch"]) == 1
    assert result["config"]["eval"]["exclude_history"] == "window" and result["test_window"] is None
    assert abs(result["test"]["NDCG@10"] - result["test_ndcg10_by_epoch"][0]) < 1e-4   # the last epoch is tested


def test_unknown_rows_are_named(tmp_path):
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_rows.py"), "--out", str(tmp_path),
                           "--smoke", "--rows", "hstu,nope"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "unknown row(s) hstu, nope" in done.stderr
