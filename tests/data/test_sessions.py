"""Session data: Diginetica reader, SR-GNN preprocessing, preprocessed session files, the session split."""

from __future__ import annotations

import calendar
import csv
import time
from collections import Counter

import numpy as np
import pytest

from seqrec.data.interactions import Interactions
from seqrec.data.sessions import (
    load_session_files,
    preprocess_sessions,
    read_diginetica,
    split_sessions,
)
from seqrec.errors import ConfigError, DataError

HEADER = "sessionId;userId;itemId;timeframe;eventdate"
# (session, item, timeframe ms, date); file order matters for ties. Hand-computed outcome in the tests below.
RAW_LOG = [
    (1, 10, 3000, "2016-06-01"), (1, 20, 1000, "2016-06-01"), (1, 30, 2000, "2016-06-01"),  # -> 20 30 10
    (2, 20, 0, "2016-05-20"), (2, 30, 500, "2016-05-20"), (2, 10, 500, "2016-05-20"),      # tie keeps 30, 10
    (3, 60, 0, "2016-05-25"),                                 # one click: dropped before items are counted
    (9, 10, 0, "2016-05-28"),
    (4, 40, 0, "2016-06-02"), (4, 20, 10, "2016-06-02"),      # 40 is rare -> [20] -> dropped
    (5, 10, 0, "2016-06-03"), (5, 20, 10, "2016-06-03"),      # on the split date (max - 7 days): neither part
    (6, 20, 0, "2016-06-08"), (6, 50, 10, "2016-06-08"), (6, 10, 20, "2016-06-08"),  # 50 unseen in train
    (7, 50, 0, "2016-06-10"), (7, 30, 10, "2016-06-10"),      # -> [30] -> dropped
    (8, 30, 0, "2016-06-09"), (8, 30, 10, "2016-06-09"), (8, 20, 20, "2016-06-09"),
    (9, 30, 100_000, "2016-05-29"),                           # session 9 spans two dates: its date is 05-29
    (10, 60, 0, "2016-05-15"), (10, 20, 10, "2016-05-15"),    # 60 counts once (session 3 is gone) -> dropped
]


def write_log(path, rows, header=HEADER):
    lines = [header] + [f"{s};NA;{i};{t};{d}" for s, i, t, d in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


def sessions_of(split):
    data = split.data
    return [data.item_vocab.decode(data.sequence(r)).tolist() for r in range(data.num_users)]


def test_read_diginetica_times(tmp_path):
    clicks = read_diginetica(write_log(tmp_path / "views.csv", RAW_LOG))
    assert clicks.columns == ["session", "item", "time", "date"]
    assert clicks.height == len(RAW_LOG)
    day = calendar.timegm(time.strptime("2016-05-29", "%Y-%m-%d"))  # UTC midnight
    assert clicks["date"][20] == day and clicks["time"][20] == day + 100.0


def test_preprocessing_hand_computed(tmp_path):
    clicks = read_diginetica(write_log(tmp_path / "views.csv", RAW_LOG))
    split = preprocess_sessions(clicks, min_item_count=2, valid_fraction=0.34)
    # training by date: 2 (05-20), 9 (05-29), 1 (06-01, the validation one); test: 6 (06-08), 8 (06-09)
    assert sessions_of(split) == [[20, 30, 10], [10, 30], [20, 30, 10], [20, 10], [30, 30, 20]]
    data = split.data
    assert data.item_vocab.raw.tolist() == [10, 20, 30]
    assert data.offsets.tolist() == [0, 3, 5, 8, 10, 13]
    assert split.train_end.tolist() == [3, 5, 5, 8, 10]
    assert split.valid.users.tolist() == [2, 2] and split.valid.positions.tolist() == [6, 7]
    assert split.test.users.tolist() == [3, 4, 4] and split.test.positions.tolist() == [9, 11, 12]
    assert split.test.items.tolist() == [1, 3, 2]
    assert split.test.inputs(3).tolist() == [[0, 0, 2], [0, 0, 3], [0, 3, 3]]
    assert split.info["train_sessions"] == 2 and split.info["valid_sessions"] == 1
    assert split.info["train_targets"] == 3 and data.info["sessions_on_split_date"] == 1
    assert data.has_time and data.times[4] - data.times[3] == 86_400 + 100


def test_truncation_happens_before_items_are_counted(tmp_path):
    clicks = read_diginetica(write_log(tmp_path / "views.csv", RAW_LOG))
    split = preprocess_sessions(clicks, min_item_count=2, valid_fraction=0.0, max_session_len=2)
    assert sessions_of(split) == [[20, 30], [10, 30], [20, 30], [30, 30]]
    assert len(split.valid) == 0 and split.test.positions.tolist() == [7]


def test_interactions_input_uses_timestamps():
    day = 86_400
    interactions = Interactions.from_columns(
        user=[1, 1, 2, 2, 3, 3, 3], item=[5, 6, 5, 6, 6, 5, 7],
        time=[0, 10, day, day + 5, 3 * day, 3 * day + 1, 3 * day + 2])
    split = preprocess_sessions(interactions, test_days=1, min_item_count=1, valid_fraction=0.5)
    assert sessions_of(split) == [[5, 6], [5, 6], [6, 5]]       # item 7 unseen in training
    assert split.info["valid_sessions"] == 1 and len(split.test) == 1
    with pytest.raises(DataError, match="needs click times"):
        preprocess_sessions(Interactions.from_columns(user=[1, 1], item=[5, 6]))


def srgnn_reference(path, test_days=7, min_count=5):
    """SR-GNN's preprocess.py logic in plain Python (dicts and loops), with a session's date = its latest."""
    clicks, dates, first = {}, {}, {}
    with open(path, newline="") as handle:
        for row_number, row in enumerate(csv.DictReader(handle, delimiter=";")):
            sid = row["session_id"]
            day = calendar.timegm(time.strptime(row["eventdate"], "%Y-%m-%d"))
            clicks.setdefault(sid, []).append((row["item_id"], day + int(row["timeframe"]) / 1000))
            dates[sid] = max(dates.get(sid, day), day)
            first.setdefault(sid, row_number)
    clicks = {s: [i for i, _ in sorted(c, key=lambda x: x[1])] for s, c in clicks.items() if len(c) > 1}
    counts = Counter(i for c in clicks.values() for i in c)
    clicks = {s: [i for i in c if counts[i] >= min_count] for s, c in clicks.items()}
    clicks = {s: c for s, c in clicks.items() if len(c) >= 2}
    split = max(dates[s] for s in clicks) - test_days * 86_400
    train = sorted((s for s in clicks if dates[s] < split), key=lambda s: (dates[s], first[s]))
    test = sorted((s for s in clicks if dates[s] > split), key=lambda s: (dates[s], first[s]))
    seen = {i for s in train for i in clicks[s]}
    test_seqs = [[i for i in clicks[s] if i in seen] for s in test]
    return [clicks[s] for s in train], [c for c in test_seqs if len(c) >= 2]


@pytest.mark.realdata
def test_diginetica_sample_reads_and_preprocesses(dataset):
    path = dataset("diginetica-sample-raw/sample_train-item-views.csv")
    clicks = read_diginetica(path)
    # the README says 12,390 rows (`wc -l` minus the header); the last line has no newline: 12,391 rows
    assert clicks.height == 12_391
    assert clicks["session"].n_unique() == 2_986 and clicks["item"].n_unique() == 7_139
    split = preprocess_sessions(clicks, valid_fraction=0.1)
    train, test = srgnn_reference(path)
    got = [[str(i) for i in s] for s in sessions_of(split)]
    assert got == train + test
    assert split.info["test_sessions"] == len(test) and len(split.test) == sum(len(s) - 1 for s in test)


def test_reader_errors_name_line_and_column(tmp_path):
    rows = [(1, 10, 0, "2016-06-01"), (1, 11, "soon", "2016-06-01")]
    with pytest.raises(DataError) as err:
        read_diginetica(write_log(tmp_path / "a.csv", rows))
    assert err.value.line == 3 and err.value.column == "timeframe" and err.value.value == "soon"
    rows = [(1, 10, 0, "2016-06-01"), (1, 11, 5, "June 1st")]
    with pytest.raises(DataError) as err:
        read_diginetica(write_log(tmp_path / "b.csv", rows))
    assert err.value.line == 3 and err.value.column == "eventdate"
    with pytest.raises(DataError, match="Diginetica") as err:
        read_diginetica(write_log(tmp_path / "c.csv", rows, header="session;item;time"))
    assert err.value.line == 1


def test_bad_options_are_refused(tmp_path):
    clicks = read_diginetica(write_log(tmp_path / "views.csv", RAW_LOG))
    with pytest.raises(ConfigError, match="valid_fraction"):
        preprocess_sessions(clicks, valid_fraction=1.0)
    with pytest.raises(ConfigError, match="max_session_len"):
        preprocess_sessions(clicks, max_session_len=1)
    with pytest.raises(DataError, match="no session"):
        preprocess_sessions(clicks, min_item_count=100)


def write_sessions(path, sessions):
    path.write_text("".join(",".join(map(str, s)) + "\n" for s in sessions))
    return path


def test_session_files_split(tmp_path):
    train = write_sessions(tmp_path / "train.txt", [[1, 2], [3, 4, 5], [2, 2, 6], [7, 1]])
    test = write_sessions(tmp_path / "test.txt", [[1, 3, 4], [9]])
    split = load_session_files(train, test, valid_fraction=0.25)
    data = split.data
    assert data.num_items == 9 and data.offsets.tolist() == [0, 2, 5, 8, 10, 13, 14]
    assert split.train_end.tolist() == [2, 5, 8, 8, 10, 13]         # row 3 validates, rows 4-5 test
    assert split.valid.positions.tolist() == [9] and split.valid.items.tolist() == [1]
    assert split.test.positions.tolist() == [11, 12] and split.test.users.tolist() == [4, 4]
    assert split.protocol == "session" and not data.has_time
    remapped = load_session_files(train, test, valid_fraction=0.25, remap=True)
    assert remapped.data.item_vocab.raw.tolist() == [1, 2, 3, 4, 5, 6, 7, 9]
    assert remapped.test.items.tolist() == [3, 4]


def test_session_files_bad_ids(tmp_path):
    train = write_sessions(tmp_path / "train.txt", [[1, 2], [3, 0]])
    test = write_sessions(tmp_path / "test.txt", [[1, 3]])
    with pytest.raises(DataError) as err:
        load_session_files(train, test)
    assert err.value.line == 2 and err.value.value == 0
    (tmp_path / "bad.txt").write_text("1,2\n3,x y\n")
    with pytest.raises(DataError) as err:
        load_session_files(tmp_path / "bad.txt", test)
    assert err.value.line == 2


def test_split_sessions_refuses_a_split_without_test_targets(tmp_path):
    train = write_sessions(tmp_path / "train.txt", [[1, 2], [3, 4]])
    test = write_sessions(tmp_path / "test.txt", [[1]])
    with pytest.raises(DataError, match="no test target"):
        load_session_files(train, test)
    data = load_session_files(train, write_sessions(tmp_path / "t2.txt", [[1, 2]])).data
    with pytest.raises(ConfigError):
        split_sessions(data, 0)


def check_prefixes(split, num_test_sessions):
    """Every target's input lies inside its own session, before the target; every prefix is there once."""
    data = split.data
    for targets in (split.valid, split.test):
        starts, ends = data.offsets[targets.users], data.offsets[targets.users + 1]
        assert np.all((targets.positions > starts) & (targets.positions < ends))
        assert np.all(split.train_end[targets.users] == starts)     # evaluation sessions never train
        assert np.unique(targets.positions).size == len(targets)
    test_rows = np.arange(data.num_users - num_test_sessions, data.num_users)
    assert len(split.test) == int((data.lengths[test_rows] - 1).sum())


@pytest.mark.realdata
def test_diginetica_srgnn_files(dataset):
    split = load_session_files(dataset("diginetica-srgnn/train_sessions.txt"),
                               dataset("diginetica-srgnn/test_sessions.txt"))
    info, data = split.info, split.data
    train_sessions = info["train_sessions"] + info["valid_sessions"]
    assert train_sessions == 186_670 and info["test_sessions"] == 15_963
    assert data.offsets[train_sessions] == 906_140 and data.num_items == 43_097
    assert np.unique(data.items[:906_140]).size == 43_097
    assert len(split.test) == 60_858                                 # SR-GNN's augmented test samples
    assert info["train_targets"] + len(split.valid) == 719_470       # SR-GNN's training augmentation
    assert info["valid_sessions"] == 18_667                          # the last 10% of the training file
    check_prefixes(split, 15_963)


@pytest.mark.realdata
def test_yoochoose_srgnn_files(dataset):
    split = load_session_files(dataset("yoochoose1_64-srgnn/train_sessions.txt"),
                               dataset("yoochoose1_64-srgnn/test_sessions.txt"))
    info, data = split.info, split.data
    assert info["train_sessions"] + info["valid_sessions"] == 116_167 and info["test_sessions"] == 15_324
    assert data.num_interactions == 486_026 + 71_222 and data.num_items == 37_483
    assert len(split.test) == 55_898
    assert info["train_targets"] + len(split.valid) == 369_859
    check_prefixes(split, 15_324)


def test_evaluator_ranks_session_targets(tmp_path):
    import torch

    from seqrec.evaluate import target_ranks
    from seqrec.models.pop import Pop, PopConfig

    train = write_sessions(tmp_path / "train.txt", [[1, 2], [2, 3, 2], [4, 2], [3, 3]])
    test = write_sessions(tmp_path / "test.txt", [[4, 2, 3]])
    split = load_session_files(train, test, valid_fraction=0.25)
    model = Pop(PopConfig(), split.data.num_items)
    model.fit(split)                       # counts rows 0-2 only (row 3 validates): 2 x4, 1 x1, 3 x1, 4 x1
    assert torch.exp(model.popularity[1:, 0]).round().tolist() == [2, 5, 2, 2]
    assert target_ranks(model, split.test).tolist() == [1, 4]       # 2 is the most popular; 3 ties -> last


def test_random_validation_sessions(tmp_path):
    sessions = [[1, 2], [2, 3, 2], [4, 2], [3, 3, 1], [1, 4], [2, 4, 3], [3, 1], [4, 4, 2], [1, 3], [2, 1]]
    train = write_sessions(tmp_path / "train.txt", sessions)
    test = write_sessions(tmp_path / "test.txt", [[4, 2, 3]])
    latest = load_session_files(train, test, valid_fraction=0.3)
    assert np.unique(latest.valid.users).tolist() == [7, 8, 9]
    draws = {}
    for seed in (0, 1, 2, 3):
        split = load_session_files(train, test, valid_fraction=0.3, valid_sessions="random", seed=seed)
        rows = np.unique(split.valid.users)
        assert rows.size == 3 and np.all(rows < 10)
        assert split.info["valid_sessions"] == 3 and split.info["valid_selection"] == f"random (seed {seed})"
        starts, ends = split.data.offsets[:-1], split.data.offsets[1:]
        trains = np.setdiff1d(np.arange(10), rows)
        assert np.array_equal(split.train_end[trains], ends[trains])          # the other 7 train whole
        assert np.array_equal(split.train_end[rows], starts[rows])            # validation rows train nothing
        # every prefix of each validation session is a target once, as the session's own clicks
        assert len(split.valid) == sum(len(sessions[r]) - 1 for r in rows)
        assert split.valid.positions.tolist() == [p for r in rows for p in range(starts[r] + 1, ends[r])]
        assert split.info["train_targets"] == sum(len(sessions[r]) - 1 for r in trains)
        check_prefixes(split, 1)
        draws[seed] = rows.tolist()
    again = load_session_files(train, test, valid_fraction=0.3, valid_sessions="random", seed=2)
    assert np.unique(again.valid.users).tolist() == draws[2]                  # deterministic under the seed
    assert len({tuple(v) for v in draws.values()}) > 1                        # and the draw depends on it
    with pytest.raises(ConfigError, match="valid_sessions"):
        load_session_files(train, test, valid_sessions="earliest")


def test_random_validation_from_the_config(tmp_path):
    from seqrec import api
    from seqrec.config import config_from_dict

    train = write_sessions(tmp_path / "train.txt", [[1, 2], [2, 3, 2], [4, 2], [3, 3, 1], [1, 4]])
    test = write_sessions(tmp_path / "test.txt", [[4, 2, 3]])
    tree = {"data": {"path": str(train), "test_path": str(test), "format": "sessions"},
            "split": {"protocol": "session", "valid_fraction": 0.4, "valid_sessions": "random", "seed": 5},
            "model": {"name": "pop"}}
    split = api.load_split(config_from_dict(tree))
    expected = load_session_files(train, test, valid_fraction=0.4, valid_sessions="random", seed=5)
    assert np.array_equal(split.valid.users, expected.valid.users) and split.info["valid_sessions"] == 2
    tree["split"]["valid_sessions"] = "first"
    with pytest.raises(ConfigError, match="valid_sessions"):
        config_from_dict(tree)
