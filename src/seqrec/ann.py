"""Approximate top-k over the item table with faiss (an extra: `pip install seqrec[ann]`).

The exact top-k of `seqrec.recommend` scores every item; for catalogues of millions of items an HNSW graph
(faiss `IndexHNSWFlat`, inner-product metric) finds nearly the same items for a fraction of the work. It
applies to the dot product and to cosine similarity (vectors normalised, scores divided by the temperature);
models with another similarity keep the exact search.

Seen and denied items are removed after the search: the index returns `k + e` candidates (e = the most items
any row of the batch excludes), the excluded ones are dropped and the first k kept. When `k + e` exceeds
`max_fraction` of the catalogue, approximate search saves nothing and the exact search answers instead.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor

from seqrec.errors import SeqrecError

if TYPE_CHECKING:
    from seqrec.models.base import SequentialRecommender


class AnnIndex:
    """HNSW inner-product index over item rows 1..N of a model's item table."""

    def __init__(self, model: SequentialRecommender, *, m: int = 32, ef_construction: int = 200, ef_search: int = 128,
                 max_fraction: float = 0.25) -> None:
        try:
            import faiss
        except ImportError:  # pragma: no cover - depends on the installation
            raise SeqrecError("approximate search needs faiss: pip install 'seqrec[ann]' (or faiss-cpu)") from None
        from seqrec.models.layers.similarity import Cosine, DotProduct

        similarity = model.similarity
        if isinstance(similarity, Cosine):
            self.normalise, self.scale = True, 1.0 / similarity.temperature
        elif isinstance(similarity, DotProduct):
            self.normalise, self.scale = False, 1.0
        else:
            raise SeqrecError(f"approximate search supports the dot product and cosine similarity, not "
                              f"{type(similarity).__name__}; use the exact search")
        with torch.inference_mode():
            table = model.item_embeddings()[1:].float().cpu().numpy()                  # [N, D], row i = item i + 1
        table = np.ascontiguousarray(self._prepare(table))
        self.num_items, dim = table.shape
        self.index = faiss.IndexHNSWFlat(dim, int(m), faiss.METRIC_INNER_PRODUCT)
        self.index.hnsw.efConstruction = int(ef_construction)
        self.index.add(table)
        self.ef_search = int(ef_search)
        self.max_fraction = float(max_fraction)
        self.settings = {"kind": "hnsw", "m": int(m), "ef_construction": int(ef_construction),
                         "ef_search": int(ef_search)}

    def _prepare(self, vectors: np.ndarray) -> np.ndarray:
        if self.normalise:
            norms = np.linalg.norm(vectors, axis=1, keepdims=True)
            vectors = vectors / np.maximum(norms, 1e-12)
        return vectors.astype(np.float32)

    def usable(self, k: int, excluded_per_row: int) -> bool:
        """Whether `k + excluded` candidates are few enough for the approximate search to pay off."""
        return k + excluded_per_row <= self.max_fraction * self.num_items

    def search(self, states: Tensor, k: int, excluded: tuple[np.ndarray, np.ndarray] | None = None
               ) -> tuple[Tensor, Tensor]:
        """(ids [B, k], scores [B, k]) best first; missing candidates have id 0 and score -inf."""
        queries = np.ascontiguousarray(self._prepare(states.float().cpu().numpy()))
        rows = queries.shape[0]
        extra = int(np.bincount(excluded[0], minlength=rows).max()) if excluded is not None else 0
        fetch = min(k + extra, self.num_items)
        self.index.hnsw.efSearch = max(self.ef_search, fetch)
        scores, index = self.index.search(queries, fetch)                               # [B, fetch]
        ids = np.where(index >= 0, index + 1, 0).astype(np.int64)
        drop = ids == 0
        if excluded is not None:
            width = self.num_items + 1
            keys = excluded[0] * width + excluded[1]                                    # [P]
            drop |= np.isin(np.arange(rows)[:, None] * width + ids, keys)
        order = np.argsort(drop, axis=1, kind="stable")[:, :k]                          # kept first, rank order
        ids = np.take_along_axis(ids, order, axis=1)
        scores = np.take_along_axis(np.where(drop, -np.inf, scores * self.scale), order, axis=1)
        ids[~np.isfinite(scores)] = 0
        return torch.from_numpy(ids), torch.from_numpy(scores.astype(np.float32))
