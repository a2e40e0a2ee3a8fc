"""Training objectives: how a batch of training prefixes becomes model inputs and per-position targets.

The trainer only knows `make_batch(model, ...)`; the model's class attribute `objective` picks the recipe:

- `"causal"` (SASRec, GRU4Rec, NextItNet, HSTU): the last `max_len + 1` items of each prefix; inputs are
  items 0..L-1, targets the next item at every position (`causal_windows`).

Every recipe returns a batch with `items` [B, L] and `targets` [B, L] (0 = no loss at that position), so the
loss code is the same for all of them.
"""

from __future__ import annotations

import numpy as np
import torch

from seqrec.data.batches import CausalBatch, causal_windows

OBJECTIVES = ("causal",)


def make_batch(model, items: np.ndarray, starts: np.ndarray, ends: np.ndarray, *, align: str = "right",
               rng: np.random.Generator | None = None) -> CausalBatch:
    """The training batch of `model` for the prefixes `items[starts[i]:ends[i]]` (CPU tensors)."""
    objective = getattr(model, "objective", "causal")
    if objective == "causal":
        inputs, targets = causal_windows(items, starts, ends, model.max_len, align=align)
        return CausalBatch(torch.from_numpy(inputs), torch.from_numpy(targets))
    raise ValueError(f"unknown training objective {objective!r} of model {model.name!r}; known: "
                     f"{', '.join(OBJECTIVES)}")
