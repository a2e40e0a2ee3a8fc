"""Built-in synthetic interaction logs: seqrec's demo data and the source of the large benchmark logs.

`generate` builds a small log with sequential structure that a sequential model can learn and a popularity
model cannot:

- every item belongs to one of `num_clusters` communities and has a Zipf popularity inside it;
- every user has a taste cluster (the community its non-sequential picks come from);
- every item has `successors` fixed likely next items, mostly from its own community, sometimes from another;
- a user's next item is, with probability `transition_prob`, one of the successors of the previous item
  (the first successor most likely); otherwise it is a popularity draw from the user's cluster, or now and then
  from the whole catalogue.

Timestamps are unix seconds, increasing per user from a user-specific start day, with gaps from minutes to
days and some gaps of zero (ties, in generation order). Raw ids are deliberately not dense: items are
`1000 + 7 * k`, users are spread-out numbers in shuffled order. Rows come in file order: sorted by time over
the whole log (stable, so a user's tied events keep their sequence order), not grouped by user.

`write_csv_log` writes a large, simpler CSV log (`user,item,time`) chunk by chunk with bounded memory, for the
data benchmarks.

Everything is vectorised with numpy: `generate` loops over sequence positions (at most `max_length` steps),
never over users or interactions. The same configuration always gives the same log.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from seqrec.data import columns as C
from seqrec.data.interactions import Interactions
from seqrec.errors import ConfigError

#: Bumped whenever `generate` or `write_csv_log` would produce different rows for the same arguments.
GENERATOR_VERSION = 1

ITEM_ID_BASE = 1000
ITEM_ID_STEP = 7
USER_ID_BASE = 100_000
USER_ID_STEP = 13

_EPOCH = 1_577_836_800  # 2020-01-01 00:00:00 UTC
_DAY = 86_400

_WITHIN_COMMUNITY_SUCCESSOR = 0.85  # chance a successor comes from the item's own community
_GLOBAL_DRAW = 0.1  # chance a non-transition pick ignores the user's cluster
_TIE_PROB = 0.05  # chance of a zero gap (equal timestamps) between consecutive events of a user
_SHORT_GAP_PROB = 0.6  # chance of a gap of seconds to minutes (else hours to days)


@dataclass(frozen=True)
class SyntheticConfig:
    """Parameters of the synthetic log.

    Attributes:
        num_users: number of users (each has one sequence).
        num_items: catalogue size.
        min_length, max_length: every user's sequence length lies in [min_length, max_length]
            (a clipped log-normal around their midpoint).
        num_clusters: user taste groups = item communities.
        transition_prob: chance that the next item is one of the previous item's successors.
        successors: number of likely next items per item.
        popularity_skew: Zipf exponent of item popularity within a community (0 = uniform).
        seed: random seed; the same configuration always gives the same log.
    """

    num_users: int = 2000
    num_items: int = 1000
    min_length: int = 10
    max_length: int = 60
    num_clusters: int = 20
    transition_prob: float = 0.7
    successors: int = 3
    popularity_skew: float = 1.0
    seed: int = 0

    def __post_init__(self) -> None:
        self._check_types()
        self._check_ranges()

    def _check_types(self) -> None:
        for name in ("num_users", "num_items", "min_length", "max_length", "num_clusters", "successors", "seed"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | np.integer):
                raise ConfigError(f"synthetic option {name!r} must be an integer, got {value!r}")
        for name in ("transition_prob", "popularity_skew"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
                raise ConfigError(f"synthetic option {name!r} must be a number, got {value!r}")

    def _check_ranges(self) -> None:
        for name in ("num_users", "min_length", "num_clusters", "successors"):
            if getattr(self, name) < 1:
                raise ConfigError(f"synthetic option {name!r} must be at least 1, got {getattr(self, name)!r}")
        if self.seed < 0:
            raise ConfigError(f"synthetic option 'seed' must be non-negative, got {self.seed!r}")
        if self.max_length < self.min_length:
            raise ConfigError(f"synthetic option 'max_length' ({self.max_length}) must be >= "
                              f"'min_length' ({self.min_length})")
        if self.num_items < 2:
            raise ConfigError(f"synthetic option 'num_items' must be at least 2, got {self.num_items!r}")
        if self.num_clusters > self.num_items:
            raise ConfigError(f"synthetic option 'num_clusters' ({self.num_clusters}) must be <= "
                              f"'num_items' ({self.num_items})")
        if self.successors >= self.num_items:
            raise ConfigError(f"synthetic option 'successors' ({self.successors}) must be < "
                              f"'num_items' ({self.num_items})")
        if not 0.0 <= self.transition_prob <= 1.0:
            raise ConfigError(f"synthetic option 'transition_prob' must be in [0, 1], got {self.transition_prob!r}")
        if self.popularity_skew < 0:
            raise ConfigError(f"synthetic option 'popularity_skew' must be >= 0, got {self.popularity_skew!r}")

    def to_dict(self) -> dict:
        return asdict(self)


def generate(config: SyntheticConfig | None = None, **overrides: Any) -> Interactions:
    """Generate the synthetic log described in the module docstring.

    Args:
        config: the parameters (defaults: `SyntheticConfig()`).
        overrides: single fields replacing those of `config`, e.g. `generate(num_users=100, seed=3)`.

    Returns:
        Interactions with Int64 columns `user`, `item`, `time`, rows sorted by time (file order).

    Raises:
        ConfigError: an unknown option name or an invalid value.
    """
    config = _configure(config, overrides)
    rng = np.random.default_rng([GENERATOR_VERSION, config.seed])
    world = _World.build(config, rng)

    n_users, width = config.num_users, config.max_length
    lengths = _lengths(config, rng)
    user_cluster = rng.integers(0, config.num_clusters, size=n_users)

    items = np.empty((n_users, width), dtype=np.int64)  # dense item indices 0..N-1
    items[:, 0] = world.cluster_draw(user_cluster, rng)
    successor_cdf = np.cumsum(1.0 / np.arange(1, config.successors + 1))
    successor_cdf /= successor_cdf[-1]
    for t in range(1, width):
        follow = rng.random(n_users) < config.transition_prob
        slot = np.minimum(np.searchsorted(successor_cdf, rng.random(n_users), side="right"), config.successors - 1)
        followed = world.successors[items[:, t - 1], slot]
        drawn = world.cluster_draw(user_cluster, rng)
        items[:, t] = np.where(follow, followed, drawn)

    times = _timestamps(n_users, width, rng)
    mask = np.arange(width)[None, :] < lengths[:, None]
    user_raw = USER_ID_BASE + USER_ID_STEP * rng.permutation(n_users).astype(np.int64)
    user_col = np.broadcast_to(user_raw[:, None], (n_users, width))[mask]
    item_col = ITEM_ID_BASE + ITEM_ID_STEP * items[mask]
    time_col = times[mask]
    order = np.argsort(time_col, kind="stable")  # user-major input: a user's ties keep sequence order
    frame = pl.DataFrame({C.USER: user_col[order], C.ITEM: item_col[order], C.TIME: time_col[order]},
                         schema={C.USER: pl.Int64, C.ITEM: pl.Int64, C.TIME: pl.Int64})
    described = ", ".join(f"{k}={v}" for k, v in asdict(config).items())
    return Interactions(frame, has_time=True, source=f"synthetic({described})",
                        meta={"generator": "seqrec.data.synthetic", "version": GENERATOR_VERSION,
                              "config": asdict(config)})


def _configure(config: SyntheticConfig | None, overrides: dict) -> SyntheticConfig:
    if config is None:
        config = SyntheticConfig()
    elif not isinstance(config, SyntheticConfig):
        raise ConfigError(f"config must be a SyntheticConfig, got {type(config).__name__}")
    allowed = [f.name for f in fields(SyntheticConfig)]
    unknown = sorted(set(overrides) - set(allowed))
    if unknown:
        raise ConfigError(f"unknown synthetic option(s) {unknown}; allowed: {allowed}")
    return replace(config, **overrides) if overrides else config


@dataclass(frozen=True)
class _World:
    """Item communities, popularity and successors (dense item indices 0..N-1)."""

    members: np.ndarray  # items grouped by community, most popular first within a community
    cluster_cdf: np.ndarray  # per-community popularity CDF shifted by the community index: c + cdf in (c, c+1]
    global_cdf: np.ndarray  # popularity CDF over `members`, for draws from the whole catalogue
    successors: np.ndarray  # [N, S] likely next items

    @classmethod
    def build(cls, config: SyntheticConfig, rng: np.random.Generator) -> _World:
        n, k = config.num_items, config.num_clusters
        community = rng.permutation(np.arange(n) % k)  # balanced, random membership
        members = np.argsort(community, kind="stable")  # items grouped by community (random order inside)
        sizes = np.bincount(community, minlength=k)
        starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
        rank = np.arange(n) - np.repeat(starts, sizes)  # popularity rank inside the community
        weight = 1.0 / (rank + 1.0) ** config.popularity_skew
        within = np.cumsum(weight)
        upto = within[starts + sizes - 1]  # cumulative weight up to the end of each community
        before = np.concatenate([[0.0], upto[:-1]])
        cluster_cdf = community[members] + (within - np.repeat(before, sizes)) / np.repeat(upto - before, sizes)
        cluster_cdf[starts + sizes - 1] = np.arange(k) + 1.0  # exact upper ends, no rounding gaps
        global_cdf = within / within[-1]
        global_cdf[-1] = 1.0
        successors = _successors(config, rng, community, members, starts, sizes)
        return cls(members=members, cluster_cdf=cluster_cdf, global_cdf=global_cdf, successors=successors)

    def cluster_draw(self, cluster: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """One popularity draw per entry of `cluster` (from that community, or now and then from everything)."""
        u = rng.random(cluster.shape[0])
        in_cluster = np.searchsorted(self.cluster_cdf, cluster + u, side="right")
        anywhere = np.searchsorted(self.global_cdf, u, side="right")
        pick = np.where(rng.random(cluster.shape[0]) < _GLOBAL_DRAW, anywhere, in_cluster)
        return self.members[np.minimum(pick, self.members.shape[0] - 1)]


def _successors(config: SyntheticConfig, rng: np.random.Generator, community: np.ndarray, members: np.ndarray,
                starts: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    """[N, S] successors per item: distinct, never the item itself, mostly from its own community."""
    n, s = config.num_items, config.successors
    succ = np.empty((n, s), dtype=np.int64)
    todo = np.ones((n, s), dtype=bool)
    own_size = sizes[community]
    for _ in range(100):
        rows, cols = np.nonzero(todo)
        if rows.size == 0:
            return succ
        # within the community when it has room for S other items and the coin says so; else anywhere
        local = (rng.random(rows.size) < _WITHIN_COMMUNITY_SUCCESSOR) & (own_size[rows] > s)
        offset = (rng.random(rows.size) * own_size[rows]).astype(np.int64)
        candidate = np.where(local, members[starts[community[rows]] + offset], rng.integers(0, n, size=rows.size))
        succ[rows, cols] = candidate
        bad = succ == np.arange(n)[:, None]
        dup = np.zeros_like(todo)  # a later copy of a value already in the row is drawn again
        for j in range(1, s):
            dup[:, j] = (succ[:, j:j + 1] == succ[:, :j]).any(axis=1)
        todo = bad | dup
    if not todo.any():
        return succ
    # practically unreachable: each round redraws only the few conflicting entries
    raise ConfigError(  # pragma: no cover
        "could not draw distinct successors; use fewer 'successors' or more 'num_items'")


def _lengths(config: SyntheticConfig, rng: np.random.Generator) -> np.ndarray:
    """Per-user lengths: a log-normal around the middle of [min_length, max_length], clipped to it."""
    lo, hi = config.min_length, config.max_length
    median = (lo + hi) / 2.0
    raw = np.rint(rng.lognormal(np.log(median), 0.5, size=config.num_users))
    return np.clip(raw, lo, hi).astype(np.int64)


def _timestamps(n_users: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """[U, L] non-decreasing unix seconds per user: start on a random day of 2020, then mixed gaps."""
    start = _EPOCH + rng.integers(0, 365, size=n_users) * _DAY + rng.integers(0, _DAY, size=n_users)
    kind = rng.random((n_users, width - 1))
    short = rng.lognormal(np.log(120.0), 1.0, size=kind.shape)  # seconds to about an hour
    long = rng.lognormal(np.log(_DAY / 2), 1.2, size=kind.shape)  # hours to weeks
    gaps = np.where(kind < _TIE_PROB, 0.0, np.where(kind < _TIE_PROB + _SHORT_GAP_PROB, short, long))
    gaps = np.where(kind < _TIE_PROB, 0, np.maximum(np.rint(gaps), 1)).astype(np.int64)
    times = np.empty((n_users, width), dtype=np.int64)
    times[:, 0] = start
    np.cumsum(gaps, axis=1, out=times[:, 1:])
    times[:, 1:] += start[:, None]
    return times


def write_csv_log(path: str | os.PathLike[str], num_rows: int, num_users: int, num_items: int, seed: int = 0,
                  chunk_rows: int = 2_000_000) -> Path:
    """Write a large synthetic CSV log `user,item,time` (with header), chunk by chunk.

    Items follow a Zipf popularity (exponent 1, over a shuffled catalogue; raw ids `1000 + 7 * k`); users are
    drawn with a skewed (log-normal) activity, and every user has at least one row; times are unix seconds,
    non-decreasing down the file (so also per user), with some ties. Memory is bounded by one chunk: each chunk
    is generated, written with polars and dropped. The file is written under a temporary name and renamed at
    the end, so an interrupted run never leaves a truncated log behind. The same arguments (including
    `chunk_rows`) always give the same file.

    Args:
        path: the CSV file to write (its folder must exist).
        num_rows: number of data rows; at least `num_users`.
        num_users: number of distinct users (raw ids spread out, not 1..U).
        num_items: catalogue size (not every item need occur).
        seed: random seed.
        chunk_rows: rows generated and written at a time.

    Returns:
        The path written.

    Raises:
        ConfigError: an invalid size.
    """
    for name, value, low in (("num_rows", num_rows, 1), ("num_users", num_users, 1), ("num_items", num_items, 1),
                             ("seed", seed, 0), ("chunk_rows", chunk_rows, 1)):
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < low:
            raise ConfigError(f"write_csv_log: {name} must be an integer >= {low}, got {value!r}")
    if num_rows < num_users:
        raise ConfigError(f"write_csv_log: num_rows ({num_rows}) must be >= num_users ({num_users}) "
                          "so that every user has a row")
    path = Path(path)
    if not path.parent.is_dir():
        raise ConfigError(f"write_csv_log: folder {path.parent} does not exist")

    rng = np.random.default_rng([GENERATOR_VERSION, seed, 1])
    item_ids = ITEM_ID_BASE + ITEM_ID_STEP * rng.permutation(num_items).astype(np.int64)  # by popularity rank
    item_cdf = np.cumsum(1.0 / np.arange(1, num_items + 1))
    item_cdf /= item_cdf[-1]
    user_ids = USER_ID_BASE + USER_ID_STEP * rng.permutation(num_users).astype(np.int64)
    user_cdf = np.cumsum(rng.lognormal(0.0, 1.0, size=num_users))
    user_cdf /= user_cdf[-1]
    # every user's first row: user k (in `user_ids` order) gets row k * stride, the other rows are random users
    stride = num_rows // num_users
    mean_gap = max(1, (2 * 365 * _DAY) // num_rows)  # about two years of activity in all
    clock = _EPOCH

    partial = path.with_name(path.name + ".partial")
    try:
        with open(partial, "wb") as handle:
            handle.write(f"{C.USER},{C.ITEM},{C.TIME}\n".encode())
            for begin in range(0, num_rows, chunk_rows):
                end = min(begin + chunk_rows, num_rows)
                size = end - begin
                users = np.minimum(np.searchsorted(user_cdf, rng.random(size), side="right"), num_users - 1)
                row = np.arange(begin, end, dtype=np.int64)
                forced = (row % stride == 0) & (row // stride < num_users)
                users[forced] = (row[forced] // stride)
                items = np.minimum(np.searchsorted(item_cdf, rng.random(size), side="right"), num_items - 1)
                gaps = rng.integers(0, 2 * mean_gap + 1, size=size)  # 0 = a tie with the previous row
                times = clock + np.cumsum(gaps)
                clock = int(times[-1])
                chunk = pl.DataFrame({C.USER: user_ids[users], C.ITEM: item_ids[items], C.TIME: times})
                chunk.write_csv(handle, include_header=False)
                del chunk, users, row, forced, items, gaps, times
        os.replace(partial, path)
    finally:
        if partial.exists():
            partial.unlink()
    return path
