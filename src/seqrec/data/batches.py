"""Typed batches handed to models: one frozen dataclass per training task, every field [shape] dtype, meaning.

Padding is item id 0 everywhere; rows may be left- or right-aligned and models must give the same result
either way. `valid = items != 0` is the mask of real positions.

Side inputs: besides the items, a model may read other per-position values (`SIDE_INPUTS`: `times`,
`ratings`, `users`), declared by the model (`side_inputs`, from its config). `data_side_inputs` is the one check
that the data has them, and `side_windows` the one builder of their [B, L] tensors, for training batches, evaluation
targets and recommendation queries alike.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields, replace
from typing import NamedTuple, Protocol, TypeVar

import numpy as np
import torch
from torch import Tensor

from seqrec.data.sequences import SequenceData, gather_windows, rating_ids
from seqrec.errors import ConfigError

_Batch = TypeVar("_Batch", bound="CausalBatch")


def _move(batch: _Batch, device: torch.device | str) -> _Batch:
    changes = {f.name: getattr(batch, f.name).to(device) for f in fields(batch)
               if isinstance(getattr(batch, f.name), Tensor)}
    return replace(batch, **changes)


@dataclass(frozen=True, slots=True)
class CausalBatch:
    """Next-item rows: one row per user window; the loss applies at every position with `targets != 0`."""

    items: Tensor                 # [B, L] int64 input item ids, 0 = padding
    targets: Tensor | None = None  # [B, L] int64 next item at each position, 0 = no loss; None at inference
    # side inputs (`SIDE_INPUTS`), only for a model that reads them (`side_inputs`), built by `side_windows`:
    times: Tensor | None = None    # [B, L] int64 seconds of each input item, 0 = padding
    ratings: Tensor | None = None  # [B, L] int64 rating id 1..R of each input item, 0 = padding/unknown
    users: Tensor | None = None    # [B, L] int64 user bucket 1..U of the row's user, 0 = padding/unknown user

    def to(self, device: torch.device | str) -> CausalBatch:
        return _move(self, device)

    @property
    def valid(self) -> Tensor:
        """[B, L] bool, True at real (non-padding) positions."""
        return self.items != 0


def causal_windows(items: np.ndarray, starts: np.ndarray, ends: np.ndarray, max_len: int, *,
                   align: str = "right") -> tuple[np.ndarray, np.ndarray]:
    """Inputs and next-item targets from the last `max_len + 1` items of each slice `items[starts:ends]`.

    Returns:
        inputs [M, max_len] and targets [M, max_len], int64, 0-padded; `targets[:, t]` is the item after
        `inputs[:, t]`. Vectorised: one gather for all rows.
    """
    window = gather_windows(items, starts, ends, max_len + 1, align=align).astype(np.int64)  # [M, L + 1]
    inputs, targets = window[:, :-1].copy(), window[:, 1:].copy()
    # right alignment: the first real item has no predecessor in the window, it is an input only;
    # left alignment: the last real item is a target only. Either way a position is real in both or in neither.
    inputs[targets == 0] = 0
    targets[inputs == 0] = 0
    return inputs, targets


# ------------------------------------------------------------------------------------------- side inputs

class ReadsInputs(Protocol):
    """What the side-input builders need of a model (`seqrec.models.base.SequentialRecommender`)."""

    @property
    def name(self) -> str: ...

    @property
    def side_inputs(self) -> Mapping[str, InputSetting]: ...

    @property
    def num_ratings(self) -> int: ...

    @property
    def user_buckets(self) -> int: ...


class InputSetting(NamedTuple):
    """Why a model reads a side input, for error messages: the setting that asks for it and the one that
    turns it off, e.g. `("time_bias: true", "model.time_bias: false")`."""

    setting: str
    off: str


@dataclass(frozen=True)
class SideInput:
    """One kind of per-position input besides the items: a `CausalBatch` field and a request field of the same
    name, where the data keeps it, how a raw value is checked, and how values become the model's int64 ids."""

    name: str                                        # "times": the CausalBatch field, the request field
    what: str                                        # "timestamps", in messages
    noun: str                                        # one value: "integer timestamp"
    kind: str                                        # what the values must be: "integer timestamps (seconds)"
    column: str                                      # the data column that holds them: "time"
    lacking: str                                     # said of data without them, after "has none"
    dtype: type                                      # raw values as a numpy array: np.int64, np.float64
    read: Callable[[SequenceData], np.ndarray | None]   # the data's CSR values, None when it has none
    accepts: Callable[[object], bool]                # whether a raw (request) value is one
    encode: Callable[[np.ndarray, ReadsInputs], np.ndarray]   # raw values (any shape) -> int64 model input
    # the raw value a raw-history query gets when it gives none (an unknown user), or None: the query must give
    # them when the model reads them
    unknown: object = None


def _is_integer(value: object) -> bool:
    return not isinstance(value, bool) and isinstance(value, (int, np.integer))


def _is_number(value: object) -> bool:
    return (not isinstance(value, bool) and isinstance(value, (int, float, np.integer, np.floating))
            and bool(np.isfinite(value)))


SIDE_INPUTS: dict[str, SideInput] = {side.name: side for side in (
    SideInput("times", "timestamps", "integer timestamp", "integer timestamps (seconds)", "time",
              " (only the line order)", np.int64, lambda data: data.times if data.has_time else None, _is_integer,
              lambda values, model: np.asarray(values).astype(np.int64)),
    SideInput("ratings", "ratings", "rating", "finite numbers", "rating", "", np.float64,
              lambda data: data.ratings, _is_number,
              lambda values, model: rating_ids(values, model.num_ratings)),   # rounded, clamped to 1..R
    # the row's user (dense index 0..U-1) at each of its items; a raw history is an unknown user (-1 -> 0)
    SideInput("users", "user ids", "user id", "dense user indices", "user", "", np.int64,
              lambda data: np.repeat(np.arange(data.num_users, dtype=np.int64), data.lengths), _is_integer,
              lambda values, model: user_buckets(values, model.user_buckets), unknown=-1),
)}


def user_buckets(users: np.ndarray, buckets: int) -> np.ndarray:
    """Dense user indices (any shape; negative = unknown user) -> int64 bucket ids 1..`buckets` (index modulo
    `buckets`, plus one, as the RAILS reference hashes its user ids), 0 for an unknown user."""
    users = np.asarray(users, dtype=np.int64)
    return np.where(users < 0, 0, users % max(1, buckets) + 1)


def data_side_inputs(model: ReadsInputs, data: SequenceData) -> dict[str, np.ndarray]:
    """The CSR arrays (aligned with `data.items`) of the side inputs `model` reads, by name; {} for a model
    that reads items only. The one check that the data has what the model reads.

    Raises:
        ConfigError: naming the model, what it reads and why, and what to change, when the data lacks one.
    """
    found = {}
    for name, why in model.side_inputs.items():
        side = SIDE_INPUTS[name]
        values = side.read(data)
        if values is None:
            raise ConfigError(f"model {model.name!r} reads {side.what} ({why.setting}), but {data.source} has none"
                              f"{side.lacking}; set {why.off} or use data with a {side.column} column")
        found[name] = values
    return found


def side_windows(model: ReadsInputs, values: Mapping[str, np.ndarray], starts: np.ndarray, ends: np.ndarray,
                 items: np.ndarray, *, align: str = "right") -> dict[str, Tensor]:
    """The side inputs `model` reads, as `CausalBatch` / `predict` keywords: for each one in `values` (CSR
    arrays, or flat arrays with `starts`/`ends` slices), the last `W` values of each slice `[starts[i],
    ends[i])`, W = `items.shape[1]`, aligned like the item window `items` [B, W], encoded (`SideInput.encode`)
    and 0 wherever `items` is padding: [B, W] int64 each. The one builder for training batches, evaluation
    targets and recommendation queries; a side input missing from `values` is left out (the model says so)."""
    width = items.shape[1]
    real = items != 0
    out = {}
    for name in model.side_inputs:
        if name in values:
            window = gather_windows(values[name], starts, ends, width, align=align)
            out[name] = torch.from_numpy(np.where(real, SIDE_INPUTS[name].encode(window, model), 0))
    return out
