"""Metrics over ranks: hand-computed values, numpy and torch inputs, key names and order, errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from seqrec.evaluate import DEFAULT_KS, hit_rate, metrics_from_ranks, mrr, ndcg

RANKS = [1, 2, 5, 11]


def test_hand_computed_values():
    assert hit_rate(RANKS, 10) == pytest.approx(3 / 4, abs=1e-15)
    assert hit_rate(RANKS, 1) == pytest.approx(1 / 4, abs=1e-15)
    assert hit_rate(RANKS, 4) == pytest.approx(2 / 4, abs=1e-15)
    assert hit_rate(RANKS, 5) == pytest.approx(3 / 4, abs=1e-15)     # rank == k is a hit
    assert ndcg(RANKS, 10) == pytest.approx((1 + 1 / math.log2(3) + 1 / math.log2(6) + 0) / 4, abs=1e-15)
    assert ndcg(RANKS, 11) == pytest.approx((1 + 1 / math.log2(3) + 1 / math.log2(6) + 1 / math.log2(12)) / 4,
                                            abs=1e-15)
    assert mrr(RANKS) == pytest.approx((1 + 1 / 2 + 1 / 5 + 1 / 11) / 4, abs=1e-15)
    assert mrr(RANKS, 10) == pytest.approx((1 + 1 / 2 + 1 / 5) / 4, abs=1e-15)
    assert mrr(RANKS, 1) == pytest.approx(1 / 4, abs=1e-15)


def test_numpy_torch_and_list_inputs_agree():
    expected = metrics_from_ranks(RANKS)
    for ranks in (np.array(RANKS, dtype=np.int64), np.array(RANKS, dtype=np.int32),
                  torch.tensor(RANKS), torch.tensor(RANKS, dtype=torch.float32)):
        got = metrics_from_ranks(ranks)
        assert got == pytest.approx(expected, abs=1e-15)
        assert all(type(value) is float for value in got.values())


def test_keys_exactly_and_in_order():
    got = metrics_from_ranks(RANKS)
    expected = [f"{name}@{k}" for k in DEFAULT_KS for name in ("HR", "NDCG", "MRR")] + ["MRR"]
    assert list(got) == expected
    assert DEFAULT_KS == (1, 5, 10, 20, 50, 100)
    # cut-offs are reported ascending whatever order they are given in
    assert list(metrics_from_ranks(RANKS, ks=(10, 1))) == ["HR@1", "NDCG@1", "MRR@1", "HR@10", "NDCG@10",
                                                           "MRR@10", "MRR"]


def test_metrics_from_ranks_values():
    got = metrics_from_ranks(RANKS, ks=(10,))
    assert got["HR@10"] == pytest.approx(0.75, abs=1e-15)
    assert got["NDCG@10"] == pytest.approx(ndcg(RANKS, 10), abs=1e-15)
    assert got["MRR@10"] == pytest.approx((1 + 1 / 2 + 1 / 5) / 4, abs=1e-15)
    assert got["MRR"] == pytest.approx((1 + 1 / 2 + 1 / 5 + 1 / 11) / 4, abs=1e-15)
    perfect = metrics_from_ranks([1, 1, 1], ks=(1,))
    assert perfect == {"HR@1": 1.0, "NDCG@1": 1.0, "MRR@1": 1.0, "MRR": 1.0}


def test_invalid_input_raises():
    with pytest.raises(ValueError, match="no ranks"):
        metrics_from_ranks([])
    with pytest.raises(ValueError, match="no ranks"):
        metrics_from_ranks(torch.empty(0, dtype=torch.int64))
    with pytest.raises(ValueError, match="1-based"):
        hit_rate([0, 1], 5)
    with pytest.raises(ValueError, match="1-based"):
        mrr([1.0, float("nan")])
    with pytest.raises(ValueError, match="positive integer"):
        ndcg(RANKS, 0)
    with pytest.raises(ValueError, match="positive integer"):
        metrics_from_ranks(RANKS, ks=(2.5,))
