"""Preparing: ordering, ties, id maps, dedupe, rating filter, k-core fixed point, vocab, windows."""

from __future__ import annotations

import numpy as np
import pytest

from seqrec.data.interactions import Interactions
from seqrec.data.prepare import PrepareOptions, k_core, prepare
from seqrec.data.sequences import gather_windows
from seqrec.errors import ConfigError, DataError


def _log(rows, **kw):
    users, items, times = zip(*rows, strict=True)
    return Interactions.from_columns(user=list(users), item=list(items), time=list(times), **kw)


def test_sorted_by_time_per_user_and_ties_keep_file_order():
    # user "b" has three events at time 5 in file order x, y, z, and an earlier one at time 1
    data = prepare(_log([("b", "x", 5), ("a", "q", 3), ("b", "y", 5), ("b", "w", 1), ("a", "p", 2),
                         ("b", "z", 5)]))
    assert data.users.raw.tolist() == ["a", "b"]
    seq_a = data.item_vocab.decode(data.sequence(0)).tolist()
    seq_b = data.item_vocab.decode(data.sequence(1)).tolist()
    assert seq_a == ["p", "q"]
    assert seq_b == ["w", "x", "y", "z"]
    assert data.offsets.tolist() == [0, 2, 6]
    assert data.times.tolist() == [2, 3, 1, 5, 5, 5]


def test_dense_ids_round_trip_and_padding_reserved():
    rng = np.random.default_rng(0)
    users = rng.integers(1000, 2000, size=500)
    items = rng.choice(np.arange(10, 10_000, 37), size=500)
    data = prepare(Interactions.from_columns(user=users, item=items, time=rng.integers(0, 100, 500)))
    assert data.items.min() >= 1 and data.items.max() == data.num_items
    assert data.item_vocab.decode(data.item_vocab.encode(items)).tolist() == items.tolist()
    assert data.users.decode(data.users.encode(users)).tolist() == users.tolist()
    # every (user, item) pair of the log is in the CSR, under the user's dense id
    user_of = np.repeat(np.arange(data.num_users), data.lengths)
    got = sorted(zip(data.users.decode(user_of).tolist(), data.item_vocab.decode(data.items).tolist(), strict=True))
    assert got == sorted(zip(users.tolist(), items.tolist(), strict=True))


def test_vocab_unknown_ids_named():
    data = prepare(_log([(1, 10, 0), (1, 11, 1)]))
    with pytest.raises(DataError, match="unknown item id.*99"):
        data.item_vocab.encode([10, 99])
    assert data.item_vocab.encode([10, 99], missing=0).tolist() == [1, 0]


def test_dedupe_drops_exact_duplicates_only():
    log = _log([(1, 10, 0), (1, 10, 0), (1, 10, 1), (2, 10, 0)])
    assert prepare(log).num_interactions == 4
    data = prepare(log, dedupe=True)
    assert data.num_interactions == 3
    assert data.info["duplicates_dropped"] == 1


def test_dedupe_ignores_line_order_time_of_files_without_timestamps():
    log = Interactions.from_columns(user=[1, 1, 1], item=[5, 5, 6])
    assert prepare(log, dedupe=True).num_interactions == 2


def test_min_rating_filter_and_missing_rating_column():
    log = Interactions.from_columns(user=[1, 1, 2], item=[1, 2, 3], time=[0, 1, 2], rating=[5.0, 2.0, 4.0])
    data = prepare(log, min_rating=4)
    assert data.num_interactions == 2 and data.ratings.tolist() == [5.0, 4.0]
    with pytest.raises(DataError, match="no rating column"):
        prepare(_log([(1, 1, 0)]), min_rating=3)


def _naive_k_core(pairs, k_user, k_item):
    pairs = list(pairs)
    while True:
        uc, ic = {}, {}
        for u, i in pairs:
            uc[u] = uc.get(u, 0) + 1
            ic[i] = ic.get(i, 0) + 1
        kept = [(u, i) for u, i in pairs if uc[u] >= k_user and ic[i] >= k_item]
        if len(kept) == len(pairs):
            return kept
        pairs = kept


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_k_core_reaches_the_fixed_point(seed):
    rng = np.random.default_rng(seed)
    users = rng.integers(0, 60, size=600)
    items = (rng.zipf(1.6, size=600) % 80).astype(np.int64)
    keep, rounds = k_core(users, items, 5, 4)
    assert rounds >= 1
    expected = _naive_k_core(zip(users.tolist(), items.tolist(), strict=True), 5, 4)
    assert list(zip(users[keep].tolist(), items[keep].tolist(), strict=True)) == expected
    data = prepare(Interactions.from_columns(user=users, item=items), min_user_count=5, min_item_count=4)
    assert data.lengths.min() >= 5
    assert np.bincount(data.items)[1:].min() >= 4
    assert data.num_interactions == len(expected)
    assert data.info["k_core_rounds"] == rounds


def test_k_core_that_removes_everything_is_an_error():
    with pytest.raises(DataError, match="no interactions left .*k-core"):
        prepare(_log([(1, 1, 0), (2, 2, 0)]), min_user_count=2)


def test_bad_options():
    with pytest.raises(ConfigError, match="min_user_count"):
        PrepareOptions(min_user_count=-1)
    with pytest.raises(ConfigError, match="min_rating"):
        PrepareOptions(min_rating="high")


def test_float_times_sort_before_flooring():
    data = prepare(_log([(1, "late", 1.7), (1, "early", 1.2)]))
    assert data.item_vocab.decode(data.sequence(0)).tolist() == ["early", "late"]
    assert data.times.tolist() == [1, 1]


def test_gather_windows_right_and_left():
    values = np.arange(1, 11, dtype=np.int32)        # 1..10
    starts, ends = np.array([0, 5, 9]), np.array([4, 10, 9])
    right = gather_windows(values, starts, ends, 3)
    assert right.tolist() == [[2, 3, 4], [8, 9, 10], [0, 0, 0]]
    left = gather_windows(values, starts, ends, 6, align="left")
    assert left.tolist() == [[1, 2, 3, 4, 0, 0], [6, 7, 8, 9, 10, 0], [0] * 6]
    assert right.dtype == np.int32
