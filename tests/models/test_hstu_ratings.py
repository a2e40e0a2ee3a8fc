"""HSTU's rating-aware inputs (`inputs: items_ratings | interleaved`): padding invariance and causality of both
variants, ratings carried from the data through `make_batch`, training, evaluation, the recommender, the CLI and
the HTTP service, and the clear errors when ratings are missing."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from pydantic import ValidationError

from seqrec import api
from seqrec.data.batches import CausalBatch, data_side_inputs, rating_ids
from seqrec.errors import ConfigError
from seqrec.evaluate.ranking import target_ranks
from seqrec.models import build_model
from seqrec.recommend import Recommender, RecommendError
from seqrec.train.objectives import make_batch

N = 30
RATED = ("items_ratings", "interleaved")


def hstu(inputs: str = "items", **params):
    torch.manual_seed(0)
    small = {"dim": 16, "num_heads": 2, "attention_dim": 8, "linear_dim": 8, "max_len": 10, "dropout": 0.0,
             "inputs": inputs}
    return build_model("hstu", N, {**small, **params}).eval()


def rows(seed: int = 0, batch: int = 3, length: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    """(items, rating ids), [B, L] each, full rows of real items with ratings 1..5."""
    generator = torch.Generator().manual_seed(seed)
    items = torch.randint(1, N + 1, (batch, length), generator=generator)
    ratings = torch.randint(1, 6, (batch, length), generator=generator)
    return items, ratings


# ------------------------------------------------------------------------------------------- configuration

def test_rating_inputs_announce_themselves_and_size_the_encoder():
    plain = hstu()
    assert plain.inputs == ("items",) and plain.num_ratings == 0 and not hasattr(plain, "ratings")
    joint = hstu("items_ratings", rating_dim=4, num_ratings=7)
    assert joint.inputs == ("items", "ratings") and joint.num_ratings == 7
    assert tuple(joint.ratings.weight.shape) == (8, 4)                            # ids 0..7, rating_dim wide
    assert joint.encoder_len == 10 and joint.blocks[0].scale == 10.0
    mixed = hstu("interleaved")
    assert "ratings" in mixed.inputs and tuple(mixed.ratings.weight.shape) == (6, 16)    # a full token per rating
    # the encoder sees 2 * max_len tokens: positions, relative distances and the attention scale n
    assert mixed.encoder_len == 20 and tuple(mixed.positions.weight.shape) == (20, 16)
    assert mixed.blocks[0].scale == 20.0 and mixed.blocks[0].bias.position_weight.shape == (20,)
    items, ratings = rows(length=10)                                              # a full max_len window
    assert mixed(CausalBatch(items, ratings=ratings)).shape == (3, 10, 16)
    with pytest.raises(ValidationError, match="rating_dim"):
        hstu("items_ratings", rating_dim=16)
    with pytest.raises(ValueError, match="ratings"):
        mixed(CausalBatch(items))                                                 # no ratings in the batch


def test_rating_ids_round_half_up_and_clamp():
    values = np.array([0.0, 0.4, 0.5, 1.0, 2.5, 3.49, 4.5, 5.0, 7.0, np.nan], dtype=np.float32)
    assert rating_ids(values, 5).tolist() == [1, 1, 1, 1, 3, 3, 5, 5, 5, 0]
    assert rating_ids(values, 10).tolist() == [1, 1, 1, 1, 3, 3, 5, 5, 7, 0]


# ------------------------------------------------------------------------------------------- padding, causality

@pytest.mark.parametrize("time_bias", [False, True])
@pytest.mark.parametrize("inputs", RATED)
def test_rating_inputs_are_padding_invariant(inputs, time_bias):
    model = hstu(inputs, time_bias=time_bias)
    items, ratings = rows(length=6)
    times = torch.arange(6).repeat(3, 1) * 1000 + 7
    pad = torch.zeros(3, 3, dtype=torch.int64)
    right = model(CausalBatch(torch.cat([pad, items], 1), times=torch.cat([pad, times], 1),
                              ratings=torch.cat([pad, ratings], 1)))              # [B, 9, D]
    left = model(CausalBatch(torch.cat([items, pad], 1), times=torch.cat([times, pad], 1),
                             ratings=torch.cat([ratings, pad], 1)))
    bare = model(CausalBatch(items, times=times, ratings=ratings))
    assert torch.allclose(right[:, 3:], bare, atol=1e-5) and torch.allclose(left[:, :6], bare, atol=1e-5)
    assert torch.equal(right[:, :3], torch.zeros_like(right[:, :3]))              # padding outputs are zero
    # a rating stored at a padded position is ignored: padded items pad their rating tokens too
    noisy = model(CausalBatch(torch.cat([pad, items], 1), times=torch.cat([pad, times], 1),
                              ratings=torch.cat([pad + 4, ratings], 1)))
    assert torch.allclose(noisy, right, atol=1e-6)
    assert torch.allclose(model.predict(torch.cat([items, pad], 1), torch.cat([times, pad], 1),
                                        ratings=torch.cat([ratings, pad], 1)), bare[:, -1], atol=1e-5)


@pytest.mark.parametrize("inputs", RATED)
def test_no_future_leakage_from_later_items_or_ratings(inputs):
    model = hstu(inputs)
    items, ratings = rows(length=8)
    base = model(CausalBatch(items, ratings=ratings))
    t = 4
    later_items, later_ratings = items.clone(), ratings.clone()
    later_items[:, t + 1:] = (later_items[:, t + 1:] % N) + 1                     # other later items
    later_ratings[:, t + 1:] = 6 - later_ratings[:, t + 1:]                       # other later ratings
    for changed in (model(CausalBatch(later_items, ratings=ratings)), model(CausalBatch(items, ratings=later_ratings))):
        assert torch.allclose(changed[:, :t + 1], base[:, :t + 1], atol=1e-6)     # states up to t unchanged
        assert not torch.allclose(changed[:, t + 1:], base[:, t + 1:], atol=1e-4)  # later ones do change
    # the state at t has read item t's own rating (interleaved: the rating token t follows item t)
    own = ratings.clone()
    own[:, t] = 6 - own[:, t]
    own[:, t] = torch.where(own[:, t] == ratings[:, t], 1, own[:, t])             # 3 -> 1: a different rating
    changed = model(CausalBatch(items, ratings=own))
    assert torch.allclose(changed[:, :t], base[:, :t], atol=1e-6)
    assert not torch.allclose(changed[:, t], base[:, t], atol=1e-4)


def test_interleaved_state_reads_rating_t_but_not_item_t_plus_one_token_by_token():
    """Gradients of the state at item t with respect to the interleaved input tokens: nonzero for
    item_1..item_t and rating_1..rating_t, zero for item_t+1 (the next token) and everything after."""
    model = hstu("interleaved")
    items, ratings = rows(batch=1, length=6)
    tokens = model.embed(items, ratings).detach().requires_grad_(True)              # [1, 12, D] i1 r1 i2 r2 ...
    original = model.embed
    model.embed = lambda *_: tokens                                                 # feed the tokens directly
    try:
        states = model(CausalBatch(items, ratings=ratings))                         # [1, 6, D]
    finally:
        model.embed = original
    t = 2
    states[0, t].sum().backward()
    reach = tokens.grad[0].abs().sum(-1)                                            # [12]
    assert bool((reach[:2 * t + 2] > 0).all())                                      # i1 r1 .. i_t r_t (0-based)
    assert float(reach[2 * t + 2:].abs().max()) == 0.0                              # item t + 1 onwards


@pytest.mark.parametrize("inputs", RATED)
def test_ratings_change_the_outputs(inputs):
    model = hstu(inputs)
    items, ratings = rows()
    a = model.predict(items, ratings=ratings)
    b = model.predict(items, ratings=6 - ratings)
    assert not torch.allclose(a, b, atol=1e-4)
    assert torch.equal(model.predict(items, None, ratings=ratings), a)              # times positional, ratings kw


# ------------------------------------------------------------------------------------------- make_batch

@pytest.mark.parametrize("align", ["right", "left"])
def test_make_batch_carries_rating_ids_only_for_models_that_use_them(align):
    rng = np.random.default_rng(0)
    items = rng.integers(1, N + 1, size=40)
    raw = rng.choice(np.array([0.5, 1, 2, 2.5, 3, 4, 5, 6], dtype=np.float32), size=40)
    starts, ends = np.array([0, 5, 20]), np.array([4, 18, 40])
    for inputs in RATED:
        batch = make_batch(hstu(inputs), items, starts, ends, align=align, side={"ratings": raw})
        assert batch.ratings.dtype == torch.int64 and batch.ratings.shape == batch.items.shape
        real = batch.items != 0
        assert int(batch.ratings[~real].abs().sum()) == 0                           # 0 at padding
        assert int(batch.ratings[real].min()) >= 1 and int(batch.ratings[real].max()) <= 5
        # every real input's rating id is its own item's rating, rounded half up and clamped
        for r in range(3):
            window = slice(max(starts[r], ends[r] - 1 - batch.items.shape[1]), ends[r] - 1)
            expected = np.clip(np.floor(raw[window] + 0.5), 1, 5).astype(np.int64)
            assert batch.ratings[r][real[r]].tolist() == expected.tolist()
            assert batch.items[r][real[r]].tolist() == items[window].tolist()
    assert make_batch(hstu(), items, starts, ends, side={"ratings": raw}).ratings is None
    sasrec = build_model("sasrec", N, {"max_len": 10})
    assert make_batch(sasrec, items, starts, ends, side={"ratings": raw}).ratings is None
    assert make_batch(hstu("interleaved"), items, starts, ends).ratings is None      # no CSR ratings given


def test_data_without_ratings_is_refused_before_training():
    import seqrec

    data = seqrec.load("demo")                                                       # items and times only
    assert data.ratings is None
    with pytest.raises(ConfigError, match=r"model 'hstu' reads ratings \(inputs: interleaved\), but .* has none; "
                                          r"set model.inputs: items"):
        data_side_inputs(hstu("interleaved"), data)
    assert data_side_inputs(hstu(), data) == {}
    assert set(data_side_inputs(hstu(time_bias=True), data)) == {"times"}


def test_rating_inputs_on_a_pairs_file_are_a_clear_error(dataset):
    path = dataset("ml-1m-sasrec/ml-1m.txt")
    with pytest.raises(ConfigError, match="reads ratings"):
        api.train(config=api.make_config(model={"name": "hstu", "dim": 16, "max_len": 20, "inputs": "interleaved"},
                                         data={"path": str(path), "format": "pairs"},
                                         train={"epochs": 1, "progress": False}))


# ------------------------------------------------------------------------------------------- ML-100K

RATED_HSTU = {"name": "hstu", "dim": 16, "num_blocks": 1, "num_heads": 2, "attention_dim": 8, "linear_dim": 8,
              "max_len": 30, "dropout": 0.1, "inputs": "interleaved", "time_bias": True}


@pytest.fixture(scope="module")
def ml100k_rated_run(tmp_path_factory):
    """(run, run dir, cache) of an interleaved item/rating HSTU with its time bias, 2 epochs on MovieLens-100K
    (`u.data` has 1-5 star ratings and real timestamps); the prepared data goes to a private cache."""
    from conftest import _dataset_path

    path = _dataset_path("ml-100k/u.data")
    root = tmp_path_factory.mktemp("hstu-ratings")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SEQREC_CACHE", str(root / "cache"))
        run = api.train(path, model=RATED_HSTU, train={"epochs": 2, "progress": False, "seed": 0, "lr": 3e-3},
                        eval={"ks": [10], "exclude_history": True}, out=root / "run")
    return run, root / "run", root / "cache"


def _window(data, user: int, end: int, max_len: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(items, times, rating ids) [1, <= max_len] of a user's history before `end`, by hand."""
    start = max(int(data.offsets[user]), end - max_len)
    items = torch.from_numpy(data.items[start:end].astype(np.int64))[None]
    times = torch.from_numpy(data.times[start:end].astype(np.int64))[None]
    ratings = torch.from_numpy(np.rint(data.ratings[start:end]).astype(np.int64))[None]   # 1..5 stars already
    return items, times, ratings


def test_interleaved_ratings_train_on_ml100k_and_the_evaluator_passes_them(ml100k_rated_run):
    run = ml100k_rated_run[0]
    model, split = run.model, run.split
    assert model.inputs == ("items", "times", "ratings") and split.data.ratings is not None
    assert set(np.unique(split.data.ratings).tolist()) == {1.0, 2.0, 3.0, 4.0, 5.0}
    assert float(model.ratings.weight[1:].detach().abs().sum()) > 0                 # the rating table trained
    assert np.isfinite(run.results["test"]["NDCG@10"]) and run.results["test"]["HR@10"] > 0
    ranks = target_ranks(model, split.test, exclude_history=True)
    model.eval()
    for row in (0, 11, 600):                                                        # by hand for some targets
        user, position = int(split.test.users[row]), int(split.test.positions[row])
        items, times, ratings = _window(split.data, user, position, model.max_len)
        with torch.no_grad():
            scores = model.score(model.predict(items, times, ratings=ratings))[0]
            other = model.score(model.predict(items, times, ratings=6 - ratings))[0]
        assert not torch.allclose(scores, other)                                     # the ratings matter
        target = int(split.data.items[position])
        seen = set(split.data.items[split.data.offsets[user]:position].tolist()) - {target}
        better = [j for j in range(1, model.num_items + 1)
                  if j != target and j not in seen and scores[j] >= scores[target]]
        assert ranks[row] == len(better) + 1


def test_items_ratings_trains_on_ml100k(tmp_path, monkeypatch, dataset):
    monkeypatch.setenv("SEQREC_CACHE", str(tmp_path / "cache"))
    model = {**RATED_HSTU, "inputs": "items_ratings", "rating_dim": 4, "time_bias": False, "max_len": 20}
    run = api.train(dataset("ml-100k/u.data"), model=model, train={"epochs": 1, "progress": False, "seed": 1,
                                                                   "lr": 3e-3}, eval={"ks": [10]})
    assert "ratings" in run.model.inputs and run.results["test"]["HR@10"] > 0
    assert float(run.model.ratings.weight[1:].detach().abs().sum()) > 0


def test_recommender_reads_the_users_ratings_and_needs_them_for_raw_histories(ml100k_rated_run, monkeypatch):
    _, out, cache = ml100k_rated_run
    monkeypatch.setenv("SEQREC_CACHE", str(cache))
    rec = Recommender.load(out)
    data = rec.data
    assert "ratings" in rec.model.inputs
    user = data.users.decode(np.array([5]))[0]
    answer = rec.recommend(user, k=5)
    end = int(data.offsets[6])
    items, times, ratings = _window(data, 5, end, rec.max_len)
    with torch.no_grad():
        scores = rec.model.score(rec.model.predict(items, times, ratings=ratings))[0]
    seen = set(data.items[data.offsets[5]:end].tolist()) | {0}
    best = [j for j in torch.argsort(scores, descending=True, stable=True).tolist() if j not in seen][:5]
    assert [i for i, _ in answer.items] == data.item_vocab.decode(np.array(best)).tolist()
    history = data.item_vocab.decode(items[0].numpy()).tolist()
    stamps = times[0].tolist()
    with pytest.raises(RecommendError, match="ratings") as missing:
        rec.recommend(history=history, times=stamps, k=5)
    assert missing.value.field == "ratings"
    rated = rec.recommend(history=history, times=stamps, ratings=ratings[0].tolist(), k=5, exclude_seen=False)
    assert rated.items[0][1] == pytest.approx(float(scores[1:].max()), rel=1e-5)
    half = rec.recommend(history=history, times=stamps, ratings=(ratings[0] - 0.4).tolist(), k=5,
                         exclude_seen=False)                                        # rounded as in training
    assert half.items == rated.items
    for bad in ([4, 5], [4.0] * (len(history) - 1) + [float("nan")], ["5"] * len(history)):
        with pytest.raises(RecommendError, match="ratings"):
            rec.recommend(history=history, times=stamps, ratings=bad, k=5)
    with pytest.raises(RecommendError, match="raw history"):
        rec.recommend(user, ratings=[5], k=5)
    table = rec.recommend_batch(histories=[history, history[:4]], times=[stamps, stamps[:4]],
                                ratings=[ratings[0].tolist(), ratings[0, :4].tolist()], k=5, exclude_seen=False)
    assert table.filter(table["query"] == 0)["item"].to_list() == [i for i, _ in rated.items]
    with pytest.raises(RecommendError, match="ratings"):
        rec.recommend_batch(histories=[history], times=[stamps], k=5)


def test_cli_recommend_takes_ratings_with_items(ml100k_rated_run, monkeypatch, capsys):
    from seqrec.cli import main

    _, out, cache = ml100k_rated_run
    monkeypatch.setenv("SEQREC_CACHE", str(cache))
    rec = Recommender.load(out)
    data = rec.data
    history = data.item_vocab.decode(data.items[:6]).tolist()
    stamps, stars = data.times[:6].tolist(), data.ratings[:6].tolist()
    expected = rec.recommend(history=history, times=stamps, ratings=stars, k=3)
    capsys.readouterr()
    ids = ",".join(map(str, history))
    assert main(["recommend", str(out), "--items", ids, "--times", ",".join(map(str, stamps)),
                 "--ratings", ",".join(map(str, stars)), "-k", "3", "--json"]) == 0
    answer = json.loads(capsys.readouterr().out)
    assert [row["item"] for row in answer["items"]] == [item for item, _ in expected.items]
    assert main(["recommend", str(out), "--items", ids, "--times", ",".join(map(str, stamps))]) == 1
    assert "give 'ratings'" in capsys.readouterr().err
    assert main(["recommend", str(out), "--items", "1,2", "--times", "1,2", "--ratings", "4,good"]) == 2
    assert "--ratings: value 2 ('good') is not a number" in capsys.readouterr().err
    assert main(["recommend", str(out), "--user", "1", "--ratings", "4"]) == 2


def test_service_takes_the_ratings_field(ml100k_rated_run):
    from test_serve import request, start_server

    _, out, cache = ml100k_rated_run
    rec = Recommender.load(out)
    data = rec.data
    history = data.item_vocab.decode(data.items[:6]).tolist()
    stamps, stars = data.times[:6].tolist(), data.ratings[:6].tolist()
    expected = rec.recommend(history=history, times=stamps, ratings=stars, k=4)
    proc, base = start_server(out, cache)
    try:
        status, body = request(base, "/recommend", {"history": history, "times": stamps, "ratings": stars, "k": 4})
        assert status == 200 and [row["item"] for row in body["items"]] == [item for item, _ in expected.items]
        status, body = request(base, "/recommend", {"history": history, "times": stamps, "k": 4})
        assert status == 422 and body["field"] == "ratings"
        status, body = request(base, "/recommend", {"history": history, "times": stamps, "ratings": ["x"] * 6})
        assert status == 422 and body["field"] == "ratings" and "a rating must be a number" in body["error"]
        status, body = request(base, "/recommend", {"user": int(data.users.decode(np.array([0]))[0]), "k": 4})
        assert status == 200 and len(body["items"]) == 4                              # a user's come from the data
    finally:
        proc.terminate()
        proc.wait(timeout=30)
