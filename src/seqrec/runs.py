"""Opening a run: the data a config asks for (`load_split`), and a trained run rebuilt from its directory
(`open_run`: config, data split, weights) for `seqrec.api.Run` and `seqrec.recommend.Recommender`, which both
use it and neither imports the other. The directory's layout is `seqrec.rundir`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from seqrec.config import RunConfig, load_config
from seqrec.data.pipeline import load
from seqrec.data.sequences import SequenceData
from seqrec.data.splits import Split, leave_one_out, temporal
from seqrec.errors import ConfigError
from seqrec.models import SequentialRecommender, build_model
from seqrec.rundir import BEST, LAST, RunDir
from seqrec.train.checkpoint import load_checkpoint

if TYPE_CHECKING:
    import polars as pl

    from seqrec.data.interactions import Interactions

log = logging.getLogger(__name__)


@dataclass
class OpenedRun:
    """What `open_run` rebuilds from a run directory."""

    model: SequentialRecommender
    split: Split
    config: RunConfig
    run_dir: RunDir
    results: dict


def open_run(run_dir: str | Path, *, checkpoint: str = BEST) -> OpenedRun:
    """Rebuild a finished (or interrupted) run from its directory: config, data split, weights (`checkpoint`,
    else `last.pt`, loaded without pickle). An unfinished run is opened with a warning naming its epoch."""
    rd = RunDir(run_dir).require()
    config = load_config(rd.config)
    split = load_split(config)
    path = rd.checkpoint(checkpoint)
    if not path.exists() and config.model.name != "pop":
        path = rd.checkpoint(LAST)
    model = build_model(config.model.name, split.data.num_items, config.model.params)
    if model.trainable:
        if not path.exists():
            raise ConfigError(f"{rd.path}: no checkpoint yet (the run has not finished its first epoch); wait "
                              f"for it, or continue a stopped run with `seqrec train --out {rd.path} --resume`")
        state = load_checkpoint(path)
        model.load_state_dict(state["state_dict"])
        if not rd.finished:
            log.warning("%s has not finished (no results.json: still training, or stopped): using the "
                        "checkpoint of epoch %s so far", rd.path, state.get("epoch", "?"))
    else:
        model.fit(split)
    return OpenedRun(model, split, config, rd, rd.read_results())


def load_data(config: RunConfig) -> SequenceData:
    """Read and prepare `config.data` (through the cache)."""
    d = config.data
    return load(d.path, format=d.format, columns=d.columns, separator=d.separator, header=d.header,
                use_cache=d.cache, dedupe=d.dedupe, min_rating=d.min_rating, min_user_count=d.min_user_count,
                min_item_count=d.min_item_count)


def load_split(config: RunConfig) -> Split:
    """Read `config.data` and split it by `config.split` (the session protocol reads and splits in one go)."""
    if config.split.protocol == "session":
        return load_session_split(config)
    return make_split(load_data(config), config)


def load_session_split(config: RunConfig) -> Split:
    """Session protocol: preprocessed train/test session files, or a raw click log preprocessed as SR-GNN."""
    from seqrec.data import sessions
    from seqrec.data.readers import read_interactions

    d, s = config.data, config.split
    valid_fraction = 0.0 if s.validation == "none" else s.valid_fraction if s.valid_fraction is not None else 0.1
    if d.test_path is not None:
        return sessions.load_session_files(d.path, d.test_path, valid_fraction=valid_fraction,
                                           valid_sessions=s.valid_sessions, seed=s.seed)
    clicks: pl.DataFrame | Interactions
    if d.format == "diginetica":
        clicks = sessions.read_diginetica(d.path)
    else:
        clicks = read_interactions(d.path, format=d.format, columns=d.columns, separator=d.separator,
                                   header=d.header)
    return sessions.preprocess_sessions(clicks, test_days=s.test_days, max_session_len=s.max_session_len,
                                        valid_fraction=valid_fraction, valid_sessions=s.valid_sessions,
                                        seed=s.seed, source=d.path)


def make_split(data: SequenceData, config: RunConfig) -> Split:
    s = config.split
    if s.protocol == "session":
        raise ConfigError("split.protocol 'session' reads its own data (data.path and data.test_path); "
                          "it cannot split prepared data")
    if s.protocol == "temporal":
        return temporal(data, valid_fraction=s.valid_fraction, test_fraction=s.test_fraction, targets=s.targets)
    return leave_one_out(data, validation=s.validation == "item")
