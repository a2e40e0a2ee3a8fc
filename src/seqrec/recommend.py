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
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sized
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from seqrec import scoring
from seqrec.config import RunConfig
from seqrec.data.batches import SIDE_INPUTS, data_side_inputs, side_windows
from seqrec.data.sequences import SequenceData, gather_windows, slice_pairs
from seqrec.errors import DataError, SeqrecError
from seqrec.models import SequentialRecommender
from seqrec.rundir import BEST
from seqrec.runs import open_run
from seqrec.scoring import Pairs, exclusion_pairs, lower_id_first, model_device

DEFAULT_MAX_BLOCK = 2 ** 24        # score elements per top-k block (64 MB of float32)


class RecommendError(DataError):
    """A recommendation request that cannot be answered: unknown user or items, empty history, bad k.

    `status` is the HTTP status the service answers with (404 unknown user, 422 otherwise).
    """

    def __init__(self, message: str, *, status: int = 422, field: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.field = field


@dataclass(frozen=True)
class Query:
    """One request, in dense ids: the history the model reads and the candidates' rules.

    history: [H] int64 dense item ids, oldest first (all of it is 'seen'; the model reads the last max_len).
    side: the side inputs of the history's items that the model reads (`side_inputs`), by name, [H] each as
        `seqrec.data.batches.SIDE_INPUTS[name].dtype` (timestamps int64, raw ratings float64); empty for a model
        that reads items only.
    """

    history: np.ndarray
    k: int = 10
    exclude_seen: bool = True
    allow: np.ndarray | None = None    # [A] dense ids: only these may be recommended
    deny: np.ndarray | None = None     # [X] dense ids: never recommended
    side: Mapping[str, np.ndarray] = field(default_factory=dict)   # name -> [H] raw values of `history`'s items


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


class Recommender:
    """A trained model with its data's id maps and histories; answers top-k requests with raw ids."""

    def __init__(self, model: SequentialRecommender, data: SequenceData, *, config: RunConfig | None = None,
                 run_dir: Path | None = None, results: dict | None = None, info: dict | None = None,
                 max_block: int = DEFAULT_MAX_BLOCK) -> None:
        if data.num_items > model.num_items:
            raise SeqrecError(f"the data has {data.num_items} items but the model was built for {model.num_items}")
        self.model = model.eval()
        self.data = data
        self.config = config
        self.run_dir = run_dir
        self.results = results or {}
        self.info = info or {}
        self.max_block = int(max_block)
        self.ann = None                   # seqrec.ann.AnnIndex once `use_ann` is called
        self._data_side: dict[str, np.ndarray] | None = None
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

    def use_ann(self, **options) -> Recommender:
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

    # ------------------------------------------------------------------ raw ids -> dense queries

    def user_history(self, user) -> np.ndarray:
        """[H] dense item ids of a known user's whole log, oldest first; RecommendError if unknown."""
        return self.data.items[self._user_slice(user)].astype(np.int64)

    def _user_slice(self, user) -> slice:
        if isinstance(user, (bool, float, np.bool_, np.floating)):
            raise RecommendError(f"{user!r} is not a user id (a {type(user).__name__}); user ids are "
                                 f"{'integers or strings' if self.data.users.is_integer else 'strings'}",
                                 field="user")
        u = int(_lookup(self.data.users, [user])[0])
        if u < 0:
            raise RecommendError(f"unknown user {user!r}", status=404, field="user")
        return slice(int(self.data.offsets[u]), int(self.data.offsets[u + 1]))

    def encode_side(self, name: str, values: object, length: int) -> np.ndarray | None:
        """The side input `name` (`times`, `ratings`) of a raw history of `length` items as [H] raw values
        (`SideInput.dtype`); None when the model reads none and none were given.

        Raises:
            RecommendError: the model reads them and none were given, or they are not one valid value per
                history item.
        """
        side = SIDE_INPUTS[name]
        if values is None:
            why = self.model.side_inputs.get(name)
            if why is not None:
                raise RecommendError(f"this model reads {side.what} ({why.setting}): give '{name}', one {side.noun} "
                                     "per history item", field=name)
            return None
        if isinstance(values, (str, bytes)) or not isinstance(values, Sized) or not isinstance(values, Iterable):
            raise RecommendError(f"{name} must be a list of {side.kind}", field=name)
        listed = list(values)
        if len(listed) != length:
            raise RecommendError(f"{name} has {len(listed)} values but the history has {length} items; give one "
                                 f"{side.noun} per history item", field=name)
        bad = [v for v in listed if not side.accepts(v)]
        if bad:
            raise RecommendError(f"{name} must be {side.kind}, got {bad[0]!r}", field=name)
        return np.asarray(listed, dtype=side.dtype)

    def encode_items(self, raw_ids, *, ignore_unknown: bool = False, field: str = "history"
                     ) -> tuple[np.ndarray, list]:
        """Raw item ids -> (dense ids [M] of the known ones, the unknown raw ids).

        Unknown ids are an error naming them, unless `ignore_unknown`.
        """
        dense, unknown = self._encode_checked(list(raw_ids), ignore_unknown, field)
        return dense[dense >= 0], unknown

    def _encode_checked(self, values: list, ignore_unknown: bool, field: str) -> tuple[np.ndarray, list]:
        """([M] int64 dense ids, -1 for unknown ones; the unknown raw ids), refusing unknown ids unless
        `ignore_unknown`."""
        for position, value in enumerate(values):
            # bool and float pass numpy's integer conversion (True -> 1, 1.5 -> 1): refuse them instead of
            # answering for another history
            if isinstance(value, (bool, float, np.bool_, np.floating)):
                kind = "integers or strings" if self.data.item_vocab.is_integer else "strings"
                raise RecommendError(f"{field}[{position}]: {value!r} is not an item id (a "
                                     f"{type(value).__name__}); item ids are {kind}", field=field)
        dense = self._dense(values)
        unknown = [values[i] for i in np.flatnonzero(dense < 0)]
        if unknown and not ignore_unknown:
            shown = ", ".join(repr(v) for v in unknown[:10]) + (f" and {len(unknown) - 10} more"
                                                                if len(unknown) > 10 else "")
            raise RecommendError(f"unknown item id(s) in {field}: {shown}", field=field)
        return dense, unknown

    def _dense(self, values: list) -> np.ndarray:
        """[M] int64 dense ids of raw item ids, -1 for the unknown ones."""
        return _lookup(self.data.item_vocab, values)

    def query(self, *, user=None, history=None, k: int = 10, exclude_seen: bool = True, allow=None, deny=None,
              ignore_unknown: bool = False, times=None, ratings=None) -> tuple[Query, list]:
        """Validate one request in raw ids; (Query, ignored unknown ids). `times` / `ratings`: the timestamps /
        ratings of a raw `history`, one per item (needed by a model that reads them; a known user's come from
        the data)."""
        if (user is None) == (history is None):
            raise RecommendError("give exactly one of 'user' or 'history'", field="user")
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise RecommendError(f"k must be a positive integer, got {k!r}", field="k")
        ignored: list = []
        given = {"times": times, "ratings": ratings}
        if user is not None:
            for name, value in given.items():
                if value is not None:
                    raise RecommendError(f"{name} go with a raw history; a known user's come from the data",
                                         field=name)
            rows = self._user_slice(user)
            seen = self.data.items[rows].astype(np.int64)
            side = {name: values[rows].astype(SIDE_INPUTS[name].dtype) for name, values in self.data_side.items()}
        else:
            if isinstance(history, (str, bytes)):
                raise RecommendError("history must be a list of item ids", field="history")
            history = list(history)
            checked = {name: self.encode_side(name, given.get(name), len(history)) for name in SIDE_INPUTS}
            seen, ignored, known = self._encode_history(history, ignore_unknown)   # the side inputs first
            side = {name: values[known] for name, values in checked.items()
                    if values is not None and name in self.model.side_inputs}
            if seen.size == 0:
                what = "has no known item" if ignored else "is empty"
                raise RecommendError(f"the history {what}; give at least one known item id", field="history")
        allow_ids = self.encode_items(allow, ignore_unknown=ignore_unknown, field="allow")[0] \
            if allow is not None else None
        deny_ids = self.encode_items(deny, ignore_unknown=True, field="deny")[0] if deny is not None else None
        return Query(seen, int(k), bool(exclude_seen), allow_ids, deny_ids, side), ignored

    @property
    def data_side(self) -> dict[str, np.ndarray]:
        """The data's CSR side inputs that the model reads (`data_side_inputs`; ConfigError if it lacks one)."""
        if self._data_side is None:
            self._data_side = data_side_inputs(self.model, self.data)
        return self._data_side

    def _encode_history(self, history, ignore_unknown: bool) -> tuple[np.ndarray, list, np.ndarray]:
        """(dense ids of the known items, unknown raw ids, [H] bool mask of the known items)."""
        dense, ignored = self._encode_checked(list(history), ignore_unknown, "history")
        known = dense >= 0
        return dense[known], ignored, known

    # ------------------------------------------------------------------ answering

    def recommend(self, user=None, *, history=None, k: int = 10, exclude_seen: bool = True, allow=None,
                  deny=None, ignore_unknown: bool = False, times=None, ratings=None) -> Recommendation:
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
        out: list[Recommendation | None] = [None] * len(queries)
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
                ids, scores = self._topk_allowed(states[i:i + 1], q)
                out[i] = self._answer(q, ids, scores)
        return out  # type: ignore[return-value]

    def recommend_batch(self, users=None, *, histories=None, k: int = 10, exclude_seen: bool = True,
                        batch_size: int = 512, times=None, ratings=None):
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
                index = _lookup(self.data.users, users)
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

    def _topk_allowed(self, state: Tensor, q: Query) -> tuple[Tensor, Tensor]:
        allowed = np.unique(q.allow)
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
        ids, scores = ids[keep].numpy(), scores[keep].tolist()
        raw = self.data.item_vocab.decode(ids) if ids.size else []
        return Recommendation([(_plain(r), float(s)) for r, s in zip(raw, scores)], int(q.history.size),
                              int(min(q.history.size, self.max_len)))


_INT_TEXT = re.compile(r"\s*[+-]?[0-9]+\s*\Z")       # ASCII digits only: int() also reads "1_0" and "٣"
_INT64 = (-2 ** 63, 2 ** 63 - 1)


def _as_id(value, integer: bool):
    """A raw id in the vocabulary's type (an int64-range int for integer ids, else a str); None when it cannot
    be one of its ids. Integers written as text ("42", as the CLI passes them) are integers; "1_0", "٣", "4.0",
    bools, floats and integers beyond int64 are no integer id."""
    if isinstance(value, (bool, np.bool_)):
        return None
    if not integer:
        return str(value) if isinstance(value, (str, int, np.integer)) else None
    if not (isinstance(value, (int, np.integer)) or isinstance(value, str) and _INT_TEXT.match(value)):
        return None
    number = int(value)
    return number if _INT64[0] <= number <= _INT64[1] else None


def _lookup(vocab, values: list) -> np.ndarray:
    """[M] int64 dense ids of raw ids in `vocab`, -1 for those it does not hold (or that cannot be its ids)."""
    typed = [_as_id(v, vocab.is_integer) for v in values]
    valid = np.array([t is not None for t in typed], dtype=bool)
    dense = np.full(len(values), -1, dtype=np.int64)
    if valid.any():
        kept = np.array([t for t in typed if t is not None], dtype=np.int64 if vocab.is_integer else str)
        dense[valid] = vocab.encode(kept, missing=-1)
    return dense


def _flatten(histories: list[np.ndarray], dtype=np.int64) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(flat values as `dtype`, starts, ends) of a list of dense histories (or their times, ratings), as CSR
    slices."""
    lengths = np.array([h.size for h in histories], dtype=np.int64)
    ends = np.cumsum(lengths)
    flat = np.concatenate(histories).astype(dtype) if len(histories) else np.zeros(0, dtype)
    return flat, ends - lengths, ends


def read_titles(path: str | Path) -> dict[str, str]:
    """Item id (as text) -> title, from MovieLens `movies.dat` (`id::title::genres`, ISO-8859-1 or UTF-8) or
    a CSV/TSV with a header whose first column is the item id and a `title` column (else the second)."""
    import polars as pl

    path = Path(path)
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = raw.decode("latin-1")                       # MovieLens .dat files are ISO-8859-1
    first = text.split("\n", 1)[0]
    if "::" in first:
        rows = [line.split("::", 2) for line in text.splitlines() if line.strip()]
        bad = next((n for n, row in enumerate(rows, 1) if len(row) < 2), None)
        if bad is not None:
            raise DataError("expected 'id::title[::genres]'", path=path, line=bad)
        return {row[0].strip(): row[1].strip() for row in rows}
    separator = "\t" if first.count("\t") > first.count(",") else ","
    try:
        frame = pl.read_csv(text.encode(), separator=separator, infer_schema=False)
    except pl.exceptions.PolarsError as error:
        raise DataError(f"cannot read item metadata: {error}", path=path) from None
    if frame.width < 2:
        raise DataError("item metadata needs an id column and a title column", path=path,
                        expected=f"at least 2 columns, found {frame.columns}")
    title = "title" if "title" in frame.columns else frame.columns[1]
    return dict(zip(frame[frame.columns[0]].to_list(), frame[title].to_list()))


# formats of preprocessed benchmark copies (SASRec's `user item` pairs, S3-Rec's sequences, SR-GNN's sessions):
# their item ids are the preprocessing's renumbering 1..N, not the ids of the original data's metadata
RENUMBERED_FORMATS = ("pairs", "sequences", "sessions")
IDENTITY = "identity"


def read_item_map(path: str | Path) -> dict[str, str]:
    """Run item id (text) -> original item id (text), from `run_id original_id` lines (blank-, tab- or
    comma-separated), such as `ml-1m-sasrec/sas_to_original_items.txt`; DataError naming the bad line."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as error:
        raise DataError(f"cannot read the item id map ({type(error).__name__})", path=path) from None
    mapping: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), 1):
        parts = line.replace(",", " ").split()
        if not parts:
            continue
        if len(parts) != 2:
            raise DataError("expected 'run_id original_id'", path=path, line=number, value=line)
        if parts[0] in mapping and mapping[parts[0]] != parts[1]:
            raise DataError(f"run item id {parts[0]} is mapped twice ({mapping[parts[0]]} and {parts[1]})",
                            path=path, line=number)
        mapping[parts[0]] = parts[1]
    if not mapping:
        raise DataError("the item id map is empty", path=path, expected="'run_id original_id' lines")
    return mapping


def find_item_map(data_path: str | Path) -> Path | None:
    """The item id map published beside a preprocessed data file (`*_to_original_items.txt`), if exactly one."""
    folder = Path(data_path).parent
    found = sorted(folder.glob("*to_original_items*")) if folder.is_dir() else []
    return found[0] if len(found) == 1 else None


def item_titles(rec: Recommender, titles: str | Path, item_map: str | Path | None = None) -> tuple[dict, str]:
    """(run item id as text -> title, a note saying how they were joined) for the items of `rec`.

    Titles are keyed by the ids of the original data (`read_titles`); they are joined through the ids the run
    was trained on:
    - `item_map`: a `run_id original_id` file (`read_item_map`), or "identity" when the run's ids are the
      metadata's;
    - else, a `*_to_original_items.txt` map beside the run's data file (the SASRec ML-1M copy has one);
    - else, a run trained on a file of raw ids (csv, tsv, dat, inter, parquet) joins them as they are;
    - else (a preprocessed copy whose ids are renumbered: pairs, sequences, sessions; or a run without its
      config) a DataError: joining would show other items' titles.
    A join that finds no title for any of the run's items is an error too (the ids cannot be the same).
    """
    names = read_titles(titles)
    data = rec.config.data if rec.config is not None else None
    if item_map is None and data is not None and data.path != "demo":
        item_map = find_item_map(data.path)
    if item_map is not None and str(item_map) != IDENTITY:
        mapping = read_item_map(item_map)
        how = f"titles joined through the item id map {item_map}"
        joined = {run_id: names[original] for run_id, original in mapping.items() if original in names}
    else:
        how = "titles joined on the run's own item ids"
        if item_map is None:
            _check_raw_ids(data, titles)
        joined = names
    run_ids = [str(_plain(i)) for i in rec.data.item_vocab.raw]
    covered = sum(i in joined for i in run_ids)
    if covered == 0:
        raise DataError(f"none of the run's {len(run_ids)} item ids has a title ({how}); the metadata's ids are "
                        "not the run's", path=titles)
    return joined, f"{how}: {covered} of {len(run_ids)} items have one"


def _check_raw_ids(data, titles) -> None:
    """Refuse to join titles on the ids of a run whose ids may be a preprocessing's renumbering."""
    if data is None:
        raise DataError("this recommender has no run config, so which ids it was trained on is unknown; give "
                        "item_map (a 'run_id original_id' file, or 'identity')", path=titles)
    if data.path == "demo":
        return
    fmt = data.format
    if fmt is None:
        from seqrec.data.readers import detect_format

        try:
            fmt = detect_format(data.path)
        except SeqrecError:
            fmt = None
    if fmt is None or fmt in RENUMBERED_FORMATS:
        kind = f"a '{fmt}' file" if fmt else "a file whose format cannot be told"
        raise DataError(f"the run was trained on {data.path}, {kind}, whose item ids are usually a preprocessing's "
                        "renumbering, not the ids of the metadata; no '*_to_original_items.txt' map is beside it. "
                        "Give --item-map FILE ('run_id original_id' lines), or --item-map identity if the ids "
                        "are the metadata's", path=titles)


def read_user_ids(path: str | Path) -> list:
    """User ids from a text file (one per line) or a CSV/Parquet file with a `user` column (else the first)."""
    import polars as pl

    path = Path(path)
    if path.suffix == ".parquet":
        try:
            frame = pl.read_parquet(path)
        except Exception as error:  # noqa: BLE001 - polars raises several types for a bad file
            raise DataError(f"cannot read Parquet file: {error}", path=path) from None
        column = "user" if "user" in frame.columns else frame.columns[0]
        return frame[column].to_list()
    text = path.read_text(encoding="utf-8-sig")
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if lines and path.suffix in (".csv", ".tsv") and ("," in lines[0] or "\t" in lines[0] or lines[0] == "user"):
        import csv  # quoted fields: "a,b" is one id

        rows = [row for row in csv.reader(lines, delimiter="\t" if "\t" in lines[0] else ",") if row]
        column = rows[0].index("user") if "user" in rows[0] else 0
        for number, row in enumerate(rows[1:], 2):
            if len(row) <= column:
                raise DataError(f"no column {column + 1} ('{rows[0][column]}') on this line", path=path, line=number,
                                value=lines[number - 1][:80])
        return [row[column] for row in rows[1:]]
    if not lines:
        raise DataError("no user ids in the file", path=path, expected="one user id per line")
    return lines
