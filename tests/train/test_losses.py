"""Losses against their reference formulas, written out by hand here."""

import math

import pytest
import torch
import torch.nn.functional as F

from seqrec.models.layers.similarity import Cosine, DotProduct, MixtureOfLogits
from seqrec.train.losses import LossSpec, bce, bpr, compute_loss, full_softmax_ce, sampled_softmax

N, D, M = 12, 5, 7


@pytest.fixture
def setup():
    g = torch.Generator().manual_seed(0)
    states = torch.randn(M, D, generator=g, dtype=torch.float64)
    table = torch.randn(N + 1, D, generator=g, dtype=torch.float64)
    targets = torch.randint(1, N + 1, (M,), generator=g)
    return states, targets, table


def test_full_ce_is_manual_log_softmax(setup):
    states, targets, table = setup
    scores = states @ table[1:].T                                  # items 1..N
    manual = -torch.stack([torch.log_softmax(scores[i], 0)[targets[i] - 1] for i in range(M)]).mean()
    assert torch.allclose(full_softmax_ce(states, targets, table, DotProduct()), manual)


def test_full_ce_never_uses_the_padding_row(setup):
    states, targets, table = setup
    before = full_softmax_ce(states, targets, table, DotProduct())
    table2 = table.clone()
    table2[0] = 1e6
    assert torch.allclose(full_softmax_ce(states, targets, table2, DotProduct()), before)


def mol() -> MixtureOfLogits:
    with torch.random.fork_rng():
        torch.manual_seed(0)
        return MixtureOfLogits(D, components=3, component_dim=4, temperature=0.1).double()


@pytest.mark.parametrize("make", [DotProduct, lambda: Cosine(0.1), mol], ids=["dot", "cosine", "mol"])
def test_sampled_softmax_with_every_item_as_negative_is_full_ce(setup, make):
    states, targets, table = setup
    similarity = make()
    every = torch.arange(1, N + 1)
    full = full_softmax_ce(states, targets, table, similarity)
    assert torch.allclose(sampled_softmax(states, targets, table, similarity, every), full)
    per_row = every.expand(M, N)                                   # the [M, K] form gives the same
    assert torch.allclose(sampled_softmax(states, targets, table, similarity, per_row), full)


@pytest.mark.parametrize("make", [DotProduct, lambda: Cosine(0.1), mol], ids=["dot", "cosine", "mol"])
def test_per_row_negatives_by_dense_scores_or_by_gathered_vectors_agree_with_autograd(setup, make, monkeypatch):
    from seqrec.train import losses

    states, targets, table = setup
    similarity = make()
    negatives = torch.randint(1, N + 1, (M, 9), generator=torch.Generator().manual_seed(5))
    # autograd through the plain formula: pairwise scores of the gathered rows, colliding negatives masked
    s, t = states.clone().requires_grad_(True), table.clone().requires_grad_(True)
    pos = similarity.pairwise(s, t[targets].unsqueeze(1))
    neg = similarity.pairwise(s, t[negatives]).masked_fill(negatives == targets.unsqueeze(1), float("-inf"))
    loss = F.cross_entropy(torch.cat([pos, neg], 1), torch.zeros_like(targets))
    loss.backward()
    grads = [(loss.detach(), s.grad, t.grad)]
    # dense [M, N + 1] scores in one chunk, in chunks of 2 rows, then gathered rows in one chunk and one row at a
    # time (dot and cosine; MoL's own chunks are tested with it)
    for per_negative, chunk, block in ((10 ** 9, 10 ** 9, 1), (10 ** 9, 2 * (N + 1), 1), (0, 10 ** 9, 10 ** 9),
                                       (0, 10 ** 9, 1)):
        monkeypatch.setattr(losses, "DENSE_ROWS_PER_NEGATIVE", per_negative)
        monkeypatch.setattr(losses, "DENSE_CHUNK", chunk)
        monkeypatch.setattr(losses, "GATHER_BLOCK", block)
        s, t = states.clone().requires_grad_(True), table.clone().requires_grad_(True)
        loss = sampled_softmax(s, targets, t, similarity, negatives)
        loss.backward()
        grads.append((loss.detach(), s.grad, t.grad))
    for other in grads[1:]:
        for a, b in zip(grads[0], other, strict=True):
            assert torch.allclose(a, b, atol=1e-12)


def test_sampled_softmax_log_q_correction(setup):
    states, targets, table = setup
    negatives = torch.tensor([2, 5, 9])
    log_q = torch.log(torch.rand(N + 1, dtype=torch.float64) + 0.1)
    expected = []
    for i in range(M):
        t = int(targets[i])
        logits = [float(states[i] @ table[t]) - float(log_q[t])]
        logits += [float(states[i] @ table[j]) - float(log_q[j]) for j in negatives.tolist() if j != t]
        expected.append(-(logits[0] - math.log(sum(math.exp(x) for x in logits))))
    got = sampled_softmax(states, targets, table, DotProduct(), negatives, log_q)
    assert got.item() == pytest.approx(sum(expected) / M, rel=1e-9)


def test_in_batch_negatives_with_log_q_never_use_a_rows_own_positive(setup):
    states, _, table = setup
    targets = torch.tensor([3, 5, 3, 9, 5, 5, 1])                  # repeated positives
    log_q = torch.log(torch.rand(N + 1, dtype=torch.float64) + 0.1)
    for correct in (True, False):
        spec = LossSpec("sampled_softmax", negatives="in_batch", log_q_correction=correct)
        got = compute_loss(spec, states, targets, table, DotProduct(), log_popularity=log_q)
        expected = []
        for i in range(M):
            t = int(targets[i])
            shift = log_q if correct else torch.zeros_like(log_q)
            logit = {j: float(states[i] @ table[j] - shift[j]) for j in set(targets.tolist())}
            others = [logit[j] for j in logit if j != t]            # the batch's other positives only
            expected.append(-(logit[t] - math.log(math.exp(logit[t]) + sum(math.exp(x) for x in others))))
        assert got.item() == pytest.approx(sum(expected) / M, rel=1e-9)


def test_full_ce_with_a_learned_similarity_goes_through_autograd(setup):
    states, targets, table = setup
    states, table = states.clone().requires_grad_(), table.clone().requires_grad_()
    similarity = mol()
    loss = full_softmax_ce(states, targets, table, similarity)
    assert loss.item() == pytest.approx(F.cross_entropy(similarity(states, table[1:]), targets - 1).item(), rel=1e-12)
    loss.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in similarity.parameters())
    assert states.grad.abs().sum() > 0 and table.grad[1:].abs().sum() > 0 and torch.all(table.grad[0] == 0)


def test_bce_and_bpr_reference(setup):
    states, targets, table = setup
    negatives = torch.randint(1, N + 1, (M, 3), generator=torch.Generator().manual_seed(1))
    sig = torch.sigmoid
    bce_ref, bpr_ref = [], []
    for i in range(M):
        pos = states[i] @ table[targets[i]]
        negs = [states[i] @ table[j] for j in negatives[i].tolist() if j != int(targets[i])]
        neg_term = sum(-torch.log(1 - sig(s)) for s in negs) / max(len(negs), 1)
        bce_ref.append(-torch.log(sig(pos)) + neg_term)
        bpr_ref.append(sum(-torch.log(sig(pos - s)) for s in negs) / max(len(negs), 1))
    assert bce(states, targets, table, DotProduct(), negatives).item() == pytest.approx(
        float(torch.stack(bce_ref).mean()), rel=1e-9)
    assert bpr(states, targets, table, DotProduct(), negatives).item() == pytest.approx(
        float(torch.stack([torch.as_tensor(x) for x in bpr_ref]).mean()), rel=1e-9)


def test_negatives_equal_to_the_positive_are_ignored():
    states = torch.tensor([[1.0, 0.0]])
    table = torch.tensor([[0.0, 0.0], [2.0, 0.0], [0.0, 1.0]])
    targets = torch.tensor([1])
    only_collisions = torch.tensor([[1, 1]])
    assert bce(states, targets, table, DotProduct(), only_collisions).item() == pytest.approx(
        float(F.softplus(torch.tensor(-2.0))))
    assert sampled_softmax(states, targets, table, DotProduct(), torch.tensor([1])).item() == pytest.approx(0.0)


@pytest.mark.parametrize("spec", [LossSpec("ce"), LossSpec("bce", 2), LossSpec("bpr", 4),
                                  LossSpec("sampled_softmax", 8, "uniform"),
                                  LossSpec("sampled_softmax", 1, "in_batch", True),
                                  LossSpec("sampled_softmax", 1, "in_batch", False)])
def test_every_loss_is_finite_and_trains(setup, spec):
    states, targets, table = setup
    states = states.float().requires_grad_()
    table = table.float().requires_grad_()
    log_pop = torch.log(torch.full((N + 1,), 1.0 / N))
    loss = compute_loss(spec, states, targets, table, DotProduct(), log_popularity=log_pop)
    assert torch.isfinite(loss) and loss.item() > 0
    loss.backward()
    assert states.grad.abs().sum() > 0 and table.grad[1:].abs().sum() > 0


@pytest.mark.parametrize("rows, items", [(3000, 2000), (100, 70_000)])   # [c, N] blocks; transposed [N, c] blocks
def test_fused_ce_matches_autograd_reference_in_value_and_gradients(rows, items):
    g = torch.Generator().manual_seed(2)
    states = torch.randn(rows, 8, generator=g, dtype=torch.float64, requires_grad=True)  # several chunks
    table = torch.randn(items + 1, 8, generator=g, dtype=torch.float64, requires_grad=True)
    targets = torch.randint(1, items + 1, (rows,), generator=g)
    fused = full_softmax_ce(states, targets, table, DotProduct())
    (fused * 3).backward()
    gs, gt = states.grad.clone(), table.grad.clone()
    states.grad, table.grad = None, None
    reference = F.cross_entropy(states @ table[1:].T, targets - 1)
    (reference * 3).backward()
    assert fused.item() == pytest.approx(reference.item(), rel=1e-12)
    assert torch.allclose(gs, states.grad) and torch.allclose(gt, table.grad)
    assert torch.all(gt[0] == 0)
    with torch.no_grad():                                           # evaluation: no gradient work
        assert full_softmax_ce(states, targets, table, DotProduct()).item() == pytest.approx(reference.item())


@pytest.mark.parametrize("rows, items", [(3000, 2000), (100, 70_000)])
@pytest.mark.parametrize("similarity", [DotProduct(), Cosine(0.1)], ids=["dot (fused)", "cosine (autograd)"])
def test_padding_class_is_the_reference_softmax_over_every_table_row(rows, items, similarity):
    """`padding_class`: F.cross_entropy over `states @ table.T` with targets as the column ids (Klenitskiy &
    Vasilev's SASRec logits): the padding row is a class, never a target, and gets its gradient."""
    g = torch.Generator().manual_seed(3)
    states = torch.randn(rows, 8, generator=g, dtype=torch.float64, requires_grad=True)
    table = torch.randn(items + 1, 8, generator=g, dtype=torch.float64, requires_grad=True)
    targets = torch.randint(1, items + 1, (rows,), generator=g)
    spec = LossSpec("ce", padding_class=True)
    got = compute_loss(spec, states, targets, table, similarity)
    (got * 3).backward()
    gs, gt = states.grad.clone(), table.grad.clone()
    states.grad, table.grad = None, None
    reference = F.cross_entropy(similarity(states, table), targets)
    (reference * 3).backward()
    assert got.item() == pytest.approx(reference.item(), rel=1e-12)
    assert torch.allclose(gs, states.grad) and torch.allclose(gt, table.grad)
    assert gt[0].abs().sum() > 0                                    # the padding row learns, as a negative
    without = full_softmax_ce(states, targets, table, similarity)
    assert got.item() > without.item()                              # one more class in every partition sum


def test_padding_class_needs_the_full_softmax():
    from seqrec.config import load_config
    from seqrec.errors import ConfigError

    assert load_config(None, ["loss.padding_class=true"]).loss.padding_class
    with pytest.raises(ConfigError, match="padding_class"):
        load_config(None, ["loss.name=bce", "loss.padding_class=true"])


@pytest.mark.parametrize("shared", [True, False])
def test_uniform_negatives_shared_by_the_batch_or_drawn_per_position(setup, shared):
    states, targets, table = setup
    spec = LossSpec("sampled_softmax", 6, "uniform", shared_negatives=shared)
    loss = compute_loss(spec, states, targets, table, DotProduct(), generator=torch.Generator().manual_seed(4))
    drawn = torch.randint(1, N + 1, (6,) if shared else (M, 6), generator=torch.Generator().manual_seed(4))
    rows = drawn.expand(M, 6) if shared else drawn
    assert (rows.unique(dim=0).shape[0] == 1) == shared                          # one set, or one per position
    manual = []
    for i in range(M):                                                           # the softmax formula, by hand
        negatives = [int(j) for j in rows[i] if int(j) != int(targets[i])]
        logits = torch.stack([states[i] @ table[targets[i]]] + [states[i] @ table[j] for j in negatives])
        manual.append(-torch.log_softmax(logits, 0)[0])
    assert torch.allclose(loss, torch.stack(manual).mean())


@pytest.mark.parametrize("similarity", ["dot", "cosine", "mol"])
def test_in_batch_softmax_equals_the_general_sampled_softmax(similarity):
    from seqrec.models.layers.similarity import make_similarity
    from seqrec.train.losses import in_batch_softmax

    torch.manual_seed(4)
    sim = make_similarity(similarity, 0.1, dim=8, components=2)
    states = torch.randn(40, 8, requires_grad=True)
    table = torch.randn(30, 8, requires_grad=True)
    targets = torch.randint(1, 30, (40,))
    negatives = torch.unique(targets)
    log_q = torch.log(torch.rand(30) + 0.1)
    results = []
    for fn in (in_batch_softmax, sampled_softmax):
        loss = fn(states, targets, table, sim, negatives, log_q)
        results.append((loss, *torch.autograd.grad(loss, [states, table, *sim.parameters()])))
    for fast, general in zip(*results, strict=True):
        torch.testing.assert_close(fast, general, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("rows", [1, 3, 7, 100])
def test_column_scores_match_autograd_gather_with_repeated_columns(rows):
    from seqrec.train.losses import _ColumnScores

    g = torch.Generator().manual_seed(11)
    q = torch.randn(7, 5, generator=g, requires_grad=True)
    v = torch.randn(12, 5, generator=g, requires_grad=True)
    cols = torch.randint(0, 12, (7, 9), generator=g)
    cols[:, 1] = cols[:, 0]                                                      # a column drawn twice per row
    weights = torch.randn(7, 9, generator=g)
    (_ColumnScores.apply(q, v, cols, rows) * weights).sum().backward()
    got = (q.grad.clone(), v.grad.clone())
    q.grad = v.grad = None
    expected = (q @ v.T).gather(1, cols)
    (expected * weights).sum().backward()
    assert torch.allclose(_ColumnScores.apply(q, v, cols, rows), expected, atol=1e-6)
    assert torch.allclose(got[0], q.grad, atol=1e-5) and torch.allclose(got[1], v.grad, atol=1e-5)


def test_loss_spec_of_a_config_section_takes_every_field():
    from dataclasses import fields

    from seqrec.config import load_config

    section = load_config(None, ["loss.name=sampled_softmax", "loss.num_negatives=7", "loss.negatives=in_batch",
                                 "loss.log_q_correction=false", "loss.shared_negatives=false"]).loss
    spec = LossSpec.of(section)
    assert {f.name: getattr(spec, f.name) for f in fields(spec)} == {
        "name": "sampled_softmax", "num_negatives": 7, "negatives": "in_batch", "log_q_correction": False,
        "shared_negatives": False, "padding_class": False}
    assert LossSpec.of(load_config(None, ["loss.padding_class=true"]).loss).padding_class   # a ce-only key
