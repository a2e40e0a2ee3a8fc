"""Preparing: Interactions -> SequenceData.

Steps, all vectorised (Polars and numpy, no Python loop over rows):
1. optional rating threshold (keep rating >= min_rating);
2. optional removal of exact duplicate rows (first occurrence kept);
3. optional iterative k-core: drop users with fewer than `min_user_count` and items with fewer than
   `min_item_count` interactions, repeated until nothing changes (a fixed point);
4. dense ids in sorted raw-id order (users 0..U-1, items 1..N, 0 = padding);
5. stable sort by (user, time): ties keep file order;
6. CSR offsets.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
import polars as pl

from seqrec.data import columns as C
from seqrec.data.interactions import Interactions
from seqrec.data.options import PrepareOptions
from seqrec.data.sequences import SequenceData
from seqrec.data.vocab import Vocab
from seqrec.errors import DataError


def prepare(interactions: Interactions, options: PrepareOptions | None = None, **overrides: Any) -> SequenceData:
    """Clean `interactions` and store them as time-ordered CSR sequences.

    Args:
        interactions: the log, in file order.
        options: cleaning options; keyword `overrides` replace single fields.

    Raises:
        DataError: when nothing is left after filtering, or a rating filter is asked of a log without ratings.
    """
    options = replace(options or PrepareOptions(), **overrides)
    frame = interactions.frame
    source = interactions.source
    info: dict = {"rows_read": frame.height}

    if options.min_rating is not None:
        if C.RATING not in frame.columns:
            raise DataError(f"a minimum rating was asked for, but {source} has no rating column "
                            f"(columns: {frame.columns})")
        frame = frame.filter(pl.col(C.RATING) >= options.min_rating)
        info["rows_below_min_rating"] = info["rows_read"] - frame.height

    if options.dedupe:
        subset = [c for c in frame.columns if c != C.TIME or interactions.has_time]
        before = frame.height
        frame = frame.unique(subset=subset, keep="first", maintain_order=True)
        info["duplicates_dropped"] = before - frame.height

    _require_rows(frame.height, source, "after filtering by rating and duplicates")
    user_codes = (frame.get_column(C.USER).rank("dense").to_numpy() - 1).astype(np.int64)
    item_codes = (frame.get_column(C.ITEM).rank("dense").to_numpy() - 1).astype(np.int64)
    user_raw = _sorted_unique(frame.get_column(C.USER))
    item_raw = _sorted_unique(frame.get_column(C.ITEM))

    keep, rounds = k_core(user_codes, item_codes, options.min_user_count, options.min_item_count)
    if rounds:
        info["k_core_rounds"] = rounds
        info["k_core_dropped"] = int(keep.size - keep.sum())
        _require_rows(int(keep.sum()), source,
                      f"after k-core filtering (min_user_count={options.min_user_count}, "
                      f"min_item_count={options.min_item_count})")
        user_codes, item_codes = user_codes[keep], item_codes[keep]
        user_codes, user_raw = _compact(user_codes, user_raw)
        item_codes, item_raw = _compact(item_codes, item_raw)

    times = frame.get_column(C.TIME).to_numpy()
    ratings = frame.get_column(C.RATING).to_numpy() if C.RATING in frame.columns else None
    if rounds:
        times = times[keep]
        ratings = None if ratings is None else ratings[keep]

    order = np.lexsort((times, user_codes))  # stable: equal (user, time) keep file order
    counts = np.bincount(user_codes, minlength=len(user_raw))
    offsets = np.zeros(len(user_raw) + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    sorted_times = times[order]
    if sorted_times.dtype.kind == "f":
        sorted_times = np.floor(sorted_times)
    return SequenceData(
        offsets=offsets,
        items=(item_codes[order] + 1).astype(np.int32),
        times=sorted_times.astype(np.int64),
        users=Vocab(user_raw, start=0, kind="user"),
        item_vocab=Vocab(item_raw, start=1, kind="item"),
        ratings=None if ratings is None else ratings[order].astype(np.float32),
        has_time=interactions.has_time,
        source=source,
        info=info,
    )


def k_core(users: np.ndarray, items: np.ndarray, min_user_count: int, min_item_count: int
           ) -> tuple[np.ndarray, int]:
    """Iterative k-core filter to a fixed point.

    Args:
        users, items: [n] dense codes (0-based) of each interaction.

    Returns:
        (keep, rounds): [n] bool mask of surviving interactions and the number of rounds that dropped rows.
    """
    keep = np.ones(users.shape[0], dtype=bool)
    if min_user_count <= 1 and min_item_count <= 1:
        return keep, 0
    num_users = int(users.max()) + 1 if users.size else 0
    num_items = int(items.max()) + 1 if items.size else 0
    rounds = 0
    while True:
        user_count = np.bincount(users[keep], minlength=num_users)
        item_count = np.bincount(items[keep], minlength=num_items)
        drop = keep & ((user_count < min_user_count)[users] | (item_count < min_item_count)[items])
        if not drop.any():
            return keep, rounds
        keep &= ~drop
        rounds += 1


def _compact(codes: np.ndarray, raw: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Renumber codes to 0..K-1 over the codes still present, keeping sorted order."""
    present = np.bincount(codes, minlength=raw.shape[0]) > 0
    new_code = np.cumsum(present) - 1
    return new_code[codes], raw[present]


def _sorted_unique(column: pl.Series) -> np.ndarray:
    unique = column.unique().sort()
    if unique.dtype == pl.String:
        return unique.to_numpy().astype(str)
    return unique.to_numpy().astype(np.int64)


def _require_rows(count: int, source: str, when: str) -> None:
    if count == 0:
        raise DataError(f"no interactions left in {source} {when}")
