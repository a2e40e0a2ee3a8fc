"""Full ranking: hand-computed ranks with a fixed-vector model, ties, padding, NaN, history exclusion,
chunking, a brute-force reference, and real ML-1M runs with Pop and SASRec."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from pydantic import Field
from torch import Tensor

import seqrec
from seqrec.data.batches import CausalBatch
from seqrec.data.splits import Targets
from seqrec.evaluate import evaluate, metrics_from_ranks, target_ranks
from seqrec.models import build_model
from seqrec.models.base import ModelConfig, SequentialRecommender


class FixedConfig(ModelConfig):
    max_len: int = Field(2, ge=1)


class FixedVectors(SequentialRecommender):
    """A test model following the contract, with hand-chosen item vectors and no training.

    The state after a history is `query + sum of the vectors of its (max_len) window`, scored by dot product,
    so every score is known in advance. It records the mode it was called in.
    """

    name = "fixed-vectors"
    config_class = FixedConfig

    def __init__(self, config: FixedConfig, num_items: int, table, query) -> None:
        super().__init__(config, num_items)
        self.register_buffer("table", torch.as_tensor(table, dtype=torch.float32).reshape(num_items + 1, -1))
        self.register_buffer("query", torch.as_tensor(query, dtype=torch.float32).reshape(-1))  # [D]
        self.calls: list[tuple[bool, bool]] = []
        self.score_shapes: list[tuple[int, int]] = []

    def forward(self, batch: CausalBatch) -> Tensor:
        self.calls.append((self.training, torch.is_inference_mode_enabled()))
        valid = (batch.items != 0).unsqueeze(-1)                                     # [B, L, 1]
        vectors = torch.where(valid, self.table[batch.items], 0.0)                   # [B, L, D]
        return self.query + vectors.cumsum(dim=1)                                     # [B, L, D]

    def item_embeddings(self) -> Tensor:
        return self.table                                                             # [N + 1, D]

    def score(self, states: Tensor, item_ids: Tensor | None = None) -> Tensor:
        scores = super().score(states, item_ids)
        self.score_shapes.append(tuple(scores.shape))
        return scores


# one score per item (D = 1, state > 0): padding 0 scores highest, items 2, 3, 7 tie
TABLE = [1e6, 5, 3, 3, 0, 7, 2, 3, 1]
SEQUENCES = {1: [1, 2, 3, 4, 5, 6], 2: [7, 3, 7, 2], 3: [4, 5, 1, 8], 4: [2, 8], 5: [5, 3, 6, 3]}


def _split(sequences: dict[int, list[int]]):
    users = [u for u, seq in sequences.items() for _ in seq]
    items = [i for seq in sequences.values() for i in seq]
    return seqrec.leave_one_out(seqrec.load(seqrec.Interactions.from_columns(user=users, item=items)))


def _model(table=TABLE, query=(1.0,), max_len: int = 2, num_items: int = 8) -> FixedVectors:
    return FixedVectors(FixedConfig(max_len=max_len), num_items, table, query)


def brute_force_ranks(model, targets: Targets, exclude_history: bool | str) -> list[int]:
    """Reference: the full score matrix in one call, then ranking item by item in Python; "window" excludes
    the last `max_len` items before the target."""
    with torch.no_grad():
        states = model.predict(torch.from_numpy(targets.inputs(model.max_len).astype(np.int64)))
        scores = model.score(states).numpy()                                          # [M, N + 1]
    data, ranks = targets.data, []
    for row, (user, position) in enumerate(zip(targets.users, targets.positions, strict=True)):
        target = int(data.items[position])
        start = max(data.offsets[user], position - model.max_len) if exclude_history == "window" \
            else data.offsets[user]
        history = set(data.items[start:position].tolist()) if exclude_history else set()
        own = scores[row, target]
        above = sum(1 for j in range(1, model.num_items + 1)
                    if j != target and j not in history and (math.isnan(own) or scores[row, j] >= own))
        ranks.append(above + 1)
    return ranks


def test_data_is_as_the_hand_computation_assumes():
    split = _split(SEQUENCES)
    assert split.test.items.tolist() == [6, 2, 8, 3]
    assert split.valid.items.tolist() == [5, 7, 1, 6]


def test_hand_computed_ranks_with_pessimistic_ties_and_padding_never_counted():
    split = _split(SEQUENCES)
    model = _model()
    # test: 6 is below 5, 1, 2, 3, 7; 2 ties with 3 and 7, which count against it; 8 beats only 4
    assert target_ranks(model, split.test).tolist() == [6, 5, 7, 5]
    # valid: item 5 is first although the padding item scores 1e6
    assert target_ranks(model, split.valid).tolist() == [1, 5, 2, 6]
    got = evaluate(model, split.test, ks=(5, 6))
    assert got == metrics_from_ranks([6, 5, 7, 5], ks=(5, 6))
    assert got["HR@5"] == 0.5 and got["HR@6"] == 0.75


def test_constant_scores_rank_every_target_last():
    split = _split(SEQUENCES)
    model = _model(table=[1.0] * 9)
    assert target_ranks(model, split.test).tolist() == [8, 8, 8, 8]
    # with exclusion, last among the remaining candidates: 8 - distinct history items other than the target
    assert target_ranks(model, split.test, exclude_history=True).tolist() == [3, 6, 5, 6]


def test_exclude_history_removes_the_whole_history_but_never_the_target():
    split = _split(SEQUENCES)
    model = _model(max_len=2)
    # user 1: 1..5 are removed although the model reads only 4, 5; user 5: 5 is removed, the target 3
    # (also in its history) stays ranked
    assert target_ranks(model, split.test, exclude_history=True).tolist() == [2, 3, 5, 4]
    # validation: user 2's target 7 is in its history and stays ranked
    assert target_ranks(model, split.valid, exclude_history=True).tolist() == [1, 4, 1, 4]
    for targets in (split.test, split.valid):
        assert target_ranks(model, targets, exclude_history=True).tolist() == brute_force_ranks(
            model, targets, exclude_history=True)


def test_nan_scores_are_the_worst():
    split = _split(SEQUENCES)
    table = list(TABLE)
    table[6] = float("nan")
    model = _model(table=table, max_len=3)
    # user 1: the target itself is NaN -> last; user 3: NaN item 6 no longer counts above 8;
    # user 5 reads item 6, so its state and every score are NaN -> last, not first
    assert target_ranks(model, split.test).tolist() == [8, 5, 6, 8]
    assert target_ranks(model, split.test, exclude_history=True).tolist() == [3, 3, 4, 6]


def test_exclude_window_removes_only_the_items_the_model_reads():
    split = _split(SEQUENCES)
    model = _model(max_len=2)
    # user 1 reads 4, 5: 1, 2, 3 stay candidates (6 is below 1, 2, 3, 7); user 5 reads 3, 6: 5 stays and
    # counts above its target 3 (whole-history exclusion removes it: [2, 3, 5, 4])
    assert target_ranks(model, split.test, exclude_history="window").tolist() == [5, 3, 5, 5]
    assert evaluate(model, split.test, ks=(5,), exclude_history="window") == metrics_from_ranks([5, 3, 5, 5], ks=(5,))
    # a window as long as every history is the whole history
    wide = _model(max_len=50)
    for targets in (split.test, split.valid):
        assert target_ranks(wide, targets, exclude_history="window").tolist() == target_ranks(
            wide, targets, exclude_history=True).tolist()
    for value in ("windows", 1, None):
        with pytest.raises(ValueError, match="exclude_history must be True, False or 'window'"):
            target_ranks(model, split.test, exclude_history=value)


@pytest.mark.parametrize("exclude_history", [False, True, "window"])
def test_chunked_equals_unchunked(exclude_history):
    split = _split(SEQUENCES)
    model = _model()
    expected = target_ranks(model, split.test, exclude_history=exclude_history)
    for batch_size in (1, 2, 3, 256):
        for max_block in (1, 2, 3, 7, 9, 17, 2 ** 24):
            got = target_ranks(model, split.test, exclude_history=exclude_history, batch_size=batch_size,
                               max_block=max_block)
            assert got.tolist() == expected.tolist(), (batch_size, max_block)


@pytest.mark.parametrize(("batch_size", "max_block"), [(3, 12), (3, 26), (256, 30), (4, 2 ** 24)])
def test_no_score_block_exceeds_max_block(batch_size, max_block):
    split = _split(SEQUENCES)
    model = _model()
    target_ranks(model, split.test, batch_size=batch_size, max_block=max_block)
    assert model.score_shapes and all(rows * columns <= max_block for rows, columns in model.score_shapes)
    assert max(rows for rows, _ in model.score_shapes) <= batch_size
    if batch_size * 9 > max_block:                      # chunked: no block spans all N + 1 = 9 items
        assert all(columns < 9 + rows for rows, columns in model.score_shapes)
    else:                                               # unchunked: one [B, N + 1] block per batch
        assert model.score_shapes == [(4, 9)]


def _random_split(seed: int):
    rng = np.random.default_rng(seed)
    sequences = {u: rng.integers(1, 31, size=rng.integers(3, 25)).tolist() for u in range(40)}
    sequences[99] = list(range(1, 31))          # every item occurs, so ids 1..30 are the raw ids
    return _split(sequences)


@pytest.mark.parametrize("exclude_history", [False, True, "window"])
def test_matches_brute_force_on_random_vectors(exclude_history):
    split = _random_split(0)
    rng = np.random.default_rng(1)
    # small integers: exact scores whatever the summation order, and many ties
    integer = _model(table=rng.integers(-2, 3, size=(31, 3)), query=rng.integers(-1, 2, size=3), max_len=4,
                     num_items=30)
    gaussian = _model(table=rng.normal(size=(31, 8)), query=rng.normal(size=8), max_len=5, num_items=30)
    for model in (integer, gaussian):
        expected = brute_force_ranks(model, split.test, exclude_history)
        for batch_size, max_block in ((256, 2 ** 24), (7, 2 ** 24), (7, 40), (5, 3)):
            got = target_ranks(model, split.test, exclude_history=exclude_history, batch_size=batch_size,
                               max_block=max_block)
            assert got.dtype == np.int64 and got.tolist() == expected, (batch_size, max_block)


def test_mode_is_restored_and_inference_mode_used():
    split = _split(SEQUENCES)
    model = _model()
    model.train()
    target_ranks(model, split.test)
    assert model.training
    assert model.calls and all(call == (False, True) for call in model.calls)
    model.eval()
    target_ranks(model, split.test)
    assert not model.training


def test_errors():
    split = _split(SEQUENCES)
    with pytest.raises(ValueError, match="built for 7"):
        target_ranks(_model(table=TABLE[:8], num_items=7), split.test)
    with pytest.raises(ValueError, match="batch_size"):
        target_ranks(_model(), split.test, batch_size=0)
    with pytest.raises(ValueError, match="no ranks"):
        evaluate(_model(), Targets(split.data, split.test.users[:0], split.test.positions[:0]))


def test_pop_on_ml1m_matches_numpy_popularity(dataset):
    data = seqrec.load(dataset("ml-1m-sasrec/ml-1m.txt"), format="pairs")
    split = seqrec.leave_one_out(data)
    model = build_model("pop", data.num_items)
    model.fit(split)
    # numpy reference: training counts, rank = 1 + items (other than the target) at least as popular
    in_train = np.concatenate([np.arange(s, e) for s, e in zip(data.offsets[:-1], split.train_end, strict=True)])
    counts = np.bincount(data.items[in_train], minlength=data.num_items + 1)[1:]     # [N] items 1..N
    ordered = np.sort(counts)
    target_counts = counts[split.test.items - 1]
    expected = 1 + (counts.size - np.searchsorted(ordered, target_counts, side="left")) - 1
    ranks = target_ranks(model, split.test)
    assert np.array_equal(ranks, expected)
    got = evaluate(model, split.test, ks=(10,))
    assert got["HR@10"] == pytest.approx(float(np.mean(expected <= 10)), abs=1e-12)
    assert 0.005 < got["HR@10"] < 0.05


def test_sasrec_full_ranking_of_all_ml1m_users(dataset):
    data = seqrec.load(dataset("ml-1m-sasrec/ml-1m.txt"), format="pairs")
    split = seqrec.leave_one_out(data)
    torch.manual_seed(0)
    model = build_model("sasrec", data.num_items)          # untrained, in training mode (dropout on)
    ranks = target_ranks(model, split.test, exclude_history=True)
    assert ranks.shape == (6040,) and ranks.dtype == np.int64
    # never worse than last among the candidates left after removing the history (the target stays)
    candidates = np.array([data.num_items - np.setdiff1d(data.items[data.offsets[u]:p], [data.items[p]]).size
                           for u, p in zip(split.test.users, split.test.positions, strict=True)])
    assert ranks.min() >= 1 and np.all(ranks <= candidates)
    assert len(np.unique(ranks)) > 1000                     # real scores, not one tie for everyone
    assert model.training                                   # mode given back
    # dropout was off: a second run on a subset gives the same ranks
    part = Targets(data, split.test.users[:64], split.test.positions[:64])
    assert np.array_equal(target_ranks(model, part, exclude_history=True, batch_size=16), ranks[:64])
    metrics = metrics_from_ranks(ranks)
    assert all(0.0 <= value <= 1.0 for value in metrics.values())
