"""The contract every registered model keeps: shapes, no future leakage, padding invariance, determinism,
checkpoint round trip, and learning on real data. A model joins these tests by joining `MODELS`."""

import numpy as np
import pytest
import torch

import seqrec
from seqrec import api
from seqrec.data.batches import CausalBatch
from seqrec.errors import ConfigError
from seqrec.models import MODELS, build_model, get_model_class
from seqrec.train.checkpoint import load_checkpoint, save_checkpoint
from seqrec.train.losses import LossSpec, compute_loss, full_softmax_ce
from seqrec.train.objectives import make_batch

N = 40
# small versions of each model for the fast tests (a new model adds its entry; defaults otherwise)
SMALL = {"sasrec": {"dim": 16, "num_blocks": 2, "num_heads": 2, "max_len": 12, "dropout": 0.3},
         "gru4rec": {"dim": 16, "hidden_size": 24, "num_layers": 2, "layer_dropout": 0.2, "max_len": 12,
                     "dropout": 0.3},
         "bert4rec": {"dim": 16, "num_blocks": 2, "num_heads": 2, "max_len": 13, "dropout": 0.3},
         "nextitnet": {"dim": 16, "dilations": [1, 2, 4], "num_blocks": 2, "max_len": 12, "dropout": 0.3},
         "hstu": {"dim": 16, "num_blocks": 2, "num_heads": 2, "attention_dim": 8, "linear_dim": 8, "max_len": 12,
                  "dropout": 0.3},
         "srgnn": {"dim": 16, "steps": 2, "max_len": 12, "dropout": 0.3, "reference_biases": True},
         "gcsan": {"dim": 16, "steps": 2, "num_blocks": 2, "num_heads": 2, "max_len": 12, "dropout": 0.3},
         "lessr": {"dim": 16, "num_layers": 3, "max_len": 12, "dropout": 0.3}}
# settings that learn the demo data within a few epochs
DEMO = {"sasrec": {"dim": 32, "num_blocks": 2, "max_len": 50, "dropout": 0.2},
        "gru4rec": {"dim": 32, "hidden_size": 64, "max_len": 50, "dropout": 0.1},
        "bert4rec": {"dim": 32, "num_blocks": 2, "max_len": 50, "dropout": 0.1, "mask_prob": 0.3},
        "nextitnet": {"dim": 32, "num_blocks": 2, "max_len": 50},
        "hstu": {"dim": 32, "num_blocks": 2, "attention_dim": 32, "linear_dim": 32, "max_len": 50},
        "srgnn": {"dim": 32, "max_len": 20},
        "gcsan": {"dim": 32, "max_len": 20, "dropout": 0.1},
        "lessr": {"dim": 32, "max_len": 20, "dropout": 0.1}}
# prefix models train on every prefix (about 30 rows per demo user): fewer epochs see as many targets
DEMO_EPOCHS = {"srgnn": 2, "gcsan": 2, "lessr": 2}
NAMES = sorted(MODELS)


def make(name: str, seed: int = 0):
    torch.manual_seed(seed)
    return build_model(name, N, SMALL.get(name, {})).eval()


def histories(seed: int = 1, rows: int = 6, length: int = 12) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    items = torch.randint(1, N + 1, (rows, length), generator=g)
    lengths = torch.tensor([12, 9, 5, 1, 3, 12])[:rows]
    keep = torch.arange(length)[None, :] >= (length - lengths)[:, None]         # right-aligned
    return items * keep


def left_align(items: torch.Tensor) -> torch.Tensor:
    out = torch.zeros_like(items)
    for r in range(items.shape[0]):                                              # test-only reference
        real = items[r][items[r] != 0]
        out[r, :real.numel()] = real
    return out


@pytest.mark.parametrize("name", NAMES)
def test_shapes(name):
    model = make(name)
    items = histories()
    states = model(CausalBatch(items))
    assert states.shape[:2] == items.shape
    dim = states.shape[2]
    assert model.item_embeddings().shape == (N + 1, dim)
    assert model.predict(items).shape == (items.shape[0], dim)
    assert model.score(model.predict(items)).shape == (items.shape[0], N + 1)


@pytest.mark.parametrize("name", [n for n in NAMES if MODELS[n].causal])
def test_no_future_leakage(name):
    model = make(name)
    items = left_align(histories(rows=1, length=12))                             # 12 real items
    before = model(CausalBatch(items))
    for t in range(items.shape[1] - 1):
        changed = items.clone()
        changed[0, t + 1:] = torch.randint(1, N + 1, (items.shape[1] - t - 1,))
        after = model(CausalBatch(changed))
        assert torch.allclose(before[0, :t + 1], after[0, :t + 1], atol=1e-5), f"position {t} saw the future"


@pytest.mark.parametrize("name", NAMES)
def test_padding_invariance(name):
    model = make(name)
    right = histories()
    left = left_align(right)
    expected = model.predict(right)
    assert torch.allclose(model.predict(left), expected, atol=1e-5)
    narrow = right[:, 4:]                                                        # less padding (rows <= 8 items)
    rows = (right != 0).sum(1) <= 8
    assert torch.allclose(model.predict(narrow[rows]), expected[rows], atol=1e-5)
    # states at real positions do not depend on the alignment either
    s_right, s_left = model(CausalBatch(right)), model(CausalBatch(left))
    assert torch.allclose(s_right[right != 0], s_left[left != 0], atol=1e-5)


@pytest.mark.parametrize("name", [n for n in NAMES if hasattr(make(n), "items")])
def test_a_learned_padding_row_changes_nothing(name):
    """`loss.padding_class` trains the padding row of the item table as a softmax class (Klenitskiy & Vasilev's
    SASRec code), so the row's value drifts from zero: its input embedding must never reach a real position's
    state or a prediction, in either alignment."""
    model = make(name)
    right = histories()
    left = left_align(right)
    before = [model(CausalBatch(right)), model(CausalBatch(left)), model.predict(right)]
    with torch.no_grad():
        model.items.weight[0].normal_(0, 3.0)
    after = [model(CausalBatch(right)), model(CausalBatch(left)), model.predict(right)]
    torch.testing.assert_close(after[0][right != 0], before[0][right != 0])
    torch.testing.assert_close(after[1][left != 0], before[1][left != 0])
    torch.testing.assert_close(after[2], before[2])


@pytest.mark.parametrize("name", NAMES)
def test_determinism_under_a_seed(name):
    a, b = make(name, seed=3), make(name, seed=3)
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert ka == kb and torch.equal(va, vb)
    items = histories()
    a.train(), b.train()
    torch.manual_seed(5)
    out_a = a(CausalBatch(items))
    torch.manual_seed(5)
    assert torch.equal(out_a, b(CausalBatch(items)))


@pytest.mark.parametrize("name", NAMES)
def test_checkpoint_round_trip_gives_identical_scores(name, tmp_path):
    model = make(name)
    with torch.no_grad():
        for p in model.buffers():
            if p.is_floating_point():
                p.add_(torch.rand_like(p))                                       # Pop's counts, running stats
    save_checkpoint(tmp_path / "m.pt", {"format": 1, "state_dict": model.state_dict()})
    other = make(name, seed=9)
    other.load_state_dict(load_checkpoint(tmp_path / "m.pt")["state_dict"])
    items = histories()
    assert torch.equal(model.score(model.predict(items)), other.score(other.predict(items)))


@pytest.mark.parametrize("name", NAMES)
def test_config_round_trip(name):
    cls = get_model_class(name)
    config = cls.config_class(**SMALL.get(name, {}))
    assert cls.config_class(**config.model_dump()) == config


def test_unknown_model_suggests_the_closest():
    with pytest.raises(ConfigError, match="did you mean 'sasrec'"):
        get_model_class("sasrek")


def test_bad_hyper_parameter_is_rejected():
    with pytest.raises(Exception, match="dim"):
        build_model("sasrec", N, {"dim": 0})


@pytest.mark.realdata
@pytest.mark.parametrize("name", [n for n in NAMES if MODELS[n].trainable])
def test_a_few_steps_on_real_data_lower_the_loss(name, dataset):
    data = seqrec.load(dataset("ml-1m-sasrec/ml-1m.txt"), format="pairs")
    split = seqrec.leave_one_out(data)
    torch.manual_seed(0)
    model = build_model(name, data.num_items, {**SMALL.get(name, {}), "max_len": 50, "dropout": 0.0})
    users = np.arange(256)
    batch = make_batch(model, data.items, data.offsets[users], split.train_end[users],
                       rng=np.random.default_rng(0))
    optimizer = torch.optim.Adam(model.parameters(), lr=5e-3)
    losses = []
    for _ in range(15):
        states = model(batch)
        scored = batch.targets != 0
        loss = full_softmax_ce(states[scored], batch.targets[scored], model.item_embeddings(), model.similarity)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] - 0.3, losses


@pytest.fixture(scope="module")
def demo_split():
    return seqrec.leave_one_out(seqrec.load("demo"))


@pytest.fixture(scope="module")
def demo_pop(demo_split):
    return api.train(demo_split, model="pop", train={"progress": False})


@pytest.mark.parametrize("name", [n for n in NAMES if MODELS[n].trainable])
def test_trains_on_demo_data_to_beat_pop(name, demo_split, demo_pop):
    run = api.train(demo_split, model={"name": name, **DEMO.get(name, {})},
                    train={"lr": 2e-3, "batch_size": 128, "patience": 3, "progress": False,
                           "seed": 7, "epochs": DEMO_EPOCHS.get(name, 8)})
    pop = demo_pop.results["test"]["NDCG@10"]
    assert run.results["test"]["NDCG@10"] > 2 * pop, (run.results["test"], pop)


LOSSES = [LossSpec("ce"), LossSpec("bce", num_negatives=4), LossSpec("bpr"),
          LossSpec("sampled_softmax", num_negatives=8, negatives="uniform"),
          LossSpec("sampled_softmax", negatives="in_batch")]


@pytest.mark.parametrize("spec", LOSSES, ids=lambda s: f"{s.name}-{s.negatives}" if s.name == "sampled_softmax"
                         else s.name)
@pytest.mark.parametrize("name", [n for n in NAMES if MODELS[n].trainable])
def test_every_model_trains_with_every_loss(name, spec):
    model = make(name).train()
    rng = np.random.default_rng(0)
    items = rng.integers(1, N + 1, size=60)
    starts = np.array([0, 10, 25, 40])
    batch = make_batch(model, items, starts, np.array([10, 25, 40, 60]), rng=rng)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    generator = torch.Generator().manual_seed(0)
    log_popularity = torch.full((N + 1,), -np.log(N))
    losses = []
    for _ in range(6):
        states = model(batch)
        scored = batch.targets != 0
        loss = compute_loss(spec, states[scored], batch.targets[scored], model.item_embeddings(), model.similarity,
                            log_popularity=log_popularity, generator=generator)
        optimizer.zero_grad()
        loss.backward()
        assert torch.isfinite(loss)
        assert model.item_embeddings().requires_grad
        optimizer.step()
        losses.append(loss.item())
    assert min(losses[3:]) < losses[0], losses                                   # it learns the batch


@pytest.mark.parametrize("name", [n for n in NAMES if MODELS[n].objective != "masked"])
def test_predict_is_the_state_at_the_last_real_position(name):
    """(BERT4Rec predicts from a mask appended after the history instead: tested in test_bert4rec.py.)"""
    model = make(name)
    for items in (histories(), left_align(histories())):
        states = model(CausalBatch(items))
        last = (items != 0).cumsum(1).argmax(1)                                  # last real column
        expected = states[torch.arange(items.shape[0]), last]
        assert torch.allclose(model.predict(items), expected, atol=1e-5)
