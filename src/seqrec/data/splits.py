"""Splits of SequenceData into training sequences and evaluation targets, as index arrays (no copies).

A split keeps, for every user, the end of its training prefix (`train_end`: the training sequence of user
`u` is `items[offsets[u]:train_end[u]]`), and for validation and test a list of targets. A target is a pair
(user, position): the item to predict is `items[position]` and the model's input is everything the user did
before it, `items[offsets[user]:position]`.

Protocols:
- `leave_one_out`: per user, the last interaction is the test target, the second-to-last the validation
  target, the rest is training; the test input therefore includes the validation item. Users with fewer
  than 3 interactions are kept for training only (all their interactions train, none is evaluated); their
  number is reported. If no user has 3 or more interactions the split is refused. With `validation=False`
  (the protocol of the BERT4Rec and HSTU papers' code) the second-to-last interaction trains too, there is no
  validation target, users need 2 interactions to be tested, and the model tested is the last epoch's.
- `temporal`: global time cut-offs (given as times, or as fractions of interactions from the end):
  interactions before the validation cut-off train; each interaction in [valid, test) is a validation
  target and each one at or after the test cut-off a test target (`targets="all"`), or only each user's
  first one in each period (`targets="first"`). Inputs are the user's whole history before the target.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from seqrec.data.sequences import SequenceData, gather_windows
from seqrec.errors import ConfigError, DataError


@dataclass(frozen=True)
class Targets:
    """Evaluation targets: predict `data.items[positions[i]]` for dense user `users[i]` from what came before.

    Attributes:
        users: [M] int64 dense user ids.
        positions: [M] int64 absolute indices into `data.items`.
    """

    data: SequenceData
    users: np.ndarray
    positions: np.ndarray

    def __len__(self) -> int:
        return int(self.users.shape[0])

    def __repr__(self) -> str:
        return f"Targets({len(self):,} targets)"

    @property
    def items(self) -> np.ndarray:
        """[M] int32 target item ids."""
        return self.data.items[self.positions]

    @property
    def input_starts(self) -> np.ndarray:
        return self.data.offsets[self.users]

    def inputs(self, max_len: int, *, align: str = "right") -> np.ndarray:
        """[M, max_len] int32 most recent history before each target, padded with 0."""
        return gather_windows(self.data.items, self.input_starts, self.positions, max_len, align=align)


@dataclass(frozen=True)
class Split:
    """Training prefixes plus validation and test targets over one SequenceData.

    Attributes:
        train_end: [U] int64, exclusive end (absolute index into `data.items`) of each user's training prefix.
        protocol: "leave_one_out" or "temporal".
        info: what the split did (users evaluated, users kept for training only, cut-off times ...).
    """

    data: SequenceData
    train_end: np.ndarray
    valid: Targets
    test: Targets
    protocol: str
    info: dict

    def __repr__(self) -> str:
        return (f"Split({self.protocol}, {int(self.train_lengths.sum()):,} training interactions, "
                f"{len(self.valid):,} validation and {len(self.test):,} test targets, data={self.data!r})")

    @property
    def train_lengths(self) -> np.ndarray:
        """[U] int64 length of each user's training prefix."""
        return self.train_end - self.data.offsets[:-1]

    def targets(self, name: str) -> Targets:
        """The `valid` or `test` targets; a clear error for a split without validation targets."""
        if name not in ("valid", "test"):
            raise ConfigError(f"unknown split {name!r}; expected 'valid' or 'test'")
        if name == "valid" and len(self.valid) == 0:
            raise ConfigError("this run has no validation targets (split.validation: none: the second-to-last "
                              "item trained); evaluate the test targets")
        return self.valid if name == "valid" else self.test

    def summary(self) -> dict:
        return {"protocol": self.protocol, "train_interactions": int(self.train_lengths.sum()),
                "valid_targets": len(self.valid), "test_targets": len(self.test), **self.info}


def leave_one_out(data: SequenceData, *, validation: bool = True) -> Split:
    """Last interaction -> test, second-to-last -> validation (unless `validation` is False: then it trains),
    the rest -> training (see module docstring)."""
    lengths = data.lengths
    held = 2 if validation else 1
    evaluated = np.flatnonzero(lengths >= held + 1)
    if evaluated.size == 0:
        longest = int(lengths.max()) if lengths.size else 0
        roles = "train, validation, test" if validation else "train, test"
        raise DataError(f"leave-one-out needs users with at least {held + 1} interactions ({roles}); "
                        f"no user in {data.source} has that many (the longest sequence has {longest})")
    ends = data.offsets[1:]
    train_end = ends.copy()
    train_end[evaluated] -= held
    info: dict = {"users_evaluated": int(evaluated.size), "users_train_only": int(lengths.size - evaluated.size)}
    if validation:
        valid = Targets(data, evaluated, ends[evaluated] - 2)
    else:
        info["validation"] = "none (the second-to-last item trains; the last epoch is tested)"
        valid = Targets(data, np.empty(0, np.int64), np.empty(0, np.int64))
    return Split(
        data=data,
        train_end=train_end,
        valid=valid,
        test=Targets(data, evaluated, ends[evaluated] - 1),
        protocol="leave_one_out",
        info=info,
    )


def temporal(data: SequenceData, *, valid_time: int | None = None, test_time: int | None = None,
             valid_fraction: float | None = None, test_fraction: float | None = None,
             targets: str = "all") -> Split:
    """Global time cut-offs (see module docstring). Give both times, or both fractions."""
    if not data.has_time:
        raise DataError(f"a temporal split needs timestamps, but {data.source} has none (only the order of "
                        "lines); use leave_one_out, or a file with a time column")
    if targets not in ("all", "first"):
        raise ConfigError(f"targets must be 'all' or 'first', got {targets!r}")
    valid_time, test_time = _cut_offs(data, valid_time, test_time, valid_fraction, test_fraction)
    user_of = np.repeat(np.arange(data.num_users, dtype=np.int64), data.lengths)  # [nnz]
    before_valid = data.times < valid_time
    # times are sorted within each user, so the training prefix is the count of early interactions
    train_end = data.offsets[:-1] + np.bincount(user_of, weights=before_valid, minlength=data.num_users
                                                ).astype(np.int64)
    in_valid = np.flatnonzero(~before_valid & (data.times < test_time))
    in_test = np.flatnonzero(data.times >= test_time)
    if targets == "first":
        in_valid = _first_per_user(in_valid, user_of)
        in_test = _first_per_user(in_test, user_of)
    if in_test.size == 0:
        raise DataError(f"the temporal split of {data.source} has no test interaction at or after time {test_time}")
    info = {"valid_time": int(valid_time), "test_time": int(test_time), "targets": targets}
    return Split(data, train_end, Targets(data, user_of[in_valid], in_valid),
                 Targets(data, user_of[in_test], in_test), "temporal", info)


def _cut_offs(data: SequenceData, valid_time: int | None, test_time: int | None, valid_fraction: float | None,
              test_fraction: float | None) -> tuple[int, int]:
    if valid_fraction is not None or test_fraction is not None:
        if valid_time is not None or test_time is not None:
            raise ConfigError("give the temporal cut-offs either as times or as fractions, not both")
        if valid_fraction is None or test_fraction is None:
            raise ConfigError("give both valid_fraction and test_fraction")
        if not (0 <= valid_fraction < 1 and 0 < test_fraction < 1 and valid_fraction + test_fraction < 1):
            raise ConfigError(f"fractions must be in [0, 1) with a sum below 1, got valid={valid_fraction}, "
                              f"test={test_fraction}")
        ordered = np.sort(data.times)
        n = ordered.size
        test_time = ordered[min(n - 1, int(np.floor(n * (1 - test_fraction))))]
        valid_time = ordered[min(n - 1, int(np.floor(n * (1 - test_fraction - valid_fraction))))]
    if valid_time is None or test_time is None:
        raise ConfigError("a temporal split needs valid_time and test_time (or valid_fraction and test_fraction)")
    if valid_time > test_time:
        raise ConfigError(f"valid_time ({valid_time}) must not be after test_time ({test_time})")
    return int(valid_time), int(test_time)


def _first_per_user(positions: np.ndarray, user_of: np.ndarray) -> np.ndarray:
    """Keep the first position of each user (positions are ascending, users contiguous)."""
    if positions.size == 0:
        return positions
    users = user_of[positions]
    first = np.ones(positions.size, dtype=bool)
    first[1:] = users[1:] != users[:-1]
    return positions[first]
