"""Ranking metrics over 1-based ranks, one rank per evaluation target.

Every function takes the ranks of the targets (a numpy array or a torch tensor, any integer or float dtype,
`1` = the target is the top item) and returns a python float averaged over targets. With one relevant item per
target, HR@k equals Recall@k, and MRR@k is the reciprocal rank truncated at k.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import torch

DEFAULT_KS: tuple[int, ...] = (1, 5, 10, 20, 50, 100)
Ranks = np.ndarray | torch.Tensor | Sequence[int]       # [M] 1-based ranks


def _as_ranks(ranks: Ranks) -> np.ndarray:
    """[M] float64 copy of `ranks`; ValueError when empty, not 1-D, or holding a rank below 1."""
    if isinstance(ranks, torch.Tensor):
        ranks = ranks.detach().cpu().numpy()
    values = np.asarray(ranks, dtype=np.float64).reshape(-1)      # [M]
    if values.size == 0:
        raise ValueError("no ranks to average: the evaluation had no targets")
    if not np.all(values >= 1):  # also catches NaN
        bad = values[~(values >= 1)]
        raise ValueError(f"ranks are 1-based; got {bad.size} rank(s) below 1 or NaN, e.g. {bad[0]}")
    return values


def _check_k(k: int) -> int:
    if isinstance(k, bool) or int(k) != k or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    return int(k)


def hit_rate(ranks: Ranks, k: int) -> float:
    """Fraction of targets ranked in the top `k` (= Recall@k with one relevant item per target)."""
    values = _as_ranks(ranks)
    return float(np.mean(values <= _check_k(k)))


def ndcg(ranks: Ranks, k: int) -> float:
    """Mean of 1 / log2(rank + 1) over targets ranked in the top `k` (0 for the others).

    With a single relevant item the ideal DCG is 1, so DCG is already normalised.
    """
    values = _as_ranks(ranks)
    gains = np.where(values <= _check_k(k), 1.0 / np.log2(values + 1.0), 0.0)   # [M]
    return float(np.mean(gains))


def mrr(ranks: Ranks, k: int | None = None) -> float:
    """Mean reciprocal rank; targets ranked below `k` count 0 (`k=None`: no cut-off)."""
    values = _as_ranks(ranks)
    reciprocal = 1.0 / values                                                    # [M]
    if k is not None:
        reciprocal = np.where(values <= _check_k(k), reciprocal, 0.0)
    return float(np.mean(reciprocal))


def metrics_from_ranks(ranks: Ranks, ks: Iterable[int] = DEFAULT_KS) -> dict[str, float]:
    """Every metric at every cut-off.

    Args:
        ranks: [M] 1-based ranks (numpy or torch).
        ks: cut-offs; they are reported in ascending order.

    Returns:
        `{"HR@k": ..., "NDCG@k": ..., "MRR@k": ...}` for each k ascending, then `"MRR"` (no cut-off).

    Raises:
        ValueError: `ranks` is empty or holds a rank below 1, or a k is not a positive integer.
    """
    values = _as_ranks(ranks)
    out: dict[str, float] = {}
    for k in sorted({_check_k(k) for k in ks}):
        out[f"HR@{k}"] = hit_rate(values, k)
        out[f"NDCG@{k}"] = ndcg(values, k)
        out[f"MRR@{k}"] = mrr(values, k)
    out["MRR"] = mrr(values)
    return out
