"""The `seqrec` command line. Each subcommand is a thin shell over one library call.

Errors a user can cause (bad files, bad options) print one message on stderr and exit with status 1, without
a traceback; usage errors exit with status 2 (click's convention).
"""

from __future__ import annotations

import errno
import json
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import click

from seqrec.data.formats import FORMATS
from seqrec.errors import SeqrecError

if TYPE_CHECKING:  # names for annotations only: importing them at run time would load torch at start-up
    from seqrec.config import RunConfig
    from seqrec.recommend import Recommender


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.version_option(package_name="seqrec")
def cli() -> None:
    """seqrec: sequential and session-based recommendation.

    Prepare interaction logs, train and evaluate models with full-ranking metrics, and recommend.
    """


@cli.group()
def data() -> None:
    """Read, clean, split and cache interaction logs; list and download public datasets."""


@data.command("prepare")
@click.argument("source")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default=None,
              help="File format; detected from the extension and content when omitted. pairs = 'user item' "
                   "lines in time order (SASRec files); sequences = 'user item item ...' lines; sessions = one "
                   "session per line, items separated by commas.")
@click.option("--columns", default=None, metavar="MAP",
              help="Map canonical columns onto the file's columns by name or 0-based position, e.g. "
                   "'user=uid,item=sku,time=ts' or 'user=0,item=1,time=3'. Canonical names: user, item, time, "
                   "rating, session.")
@click.option("--separator", default=None, help="Field separator of CSV/TSV files (detected when omitted); "
              "use '\\t' for tab.")
@click.option("--header/--no-header", default=None, help="Whether the first CSV/TSV line is a header "
              "(detected when omitted).")
@click.option("--min-user-count", type=click.IntRange(min=0), default=0, show_default=True,
              help="k-core: drop users with fewer interactions, repeated with --min-item-count to a fixed point.")
@click.option("--min-item-count", type=click.IntRange(min=0), default=0, show_default=True,
              help="k-core: drop items with fewer interactions.")
@click.option("--dedupe", is_flag=True, help="Drop exact duplicate rows (the first one is kept).")
@click.option("--min-rating", type=float, default=None, help="Keep only interactions rated at least this.")
@click.option("--split", "split_name", type=click.Choice(["loo", "temporal", "none"]), default="loo",
              show_default=True, help="Split to summarise: leave-one-out per user, global temporal, or none.")
@click.option("--valid-fraction", type=float, default=0.1, show_default=True,
              help="Temporal split: share of the latest interactions for validation.")
@click.option("--test-fraction", type=float, default=0.1, show_default=True,
              help="Temporal split: share of the latest interactions for test.")
@click.option("--cache-dir", type=click.Path(file_okay=False), default=None,
              help="Prepared-data cache folder (default: $SEQREC_CACHE or ~/.cache/seqrec/prepared).")
@click.option("--no-cache", is_flag=True, help="Neither read nor write the cache.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as one JSON object.")
def data_prepare(source: str, fmt: str | None, columns: str | None, separator: str | None, header: bool | None,
                 min_user_count: int, min_item_count: int, dedupe: bool, min_rating: float | None, split_name: str,
                 valid_fraction: float, test_fraction: float, cache_dir: str | None, no_cache: bool,
                 as_json: bool) -> None:
    """Read SOURCE (a file, or 'demo' for the built-in synthetic data), clean it, cache it and summarise it."""
    from seqrec.data import splits
    from seqrec.data.pipeline import load

    mapping = None
    if columns:
        from seqrec.data.readers import parse_column_mapping  # polars: only when a file is read anyway

        mapping = parse_column_mapping(columns)
    if separator == "\\t":
        separator = "\t"
    data = load(source, format=fmt, columns=mapping, separator=separator, header=header,
                use_cache=not no_cache, cache_dir=cache_dir, dedupe=dedupe, min_rating=min_rating,
                min_user_count=min_user_count, min_item_count=min_item_count)
    summary = data.summary()
    if split_name == "loo":
        summary["split"] = splits.leave_one_out(data).summary()
    elif split_name == "temporal":
        summary["split"] = splits.temporal(data, valid_fraction=valid_fraction,
                                           test_fraction=test_fraction).summary()
    if as_json:
        click.echo(json.dumps(summary, indent=2, default=str))
    else:
        _print_summary(summary)


@data.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print the registry as JSON.")
def data_list(as_json: bool) -> None:
    """List the public datasets `seqrec data download` knows."""
    from seqrec.data.registry import list_datasets

    specs = list_datasets()
    if as_json:
        click.echo(json.dumps([{"name": s.name, "url": s.url, "checksum": s.checksum, "format": s.format,
                                "description": s.description} for s in specs], indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table("name", "description", "format", "url")
    for spec in specs:
        table.add_row(spec.name, spec.description, spec.format, spec.url)
    Console().print(table)


@data.command("download")
@click.argument("name")
@click.option("--dest", type=click.Path(file_okay=False), default=None,
              help="Folder to unpack into (default: $SEQREC_DATASETS or ~/.cache/seqrec/datasets).")
@click.option("--mirror", default=None, help="Base URL of a mirror holding the same file name.")
@click.option("--checksum", default=None, help="Expected checksum 'sha256:HEX' or 'md5:HEX' (needed for "
              "datasets without a published one).")
@click.option("--force", is_flag=True, help="Download again even if the dataset is already there.")
@click.option("--no-progress", is_flag=True, help="Do not show a progress bar.")
def data_download(name: str, dest: str | None, mirror: str | None, checksum: str | None, force: bool,
                  no_progress: bool) -> None:
    """Download public dataset NAME (see `seqrec data list`), verify its checksum and unpack it."""
    from seqrec.data.download import download

    folder = download(name, dest, mirror=mirror, checksum=checksum, force=force, progress=not no_progress)
    click.echo(str(folder))


@cli.command()
@click.option("-c", "--config", "config_path", type=click.Path(dir_okay=False), default=None,
              help="YAML run config (sections data, split, model, loss, train, eval); see configs/.")
@click.option("--set", "overrides", multiple=True, metavar="SECTION.KEY=VALUE",
              help="Override one config value, e.g. --set train.lr=1e-3 --set model.dim=64 (repeatable).")
@click.option("--out", type=click.Path(file_okay=False), default=None,
              help="Run directory (config, log, checkpoints, curves.png, results.json). Default: "
                   "runs/<time>-<model>-<config hash>.")
@click.option("--resume", is_flag=True, help="Continue the run in --out from its last checkpoint.")
@click.option("--quiet", is_flag=True, help="No progress bar and no per-epoch lines.")
@click.option("--keys", "list_keys", is_flag=True,
              help="List every config key (all models' hyper-parameters included) with its meaning, and exit.")
@click.option("--nproc", type=click.IntRange(min=1), default=None, metavar="N",
              help="Train with DDP in N processes on this machine: the same as `torchrun --standalone "
                   "--nproc-per-node N -m seqrec train ...` (train.batch_size is the global batch; each process "
                   "gets cores / N threads unless train.num_threads is set).")
def train(config_path: str | None, overrides: tuple[str, ...], out: str | None, resume: bool, quiet: bool,
          list_keys: bool, nproc: int | None) -> None:
    """Train a model and report full-ranking validation and test metrics of its best epoch.

    Without -c it trains the built-in default (SASRec on the demo data). Under torchrun (several processes or
    machines) it trains with DistributedDataParallel; see the README's "Several processes and machines".
    """
    if resume and out is None and not list_keys:
        raise click.UsageError("--resume needs --out RUN_DIR (the run to continue)")
    if nproc is not None and not list_keys:
        _launch(nproc, config_path, overrides, out, resume, quiet)
        return
    from seqrec import api
    from seqrec.config import describe_keys

    if list_keys:
        keys = describe_keys()
        width = max(map(len, keys))
        for key, text in keys.items():
            click.echo(f"{key:<{width}}  {text}")
        return

    _setup_logging(quiet)
    config = _train_config(config_path, overrides, out, resume, quiet)
    if config_path is None and not resume:
        click.echo("no -c CONFIG given: training the built-in default, SASRec on the demo data (see configs/ for "
                   "others, `seqrec train --keys` for every setting)", err=True)
    out = _run_dir(out, config)
    from seqrec.train import distributed

    try:
        run = api.train(config=config, out=out, resume=resume)
    except BaseException:
        distributed.teardown(wait=False)          # the others may be gone: do not wait for them
        raise
    distributed.teardown()
    if not run.dist.is_main:
        return
    _print_results({"valid": run.results["valid"], "test": run.results["test"]},
                   title=f"{run.config.model.name}: best epoch {run.results['best_epoch']}")
    if run.results.get("stopped"):
        click.echo(f"stopped: {run.results['stopped']}")
    click.echo(f"run directory: {out}")


def _train_config(config_path: str | None, overrides: Sequence[str], out: str | None, resume: bool,
                  quiet: bool) -> RunConfig | None:
    """The RunConfig `seqrec train` asked for; None for a plain --resume (the run's own config is used)."""
    from seqrec import api
    from seqrec.config import load_config
    from seqrec.rundir import RunDir

    stored = RunDir(out).config if resume and out is not None else None
    if stored is not None and not stored.exists():
        raise click.UsageError(f"--resume: {out} holds no run to continue (no config.yaml); check the name, or "
                               "drop --resume to start a new run there")
    if stored is not None and config_path is None:
        # a resumed run's own config with the changes asked for (e.g. more epochs), never the built-in defaults
        return load_config(stored, overrides) if overrides else None
    config = load_config(config_path, overrides)
    return api.make_config(config, train={"progress": False}) if quiet else config


def _run_dir(out: str | None, config: RunConfig | None) -> str:
    """--out, or a new default run directory (without --out a run is never resumed, so its config is known)."""
    if out is not None:
        return out
    if config is None:
        raise click.UsageError("--resume needs --out RUN_DIR (the run to continue)")
    from seqrec.api import default_run_dir

    return str(default_run_dir(config))


def _launch(nproc: int, config_path: str | None, overrides: Sequence[str], out: str | None, resume: bool,
            quiet: bool) -> None:
    """Start `seqrec train` in `nproc` processes through torch.distributed.run (torchrun), on this machine."""
    import os

    from torch.distributed.run import main as torchrun

    config = _train_config(config_path, overrides, out, resume, quiet)   # one clear error before N processes
    out = _run_dir(out, config)       # one directory for every rank: chosen here, not by each rank's clock
    args = [*(["-c", config_path] if config_path else []), *(f"--set={o}" for o in overrides), "--out", out,
            *(["--resume"] if resume else []), *(["--quiet"] if quiet else [])]
    os.environ.setdefault("OMP_NUM_THREADS", "1")         # seqrec sets each rank's threads itself
    try:
        torchrun(["--standalone", "--nproc-per-node", str(nproc), "-m", "seqrec", "train", *args])
    except Exception as error:     # torchrun's ChildFailedError: it has printed which rank failed and why
        raise click.ClickException(f"distributed training failed: {type(error).__name__}; see the rank "
                                   "messages above") from None


@cli.command()
@click.argument("run_dir", type=click.Path(file_okay=False, exists=True))
@click.option("--split", "split_name", type=click.Choice(["valid", "test", "both"]), default="test",
              show_default=True, help="Which targets to rank.")
@click.option("--json", "as_json", is_flag=True, help="Print the metrics as JSON.")
def evaluate(run_dir: str, split_name: str, as_json: bool) -> None:
    """Evaluate the best checkpoint of a run directory with full ranking."""
    from seqrec.api import Run

    run = Run.load(run_dir)
    names = ["valid", "test"] if split_name == "both" else [split_name]
    rows = {name: run.evaluate(name) for name in names}
    if as_json:
        click.echo(json.dumps(rows, indent=1))
    else:
        _print_results(rows, title=f"{run.config.model.name} ({run_dir})")


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

    _setup_logging(quiet=as_json)
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
    _print_results({"valid": best["valid"], "test": best["test"]},
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
        table.add_row(run.name, *(_cell(run.config.get(key)) for key in comparison.keys), _cell(run.valid.get(m)),
                      _cell(run.test.get(m)), _cell(run.best_epoch), _cell(run.epochs), _cell(run.seconds_per_epoch),
                      _cell(run.peak_memory_mb))
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
        table.add_row(str(row["trial"]), row["state"], _cell(row["value"]), *map(_cell, values),
                      _cell(row["best_epoch"]), _cell(row["epochs"]), _cell(row["minutes"]), row["note"])
    Console(width=200).print(table)


def _cell(value: object) -> str:
    if value is None:
        return "-"
    return f"{value:.4g}" if isinstance(value, float) else str(value)


@cli.command()
@click.argument("run_dir", type=click.Path(file_okay=False, exists=True))
@click.option("--user", default=None, help="A known user's raw id; their whole log is the history.")
@click.option("--items", default=None, metavar="ID,ID,...", help="A raw item history, oldest first.")
@click.option("--times", default=None, metavar="T,T,...",
              help="With --items: one integer timestamp per item (needed by a model that reads them: HSTU with "
                   "time_bias).")
@click.option("--ratings", default=None, metavar="R,R,...",
              help="With --items: one rating per item (needed by a model that reads them: HSTU with inputs "
                   "items_ratings or interleaved).")
@click.option("--users-file", type=click.Path(dir_okay=False, exists=True), default=None,
              help="Recommend for many users: a text file with one user id per line, or a CSV/TSV/Parquet file "
                   "with a 'user' column (else the first). Written as CSV (or Parquet, by --output's extension).")
@click.option("-o", "--output", type=click.Path(dir_okay=False), default=None,
              help="With --users-file: write the table here (.csv or .parquet) instead of printing CSV.")
@click.option("-k", "--k", "k", type=click.IntRange(min=1), default=10, show_default=True, help="Items to return.")
@click.option("--exclude-seen/--include-seen", default=True, show_default=True,
              help="Never recommend items already in the history.")
@click.option("--ignore-unknown", is_flag=True, help="Drop unknown item ids of --items instead of failing.")
@click.option("--titles", type=click.Path(dir_okay=False, exists=True), default=None,
              help="Item metadata to show titles: MovieLens movies.dat (id::title::genres) or a CSV/TSV whose "
                   "first column is the item id, with a 'title' column (else the second column).")
@click.option("--item-map", default=None, metavar="PATH|identity",
              help="With --titles: a 'run_id original_id' file mapping the run's item ids to the metadata's (found "
                   "by itself when a '*_to_original_items.txt' lies beside the run's data file), or 'identity'. "
                   "Needed for a run trained on a renumbered copy (pairs, sequences, sessions files).")
@click.option("--ann", is_flag=True, help="Approximate top-k with a faiss HNSW index (pip install 'seqrec[ann]').")
@click.option("--json", "as_json", is_flag=True, help="Print the answer as JSON.")
def recommend(run_dir: str, user: str | None, items: str | None, times: str | None, ratings: str | None,
              users_file: str | None, output: str | None, k: int, exclude_seen: bool, ignore_unknown: bool,
              titles: str | None, item_map: str | None, ann: bool, as_json: bool) -> None:
    """Top-k items for a user (--user), a raw item history (--items) or many users (--users-file).

    Item ids in and out are the ids of the run's data file; --titles are joined through --item-map when the run
    was trained on a renumbered copy (the SASRec ML-1M file's map is found by itself).
    """
    from seqrec.recommend import Recommender, item_titles

    given = [name for name, value in (("--user", user), ("--items", items), ("--users-file", users_file))
             if value is not None]
    if len(given) != 1:
        raise click.UsageError("give exactly one of --user, --items or --users-file")
    if output is not None and users_file is None:
        raise click.UsageError("--output goes with --users-file")
    if times is not None and items is None:
        raise click.UsageError("--times goes with --items")
    if ratings is not None and items is None:
        raise click.UsageError("--ratings goes with --items")
    if item_map is not None and titles is None:
        raise click.UsageError("--item-map goes with --titles")
    stamps = _integers(times, "--times") if times is not None else None
    rated = _numbers(ratings, "--ratings") if ratings is not None else None
    rec = Recommender.load(run_dir, ann=ann)
    names = None
    if titles:
        names, how = item_titles(rec, titles, item_map)
        click.echo(how, err=True)
    if users_file is not None:
        _recommend_users_file(rec, users_file, output, k, exclude_seen, names)
        return
    history = [part.strip() for part in items.split(",") if part.strip()] if items is not None else None
    answer = rec.recommend(user, history=history, k=k, exclude_seen=exclude_seen, ignore_unknown=ignore_unknown,
                           times=stamps, ratings=rated)
    rows = [{"rank": rank, "item": item, "score": score, **({"title": names.get(str(item))} if names else {})}
            for rank, (item, score) in enumerate(answer.items, 1)]
    if as_json:
        click.echo(json.dumps({**answer.to_dict(), "items": rows}, indent=1, default=str))
        return
    what = f"user {user}" if user is not None else f"a history of {answer.history_length} items"
    click.echo(f"top-{k} for {what}" + (f" (the model read the last {answer.used_length})"
                                         if answer.truncated else ""))
    if answer.ignored:
        click.echo(f"ignored unknown item ids: {', '.join(map(str, answer.ignored))}")
    for row in rows:
        title = f"  {row['title']}" if names else ""
        click.echo(f"{row['rank']:>4}  {row['item']!s:>10}  {row['score']:.4f}{title}")


def _integers(text: str, option: str) -> list[int]:
    """'1,2,3' -> [1, 2, 3]; a UsageError naming the value that is not an integer."""
    values = []
    for position, part in enumerate((p.strip() for p in text.split(",")), 1):
        try:
            values.append(int(part))
        except ValueError:
            raise click.UsageError(f"{option}: value {position} ({part!r}) is not an integer timestamp") from None
    return values


def _numbers(text: str, option: str) -> list[float]:
    """'4,3.5,5' -> [4.0, 3.5, 5.0]; a UsageError naming the value that is not a finite number."""
    import math

    values = []
    for position, part in enumerate((p.strip() for p in text.split(",")), 1):
        try:
            value = float(part)
        except ValueError:
            value = float("nan")
        if not math.isfinite(value):
            raise click.UsageError(f"{option}: value {position} ({part!r}) is not a number")
        values.append(value)
    return values


def _recommend_users_file(rec: Recommender, users_file: str, output: str | None, k: int, exclude_seen: bool,
                          names: dict[str, str] | None) -> None:
    import polars as pl

    from seqrec.data.sidefiles import read_user_ids

    table = rec.recommend_batch(read_user_ids(users_file), k=k, exclude_seen=exclude_seen)
    table = table.rename({"query": "user"})
    if names:
        table = table.with_columns(pl.col("item").cast(pl.Utf8).replace_strict(names, default=None).alias("title"))
    if output is None:
        click.echo(table.write_csv(), nl=False)
        return
    import os

    target = Path(output)
    if not target.parent.is_dir():
        raise SeqrecError(f"cannot write {output}: the folder {target.parent} does not exist")
    partial = target.with_name(f".{target.name}.{os.getpid()}.partial")   # a file already there stays whole
    try:
        if target.suffix == ".parquet":
            table.write_parquet(partial)
        else:
            table.write_csv(partial)
        os.replace(partial, target)
    except (OSError, pl.exceptions.PolarsError) as error:      # a read-only or full disk, a missing folder
        partial.unlink(missing_ok=True)
        reason = getattr(error, "strerror", None) or str(error).splitlines()[0][:200]
        raise SeqrecError(f"cannot write {output}: {reason}") from None
    else:
        click.echo(f"wrote {table.height} rows ({table['user'].n_unique()} users) to {output}", err=True)


@cli.command()
@click.argument("run_dir", type=click.Path(file_okay=False, exists=True))
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Interface to listen on; 127.0.0.1 keeps the service local (0.0.0.0 exposes it).")
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True, help="TCP port.")
@click.option("--max-k", type=click.IntRange(min=1), default=1000, show_default=True, help="Largest k accepted.")
@click.option("--max-items", type=click.IntRange(min=1), default=10_000, show_default=True,
              help="Longest history, allow or deny list accepted in one request.")
@click.option("--max-body-bytes", type=click.IntRange(min=1), default=1_000_000, show_default=True,
              help="Largest request body.")
@click.option("--max-batch", type=click.IntRange(min=1), default=64, show_default=True,
              help="Most concurrent requests answered by one forward pass.")
@click.option("--threads", type=click.IntRange(min=1), default=1, show_default=True,
              help="Scoring threads (the bounded pool that runs the model).")
@click.option("--torch-threads", type=click.IntRange(min=1), default=None,
              help="torch intra-op threads (default: torch's, one per core).")
@click.option("--access-log", is_flag=True, help="Log every request (slower).")
@click.option("--ann", is_flag=True, help="Approximate top-k with a faiss HNSW index (pip install 'seqrec[ann]').")
@click.option("--api-key-file", type=click.Path(dir_okay=False), default=None, metavar="PATH",
              help="File holding the API key (its first line; at least 16 characters). Every endpoint but /health "
                   "then needs 'Authorization: Bearer KEY' (or 'X-API-Key: KEY'). Default: $SEQREC_API_KEY.")
@click.option("--no-auth", is_flag=True,
              help="Serve without an API key on a non-loopback --host on purpose (refused otherwise).")
def serve(run_dir: str, host: str, port: int, max_k: int, max_items: int, max_body_bytes: int, max_batch: int,
          threads: int, torch_threads: int | None, access_log: bool, ann: bool, api_key_file: str | None,
          no_auth: bool) -> None:
    """Serve top-k recommendations of a trained run over HTTP (POST /recommend, GET /health, GET /model).

    With an API key (--api-key-file or $SEQREC_API_KEY) every endpoint but /health needs it; a host other than
    loopback without a key is refused unless --no-auth. SIGTERM answers the requests in flight, then exits.
    """
    from seqrec.serve import ServeSettings, check_exposure, resolve_api_key
    from seqrec.serve import serve as run_server

    key, source = resolve_api_key(api_key_file)
    check_exposure(host, key is not None, no_auth)                 # before minutes of model loading
    settings = ServeSettings(max_k=max_k, max_items=max_items, max_body_bytes=max_body_bytes, max_batch=max_batch,
                             threads=threads)
    access = f"API key from {source} required" if key else "no API key (anyone who reaches the port may ask)"

    def ready(rec: Recommender) -> None:
        click.echo(f"serving {rec.describe()['model']} ({rec.num_items} items) from {run_dir} on "
                   f"http://{host}:{port} (docs: /docs); {access}", err=True)

    def stopped() -> None:
        click.echo("stopped: every request in flight was answered", err=True)

    run_server(run_dir, host=host, port=port, settings=settings, torch_threads=torch_threads,
               access_log=access_log, ann=ann, on_ready=ready, api_key=key, no_auth=no_auth, on_stop=stopped)


@cli.command()
@click.option("--epochs", type=click.IntRange(min=1), default=30, show_default=True, help="SASRec epochs at most.")
@click.option("--out", type=click.Path(file_okay=False), default=None,
              help="Keep the SASRec run (checkpoints, curves, results) in this directory.")
def quickstart(epochs: int, out: str | None) -> None:
    """Demo: built-in synthetic data -> Pop and SASRec -> a metrics table and example recommendations."""
    from seqrec import api
    from seqrec.data import splits
    from seqrec.data.pipeline import load

    _setup_logging(quiet=False)
    data = load("demo")
    split = splits.leave_one_out(data)
    summary = data.summary()
    summary["split"] = split.summary()
    _print_summary(summary)
    runs = {"pop": api.train(split, model="pop", train={"progress": False})}
    runs["sasrec"] = api.train(split, model=QUICKSTART_SASREC, out=out, train={**QUICKSTART_TRAIN, "epochs": epochs})
    _print_results({f"{name} (test)": run.results["test"] for name, run in runs.items()},
                   title="demo data, leave-one-out, full ranking")
    users = data.users.decode(split.test.users[:3])
    for user in users:
        user = user.item() if hasattr(user, "item") else user
        recs = runs["sasrec"].recommend(user=user, k=5)
        click.echo(f"user {user}: top-5 {[item for item, _ in recs]}")


QUICKSTART_SASREC = {"name": "sasrec", "dim": 32, "num_blocks": 2, "max_len": 50, "dropout": 0.2}
QUICKSTART_TRAIN = {"lr": 2e-3, "batch_size": 128, "patience": 3}


def _setup_logging(quiet: bool) -> None:
    import logging

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger = logging.getLogger("seqrec")
    logger.handlers[:] = [handler]
    logger.setLevel(logging.WARNING if quiet else logging.INFO)
    logger.propagate = False


def _print_results(rows: dict[str, dict[str, float]], title: str) -> None:
    from seqrec.evaluate.report import format_table

    click.echo(title)
    click.echo(format_table(rows, metrics=_HEADLINE))


_HEADLINE = ["HR@1", "HR@10", "NDCG@10", "HR@50", "NDCG@50", "MRR"]


def _print_summary(summary: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table("", "value", show_header=False, title="prepared data")
    split = summary.pop("split", None)
    for key, value in summary.items():
        table.add_row(key, _show(key, value))
    if split:
        for key, value in split.items():
            table.add_row(f"split.{key}", _show(key, value))
    Console().print(table)


def _show(key: str, value: object) -> str:
    if key in ("time_min", "time_max", "valid_time", "test_time") and isinstance(value, int) \
            and 1e8 < value < 1e10:
        return f"{value} ({datetime.fromtimestamp(value, UTC):%Y-%m-%d %H:%M:%S} UTC)"
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


_RESOURCE_ERRORS = {errno.ENOSPC, errno.EROFS, errno.EACCES, errno.EPERM, errno.EDQUOT, errno.ENAMETOOLONG, errno.EIO}


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `seqrec` console script."""
    try:
        cli.main(args=argv, prog_name="seqrec", standalone_mode=False)
    except SeqrecError as exc:
        click.echo(f"error: {exc}", err=True)
        return 1
    except OSError as exc:
        if exc.errno not in _RESOURCE_ERRORS:
            raise
        # a full, read-only or forbidden disk: every write is atomic, so what was there is intact
        where = f"{exc.filename}: " if exc.filename else ""
        click.echo(f"error: {where}{exc.strerror or exc} (nothing written there was left half-done)", err=True)
        return 1
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        return 130
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
