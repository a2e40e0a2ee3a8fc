"""Similarity modules: turn query states and item vectors into scores (the generative-recommenders idea of
keeping scoring apart from encoding).

Every module has two forms:
- `forward(queries [B, D], items [C, D]) -> [B, C]`: every query against a shared set of items (ranking, full
  softmax);
- `pairwise(queries [M, D], items [M, K, D]) -> [M, K]`: each query against its own items (positives and
  sampled negatives).
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn


class DotProduct(nn.Module):
    """score = <q, v>."""

    def forward(self, queries: Tensor, items: Tensor) -> Tensor:
        return queries @ items.transpose(0, 1)                        # [B, C]

    def pairwise(self, queries: Tensor, items: Tensor) -> Tensor:
        return (items * queries.unsqueeze(1)).sum(-1)                 # [M, K]


class Cosine(nn.Module):
    """score = cos(q, v) / temperature."""

    def __init__(self, temperature: float = 0.05) -> None:
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        self.temperature = float(temperature)

    def forward(self, queries: Tensor, items: Tensor) -> Tensor:
        q, v = F.normalize(queries, dim=-1), F.normalize(items, dim=-1)
        return (q @ v.transpose(0, 1)) / self.temperature             # [B, C]

    def pairwise(self, queries: Tensor, items: Tensor) -> Tensor:
        q, v = F.normalize(queries, dim=-1), F.normalize(items, dim=-1)
        return (v * q.unsqueeze(1)).sum(-1) / self.temperature        # [M, K]


SIMILARITIES = {"dot": DotProduct, "cosine": Cosine}


def make_similarity(name: str, temperature: float = 0.05) -> nn.Module:
    if name == "cosine":
        return Cosine(temperature)
    if name == "dot":
        return DotProduct()
    raise ValueError(f"unknown similarity {name!r}; known: {', '.join(SIMILARITIES)}")
