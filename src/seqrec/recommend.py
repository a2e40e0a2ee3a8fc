"""Use a trained model: top-k recommendations for known users or raw item histories, raw ids in and out.

    rec = Recommender.load("runs/ml1m")
    rec.recommend(user=42, k=10).items            # [(raw item id, score), ...], best first
    rec.recommend(history=[1193, 661, 914], k=10)
    rec.recommend_batch(users=[1, 2, 3], k=10)    # a polars table: query, rank, item, score

Every answer goes through one batched path (`recommend_many`): histories are gathered into one right-aligned
`[B, W]` matrix (W = the longest history, at most the model's `max_len`), the model gives one state per row,
and the exact top-k is taken over the item table in contiguous id chunks, so no score block holds more than
`max_block` elements whatever the catalogue size; a running top-k is merged chunk by chunk. The padding item
is never recommended; `exclude_seen` removes the whole history (not only the part the model reads); `deny`
removes items; `allow` restricts the candidates to a list. Within an answer, equal scores are listed by item id.

A model that reads side inputs (`side_inputs`: timestamps, ratings) gets a known user's from the data; a raw
history then needs them, one per item (`times`, `ratings`), encoded as in training (`side_windows`).

The module is split along its jobs: request validation in `seqrec.queries` (`QueryEncoder`, `Query`,
`RecommendError`), scoring in `seqrec.scoring`, item metadata and id files in `seqrec.titles`; their public
names are importable from here as before.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor

from seqrec import scoring
from seqrec.config import RunConfig
from seqrec.data.batches import SIDE_INPUTS, side_windows
from seqrec.data.sequences import SequenceData, gather_windows, slice_pairs
from seqrec.errors import SeqrecError
from seqrec.models import SequentialRecommender
from seqrec.queries import Query, QueryEncoder, RecommendError, lookup_ids, plain_value
from seqrec.rundir import BEST
from seqrec.runs import open_run
from seqrec.scoring import Pairs, exclusion_pairs, lower_id_first, model_device
from seqrec.titles import (
    IDENTITY,
    RENUMBERED_FORMATS,
    find_item_map,
    item_titles,
    read_item_map,
    read_titles,
    read_user_ids,
)

if TYPE_CHECKING:
    import polars as pl

    from seqrec.ann import AnnIndex

DEFAULT_MAX_BLOCK = 2 ** 24        # score elements per top-k block (64 MB of float32)


@dataclass
class Recommendation:
    """The answer to one request: `items` best first as (raw item id, score)."""

    items: list[tuple]
    history_length: int                    # items of the history the request resolved to
    used_length: int                       # items the model read (the most recent, at most max_len)
    ignored: list = field(default_factory=list)   # unknown item ids dropped (ignore_unknown=True)

    @property
    def truncated(self) -> bool:
        return self.used_length < self.history_length

    def to_dict(self) -> dict:
        return {"items": [{"item": item, "score": score} for item, score in self.items],
                "history_length": self.history_length, "used_length": self.used_length,
                "truncated": self.truncated, "ignored": self.ignored}


def _plain(value):
    """A numpy scalar as the matching Python value (JSON-ready)."""
    return value.item() if hasattr(value, "item") else value

class Recommender(QueryEncoder):
    """A trained model with its data's id maps and histories; answers top-k requests with raw ids (validated
    by `QueryEncoder`)."""

    def __init__(self, model: SequentialRecommender, data: SequenceData, *, config: RunConfig | None = None,
                 run_dir: Path | None = None, results: dict | None = None, info: dict | None = None,
                 max_block: int = DEFAULT_MAX_BLOCK) -> None:
        if data.num_items > model.num_items:
            raise SeqrecError(f"the data has {data.num_items} items but the model was built for {model.num_items}")
        super().__init__(model.eval(), data)
        self.config = config
        self.run_dir = run_dir
        self.results = results or {}
        self.info = info or {}
        self.max_block = int(max_block)
        self.ann: AnnIndex | None = None  # once `use_ann` is called
        self.device = model_device(model)

    # ------------------------------------------------------------------ loading

    @classmethod
    def load(cls, run_dir: str | Path, *, checkpoint: str = BEST, device: str = "cpu",
             ann: bool = False) -> Recommender:
        """Open a run directory of `seqrec train` (its config, data, and best weights, loaded without pickle);
        `ann=True` answers with approximate search (`use_ann`)."""
        opened = open_run(run_dir, checkpoint=checkpoint)
        opened.model.to(device)
        rec = cls(opened.model, opened.split.data, config=opened.config, run_dir=opened.run_dir.path,
                  results=opened.results, info=opened.run_dir.read_data_info())
        return rec.use_ann() if ann else rec

    def use_ann(self, **options: Any) -> Recommender:
        """Answer with approximate (faiss HNSW) search from now on; options go to `seqrec.ann.AnnIndex`
        (m, ef_construction, ef_search, max_fraction). Needs `pip install seqrec[ann]`."""
        from seqrec.ann import AnnIndex

        self.ann = AnnIndex(self.model, **options)
        return self

    @property
    def max_len(self) -> int:
        return self.model.max_len

    @property
    def num_items(self) -> int:
        return self.data.num_items

    def describe(self) -> dict:
        """Model name, sizes, data fingerprint and split, metrics of the best epoch (JSON-ready)."""
        name = self.config.model.name if self.config is not None else getattr(self.model, "name", "?")
        out = {"model": name, "items": self.data.num_items, "users": self.data.num_users, "max_len": self.max_len,
               "run_dir": str(self.run_dir) if self.run_dir else None,
               "search": self.ann.settings if self.ann is not None else {"kind": "exact"}}
        if self.config is not None:
            from seqrec.config import config_to_dict
            out["config"] = config_to_dict(self.config)
        out["data"] = self.info.get("data", self.data.summary())
        if "split" in self.info:
            out["split"] = self.info["split"]
        out["metrics"] = {k: self.results[k] for k in ("valid", "test", "best_epoch") if k in self.results}
        return out

    # ------------------------------------------------------------------ answering

    def recommend(self, user: object = None, *, history: Iterable[object] | None = None, k: int = 10,
                  exclude_seen: bool = True, allow: Iterable[object] | None = None,
                  deny: Iterable[object] | None = None, ignore_unknown: bool = False, times: object = None,
                  ratings: object = None) -> Recommendation:
        """Top-k for a known `user` (raw id; their whole log is the history) or a raw item `history` (with its
        `times` / `ratings`, one timestamp / rating per item, for a model that reads them)."""
        query, ignored = self.query(user=user, history=history, k=k, exclude_seen=exclude_seen, allow=allow,
                                    deny=deny, ignore_unknown=ignore_unknown, times=times, ratings=ratings)
        answer = self.recommend_many([query])[0]
        answer.ignored = ignored
        return answer

    def recommend_many(self, queries: list[Query]) -> list[Recommendation]:
        """Answer several queries in one batch (what the HTTP service does with concurrent requests)."""
        if not queries:
            return []
        states = self.states([q.history for q in queries],
                             **{name: [q.side[name] for q in queries] for name in self.model.side_inputs})  # [B, D]
        out: dict[int, Recommendation] = {}
        plain = [i for i, q in enumerate(queries) if q.allow is None]
        if plain:
            k = max(queries[i].k for i in plain)
            excluded = exclusion_pairs([queries[i].history if queries[i].exclude_seen else None for i in plain],
                                       [queries[i].deny for i in plain])
            ids, scores = self.topk(states[plain], k, excluded)
            for row, i in enumerate(plain):
                out[i] = self._answer(queries[i], ids[row], scores[row])
        for i, q in enumerate(queries):
            if q.allow is not None:
                ids, scores = self._topk_allowed(states[i:i + 1], q, q.allow)
                out[i] = self._answer(q, ids, scores)
        return [out[i] for i in range(len(queries))]

    def recommend_batch(self, users: Iterable[object] | None = None, *,
                        histories: Iterable[Iterable[object]] | None = None, k: int = 10, exclude_seen: bool = True,
                        batch_size: int = 512, times: Sequence[object] | None = None,
                        ratings: Sequence[object] | None = None) -> pl.DataFrame:
        """Top-k for many users (raw ids; None = every user) or raw histories (with `times` / `ratings`, a list
        of timestamp / rating lists, for a model that reads them), as a polars DataFrame with columns `query`
        (the user id, or the history's index), `rank` (1 = best), `item`, `score`."""
        import polars as pl

        if (users is not None) and (histories is not None):
            raise RecommendError("give users or histories, not both", field="users")
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise RecommendError(f"k must be a positive integer, got {k!r}", field="k")
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
            raise RecommendError(f"batch_size must be a positive integer, got {batch_size!r}", field="batch_size")
        k = min(int(k), self.data.num_items)          # no more rows than items: a huge k allocates nothing more
        if histories is not None:
            histories = list(histories)
            for name, lists in (("times", times), ("ratings", ratings)):
                if lists is not None and len(lists) != len(histories):
                    raise RecommendError(f"{name} has {len(lists)} lists for {len(histories)} histories", field=name)
            queries = [self.query(history=h, k=k, times=None if times is None else times[i],
                                  ratings=None if ratings is None else ratings[i])[0]
                       for i, h in enumerate(histories)]
            flat, starts, ends = _flatten([q.history for q in queries])
            side = {name: _flatten([q.side[name] for q in queries], SIDE_INPUTS[name].dtype)[0]
                    for name in self.model.side_inputs}
            keys = np.arange(starts.shape[0])
        else:
            if users is None:
                index = np.arange(self.data.num_users)
            else:
                users = list(users)
                index = lookup_ids(self.data.users, users)
                if (index < 0).any():
                    unknown = [users[i] for i in np.flatnonzero(index < 0)]
                    shown = ", ".join(map(repr, unknown[:5])) + (f" and {len(unknown) - 5} more"
                                                                  if len(unknown) > 5 else "")
                    raise RecommendError(f"unknown user id(s): {shown}", status=404, field="users")
            flat, starts, ends = self.data.items, self.data.offsets[index], self.data.offsets[index + 1]
            side = self.data_side
            keys = self.data.users.decode(index)
        count = starts.shape[0]
        order = np.argsort(np.minimum(ends - starts, self.max_len), kind="stable")    # similar widths together
        all_ids = np.zeros((count, k), dtype=np.int64)
        all_scores = np.full((count, k), -np.inf, dtype=np.float32)
        for low in range(0, count, batch_size):
            chosen = order[low:low + batch_size]
            states = self._states(flat, starts[chosen], ends[chosen], side)
            excluded = slice_pairs(flat, starts[chosen], ends[chosen]) if exclude_seen else None
            ids, scores = self.topk(states, k, excluded)
            width = ids.shape[1]
            all_ids[chosen, :width] = ids.numpy()
            all_scores[chosen, :width] = scores.numpy()
        keep = np.isfinite(all_scores)                                                 # [Q, k]
        query = np.repeat(np.asarray(keys), k).reshape(count, k)[keep]
        rank = np.broadcast_to(np.arange(1, k + 1), (count, k))[keep]
        items = self.data.item_vocab.decode(all_ids[keep])
        return pl.DataFrame({"query": query, "rank": rank.astype(np.int32), "item": items,
                             "score": all_scores[keep]})

    # ------------------------------------------------------------------ tensors

    def states(self, histories: list[np.ndarray], **side: list[np.ndarray]) -> Tensor:
        """[B, D] model states after each dense history (the last `max_len` items of each), one forward;
        `side`: the histories' side inputs by name (`times=`, `ratings=`: lists of [H] raw values), for a model
        that reads them."""
        flat, starts, ends = _flatten(histories)
        return self._states(flat, starts, ends, {name: _flatten(values, SIDE_INPUTS[name].dtype)[0]
                                                 for name, values in side.items()})

    def _states(self, flat: np.ndarray, starts: np.ndarray, ends: np.ndarray,
                side: Mapping[str, np.ndarray] | None = None) -> Tensor:
        """[B, D] states after the histories `flat[starts[i]:ends[i]]` (a CSR slice set, e.g. the data's own),
        whose side inputs are `side[name][starts[i]:ends[i]]` (each read when the model reads it)."""
        side = side or {}
        width = int(max(1, min(self.max_len, (ends - starts).max(initial=1))))
        window = gather_windows(flat, starts, ends, width).astype(np.int64)            # [B, W] right-aligned
        for name in self.model.side_inputs:
            if name not in side:
                raise RecommendError(f"this model reads {SIDE_INPUTS[name].what}; give the histories' {name}",
                                     field=name)
        extra = side_windows(self.model, side, starts, ends, window)                  # [B, W] each
        with torch.inference_mode():
            items = torch.from_numpy(window).to(self.device)
            return self.model.predict(items, **{name: values.to(self.device) for name, values in extra.items()})

    def topk(self, states: Tensor, k: int, excluded: Pairs | None = None) -> tuple[Tensor, Tensor]:
        """Exact top-k over items 1..N: (ids [B, k'], scores [B, k']) best first, k' = min(k, N).

        With an ANN index (`use_ann`) and few enough exclusions, approximate; else `seqrec.scoring.topk`: items
        in contiguous id chunks of at most `max_block / B` columns, `excluded` (rows, items) pairs sorted by
        item get -inf. Excluded items can still appear, with score -inf, when fewer than k candidates are left;
        callers drop them.
        """
        k = min(int(k), self.data.num_items)
        if self.ann is not None:
            most = int(np.bincount(excluded[0]).max()) if excluded is not None and excluded[0].size else 0
            if self.ann.usable(k, most):
                ids, scores = self.ann.search(states, k, excluded)
                scores, ids = lower_id_first(scores, ids)
                return ids, scores
        return scoring.topk(self.model, states, k, self.model.num_items + 1, excluded, max_block=self.max_block)

    def _topk_allowed(self, state: Tensor, q: Query, allow: np.ndarray) -> tuple[Tensor, Tensor]:
        allowed = np.unique(allow)
        allowed = allowed[(allowed >= 1) & (allowed <= self.data.num_items)]
        removed = np.concatenate([q.history if q.exclude_seen else np.zeros(0, np.int64),
                                  q.deny if q.deny is not None else np.zeros(0, np.int64)])
        allowed = allowed[~np.isin(allowed, removed)]
        if allowed.size == 0:
            return torch.zeros(0, dtype=torch.int64), torch.zeros(0)
        ids = torch.from_numpy(allowed).to(self.device)
        with torch.inference_mode():
            scores = self.model.score(state, ids).float()[0]                             # [A]
        top = torch.topk(scores, min(q.k, ids.numel()), sorted=True)
        scores, ids = lower_id_first(top.values.cpu()[None], ids[top.indices].cpu()[None])
        return ids[0], scores[0]

    def _answer(self, q: Query, ids: Tensor, scores: Tensor) -> Recommendation:
        ids, scores = ids[:q.k], scores[:q.k]
        keep = torch.isfinite(scores)
        kept = ids[keep].numpy()
        raw: list = self.data.item_vocab.decode(kept).tolist() if kept.size else []
        return Recommendation([(plain_value(r), float(s)) for r, s in zip(raw, scores[keep].tolist())],
                              int(q.history.size), int(min(q.history.size, self.max_len)))


def _flatten(histories: list[np.ndarray], dtype: type = np.int64) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(flat values as `dtype`, starts, ends) of a list of dense histories (or their times, ratings), as CSR
    slices."""
    lengths = np.array([h.size for h in histories], dtype=np.int64)
    ends = np.cumsum(lengths)
    flat: np.ndarray = np.concatenate(histories).astype(dtype) if len(histories) else np.zeros(0, dtype)
    return flat, ends - lengths, ends


__all__ = ["DEFAULT_MAX_BLOCK", "IDENTITY", "RENUMBERED_FORMATS", "Query", "QueryEncoder", "RecommendError",
           "Recommendation", "Recommender", "find_item_map", "item_titles", "read_item_map", "read_titles",
           "read_user_ids"]
