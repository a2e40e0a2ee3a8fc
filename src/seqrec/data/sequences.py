"""SequenceData: every user's interactions as CSR arrays, plus the id vocabularies.

Layout (DESIGN §2): the interactions of dense user `u` are `items[offsets[u]:offsets[u + 1]]`, in time order
(ties keep file order), with `times` and optional `ratings` aligned to `items`. Item ids are 1..N (0 = padding);
users are 0..U-1. Splits and batches are index arithmetic on these arrays, never copies of the log.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from seqrec.data.vocab import Vocab


@dataclass(frozen=True)
class SequenceData:
    """All sequences of a prepared data set.

    Attributes:
        offsets: [U + 1] int64, CSR row pointers.
        items: [nnz] int32, dense item ids 1..N.
        times: [nnz] int64, timestamps (or line order when `has_time` is False).
        users: Vocab of users (dense 0..U-1).
        item_vocab: Vocab of items (dense 1..N).
        ratings: [nnz] float32 or None.
        has_time: whether `times` are real timestamps.
        source: description of where the data came from.
        info: what preparing did (rows read, duplicates dropped, k-core rounds ...).
    """

    offsets: np.ndarray
    items: np.ndarray
    times: np.ndarray
    users: Vocab
    item_vocab: Vocab
    ratings: np.ndarray | None = None
    has_time: bool = True
    source: str = "<memory>"
    info: dict = field(default_factory=dict)

    @property
    def num_users(self) -> int:
        return int(self.offsets.shape[0] - 1)

    @property
    def num_items(self) -> int:
        """N: real items are 1..N; id 0 is padding."""
        return len(self.item_vocab)

    @property
    def num_interactions(self) -> int:
        return int(self.items.shape[0])

    @property
    def lengths(self) -> np.ndarray:
        """[U] int64 sequence length of every user."""
        return np.diff(self.offsets)

    def __repr__(self) -> str:
        extras = (", timestamps" if self.has_time else "") + (", ratings" if self.ratings is not None else "")
        return (f"SequenceData({self.num_users:,} users, {self.num_items:,} items, {self.num_interactions:,} "
                f"interactions{extras}, source={self.source!r})")

    def sequence(self, user: int) -> np.ndarray:
        """The dense item ids of dense user `user` (a view)."""
        return self.items[self.offsets[user]:self.offsets[user + 1]]

    def summary(self) -> dict:
        """Counts and statistics of the data set, JSON-serialisable."""
        lengths = self.lengths
        n_users, n_items, nnz = self.num_users, self.num_items, self.num_interactions
        out = {
            "source": self.source,
            "users": n_users,
            "items": n_items,
            "interactions": nnz,
            "length_min": int(lengths.min()) if n_users else 0,
            "length_median": float(np.median(lengths)) if n_users else 0.0,
            "length_mean": round(float(lengths.mean()), 3) if n_users else 0.0,
            "length_max": int(lengths.max()) if n_users else 0,
            "density": nnz / (n_users * n_items) if n_users and n_items else 0.0,
            "has_time": self.has_time,
            "time_min": int(self.times.min()) if self.has_time and nnz else None,
            "time_max": int(self.times.max()) if self.has_time and nnz else None,
            "has_rating": self.ratings is not None,
        }
        out.update(self.info)
        return out


def gather_windows(values: np.ndarray, starts: np.ndarray, ends: np.ndarray, max_len: int, *,
                   align: str = "right", pad: int = 0) -> np.ndarray:
    """Gather the last `max_len` values of each slice `values[starts[i]:ends[i]]` into a padded matrix.

    Vectorised (one fancy-index gather, no loop over rows). `align="right"` puts the most recent value in the
    last column (padding on the left); `align="left"` puts the first kept value in column 0.

    Returns:
        [M, max_len] array of `values.dtype`, padded with `pad`.
    """
    if align not in ("left", "right"):
        raise ValueError(f"align must be 'left' or 'right', got {align!r}")
    starts = np.asarray(starts, dtype=np.int64)
    ends = np.asarray(ends, dtype=np.int64)
    lengths = np.minimum(ends - starts, max_len)                     # [M]
    cols = np.arange(max_len, dtype=np.int64)[None, :]                # [1, L]
    if align == "right":
        index = ends[:, None] - max_len + cols                        # [M, L], last column = ends - 1
        valid = cols >= (max_len - lengths)[:, None]
    else:
        index = (ends - lengths)[:, None] + cols
        valid = cols < lengths[:, None]
    out = np.full(index.shape, pad, dtype=values.dtype)
    out[valid] = values[index[valid]]
    return out


def slice_pairs(values: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(row, value) of every element of the slices `values[starts[i]:ends[i]]`, both [P] int64, sorted by
    value (stable). One repeat/arange gather over all slices, no loop over rows."""
    starts = np.asarray(starts, dtype=np.int64)
    lengths = np.asarray(ends, dtype=np.int64) - starts                              # [B]
    rows = np.repeat(np.arange(lengths.shape[0], dtype=np.int64), lengths)           # [P]
    run_starts = np.cumsum(lengths) - lengths                                        # [B] start of row b's run
    index = np.repeat(starts - run_starts, lengths) + np.arange(rows.shape[0])       # [P] into values
    picked = values[index].astype(np.int64)                                          # [P]
    order = np.argsort(picked, kind="stable")
    return rows[order], picked[order]


def rating_ids(values: np.ndarray, num_ratings: int) -> np.ndarray:
    """int64 rating ids of raw ratings (any shape): rounded half up, clamped to 1..num_ratings; NaN -> 0 (unknown).

    MovieLens' 1-5 stars map to themselves; a 0.5-5 scale rounds to the nearest star (2.5 -> 3, 0.5 -> 1).
    Callers zero the padding positions themselves (a padded window holds the rating 0, which clamps to 1).
    """
    values = np.asarray(values, dtype=np.float64)
    finite = np.isfinite(values)
    rounded = np.floor(np.where(finite, values, 0.0) + 0.5)
    return np.where(finite, np.clip(rounded, 1, num_ratings), 0).astype(np.int64)
