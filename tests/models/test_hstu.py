"""HSTU specifics (time buckets, the softmax-free attention, the relative bias, timestamps), MoL similarity,
truncated-normal initialisation and the paper's ML-1M configs. The shared contract is in test_contract.py."""

import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import seqrec
from seqrec.config import load_config
from seqrec.data.batches import CausalBatch
from seqrec.models import MODELS, build_model
from seqrec.models.layers.gated_mol import GatedMixtureOfLogits
from seqrec.models.layers.hstu import HSTUBlock, bias_indices, causal_valid_mask, time_buckets
from seqrec.models.layers.init import init_embedding_, truncated_normal_
from seqrec.models.layers.similarity import Cosine, DotProduct, MixtureOfLogits
from seqrec.train.objectives import make_batch
from seqrec.train.trainer import Trainer

N = 30
CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def hstu(**params):
    torch.manual_seed(0)
    small = {"dim": 16, "num_heads": 2, "attention_dim": 8, "linear_dim": 8, "max_len": 10, "dropout": 0.0}
    return build_model("hstu", N, {**small, **params}).eval()


# --------------------------------------------------------------------------------------------- time buckets

def test_time_buckets_against_hand_computed_values():
    gaps = torch.tensor([0, 1, -1, 2, -2, 10, 3600, -86400, 10 ** 18])
    # floor(ln(max(1, |gap|)) / 0.301): ln 2 = 0.693 -> 2, ln 10 = 2.303 -> 7, ln 3600 = 8.189 -> 27,
    # ln 86400 = 11.367 -> 37, ln 1e18 = 41.4 -> 137, clamped to 128
    assert time_buckets(gaps, 128).tolist() == [0, 0, 0, 2, 2, 7, 27, 37, 128]
    assert time_buckets(gaps, 10).tolist() == [0, 0, 0, 2, 2, 7, 10, 10, 10]
    assert time_buckets(torch.tensor([100]), 128, base=1.0).tolist() == [4]        # ln 100 = 4.605


def test_bias_indices_count_real_items_not_columns():
    valid = torch.tensor([[False, True, True, False, True]])                         # padding inside the row
    distance, buckets = bias_indices(valid, None, max_len=3, num_buckets=8)
    assert buckets is None
    # real items are columns 1, 2, 4; column 4 is 2 real items after column 1, distances clamp to max_len - 1
    assert distance[0, 4, 1] == 2 and distance[0, 4, 2] == 1 and distance[0, 2, 1] == 1 and distance[0, 4, 4] == 0
    assert distance.min() >= 0 and distance.max() <= 2
    times = torch.tensor([[0, 100, 110, 0, 3700]])
    _, buckets = bias_indices(valid, times, max_len=3, num_buckets=128)
    assert buckets[0, 4, 1] == 27 and buckets[0, 2, 1] == 7                            # 3600 s and 10 s


def _interval_rows() -> torch.Tensor:
    """Rows whose real items are one run of columns: right-aligned, left-aligned, padded on both sides, full."""
    return torch.tensor([[False, False, True, True, True, True], [True, True, True, False, False, False],
                         [False, True, True, True, False, False], [True] * 6])


def test_shared_distances_equal_per_row_counts_wherever_a_real_query_reads_a_key():
    valid = _interval_rows()
    shared, _ = bias_indices(valid, None, max_len=4, num_buckets=0)
    per_row, _ = bias_indices(valid, None, max_len=4, num_buckets=0, shared=False)
    assert shared.shape == (1, 6, 6) and per_row.shape == (4, 6, 6)
    reads = causal_valid_mask(valid)[:, 0].bool() & valid[:, :, None]                # real query, allowed key
    assert torch.equal(shared.expand_as(per_row)[reads], per_row[reads])
    assert shared[0, 5, 0] == 3 and shared[0, 3, 1] == 2                             # i - j, clamped to max_len - 1
    holed = torch.tensor([[True, False, True, True, False, False]] + [[True] * 6])   # a gap inside a row
    assert bias_indices(holed, None, max_len=4, num_buckets=0)[0].shape == (2, 6, 6)  # falls back to per row


@pytest.mark.parametrize("with_times", [False, True], ids=["positions", "positions+time"])
def test_block_with_shared_distances_equals_per_row_distances(with_times):
    """The same outputs on real positions and the same gradients with the shared [1, L, L] distances as with
    the per-row counts."""
    torch.manual_seed(3)
    block = HSTUBlock(dim=8, num_heads=2, attention_dim=4, linear_dim=3, dropout=0.0, max_len=6,
                      num_buckets=16 if with_times else 0).double()
    valid = _interval_rows()
    x = torch.randn(4, 6, 8, dtype=torch.float64)
    times = torch.randint(0, 10_000, (4, 6)).cumsum(1) if with_times else None
    allowed = causal_valid_mask(valid).double()
    results = []
    for shared in (True, False):
        distance, buckets = bias_indices(valid, times, 6, 16 if with_times else 0, shared=shared)
        out = block(x, allowed, distance, buckets)[valid]                               # real positions only
        grads = torch.autograd.grad(out.square().sum(), list(block.parameters()))
        results.append((out, grads))
    (out_a, grads_a), (out_b, grads_b) = results
    assert torch.allclose(out_a, out_b, atol=1e-12)
    for a, b in zip(grads_a, grads_b, strict=True):
        assert torch.allclose(a, b, atol=1e-10)


# --------------------------------------------------------------------------------------------- the block

def test_hstu_attention_has_no_softmax_hand_check():
    """Constant projections: every real, earlier-or-same key gets weight SiLU(a * s^2 + rab) / n, which a softmax
    would instead turn into 1 / (number of visible keys)."""
    block = HSTUBlock(dim=4, num_heads=1, attention_dim=3, linear_dim=2, dropout=0.0, max_len=5)
    with torch.no_grad():
        block.uvqk.weight.zero_()
        block.uvqk.bias.fill_(0.5)
        block.bias.position_weight.zero_()
    valid = torch.tensor([[True, True, False, True]])
    x = torch.randn(1, 4, 4)
    distance, _ = bias_indices(valid, None, 5, 0)
    weights, _ = block.attention(x, causal_valid_mask(valid), distance)
    s = 0.5 / (1 + math.exp(-0.5))                                                    # SiLU(0.5)
    w = (3 * s * s) / (1 + math.exp(-3 * s * s)) / 5                                  # SiLU(3 s^2) / n
    expected = torch.tensor([[w, 0, 0, 0], [w, w, 0, 0], [w, w, 0, 0], [w, w, 0, w]])  # column 2 is padding
    assert torch.allclose(weights[0, 0], expected, atol=1e-6)
    assert not torch.allclose(weights[0, 0].sum(-1), torch.ones(4))                   # rows do not sum to 1


@pytest.mark.parametrize("block_values", [1, 2 * 6 * 6, 10 ** 9], ids=["row-per-chunk", "two-rows", "one-chunk"])
@pytest.mark.parametrize("kind", ["shared-bias", "time-bias"])
def test_fused_pointwise_attention_equals_autograd_of_the_plain_block(block_values, kind, monkeypatch):
    """The fused attention (maps made a few batch rows at a time, recomputed in the backward) gives the plain
    block's output and the gradients of the input and of every parameter before the output projection, with
    padded rows, a bias shared by the
    batch (positions) or one per row (time buckets), in float64."""
    from seqrec.models.layers import hstu as layers

    monkeypatch.setattr(layers, "POINTWISE_BLOCK", block_values)
    torch.manual_seed(6)
    buckets_n = 8 if kind == "time-bias" else 0
    block = HSTUBlock(dim=6, num_heads=2, attention_dim=3, linear_dim=4, dropout=0.0, max_len=6,
                      num_buckets=buckets_n).double()
    with torch.no_grad():
        for p in block.bias.parameters():
            p.normal_()
    valid = torch.tensor([[False, False, True, True, True, True], [True] * 6, [False] * 5 + [True]])
    times = torch.cumsum(torch.randint(0, 5000, (3, 6)), 1) if buckets_n else None
    distance, buckets = bias_indices(valid, times, 6, buckets_n)
    allowed = causal_valid_mask(valid).double()
    x = torch.randn(3, 6, 6, dtype=torch.float64, requires_grad=True)
    weights = torch.randn(3, 6, 4 * 2, dtype=torch.float64)
    params = [x, *block.uvqk.parameters(), *block.bias.parameters()]               # what reaches the gated output
    outputs = {}
    for fused in (False, True):
        _, gated = block._attend(x, allowed, distance, buckets, fused=fused)
        outputs[fused] = (gated, torch.autograd.grad((gated * weights).sum(), params))
    assert torch.allclose(outputs[True][0], outputs[False][0], atol=1e-12)
    for got, want in zip(outputs[True][1], outputs[False][1], strict=True):
        assert torch.allclose(got, want, atol=1e-10)


def test_the_block_fuses_its_attention_on_cpu_unless_attention_dropout_trains():
    block = HSTUBlock(dim=6, num_heads=1, attention_dim=3, linear_dim=4, dropout=0.0, max_len=5,
                      attention_dropout=0.5)
    valid = torch.ones(2, 5, dtype=torch.bool)
    distance, _ = bias_indices(valid, None, 5, 0)
    x = torch.randn(2, 5, 6)
    calls = []
    original = block._attend
    block._attend = lambda *args, **kwargs: calls.append(kwargs["fused"]) or original(*args, **kwargs)
    block.train()(x, causal_valid_mask(valid), distance)
    block.eval()(x, causal_valid_mask(valid), distance)
    assert calls == [False, True]


def test_fused_attention_under_bf16_autocast_follows_fp32():
    torch.manual_seed(7)
    block = HSTUBlock(dim=16, num_heads=2, attention_dim=8, linear_dim=8, dropout=0.0, max_len=12)
    valid = torch.ones(4, 12, dtype=torch.bool)
    distance, _ = bias_indices(valid, None, 12, 0)
    x = torch.randn(4, 12, 16, requires_grad=True)
    exact = block(x, causal_valid_mask(valid), distance)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = block(x, causal_valid_mask(valid), distance)
    low.float().sum().backward()                                                      # backward outside autocast
    assert x.grad is not None and torch.isfinite(x.grad).all()
    assert (low.float() - exact).abs().max() < 0.05 * exact.abs().max()


def test_relative_position_bias_enters_before_the_silu():
    block = HSTUBlock(dim=4, num_heads=2, attention_dim=3, linear_dim=2, dropout=0.0, max_len=4)
    valid = torch.ones(1, 4, dtype=torch.bool)
    x = torch.randn(1, 4, 4)
    distance, _ = bias_indices(valid, None, 4, 0)
    with torch.no_grad():
        block.bias.position_weight.copy_(torch.tensor([0.0, 1.0, -2.0, 3.0]))
    weights, _ = block.attention(x, causal_valid_mask(valid), distance)
    _, _, q, k = F.silu(block.uvqk(block.input_norm(x))).split(block.sizes, dim=-1)
    q, k = q.view(1, 4, 2, 3).transpose(1, 2), k.view(1, 4, 2, 3).transpose(1, 2)
    rab = torch.tensor([[0.0, 0, 0, 0], [1, 0, 0, 0], [-2, 1, 0, 0], [3, -2, 1, 0]])   # by distance i - j
    manual = F.silu(q @ k.transpose(-2, -1) + rab) / 4 * torch.ones(4, 4).tril()
    assert torch.allclose(weights, manual, atol=1e-6)


# --------------------------------------------------------------------------------------------- the model

@pytest.mark.parametrize("output_norm", ["l2", "layernorm", "none"])
def test_output_norms(output_norm):
    model = hstu(output_norm=output_norm)
    items = torch.tensor([[0, 0, 3, 4, 5], [1, 2, 3, 4, 5]])
    states = model(CausalBatch(items))
    assert torch.all(states[0, :2] == 0)                                             # padding stays zero
    real = states[items != 0]
    if output_norm == "l2":
        assert torch.allclose(real.norm(dim=-1), torch.ones(real.shape[0]), atol=1e-5)
    elif output_norm == "layernorm":
        assert torch.allclose(real.mean(-1), torch.zeros(real.shape[0]), atol=1e-5)


def test_defaults_are_the_papers_ml1m_setting():
    config = build_model("hstu", N).config
    assert (config.dim, config.num_blocks, config.num_heads, config.attention_dim, config.linear_dim) == (
        50, 2, 1, 50, 50)
    assert (config.dropout, config.max_len, config.output_norm, config.init) == (0.2, 200, "l2", "truncated_normal")
    assert (config.similarity, config.temperature) == ("cosine", 0.05)


def timed_rows(seed=0):
    g = torch.Generator().manual_seed(seed)
    items = torch.randint(1, N + 1, (3, 8), generator=g)
    items[1, :3] = 0
    items[2, :6] = 0
    times = torch.cumsum(torch.randint(0, 5000, (3, 8), generator=g), dim=1) * (items != 0)
    return items, times


def left(values, items):
    order = torch.argsort((items == 0).to(torch.int8), dim=1, stable=True)
    return values.gather(1, order)


def test_time_bias_keeps_padding_invariance_and_causality():
    model = hstu(time_bias=True)
    items, times = timed_rows()
    right_states = model(CausalBatch(items, times=times))
    left_states = model(CausalBatch(left(items, items), times=left(times, items)))
    assert torch.allclose(right_states[items != 0], left_states[left(items, items) != 0], atol=1e-5)
    changed_items, changed_times = items.clone(), times.clone()
    changed_items[0, 5:] = 1
    changed_times[0, 5:] += 10 ** 6                                                  # the future moves
    after = model(CausalBatch(changed_items, times=changed_times))
    assert torch.allclose(right_states[0, :5], after[0, :5], atol=1e-6)


def test_time_bias_uses_the_times():
    model = hstu(time_bias=True)
    items, times = timed_rows()
    with torch.no_grad():
        for block in model.blocks:
            block.bias.time_weight.copy_(torch.linspace(-3, 3, block.bias.time_weight.shape[0]))
    base = model(CausalBatch(items, times=times))
    assert not torch.allclose(base, model(CausalBatch(items, times=times * 50)), atol=1e-4)
    assert torch.allclose(base, model(CausalBatch(items, times=times + 12345)), atol=1e-6)  # only gaps count
    with pytest.raises(ValueError, match="times"):
        model(CausalBatch(items))
    assert hstu()(CausalBatch(items, times=times * 50)).shape == base.shape            # off: times ignored


def test_make_batch_carries_times_only_for_models_that_use_them():
    rng = np.random.default_rng(0)
    items = rng.integers(1, N + 1, size=40)
    times = items.astype(np.int64) * 1000                                            # time encodes the item
    starts, ends = np.array([0, 5, 20]), np.array([5, 20, 40])
    for align in ("right", "left"):
        batch = make_batch(hstu(time_bias=True), items, starts, ends, align=align, side={"times": times})
        assert torch.equal(batch.times, batch.items * 1000)                          # aligned, 0 at padding
    assert make_batch(hstu(), items, starts, ends, side={"times": times}).times is None
    sasrec = build_model("sasrec", N, {"max_len": 10})
    assert make_batch(sasrec, items, starts, ends, side={"times": times}).times is None


# --------------------------------------------------------------------------------------------- MoL

def test_mol_with_one_component_and_identity_projections_is_cosine():
    g = torch.Generator().manual_seed(0)
    queries, items = torch.randn(5, 6, generator=g, dtype=torch.float64), torch.randn(9, 6, generator=g,
                                                                                         dtype=torch.float64)
    mol = MixtureOfLogits(6, components=1, temperature=0.1).double()
    with torch.no_grad():
        for proj in (mol.query_proj, mol.item_proj):
            proj.weight.copy_(torch.eye(6))
            proj.bias.zero_()
    cosine = Cosine(0.1)
    assert torch.allclose(mol(queries, items), cosine(queries, items), atol=1e-12)
    per_row = items[:8].view(4, 2, 6)                                               # [M, K, D]
    assert torch.allclose(mol.pairwise(queries[:4], per_row), cosine.pairwise(queries[:4], per_row), atol=1e-12)


def test_mol_forward_matches_pairwise_and_chunking():
    torch.manual_seed(1)
    mol = MixtureOfLogits(8, components=3, component_dim=5, temperature=0.05)
    queries, items = torch.randn(7, 8), torch.randn(11, 8)
    full = mol(queries, items)                                                       # [7, 11]
    assert full.shape == (7, 11)
    pairwise = mol.pairwise(queries, items.expand(7, 11, 8))                          # the same items per row
    assert torch.allclose(full, pairwise, atol=1e-5)
    mol.max_block = 9 * 2                                                            # two items per chunk
    assert torch.allclose(mol(queries, items), full, atol=1e-6)
    assert full.abs().max() <= 1 / 0.05 + 1e-4                                       # a mix of cosines / T


@pytest.mark.parametrize("make", [DotProduct, lambda: Cosine(0.1),
                                  lambda: MixtureOfLogits(6, components=3, component_dim=4, temperature=0.1),
                                  lambda: GatedMixtureOfLogits(6, 3, 2, 4, 0.1, query_hidden=8, item_dropout=0.0,
                                                               gate_hidden=5, gate_dropout=0.0)],
                         ids=["dot", "cosine", "mol", "mol-glu-silu"])
@pytest.mark.parametrize("shape", [(2, 3), (9, 7)], ids=["few-ids", "many-ids"])   # fewer / more ids than rows
def test_gathered_equals_pairwise_on_gathered_rows(make, shape):
    """`gathered` (per-item work once per table row, then a gather) gives `pairwise(q, table[ids])`: values and
    the gradients of queries, table and the similarity's own parameters."""
    torch.manual_seed(2)
    similarity = make().double()
    queries = torch.randn(shape[0], 6, dtype=torch.float64, requires_grad=True)
    table = torch.randn(11, 6, dtype=torch.float64, requires_grad=True)
    ids = torch.randint(0, 11, shape)
    params = [queries, table, *similarity.parameters()]
    weights = torch.randn(shape, dtype=torch.float64)
    reference = similarity.pairwise(queries, table[ids])
    expected = torch.autograd.grad((reference * weights).sum(), params)
    scores = similarity.gathered(queries, table, ids)
    assert scores.shape == shape
    assert torch.allclose(scores, reference, atol=1e-12)
    for got, want in zip(torch.autograd.grad((scores * weights).sum(), params), expected, strict=True):
        assert torch.allclose(got, want, atol=1e-10)


@pytest.mark.parametrize("name", [n for n in MODELS if MODELS[n].trainable])
def test_mol_is_a_trained_submodule_of_any_model(name):
    model = build_model(name, N, {"dim": 16, "max_len": 10, "similarity": "mol", "mol_components": 2, "mol_dim": 4})
    assert isinstance(model.similarity, MixtureOfLogits)
    items = torch.tensor([[0, 3, 4, 5], [1, 2, 3, 4]])
    assert model.score(model.eval().predict(items)).shape == (2, N + 1)
    assert {id(p) for p in model.similarity.parameters()} <= {id(p) for p in model.parameters()}
    assert any(k.startswith("similarity.") for k in model.state_dict())
    assert model.similarity.query_proj.weight.shape == (2 * 4, 16)


# --------------------------------------------------------------------------------------------- init

def test_truncated_normal_stays_within_two_std():
    torch.manual_seed(0)
    values = truncated_normal_(torch.empty(20000), std=0.02)
    assert values.abs().max() <= 0.04
    assert 0.015 < values.std() < 0.02                                               # truncation narrows it
    table = init_embedding_(torch.nn.Embedding(50, 8, padding_idx=0), "truncated_normal")
    assert torch.all(table.weight[0] == 0) and table.weight.abs().max() <= 0.04
    model = hstu()
    assert model.items.weight.abs().max() <= 0.04 and torch.all(model.items.weight[0] == 0)


# --------------------------------------------------------------------------------------------- configs

@pytest.mark.parametrize("name", ["ml1m_sasrec_sampled", "ml1m_hstu", "ml1m_hstu_large", "ml1m_hstu_large_mol"])
def test_paper_configs_load(name, monkeypatch):
    monkeypatch.setenv("SEQREC_DATA", "/data")
    config = load_config(CONFIGS / f"{name}.yaml")
    reference = load_config(CONFIGS / "ml1m_sasrec.yaml")
    assert (config.data, config.split, config.eval) == (reference.data, reference.split, reference.eval)
    params = config.model.params
    assert (params.dim, params.dropout, params.max_len, params.temperature) == (50, 0.2, 200, 0.05)
    assert (config.loss.name, config.loss.negatives, config.loss.num_negatives) == ("sampled_softmax", "uniform", 128)
    assert not config.loss.shared_negatives                        # per position, as the reference
    train = config.train
    assert (train.optimizer, train.lr, train.betas, train.batch_size) == ("adamw", 1e-3, [0.9, 0.98], 128)
    assert (train.clip_norm, train.batching) == (None, "random")   # the reference clips none, batches at random
    if name.startswith("ml1m_hstu_large"):
        assert (params.num_blocks, params.num_heads, params.attention_dim, params.linear_dim) == (8, 2, 25, 25)
    elif name == "ml1m_hstu":
        assert (params.num_blocks, params.num_heads, params.attention_dim, params.linear_dim) == (2, 1, 50, 50)
    assert params.similarity == ("mol" if name.endswith("mol") else "cosine")
    if name.endswith("mol"):                                       # the RAILS reference's ML-1M MoL settings
        mol = (params.mol_gating, params.mol_query_components, params.mol_components, params.mol_dim,
               params.mol_query_hidden, params.mol_item_dropout, params.mol_gate_hidden, params.mol_gate_dropout,
               params.mol_balance)
        assert mol == ("glu_silu", 8, 4, 64, 512, 0.1, 128, 0.2, 0.001)
        assert (params.output_norm, train.weight_decay, train.no_decay) == ("layernorm", 1e-3, [])
        assert (params.mol_user_buckets, params.mol_user_dropout, params.mol_user_l2) == (6040, 0.5, 0.1)


def test_betas_reach_the_optimizer():
    split = seqrec.leave_one_out(seqrec.load("demo"))
    config = load_config(None, ["model.name=hstu", "model.dim=8", "model.max_len=5", "train.optimizer=adamw",
                                "train.betas=[0.8, 0.98]"])
    trainer = Trainer(build_model("hstu", split.data.num_items, config.model.params), split, config)
    assert trainer.optimizer.param_groups[0]["betas"] == (0.8, 0.98)
    assert load_config(None).train.betas == [0.9, 0.999]                             # torch's default


def test_block_matches_the_formula_in_value_and_gradients():
    """The block's in-place passes give the module docstring's formula, outputs and every gradient (float64)."""
    torch.manual_seed(5)
    block = HSTUBlock(dim=6, num_heads=2, attention_dim=3, linear_dim=2, dropout=0.0, max_len=7,
                      num_buckets=8).double()
    valid = torch.tensor([[False, True, True, True, True], [True, True, True, False, False]])
    x = torch.randn(2, 5, 6, dtype=torch.float64, requires_grad=True)
    times = torch.randint(0, 1_000, (2, 5)).cumsum(1)
    distance, buckets = bias_indices(valid, times, 7, 8)
    allowed = causal_valid_mask(valid).double()

    def formula(x):
        u, v, q, k = F.silu(block.uvqk(block.input_norm(x))).split(block.sizes, dim=-1)
        q, k, v = (t.view(2, 5, 2, -1).transpose(1, 2) for t in (q, k, v))
        rab = block.bias(distance, buckets).unsqueeze(1)
        a = F.silu(q @ k.transpose(-2, -1) + rab) / 7 * allowed
        mixed = (a @ v).transpose(1, 2).reshape(2, 5, -1)
        return x + block.out(block.output_norm(mixed) * u)

    outputs = []
    for fn in (lambda x: block(x, allowed, distance, buckets), formula):
        out = fn(x)
        grads = torch.autograd.grad((out * torch.linspace(-1, 1, out.numel()).view_as(out)).sum(),
                                    [x, *block.parameters()])
        outputs.append((out, grads))
    assert torch.allclose(outputs[0][0], outputs[1][0], atol=1e-12)
    for a, b in zip(outputs[0][1], outputs[1][1], strict=True):
        assert torch.allclose(a, b, atol=1e-10)


@pytest.mark.parametrize("rows_per_chunk", [1, 4, 100])
def test_mol_gathered_chunks_match_autograd_of_the_unchunked_formula(rows_per_chunk):
    """MoL's `gathered` scores a few query rows at a time and recomputes them in its backward; its values and
    every gradient (queries, table, projections, gates, logit gate) equal autograd's through `pairwise` on the
    gathered rows, with ids repeated within and across rows (the table gradient sums them)."""
    torch.manual_seed(3)
    mol = MixtureOfLogits(6, components=3, component_dim=4, temperature=0.1).double()
    mol.gather_block = rows_per_chunk * 5 * 3 * 4                                     # rows x K x P x d
    queries = torch.randn(9, 6, dtype=torch.float64, requires_grad=True)
    table = torch.randn(7, 6, dtype=torch.float64, requires_grad=True)
    ids = torch.randint(0, 7, (9, 5), generator=torch.Generator().manual_seed(4))
    params = [queries, table, *mol.parameters()]
    weights = torch.randn(9, 5, dtype=torch.float64)
    reference = mol.pairwise(queries, table[ids])
    expected = torch.autograd.grad((reference * weights).sum(), params)
    scores = mol.gathered(queries, table, ids)
    assert torch.allclose(scores, reference, atol=1e-12)
    for got, want in zip(torch.autograd.grad((scores * weights).sum(), params), expected, strict=True):
        assert torch.allclose(got, want, atol=1e-10)
    assert torch.autograd.gradcheck(lambda q, t: mol.gathered(q, t, ids), (queries, table))


def test_mol_gathered_under_bf16_autocast_follows_the_fp32_scores():
    torch.manual_seed(5)
    mol = MixtureOfLogits(8, components=2, component_dim=4, temperature=0.1)
    queries, table = torch.randn(12, 8, requires_grad=True), torch.randn(10, 8, requires_grad=True)
    ids = torch.randint(1, 10, (12, 6))
    exact = mol.gathered(queries, table, ids)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = mol.gathered(queries, table, ids)
    low.sum().backward()                                                             # backward outside autocast
    assert low.dtype == torch.float32 and queries.grad is not None and table.grad is not None
    assert (low - exact).abs().max() < 0.05 * exact.abs().max()
