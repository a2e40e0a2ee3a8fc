"""benchmarks/README.md's generated tables match the results files (regenerate: python benchmarks/tables.py)."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "benchmarks" / "tables.py"), *args], capture_output=True,
                          text=True, timeout=60)


def test_generated_tables_are_current():
    done = run("--check")
    assert done.returncode == 0, done.stdout + done.stderr


def test_check_notices_a_stale_table(tmp_path):
    text = (ROOT / "benchmarks" / "README.md").read_text()
    stale = tmp_path / "README.md"
    marker = "<!-- generated: reproduction -->\n"
    assert marker in text
    stale.write_text(text.replace(marker, marker + "| an edited row |\n", 1))
    done = run("--check", "--readme", str(stale))
    assert done.returncode == 1 and "reproduction" in done.stdout
    assert run("--readme", str(stale)).returncode == 0                         # regenerating fixes it
    assert stale.read_text() == text


def test_load_column_says_what_ran_beside_a_run():
    import importlib.util

    spec = importlib.util.spec_from_file_location("tables", ROOT / "benchmarks" / "tables.py")
    assert spec is not None and spec.loader is not None
    tables = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tables)
    load = {"threads": 2, "loadavg_1_5_15_at_start": [0.9, 1, 1], "loadavg_1_5_15_at_end": [2.04, 2, 2]}
    assert tables._load_conditions({"load": load}) == "2 thread(s), load 0.9 -> 2.0"
    assert tables._load_conditions({"load": {**load, "beside": "the test suite"}}) == \
        "2 thread(s), load 0.9 -> 2.0; beside it: the test suite"
    assert tables._load_conditions({}) == "not recorded (unclean)"
