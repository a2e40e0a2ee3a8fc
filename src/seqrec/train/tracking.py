"""Optional experiment tracking: a run's config, per-epoch metrics and final results sent to TensorBoard and MLflow.

Nothing is sent anywhere unless the config asks (`train.tensorboard: true`, `train.mlflow: true`), and then only to
local files by default: TensorBoard event files under `<run dir>/tensorboard`, an MLflow SQLite store
`<run dir>/mlflow.db` (artifacts in `<run dir>/mlartifacts`) unless `train.mlflow_uri` names another. The run
directory (`log.jsonl`, `results.json`) stays the source of truth; these are copies for the users' usual viewers:

    tensorboard --logdir runs/                      # every run under runs/
    mlflow ui --backend-store-uri sqlite:///runs/my-run/mlflow.db

Per epoch: `loss`, `lr`, `seconds`, `sequences_per_second`, `peak_memory_mb` and `valid/<metric>` (and
`test/<metric>` with `eval.report_test`), at step = epoch; at the end `final/valid/<metric>` and `final/test/<metric>`
of the best epoch. The packages are imported only when asked for, and a missing one is a ConfigError saying
which extra to install.
"""

from __future__ import annotations

import importlib.util
import json
import math
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

from seqrec.config import RunConfig, config_to_dict
from seqrec.errors import ConfigError

EpochHook = Callable[[int, dict], "str | None"]
_SCALARS = ("loss", "lr", "seconds", "sequences_per_second", "peak_memory_mb")


def epoch_metrics(record: dict) -> dict[str, float]:
    """The finite numbers of one epoch record, flat: `loss`, `lr`, ..., `valid/NDCG@10`, `test/HR@10`."""
    out = {name: record[name] for name in _SCALARS if isinstance(record.get(name), (int, float))}
    for split in ("valid", "test"):
        out.update({f"{split}/{name}": value for name, value in (record.get(split) or {}).items()})
    return {name: float(value) for name, value in out.items() if math.isfinite(float(value))}


def flat_config(config: RunConfig) -> dict[str, str]:
    """`section.key` -> the value as text (lists and mappings as JSON), for MLflow params."""
    return {f"{section}.{key}": value if isinstance(value, str) else json.dumps(value)
            for section, values in config_to_dict(config).items() for key, value in values.items()}


def _require(module: str, key: str, extra: str) -> None:
    if importlib.util.find_spec(module) is None:
        raise ConfigError(f"{key}: true needs the {module} package, which is not installed; "
                          f"pip install 'seqrec[{extra}]' (or set {key}: false)")


class _TensorBoard:
    def __init__(self, config: RunConfig, run_dir: Path) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=str(run_dir / "tensorboard"))
        text = yaml.safe_dump(config_to_dict(config), sort_keys=False)
        self.writer.add_text("config", "```yaml\n" + text + "```", global_step=0)

    def epoch(self, epoch: int, metrics: dict[str, float]) -> None:
        for name, value in metrics.items():
            self.writer.add_scalar(name, value, global_step=epoch)
        self.writer.flush()

    def finish(self, metrics: dict[str, float], step: int, failed: bool) -> None:
        for name, value in metrics.items():
            self.writer.add_scalar(name, value, global_step=step)
        self.writer.close()


class _MLflow:
    """One MLflow run per run directory (its id kept in `<run dir>/mlflow.json`, so --resume continues it)."""

    def __init__(self, config: RunConfig, run_dir: Path | None) -> None:
        from mlflow import MlflowClient
        from mlflow.entities import Param

        t = config.train
        if t.mlflow_uri is None:       # the local store in the run directory; check() refuses a run without one
            assert run_dir is not None
            uri = f"sqlite:///{(run_dir / 'mlflow.db').resolve()}"
            location: str | None = (run_dir / "mlartifacts").resolve().as_uri()
        else:
            uri, location = t.mlflow_uri, None
        self.client = MlflowClient(tracking_uri=uri)
        self.marker = run_dir / "mlflow.json" if run_dir is not None else None
        previous = json.loads(self.marker.read_text()) if self.marker is not None and self.marker.exists() else {}
        if previous.get("tracking_uri") == uri:
            self.run_id = previous["run_id"]
            self.client.update_run(self.run_id, status="RUNNING")
            return
        experiment = self.client.get_experiment_by_name(t.mlflow_experiment)
        experiment_id = (experiment.experiment_id if experiment is not None else
                         self.client.create_experiment(t.mlflow_experiment, artifact_location=location))
        name = run_dir.name if run_dir is not None else config.model.name
        self.run_id = self.client.create_run(experiment_id, run_name=name, tags={
            "seqrec.model": config.model.name, "seqrec.run_dir": str(run_dir.resolve()) if run_dir else ""}).info.run_id
        params = [Param(key, value[:6000]) for key, value in flat_config(config).items()]
        for start in range(0, len(params), 100):                       # MLflow takes 100 params a batch
            self.client.log_batch(self.run_id, params=params[start:start + 100])
        if self.marker is not None:
            from seqrec.train.runlog import write_json

            write_json(self.marker, {"tracking_uri": uri, "run_id": self.run_id})

    def epoch(self, epoch: int, metrics: dict[str, float]) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self.client.log_batch(self.run_id, metrics=[Metric(_mlflow_name(name), value, now, epoch)
                                                    for name, value in metrics.items()])

    def finish(self, metrics: dict[str, float], step: int, failed: bool) -> None:
        if metrics:
            self.epoch(step, metrics)
        self.client.set_terminated(self.run_id, status="FAILED" if failed else "FINISHED")


def _mlflow_name(name: str) -> str:
    """MLflow keys allow letters, digits, `_ - . / :` and spaces: `valid/NDCG@10` -> `valid/NDCG_at_10`."""
    return re.sub(r"[^\w\-./: ]", "_", name.replace("@", "_at_"))


def check(config: RunConfig, run_dir: str | Path | None) -> None:
    """Raise the ConfigError that tracking would raise (a missing package, no place for the files) before a run
    writes anything."""
    if config.train.tensorboard:
        _require("tensorboard", "train.tensorboard", "tensorboard")
        if run_dir is None:
            raise ConfigError("train.tensorboard: the event files go in the run directory; give the run one (--out)")
    if config.train.mlflow:
        _require("mlflow", "train.mlflow", "mlflow")
        if config.train.mlflow_uri is None and run_dir is None:
            raise ConfigError("train.mlflow: the default store lives in the run directory; give the run one "
                              "(--out) or set train.mlflow_uri")


class Tracker:
    """The trackers a config asks for (none: every call does nothing)."""

    def __init__(self, config: RunConfig, run_dir: Path | None) -> None:
        check(config, run_dir)
        self.sinks: list[Any] = []
        if config.train.tensorboard:
            assert run_dir is not None      # check() refuses TensorBoard without a run directory
            self.sinks.append(_TensorBoard(config, run_dir))
        if config.train.mlflow:
            self.sinks.append(_MLflow(config, run_dir))

    def hook(self, then: EpochHook | None = None) -> EpochHook | None:
        """The trainer's `on_epoch`: send the epoch's record, then call `then` (its answer stops training)."""
        if not self.sinks:
            return then

        def on_epoch(epoch: int, record: dict) -> str | None:
            metrics = epoch_metrics(record)
            for sink in self.sinks:
                sink.epoch(epoch, metrics)
            return then(epoch, record) if then is not None else None

        return on_epoch

    def finish(self, results: dict | None, failed: bool = False) -> None:
        """Send the final (best-epoch) metrics and close; `failed` marks an MLflow run FAILED."""
        results = results or {}
        metrics = {f"final/{split}/{name}": float(value) for split in ("valid", "test")
                   for name, value in (results.get(split) or {}).items() if math.isfinite(float(value))}
        for sink in self.sinks:
            sink.finish(metrics, int(results.get("best_epoch") or 0), failed)
        self.sinks = []


@contextmanager
def track(config: RunConfig, run_dir: Path | None, enabled: bool = True) -> Iterator[Tracker]:
    """A Tracker for the run (`enabled` False: one that sends nothing, e.g. on DDP ranks other than 0); closed
    on the way out, marked failed if an exception leaves the block before `finish`."""
    tracker = Tracker(config, run_dir) if enabled else Tracker(RunConfig(), None)
    try:
        yield tracker
    except BaseException:
        tracker.finish(None, failed=True)
        raise
    tracker.finish(None)
