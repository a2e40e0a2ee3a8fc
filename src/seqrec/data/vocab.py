"""Vocab: raw ids <-> dense ids.

Dense ids are assigned in sorted order of the raw ids (numeric order for integer ids, code-point order for
strings), so the raw-id table is sorted and both directions are vectorised: `decode` is a gather and `encode`
a binary search. Items start at 1 (0 is the padding id); users start at 0.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from seqrec.errors import DataError


@dataclass(frozen=True)
class Vocab:
    """Sorted raw ids; dense id of `raw[k]` is `k + start`.

    Attributes:
        raw: [V] sorted unique raw ids, int64 or unicode.
        start: dense id of the first raw id (1 for items, 0 for users).
        kind: "item" or "user", used in messages.
    """

    raw: np.ndarray
    start: int
    kind: str

    def __len__(self) -> int:
        return int(self.raw.shape[0])

    def __repr__(self) -> str:
        return f"Vocab({len(self):,} {self.kind} ids, dense from {self.start})"

    @property
    def is_integer(self) -> bool:
        return self.raw.dtype.kind in "iu"

    def decode(self, dense: np.ndarray | int) -> np.ndarray:
        """Dense ids -> raw ids (padding id 0 of items is not decodable)."""
        index = np.asarray(dense) - self.start
        if np.any((index < 0) | (index >= len(self))):
            raise DataError(f"dense {self.kind} id out of range",
                            expected=f"{self.start}..{len(self) + self.start - 1}")
        return self.raw[index]

    def encode(self, raw_ids: ArrayLike, *, missing: int | None = None) -> np.ndarray:
        """Raw ids -> dense ids. Unknown ids raise DataError naming them, or map to `missing` when given."""
        values = self._coerce(raw_ids)
        index = np.searchsorted(self.raw, values)
        index_clipped = np.minimum(index, max(len(self) - 1, 0))
        found = (index < len(self)) & (self.raw[index_clipped] == values) if len(self) else np.zeros(values.shape, bool)
        dense = index_clipped.astype(np.int64) + self.start
        if not np.all(found):
            if missing is None:
                unknown = values[~found]
                shown = ", ".join(repr(v.item() if hasattr(v, "item") else v) for v in unknown[:5])
                more = f" and {unknown.size - 5} more" if unknown.size > 5 else ""
                raise DataError(f"unknown {self.kind} id(s): {shown}{more}")
            dense[~found] = missing
        return dense

    def _coerce(self, raw_ids: ArrayLike) -> np.ndarray:
        values = np.asarray(raw_ids)
        if self.is_integer and values.dtype.kind not in "iu":
            try:
                values = values.astype(np.int64)
            except (ValueError, TypeError):
                bad = next(v for v in values.ravel() if not _is_int(v))
                raise DataError(f"{self.kind} ids are integers", value=bad) from None
        elif not self.is_integer and values.dtype.kind != "U":
            values = values.astype(str)
        return values


def _is_int(value: Any) -> bool:
    try:
        int(value)
    except (ValueError, TypeError):
        return False
    return True
