"""Typed batches handed to models: one frozen dataclass per training task, every field [shape] dtype, meaning.

Padding is item id 0 everywhere; rows may be left- or right-aligned and models must give the same result
either way. `valid = items != 0` is the mask of real positions.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

import numpy as np
import torch
from torch import Tensor

from seqrec.data.sequences import gather_windows, rating_ids  # noqa: F401 (re-exported)


def _move(batch, device: torch.device | str):
    changes = {f.name: getattr(batch, f.name).to(device) for f in fields(batch)
               if isinstance(getattr(batch, f.name), Tensor)}
    return replace(batch, **changes)


@dataclass(frozen=True, slots=True)
class CausalBatch:
    """Next-item rows: one row per user window; the loss applies at every position with `targets != 0`."""

    items: Tensor                 # [B, L] int64 input item ids, 0 = padding
    targets: Tensor | None = None  # [B, L] int64 next item at each position, 0 = no loss; None at inference
    times: Tensor | None = None    # [B, L] int64 seconds of each input item, 0 = padding; only for `uses_times`
    ratings: Tensor | None = None  # [B, L] int64 rating id 1..R of each input item, 0 = padding/unknown;
    #                                only for `uses_ratings` (`rating_ids`)

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
