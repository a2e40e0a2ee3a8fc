"""`PrepareOptions`, apart from the cleaning code (which needs polars), so that a cache hit loads no polars."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from seqrec.errors import ConfigError


@dataclass(frozen=True)
class PrepareOptions:
    """How to clean a log before it becomes sequences.

    Attributes:
        dedupe: drop exact duplicate rows (all columns equal; the artificial line-order time is ignored).
        min_rating: keep only interactions with rating >= this value (needs a rating column).
        min_user_count: k-core: users with fewer interactions are dropped (0 or 1 = keep all).
        min_item_count: k-core: items with fewer interactions are dropped (0 or 1 = keep all).
    """

    dedupe: bool = False
    min_rating: float | None = None
    min_user_count: int = 0
    min_item_count: int = 0

    def __post_init__(self) -> None:
        for name in ("min_user_count", "min_item_count"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ConfigError(f"{name} must be a non-negative integer, got {value!r}")
        if self.min_rating is not None and (isinstance(self.min_rating, bool)
                                            or not isinstance(self.min_rating, int | float)):
            raise ConfigError(f"min_rating must be a number, got {self.min_rating!r}")

    def to_dict(self) -> dict:
        return asdict(self)
