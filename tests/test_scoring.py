"""The shared scoring path (`seqrec.scoring`): device lookup, checked scores, id ranges, exclusion pairs and the
exact chunked top-k of the recommender, against brute force."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import Tensor, nn

from seqrec.scoring import exclusion_pairs, item_ranges, lower_id_first, model_device, pairs_in, score_items, topk


class Table(nn.Module):
    """Scores are dot products with a fixed table [N + 1, D]; counts the columns of every score call."""

    def __init__(self, table: Tensor) -> None:
        super().__init__()
        self.table = nn.Parameter(table, requires_grad=False)
        self.widths: list[int] = []

    def score(self, states: Tensor, item_ids: Tensor | None = None) -> Tensor:
        rows = self.table if item_ids is None else self.table[item_ids]
        scores = states @ rows.T
        self.widths.append(int(scores.shape[1]))
        return scores


def brute_topk(scores: np.ndarray, k: int, excluded: list[set[int]]) -> list[list[int]]:
    """Best-first ids 1..N by (score desc, id asc) without the excluded ones."""
    out = []
    for row, removed in zip(scores, excluded):
        ids = [j for j in range(1, scores.shape[1]) if j not in removed]
        out.append(sorted(ids, key=lambda j: (-row[j], j))[:k])
    return out


def test_model_device_is_the_first_parameter_then_buffer_then_default():
    assert model_device(nn.Linear(2, 2)) == torch.device("cpu")
    holder = nn.Module()
    holder.register_buffer("counts", torch.zeros(3))
    assert model_device(holder) == torch.device("cpu")
    assert model_device(nn.Module(), "meta") == torch.device("meta")


def test_score_items_checks_the_shape():
    model = Table(torch.eye(4))
    states = torch.ones(2, 4)
    assert score_items(model, states, None, 4).shape == (2, 4)
    assert score_items(model, states, torch.tensor([1, 3]), 2).shape == (2, 2)
    with pytest.raises(ValueError, match="expected \\(2, 5\\)"):
        score_items(model, states, None, 5)


def test_item_ranges_cover_every_id_once_in_order():
    assert list(item_ranges(10, 4)) == [(0, 4), (4, 8), (8, 10)]
    assert list(item_ranges(3, 100)) == [(0, 3)]
    assert list(item_ranges(0, 5)) == []


def test_exclusion_pairs_are_sorted_by_item_and_pairs_in_picks_a_range():
    pairs = exclusion_pairs([np.array([5, 1]), None, np.array([3])], [np.array([2]), np.array([4, 1]), None])
    assert pairs is not None
    rows, items = pairs
    assert items.tolist() == sorted(items.tolist())
    assert sorted(zip(rows.tolist(), items.tolist())) == [(0, 1), (0, 2), (0, 5), (1, 1), (1, 4), (2, 3)]
    assert exclusion_pairs([None, np.zeros(0, np.int64)], [None, None]) is None
    inside = pairs_in(pairs, 2, 5, torch.device("cpu"))
    assert inside is not None
    assert sorted(zip(inside[0].tolist(), (inside[1] + 2).tolist())) == [(0, 2), (1, 4), (2, 3)]
    assert pairs_in(pairs, 6, 9, torch.device("cpu")) is None and pairs_in(None, 0, 9, torch.device("cpu")) is None


@pytest.mark.parametrize("max_block", [2 ** 24, 3 * 5, 3 * 2])
def test_topk_equals_brute_force_whatever_the_chunking(max_block):
    generator = torch.Generator().manual_seed(0)
    table = torch.randint(-3, 4, (21, 2), generator=generator).float()       # many ties among 20 items
    model = Table(table)
    states = torch.randint(-2, 3, (3, 2), generator=generator).float()
    seen = [np.array([4, 7]), None, np.arange(1, 15)]
    deny = [None, np.array([2]), np.array([20])]
    pairs = exclusion_pairs(seen, deny)
    ids, scores = topk(model, states, 8, 21, pairs, max_block=max_block)
    full = (states @ table.T).numpy()
    removed = [{4, 7}, {2}, set(range(1, 15)) | {20}]
    expected = brute_topk(full, 8, removed)
    for row in range(3):
        finite = torch.isfinite(scores[row])
        assert ids[row][finite].tolist() == expected[row]                      # excluded ones only at -inf
        assert scores[row][finite].tolist() == [float(full[row, j]) for j in expected[row]]
    assert not torch.isfinite(scores[2, 5:]).any()                             # 5 candidates left for row 2
    assert max(model.widths) <= max(max_block // 3, 9)                          # chunk >= k + 1


def test_topk_never_returns_padding_and_caps_k():
    table = torch.zeros(4, 1)
    table[0] = 100.0                                                            # padding scores best
    ids, scores = topk(Table(table), torch.ones(1, 1), 10, 4)
    assert ids.shape == (1, 3) and 0 not in ids.tolist()[0] and ids.tolist()[0] == [1, 2, 3]


def test_lower_id_first_orders_ties_by_id():
    scores, ids = lower_id_first(torch.tensor([[3.0, 2.0, 2.0, 2.0]]), torch.tensor([[9, 8, 1, 5]]))
    assert ids.tolist() == [[9, 1, 5, 8]] and scores.tolist() == [[3.0, 2.0, 2.0, 2.0]]
    empty = torch.zeros(1, 0)
    assert lower_id_first(empty, empty.long())[0].shape == (1, 0)
