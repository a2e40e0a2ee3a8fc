"""Pop: rank items by how often they occur in the training data, the same list for everyone.

The sanity floor of every table. It fits the model contract with D = 1: every state is 1 and the item
"embedding" is log(1 + count), so dot-product scores order items by training popularity (ties between
equally popular items are broken against the target by the pessimistic evaluator).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from seqrec.data.batches import CausalBatch
from seqrec.data.splits import Split
from seqrec.models.base import ModelConfig, SequentialRecommender


class PopConfig(ModelConfig):
    pass


class Pop(SequentialRecommender):
    name = "pop"
    config_class = PopConfig
    config: PopConfig
    trainable = False

    def __init__(self, config: PopConfig, num_items: int) -> None:
        super().__init__(config, num_items)
        self.register_buffer("popularity", torch.zeros(num_items + 1, 1))  # [N + 1, 1], row 0 stays 0

    popularity: Tensor                      # [N + 1, 1] buffer: log(1 + training count) of each item

    def fit(self, split: Split) -> None:
        """Count each item's training interactions (each user's prefix up to `split.train_end`)."""
        data = split.data
        user_of = np.repeat(np.arange(data.num_users), data.lengths)            # [nnz] owner of each position
        in_train = np.arange(data.items.shape[0]) < split.train_end[user_of]     # [nnz]
        counts = np.bincount(data.items[in_train], minlength=self.num_items + 1).astype(np.float32)
        counts[0] = 0
        self.popularity.copy_(torch.from_numpy(np.log1p(counts)).unsqueeze(1))

    def forward(self, batch: CausalBatch) -> Tensor:
        return torch.ones(*batch.items.shape, 1, device=batch.items.device)            # [B, L, 1]

    def item_embeddings(self) -> Tensor:
        return self.popularity                                                          # [N + 1, 1]
