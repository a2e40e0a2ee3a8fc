"""Training objectives: how a batch of training prefixes becomes model inputs and per-position targets.

The trainer only knows `make_batch(model, ...)`; the model's class attribute `objective` picks the recipe:

- `"causal"` (SASRec, GRU4Rec, NextItNet, HSTU): the last `max_len + 1` items of each prefix; inputs are
  items 0..L-1, targets the next item at every position (`causal_windows`).
- `"prefix"` (SR-GNN, GC-SAN): one row per prefix of every training history (`expand_rows`), as the
  session papers train; a row's input is the last `max_len` items before its end and its only target is the
  item at its end, placed at the last input position (rows right-aligned).
- `"masked"` (BERT4Rec): the last `max_len` items of each prefix; each real item is replaced by the model's
  `mask_id` with probability `config.mask_prob` (at least one per row), and the targets are the original
  items at the masked positions only. With probability `config.last_item_prob` a row instead has only its
  last item masked (the task the model is evaluated on).

Every recipe returns a batch with `items` [B, L] and `targets` [B, L] (0 = no loss at that position), so the
loss code is the same for all of them. L is the batch's own width: `max_len` (the inputs of causal and prefix
windows) or less when the batch's longest prefix is shorter, since models give the same states whatever the
padding (a contract test checks it) and attention costs grow with the square of the width; with
`train.batching: length` (similar lengths batched together) that about halves the work of an ML-1M epoch.
A causal model that reads side inputs (`side_inputs`: `times`, `ratings`) also gets them [B, L], aligned with
the input items (`seqrec.data.batches.side_windows`), from the CSR arrays the caller passes by name
(`data_side_inputs`). Random draws come from the trainer's seeded generator (resumable).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch

from seqrec.data.batches import CausalBatch, causal_windows, side_windows
from seqrec.data.sequences import gather_windows
from seqrec.models.base import SequentialRecommender

OBJECTIVES = ("causal", "masked", "prefix")


def make_batch(model: SequentialRecommender, items: np.ndarray, starts: np.ndarray, ends: np.ndarray, *,
               align: str = "right", rng: np.random.Generator | None = None,
               side: Mapping[str, np.ndarray] | None = None) -> CausalBatch:
    """The training batch of `model` for the prefixes `items[starts[i]:ends[i]]` (CPU tensors).

    Args:
        side: the CSR side inputs aligned with `items` by name (`{"times": ...}`, from `data_side_inputs`); read
            only by a causal model that reads them (`side_inputs`).
    """
    objective = model.objective
    longest = int((np.asarray(ends) - np.asarray(starts)).max()) if len(starts) else 1   # longest slice
    if objective == "causal":
        width = max(1, min(model.max_len, longest - 1))                        # inputs exclude the last item
        inputs, targets = causal_windows(items, starts, ends, width, align=align)
        # the inputs are the slices without their last item: their side inputs are those of [start, end - 1)
        extra = side_windows(model, side or {}, starts, np.asarray(ends) - 1, inputs, align=align)
        return CausalBatch(torch.from_numpy(inputs), torch.from_numpy(targets), **extra)
    if objective == "prefix":
        width = max(1, min(model.max_len, longest - 1))
        window = gather_windows(items, starts, ends, width + 1).astype(np.int64)               # [B, L + 1]
        inputs = window[:, :-1].copy()
        targets = np.zeros_like(inputs)
        targets[:, -1] = np.where(inputs[:, -1] != 0, window[:, -1], 0)
        return CausalBatch(torch.from_numpy(inputs), torch.from_numpy(targets))
    if objective == "masked":
        width = max(1, min(model.max_len, longest))
        window = gather_windows(items, starts, ends, width, align=align).astype(np.int64)   # [B, L]
        mask_id, mask_prob, last_item_prob = model.masking()
        inputs, targets = mask_items(window, mask_id, mask_prob, last_item_prob,
                                     rng if rng is not None else np.random.default_rng())
        return CausalBatch(torch.from_numpy(inputs), torch.from_numpy(targets))
    raise ValueError(f"unknown training objective {objective!r} of model {model.name!r}; known: "
                     f"{', '.join(OBJECTIVES)}")


def mask_items(window: np.ndarray, mask_id: int, mask_prob: float, last_item_prob: float,
               rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Masked-item inputs and targets [B, L] from 0-padded item rows `window` [B, L] (vectorised)."""
    valid = window != 0                                                          # [B, L]
    rows = np.arange(window.shape[0])
    length = window.shape[1]
    last = length - 1 - np.argmax(valid[:, ::-1], axis=1)                        # [B] last real column
    has_items = valid.any(axis=1)                                                # [B]
    masked = (rng.random(window.shape) < mask_prob) & valid                      # [B, L]
    if last_item_prob > 0:
        only_last = (rng.random(window.shape[0]) < last_item_prob) & has_items   # [B]
        masked[only_last] = False
        masked[rows[only_last], last[only_last]] = True
    empty = has_items & ~masked.any(axis=1)                                      # rows that drew no mask
    masked[rows[empty], last[empty]] = True
    targets = np.where(masked, window, 0)
    inputs = np.where(masked, mask_id, window)
    return inputs, targets


def expand_rows(model: SequentialRecommender, starts: np.ndarray, ends: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The training rows of `model`'s objective from the training histories `items[starts[i]:ends[i]]`.

    `causal` and `masked` models train on each history as one row; a `prefix` model on every prefix with at
    least one input item, `(start, start + t)` for t = 2..length (the item at `start + t - 1` is the target).
    Vectorised: one repeat and one arange over all histories.
    """
    if model.objective != "prefix":
        return starts, ends
    starts, ends = np.asarray(starts, dtype=np.int64), np.asarray(ends, dtype=np.int64)
    counts = np.maximum(ends - starts - 1, 0)                                        # prefixes per history
    row = np.repeat(np.arange(starts.shape[0]), counts)                              # [P]
    within = np.arange(row.shape[0]) - np.repeat(np.cumsum(counts) - counts, counts)  # 0..count-1
    return starts[row], starts[row] + 2 + within
