"""benchmarks/gpu_rows.py, the script a lent GPU session runs, works before it gets there: --smoke on CPU trains
one short epoch of a row through bench_ml1m.py and writes its results file."""

import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_smoke_run_writes_a_results_file(dataset, tmp_path):
    data = dataset("ml-1m-sasrec/ml-1m.txt").parents[1]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "SEQREC_DATA": str(data)}
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_rows.py"), "--out", str(tmp_path / "out"),
                           "--runs", str(tmp_path / "runs"), "--smoke", "--rows", "hstu_noval", "--minutes", "2"],
                          capture_output=True, text=True, timeout=300, env=env, cwd=ROOT)
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads((tmp_path / "out" / "results" / "ml1m_hstu_noval_cuda.json").read_text())
    assert result["machine"]["device"] == "cpu" and result["valid"] == {}
    assert result["config"]["split"]["validation"] == "none" and len(result["test_ndcg10_by_epoch"]) == 1
    assert result["config"]["eval"]["exclude_history"] == "window" and result["test_window"] is None
    assert abs(result["test"]["NDCG@10"] - result["test_ndcg10_by_epoch"][0]) < 1e-4   # the last epoch is tested


def test_unknown_rows_are_named(tmp_path):
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_rows.py"), "--out", str(tmp_path),
                           "--runs", str(tmp_path / "runs"), "--smoke", "--rows", "hstu,nope"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "unknown row(s) hstu, nope" in done.stderr


def test_a_row_longer_than_one_loan_continues_on_the_next(dataset, tmp_path):
    """What one loan returns (its results file and `<row>.run.tar.gz`) lets the next loan, whose data lies at another
    path, continue the row from its last epoch: the second loan's results hold both epochs, the first unchanged."""
    source = dataset("ml-1m-sasrec/ml-1m.txt")
    copy = tmp_path / "carried-data" / "ml-1m-sasrec" / "ml-1m.txt"      # the data as carried to the second device
    copy.parent.mkdir(parents=True)
    shutil.copyfile(source, copy)

    def loan(name: str, epochs: int, data: Path, *extra: str) -> dict:
        env = {**os.environ, "OMP_NUM_THREADS": "1", "SEQREC_DATA": str(data)}
        done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_rows.py"), "--out", str(tmp_path / name),
                               "--runs", str(tmp_path / f"{name}-runs"), "--smoke", "--rows", "hstu_noval",
                               "--epochs", str(epochs), *extra],
                              capture_output=True, text=True, timeout=300, env=env, cwd=ROOT)
        assert done.returncode == 0, done.stdout + done.stderr
        return {"stdout": done.stdout,
                **json.loads((tmp_path / name / "results" / "ml1m_hstu_noval_cuda.json").read_text())}

    # the first loan's run comes back in parts (as one larger than a device returns would), the second's whole
    first = loan("loan1", 1, source.parents[1], "--part-mib", "0.25")
    parts = sorted(p.name for p in (tmp_path / "loan1").iterdir() if p.name != "results")
    assert len(parts) > 1 and parts[0] == "hstu_noval.run.tar.gz.1" and "hstu_noval.run.tar.gz" not in parts
    second = loan("loan2", 2, copy.parents[1], "--resume-from", str(tmp_path / "loan1"))
    assert sorted(p.name for p in (tmp_path / "loan2").iterdir()) == ["hstu_noval.run.tar.gz", "results"]
    assert "resumed after" in second["stdout"] and "resumed after" not in first["stdout"]
    assert first["epochs_run"] == 1 and second["epochs_run"] == 2
    assert second["test_ndcg10_by_epoch"][0] == first["test_ndcg10_by_epoch"][0]
    assert len(second["test_ndcg10_by_epoch"]) == 2 and second["config"]["data"]["path"] == str(copy)
    with tarfile.open(tmp_path / "loan2" / "hstu_noval.run.tar.gz") as tar:
        log = tar.extractfile("hstu_noval/log.jsonl").read().decode()
    assert [json.loads(line)["epoch"] for line in log.splitlines()] == [1, 2]


def test_a_prepared_carry_runs_a_loan_without_shared_data_or_a_cold_preparation(dataset, tmp_path):
    """gpu_prepare.py copies the rows' data and their prepared entries into the folder that travels (and a previous
    loan's packed runs); a loan reading only that folder finds its data prepared (no polars needed on the device)."""
    source = dataset("ml-1m-sasrec/ml-1m.txt")
    carry, earlier = tmp_path / "carry", tmp_path / "files_at"
    earlier.mkdir()
    (earlier / "hstu_noval.run.tar.gz.1").write_bytes(b"part one")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "SEQREC_DATA": str(source.parents[1])}
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_prepare.py"), "--rows", "hstu_noval",
                           "--carry", str(carry), "--loans", str(earlier), "--no-wheels"],
                          capture_output=True, text=True, timeout=300, env=env, cwd=ROOT)
    assert done.returncode == 0, done.stdout + done.stderr
    assert (carry / "data" / "ml-1m-sasrec" / "ml-1m.txt").read_bytes() == source.read_bytes()
    assert len(list((carry / "cache").glob("*.npz"))) == 1
    assert (carry / "loans" / "hstu_noval.run.tar.gz.1").read_bytes() == b"part one"
    assert "--rows hstu_noval" in done.stdout and "/loans 2>&1 | tee $OUT/log.txt" in done.stdout   # resumes them
    env = {**env, "SEQREC_DATA": str(carry / "data"), "SEQREC_CACHE": str(carry / "cache")}
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_rows.py"), "--out", str(tmp_path / "out"),
                           "--runs", str(tmp_path / "runs"), "--smoke", "--rows", "hstu_noval"],
                          capture_output=True, text=True, timeout=300, env=env, cwd=ROOT)
    assert done.returncode == 0, done.stdout + done.stderr
    info = json.loads((tmp_path / "runs" / "hstu_noval" / "data.json").read_text())["data"]
    assert info["cache_hit"] and info["source"] == str(carry / "data" / "ml-1m-sasrec" / "ml-1m.txt")
