"""`seqrec tune` and `compare`: hyper-parameter studies and side-by-side runs."""

from __future__ import annotations

import json
from pathlib import Path

import click

from seqrec.cli.app import cell, cli, print_results, setup_logging
from seqrec.errors import SeqrecError


@cli.command()
@click.option("-c", "--config", "config_path", type=click.Path(dir_okay=False), default=None,
              help="YAML run config every trial starts from (default: the built-in defaults; with --resume, the "
                   "study's own).")
@click.option("--space", "space_path", type=click.Path(dir_okay=False), default=None,
              help="Search space YAML: config key -> distribution, e.g. 'train.lr: {type: float, low: 1.0e-4, "
                   "high: 1.0e-2, log: true}' (see configs/spaces/sasrec.yaml). Needed for a new study.")
@click.option("--trials", type=click.IntRange(min=1), required=True,
              help="Finished trials the study should hold (a resumed study runs only the missing ones).")
@click.option("--timeout", "timeout_minutes", type=click.FloatRange(min=0, min_open=True), default=None,
              metavar="MIN", help="Start no trial after this many minutes (the running one finishes).")
@click.option("--set", "overrides", multiple=True, metavar="SECTION.KEY=VALUE",
              help="Fix one config value for every trial, as in `seqrec train` (repeatable).")
@click.option("--out", type=click.Path(file_okay=False), required=True,
              help="Study directory: study.db (Optuna, SQLite), one run directory per trial under trials/, "
                   "best.yaml, best.json.")
@click.option("--resume", is_flag=True, help="Continue the study in --out (after a crash or kill -9), or join it "
                                             "from another process.")
@click.option("--seed", type=int, default=None, help="Seed of the sampler and of every trial (default: "
                                                     "train.seed); the study is reproduced by it.")
@click.option("--no-prune", is_flag=True, help="Run every trial to its end (no median pruning).")
@click.option("--prune-after", type=click.IntRange(min=0), default=5, show_default=True, metavar="EPOCHS",
              help="Epochs a trial always runs before the median rule may stop it (a new study's setting).")
@click.option("--json", "as_json", is_flag=True, help="Print the trials and the best trial as JSON.")
def tune(config_path: str | None, space_path: str | None, trials: int, timeout_minutes: float | None,
         overrides: tuple[str, ...], out: str, resume: bool, seed: int | None, no_prune: bool, prune_after: int,
         as_json: bool) -> None:
    """Search hyper-parameters with Optuna: each trial is an ordinary run in --out, scored on validation.

    The objective is the validation eval.metric of each trial's best epoch (the test set is never used to
    choose); at the end the best trial's config is written to OUT/best.yaml and its test metrics evaluated once.
    """
    from seqrec.experiments.study import tune as run_study

    setup_logging(quiet=as_json)
    result = run_study(config_path, space_path, out=out, trials=trials, overrides=overrides,
                       timeout_minutes=timeout_minutes, resume=resume, seed=seed, prune=not no_prune,
                       prune_after=prune_after)
    if as_json:
        click.echo(json.dumps({"metric": result.metric, "trials": result.rows, "best": result.best,
                               "seconds": round(result.seconds, 1)}, indent=1, default=str))
        return
    _print_trials(result.rows, result.metric)
    if result.best is None:
        raise SeqrecError(f"no trial of the study in {out} completed; see the messages above")
    best = result.best
    print_results({"valid": best["valid"], "test": best["test"]},
                   title=f"best trial {best['trial']} ({best['run_dir']}), test evaluated once")
    click.echo(f"best config: {Path(out) / 'best.yaml'}  (seqrec train -c {Path(out) / 'best.yaml'})")


@cli.command()
@click.argument("run_dirs", nargs=-1, required=True, type=click.Path(file_okay=False, exists=True))
@click.option("--metric", default=None, help="Metric to show and plot, e.g. NDCG@10 (default: the first run's "
                                             "eval.metric).")
@click.option("--json", "as_json", is_flag=True, help="Print the comparison as JSON.")
@click.option("-o", "--output", type=click.Path(dir_okay=False), default=None,
              help="Write the runs' validation curves, overlaid, to this PNG.")
def compare(run_dirs: tuple[str, ...], metric: str | None, as_json: bool, output: str | None) -> None:
    """Compare run directories (or study directories: their trials) side by side.

    One table of the config keys that differ, valid and test metric of the best epoch, best epoch, seconds per
    epoch and peak memory ('-' where a run did not record it); -o adds a PNG of the validation curves.
    """
    from seqrec.experiments.compare import compare as compare_runs
    from seqrec.experiments.compare import plot_comparison

    comparison = compare_runs(run_dirs, metric)
    if output is not None:
        plot_comparison(comparison, output)
    if as_json:
        click.echo(json.dumps(comparison.to_dict(), indent=1, default=str))
        return
    from rich.console import Console
    from rich.table import Table

    m = comparison.metric
    table = Table("run", *comparison.keys, f"valid {m}", f"test {m}", "best ep.", "epochs", "s/epoch", "peak MiB",
                  title=f"{len(comparison.runs)} runs" + ("" if comparison.keys else " (identical configs)"))
    for run in comparison.runs:
        table.add_row(run.name, *(cell(run.config.get(key)) for key in comparison.keys), cell(run.valid.get(m)),
                      cell(run.test.get(m)), cell(run.best_epoch), cell(run.epochs), cell(run.seconds_per_epoch),
                      cell(run.peak_memory_mb))
    Console(width=200).print(table)
    if output is not None:
        click.echo(f"validation curves: {output}")


def _print_trials(rows: list[dict], metric: str) -> None:
    from rich.console import Console
    from rich.table import Table

    keys = list(dict.fromkeys(key for row in rows for key in row["params"]))
    table = Table("trial", "state", f"valid {metric}", *keys, "best ep.", "epochs", "min", "note",
                  title="trials")
    for row in rows:
        values = [row["params"].get(key) for key in keys]
        table.add_row(str(row["trial"]), row["state"], cell(row["value"]), *map(cell, values),
                      cell(row["best_epoch"]), cell(row["epochs"]), cell(row["minutes"]), row["note"])
    Console(width=200).print(table)
