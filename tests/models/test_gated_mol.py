"""The RAILS reference's MoL (`mol_gating: glu_silu`): its formula written out by hand, its three scoring forms
against each other (values and gradients, chunked and recomputed), its load-balancing loss, its config keys and
its training through the trainer."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import seqrec
from seqrec import api
from seqrec.config import load_config
from seqrec.errors import ConfigError
from seqrec.models import build_model
from seqrec.models.layers.gated_mol import GatedMixtureOfLogits
from seqrec.models.layers.similarity import MixtureOfLogits
from seqrec.train.trainer import Trainer, TrainingStep


def gated(**overrides) -> GatedMixtureOfLogits:
    torch.manual_seed(3)
    kwargs = dict(dim=6, query_components=3, item_components=2, component_dim=4, temperature=0.1, query_hidden=8,
                  item_dropout=0.0, gate_hidden=5, gate_dropout=0.0)
    return GatedMixtureOfLogits(**(kwargs | overrides)).double()


def by_hand(m: GatedMixtureOfLogits, q: torch.Tensor, x: torch.Tensor) -> float:
    """One (query, item) score from the module's weights, written the way the reference's code reads."""
    swiglu, out = m.query_proj[0], m.query_proj[1]
    state = q[:m.dim]
    a, b = (state @ swiglu.proj.weight.T + swiglu.proj.bias).split(swiglu.hidden)
    f = (F.silu(a) * b) @ out.weight.T + out.bias                                   # [Pq * d]
    g = x @ m.item_proj.weight.T + m.item_proj.bias                                 # [Px * d]
    f, g = f.view(-1, m.d), g.view(m.px, m.d)
    if m.users is not None:                                    # the user part of the query is its last component
        f = torch.cat([f, q[m.dim:].view(1, m.d)])
    f, g = f / f.norm(dim=1, keepdim=True).clamp(min=1e-6), g / g.norm(dim=1, keepdim=True)
    logits = torch.stack([f[p] @ g[r] for p in range(m.pq) for r in range(m.px)]) / m.temperature   # [L]

    def mlp(seq, v):
        hidden = F.silu(v @ seq[0].weight.T + seq[0].bias)
        return hidden @ seq[2].weight.T + (seq[2].bias if seq[2].bias is not None else 0)

    z = mlp(m.query_gate, state) * mlp(m.item_gate, x) + mlp(m.pair_gate, logits)
    weights = torch.exp(F.silu(z)) / torch.exp(F.silu(z)).sum()
    return float((weights * logits).sum().detach())


def test_score_matches_the_formula_written_out():
    m = gated().eval()
    queries, items = torch.randn(4, 6, dtype=torch.float64), torch.randn(5, 6, dtype=torch.float64)
    scores = m(queries, items)
    for i in range(4):
        for j in range(5):
            assert scores[i, j].item() == pytest.approx(by_hand(m, queries[i], items[j]), abs=1e-10)


def test_forward_pairwise_and_gathered_agree_chunked_or_not():
    m = gated().eval()
    queries, table = torch.randn(7, 6, dtype=torch.float64), torch.randn(11, 6, dtype=torch.float64)
    ids = torch.randint(0, 11, (7, 5))
    full = m(queries, table)                                                        # [7, 11]
    pairwise = m.pairwise(queries, table[ids])
    assert torch.allclose(full.gather(1, ids), pairwise, atol=1e-12)
    assert torch.allclose(m.gathered(queries, table, ids), pairwise, atol=1e-12)
    m.max_block, m.gather_block = 7 * 6 * 2, 2 * 5 * 6                                # 2 items / 2 rows per chunk
    assert torch.allclose(m(queries, table), full, atol=1e-12)
    assert torch.allclose(m.gathered(queries, table, ids), pairwise, atol=1e-12)


@pytest.mark.parametrize("gate_dropout", [0.0, 0.4], ids=["no-dropout", "dropout"])
@pytest.mark.parametrize("gather_block", [None, 2 * 5 * 6], ids=["one-chunk", "chunks"])
def test_gathered_gradients_with_recomputation_match_autograd(gather_block, gate_dropout):
    """Training mode, balance on: `gathered` (chunks recomputed in the backward) gives the values and gradients of
    the plain per-id formula through autograd (`pairwise`) for queries, table and every parameter, loss and
    load-balancing term together. With gate dropout the backward must reuse the masks its forward drew: from the
    same seed, one chunk, or chunks of 2 rows (whose masks take the same random words in turn), draw the mask
    that `pairwise` draws for all pairs at once."""
    m = gated(balance=0.05, gate_dropout=gate_dropout)
    m.gather_block = gather_block
    queries = torch.randn(8, 6, dtype=torch.float64, requires_grad=True)
    table = torch.randn(11, 6, dtype=torch.float64, requires_grad=True)
    ids = torch.randint(0, 11, (8, 5))
    weights = torch.randn(8, 5, dtype=torch.float64)
    params = [queries, table, *m.parameters()]

    def run(score, seed: int = 7) -> tuple:
        torch.manual_seed(seed)
        m.begin_step()
        loss = (score() * weights).sum() + m.aux_loss()
        return loss, torch.autograd.grad(loss, params)

    reference, expected = run(lambda: m.pairwise(queries, table[ids]))
    got, grads = run(lambda: m.gathered(queries, table, ids))
    assert got.item() == pytest.approx(reference.item(), abs=1e-10)
    for g, want in zip(grads, expected, strict=True):
        assert torch.allclose(g, want, atol=1e-10)
    if gate_dropout:                                                     # the masks matter: another seed differs
        other, _ = run(lambda: m.gathered(queries, table, ids), seed=8)
        assert other.item() != pytest.approx(reference.item(), abs=1e-6)


@pytest.mark.parametrize("kind", ["gated", "additive"])
def test_forward_in_item_chunks_gives_the_gradients_of_one_chunk(kind):
    """`forward` scores the catalogue in chunks of items: queries, items and every parameter get the gradients of
    the unchunked product."""
    if kind == "gated":
        m = gated(balance=0.05)
    else:
        torch.manual_seed(3)
        m = MixtureOfLogits(6, components=2, component_dim=4, temperature=0.1).double()
    queries = torch.randn(4, 6, dtype=torch.float64, requires_grad=True)
    items = torch.randn(9, 6, dtype=torch.float64, requires_grad=True)
    weights = torch.randn(4, 9, dtype=torch.float64)
    params = [queries, items, *m.parameters()]

    def grads() -> tuple:
        if kind == "gated":
            m.begin_step()
        loss = (m(queries, items) * weights).sum()
        if kind == "gated":
            loss = loss + m.aux_loss()                                             # the balance term too
        return torch.autograd.grad(loss, params)

    m.max_block = 1 << 22
    expected = grads()
    m.max_block = 4 * (6 if kind == "gated" else 2 * 2) * 2          # 4 queries x (pair values) x 2 items a chunk
    for g, want in zip(grads(), expected, strict=True):
        assert torch.allclose(g, want, atol=1e-10)


def test_load_balancing_loss_is_the_reference_formula_over_the_steps_calls():
    m = gated(balance=0.1)
    queries, table = torch.randn(6, 6, dtype=torch.float64), torch.randn(11, 6, dtype=torch.float64)
    pos, neg = torch.randint(1, 11, (6, 1)), torch.randint(1, 11, (6, 4))
    m.gathered(queries, table, neg)                                                   # outside a step: not kept
    assert m.aux_loss() is None
    m.begin_step()
    m.gathered(queries, table, pos)
    m.gathered(queries, table, neg)
    loss = m.aux_loss()
    # the gate weights of every scored pair, recomputed by hand from the same module in eval mode (no dropout)
    m.eval()
    q_parts, gate_q = m._side("query", queries)
    x_parts, gate_x = m._side("item", table)
    ids = torch.cat([pos, neg], dim=1)                                                # [6, 5] pairs
    logits = torch.einsum("mpd,mkrd->mkpr", q_parts, x_parts[ids]).flatten(2) / m.temperature
    w = torch.softmax(F.silu(gate_q.unsqueeze(1) * gate_x[ids] + m.pair_gate(logits)), -1).reshape(-1, m.pairs)
    usage = w.mean(0)
    expected = 0.1 * (-(-(usage * torch.log(usage + 1e-6)).sum()) + (-(w * torch.log(w + 1e-6)).sum(1)).mean())
    assert loss.item() == pytest.approx(expected.item(), rel=1e-9)
    assert m.aux_loss() is None                                                       # popped: a step's only
    m.train()
    m.begin_step()
    with torch.no_grad():
        m.gathered(queries, table, neg)                                               # no graph, nothing kept
    assert m.aux_loss() is None and m._sides == {}


def test_gate_dropout_keeps_each_score_a_convex_mix_of_its_logits():
    m = gated(gate_dropout=0.5, item_dropout=0.0)
    queries, items = torch.randn(5, 6, dtype=torch.float64), torch.randn(8, 6, dtype=torch.float64)
    q, _ = m._side("query", queries)
    x, _ = m._side("item", items)
    logits = torch.einsum("bpd,crd->bcpr", q, x).flatten(2) / m.temperature         # [5, 8, L]
    scores = m(queries, items)
    assert torch.all(scores >= logits.min(-1).values - 1e-9) and torch.all(scores <= logits.max(-1).values + 1e-9)
    assert not torch.allclose(scores, m(queries, items))                               # dropout draws anew
    m.eval()
    assert torch.allclose(m(queries, items), m(queries, items))


def test_config_keys_build_it_and_refuse_it_with_the_additive_gate():
    params = {"dim": 16, "max_len": 10, "similarity": "mol", "mol_gating": "glu_silu", "mol_query_components": 8,
              "mol_components": 4, "mol_dim": 12, "mol_query_hidden": 32, "mol_item_dropout": 0.1,
              "mol_gate_hidden": 24, "mol_gate_dropout": 0.2, "mol_balance": 0.001}
    model = build_model("hstu", 30, params)
    m = model.similarity
    assert isinstance(m, GatedMixtureOfLogits)
    assert (m.pq, m.px, m.d, m.gate_hidden, m.gate_dropout, m.balance) == (8, 4, 12, 24, 0.2, 0.001)
    assert m.query_proj[1].weight.shape == (8 * 12, 32) and m.pair_gate[0].weight.shape == (24, 32)
    assert model.score(model.eval().predict(torch.tensor([[0, 3, 4, 5]]))).shape == (1, 31)
    additive = build_model("hstu", 30, {"dim": 16, "max_len": 10, "similarity": "mol", "mol_gate_hidden": 24})
    assert isinstance(additive.similarity, MixtureOfLogits)
    assert additive.similarity.query_gate[0].weight.shape == (24, 16)
    problem = "model.mol_query_hidden: mol_query_hidden, mol_balance only apply with mol_gating: glu_silu"
    with pytest.raises(ConfigError, match=problem):
        load_config(None, ["model.name=hstu", "model.similarity=mol", "model.mol_query_hidden=32",
                           "model.mol_balance=0.01"])


GLU_SILU = ["model.mol_gating=glu_silu", "model.mol_query_components=4", "model.mol_dim=8",
            "model.mol_query_hidden=16", "model.mol_item_dropout=0.1", "model.mol_gate_hidden=8",
            "model.mol_gate_dropout=0.2", "model.mol_balance=0.5"]


@pytest.mark.parametrize("gating", ["additive", "glu_silu"])
def test_mol_parameters_learn_through_the_trainer(gating):
    """Either gate's parameters move in one training step; the reference gate's step ends its collection and
    adds the balance term to the loss."""
    split = seqrec.leave_one_out(seqrec.load("demo"))
    config = load_config(None, ["model.name=hstu", "model.dim=16", "model.max_len=20", "model.attention_dim=8",
                                "model.linear_dim=8", "model.similarity=mol", "model.mol_components=2",
                                *(GLU_SILU if gating == "glu_silu" else []),
                                "loss.name=sampled_softmax", "loss.num_negatives=16", "train.progress=false"])
    torch.manual_seed(0)
    model = build_model("hstu", split.data.num_items, config.model.params)
    trainer = Trainer(model, split, config)
    before = {k: v.clone() for k, v in model.similarity.state_dict().items()}
    trainer._step(np.arange(32))
    assert all(not torch.equal(before[k], v) for k, v in model.similarity.state_dict().items())
    if gating == "additive":
        return
    assert model.similarity._sides == {} and not model.similarity._in_step            # the step ended it
    # the step's loss = the sampled softmax + the balance term, which is negative (-H(mean) + mean H <= 0)
    from seqrec.train.objectives import make_batch
    batch = make_batch(model, split.data.items, trainer.starts[:32], trainer.ends[:32], rng=np.random.default_rng(0))
    step = TrainingStep(model, trainer.loss_spec, None)
    torch.manual_seed(1)
    with_balance = step(batch)[0].item()
    model.similarity.balance = 0.0
    torch.manual_seed(1)
    without = step(batch)[0].item()
    assert with_balance < without


# --------------------------------------------------------------------------------------------- user-id component

def test_user_component_is_the_last_query_component_and_unknown_users_add_nothing():
    m = gated(user_buckets=5).eval()                          # 3 query components: 2 from the state, 1 user
    states, items = torch.randn(4, 6, dtype=torch.float64), torch.randn(5, 6, dtype=torch.float64)
    users = torch.tensor([1, 3, 0, 5])                                                # 0: an unknown user
    queries = torch.cat([states, m.user_vectors(users)], dim=1)                       # [4, 6 + 4]
    parts, _ = m._side("query", queries)
    assert parts.shape == (4, 3, 4)
    assert torch.allclose(parts[:, 2][[0, 1, 3]], F.normalize(m.users.weight[[1, 3, 5]], dim=-1))
    assert torch.all(parts[2, 2] == 0)                                                # unknown: zero component
    scores = m(queries, items)
    for i in range(4):
        for j in range(5):
            assert scores[i, j].item() == pytest.approx(by_hand(m, queries[i], items[j]), abs=1e-10)
    with pytest.raises(ValueError, match=r"queries with a user part are \[..., 10\]"):
        m(states, items)


def test_user_l2_term_is_the_mean_squared_norm_over_real_positions():
    m = gated(user_buckets=5, user_l2=0.1, user_dropout=0.5)
    users = torch.tensor([[0, 2, 2], [0, 0, 4]])                                      # 0 = padding
    m.begin_step()
    vectors = m.user_vectors(users)
    expected = 0.1 * (m.users.weight[[2, 2, 4]] ** 2).sum() / 3
    assert m.aux_loss().item() == pytest.approx(expected.item(), rel=1e-12)
    assert torch.all(vectors[users == 0] == 0)
    kept = vectors[users != 0] != 0                                                   # elementwise dropout
    assert 0 < kept.float().mean() < 1


def test_hstu_with_a_user_component_trains_evaluates_and_recommends_on_demo_data():
    split = seqrec.leave_one_out(seqrec.load("demo"))
    model_cfg = {"name": "hstu", "dim": 16, "max_len": 20, "attention_dim": 8, "linear_dim": 8,
                 "similarity": "mol", "mol_gating": "glu_silu", "mol_query_components": 3, "mol_components": 2,
                 "mol_dim": 8, "mol_gate_hidden": 8, "mol_user_buckets": 1000, "mol_user_dropout": 0.5,
                 "mol_user_l2": 0.1}
    run = api.train(split, model=model_cfg, loss={"name": "sampled_softmax", "num_negatives": 16},
                    train={"epochs": 1, "batch_size": 64, "progress": False, "seed": 3})
    model = run.model
    assert set(model.side_inputs) == {"users"} and model.user_buckets == 1000
    assert run.evaluate("test") == pytest.approx(run.results["test"])                 # users reach the evaluator
    # row 0 of the user table (padding / unknown user) stays zero through training
    assert torch.all(model.similarity.users.weight[0] == 0)
    # a known user's answer uses their embedding; the same items as a raw history are an unknown user's
    data = split.data
    user = data.users.decode(np.array([0]))[0].item()
    history = data.item_vocab.decode(data.sequence(0)).tolist()
    known = run.recommend(user=user, k=5)
    raw = run.recommend(history=history, k=5)
    assert len(known) == len(raw) == 5
    assert [s for _, s in known] != pytest.approx([s for _, s in raw])
    with torch.no_grad():                                                           # zero the user's row
        model.similarity.users.weight[1] = 0                                          # bucket 1 = user 0
    assert [s for _, s in run.recommend(user=user, k=5)] == pytest.approx([s for _, s in raw], rel=1e-5)


def test_a_user_component_needs_hstu_and_the_reference_gate():
    with pytest.raises(ConfigError, match="model 'sasrec' does not read user ids; a MoL user-id component"):
        build_model("sasrec", 30, {"dim": 16, "max_len": 10, "similarity": "mol", "mol_gating": "glu_silu",
                                   "mol_query_components": 3, "mol_user_buckets": 10})
    with pytest.raises(ConfigError, match="mol_user_buckets only apply with mol_gating: glu_silu"):
        load_config(None, ["model.name=hstu", "model.similarity=mol", "model.mol_user_buckets=10"])
