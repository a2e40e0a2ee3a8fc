"""Requests in raw ids -> queries in dense ids: the validation half of `seqrec.recommend`.

`QueryEncoder` checks one request (a known user or a raw item history, k, allow/deny lists, and the side inputs
of a raw history: `times`, `ratings`) against the data's id maps and the model's inputs, and returns a `Query` in
dense ids, or a `RecommendError` naming the field at fault. `Recommender` (in `seqrec.recommend`) is a
`QueryEncoder` that also answers queries.

Raw ids are typed as the vocabulary's ids (`lookup_ids`): integers, or integers written as text, for integer ids;
strings otherwise. Bools, floats and other look-alikes are refused rather than answered for another history.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sized
from dataclasses import dataclass, field

import numpy as np

from seqrec.data.batches import SIDE_INPUTS, data_side_inputs
from seqrec.data.sequences import SequenceData
from seqrec.data.vocab import Vocab
from seqrec.errors import DataError
from seqrec.models.base import SequentialRecommender


class RecommendError(DataError):
    """A recommendation request that cannot be answered: unknown user or items, empty history, bad k.

    `status` is the HTTP status the service answers with (404 unknown user, 422 otherwise).
    """

    def __init__(self, message: str, *, status: int = 422, field: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.field = field

@dataclass(frozen=True)
class Query:
    """One request, in dense ids: the history the model reads and the candidates' rules.

    history: [H] int64 dense item ids, oldest first (all of it is 'seen'; the model reads the last max_len).
    side: the side inputs of the history's items that the model reads (`side_inputs`), by name, [H] each as
        `seqrec.data.batches.SIDE_INPUTS[name].dtype` (timestamps int64, raw ratings float64); empty for a model
        that reads items only.
    """

    history: np.ndarray
    k: int = 10
    exclude_seen: bool = True
    allow: np.ndarray | None = None    # [A] dense ids: only these may be recommended
    deny: np.ndarray | None = None     # [X] dense ids: never recommended
    side: Mapping[str, np.ndarray] = field(default_factory=dict)   # name -> [H] raw values of `history`'s items

class QueryEncoder:
    """Validates requests in raw ids for `model` over `data` (its id maps and histories) and encodes them as
    `Query`s in dense ids."""

    def __init__(self, model: SequentialRecommender, data: SequenceData) -> None:
        self.model = model
        self.data = data
        self._data_side: dict[str, np.ndarray] | None = None

    def user_history(self, user: object) -> np.ndarray:
        """[H] dense item ids of a known user's whole log, oldest first; RecommendError if unknown."""
        return self.data.items[self._user_slice(user)].astype(np.int64)

    def _user_slice(self, user: object) -> slice:
        if isinstance(user, (bool, float, np.bool_, np.floating)):
            raise RecommendError(f"{user!r} is not a user id (a {type(user).__name__}); user ids are "
                                 f"{'integers or strings' if self.data.users.is_integer else 'strings'}",
                                 field="user")
        u = int(lookup_ids(self.data.users, [user])[0])
        if u < 0:
            raise RecommendError(f"unknown user {user!r}", status=404, field="user")
        return slice(int(self.data.offsets[u]), int(self.data.offsets[u + 1]))

    def encode_side(self, name: str, values: object, length: int) -> np.ndarray | None:
        """The side input `name` (`times`, `ratings`, `users`) of a raw history of `length` items as [H] raw
        values (`SideInput.dtype`); None when the model reads none and none were given; the side input's
        `unknown` value when the model reads it, none were given and it has one (a raw history's user).

        Raises:
            RecommendError: the model reads them and none were given, or they are not one valid value per
                history item.
        """
        side = SIDE_INPUTS[name]
        if values is None:
            why = self.model.side_inputs.get(name)
            if why is not None and side.unknown is not None:         # e.g. users: a raw history's is unknown
                return np.full(length, side.unknown, dtype=side.dtype)
            if why is not None:
                raise RecommendError(f"this model reads {side.what} ({why.setting}): give '{name}', one {side.noun} "
                                     "per history item", field=name)
            return None
        if isinstance(values, (str, bytes)) or not isinstance(values, Sized) or not isinstance(values, Iterable):
            raise RecommendError(f"{name} must be a list of {side.kind}", field=name)
        listed = list(values)
        if len(listed) != length:
            raise RecommendError(f"{name} has {len(listed)} values but the history has {length} items; give one "
                                 f"{side.noun} per history item", field=name)
        bad = [v for v in listed if not side.accepts(v)]
        if bad:
            raise RecommendError(f"{name} must be {side.kind}, got {bad[0]!r}", field=name)
        return np.asarray(listed, dtype=side.dtype)

    def encode_items(self, raw_ids: Iterable[object], *, ignore_unknown: bool = False, field: str = "history"
                     ) -> tuple[np.ndarray, list]:
        """Raw item ids -> (dense ids [M] of the known ones, the unknown raw ids).

        Unknown ids are an error naming them, unless `ignore_unknown`.
        """
        dense, unknown = self._encode_checked(list(raw_ids), ignore_unknown, field)
        return dense[dense >= 0], unknown

    def _encode_checked(self, values: list, ignore_unknown: bool, field: str) -> tuple[np.ndarray, list]:
        """([M] int64 dense ids, -1 for unknown ones; the unknown raw ids), refusing unknown ids unless
        `ignore_unknown`."""
        for position, value in enumerate(values):
            # bool and float pass numpy's integer conversion (True -> 1, 1.5 -> 1): refuse them instead of
            # answering for another history
            if isinstance(value, (bool, float, np.bool_, np.floating)):
                kind = "integers or strings" if self.data.item_vocab.is_integer else "strings"
                raise RecommendError(f"{field}[{position}]: {value!r} is not an item id (a "
                                     f"{type(value).__name__}); item ids are {kind}", field=field)
        dense = self._dense(values)
        unknown = [values[i] for i in np.flatnonzero(dense < 0)]
        if unknown and not ignore_unknown:
            shown = ", ".join(repr(v) for v in unknown[:10]) + (f" and {len(unknown) - 10} more"
                                                                if len(unknown) > 10 else "")
            raise RecommendError(f"unknown item id(s) in {field}: {shown}", field=field)
        return dense, unknown

    def _dense(self, values: list) -> np.ndarray:
        """[M] int64 dense ids of raw item ids, -1 for the unknown ones."""
        return lookup_ids(self.data.item_vocab, values)

    def query(self, *, user: object = None, history: Iterable[object] | None = None, k: int = 10,
              exclude_seen: bool = True, allow: Iterable[object] | None = None, deny: Iterable[object] | None = None,
              ignore_unknown: bool = False, times: object = None, ratings: object = None) -> tuple[Query, list]:
        """Validate one request in raw ids; (Query, ignored unknown ids). `times` / `ratings`: the timestamps /
        ratings of a raw `history`, one per item (needed by a model that reads them; a known user's come from
        the data)."""
        if (user is None) == (history is None):
            raise RecommendError("give exactly one of 'user' or 'history'", field="user")
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise RecommendError(f"k must be a positive integer, got {k!r}", field="k")
        ignored: list = []
        side: dict[str, np.ndarray]
        given = {"times": times, "ratings": ratings}
        if user is not None:
            for name, value in given.items():
                if value is not None:
                    raise RecommendError(f"{name} go with a raw history; a known user's come from the data",
                                         field=name)
            rows = self._user_slice(user)
            seen = self.data.items[rows].astype(np.int64)
            side = {name: values[rows].astype(SIDE_INPUTS[name].dtype) for name, values in self.data_side.items()}
        else:
            if isinstance(history, (str, bytes)):
                raise RecommendError("history must be a list of item ids", field="history")
            listed = list(history) if history is not None else []
            checked = {name: self.encode_side(name, given.get(name), len(listed)) for name in SIDE_INPUTS}
            seen, ignored, known = self._encode_history(listed, ignore_unknown)   # the side inputs first
            side = {name: values[known] for name, values in checked.items()
                    if values is not None and name in self.model.side_inputs}
            if seen.size == 0:
                what = "has no known item" if ignored else "is empty"
                raise RecommendError(f"the history {what}; give at least one known item id", field="history")
        allow_ids = self.encode_items(allow, ignore_unknown=ignore_unknown, field="allow")[0] \
            if allow is not None else None
        deny_ids = self.encode_items(deny, ignore_unknown=True, field="deny")[0] if deny is not None else None
        return Query(seen, int(k), bool(exclude_seen), allow_ids, deny_ids, side), ignored

    @property
    def data_side(self) -> dict[str, np.ndarray]:
        """The data's CSR side inputs that the model reads (`data_side_inputs`; ConfigError if it lacks one)."""
        if self._data_side is None:
            self._data_side = data_side_inputs(self.model, self.data)
        return self._data_side

    def _encode_history(self, history: list[object], ignore_unknown: bool) -> tuple[np.ndarray, list, np.ndarray]:
        """(dense ids of the known items, unknown raw ids, [H] bool mask of the known items)."""
        dense, ignored = self._encode_checked(list(history), ignore_unknown, "history")
        known = dense >= 0
        return dense[known], ignored, known


def plain_value(value: object) -> object:
    """A numpy scalar as the matching Python value (JSON-ready)."""
    item = getattr(value, "item", None)
    return item() if callable(item) else value


_INT_TEXT = re.compile(r"\s*[+-]?[0-9]+\s*\Z")       # ASCII digits only: int() also reads "1_0" and "٣"
_INT64 = (-2 ** 63, 2 ** 63 - 1)


def _as_id(value: object, integer: bool) -> int | str | None:
    """A raw id in the vocabulary's type (an int64-range int for integer ids, else a str); None when it cannot
    be one of its ids. Integers written as text ("42", as the CLI passes them) are integers; "1_0", "٣", "4.0",
    bools, floats and integers beyond int64 are no integer id."""
    if isinstance(value, (bool, np.bool_)):
        return None
    if not integer:
        return str(value) if isinstance(value, (str, int, np.integer)) else None
    if not (isinstance(value, (int, np.integer)) or isinstance(value, str) and _INT_TEXT.match(value)):
        return None
    number = int(value)
    return number if _INT64[0] <= number <= _INT64[1] else None


def lookup_ids(vocab: Vocab, values: list) -> np.ndarray:
    """[M] int64 dense ids of raw ids in `vocab`, -1 for those it does not hold (or that cannot be its ids)."""
    typed = [_as_id(v, vocab.is_integer) for v in values]
    valid = np.array([t is not None for t in typed], dtype=bool)
    dense = np.full(len(values), -1, dtype=np.int64)
    if valid.any():
        kept = np.array([t for t in typed if t is not None], dtype=np.int64 if vocab.is_integer else str)
        dense[valid] = vocab.encode(kept, missing=-1)
    return dense
