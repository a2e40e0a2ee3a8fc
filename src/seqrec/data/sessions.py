"""Session-based data: click logs cut into anonymous sessions, the SR-GNN / LESSR preprocessing, and a split
whose targets are every prefix of the evaluation sessions.

Layout: the sessions are the rows ("users") of one `SequenceData` CSR, in this order: the training sessions,
then the validation sessions (the latest `valid_fraction` of the training sessions), then the test sessions.
Row `r` is session number `r` (the users vocabulary holds row numbers, not the raw session ids). The `Split`
trains on the training rows only (`train_end = offsets[r]`, an empty training prefix, for validation and test
rows); its `valid` and `test` targets are every position `t >= 1` of the validation and test rows: predict
click t + 1 from clicks 1..t of the same session. A target's input starts at its own row, so no input ever
holds another session's clicks, and the existing evaluator (`seqrec.evaluate.ranking`) works unchanged.

Sources:
- `read_diginetica`: the raw CIKM Cup 2016 `train-item-views.csv` (`sessionId;userId;itemId;timeframe;eventdate`)
  through the ordinary readers (vectorised Polars; bad input raises `DataError` naming file, line, column, value).
- `preprocess_sessions`: the SR-GNN preprocessing (optionally LESSR's 20-click truncation), vectorised.
- `load_session_files`: already preprocessed files, one session per line (`item,item,...`), train and test
  given separately, file order = time order (the `*-srgnn/train_sessions.txt`, `test_sessions.txt` files).
"""

from __future__ import annotations

import os

import numpy as np
import polars as pl

from seqrec.data import rawtext
from seqrec.data.columns import ITEM, SESSION, TIME, USER
from seqrec.data.interactions import Interactions
from seqrec.data.readers import read_interactions
from seqrec.data.sequences import SequenceData
from seqrec.data.splits import Split, Targets
from seqrec.data.vocab import Vocab
from seqrec.errors import ConfigError, DataError

DAY = 86_400
DATE = "date"
DIGINETICA_COLUMNS = ("sessionid", "userid", "itemid", "timeframe", "eventdate")


# ---------------------------------------------------------------------------------------------- reading

def read_diginetica(path: str | os.PathLike[str]) -> pl.DataFrame:
    """Read Diginetica's raw `train-item-views.csv` (plain or gzip) into a click table.

    The header is `sessionId;userId;itemId;timeframe;eventdate` (`session_id;...` in SR-GNN's sample); userId
    may be `NA` and is not read. Both time fields go through the standard reader (one pass per field), so a bad
    value raises the reader's `DataError` with the file, line, column and value.

    Returns:
        A frame in file order with columns `session` (Int64 or String), `item` (Int64 or String), `time`
        (Float64 seconds: eventdate as a UTC date plus timeframe in ms / 1000) and `date` (Int64 seconds of
        the eventdate).
    """
    head = rawtext.read_bytes(path, limit=4096)
    first = head.split(b"\n", 1)[0].decode("utf-8", "replace").lstrip("\ufeff").strip()
    names = [name.strip().lower().replace("_", "") for name in first.split(";")]
    if tuple(names) != DIGINETICA_COLUMNS:
        raise DataError("not a Diginetica train-item-views header", path=path, line=1, value=first[:120],
                        expected="sessionId;userId;itemId;timeframe;eventdate")
    by_date, by_offset = (read_interactions(path, columns={SESSION: 0, ITEM: 2, TIME: field}, format="csv",
                                            separator=";", header=True).frame for field in (4, 3))
    return pl.DataFrame({
        SESSION: by_date.get_column(SESSION),
        ITEM: by_date.get_column(ITEM),
        TIME: by_date.get_column(TIME).cast(pl.Float64) + by_offset.get_column(TIME).cast(pl.Float64) / 1000.0,
        DATE: by_date.get_column(TIME),
    })


def clicks_from_interactions(interactions: Interactions) -> pl.DataFrame:
    """A click table for `preprocess_sessions` from `Interactions` whose sequence key (`user`) is the session.

    The session's date is its latest click time, as SR-GNN does for Yoochoose (timestamps, not dates).

    Raises:
        DataError: the interactions have no timestamps (only the line order).
    """
    if not interactions.has_time:
        raise DataError(f"the SR-GNN preprocessing needs click times, but {interactions.source} has none",
                        expected="a log with a time column (or load_session_files for preprocessed sessions)")
    frame = interactions.frame
    return pl.DataFrame({SESSION: frame.get_column(USER), ITEM: frame.get_column(ITEM),
                         TIME: frame.get_column(TIME).cast(pl.Float64),
                         DATE: frame.get_column(TIME).cast(pl.Float64).floor().cast(pl.Int64)})


# ---------------------------------------------------------------------------------------------- preprocessing

def preprocess_sessions(clicks: pl.DataFrame | Interactions, *, test_days: float = 7, min_item_count: int = 5,
                        max_session_len: int | None = None, valid_fraction: float = 0.1,
                        valid_sessions: str = "latest", seed: int = 0, source: str = "<memory>") -> Split:
    """The SR-GNN preprocessing of a click log, vectorised (Polars; no loop over rows or sessions).

    Steps, in SR-GNN's order (CRIPAC-DIG/SR-GNN `preprocess.py`):
    1. sort clicks by (session, time), stable (equal times keep file order);
    2. drop sessions of one click;
    3. if `max_session_len`, keep each session's first `max_session_len` clicks (LESSR truncates to 20 here,
       before counting items);
    4. drop items with fewer than `min_item_count` clicks, then sessions left with fewer than 2 clicks;
    5. a session's date is the latest date of its clicks; with `split = max date - test_days` days, sessions
       dated before `split` train and those dated after it test. As in SR-GNN, sessions dated exactly on
       `split` are in neither (with day-resolution dates, that is the whole day 7 days before the last one);
       their number is in `info["sessions_on_split_date"]`;
    6. test clicks on items absent from the training sessions are removed, then test sessions shorter than 2.
    Sessions are ordered by (date, the session's first row in the file) within training and within test, as
    SR-GNN's stable sort by date of its first-seen-ordered sessions does; the last `valid_fraction` of the
    training sessions validate (see `split_sessions`).

    Item ids are dense 1..N over the training sessions' items in sorted raw-id order (`Vocab`); SR-GNN numbers
    them by first appearance instead, which is the same data up to a permutation of ids.

    Args:
        clicks: a frame with `session`, `item`, `time` (seconds) and `date` (seconds) columns, such as
            `read_diginetica` returns, or `Interactions` keyed by session (see `clicks_from_interactions`).
        test_days: length of the test period in days (7 for Diginetica, 1 for Yoochoose).
        min_item_count: fewest clicks an item needs to be kept.
        max_session_len: keep at most this many first clicks of a session (None: all).
        valid_fraction: share of the training sessions used for validation.
        valid_sessions: which: "latest" (the last ones) or "random" (a draw seeded by `seed`).
        source: description for messages and summaries.

    Returns:
        A `Split` (protocol "session") over the sessions as rows: train, validation, test.

    Raises:
        DataError: nothing is left for training or testing after the filters.
        ConfigError: a parameter is out of range.
    """
    if isinstance(clicks, Interactions):
        source = clicks.source if source == "<memory>" else source
        clicks = clicks_from_interactions(clicks)
    _check_options(test_days, min_item_count, max_session_len, valid_fraction)
    missing = [c for c in (SESSION, ITEM, TIME, DATE) if c not in clicks.columns]
    if missing:
        raise DataError(f"the click table from {source} lacks the columns {missing}",
                        expected=f"columns {SESSION}, {ITEM}, {TIME}, {DATE}")
    frame = (clicks.select(SESSION, ITEM, TIME, DATE).with_row_index("row")
             .with_columns(first_row=pl.col("row").min().over(SESSION))  # the session's place in the file
             .sort([SESSION, TIME, "row"]))
    rows_read = frame.height
    frame = frame.filter(pl.len().over(SESSION) > 1)
    if max_session_len is not None:
        frame = frame.filter(pl.int_range(pl.len()).over(SESSION) < max_session_len)
    frame = frame.filter(pl.len().over(ITEM) >= min_item_count)
    frame = frame.filter(pl.len().over(SESSION) >= 2)
    if frame.height == 0:
        raise DataError(f"no session of {source} is left after dropping one-click sessions and items with fewer "
                        f"than {min_item_count} clicks", expected="sessions of at least 2 frequent items")

    sessions = frame.group_by(SESSION).agg(pl.col(DATE).max(), pl.col("first_row").first())
    split_date = sessions.select(pl.col(DATE).max()).item() - test_days * DAY
    on_split = int((sessions.get_column(DATE) == split_date).sum())
    sessions = sessions.with_columns(
        part=pl.when(pl.col(DATE) < split_date).then(0).when(pl.col(DATE) > split_date).then(1).otherwise(None))
    sessions = sessions.drop_nulls("part").sort(["part", DATE, "first_row"])
    frame = frame.join(sessions.with_row_index("rank").select(SESSION, "rank", "part"), on=SESSION, how="inner")
    train_items = frame.filter(pl.col("part") == 0).get_column(ITEM).unique()
    frame = frame.filter((pl.col("part") == 0) | pl.col(ITEM).is_in(train_items.implode()))
    frame = frame.filter(pl.len().over(SESSION) >= 2)
    frame = frame.sort(["rank", TIME, "row"])  # rank: training sessions first, each in (date, file) order

    num_train = frame.filter(pl.col("part") == 0).get_column(SESSION).n_unique()
    if num_train == 0:
        raise DataError(f"no training session in {source}: every session is in the last {test_days} days",
                        expected="a log spanning more than the test period")
    vocab = Vocab(raw=_raw_ids(train_items.sort()), start=1, kind="item")
    _, lengths = np.unique(frame.get_column("rank").to_numpy(), return_counts=True)  # ranks ascend
    data = _sequence_data(vocab.encode(_raw_ids(frame.get_column(ITEM))), lengths,
                          np.floor(frame.get_column(TIME).to_numpy()).astype(np.int64), vocab, True, source)
    info = {"rows_read": rows_read, "test_days": test_days, "split_date": int(split_date),
            "sessions_on_split_date": on_split, "min_item_count": min_item_count,
            "max_session_len": max_session_len}
    data.info.update(info)
    return split_sessions(data, num_train, valid_fraction=valid_fraction, valid_sessions=valid_sessions, seed=seed)


def _check_options(test_days: float, min_item_count: int, max_session_len: int | None,
                   valid_fraction: float) -> None:
    if not test_days > 0:
        raise ConfigError(f"test_days must be positive, got {test_days}")
    if min_item_count < 1:
        raise ConfigError(f"min_item_count must be >= 1, got {min_item_count}")
    if max_session_len is not None and max_session_len < 2:
        raise ConfigError(f"max_session_len must be >= 2 or None, got {max_session_len}")
    _check_fraction(valid_fraction)


def _check_fraction(valid_fraction: float) -> None:
    if not 0 <= valid_fraction < 1:
        raise ConfigError(f"valid_fraction must be in [0, 1), got {valid_fraction}")


def _raw_ids(series: pl.Series) -> np.ndarray:
    """Raw ids as int64 or unicode numpy (the dtypes `Vocab` sorts and searches)."""
    values = series.to_numpy()
    return values.astype(np.int64) if series.dtype.is_integer() else values.astype(str)


# ---------------------------------------------------------------------------------------------- preprocessed files

def load_session_files(train_path: str | os.PathLike[str], test_path: str | os.PathLike[str], *,
                       valid_fraction: float = 0.1, valid_sessions: str = "latest", seed: int = 0,
                       remap: bool = False) -> Split:
    """Preprocessed sessions, one per line (`item,item,...`), training and test in separate files.

    Both files are read by the `sessions` reader (vectorised; a bad id raises `DataError` naming the file, line
    and item position). File order is time order: the last `valid_fraction` of the training file's sessions
    validate. Never reads the pickled `all_train_seq.txt` / `test.txt` of the SR-GNN repositories.

    Args:
        train_path, test_path: the training and test session files.
        valid_fraction: share of the training sessions used for validation.
        valid_sessions: which: "latest" (the last lines) or "random" (a draw seeded by `seed`).
        remap: map the items of both files densely to 1..N (sorted raw ids). False keeps the file's ids as
            dense ids, N = the largest id in either file, as SR-GNN's `n_node` does (Yoochoose 1/64 has ids
            up to 37,483 of which 17,376 occur in training).

    Returns:
        A `Split` (protocol "session"): rows are the training file's sessions, then the test file's.

    Raises:
        DataError: a file cannot be read, or (without `remap`) holds ids that are not positive integers.
    """
    _check_fraction(valid_fraction)
    train = read_interactions(train_path, format="sessions").frame
    test = read_interactions(test_path, format="sessions").frame
    num_train = train.get_column(USER).n_unique()
    # the reader's user is the 0-based line number, ascending: consecutive runs are sessions
    lengths = np.concatenate([np.unique(part.get_column(USER).to_numpy(), return_counts=True)[1]
                              for part in (train, test)])
    parts = [train.get_column(ITEM), test.get_column(ITEM)]
    if parts[0].dtype != parts[1].dtype:  # integer ids in one file, text in the other
        parts = [part.cast(pl.String) for part in parts]
    items = pl.concat(parts)
    if remap:
        vocab = Vocab(raw=np.unique(_raw_ids(items)), start=1, kind="item")
        dense = vocab.encode(_raw_ids(items))
    else:
        _check_positive_ids(train, train_path)
        _check_positive_ids(test, test_path)
        dense = items.to_numpy().astype(np.int64)
        vocab = Vocab(raw=np.arange(1, int(dense.max()) + 1, dtype=np.int64), start=1, kind="item")
    source = f"{train_path} + {test_path}"
    data = _sequence_data(dense, lengths, np.arange(dense.shape[0], dtype=np.int64), vocab, False, source)
    data.info.update({"train_file": str(train_path), "test_file": str(test_path), "remap": remap})
    return split_sessions(data, num_train, valid_fraction=valid_fraction, valid_sessions=valid_sessions, seed=seed)


def _check_positive_ids(frame: pl.DataFrame, path: str | os.PathLike[str]) -> None:
    column = frame.get_column(ITEM)
    if not column.dtype.is_integer():
        bad = column.cast(pl.Int64, strict=False).is_null()
        row = int(bad.arg_true()[0])
        raise DataError("item id is not an integer", path=path, line=int(frame.get_column(USER)[row]) + 1,
                        column=ITEM, value=column[row], expected="positive integer ids, or remap=True")
    if (column < 1).any():
        row = int((column < 1).arg_true()[0])
        raise DataError("item id below 1 (0 is the padding id)", path=path,
                        line=int(frame.get_column(USER)[row]) + 1, column=ITEM, value=column[row],
                        expected="ids 1..N, or remap=True")


# ---------------------------------------------------------------------------------------------- the split

def _sequence_data(items: np.ndarray, lengths: np.ndarray, times: np.ndarray, vocab: Vocab, has_time: bool,
                   source: str) -> SequenceData:
    offsets = np.zeros(lengths.shape[0] + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    users = Vocab(raw=np.arange(lengths.shape[0], dtype=np.int64), start=0, kind="session")
    return SequenceData(offsets=offsets, items=items.astype(np.int32), times=times, users=users,
                        item_vocab=vocab, has_time=has_time, source=source)


def split_sessions(data: SequenceData, num_train: int, *, valid_fraction: float = 0.1,
                   valid_sessions: str = "latest", seed: int = 0) -> Split:
    """The session split of sessions stored as rows: rows `[0, num_train)` are training sessions in time
    order, the rest are test sessions.

    `round(valid_fraction * num_train)` training rows become validation rows: the last ones (`valid_sessions`
    "latest", the sessions just before the test period) or a uniform draw of them ("random", seeded by `seed`;
    the latest sessions then stay in training). Training rows train whole (`train_end = offsets[r + 1]`);
    validation and test rows train nothing (`train_end = offsets[r]`) and give one target per click after the
    first, whose input is the row's earlier clicks.

    Returns:
        A `Split` with protocol "session"; `info` counts the sessions and targets of each part.

    Raises:
        DataError: there is no test target (no test session with 2 clicks or more).
    """
    _check_fraction(valid_fraction)
    num_sessions = data.num_users
    if not 0 < num_train <= num_sessions:
        raise ConfigError(f"num_train must be in 1..{num_sessions} (the number of sessions), got {num_train}")
    if valid_sessions not in ("latest", "random"):
        raise ConfigError(f"valid_sessions must be 'latest' or 'random', got {valid_sessions!r}")
    num_valid = int(np.floor(valid_fraction * num_train + 0.5))
    if valid_sessions == "latest":
        valid_rows = np.arange(num_train - num_valid, num_train, dtype=np.int64)
    else:
        valid_rows = np.sort(np.random.default_rng(seed).choice(num_train, num_valid, replace=False)).astype(np.int64)
    is_train = np.arange(num_sessions) < num_train
    is_train[valid_rows] = False
    starts, ends = data.offsets[:-1], data.offsets[1:]
    train_end = np.where(is_train, ends, starts)                                    # [S]
    valid = _prefix_targets(data, valid_rows)
    test = _prefix_targets(data, np.arange(num_train, num_sessions, dtype=np.int64))
    if len(test) == 0:
        raise DataError(f"the session split of {data.source} has no test target",
                        expected="test sessions of at least 2 clicks")
    info = {"train_sessions": num_train - num_valid, "valid_sessions": num_valid,
            "test_sessions": num_sessions - num_train, "valid_fraction": valid_fraction,
            "valid_selection": valid_sessions if valid_sessions == "latest" else f"random (seed {seed})",
            "train_targets": int((ends - starts - 1).clip(min=0)[is_train].sum())}
    return Split(data, train_end, valid, test, "session", info)


def _prefix_targets(data: SequenceData, rows: np.ndarray) -> Targets:
    """Every position after the first of the (ascending) `rows`, as (row, absolute position) targets."""
    offsets = data.offsets
    lengths = offsets[rows + 1] - offsets[rows]                                     # [R]
    user_of = np.repeat(rows, lengths)                                              # [clicks of the rows]
    first = np.repeat(np.cumsum(lengths) - lengths, lengths)                        # the row's first click here
    within = np.arange(user_of.shape[0], dtype=np.int64) - first                   # place in the session
    keep = within > 0                                                               # not a session's first click
    return Targets(data, user_of[keep], (offsets[user_of] + within)[keep])
