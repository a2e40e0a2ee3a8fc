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


def load_tables():
    import importlib.util

    spec = importlib.util.spec_from_file_location("tables", ROOT / "benchmarks" / "tables.py")
    assert spec is not None and spec.loader is not None
    tables = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tables)
    return tables


def test_load_column_says_what_ran_beside_a_run():
    tables = load_tables()
    load = {"threads": 2, "loadavg_1_5_15_at_start": [0.9, 1, 1], "loadavg_1_5_15_at_end": [2.04, 2, 2]}
    assert tables._load_conditions({"load": load}) == "2 thread(s), load 0.9 -> 2.0"
    assert tables._load_conditions({"load": {**load, "beside": "the test suite"}}) == \
        "2 thread(s), load 0.9 -> 2.0; beside it: the test suite"
    assert tables._load_conditions({}) == "not recorded (unclean)"


def test_seeds_column_lists_the_runs_of_the_same_recipe():
    tables = load_tables()

    def run(seed, ndcg, window=None, **changes):
        train = {"seed": seed, "num_threads": 2, "lr": 0.001, "max_minutes": None, **changes.pop("train", {})}
        config = {"model": {"name": "sasrec", "dim": 64, **changes.pop("model", {})}, "train": train,
                  "eval": {"exclude_history": True}}
        result = {"config": config, "test": {"NDCG@10": ndcg}}
        if window is not None:
            result["test_window"] = {"NDCG@10": window}
        return result

    present = {"a.json": run(42, 0.18, 0.17), "b.json": run(43, 0.17, 0.16, train={"num_threads": 1}),
               "c.json": run(44, 0.19, 0.15, train={"max_minutes": 30.0}),
               "other_lr.json": run(45, 0.30, train={"lr": 0.01}),             # another recipe: left out
               "same_seed.json": run(42, 0.50)}                                  # a seed counts once
    assert tables._seeds(present, "a.json", "NDCG@10", False) == \
        "42: 0.1800, 43: 0.1700, 44: 0.1900; mean 0.1800 ± 0.0100"
    assert tables._seeds(present, "a.json", "NDCG@10", True) == \
        "42: 0.1700, 43: 0.1600, 44: 0.1500; mean 0.1600 ± 0.0100"
    two = {k: present[k] for k in ("a.json", "b.json")}
    assert tables._seeds(two, "a.json", "NDCG@10", False) == "42: 0.1800, 43: 0.1700; mean 0.1750"
    assert tables._seeds({"a.json": present["a.json"], "other_lr.json": present["other_lr.json"]},
                         "a.json", "NDCG@10", False) == "-"
    # a key that one run's config lacks (added to the schema later) does not split the recipe; one both have does
    older = run(46, 0.16)
    newer = run(47, 0.20, model={"mol_gating": "additive"})
    assert tables._seeds({"o": older, "n": newer}, "o", "NDCG@10", False) == "46: 0.1600, 47: 0.2000; mean 0.1800"
    other_gate = run(48, 0.1, model={"mol_gating": "glu_silu"})
    assert tables._seeds({"n": newer, "x": other_gate}, "n", "NDCG@10", False) == "-"
    assert tables._seeds({"none": {"test": {"NDCG@10": 0.1}}}, "none", "NDCG@10", False) == "-"
    # where the data files were read from is not part of the recipe (relative or absolute $SEQREC_DATA)
    here, there = run(51, 0.2), run(52, 0.3)
    for result, root in ((here, "../shared/datasets"), (there, "/work/shared/datasets")):
        result["config"]["data"] = {"path": f"{root}/s/train.txt", "test_path": f"{root}/s/test.txt"}
    assert tables._seeds({"h": here, "t": there}, "h", "NDCG@10", False) == "51: 0.2000, 52: 0.3000; mean 0.2500"
    # a row of several metrics in percent (P@20 / MRR@20)
    for result, mrr in ((here, 0.3066), (there, 0.3062)):
        result["test"]["MRR@20"] = mrr
    assert tables._seeds({"h": here, "t": there}, "h", ["NDCG@10", "MRR@20"], False, 100) == \
        "51: 20.00 / 30.66, 52: 30.00 / 30.62; mean 25.00 / 30.64"
    three = {"a": here, "b": there, "c": run(53, 0.25)}
    three["c"]["config"]["data"] = here["config"]["data"]
    assert tables._seeds(three, "a", "NDCG@10", False, 100) == "51: 20.00, 52: 30.00, 53: 25.00; mean 25.00 ± 5.00"
    # a "window" row: a run with the reference's filter and one that excluded the whole history but recorded the
    # window figure are the same recipe; without the window figure a run is left out of the row's seeds
    window_run = run(49, 0.15)
    window_run["config"]["eval"] = {"exclude_history": "window"}
    with_whole = {"w": window_run, "a": present["a.json"], "no_window": run(50, 0.90)}
    assert tables._seeds(with_whole, "w", "NDCG@10", True) == "42: 0.1700, 49: 0.1500; mean 0.1600"
    assert tables._seeds(with_whole, "w", "NDCG@10", False) == "-"
    # without validation nothing stops early: patience, never read, does not split the recipe; with it, it does
    patient, impatient = run(54, 0.18, train={"patience": 10}), run(55, 0.20, train={"patience": 0})
    for result in (patient, impatient):
        result["config"]["split"] = {"validation": "none"}
    assert tables._seeds({"p": patient, "i": impatient}, "p", "NDCG@10", False) == \
        "54: 0.1800, 55: 0.2000; mean 0.1900"
    for result in (patient, impatient):
        result["config"]["split"] = {"validation": "item"}
    assert tables._seeds({"p": patient, "i": impatient}, "p", "NDCG@10", False) == "-"


def test_a_row_without_validation_stands_for_the_mean_of_its_seeds(tmp_path):
    import json

    tables = load_tables()

    def write(name, seed, ndcg, valid):
        config = {"model": {"name": "hstu"}, "train": {"seed": seed, "num_threads": 2},
                  "eval": {"exclude_history": "window"}}
        (tmp_path / name).write_text(json.dumps({"config": config, "test": {"NDCG@10": ndcg}, "valid": valid,
                                                 "best_epoch": 101, "epochs_run": 101}))

    write("a.json", 42, 0.1591, {})
    write("b.json", 43, 0.1616, {})
    tables.RESULTS, tables.GAINS = tmp_path, []
    tables.REPRODUCTION = [("row", ["a.json", "b.json"], ["NDCG@10"], "ref", [0.1603], "window")]
    line = tables.reproduction_table().splitlines()[2]
    assert "| 0.1603 (mean of 2 seeds) |" in line and "| met (run with the reference's filter) |" in line
    assert "42: 0.1591, 43: 0.1616; mean 0.1603" in line
    # runs with validation: the row is the best run on validation, whatever the other seeds' figures
    write("a.json", 42, 0.1591, {"NDCG@10": 0.19})
    write("b.json", 43, 0.1616, {"NDCG@10": 0.18})
    line = tables.reproduction_table().splitlines()[2]
    assert "| `a.json` | 0.1591 |" in line and "short by 0.0012" in line


def test_gain_of_the_seed_means(tmp_path):
    import json

    tables = load_tables()

    def write(name, model, seed, ndcg):
        config = {"model": {"name": model}, "train": {"seed": seed}, "eval": {"exclude_history": "window"}}
        (tmp_path / name).write_text(json.dumps({"config": config, "test": {"NDCG@10": ndcg}, "valid": {}}))

    write("h42.json", "hstu", 42, 0.17)
    write("h43.json", "hstu", 43, 0.19)
    write("s42.json", "sasrec", 42, 0.16)
    tables.RESULTS, tables.GAINS = tmp_path, []
    tables.REPRODUCTION = [("h", ["h42.json", "h43.json"], ["NDCG@10"], "ref", [0.17], "window"),
                           ("s", ["s42.json", "s43.json"], ["NDCG@10"], "ref", [0.16], "window")]
    tables.SEED_GAINS = [("HSTU", "h42.json", 0.07, "s42.json")]
    text = tables.reproduction_table()
    assert "the means of their seeds (2 of `h42.json`'s recipe, 1 of `s42.json`'s): test NDCG@10 +12.5%" in text
    # a side whose file is missing: no line (and no error)
    tables.SEED_GAINS = [("HSTU", "h42.json", 0.07, "missing.json")]
    assert "the means of their seeds" not in tables.reproduction_table()
    tables.SEED_GAINS = [("HSTU", "h42.json", 0.07, "s42.json")]
    # one seed on both sides: the per-file gain lines say it already
    tables.REPRODUCTION[0] = ("h", ["h42.json"], ["NDCG@10"], "ref", [0.17], "window")
    assert "the means of their seeds" not in tables.reproduction_table()


def test_gain_filter_window_when_both_have_it_unless_whole(tmp_path):
    import json

    tables = load_tables()

    def write(name, whole, window):
        (tmp_path / name).write_text(json.dumps({"config": {"model": {"name": "hstu"}, "train": {"seed": 42}},
                                                 "test": {"NDCG@10": whole}, "test_window": {"NDCG@10": window},
                                                 "valid": {"NDCG@10": 0.2}}))

    write("h.json", 0.18, 0.165)
    write("s.json", 0.16, 0.15)
    tables.RESULTS, tables.REPRODUCTION, tables.SEED_GAINS = tmp_path, [], []
    tables.GAINS = [("HSTU", "h.json", 0.07, "s.json")]
    assert "test NDCG@10 +10.0% (paper +7%), the reference's history filter." in tables.reproduction_table()
    tables.GAINS = [("HSTU", "h.json", 0.07, "s.json", "whole")]
    text = tables.reproduction_table()
    assert "test NDCG@10 +12.5% (paper +7%)." in text and "history filter" not in text


def test_seconds_column_adds_a_same_recipe_run_that_ran_alone():
    tables = load_tables()

    def run(seed, seconds, beside=None, lr=0.001):
        load = {"threads": 2, "loadavg_1_5_15_at_start": [1, 1, 1], "loadavg_1_5_15_at_end": [2, 2, 2]}
        if beside is not None:
            load["beside"] = beside
        config = {"model": {"name": "sasrec"}, "train": {"seed": seed, "lr": lr, "num_threads": 2}}
        return {"config": config, "load": load, "train_seconds_per_epoch_median": seconds}

    shared = run(42, 40.9, beside="the test suite")
    present = {"a.json": shared, "b.json": run(43, 30.0, lr=0.002, beside="alone"), "c.json": run(44, 18.1, "alone")}
    # a run beside other work shows its own figure and the same recipe's alone run (not the other recipe's)
    assert tables._seconds(present, "a.json") == "40.9 (alone, `c.json`: 18.1)"
    assert tables._seconds(present, "c.json") == "18.1"                       # alone itself: its figure only
    assert tables._seconds({"a.json": shared}, "a.json") == "40.9"            # nothing alone to add
