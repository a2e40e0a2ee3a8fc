"""The `seqrec` command line: summaries, JSON, errors without tracebacks, help."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from seqrec.cli import main


def _run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_prepare_json_summary_on_a_written_file(tmp_path, capsys):
    path = tmp_path / "log.csv"
    path.write_text("uid,sku,ts\n" + "".join(f"{u},{i},{u * 10 + i}\n" for u in range(5) for i in range(4)))
    code, out, err = _run(capsys, "data", "prepare", str(path), "--columns", "user=uid,item=sku,time=ts", "--json")
    assert code == 0, err
    summary = json.loads(out)
    assert (summary["users"], summary["items"], summary["interactions"]) == (5, 4, 20)
    assert summary["split"]["protocol"] == "leave_one_out" and summary["split"]["test_targets"] == 5
    assert summary["cache_hit"] is False
    code, out, _ = _run(capsys, "data", "prepare", str(path), "--columns", "user=uid,item=sku,time=ts", "--json")
    assert json.loads(out)["cache_hit"] is True


def test_prepare_table_and_temporal_split(tmp_path, capsys):
    path = tmp_path / "log.tsv"
    path.write_text("".join(f"{u}\t{i}\t5\t{1_600_000_000 + 3600 * (u + i)}\n" for u in range(6) for i in range(5)))
    code, out, err = _run(capsys, "data", "prepare", str(path), "--columns", "user=0,item=1,rating=2,time=3",
                          "--split", "temporal")
    assert code == 0, err
    assert "interactions" in out and "30" in out and "temporal" in out and "UTC" in out


def test_k_core_and_dedupe_options(tmp_path, capsys):
    path = tmp_path / "log.csv"
    rows = [(1, 1), (1, 1), (1, 2), (1, 3), (2, 1), (2, 2), (3, 9)]
    path.write_text("user,item\n" + "".join(f"{u},{i}\n" for u, i in rows))
    code, out, err = _run(capsys, "data", "prepare", str(path), "--dedupe", "--min-user-count", "2",
                          "--min-item-count", "2", "--split", "none", "--json")
    assert code == 0, err
    summary = json.loads(out)
    assert summary["duplicates_dropped"] == 1
    assert (summary["users"], summary["items"], summary["interactions"]) == (2, 2, 4)


def test_bad_file_is_one_message_and_exit_1(tmp_path, capsys):
    path = tmp_path / "bad.csv"
    path.write_text("user,item,time\n1,2,3\n1,4,soon\n")
    code, out, err = _run(capsys, "data", "prepare", str(path))
    assert code == 1
    assert err.startswith("error: ") and "bad.csv" in err and "soon" in err and ":3" in err
    assert "Traceback" not in err


def test_usage_error_exit_2(capsys):
    code, _, err = _run(capsys, "data", "prepare", "x.csv", "--format", "xlsx")
    assert code == 2 and "xlsx" in err


def test_help_explains_every_option(capsys):
    code, out, _ = _run(capsys, "data", "prepare", "--help")
    assert code == 0
    for option in ("--format", "--columns", "--separator", "--header", "--min-user-count", "--min-item-count",
                   "--dedupe", "--min-rating", "--split", "--json", "--cache-dir", "--no-cache"):
        assert option in out


def test_data_list(capsys):
    code, out, _ = _run(capsys, "data", "list", "--json")
    names = {d["name"] for d in json.loads(out)}
    assert code == 0 and {"ml-1m", "ml-20m", "diginetica"} <= names


def test_console_script_in_a_subprocess_has_no_traceback(tmp_path):
    env = {**os.environ, "SEQREC_CACHE": str(tmp_path / "cache")}
    result = subprocess.run([sys.executable, "-m", "seqrec.cli", "data", "prepare", str(tmp_path / "missing.csv")],
                            capture_output=True, text=True, env=env, check=False)
    assert result.returncode == 1
    assert "no such file" in result.stderr and "Traceback" not in result.stderr


def test_quickstart_runs_on_demo_data(capsys):
    code, out, err = _run(capsys, "quickstart")
    assert code == 0, err
    assert "users" in out and "leave_one_out" in out


@pytest.mark.realdata
def test_prepare_real_ml1m_json(dataset, capsys):
    code, out, err = _run(capsys, "data", "prepare", str(dataset("ml-1m-sasrec/ml-1m.txt")), "--json")
    assert code == 0, err
    summary = json.loads(out)
    assert (summary["users"], summary["items"], summary["interactions"]) == (6040, 3416, 999_611)
    assert summary["split"]["test_targets"] == 6040
