"""Full ranking: the rank of every evaluation target among all N real items, no sampled negatives.

Protocol:
- Candidates are the real items 1..N. The padding item 0 is never ranked and never counted, whatever the
  model scores it.
- Ties are pessimistic: rank = 1 + #{j != t: s_j > s_t} + #{j != t: s_j == s_t}. An item scored exactly like
  the target counts above it, so a degenerate model (constant scores, an untrained table of zeros) ranks every
  target last instead of first, and ties of Pop between equally popular items never help it.
- NaN is the worst score. An item scored NaN never counts above a target with a number (even -inf); a target
  scored NaN ties with every candidate and is therefore ranked last. Infinite scores compare as usual.
- `exclude_history=True` removes every item of the user's whole history before the target (not only the last
  `max_len` the model reads) from the candidates, except the target itself, which is always ranked (the filter
  of SASRec's, BERT4Rec's and most papers' code). `exclude_history="window"` removes only the items of the window
  the model reads (the last `max_len` before the target), as generative-recommenders' evaluation filters its
  `past_ids`: on logs longer than `max_len` it ranks more candidates, so its figures are at most those of
  `True`.
- The target's score is read from the very score matrix it is compared with (one `model.score` call), so
  items with identical vectors tie exactly; BLAS may round the same dot product differently in calls of other
  shapes, which would turn a true tie into a random win or loss.

Targets are batched by history length (each batch cut to its longest history), which only changes speed:
models give the same states whatever the padding. Scores are computed in blocks (`seqrec.scoring`, the path the
recommender's top-k takes too): rows in batches of
`batch_size`, and, when `batch * (N + 1)` would exceed `max_block` elements, items in contiguous id ranges,
each scored together with the batch's targets to read their scores from the same call (the batch shrinks if
needed so that a [B, C + B] block fits). The ranks do not depend on the blocking.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np
import torch
from torch import Tensor

from seqrec.data.batches import data_side_inputs, side_windows
from seqrec.data.sequences import slice_pairs
from seqrec.data.splits import Targets
from seqrec.evaluate.metrics import DEFAULT_KS, metrics_from_ranks
from seqrec.models.base import SequentialRecommender
from seqrec.scoring import Pairs, item_ranges, model_device, pairs_in, score_items


def target_ranks(model: SequentialRecommender, targets: Targets, *, exclude_history: bool | str = False,
                 batch_size: int = 256, max_block: int = 2 ** 24, device: str | torch.device = "cpu",
                 shard: tuple[int, int] | None = None) -> np.ndarray:
    """Rank every target among all real items (see the module docstring for ties, NaN and exclusion).

    Args:
        model: a `seqrec.models.SequentialRecommender` (`max_len`, `num_items`, `predict`, `score`), already
            on `device`. It is put in eval mode for the evaluation and given back in its previous mode.
        targets: the evaluation targets, e.g. `split.test`.
        exclude_history: never rank the items the user interacted with before the target (except the target):
            True = the whole history, "window" = the last `model.max_len` of it, False = rank every item.
        batch_size: targets scored together.
        max_block: most score elements computed in one block (at least [1, 2]); items are chunked, and the
            batch shrunk if needed, to stay within it.
        device: where inputs are sent; must be the model's device.
        shard: `(rank, world)`: rank only the batches `rank, rank + world, ...` of the one-process batching and
            leave 0 for the others, so that the sum of the `world` shards' results is exactly the one-process
            result (each batch is computed with the same rows and width as in one process).

    Returns:
        [M] int64 1-based ranks, aligned with `targets` (0 for targets of other shards).

    Raises:
        ValueError: bad sizes, a target id outside 1..N, data with more items than the model, a model on
            another device, or an `exclude_history` that is not True, False or "window".
        ConfigError: the model reads a side input (timestamps, ratings) that the data lacks.
    """
    if not (isinstance(exclude_history, (bool, np.bool_)) or exclude_history == "window"):
        raise ValueError(f"exclude_history must be True, False or 'window', got {exclude_history!r}")
    device = _check_call(model, targets, batch_size, max_block, device)
    rows_per_batch, items_per_block = _block_shape(int(batch_size), int(max_block), int(model.num_items) + 1)
    rank, world = shard if shard is not None else (0, 1)
    if not 0 <= rank < world:
        raise ValueError(f"shard must be (rank, world) with 0 <= rank < world, got {shard!r}")
    side_values = data_side_inputs(model, targets.data)                             # what else the model reads
    ranks = np.zeros(len(targets), dtype=np.int64)                                  # [M]
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            # batches of similar history length, each cut to its longest history: models are indifferent
            # to padding (a contract test checks it), and attention costs grow with the square of the width
            lengths = targets.positions - targets.input_starts                         # [M]
            order = np.argsort(lengths, kind="stable")
            for start in range(rank * rows_per_batch, len(targets), world * rows_per_batch):
                chosen = order[start:start + rows_per_batch]
                part = Targets(targets.data, targets.users[chosen], targets.positions[chosen])
                ranks[chosen] = _rank_batch(model, part, side_values, exclude_history, items_per_block, device)
    finally:
        model.train(was_training)
    return ranks


def evaluate(model: SequentialRecommender, targets: Targets, *, ks: Iterable[int] = DEFAULT_KS,
             exclude_history: bool | str = False, batch_size: int = 256, max_block: int = 2 ** 24,
             device: str | torch.device = "cpu") -> dict[str, float]:
    """Full-ranking metrics of `model` on `targets`: `metrics_from_ranks(target_ranks(...), ks)`.

    Raises:
        ValueError: no targets, or any error of `target_ranks`.
    """
    ranks = target_ranks(model, targets, exclude_history=exclude_history, batch_size=batch_size,
                         max_block=max_block, device=device)
    return metrics_from_ranks(ranks, ks)


def _rank_batch(model: SequentialRecommender, part: Targets, side_values: dict[str, np.ndarray],
                exclude_history: bool | str, items_per_block: int, device: str | torch.device) -> np.ndarray:
    """[B] int64 ranks of one batch of targets."""
    num_rows = len(part)
    num_columns = int(model.num_items) + 1                                          # N + 1, with padding
    width = int(min(max((part.positions - part.input_starts).max(), 1), model.max_len))
    window = part.inputs(width).astype(np.int64)                                    # [B, <= L]
    side = side_windows(model, side_values, part.input_starts, part.positions, window)  # side inputs it reads
    inputs = torch.from_numpy(window).to(device)
    states = model.predict(inputs, **{name: values.to(device) for name, values in side.items()})   # [B, D]
    target = torch.from_numpy(part.items.astype(np.int64)).to(device)               # [B]
    rows = torch.arange(num_rows, device=device)                                    # [B]
    excluded = _history_pairs(part, int(model.max_len) if exclude_history == "window" else None) \
        if exclude_history else None
    if items_per_block >= num_columns:
        scores = score_items(model, states, None, num_columns)                      # [B, N + 1]
        above = _count_above(scores, scores[rows, target], 0, target, excluded)
    else:
        above = torch.zeros(num_rows, dtype=torch.int64, device=device)             # [B]
        for low, high in item_ranges(num_columns, items_per_block):
            ids = torch.cat([torch.arange(low, high, device=device), target])      # [C + B]
            block = score_items(model, states, ids, ids.shape[0])                   # [B, C + B]
            # the targets' own columns sit after the range: their diagonal is the target score
            target_score = block[rows, (high - low) + rows]                         # [B]
            above += _count_above(block[:, :high - low], target_score, low, target, excluded)
    return (above + 1).cpu().numpy().astype(np.int64)


def _block_shape(batch_size: int, max_block: int, num_columns: int) -> tuple[int, int]:
    """(rows per batch, items per block) so that no score block has more than `max_block` elements.

    Unchunked, a block is [B, N + 1]. Chunked, a block is [B, C + B]: the batch's targets are scored with every
    item range, so a chunked block is at least [1, 2] whatever `max_block`.
    """
    rows = min(batch_size, max_block)
    if rows * num_columns <= max_block:
        return rows, num_columns
    rows = max(1, min(rows, (math.isqrt(4 * max_block + 1) - 1) // 2))        # largest B with B * (B + 1) <= max
    return rows, max(1, max_block // rows - rows)


def _count_above(scores: Tensor, target_score: Tensor, low: int, target: Tensor, excluded: Pairs | None) -> Tensor:
    """[B] number of candidate items of the block `scores` [B, C] (ids low..low+C-1) at or above the target."""
    num_rows, width = scores.shape
    # NaN >= x is False: a NaN item never counts; a NaN target is the worst, tied with every candidate
    above = scores >= target_score.unsqueeze(1)                                     # [B, C]
    nan_target = torch.isnan(target_score)                                          # [B]
    if bool(nan_target.any()):
        above |= nan_target.unsqueeze(1)
    if low == 0:
        above[:, 0] = False                                                         # padding is no candidate
    rows = torch.arange(num_rows, device=scores.device)
    own = (target >= low) & (target < low + width)                                  # [B]
    above[rows[own], target[own] - low] = False                                     # the target itself
    pairs = pairs_in(excluded, low, low + width, scores.device)
    if pairs is not None:
        above[pairs] = False                                                        # duplicates are harmless
    return above.sum(dim=1)


def _history_pairs(part: Targets, window: int | None = None) -> Pairs:
    """(row, item) of every history item before each target of `part` (only the last `window` of each history
    when given), sorted by item.

    A pair only stops an item from counting above its row's target, so a target that is also in its own
    history stays ranked: its score is still the one compared against.

    The full history of row b is `data.items[offsets[users[b]]:positions[b]]`; all rows are gathered in one
    fancy index built with repeat/arange over the CSR offsets.
    """
    starts = part.input_starts if window is None else np.maximum(part.input_starts, part.positions - window)
    return slice_pairs(part.data.items, starts, part.positions)


def _check_call(model: SequentialRecommender, targets: Targets, batch_size: int, max_block: int,
                device: str | torch.device) -> torch.device:
    """Validate the arguments; return the device to send inputs to (the model's, when it has tensors)."""
    for name, value in (("batch_size", batch_size), ("max_block", max_block)):
        if isinstance(value, bool) or int(value) != value or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    num_items = int(model.num_items)
    if targets.data.num_items > num_items:
        raise ValueError(f"the data has {targets.data.num_items} items but the model was built for {num_items}")
    if len(targets):
        items = targets.items
        if int(items.min()) < 1 or int(items.max()) > num_items:
            raise ValueError(f"target item ids must be in 1..{num_items}, got {int(items.min())}..{int(items.max())}")
    wanted = torch.device(device)
    actual = model_device(model, wanted)                                            # `wanted` without tensors
    if not _same_device(actual, wanted):
        raise ValueError(f"the model is on {actual} but device={str(wanted)!r}; move it with "
                         f"model.to({str(wanted)!r}) or pass device={str(actual)!r}")
    return actual


def _same_device(actual: torch.device, wanted: torch.device) -> bool:
    # "cuda" means the current cuda device: accept any index then
    return actual.type == wanted.type and (wanted.index is None or actual.index == wanted.index)
