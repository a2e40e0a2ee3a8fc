"""The Python API: from a file (or prepared data) to a trained model, metrics and recommendations.

    data = seqrec.load("ml-1m.txt", format="pairs")
    run = seqrec.train(data, model="sasrec", train={"epochs": 20})
    run.results["test"]["NDCG@10"]
    run.recommend(user=1, k=10)

Every CLI command is one call into this module; the CLI holds no logic of its own.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from seqrec.config import SECTIONS, RunConfig, config_from_dict, config_hash, config_to_dict, dump_config, load_config
from seqrec.data.sequences import SequenceData
from seqrec.data.splits import Split
from seqrec.errors import ConfigError
from seqrec.evaluate import evaluate
from seqrec.models import SequentialRecommender, build_model
from seqrec.rundir import BEST, RunDir
from seqrec.runs import load_data, load_session_split, load_split, make_split, open_run  # noqa: F401
from seqrec.train import distributed, tracking
from seqrec.train.distributed import SINGLE, Dist
from seqrec.train.runlog import make_run_dir, write_json
from seqrec.train.trainer import Trainer

if TYPE_CHECKING:
    from seqrec.recommend import Recommender

log = logging.getLogger(__name__)


def make_config(config: RunConfig | str | Path | None = None, model: str | dict | None = None,
                **sections: dict) -> RunConfig:
    """A validated RunConfig from a config (object or YAML path) with sections updated from dicts.

    `model` is a model name or the whole model section (`{"name": "sasrec", "dim": 32}`);
    `make_config(model="sasrec", train={"epochs": 5})` starts from the defaults.
    """
    if isinstance(model, dict):
        model = dict(model)
        name = model.pop("name", None)
        if model:
            sections["model"] = model
        model = name
    if isinstance(config, (str, Path)):
        config = load_config(config)
    tree = config_to_dict(config if config is not None else RunConfig())
    unknown = set(sections) - set(SECTIONS)
    if unknown:
        raise ConfigError(f"unknown config section(s) {', '.join(sorted(unknown))}; known: {', '.join(SECTIONS)}")
    current = tree["model"].get("name")
    if model is not None and model != current:
        tree["model"] = {"name": model}  # another model: its own defaults, not the old model's keys
    elif model is None and sections.get("model", {}).get("name", current) != current:
        tree["model"] = {}  # likewise when the model section names another model
    for name, values in sections.items():
        tree[name] = {**tree[name], **dict(values or {})}
    return config_from_dict(tree)


@dataclass
class Run:
    """A trained model with its data split, configuration, results and (optionally) run directory."""

    model: SequentialRecommender
    split: Split
    config: RunConfig
    run_dir: Path | None = None
    results: dict = field(default_factory=dict)
    dist: Dist = SINGLE                  # where this process stood in the (distributed) run that trained it

    def evaluate(self, split: str = "test", *, exclude_history: bool | str | None = None) -> dict[str, float]:
        """Full-ranking metrics of the model on the `valid` or `test` targets; `exclude_history` (True, False or
        "window", see `seqrec.evaluate.target_ranks`) overrides the run's `eval.exclude_history`."""
        targets = self.split.targets(split)
        e = self.config.eval
        device = next(iter(self.model.parameters()), torch.empty(0)).device
        exclusion = e.exclude_history if exclude_history is None else exclude_history
        return evaluate(self.model, targets, ks=tuple(e.ks),
                        exclude_history=exclusion, batch_size=e.batch_size, device=device)

    def recommend(self, user: object = None, *, history: Iterable[object] | None = None, k: int = 10,
                  exclude_history: bool = True) -> list[tuple]:
        """Top-k `(raw item id, score)` for a known user (raw id; their whole log is the history) or for
        a raw item `history` (oldest first). See `seqrec.recommend.Recommender` for allow/deny lists and
        batches; unknown ids raise `DataError`."""
        return self.recommender().recommend(user, history=history, k=k, exclude_seen=exclude_history).items

    def recommender(self) -> Recommender:
        """A `seqrec.recommend.Recommender` over this run's model and data."""
        from seqrec.recommend import Recommender

        info = RunDir(self.run_dir).read_data_info() if self.run_dir is not None else {}
        return Recommender(self.model, self.split.data, config=self.config, run_dir=self.run_dir,
                           results=self.results, info=info)

    @classmethod
    def load(cls, run_dir: str | Path, *, checkpoint: str = BEST) -> Run:
        """Rebuild a finished (or interrupted) run from its directory: config, data, best weights."""
        opened = open_run(run_dir, checkpoint=checkpoint)
        return cls(opened.model, opened.split, opened.config, opened.run_dir.path, opened.results)


def _prepare_torch(config: RunConfig, dist: Dist = SINGLE) -> None:
    t = config.train
    if t.num_threads:
        torch.set_num_threads(t.num_threads)
    elif dist.active:                   # N ranks on one machine share its cores instead of each taking them all
        torch.set_num_threads(distributed.default_threads(dist.local_world))
    torch.use_deterministic_algorithms(bool(t.deterministic))
    torch.manual_seed(t.seed)
    np.random.seed(t.seed % 2**32)


def train(data: SequenceData | Split | str | Path | None = None, model: str | dict | None = None, *,
          config: RunConfig | str | Path | None = None, out: str | Path | None = None, resume: bool = False,
          on_epoch: Callable[[int, dict], str | None] | None = None, evaluate_test: bool = True,
          **sections: dict) -> Run:
    """Train and evaluate a model; returns the `Run` with `results = {"valid": ..., "test": ...}`.

    Args:
        data: prepared `SequenceData`, a `Split`, a file path (read with the `data` section), or None to
            read `config.data.path`.
        model: registered model name (`seqrec.models.MODELS`), or the model section with its
            hyper-parameters, `{"name": "sasrec", "dim": 32}`; default the config's (sasrec).
        config: a RunConfig or a YAML path; `sections` (`train={"epochs": 5}`, `model={"dim": 32}`, ...)
            update it.
        out: run directory for checkpoints, logs, curves and results; None keeps everything in memory.
        resume: continue from `out/checkpoints/last.pt` (the stored config is used and must match, but for
            `RESUME_MAY_CHANGE`; `data.path` may name a copy of the run's data elsewhere, e.g. after the run
            directory moved to another machine, checked against the data fingerprint in its `data.json`).
        on_epoch: `on_epoch(epoch, record)` after every epoch (see `Trainer`); a string returned stops training.
        evaluate_test: False leaves the test targets alone (`results` has no "test"): model selection, as in
            `seqrec tune`, must not look at them.

    Under torchrun (`RANK`/`WORLD_SIZE` set) this trains with DDP (`seqrec.train.distributed`): rank 0 prepares
    the data (or finds it in the cache) while the others wait, then they read the same prepared entry; rank 0
    alone writes `out`. Every rank returns the same `Run`.
    """
    if isinstance(data, (str, Path)):
        sections["data"] = {**sections.get("data", {}), "path": str(data)}
        data = None
    stored = RunDir(out).config if resume and out is not None else None
    moved_from = None                     # the stored data.path, when a resumed run reads its data from elsewhere
    if stored is not None and stored.exists() and config is None and model is None and not sections:
        run_config = load_config(stored)  # plain --resume: continue with the run's own config
    else:
        run_config = make_config(config, model=model, **sections)
        if stored is not None and stored.exists():
            moved_from = _check_resume_config(stored, run_config)
    tracking.check(run_config, out)                  # a missing tracking package: before anything is written
    dist, device = distributed.setup(run_config.train.device, run_config.train.dist_timeout)
    if out is not None and not resume and RunDir(out).exists:   # every rank, before any writes
        raise ConfigError(f"{out} already holds a run; pass --resume to continue it or choose another --out")
    try:
        if isinstance(data, Split):
            split = data
        elif data is not None:
            split = make_split(data, run_config)
        else:                                          # rank 0 prepares and caches the data first
            split = distributed.staged(dist, lambda: load_split(run_config))
        if moved_from is not None and out is not None:
            _check_moved_data(Path(out), moved_from, run_config.data.path, split)
        _prepare_torch(run_config, dist)
        net = build_model(run_config.model.name, split.data.num_items, run_config.model.params)
        run_dir = Path(out) if out is not None else None
        if dist.is_main:
            _open_run_dir(run_dir, run_config, split)
        distributed.barrier(dist)
        with tracking.track(run_config, run_dir, enabled=dist.is_main) as tracker:   # TensorBoard, MLflow if asked
            trainer = Trainer(net, split, run_config, run_dir, dist=dist, device=device,
                              on_epoch=tracker.hook(on_epoch))
            state = trainer.fit(resume=resume)
            results = trainer.write_results({"model": run_config.model.name, "stopped": state.stopped},
                                            test=evaluate_test)
            tracker.finish(results)
    except Exception as error:
        if dist.active and distributed.is_lost_peer(error):
            raise distributed.lost_peer(dist, error, out) from None
        raise
    return Run(net, split, run_config, run_dir, results, dist=dist)


# keys a resumed run may change: how long it runs and how it reports, never what it computes (threads and
# micro-batches change rounding and the order of random draws only)
RESUME_MAY_CHANGE = frozenset({"train.epochs", "train.max_minutes", "train.patience", "train.progress",
                               "train.num_threads", "train.micro_batches", "train.dist_timeout", "train.tensorboard",
                               "train.mlflow", "train.mlflow_uri", "train.mlflow_experiment"})
# a key a resumed run may point elsewhere if what it names there is the same: the data file, once read, must have
# the content fingerprint recorded in the run's data.json (a run directory carried to another machine)
RESUME_MAY_MOVE = frozenset({"data.path"})


def _check_resume_config(path: Path, requested: RunConfig) -> str | None:
    """A resumed run must have the stored config, except for `RESUME_MAY_CHANGE` (e.g. a larger time budget or
    more epochs for a run that stopped on them) and `RESUME_MAY_MOVE`; returns the stored `data.path` when the
    requested one differs (the caller checks the data read there, `_check_moved_data`), else None."""
    stored = load_config(path)
    if config_hash(stored) == config_hash(requested):
        return None
    a, b = config_to_dict(stored), config_to_dict(requested)
    diff = {f"{s}.{k}" for s in SECTIONS for k in set(a[s]) | set(b[s]) if a[s].get(k) != b[s].get(k)}
    allowed = RESUME_MAY_CHANGE | RESUME_MAY_MOVE
    if diff <= allowed:
        log.info("resuming with changed %s", ", ".join(sorted(diff)))
        return str(stored.data.path) if "data.path" in diff else None
    raise ConfigError(f"--resume: the config differs from the one stored in {path} "
                      f"({', '.join(sorted(diff - allowed))}); resume with the same config (only "
                      f"{', '.join(sorted(allowed))} may change, data.path to a copy of the same data) or start a "
                      f"new --out")


def _check_moved_data(out: Path, before: str, now: str | None, split: Split) -> None:
    """A resumed run that reads its data from a new path must read the data it was started on: the fingerprint
    (content and preparation options) in its `data.json` equals that of the data just read."""
    recorded = RunDir(out).read_data_info().get("data", {}).get("fingerprint")
    read = split.data.info.get("fingerprint")
    if recorded is None or read != recorded:
        found = "no data fingerprint is recorded" if recorded is None else (
            f"its data fingerprint is {recorded}, the data at {now} gives {read}")
        raise ConfigError(f"--resume: data.path moved from {before} to {now}, and the data there is not the data "
                          f"the run in {out} was started on ({found}); point data.path at a copy of {before} or "
                          f"start a new --out")
    log.info("resuming with the same data read from %s (was %s)", now, before)


def _open_run_dir(out: Path | None, config: RunConfig, split: Split) -> None:
    """Create the run directory `out` (if any) with its config and data summary (rank 0's job)."""
    if out is None:
        return
    out.mkdir(parents=True, exist_ok=True)
    dump_config(config, RunDir(out).config)
    write_json(RunDir(out).data_info, {"data": split.data.summary(), "split": split.summary()})


def default_run_dir(config: RunConfig, root: str | Path = "runs") -> Path:
    """`runs/<time>-<model>-<config hash>`: the CLI's default --out."""
    return make_run_dir(root, f"{config.model.name}-{config_hash(config)[:8]}")
