"""`seqrec train`, `evaluate` and `quickstart`."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING

import click

from seqrec.cli.app import cli, print_results, print_summary, setup_logging

if TYPE_CHECKING:  # names for annotations only: importing them at run time would load torch at start-up
    from seqrec.config import RunConfig


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

    setup_logging(quiet)
    config = _train_config(config_path, overrides, out, resume, quiet)
    if config_path is None and not resume and config is not None:
        default = config.data.path == "demo" and config.model.name == "sasrec"
        what = ("the built-in default, SASRec on the demo data" if default else
                f"the built-in defaults with --set: {config.model.name} on {config.data.path}")
        click.echo(f"no -c CONFIG given: training {what} (see configs/ for others, `seqrec train --keys` for every "
                   "setting)", err=True)
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
    rows = {name: run.results[name] for name in ("valid", "test") if run.results.get(name)}
    chosen = "best epoch" if run.results.get("valid") else "last epoch (no validation)"
    print_results(rows, title=f"{run.config.model.name}: {chosen} {run.results['best_epoch']}")
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
@click.option("--exclude-history", "exclusion", type=click.Choice(["true", "false", "window"]), default=None,
              help="Items of the user's history never ranked: the whole history, none, or the last model.max_len "
                   "(the window the model reads). Default: the run's eval.exclude_history.")
@click.option("--json", "as_json", is_flag=True, help="Print the metrics as JSON.")
def evaluate(run_dir: str, split_name: str, exclusion: str | None, as_json: bool) -> None:
    """Evaluate the best checkpoint of a run directory with full ranking."""
    from seqrec.api import Run

    run = Run.load(run_dir)
    names = ["valid", "test"] if split_name == "both" else [split_name]
    exclude = {"true": True, "false": False, "window": "window", None: None}[exclusion]
    rows = {name: run.evaluate(name, exclude_history=exclude) for name in names}
    if as_json:
        click.echo(json.dumps(rows, indent=1))
    else:
        print_results(rows, title=f"{run.config.model.name} ({run_dir})")


@cli.command()
@click.option("--epochs", type=click.IntRange(min=1), default=30, show_default=True, help="SASRec epochs at most.")
@click.option("--out", type=click.Path(file_okay=False), default=None,
              help="Keep the SASRec run (checkpoints, curves, results) in this directory.")
def quickstart(epochs: int, out: str | None) -> None:
    """Demo: built-in synthetic data -> Pop and SASRec -> a metrics table and example recommendations."""
    from seqrec import api
    from seqrec.data import splits
    from seqrec.data.pipeline import load

    setup_logging(quiet=False)
    data = load("demo")
    split = splits.leave_one_out(data)
    summary = data.summary()
    summary["split"] = split.summary()
    print_summary(summary)
    runs = {"pop": api.train(split, model="pop", train={"progress": False})}
    runs["sasrec"] = api.train(split, model=QUICKSTART_SASREC, out=out, train={**QUICKSTART_TRAIN, "epochs": epochs})
    print_results({f"{name} (test)": run.results["test"] for name, run in runs.items()},
                   title="demo data, leave-one-out, full ranking")
    users = data.users.decode(split.test.users[:3])
    for user in users:
        user = user.item() if hasattr(user, "item") else user
        recs = runs["sasrec"].recommend(user=user, k=5)
        click.echo(f"user {user}: top-5 {[item for item, _ in recs]}")


QUICKSTART_SASREC = {"name": "sasrec", "dim": 32, "num_blocks": 2, "max_len": 50, "dropout": 0.2}
QUICKSTART_TRAIN = {"lr": 2e-3, "batch_size": 128, "patience": 3}
