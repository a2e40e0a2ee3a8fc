"""Splits: leave-one-out exactly as documented, temporal cut-offs, and their errors."""

from __future__ import annotations

import numpy as np
import pytest

from seqrec.data.interactions import Interactions
from seqrec.data.prepare import prepare
from seqrec.data.splits import leave_one_out, temporal
from seqrec.errors import ConfigError, DataError


def _data():
    # user 1: a b c d e (5), user 2: f g (2, train only), user 3: h i j (3)
    rows = [(1, "a"), (1, "b"), (2, "f"), (1, "c"), (3, "h"), (1, "d"), (2, "g"), (3, "i"), (1, "e"), (3, "j")]
    users, items = zip(*rows, strict=True)
    return prepare(Interactions.from_columns(user=list(users), item=list(items), time=list(range(len(rows)))))


def _names(data, ids):
    return [data.item_vocab.decode(i).item() if i else None for i in np.asarray(ids).tolist()]


def test_leave_one_out_exact():
    data = _data()
    split = leave_one_out(data)
    user = {raw: dense for dense, raw in enumerate(data.users.raw.tolist())}
    train = {raw: _names(data, data.items[data.offsets[u]:split.train_end[u]]) for raw, u in user.items()}
    assert train == {1: ["a", "b", "c"], 2: ["f", "g"], 3: ["h"]}
    assert split.valid.users.tolist() == [user[1], user[3]]
    assert _names(data, split.valid.items) == ["d", "i"]
    assert _names(data, split.test.items) == ["e", "j"]
    # the test input includes the validation item; the validation input is the training prefix
    assert [_names(data, row) for row in split.test.inputs(4)] == [["a", "b", "c", "d"], [None, None, "h", "i"]]
    assert [_names(data, row) for row in split.valid.inputs(2)] == [["b", "c"], [None, "h"]]
    assert split.info == {"users_evaluated": 2, "users_train_only": 1}
    assert split.summary()["train_interactions"] == 6


def test_leave_one_out_without_validation_exact():
    data = _data()
    split = leave_one_out(data, validation=False)
    user = {raw: dense for dense, raw in enumerate(data.users.raw.tolist())}
    train = {raw: _names(data, data.items[data.offsets[u]:split.train_end[u]]) for raw, u in user.items()}
    assert train == {1: ["a", "b", "c", "d"], 2: ["f"], 3: ["h", "i"]}         # two interactions are tested
    assert len(split.valid) == 0 and split.test.users.tolist() == [user[1], user[2], user[3]]
    assert _names(data, split.test.items) == ["e", "g", "j"]
    assert split.info["users_evaluated"] == 3 and split.info["users_train_only"] == 0
    single = prepare(Interactions.from_columns(user=[1, 2], item=["a", "b"], time=[0, 1]))
    with pytest.raises(DataError, match=r"at least 2 interactions \(train, test\)"):
        leave_one_out(single, validation=False)


def test_leave_one_out_without_enough_interactions_is_a_clear_error():
    data = prepare(Interactions.from_columns(user=[1, 1, 2], item=[1, 2, 3]))
    with pytest.raises(DataError, match="at least 3 interactions.*longest sequence has 2"):
        leave_one_out(data)


def test_split_arrays_are_views_not_copies_of_the_log():
    data = _data()
    split = leave_one_out(data)
    assert split.data is data and split.test.data is data
    assert split.valid.positions.dtype == np.int64


def test_temporal_by_time_all_targets():
    data = _data()   # times are 0..9 in file order
    split = temporal(data, valid_time=6, test_time=8)
    assert sorted(_names(data, split.valid.items)) == ["g", "i"]     # times 6, 7
    assert sorted(_names(data, split.test.items)) == ["e", "j"]      # times 8, 9
    assert split.summary()["train_interactions"] == 6
    # input of a test target is everything of that user before it
    by_target = {_names(data, [t])[0]: [x for x in _names(data, row) if x] for t, row in
                 zip(split.test.items, split.test.inputs(10), strict=True)}
    assert by_target == {"e": ["a", "b", "c", "d"], "j": ["h", "i"]}


def test_temporal_first_target_per_user_and_fractions():
    data = _data()
    first = temporal(data, valid_time=3, test_time=8, targets="first")
    assert _names(data, first.valid.items) == ["c", "g", "h"]
    by_fraction = temporal(data, valid_fraction=0.2, test_fraction=0.2)
    assert (by_fraction.info["valid_time"], by_fraction.info["test_time"]) == (6, 8)


def test_temporal_errors():
    data = _data()
    with pytest.raises(ConfigError, match="not both"):
        temporal(data, valid_time=1, test_time=2, test_fraction=0.1, valid_fraction=0.1)
    with pytest.raises(ConfigError, match="must not be after"):
        temporal(data, valid_time=5, test_time=2)
    with pytest.raises(DataError, match="no test interaction"):
        temporal(data, valid_time=5, test_time=100)
    no_time = prepare(Interactions.from_columns(user=[1, 1, 1], item=[1, 2, 3]))
    with pytest.raises(DataError, match="needs timestamps"):
        temporal(no_time, valid_fraction=0.1, test_fraction=0.1)


def test_reprs_are_short_summaries_not_array_dumps():
    from seqrec.data.pipeline import load
    from seqrec.data.splits import leave_one_out

    data = load("demo")
    split = leave_one_out(data)
    assert repr(data).startswith("SequenceData(2,000 users, 1,000 items, 73,506 interactions, timestamps")
    assert repr(split).startswith("Split(leave_one_out, 69,506 training interactions, 2,000 validation and 2,000 "
                                  "test targets, data=SequenceData(")
    assert repr(split.test) == "Targets(2,000 targets)" and repr(data.users) == "Vocab(2,000 user ids, dense from 0)"
    assert max(len(repr(x)) for x in (data, split, split.test, data.item_vocab)) < 500
