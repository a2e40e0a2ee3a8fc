"""Training batches: widths cut to the batch's longest prefix, length-grouped batching, and timestamps carried
from the data through training, evaluation and the recommender for a model that reads them (HSTU's time bias)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import seqrec
from seqrec import api
from seqrec.errors import ConfigError
from seqrec.evaluate.ranking import target_ranks
from seqrec.models import MODELS, build_model
from seqrec.recommend import Recommender, RecommendError
from seqrec.train.objectives import make_batch
from seqrec.train.trainer import Trainer, length_batches

N = 40


def _model(name, **params):
    torch.manual_seed(0)
    base = {"max_len": 12}
    if "dim" in MODELS[name].config_class.model_fields:
        base["dim"] = 16
    return build_model(name, N, {**base, **params})


# ------------------------------------------------------------------------------------------- widths

@pytest.mark.parametrize("name", ["sasrec", "bert4rec", "srgnn", "hstu"])
def test_batch_width_is_the_longest_prefix_and_the_columns_are_the_full_widths_last(name):
    model = _model(name)
    rng = np.random.default_rng(0)
    items = rng.integers(1, N + 1, size=60)
    short = (np.array([0, 10, 14]), np.array([6, 13, 21]))                       # longest 7 items
    batch = make_batch(model, items, *short, rng=np.random.default_rng(1))
    expected = 7 if model.objective == "masked" else 6                           # causal inputs drop the last
    assert batch.items.shape == (3, expected)
    # the same rows with a long neighbour: padded to max_len, the real columns are identical
    long = (np.append(short[0], 21), np.append(short[1], 60))
    full = make_batch(model, items, *long, rng=np.random.default_rng(1))
    assert full.items.shape[1] == model.max_len
    if model.objective != "masked":                                               # masks are random draws
        assert torch.equal(full.items[:3, -expected:], batch.items)
        assert torch.equal(full.targets[:3, -expected:], batch.targets)
        assert int((full.items[:3, :-expected] != 0).sum()) == 0


def test_a_single_item_prefix_still_gives_a_batch():
    model = _model("sasrec")
    batch = make_batch(model, np.array([3, 4, 5]), np.array([0]), np.array([1]))
    assert batch.items.shape == (1, 1) and int(batch.targets.sum()) == 0


# ------------------------------------------------------------------------------------------- length batching

def test_length_batches_cover_every_row_once_and_group_similar_lengths():
    rng = np.random.default_rng(0)
    lengths = rng.integers(1, 200, size=5000)
    order = rng.permutation(5000)
    batches = length_batches(order, lengths, 32, np.random.default_rng(1), pool=8)
    rows = np.concatenate(batches)
    assert np.array_equal(np.sort(rows), np.arange(5000))                        # each row exactly once
    assert sum(b.shape[0] < 32 for b in batches) <= 1                            # only the final remainder
    padded = sum(int(lengths[b].max()) * b.shape[0] for b in batches)
    random_padded = sum(int(lengths[order[i:i + 32]].max()) * 32 for i in range(0, 5000, 32))
    assert padded < 0.65 * random_padded, (padded, random_padded)
    within = [int(lengths[b].max() - lengths[b].min()) for b in batches]
    assert np.median(within) < 25                                                # a pool of 256 rows, sorted
    # the batch order is shuffled: not sorted by length across the epoch
    firsts = [int(lengths[b].min()) for b in batches]
    assert firsts != sorted(firsts)
    again = length_batches(order, lengths, 32, np.random.default_rng(1), pool=8)
    assert all(np.array_equal(a, b) for a, b in zip(batches, again))              # determined by the seed


@pytest.fixture(scope="module")
def demo_split():
    return seqrec.leave_one_out(seqrec.load("demo"))


def test_length_batching_trains_to_the_same_quality(demo_split):
    common = {"model": {"name": "sasrec", "dim": 32, "max_len": 50, "dropout": 0.1},
              "eval": {"ks": [10]}}
    random = api.train(demo_split, **common, train={"epochs": 3, "progress": False, "seed": 2})
    grouped = api.train(demo_split, **common, train={"epochs": 3, "progress": False, "seed": 2,
                                                     "batching": "length"})
    r, g = random.results["test"]["NDCG@10"], grouped.results["test"]["NDCG@10"]
    assert g > 0.8 * r, (g, r)
    assert g != r                          # the same seed: only the batching differs, and it took effect


# ------------------------------------------------------------------------------------------- timestamps

HSTU_TIMED = {"name": "hstu", "dim": 16, "num_heads": 2, "attention_dim": 8, "linear_dim": 8, "max_len": 50,
              "dropout": 0.1, "time_bias": True}


@pytest.fixture(scope="module")
def ml100k_timed_run(tmp_path_factory):
    """(run, run dir, cache) of HSTU with its time bias, 2 epochs on MovieLens-100K (`u.data` has real
    timestamps); the prepared data goes to a private cache."""
    from conftest import _dataset_path

    path = _dataset_path("ml-100k/u.data")
    root = tmp_path_factory.mktemp("hstu-time")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SEQREC_CACHE", str(root / "cache"))
        run = api.train(path, model=HSTU_TIMED, train={"epochs": 2, "progress": False, "seed": 0, "lr": 3e-3},
                        eval={"ks": [10], "exclude_history": True}, out=root / "run")
    return run, root / "run", root / "cache"


def test_time_bias_trains_on_real_timestamps_and_the_evaluator_passes_them(ml100k_timed_run):
    run = ml100k_timed_run[0]
    model, split = run.model, run.split
    assert split.data.has_time and model.inputs == ("items", "times")
    weights = torch.cat([b.bias.time_weight.detach().flatten() for b in model.blocks])
    assert float(weights.abs().sum()) > 0                                         # the time bias was trained
    ranks = target_ranks(model, split.test, exclude_history=True)
    # by hand for some targets: the state from the real times, then the rank among unseen items
    model.eval()
    for row in (0, 7, 500):
        user, position = int(split.test.users[row]), int(split.test.positions[row])
        start = max(int(split.data.offsets[user]), position - model.max_len)
        items = torch.from_numpy(split.data.items[start:position].astype(np.int64))[None]
        times = torch.from_numpy(split.data.times[start:position].astype(np.int64))[None]
        with torch.no_grad():
            scores = model.score(model.predict(items, times))[0]
            shifted = model.score(model.predict(items, times * 3))[0]
        assert not torch.allclose(scores, shifted)                                # the times matter
        target = int(split.data.items[position])
        seen = set(split.data.items[split.data.offsets[user]:position].tolist()) - {target}
        better = [j for j in range(1, model.num_items + 1)
                  if j != target and j not in seen and scores[j] >= scores[target]]
        assert ranks[row] == len(better) + 1


def test_recommender_reads_the_users_timestamps(ml100k_timed_run, monkeypatch):
    _, out, cache = ml100k_timed_run
    monkeypatch.setenv("SEQREC_CACHE", str(cache))
    rec = Recommender.load(out)
    data = rec.data
    user = data.users.decode(np.array([3]))[0]
    answer = rec.recommend(user, k=5)
    start, end = int(data.offsets[3]), int(data.offsets[4])
    start = max(start, end - rec.max_len)
    items = torch.from_numpy(data.items[start:end].astype(np.int64))[None]
    times = torch.from_numpy(data.times[start:end].astype(np.int64))[None]
    with torch.no_grad():
        scores = rec.model.score(rec.model.predict(items, times))[0]
    seen = set(data.items[data.offsets[3]:data.offsets[4]].tolist()) | {0}
    best = [j for j in torch.argsort(scores, descending=True, stable=True).tolist() if j not in seen][:5]
    assert [i for i, _ in answer.items] == data.item_vocab.decode(np.array(best)).tolist()
    history = data.item_vocab.decode(data.items[start:end]).tolist()
    with pytest.raises(RecommendError, match="times"):
        rec.recommend(history=history, k=5)
    timed = rec.recommend(history=history, times=data.times[start:end].tolist(), k=5, exclude_seen=False)
    assert timed.items[0][1] == pytest.approx(float(scores[1:].max()), rel=1e-5)
    with pytest.raises(RecommendError, match="times"):
        rec.recommend(history=history, times=[1, 2], k=5)


def test_time_bias_on_data_without_timestamps_is_a_clear_error(dataset):
    path = dataset("ml-1m-sasrec/ml-1m.txt")
    with pytest.raises(ConfigError, match=r"model 'hstu' reads timestamps \(time_bias: true\), but .* has none "
                                          r"\(only the line order\); set model.time_bias: false"):
        api.train(config=api.make_config(model=HSTU_TIMED, data={"path": str(path), "format": "pairs"},
                                         train={"epochs": 1, "progress": False}))


# ------------------------------------------------------------------------------------------- dropout

def test_dropout_matches_inverted_dropout():
    from seqrec.models.layers.attention import Dropout

    layer = Dropout(0.25)
    x = torch.rand(400, 500) + 0.5
    torch.manual_seed(3)
    y = layer(x)
    dropped = y == 0
    assert abs(float(dropped.float().mean()) - 0.25) < 0.01                     # share of zeros = p
    assert torch.allclose(y[~dropped], x[~dropped] / 0.75)                      # survivors scaled by 1/(1-p)
    torch.manual_seed(3)
    assert torch.equal(layer(x), y)                                              # seeded
    torch.manual_seed(4)
    assert not torch.equal(layer(x), y)                                          # another seed, another mask
    lanes = dropped.flatten().view(-1, 4).float()                                # the four lanes of one draw
    assert (lanes.mean(0) - 0.25).abs().max() < 0.01                             # each lane drops p
    pairs = lanes.T @ lanes / lanes.shape[0]                                     # P(both dropped) per lane pair
    off_diagonal = pairs[~torch.eye(4, dtype=torch.bool)]
    assert (off_diagonal - 0.25 ** 2).abs().max() < 0.01                          # lanes independent
    neighbours = (dropped[:, 1:] & dropped[:, :-1]).float().mean()
    assert abs(float(neighbours) - 0.25 ** 2) < 0.01
    x.requires_grad_(True)
    torch.manual_seed(3)
    layer(x).sum().backward()
    assert torch.allclose(x.grad, (~dropped).float() / 0.75)                     # gradient through the mask
    assert torch.equal(layer.eval()(x), x) and torch.equal(Dropout(0.0)(x), x)


def test_cli_recommend_takes_times_with_items(ml100k_timed_run, monkeypatch, capsys):
    import json

    from seqrec.cli import main

    _, out, cache = ml100k_timed_run
    monkeypatch.setenv("SEQREC_CACHE", str(cache))
    rec = Recommender.load(out)
    data = rec.data
    history = data.item_vocab.decode(data.items[:6]).tolist()
    stamps = data.times[:6].tolist()
    expected = rec.recommend(history=history, times=stamps, k=3)
    capsys.readouterr()
    assert main(["recommend", str(out), "--items", ",".join(map(str, history)),
                 "--times", ",".join(map(str, stamps)), "-k", "3", "--json"]) == 0
    answer = json.loads(capsys.readouterr().out)
    assert [row["item"] for row in answer["items"]] == [item for item, _ in expected.items]
    assert main(["recommend", str(out), "--items", ",".join(map(str, history))]) == 1
    assert "give 'times'" in capsys.readouterr().err
    assert main(["recommend", str(out), "--items", "1,2", "--times", "5,noon"]) == 2
    assert "--times: value 2 ('noon') is not an integer" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------- micro-batches

MICRO = {"sasrec": {"dim": 16, "num_blocks": 1},
         "hstu": {"dim": 16, "num_heads": 2, "attention_dim": 8, "linear_dim": 8},
         "gru4rec": {"dim": 16},
         "nextitnet": {"dim": 16},
         "bert4rec": {"dim": 16, "num_blocks": 1, "last_item_prob": 1.0}}     # masks: the last item, no draws


def _micro_trainer(name: str, micro_batches: int, loss: dict | None = None) -> Trainer:
    config = api.make_config(model={"name": name, "max_len": 50, "dropout": 0.0, **MICRO[name]},
                             loss=loss or {"name": "ce"},
                             train={"progress": False, "batch_size": 40, "seed": 1, "clip_norm": None,
                                    "micro_batches": micro_batches})
    split = api.load_split(config)
    torch.manual_seed(0)
    return Trainer(build_model(name, split.data.num_items, config.model.params), split, config)


@pytest.mark.parametrize("name", list(MICRO))
def test_micro_batches_give_the_whole_batch_step_with_less_padding(name):
    """Without random draws (no dropout; BERT4Rec masking only the last item), a batch cut into 3 length-sorted
    parts gives the whole batch's loss and gradients, and the parts are narrower than the batch."""
    outcomes = []
    for parts in (1, 3):
        trainer = _micro_trainer(name, parts)
        rows = trainer.epoch_batches(1)[0]
        widths: list[tuple[int, int]] = []
        hook = trainer.step_module.register_forward_pre_hook(lambda _, args: widths.append(tuple(args[0].items.shape)))
        loss = trainer._step(rows)
        hook.remove()
        grads = {n: p.grad.clone() for n, p in trainer.model.named_parameters() if p.grad is not None}
        outcomes.append((loss, grads, widths))
    (whole_loss, whole, whole_widths), (loss, grads, widths) = outcomes
    assert len(whole_widths) == 1 and len(widths) == 3
    assert sum(rows for rows, _ in widths) == whole_widths[0][0]                      # every row once
    assert sum(r * w for r, w in widths) < whole_widths[0][0] * whole_widths[0][1]    # less padded work
    assert loss == pytest.approx(whole_loss, rel=1e-5)
    assert grads.keys() == whole.keys() and len(grads) > 3
    for key, grad in whole.items():
        torch.testing.assert_close(grads[key], grad, rtol=1e-4, atol=1e-6, msg=key)


def test_micro_batches_train_to_the_same_quality(demo_split):
    common = {"model": {"name": "sasrec", "dim": 32, "max_len": 50, "dropout": 0.1},
              "loss": {"name": "sampled_softmax", "num_negatives": 32, "shared_negatives": False},
              "eval": {"ks": [10]}}
    whole = api.train(demo_split, **common, train={"epochs": 3, "progress": False, "seed": 2})
    parts = api.train(demo_split, **common, train={"epochs": 3, "progress": False, "seed": 2, "micro_batches": 4})
    w, p = whole.results["test"]["NDCG@10"], parts.results["test"]["NDCG@10"]
    assert p > 0.8 * w, (p, w)
    assert p != w                          # the same seed: the parts drew other dropout masks and negatives


def test_micro_batches_refuse_what_parts_would_change():
    with pytest.raises(ConfigError, match="in_batch"):
        _micro_trainer("sasrec", 2, {"name": "sampled_softmax", "negatives": "in_batch"})
    config = api.make_config(model={"name": "hstu", "dim": 16, "num_heads": 2, "attention_dim": 8, "linear_dim": 8,
                                    "max_len": 20, "similarity": "mol", "mol_gating": "glu_silu",
                                    "mol_balance": 0.001},
                             loss={"name": "sampled_softmax", "num_negatives": 8},
                             train={"progress": False, "micro_batches": 2})
    split = api.load_split(config)
    with pytest.raises(ConfigError, match="mol_balance"):
        Trainer(build_model("hstu", split.data.num_items, config.model.params), split, config)
    _micro_trainer("sasrec", 2, {"name": "sampled_softmax", "negatives": "uniform"})   # uniform negatives: fine
