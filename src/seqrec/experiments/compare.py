"""Compare run directories side by side (`seqrec compare`): the config keys that differ, validation and test
metrics of the best epoch, best epoch, seconds per epoch, peak memory, and the validation curves overlaid.

Everything is read from the run directories (config.yaml, results.json, log.jsonl): nothing is retrained or
re-evaluated. A study directory (`seqrec tune --out`) stands for its trials.
"""

from __future__ import annotations

import difflib
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from seqrec.errors import ConfigError
from seqrec.rundir import RunDir
from seqrec.train.runlog import EpochLog


@dataclass
class RunSummary:
    """One run as `compare` shows it."""

    name: str
    path: Path
    config: dict[str, Any]                       # `section.key` -> value, every key
    valid: dict[str, float] = field(default_factory=dict)
    test: dict[str, float] = field(default_factory=dict)
    best_epoch: int | None = None
    epochs: int = 0
    seconds_per_epoch: float | None = None
    peak_memory_mb: float | None = None
    stopped: str | None = None
    curve: list[tuple[int, float]] = field(default_factory=list)     # (epoch, validation metric)


@dataclass
class Comparison:
    metric: str
    keys: list[str]                               # the config keys whose values differ between the runs
    runs: list[RunSummary]

    def to_dict(self) -> dict:
        return {"metric": self.metric, "differing_keys": self.keys, "runs": [
            {"name": r.name, "path": str(r.path), "config": {k: r.config.get(k) for k in self.keys},
             f"valid {self.metric}": r.valid.get(self.metric), f"test {self.metric}": r.test.get(self.metric),
             "valid": r.valid, "test": r.test, "best_epoch": r.best_epoch, "epochs": r.epochs,
             "seconds_per_epoch": r.seconds_per_epoch, "peak_memory_mb": r.peak_memory_mb, "stopped": r.stopped,
             "curve": [list(point) for point in r.curve]} for r in self.runs]}


def expand(paths: Sequence[str | Path]) -> list[Path]:
    """Run directories named by `paths`: a run directory itself, or a study directory's trials (in order).

    Raises:
        ConfigError: a path that is neither, or a study without trials.
    """
    runs: list[Path] = []
    for path in map(Path, paths):
        if RunDir(path).exists:
            runs.append(path)
        elif (path / "study.json").exists() or (path / "trials").is_dir():
            trials = sorted(p for p in (path / "trials").glob("*") if RunDir(p).exists)
            if not trials:
                raise ConfigError(f"{path} is a study directory without trials yet")
            runs.extend(trials)
        else:
            raise ConfigError(f"{path} is neither a run directory (no config.yaml) nor a study directory (no "
                              "study.json); expected the --out folder of `seqrec train` or `seqrec tune`")
    return list(dict.fromkeys(runs))


def flatten(tree: dict, prefix: str = "") -> dict[str, Any]:
    """`{"train": {"lr": 0.001}}` -> `{"train.lr": 0.001}` (lists stay values)."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict) and value:
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def summarize(path: Path, metric: str | None = None, name: str | None = None) -> RunSummary:
    """What one run directory says about itself; `metric` default: its own `eval.metric`."""
    config = flatten(yaml.safe_load(RunDir(path).config.read_text(encoding="utf-8")) or {})
    metric = metric or config.get("eval.metric", "NDCG@10")
    results = RunDir(path).read_results()
    records = [r for r in EpochLog(RunDir(path).log).records() if "epoch" in r]
    seconds = [float(r["seconds"]) for r in records if isinstance(r.get("seconds"), (int, float))]
    peaks = [float(r["peak_memory_mb"]) for r in records if isinstance(r.get("peak_memory_mb"), (int, float))]
    curve = [(int(r["epoch"]), float(r["valid"][metric])) for r in records
             if isinstance(r.get("valid"), dict) and isinstance(r["valid"].get(metric), (int, float))]
    return RunSummary(name or path.name, path, config, valid=results.get("valid") or {},
                      test=results.get("test") or {}, best_epoch=results.get("best_epoch"),
                      epochs=results.get("epochs_run", len(records)),
                      seconds_per_epoch=round(sum(seconds) / len(seconds), 3) if seconds else None,
                      peak_memory_mb=max(peaks) if peaks else None, stopped=results.get("stopped"), curve=curve)


def compare(paths: Sequence[str | Path], metric: str | None = None) -> Comparison:
    """Summaries of the runs named by `paths` (study directories expanded) and the config keys that differ.

    Raises:
        ConfigError: a path that is not a run or study directory; a `metric` no run has (did-you-mean).
    """
    runs_paths = expand(paths)
    names = _names(runs_paths)
    if metric is None:
        metric = summarize(runs_paths[0]).config.get("eval.metric", "NDCG@10")
    runs = [summarize(path, metric, name) for path, name in zip(runs_paths, names, strict=True)]
    known = sorted({name for run in runs for name in (*run.valid, *run.test)})
    spelled = {name.upper(): name for name in known}.get(metric.upper(), metric)
    if spelled != metric:                                             # ndcg@10 -> NDCG@10
        return compare(paths, spelled)
    if not any(metric in run.valid or metric in run.test or run.curve for run in runs):
        guess = difflib.get_close_matches(metric.upper(), [k.upper() for k in known], n=1)
        hint = f"; did you mean {next(k for k in known if k.upper() == guess[0])!r}?" if guess else ""
        raise ConfigError(f"--metric {metric!r}: no run has it{hint} the runs have: {', '.join(known) or 'none'}")
    keys = sorted({key for run in runs for key in run.config} - {"train.progress"})
    differing = [key for key in keys if len({json.dumps(run.config.get(key), sort_keys=True) for run in runs}) > 1]
    return Comparison(metric, differing, runs)


def _names(paths: list[Path]) -> list[str]:
    """Short labels: the folder name, with its parent when two runs share one (`study-a/trial-0001`)."""
    names = [p.name for p in paths]
    return [f"{p.parent.parent.name}/{p.name}" if p.parent.name == "trials" and names.count(p.name) > 1
            else (f"{p.parent.name}/{p.name}" if names.count(p.name) > 1 else p.name) for p in paths]


def plot_comparison(comparison: Comparison, path: str | Path) -> Path:
    """The runs' validation curves overlaid in one PNG (atomically written), each run's best epoch marked."""
    import io

    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    from seqrec.fileio import atomic_write

    figure = Figure(figsize=(9, 5), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots()
    for run in comparison.runs:
        points = [(e, v) for e, v in run.curve if math.isfinite(v)]
        if not points:
            continue
        xs, ys = zip(*points, strict=True)
        (line,) = axes.plot(xs, ys, marker="o", markersize=3, label=run.name)
        best = max(points, key=lambda point: point[1])
        axes.scatter([best[0]], [best[1]], color=line.get_color(), edgecolor="black", zorder=3, s=40)
    axes.set_title(f"Validation {comparison.metric} per epoch (dot: best epoch)")
    axes.set_xlabel("epoch")
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes.set_ylabel(comparison.metric)
    axes.grid(True, alpha=0.3)
    if axes.lines:
        axes.legend(loc="best", fontsize="small")
    else:
        axes.text(0.5, 0.5, "no validation curves", ha="center", va="center", transform=axes.transAxes)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    data = buffer.getvalue()
    return atomic_write(path, lambda handle: handle.write(data))
