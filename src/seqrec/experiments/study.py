"""Hyper-parameter search (`seqrec tune`): an Optuna study whose trials are ordinary seqrec runs.

A study directory holds:

    study.db          the Optuna study (SQLite): every trial's parameters, per-epoch reports and state
    study.json        how the study was started: seed, metric, pruning, the config file and --set items
    base.yaml         the resolved config every trial starts from (--set applied)
    space.yaml        the search space
    trials/trial-NNNN/  one ordinary run directory per trial (config, log, checkpoints, curves, results)
    best.yaml         the best trial's config, ready for `seqrec train -c`
    best.json         the best trial: parameters, validation metrics and its test metrics (evaluated once)

The objective is the full validation metric `eval.metric` of each trial's best epoch; trials never look at the
test targets (`api.train(..., evaluate_test=False)`), only the best trial is tested, once, at the end. Each epoch's
validation value is reported to the pruner (median rule), which stops a trial worse than the median of the
earlier trials at the same epoch (never before `prune_after` epochs, 5 by default: early epochs are noisy); the
stopped run directory is complete (it says why it stopped).

Every trial trains with the study's seed (`--seed`, default `train.seed`) unless `train.seed` is searched, and the
TPE sampler is seeded with it, so a study run from start to end is reproduced by its seed. A study can be
continued (`--resume`) after a crash, Ctrl-C or `kill -9`: a trial left running by a process that no longer exists
is marked failed and queued again with the same parameters, and its run directory resumes from its last finished
epoch; finished trials are never repeated. Several processes may work on one study at once (SQLite locking); each
stops when the study holds `--trials` finished trials.
"""

from __future__ import annotations

import json
import logging
import math
import os
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

import yaml

from seqrec.config import config_hash, config_to_dict, dump_config, load_config
from seqrec.errors import ConfigError, SeqrecError
from seqrec.experiments.space import Dimension, check_space, override, read_space, space_to_dict
from seqrec.rundir import RunDir
from seqrec.train.runlog import EpochLog, write_json, write_text

if TYPE_CHECKING:   # the `tune` extra; imported when a study runs
    from optuna import Study, Trial
    from optuna.storages import BaseStorage
    from optuna.trial import FrozenTrial

log = logging.getLogger(__name__)
STUDY_NAME = "seqrec"


@dataclass
class StudyResult:
    """What `tune` found: one row per trial, the best trial, and where things were written."""

    out: Path
    metric: str
    rows: list[dict] = field(default_factory=list)
    best: dict | None = None
    seconds: float = 0.0


def tune(config: str | Path | None, space: str | Path | None, *, out: str | Path, trials: int,
         overrides: Sequence[str] = (), timeout_minutes: float | None = None, resume: bool = False,
         seed: int | None = None, prune: bool = True, prune_after: int = 5) -> StudyResult:
    """Run (or continue) a study of `trials` trials in `out`; returns the trial table and the best trial.

    Args:
        config: the YAML config every trial starts from (None: the built-in defaults; with `resume`, None means
            the study's own `base.yaml`).
        space: the search-space YAML (see `seqrec.experiments.space`); with `resume`, None means the study's own.
        out: the study directory.
        trials: finished trials (complete, pruned or failed) the study should hold; more on a resume.
        overrides: `--set` items fixed for every trial.
        timeout_minutes: stop starting trials after this long (the one running finishes).
        resume: continue the study in `out` (also how a second process joins a running study).
        seed: the study's seed (sampler and trials); default `train.seed` of the config.
        prune: stop trials whose validation curve falls below the median of earlier trials.
        prune_after: validated epochs a trial always gets before it may be pruned (early epochs are noisy).

    Raises:
        ConfigError: a bad config, space or key (before any trial runs); `out` holding a study without
            `resume`, or none with it; a resumed study asked to change its config, space or seed.
    """
    optuna = _optuna()
    out = Path(out)
    started = time.perf_counter()
    settings = _open_study_dir(out, config, space, overrides, resume, seed, prune, prune_after)
    dims = read_space(out / "space.yaml")
    metric = load_config(out / "base.yaml").eval.metric
    storage = optuna.storages.RDBStorage(f"sqlite:///{(out / 'study.db').resolve()}",
                                         engine_kwargs={"connect_args": {"timeout": 120}})
    sampler = optuna.samplers.TPESampler(seed=settings["seed"], n_startup_trials=min(10, max(3, trials // 3)))
    pruner = (optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=settings.get("prune_after", 5))
              if settings["prune"]
              else optuna.pruners.NopPruner())
    study = optuna.create_study(study_name=STUDY_NAME, storage=storage, sampler=sampler, pruner=pruner,
                                direction="maximize", load_if_exists=True)
    requeue_interrupted(study, storage)
    objective = _Objective(out, dims, metric, settings["seed"])
    remaining = trials - finished_count(study)
    if remaining > 0 and (timeout_minutes is None or timeout_minutes > 0):
        def enough(study: Study, _trial: FrozenTrial) -> None:   # other processes may be finishing trials too
            if finished_count(study) >= trials:
                study.stop()

        study.optimize(objective, timeout=None if timeout_minutes is None else timeout_minutes * 60,
                       callbacks=[enough], catch=(SeqrecError,), gc_after_trial=True)
    result = StudyResult(out, metric, rows=trial_rows(study), seconds=time.perf_counter() - started)
    result.best = write_best(study, out, metric)
    return result


def _optuna() -> ModuleType:
    try:
        import optuna
    except ImportError:
        raise ConfigError("seqrec tune needs optuna, which is not installed; pip install 'seqrec[tune]'") from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)     # seqrec prints its own lines and table
    return optuna


def _open_study_dir(out: Path, config: str | Path | None, space: str | Path | None, overrides: Sequence[str],
                    resume: bool, seed: int | None, prune: bool, prune_after: int) -> dict:
    """Create the study directory (config, space and settings fixed there), or check a resumed one's."""
    stored = out / "study.json"
    if resume and not stored.exists():
        raise ConfigError(f"--resume: {out} holds no study (no study.json); check the name, or drop --resume to "
                          "start a new study there")
    if not resume and stored.exists():
        raise ConfigError(f"{out} already holds a study; pass --resume to continue it (or to join it from "
                          "another process), or choose another --out")
    if not resume and space is None:
        raise ConfigError("a new study needs a search space (--space SPACE.yaml)")
    if config is None and resume:
        config = out / "base.yaml"                # a resumed study's own config, with any --set given now
    if space is not None:
        dims = read_space(space)
        check_space(dims, config, overrides, source=f"search space {space}")
    base = load_config(config, overrides)
    if base.split.validation == "none":
        raise ConfigError("a search chooses among trials on validation metrics, but split.validation is 'none' "
                          "(no validation targets); use split.validation: item")
    if not resume:
        seed = base.train.seed if seed is None else seed
        settings = {"seed": seed, "prune": prune, "prune_after": prune_after,
                    "config": str(config) if config is not None else None, "overrides": list(overrides),
                    "created": time.strftime("%Y-%m-%d %H:%M:%S")}
        out.mkdir(parents=True, exist_ok=True)
        dump_config(base, out / "base.yaml")
        write_text(out / "space.yaml", yaml.safe_dump(space_to_dict(dims), sort_keys=False))
        write_json(stored, settings)       # last: a study.json means the directory is complete
        return settings
    settings = json.loads(stored.read_text())
    changed = []
    if config_hash(base) != config_hash(load_config(out / "base.yaml")):
        changed.append("the config (-c / --set)")
    if space is not None and space_to_dict(dims) != space_to_dict(read_space(out / "space.yaml")):
        changed.append("the search space")
    if seed is not None and seed != settings["seed"]:
        changed.append(f"the seed ({settings['seed']} -> {seed})")
    if changed:
        raise ConfigError(f"--resume: {' and '.join(changed)} differ(s) from the study stored in {out}; resume "
                          "with the same ones (or just `seqrec tune --out STUDY --resume`), or start a new --out")
    return settings


class _Objective:
    """One trial: its config (base + sampled values), an ordinary run directory, pruning by epoch."""

    def __init__(self, out: Path, dims: Sequence[Dimension], metric: str, seed: int) -> None:
        self.out, self.dims, self.metric, self.seed = out, dims, metric, seed

    def __call__(self, trial: Trial) -> float:
        import optuna

        from seqrec import api

        params = {dim.key: dim.suggest(trial) for dim in self.dims}
        run_name = trial.user_attrs.get("run_dir") or f"trials/trial-{trial.number:04d}"
        trial.set_user_attr("run_dir", run_name)
        trial.set_user_attr("process", process_token())
        run_dir = self.out / run_name
        resume = RunDir(run_dir).exists
        # model.name first: another model starts from its own defaults, then gets its searched keys
        items = [override(key, value) for key, value in sorted(params.items(), key=lambda kv: kv[0] != "model.name")]
        if "train.seed" not in params:
            items.insert(0, override("train.seed", self.seed))
        config = load_config(self.out / "base.yaml", items)
        shown = ", ".join(f"{key}={_short(value)}" for key, value in params.items())
        log.info("trial %d%s: %s", trial.number, " (resumed)" if resume else "", shown)
        if resume:                                   # what the interrupted attempt had seen, for the pruner
            for record in EpochLog(RunDir(run_dir).log).records():
                if isinstance(record.get("valid"), dict):
                    trial.report(float(record["valid"][self.metric]), record["epoch"])
        pruned: list[int] = []

        def on_epoch(epoch: int, record: dict) -> str | None:
            if "valid" not in record:
                return None
            value = float(record["valid"][self.metric])
            trial.report(value if math.isfinite(value) else -math.inf, epoch)
            if not trial.should_prune():
                return None
            pruned.append(epoch)
            return f"pruned by the study (median rule) after epoch {epoch}: valid {self.metric} {value:.4f}"

        try:
            run = api.train(config=config, out=run_dir, resume=resume, on_epoch=on_epoch, evaluate_test=False)
        except KeyboardInterrupt:
            trial.set_user_attr("interrupted", True)          # queued again by the next --resume
            raise
        except SeqrecError as error:                          # a failed trial (the study goes on): say why
            trial.set_user_attr("error", str(error).splitlines()[0])
            log.warning("trial %d failed: %s", trial.number, error)
            raise
        results = run.results
        trial.set_user_attr("best_epoch", results.get("best_epoch"))
        trial.set_user_attr("epochs_run", results.get("epochs_run"))
        trial.set_user_attr("train_seconds", results.get("train_seconds"))
        if results.get("stopped"):
            trial.set_user_attr("stopped", results["stopped"])
        if pruned:
            raise optuna.TrialPruned(results["stopped"])
        return float(results["valid"][self.metric])


def _short(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


# ------------------------------------------------------------------------------------------- interrupted trials

def process_token() -> str:
    """`host:pid:start` of this process (start = its start time in clock ticks on Linux, against pid reuse)."""
    return f"{socket.gethostname()}:{os.getpid()}:{_start_time(os.getpid())}"


def _start_time(pid: int) -> str:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return "?"
    return stat.rpartition(")")[2].split()[19]            # field 22 of proc(5), counted after the command name


def _is_gone(token: str | None) -> bool:
    """Whether the process of a `process_token` surely no longer runs (False when it cannot be told: another host)."""
    if not token:
        return False
    host, _, rest = token.partition(":")
    pid_text, _, start = rest.partition(":")
    if host != socket.gethostname() or not pid_text.isdigit():
        return False
    pid = int(pid_text)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return start not in ("?", _start_time(pid))           # the pid was reused by another process


def requeue_interrupted(study: Study, storage: BaseStorage) -> list[int]:
    """Mark trials left RUNNING by a dead process failed (interrupted), and queue every interrupted trial once
    again with its parameters and run directory (the new trial resumes it). Returns the requeued trial numbers."""
    from optuna.trial import TrialState

    study_id = storage.get_study_id_from_name(study.study_name)
    for trial in study.get_trials(deepcopy=False):
        if trial.state == TrialState.RUNNING and _is_gone(trial.user_attrs.get("process")):
            trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, trial.number)
            storage.set_trial_user_attr(trial_id, "interrupted", True)
            storage.set_trial_state_values(trial_id, TrialState.FAIL)
    trials = study.get_trials(deepcopy=False)
    retried = {t.user_attrs.get("retry_of") for t in trials}
    requeued = []
    for trial in trials:
        if trial.state == TrialState.FAIL and trial.user_attrs.get("interrupted") and trial.number not in retried:
            study.enqueue_trial(trial.params, user_attrs={"run_dir": trial.user_attrs.get("run_dir"),
                                                          "retry_of": trial.number})
            requeued.append(trial.number)
    if requeued:
        log.info("queued again the interrupted trial(s) %s; their run directories resume",
                 ", ".join(map(str, requeued)))
    return requeued


def finished_count(study: Study) -> int:
    """Trials that count towards --trials: complete, pruned, or failed for a reason other than an interruption."""
    from optuna.trial import TrialState

    return sum(1 for t in study.get_trials(deepcopy=False)
               if t.state in (TrialState.COMPLETE, TrialState.PRUNED)
               or (t.state == TrialState.FAIL and not t.user_attrs.get("interrupted")))


# ------------------------------------------------------------------------------------------------- summary

def trial_rows(study: Study) -> list[dict]:
    """One row per trial: number, state, value, parameters, best epoch, epochs run, minutes, run directory."""
    rows = []
    for trial in study.get_trials(deepcopy=False):
        note = trial.user_attrs.get("stopped") or trial.user_attrs.get("error") or ""
        if trial.user_attrs.get("interrupted"):
            note = "interrupted (queued again)"
        elif trial.user_attrs.get("retry_of") is not None:
            note = f"resumes trial {trial.user_attrs['retry_of']}" + (f"; {note}" if note else "")
        seconds = trial.user_attrs.get("train_seconds")
        rows.append({"trial": trial.number, "state": trial.state.name.lower(),
                     "value": trial.value if trial.value is not None else
                     (trial.intermediate_values[max(trial.intermediate_values)] if trial.intermediate_values
                      else None),
                     "params": dict(trial.params), "best_epoch": trial.user_attrs.get("best_epoch"),
                     "epochs": trial.user_attrs.get("epochs_run"),
                     "minutes": round(seconds / 60, 2) if seconds is not None else None,
                     "run_dir": trial.user_attrs.get("run_dir"), "note": note})
    return rows


def write_best(study: Study, out: Path, metric: str) -> dict | None:
    """Write best.yaml and best.json for the best complete trial, testing it once (None: no trial completed).

    The test metrics are computed the first time a trial is the best and kept in best.json (and the trial's
    results.json); a later resume with the same best trial reuses them."""
    from optuna.trial import TrialState

    if not any(t.state == TrialState.COMPLETE for t in study.get_trials(deepcopy=False)):
        return None
    trial = study.best_trial
    run_dir = out / trial.user_attrs["run_dir"]
    previous = json.loads((out / "best.json").read_text()) if (out / "best.json").exists() else {}
    if previous.get("trial") == trial.number and "test" in previous:
        return previous
    from seqrec.api import Run

    run = Run.load(run_dir)
    test = run.evaluate("test")
    write_json(RunDir(run_dir).results, {**run.results, "test": test})
    best = {"trial": trial.number, "params": dict(trial.params), "metric": metric, "value": trial.value,
            "valid": run.results.get("valid"), "test": test, "best_epoch": run.results.get("best_epoch"),
            "run_dir": str(trial.user_attrs["run_dir"])}
    header = (f"# The best trial ({trial.number}) of the study in {out}: valid {metric} {trial.value:.4f}, "
              f"test {metric} {test.get(metric, float('nan')):.4f}.\n"
              f"# Searched values: {', '.join(f'{k}={_short(v)}' for k, v in trial.params.items())}\n"
              f"# Train it again: seqrec train -c {out / 'best.yaml'}\n")
    dumped = yaml.safe_dump(config_to_dict(run.config), sort_keys=False, allow_unicode=True)
    write_text(out / "best.yaml", header + dumped)
    write_json(out / "best.json", best)
    return best
