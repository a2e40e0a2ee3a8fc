"""Scoring states against the item table in bounded blocks: the one path shared by the recommender's exact top-k
and the evaluator's full ranking.

- `model_device`: where a model's tensors live (its first parameter, else its first buffer).
- `score_items`: `model.score(states, ids)`, checked to give one score per state and item.
- `item_ranges`: contiguous item id ranges `[low, high)` covering ids 0..N (0 is padding), so that no block of
  scores is larger than asked whatever the catalogue size.
- `Pairs` / `exclusion_pairs` / `pairs_in`: the (row, item) pairs removed from each row's candidates, sorted by
  item so that the pairs falling in an id range are one `searchsorted` away.
- `topk`: the exact top-k over items 1..N with exclusions, a running top-k merged range by range; equal scores
  come in increasing item id (`lower_id_first`).

The evaluator counts the items at or above each target in the same ranges (`seqrec.evaluate.ranking`); its
pessimistic ties and NaN rules stay its own.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Protocol

import numpy as np
import torch
from torch import Tensor, nn

# (rows, item ids), both [P] int64 and sorted by item id: items removed from a row's candidates
Pairs = tuple[np.ndarray, np.ndarray]


class Scorer(Protocol):
    """What scoring needs of a model (`seqrec.models.base.SequentialRecommender`)."""

    def score(self, states: Tensor, item_ids: Tensor | None = None) -> Tensor: ...


def model_device(model: nn.Module, default: torch.device | str = "cpu") -> torch.device:
    """The device of the model's first parameter, else of its first buffer, else `default`."""
    tensor: Tensor | None = next(iter(model.parameters()), None)
    if tensor is None:
        tensor = next(iter(model.buffers()), None)
    return tensor.device if tensor is not None else torch.device(default)


def score_items(model: Scorer, states: Tensor, ids: Tensor | None, columns: int) -> Tensor:
    """`model.score(states, ids)` [B, columns] (all N + 1 items when `ids` is None), checked to be that shape."""
    scores = model.score(states, ids)
    expected = (states.shape[0], columns)
    if tuple(scores.shape) != expected:
        raise ValueError(f"model.score returned shape {tuple(scores.shape)}, expected {expected} "
                         "(one score per state and item)")
    return scores


def item_ranges(columns: int, chunk: int) -> Iterator[tuple[int, int]]:
    """Contiguous id ranges `[low, high)` of at most `chunk` ids covering 0..columns - 1, in order."""
    for low in range(0, columns, chunk):
        yield low, min(low + chunk, columns)


def exclusion_pairs(*removed: Sequence[np.ndarray | None]) -> Pairs | None:
    """(rows, items) sorted by item of every item removed from each row's candidates: row b loses the items of
    `removed[0][b]`, `removed[1][b]`, ... (None = nothing); None when no row loses any."""
    empty = np.zeros(0, np.int64)
    parts = [np.concatenate([np.asarray(r, dtype=np.int64) if r is not None else empty for r in row])
             for row in zip(*removed)]
    lengths = np.array([p.size for p in parts], dtype=np.int64)
    if lengths.sum() == 0:
        return None
    items = np.concatenate(parts)
    rows = np.repeat(np.arange(len(parts), dtype=np.int64), lengths)
    order = np.argsort(items, kind="stable")
    return rows[order], items[order]


def pairs_in(pairs: Pairs | None, low: int, high: int, device: torch.device) -> tuple[Tensor, Tensor] | None:
    """(rows, columns relative to `low`) as tensors on `device` of the pairs whose item is in `[low, high)`;
    None when there are none. Duplicated pairs may repeat."""
    if pairs is None:
        return None
    rows, items = pairs
    first, last = np.searchsorted(items, [low, high])
    if last <= first:
        return None
    return (torch.from_numpy(rows[first:last]).to(device),
            torch.from_numpy(items[first:last] - low).to(device))


def topk(model: Scorer, states: Tensor, k: int, columns: int, excluded: Pairs | None = None, *,
         max_block: int = 2 ** 24) -> tuple[Tensor, Tensor]:
    """Exact top-k over items 1..columns - 1 of `model`'s scores for `states` [B, D]: (ids [B, k'], scores
    [B, k']) on the CPU, best first, equal scores in increasing id, k' = min(k, columns - 1).

    `columns` is the number of rows of the model's item table (N + 1, row 0 = padding, never returned). Items
    are scored in contiguous id ranges of at most `max_block / B` ids (a running top-k is merged range by
    range); `excluded` (rows, items) pairs sorted by item get -inf. Excluded items can still appear, with score
    -inf, when fewer than k candidates are left; callers drop them.
    """
    num_rows = states.shape[0]
    k = min(int(k), columns - 1)
    chunk = max(k + 1, max_block // max(num_rows, 1))
    best_scores: Tensor | None = None
    best_ids: Tensor | None = None
    with torch.inference_mode():
        for low, high in item_ranges(columns, chunk):
            ids = None if (low == 0 and high == columns) else torch.arange(low, high, device=states.device)
            block = model.score(states, ids).float()                                   # [B, C]
            if low == 0:
                block[:, 0] = -torch.inf                                                # padding
            inside = pairs_in(excluded, low, high, block.device)
            if inside is not None:
                block[inside] = -torch.inf
            top = torch.topk(block, min(k, high - low), dim=1, sorted=True)
            top_ids = top.indices + low
            if best_scores is None or best_ids is None:
                best_scores, best_ids = top.values, top_ids
            else:
                merged = torch.cat([best_scores, top.values], dim=1)
                merged_ids = torch.cat([best_ids, top_ids], dim=1)
                pick = torch.topk(merged, k, dim=1, sorted=True)
                best_scores, best_ids = pick.values, merged_ids.gather(1, pick.indices)
    assert best_scores is not None and best_ids is not None                            # columns >= 1
    best_scores, best_ids = lower_id_first(best_scores.cpu(), best_ids.cpu())
    return best_ids, best_scores


def lower_id_first(scores: Tensor, ids: Tensor) -> tuple[Tensor, Tensor]:
    """Reorder each row of a best-first top-k (scores, ids [B, k]) so that equal scores come in increasing id."""
    if scores.numel() == 0:
        return scores, ids
    order = np.lexsort((ids.numpy(), -scores.numpy().astype(np.float64)), axis=-1)    # score desc, id asc
    index = torch.from_numpy(order)
    return scores.gather(1, index), ids.gather(1, index)
