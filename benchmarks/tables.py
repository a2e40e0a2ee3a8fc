"""Regenerate the tables of `benchmarks/README.md` from the results files, never by hand.

Each generated table sits between `<!-- generated: NAME -->` and `<!-- end generated -->` in the README; this
script rewrites what is between the markers and leaves every other line alone.

    python benchmarks/tables.py            # rewrite the README's generated tables
    python benchmarks/tables.py --check    # exit 1 (and say which table) when the README is out of date

Tables:
- `reproduction`: every published figure seqrec reproduces (issue 21's rows), the run that stands for it, the
  reference, the target and by how much it is met or missed, and the run's load conditions (threads and load
  average when its results file records them; older files did not, and their seconds are marked unclean), and
  the test figure under each seed of the same recipe (the row's files whose configs differ from its run's only in
  the seed and execution settings such as threads or a time budget) with their mean; the training seconds per
  epoch are the run's, and when it did not have the machine to itself, also those of a run of the same recipe
  that did (a results file whose `load.beside` starts with "alone").
- `ml1m`: every ML-1M results file (`results/ml1m_*.json`), the table `bench_ml1m.py --table` prints.
- `sessions`: every Diginetica and Yoochoose 1/64 results file, the table `bench_sessions.py --table` prints.
- `ml1m-speed`: training seconds per epoch of every shipped ML-1M config (`results/step_speed_ml1m.json`,
  written by `bench_step_speed.py --set ml1m --full-epochs`); `precision-speed`, `mol-speed`, `scores-speed` and
  `fused-speed` the same for `--set precision`, `--set mol`, `--set scores` and `--set fused`.
"""

from __future__ import annotations

import argparse
import importlib
import json
import re
import statistics
import sys
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
README = HERE / "README.md"

# (row, results files, metric key(s) in "test", reference text, target(s)[, "window"]); of the files present, the
# one with the best first metric on validation stands for the row (the others are runs of the same config in other
# conditions); a row whose runs have no validation stands for the mean over the seeds of its first run's recipe
# (`_seed_figures`) when it has several. "window" rows follow generative-recommenders' evaluation, which removes
# from the ranking only the items of the window the model reads (its last 200), not the whole history: their
# figure is the run's `test_window` (or its `test` when the run itself used `eval.exclude_history: window`).
REPRODUCTION = [
    ("BERT4Rec, ML-1M", ["ml1m_bert4rec.json", "ml1m_bert4rec_long.json", "ml1m_bert4rec_ref.json"], ["NDCG@10"],
     "0.1537 (Klenitskiy & Vasilev), 0.1516 (Petrov & Macdonald)", [0.155]),
    ("SASRec full CE, ML-1M", ["ml1m_sasrec_kv_init.json", "ml1m_sasrec_seed43.json", "ml1m_sasrec_seed44.json",
                               "ml1m_sasrec_seed45.json",
                               "ml1m_sasrec_kv_init_bf16.json", "ml1m_sasrec_authors_block.json",
                               "ml1m_sasrec_length.json", "ml1m_sasrec.json"],
     ["NDCG@10"],
     "0.1821 / HR@10 0.3152 (SASRec+)", [0.182]),
    ("SASRec full CE, ML-1M, the padding row as one more softmax class, as the reference (`loss.padding_class`)",
     ["ml1m_sasrec_padding_class.json"], ["NDCG@10"], "0.1821 / HR@10 0.3152 (SASRec+)", [0.182]),
    ("SASRec sampled softmax, ML-1M", ["ml1m_sasrec_sampled_length.json", "ml1m_sasrec_sampled_ref_101.json"],
     ["NDCG@10"], "0.1603 (HSTU paper)", [0.1603]),
    ("HSTU, ML-1M", ["ml1m_hstu_nobudget.json", "ml1m_hstu_length.json", "ml1m_hstu_ref.json",
                     "ml1m_hstu_ref_101.json", "ml1m_hstu_ref_101_seed43.json"], ["NDCG@10"], "0.1720 (HSTU paper)",
     [0.1720]),
    ("HSTU, ML-1M, the reference's protocol (no validation item, last of 101 epochs, its history filter)",
     ["ml1m_hstu_noval.json"], ["NDCG@10"], "0.1720 (HSTU paper)", [0.1720], "window"),
    ("SASRec sampled softmax, ML-1M, the reference's protocol", ["ml1m_sasrec_sampled_noval.json"], ["NDCG@10"],
     "0.1603 (HSTU paper)", [0.1603], "window"),
    ("HSTU, ML-1M, the reference's protocol and training (no gradient clipping, random batches)",
     ["ml1m_hstu_noval_ref_window.json", "ml1m_hstu_noval_ref.json", "ml1m_hstu_noval_ref_window_seed43.json",
      "ml1m_hstu_noval_ref_window_seed44.json", "ml1m_hstu_noval_ref_window_seed45.json", "ml1m_hstu_noval_cuda.json"],
     ["NDCG@10"],
     "0.1720 (HSTU paper)", [0.1720], "window"),
    ("SASRec sampled softmax, ML-1M, the reference's protocol and training",
     ["ml1m_sasrec_sampled_noval_ref_window.json", "ml1m_sasrec_sampled_noval_ref.json",
      "ml1m_sasrec_sampled_noval_ref_window_seed43.json", "ml1m_sasrec_sampled_noval_ref_window_seed44.json",
      "ml1m_sasrec_sampled_noval_ref_window_seed45.json", "ml1m_sasrec_sampled_noval_cuda.json"], ["NDCG@10"],
     "0.1603 (HSTU paper)", [0.1603], "window"),
    ("HSTU-large, ML-1M", ["ml1m_hstu_large.json", "ml1m_hstu_large_ref_101.json",
                           "ml1m_hstu_large_ref_101_seed43.json"], ["NDCG@10"],
     "0.1893 (HSTU paper)", [0.1893]),
    ("HSTU-large, ML-1M, the reference's protocol and training",
     ["ml1m_hstu_large_noval_ref.json", "ml1m_hstu_large_noval_ref_window_seed43.json",
      "ml1m_hstu_large_noval_ref_window_seed44.json", "ml1m_hstu_large_noval_ref_window_seed45.json",
      "ml1m_hstu_large_noval_cuda.json"], ["NDCG@10"],
     "0.1893 (HSTU paper)", [0.1893], "window"),
    ("HSTU-large + MoL, ML-1M", ["ml1m_hstu_large_mol.json", "ml1m_hstu_large_mol_cuda.json"], ["NDCG@10"],
     "0.1979 (RAILS)", [0.1979]),
    ("HSTU-large + MoL, ML-1M, the RAILS reference's MoL, protocol and training",
     ["ml1m_hstu_large_mol_noval.json", "ml1m_hstu_large_mol_noval_cuda.json",
      "ml1m_hstu_large_mol_noval_cpu_partial.json"], ["NDCG@10"], "0.1979 (RAILS)",
     [0.1979], "window"),
    ("SR-GNN, Yoochoose 1/64 (P@20 / MRR@20, %)", ["yoochoose64_srgnn_decay4.json",
                                                   "yoochoose64_srgnn_decay4_seed43.json",
                                                   "yoochoose64_srgnn_decay4_seed44.json"],
     ["HR@20", "MRR@20"], "70.57 / 30.94 (SR-GNN paper)", [0.7057, 0.3094]),
    ("SR-GNN, Yoochoose 1/64, whole sessions as the reference reads them (`model.max_len: 200`; 50 cuts 1,918 "
     "training and 115 test inputs) (%)",
     ["yoochoose64_srgnn_whole_sessions.json"], ["HR@20", "MRR@20"], "70.57 / 30.94 (SR-GNN paper)",
     [0.7057, 0.3094]),
    ("SR-GNN, Yoochoose 1/64, the model of SR-GNN's TensorFlow code (`model.form: tensorflow`) (%)",
     ["yoochoose64_srgnn_tf.json"], ["HR@20", "MRR@20"], "70.57 / 30.94 (SR-GNN paper)", [0.7057, 0.3094]),
    ("SR-GNN, Yoochoose 1/64, lr decayed from epoch 3, as SR-GNN's PyTorch code on torch >= 1.1 (%)",
     ["yoochoose64_srgnn.json", "yoochoose64_srgnn_refbias.json", "yoochoose64_srgnn_seed43.json"],
     ["HR@20", "MRR@20"], "70.57 / 30.94 (SR-GNN paper)", [0.7057, 0.3094]),
    ("SR-GNN, Yoochoose 1/64, lr decayed from epoch 3, refit on every training session for 5 epochs (%)",
     ["yoochoose64_srgnn_refit.json"], ["HR@20", "MRR@20"], "70.57 / 30.94 (SR-GNN paper)", [0.7057, 0.3094]),
]


# HSTU's gain over SASRec trained the same way (sampled softmax, cosine / 0.05, length batching): paper +7%, +18%
GAIN_BASE = "ml1m_sasrec_sampled_length.json"
# (label, results file, paper's gain, base file[, "whole"]); both files' figures with the same history filter: the
# reference's window filter when both have it, unless "whole" asks for the whole history excluded (the filter of
# the validated rows, whose runs also record the window figure)
GAINS = [("HSTU", "ml1m_hstu_nobudget.json", 0.07, GAIN_BASE), ("HSTU-large", "ml1m_hstu_large.json", 0.18, GAIN_BASE),
         ("HSTU, the reference's protocol,", "ml1m_hstu_noval.json", 0.07, "ml1m_sasrec_sampled_noval.json"),
         ("HSTU, the reference's protocol and training,", "ml1m_hstu_noval_ref.json", 0.07,
          "ml1m_sasrec_sampled_noval_ref.json"),
         ("HSTU, the reference's protocol and training,", "ml1m_hstu_noval_ref_window.json", 0.07,
          "ml1m_sasrec_sampled_noval_ref_window.json"),
         ("HSTU-large, the reference's protocol and training,", "ml1m_hstu_large_noval_ref.json", 0.18,
          "ml1m_sasrec_sampled_noval_ref.json"),
         ("HSTU-large, the reference's protocol and training,", "ml1m_hstu_large_noval_ref.json", 0.18,
          "ml1m_sasrec_sampled_noval_ref_window.json"),
         ("HSTU, the validated protocol with the reference's training,", "ml1m_hstu_ref_101.json", 0.07,
          "ml1m_sasrec_sampled_ref_101.json", "whole"),
         ("HSTU-large, the validated protocol with the reference's training,", "ml1m_hstu_large_ref_101.json", 0.18,
          "ml1m_sasrec_sampled_ref_101.json", "whole"),
         ("HSTU-large, the validated protocol with the reference's training,",
          "ml1m_hstu_large_ref_101_seed43.json", 0.18, "ml1m_sasrec_sampled_ref_101.json", "whole")]
# (label, results file, paper's gain, base file) whose figures are the means over the seeds of each file's recipe
# among its reproduction row's files, with the reference's history filter (`_seed_figures`)
SEED_GAINS = [("HSTU, the reference's protocol and training,", "ml1m_hstu_noval_ref_window.json", 0.07,
               "ml1m_sasrec_sampled_noval_ref_window.json"),
              ("HSTU-large, the reference's protocol and training,", "ml1m_hstu_large_noval_ref.json", 0.18,
               "ml1m_sasrec_sampled_noval_ref_window.json")]


def _load(name: str) -> dict | None:
    path = RESULTS / name
    return json.loads(path.read_text()) if path.exists() else None


def _valid_metric(result: dict | None, metric: str) -> float:
    """A run's validation figure (its test figure when an old results file has no validation); a run trained
    without validation targets (`split.validation: none`, `"valid": {}`) is never chosen over one with them."""
    assert result is not None
    if "valid" in result and not result["valid"]:
        return float("-inf")
    return (result.get("valid") or result["test"])[metric]


def _window_test(result: dict) -> dict | None:
    """A run's test metrics with only the window its model reads excluded (generative-recommenders' filter):
    its `test` when it ran with that filter, its `test_window` when recorded, else None."""
    if (result.get("config") or {}).get("eval", {}).get("exclude_history") == "window":
        return result["test"]
    return result.get("test_window")


def _load_conditions(result: dict) -> str:
    load = result.get("load")
    if not load:
        return "not recorded (unclean)"
    start, end = load["loadavg_1_5_15_at_start"][0], load["loadavg_1_5_15_at_end"][0]
    beside = f"; beside it: {load['beside']}" if load.get("beside") else ""   # noted by whoever ran it
    return f"{load['threads']} thread(s), load {start:.1f} -> {end:.1f}{beside}"


# config keys that say how a run was executed, not what it trains: runs that differ only in these (and the seed)
# are the same recipe (`_recipe`)
_EXECUTION_KEYS = {"data": ("path", "test_path", "cache"), "eval": ("batch_size",),
                   "train": ("seed", "num_threads", "max_minutes", "progress", "device", "micro_batches",
                             "tensorboard", "mlflow", "mlflow_uri", "mlflow_experiment", "dist_timeout")}


def _recipe(result: dict) -> dict[tuple[str, str], object] | None:
    """A run's config without its seed and execution settings, {(section, key): value}; None without a config."""
    config = result.get("config")
    if not config:
        return None
    recipe = {(section, key): value for section, values in config.items() if isinstance(values, dict)
              for key, value in values.items() if key not in _EXECUTION_KEYS.get(section, ())}
    if recipe.get(("split", "validation")) == "none":
        recipe.pop(("train", "patience"), None)        # no validation, no early stop: patience is never read
    return recipe


def _same_recipe(a: dict | None, b: dict | None) -> bool:
    """Two recipes agree on every key both have: a key one lacks was added to the schema after that run, whose
    default keeps the behaviour from before it."""
    return a is not None and b is not None and all(a[key] == b[key] for key in a.keys() & b.keys())


def _seed_figures(present: dict[str, dict], name: str, metrics: list[str], window: bool) -> dict[int, list[float]]:
    """{seed: the row's test figures} of every run of `name`'s recipe among the row's files (the first file of a
    seed counts). In a "window" row the history filter is not part of the recipe: a run that excluded the whole
    history and recorded `test_window` measured the same figure as one run with `eval.exclude_history: window`
    (the filter changes the evaluation, not the training)."""

    def recipe_of(result: dict) -> dict[tuple[str, str], object] | None:
        recipe = _recipe(result)
        if window and recipe is not None:
            recipe.pop(("eval", "exclude_history"), None)
        return recipe

    recipe = recipe_of(present[name])
    # figures under one filter only: the reference's when the row's run has it
    reference_filter = window and _window_test(present[name]) is not None
    figures: dict[int, list[float]] = {}
    for result in present.values():
        if reference_filter and _window_test(result) is None:
            continue
        if _same_recipe(recipe_of(result), recipe):
            test = _window_test(result) if reference_filter else result["test"]
            figures.setdefault(int(result["config"]["train"]["seed"]), [test[m] for m in metrics])
    return figures


def _alone(result: dict) -> bool:
    """Whether a run's results file says it had the machine to itself (its `load.beside` starts with "alone")."""
    return str((result.get("load") or {}).get("beside", "")).startswith("alone")


def _seconds(present: dict[str, dict], name: str) -> str:
    """The row's training seconds per epoch: its run's median; when that run did not have the machine to itself and
    a run of the same recipe among the row's files did, that run's figure as well (speed depends on load)."""
    result = present[name]
    text = str(result.get("train_seconds_per_epoch_median") or "-")
    if _alone(result):
        return text
    recipe = _recipe(result)
    for other, run in present.items():
        seconds = run.get("train_seconds_per_epoch_median")
        if other != name and seconds and _alone(run) and _same_recipe(_recipe(run), recipe):
            return f"{text} (alone, `{other}`: {seconds})"
    return text


def _figures(values: list[float], scale: int) -> str:
    """A row's figures joined by " / ": four decimals, or percentages with two when `scale` is 100."""
    return " / ".join(f"{value * scale:.2f}" if scale > 1 else f"{value:.4f}" for value in values)


def _seeds(present: dict[str, dict], name: str, metric: str | list[str], window: bool, scale: int = 1) -> str:
    """The row's test figures under every seed of its run's recipe among the row's files, and their mean (sample
    standard deviation with three or more): "42: 0.1794, 43: 0.1797; mean 0.1796"; several metrics are joined by
    " / ", and `scale` 100 writes percentages ("42: 70.45 / 30.66, ..."). "-" with one seed only."""
    metrics = [metric] if isinstance(metric, str) else metric
    figures = _seed_figures(present, name, metrics, window)
    if len(figures) < 2:
        return "-"
    columns = [[figures[seed][i] for seed in sorted(figures)] for i in range(len(metrics))]
    spread = f" ± {_figures([statistics.stdev(values) for values in columns], scale)}" if len(figures) > 2 else ""
    return (", ".join(f"{seed}: {_figures(figures[seed], scale)}" for seed in sorted(figures))
            + f"; mean {_figures([statistics.mean(values) for values in columns], scale)}{spread}")


def reproduction_table() -> str:
    lines = ["| row | results file | now | reference | target | status | seeds (same recipe) | best epoch / run | "
             "stopped by | train s/epoch | load |", "|---|---|---:|---|---:|---|---|---:|---|---:|---|"]
    for label, files, metrics, reference, targets, *window in REPRODUCTION:
        present = {f: result for f in files if (result := _load(f)) is not None}
        # the row's run: the best on validation (never chosen by its test figure); runs without validation tie,
        # and then one measured with the row's history filter comes first
        name = max(present, key=lambda f: (_valid_metric(present[f], metrics[0]),
                                           bool(window) and _window_test(present[f]) is not None)) if present else None
        scale = 100 if "%" in label else 1
        target = _figures(targets, scale)
        if name is None:
            lines.append(f"| {label} | - | - | {reference} | {target} | no run | - | - | - | - | - |")
            continue
        result = present[name]
        test = (_window_test(result) if window else None) or result["test"]
        values = [test[m] for m in metrics]
        # a row whose runs have no validation (the reference's protocol: the last epoch is tested) and that has
        # several seeds of its recipe stands for their mean: no seed can be chosen without looking at the test
        seeds = _seed_figures(present, name, metrics, bool(window))
        mean_of = ""
        if _valid_metric(result, metrics[0]) == float("-inf") and len(seeds) > 1:
            values = [statistics.mean(figures[i] for figures in seeds.values()) for i in range(len(metrics))]
            mean_of = f" (mean of {len(seeds)} seeds)"
        now = _figures(values, scale) + mean_of
        gaps = [v - t for v, t in zip(values, targets, strict=True)]
        status = "met" if all(g >= -1e-9 for g in gaps) else "short by " + _figures([-g for g in gaps], scale)
        if window and _window_test(result) is None:
            status += " with the whole history excluded (the reference's filter not measured)"
        elif window and result.get("test_window"):
            of = f", `{name}`" if mean_of else ""
            status += f" (whole history excluded{of}: {result['test'][metrics[0]]:.4f})"
        elif window:
            status += " (run with the reference's filter)"
        stopped = _stopped(result.get("stopped"))
        seeds = _seeds(present, name, metrics, bool(window), scale)
        lines.append(f"| {label} | `{name}` | {now} | {reference} | {target} | {status} | {seeds} | "
                     f"{result.get('best_epoch')} / {result.get('epochs_run')} | {stopped} | "
                     f"{_seconds(present, name)} | {_load_conditions(result)} |")
    for label, name, paper, base_name, *whole in GAINS:
        result, base = _load(name), _load(base_name)
        if base and result:
            window = not whole and _window_test(result) is not None and _window_test(base) is not None
            ours, theirs = (_window_test(result), _window_test(base)) if window else (result["test"], base["test"])
            gain = ours["NDCG@10"] / theirs["NDCG@10"] - 1
            lines.append(f"\n{label} over SASRec trained the same way (`{name}` vs `{base_name}`): test NDCG@10 "
                         f"{gain:+.1%} (paper {paper:+.0%})"
                         + (", the reference's history filter." if window else "."))
    for label, name, paper, base_name in SEED_GAINS:
        ours, theirs = _row_seeds(name), _row_seeds(base_name)
        if ours and theirs and (len(ours) > 1 or len(theirs) > 1):
            gain = statistics.mean(ours.values()) / statistics.mean(theirs.values()) - 1
            lines.append(f"\n{label} over SASRec trained the same way, the means of their seeds ({len(ours)} of "
                         f"`{name}`'s recipe, {len(theirs)} of `{base_name}`'s): test NDCG@10 {gain:+.1%} "
                         f"(paper {paper:+.0%}), the reference's history filter.")
    return "\n".join(lines)


def _row_seeds(name: str) -> dict[int, float]:
    """{seed: test NDCG@10 with the reference's filter} of `name`'s recipe among the files of the reproduction row
    that lists it; {} when the file is missing."""
    files = next((row[1] for row in REPRODUCTION if name in row[1]), [name])
    present = {f: result for f in files if (result := _load(f)) is not None}
    if name not in present:
        return {}
    return {seed: values[0] for seed, values in _seed_figures(present, name, ["NDCG@10"], True).items()}


def _stopped(text: str | None) -> str:
    if not text:
        return "epochs"
    if text.startswith("early stop"):
        return "patience"
    budget = re.search(r"time budget of ([\d.]+) minutes", text)
    return f"{float(budget.group(1)):.0f}-min budget" if budget else text


def _bench_table(module: str, *patterns: str) -> str:
    """The table that `benchmarks/<module>.py --table` prints, over the results files matching `patterns`."""
    if str(HERE) not in sys.path:
        sys.path.insert(0, str(HERE))
    table = importlib.import_module(module).table
    return table(sorted(path for pattern in patterns for path in RESULTS.glob(pattern)))


def ml1m_table() -> str:
    return _bench_table("bench_ml1m", "ml1m_*.json")


def sessions_table() -> str:
    return _bench_table("bench_sessions", "diginetica_*.json", "yoochoose64_*.json")


def ml1m_speed_table(name: str = "ml1m") -> str:
    result = _load(f"step_speed_{name}.json")
    if result is None:
        return f"(no `results/step_speed_{name}.json` yet: run `bench_step_speed.py --set {name} --full-epochs`)"
    how = (f"{result['date']}, {result['threads']} thread(s), {result['batching']} batching, "
           f"{'whole epochs' if result['steps_per_round'] == 'epoch' else str(result['steps_per_round']) + ' steps'}"
           f" x {result['rounds']} rounds, load average {result.get('loadavg_1_5_15_at_start', ['?'])[0]} at start, "
           f"{result.get('loadavg_1_5_15_at_end', ['?'])[0]} at end")
    ratios = result.get("pairs") and any("ratio_to_sasrec" in row for row in result["cases"].values())
    lines = [f"Measured {how}.", "", "| config | batching | ms/step (median) | steps/epoch | train s/epoch | "
             + ("x its base (epoch) | " if ratios else "") + "parameters |",
             "|---|---|---:|---:|---:|" + ("---:|" if ratios else "") + "---:|"]
    for name, row in result["cases"].items():
        ratio = f"{row['ratio_to_sasrec']} | " if "ratio_to_sasrec" in row else "- | "
        lines.append(f"| {name} | {row.get('batching', result['batching'])} | {row['ms_per_step_median']:,} | "
                     f"{row['steps_per_epoch']} | {row['seconds_per_epoch_estimate']} | "
                     + (ratio if ratios else "") + f"{row['parameters']:,} |")
    return "\n".join(lines)


TABLES: dict[str, Callable[[], str]] = {"reproduction": reproduction_table, "ml1m": ml1m_table,
                                        "sessions": sessions_table,
                                        "ml1m-speed": ml1m_speed_table,
                                        "precision-speed": lambda: ml1m_speed_table("precision"),
                                        "mol-speed": lambda: ml1m_speed_table("mol"),
                                        "mol-gates-speed": lambda: ml1m_speed_table("mol_gates"),
                                        "scores-speed": lambda: ml1m_speed_table("scores"),
                                        "fused-speed": lambda: ml1m_speed_table("fused"),
                                        "micro-speed": lambda: ml1m_speed_table("micro")}
BLOCK = re.compile(r"(<!-- generated: (?P<name>[\w-]+) -->\n)(?P<body>.*?)(<!-- end generated -->)", re.S)


def render(text: str) -> tuple[str, list[str]]:
    """The README with every generated block rewritten, and the names of the blocks that changed."""
    changed: list[str] = []

    def replace(match: re.Match) -> str:
        name = match.group("name")
        if name not in TABLES:
            raise SystemExit(f"benchmarks/README.md: unknown generated table {name!r} (known: {', '.join(TABLES)})")
        body = TABLES[name]() + "\n"
        if body != match.group("body"):
            changed.append(name)
        return match.group(1) + body + match.group(4)

    return BLOCK.sub(replace, text), changed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only check that the README is up to date")
    parser.add_argument("--readme", default=str(README))
    args = parser.parse_args()
    path = Path(args.readme)
    new, changed = render(path.read_text())
    if args.check:
        if changed:
            print(f"{path}: generated tables out of date: {', '.join(changed)} (run python benchmarks/tables.py)")
            return 1
        print(f"{path}: generated tables up to date")
        return 0
    path.write_text(new)
    print(f"{path}: rewrote {', '.join(changed) or 'nothing (up to date)'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
