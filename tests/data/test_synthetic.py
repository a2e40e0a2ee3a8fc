"""The built-in synthetic log: determinism, shape, id and time properties, learnable sequential structure,
and the chunked CSV writer."""

from __future__ import annotations

import time

import numpy as np
import polars as pl
import pytest

from seqrec.data import columns as C
from seqrec.data.interactions import Interactions
from seqrec.data.synthetic import SyntheticConfig, generate, write_csv_log
from seqrec.errors import ConfigError


@pytest.fixture(scope="module")
def demo() -> Interactions:
    return generate()


def _sequences(frame: pl.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(dense items 0..N-1 in per-user time order, CSR offsets, number of items); ties keep file order."""
    ordered = frame.sort([C.USER, C.TIME], maintain_order=True)
    _, items = np.unique(ordered[C.ITEM].to_numpy(), return_inverse=True)
    users = ordered[C.USER].to_numpy()
    starts = np.flatnonzero(np.concatenate([[True], users[1:] != users[:-1]]))
    offsets = np.concatenate([starts, [users.size]])
    return items, offsets, int(items.max()) + 1


def _hit_rates(frame: pl.DataFrame, k: int = 10) -> tuple[float, float]:
    """HR@k of a first-order Markov predictor and of most-popular, on each user's last item."""
    items, offsets, n = _sequences(frame)
    last = offsets[1:] - 1
    target = items[last]
    history = np.ones(items.size, dtype=bool)
    history[last] = False

    popularity = np.bincount(items[history], minlength=n).astype(np.float64)
    top_pop = np.argsort(-popularity, kind="stable")[:k]
    pop_hr = float(np.isin(target, top_pop).mean())

    # transitions (a -> b) inside each user's history: pairs of consecutive positions, both in the history
    pair = np.ones(items.size - 1, dtype=bool)
    pair[offsets[1:-1] - 1] = False  # a user's last -> next user's first
    pair &= history[1:]  # the pair into the target is not training data
    counts = np.zeros((n, n), dtype=np.float64)
    np.add.at(counts, (items[:-1][pair], items[1:][pair]), 1.0)

    scores = counts[items[last - 1]] + popularity[None, :] / (popularity.max() + 1.0)  # ties: popularity
    top_markov = np.argpartition(-scores, k, axis=1)[:, :k]
    markov_hr = float((top_markov == target[:, None]).any(axis=1).mean())
    return markov_hr, pop_hr


def test_defaults_shape_dtypes_and_ranges(demo):
    frame = demo.frame
    config = SyntheticConfig()
    assert isinstance(demo, Interactions)
    assert demo.has_time
    assert frame.columns == [C.USER, C.ITEM, C.TIME]
    assert dict(frame.schema) == {C.USER: pl.Int64, C.ITEM: pl.Int64, C.TIME: pl.Int64}
    assert frame.null_count().sum_horizontal().item() == 0
    assert frame[C.USER].n_unique() == config.num_users
    items = frame[C.ITEM].unique().to_numpy()
    assert items.size <= config.num_items
    assert items.size > 0.9 * config.num_items  # nearly the whole catalogue occurs
    assert ((items - 1000) % 7 == 0).all() and items.min() >= 1000 and items.max() <= 1000 + 7 * (config.num_items - 1)
    lengths = frame.group_by(C.USER).len()["len"].to_numpy()
    assert lengths.min() >= config.min_length and lengths.max() <= config.max_length
    assert 20 <= lengths.mean() <= 50
    times = frame[C.TIME].to_numpy()
    assert times.min() > 1_500_000_000 and times.max() < 2_000_000_000  # plausible unix seconds
    assert demo.meta["config"] == SyntheticConfig().to_dict()


def test_ids_are_not_dense(demo):
    users = demo.frame[C.USER].to_numpy()
    items = demo.frame[C.ITEM].to_numpy()
    for ids in (users, items):
        unique = np.unique(ids)
        assert unique.min() > 1
        assert unique.max() - unique.min() + 1 > unique.size  # gaps: not contiguous
    first_seen = _unique_in_order(users)
    assert not (np.diff(first_seen) > 0).all()  # users do not appear in raw-id order


def _unique_in_order(values: np.ndarray) -> np.ndarray:
    _, first = np.unique(values, return_index=True)
    return values[np.sort(first)]


def test_rows_in_time_order_not_grouped_by_user(demo):
    frame = demo.frame
    assert (np.diff(frame[C.TIME].to_numpy()) >= 0).all()
    users = frame[C.USER].to_numpy()
    runs = 1 + int((users[1:] != users[:-1]).sum())
    assert runs > 10 * frame[C.USER].n_unique()  # users interleave, far from one block per user


def test_per_user_times_and_ties(demo):
    frame = demo.frame.sort([C.USER, C.TIME], maintain_order=True)
    gaps = frame.select(pl.col(C.TIME).diff().over(C.USER).alias("gap"))["gap"].drop_nulls().to_numpy()
    assert (gaps >= 0).all()
    ties = (gaps == 0).mean()
    assert 0.01 < ties < 0.2  # some equal timestamps, not many
    assert np.median(gaps[gaps > 0]) < 3600 and gaps.max() > 86_400  # minutes to days
    starts = frame.group_by(C.USER).agg(pl.col(C.TIME).min())[C.TIME].to_numpy()
    assert np.unique(starts // 86_400).size > 100  # users start on different days


def test_deterministic_under_seed():
    small = dict(num_users=300, num_items=200)
    a = generate(**small, seed=5).frame
    b = generate(SyntheticConfig(**small, seed=5)).frame
    c = generate(**small, seed=6).frame
    assert a.equals(b)
    assert not a.equals(c)


def test_overrides():
    config = SyntheticConfig(num_users=50, num_items=80, num_clusters=4)
    interactions = generate(config, min_length=3, max_length=5, seed=2)
    frame = interactions.frame
    lengths = frame.group_by(C.USER).len()["len"].to_numpy()
    assert frame[C.USER].n_unique() == 50
    assert lengths.min() >= 3 and lengths.max() <= 5
    assert frame[C.ITEM].n_unique() <= 80
    assert interactions.meta["config"]["seed"] == 2 and interactions.meta["config"]["num_clusters"] == 4
    fixed = generate(num_users=20, min_length=7, max_length=7).frame
    assert (fixed.group_by(C.USER).len()["len"] == 7).all()


@pytest.mark.parametrize("bad", [dict(num_users=0), dict(min_length=10, max_length=5), dict(transition_prob=1.5),
                                 dict(num_clusters=2000), dict(successors=1000), dict(num_items="many"),
                                 dict(popularity_skew=-1.0), dict(seed=-1), dict(colour="red")])
def test_invalid_options(bad):
    with pytest.raises(ConfigError):
        generate(**bad)


def test_generation_is_fast():
    generate(num_users=10)  # warm up imports
    started = time.perf_counter()
    generate()
    assert time.perf_counter() - started < 1.0


def test_markov_beats_popularity(demo):
    markov_hr, pop_hr = _hit_rates(demo.frame)
    # measured with the defaults: Markov 0.78, popularity 0.05
    assert markov_hr >= 0.6
    assert markov_hr >= 5 * pop_hr


def test_order_carries_the_signal(demo):
    # shuffling each user's events keeps taste clusters and popularity but destroys the item -> next-item signal
    frame = demo.frame
    rng = np.random.default_rng(0)
    shuffled = frame.with_columns(pl.Series("key", rng.permutation(frame.height))).sort([C.USER, "key"])
    shuffled = shuffled.with_columns(pl.int_range(0, pl.len()).alias(C.TIME)).drop("key")
    markov_hr, _ = _hit_rates(frame)
    shuffled_hr, _ = _hit_rates(shuffled)
    assert markov_hr >= 3 * shuffled_hr  # measured: 0.78 vs 0.20


def test_write_csv_log(tmp_path):
    path = write_csv_log(tmp_path / "log.csv", num_rows=100_000, num_users=5_000, num_items=2_000, seed=1,
                         chunk_rows=30_000)
    assert path == tmp_path / "log.csv"
    assert not list(tmp_path.glob("*.partial"))
    with open(path) as handle:
        assert handle.readline().strip() == "user,item,time"
    frame = pl.read_csv(path)
    assert frame.columns == [C.USER, C.ITEM, C.TIME]
    assert frame.height == 100_000
    assert all(dtype == pl.Int64 for dtype in frame.schema.values())
    assert frame[C.USER].n_unique() == 5_000  # every user has a row
    items = frame[C.ITEM].to_numpy()
    assert ((items - 1000) % 7 == 0).all() and items.max() <= 1000 + 7 * 1999
    counts = np.sort(np.bincount((items - 1000) // 7))[::-1]
    assert counts[0] > 20 * np.median(counts)  # Zipf-skewed popularity
    times = frame[C.TIME].to_numpy()
    assert (np.diff(times) >= 0).all() and (np.diff(times) == 0).any()

    again = write_csv_log(tmp_path / "again.csv", num_rows=100_000, num_users=5_000, num_items=2_000, seed=1,
                          chunk_rows=30_000)
    assert again.read_bytes() == path.read_bytes()


@pytest.mark.parametrize("bad", [dict(num_rows=10, num_users=20), dict(num_rows=0), dict(chunk_rows=0)])
def test_write_csv_log_invalid(tmp_path, bad):
    args = dict(num_rows=100, num_users=10, num_items=10) | bad
    with pytest.raises(ConfigError):
        write_csv_log(tmp_path / "x.csv", **args)
