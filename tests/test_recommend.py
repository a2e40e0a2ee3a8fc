"""Recommendations from a trained run: Python API (Recommender), CLI `seqrec recommend`, exact chunked top-k."""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import polars as pl
import pytest
import torch

from seqrec.cli import main
from seqrec.errors import DataError
from seqrec.recommend import Recommender, RecommendError, read_titles
from seqrec.train.checkpoint import CheckpointError


@pytest.fixture(scope="module")
def run_dir(demo_run, monkeypatch_module):
    return demo_run[0]


@pytest.fixture(scope="module")
def monkeypatch_module(demo_run):
    """The run's data cache for every test of this module (Recommender.load reloads the data through it)."""
    mp = pytest.MonkeyPatch()
    mp.setenv("SEQREC_CACHE", str(demo_run[1]))
    yield mp
    mp.undo()


@pytest.fixture(scope="module")
def rec(run_dir):
    return Recommender.load(run_dir)


def brute_force(rec: Recommender, history_dense: np.ndarray, k: int, exclude: set[int]) -> list[int]:
    """Reference: score every item for one history, drop padding and excluded items, sort (ties: lower id)."""
    window = torch.from_numpy(history_dense[-rec.max_len:][None].astype(np.int64))
    with torch.inference_mode():
        scores = rec.model.score(rec.model.predict(window))[0].numpy()
    order = sorted((i for i in range(1, rec.num_items + 1) if i not in exclude), key=lambda i: (-scores[i], i))
    return order[:k]


def test_user_recommendations_equal_a_brute_force_ranking(rec):
    data = rec.data
    for u in (0, 7, 123):
        user = data.users.decode(np.array([u]))[0].item()
        seen = data.sequence(u).astype(np.int64)
        got = rec.recommend(user, k=10)
        expected = brute_force(rec, seen, 10, set(seen.tolist()))
        assert data.item_vocab.encode([item for item, _ in got.items]).tolist() == expected
        assert not set(seen.tolist()) & set(data.item_vocab.encode([i for i, _ in got.items]).tolist())
        assert got.history_length == seen.size and got.used_length == min(seen.size, rec.max_len)
        included = rec.recommend(user, k=10, exclude_seen=False)
        assert data.item_vocab.encode([i for i, _ in included.items]).tolist() == brute_force(rec, seen, 10, set())


def test_chunked_topk_equals_unchunked(rec):
    histories = [rec.data.sequence(u).astype(np.int64) for u in range(40)]
    states = rec.states(histories)
    from seqrec.scoring import exclusion_pairs
    excluded = exclusion_pairs(histories, [None] * len(histories))
    ids, scores = rec.topk(states, 25, excluded)
    small = Recommender(rec.model, rec.data, max_block=40 * 7)               # 7 items per chunk
    ids_c, scores_c = small.topk(small.states(histories), 25, excluded)
    assert torch.equal(ids, ids_c)
    assert torch.allclose(scores, scores_c)


def test_batched_answers_equal_single_answers_and_padding_does_not_matter(rec):
    users = rec.data.users.decode(np.arange(30))
    single = [rec.recommend(u.item(), k=5).items for u in users]
    queries = [rec.query(user=u.item(), k=5)[0] for u in users]
    batched = [a.items for a in rec.recommend_many(queries)]
    for one, many in zip(single, batched):
        assert [i for i, _ in one] == [i for i, _ in many]
        assert np.allclose([s for _, s in one], [s for _, s in many], atol=1e-5)


def test_raw_history_allow_deny_and_truncation(rec):
    data = rec.data
    history = data.item_vocab.decode(data.sequence(5)[-4:]).tolist()
    top = rec.recommend(history=history, k=5)
    assert not set(history) & {i for i, _ in top.items}
    denied = rec.recommend(history=history, k=5, deny=[top.items[0][0]])
    assert top.items[0][0] not in {i for i, _ in denied.items}
    assert [i for i, _ in denied.items[:4]] == [i for i, _ in top.items[1:5]]
    allowed = data.item_vocab.decode(np.arange(1, 12)).tolist()
    only = rec.recommend(history=history, k=20, allow=allowed, exclude_seen=False)
    assert {i for i, _ in only.items} == set(allowed) and len(only.items) == 11
    scores = [s for _, s in only.items]
    assert scores == sorted(scores, reverse=True)
    long = data.item_vocab.decode(np.resize(data.sequence(5), 3 * rec.max_len)).tolist()
    answer = rec.recommend(history=long, k=3)
    assert answer.truncated and answer.used_length == rec.max_len and answer.history_length == len(long)
    recent = rec.recommend(history=long[-rec.max_len:], k=3, exclude_seen=False)
    full = rec.recommend(history=long, k=3, exclude_seen=False)
    assert recent.items == full.items                                        # only the last max_len are read


def test_bad_requests_name_the_problem(rec):
    with pytest.raises(RecommendError, match="unknown user 'nobody'") as info:
        rec.recommend("nobody")
    assert info.value.status == 404
    with pytest.raises(DataError, match=r"unknown item id\(s\) in history: 999999999"):
        rec.recommend(history=[999999999, "x"][:1])
    with pytest.raises(RecommendError, match="empty"):
        rec.recommend(history=[])
    with pytest.raises(RecommendError, match="no known item"):
        rec.recommend(history=[999999999], ignore_unknown=True)
    with pytest.raises(RecommendError, match="k must be a positive integer"):
        rec.recommend(history=[rec.data.item_vocab.raw[0].item()], k=0)
    with pytest.raises(RecommendError, match="exactly one"):
        rec.recommend()
    known = rec.data.item_vocab.raw[0].item()
    answer = rec.recommend(history=[known, 999999999, "abc"], ignore_unknown=True, k=3)
    assert answer.ignored == [999999999, "abc"] and answer.history_length == 1


def test_recommend_batch_for_every_user_matches_single_answers(rec):
    table = rec.recommend_batch(k=10)
    assert table.columns == ["query", "rank", "item", "score"]
    assert table.height == 10 * rec.data.num_users
    for u in (0, 999, 1999):
        user = rec.data.users.decode(np.array([u]))[0].item()
        rows = table.filter(pl.col("query") == user).sort("rank")
        assert rows["item"].to_list() == [i for i, _ in rec.recommend(user, k=10).items]
    histories = rec.recommend_batch(histories=[rec.data.item_vocab.raw[:3].tolist()], k=4)
    assert histories["query"].to_list() == [0, 0, 0, 0]


def test_pickle_payload_checkpoint_is_refused(run_dir, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {tmp_path / 'pwned'}",))

    torch.save({"state_dict": Payload()}, copy / "checkpoints" / "best.pt")
    with pytest.raises(CheckpointError, match="refused"):
        Recommender.load(copy)
    assert not (tmp_path / "pwned").exists()


def test_cli_recommend_user_items_json_titles_and_users_file(run_dir, tmp_path, capsys):
    rec = Recommender.load(run_dir)
    user = rec.data.users.decode(np.array([3]))[0].item()
    expected = [i for i, _ in rec.recommend(user, k=4).items]
    assert main(["recommend", str(run_dir), "--user", str(user), "-k", "4", "--json"]) == 0
    answer = json.loads(capsys.readouterr().out)
    assert [row["item"] for row in answer["items"]] == expected and [r["rank"] for r in answer["items"]] == [1, 2, 3, 4]

    titles = tmp_path / "movies.dat"
    titles.write_bytes("".join(f"{i}::Film {i} (Caf\xe9)::Drama\n" for i in rec.data.item_vocab.raw.tolist())
                       .encode("latin-1"))
    history = ",".join(map(str, rec.data.item_vocab.raw[:3].tolist()))
    assert main(["recommend", str(run_dir), "--items", history, "-k", "3", "--titles", str(titles)]) == 0
    out = capsys.readouterr().out
    assert "top-3 for a history of 3 items" in out and "Film" in out and "Café" in out
    assert read_titles(titles)[str(expected[0])] == f"Film {expected[0]} (Café)"

    users = tmp_path / "users.txt"
    users.write_text(f"{user}\n{rec.data.users.raw[0].item()}\n")
    target = tmp_path / "out.parquet"
    assert main(["recommend", str(run_dir), "--users-file", str(users), "-k", "4", "-o", str(target)]) == 0
    table = pl.read_parquet(target)
    assert table.columns == ["user", "rank", "item", "score"] and table.height == 8
    assert table.filter(pl.col("user") == user).sort("rank")["item"].to_list() == expected

    assert main(["recommend", str(run_dir), "--user", "nobody"]) == 1
    assert "unknown user 'nobody'" in capsys.readouterr().err
    assert main(["recommend", str(run_dir), "--items", "1,999999999"]) == 1
    assert "999999999" in capsys.readouterr().err


def test_approximate_search_finds_nearly_the_exact_top_k(run_dir):
    pytest.importorskip("faiss")
    exact = Recommender.load(run_dir)
    approx = Recommender.load(run_dir, ann=True)
    assert approx.describe()["search"]["kind"] == "hnsw"
    users = exact.data.users.decode(np.arange(300))
    hits = total = 0
    for user in users:
        want = [i for i, _ in exact.recommend(user.item(), k=10, exclude_seen=False).items]
        got = approx.recommend(user.item(), k=10, exclude_seen=False)
        assert len(got.items) == 10
        scores = [s for _, s in got.items]
        assert scores == sorted(scores, reverse=True)
        hits += len(set(want) & {i for i, _ in got.items})
        total += 10
    assert hits / total > 0.95                                               # recall@10 against exact
    # excluded items never come back, whichever search answers
    history = exact.data.item_vocab.decode(exact.data.sequence(3)[-5:]).tolist()
    got = approx.recommend(history=history, k=10, deny=[history[0]])
    assert not set(history) & {i for i, _ in got.items} and len(got.items) == 10


@pytest.mark.parametrize("bad", [1.5, True, 2.0, np.float32(3), np.bool_(False)])
def test_a_history_of_floats_or_bools_is_refused_not_rounded(rec, bad):
    real = rec.data.item_vocab.raw[:2].tolist()
    with pytest.raises(RecommendError, match=r"history\[1\]: .* is not an item id"):
        rec.recommend(history=[real[0], bad], k=5)
    with pytest.raises(RecommendError, match="is not an item id"):
        rec.recommend(history=[bad], k=5, ignore_unknown=True)
    assert len(rec.recommend(history=real, k=5).items) == 5            # integers (and their strings) still work
    assert rec.recommend(history=[str(v) for v in real], k=5).items == rec.recommend(history=real, k=5).items


def test_titles_are_joined_through_the_ids_the_run_was_trained_on(dataset, tmp_path, capsys, monkeypatch):
    """The README example on the real SASRec ML-1M copy: its ids are SASRec's renumbering (SAS 1193 is
    MovieLens 1982, Halloween), mapped by the sas_to_original_items.txt beside it."""
    from seqrec import api
    from seqrec.recommend import item_titles, read_item_map

    data_file, movies = dataset("ml-1m-sasrec/ml-1m.txt"), dataset("ml-1m/movies.dat")
    sas_map = dataset("ml-1m-sasrec/sas_to_original_items.txt")
    monkeypatch.setenv("SEQREC_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "run"
    api.train(str(data_file), model="pop", train={"progress": False}, out=out)        # seconds: a popularity run
    rec = Recommender.load(out)
    titles, how = item_titles(rec, movies)
    assert titles["1193"] == "Halloween (1978)" != read_titles(movies)["1193"]  # One Flew Over the Cuckoo's Nest
    assert str(sas_map) in how and "3416 of 3416 items" in how
    mapping = read_item_map(sas_map)
    originals = read_titles(movies)

    assert main(["recommend", str(out), "--items", "1193,661,914", "--titles", str(movies), "-k", "3416",
                 "--include-seen", "--json"]) == 0
    captured = capsys.readouterr()
    rows = json.loads(captured.out)["items"]
    assert len(rows) == 3416 and "sas_to_original_items.txt" in captured.err
    assert {row["item"]: row["title"] for row in rows}[1193] == "Halloween (1978)"
    assert all(row["title"] == originals[mapping[str(row["item"])]] for row in rows)

    # the same file without its map beside it: refused, not joined on the wrong ids ...
    bare = tmp_path / "bare" / "ml-1m.txt"
    bare.parent.mkdir()
    shutil.copy(data_file, bare)
    moved = Recommender(rec.model, rec.data, config=rec.config.model_copy(
        update={"data": rec.config.data.model_copy(update={"path": str(bare)})}))
    with pytest.raises(DataError, match=r"item ids are usually a preprocessing's renumbering.*--item-map"):
        item_titles(moved, movies)
    # ... unless the map is named, or the ids are declared the same
    assert item_titles(moved, movies, sas_map)[0]["1193"] == "Halloween (1978)"
    assert item_titles(moved, movies, "identity")[0]["1193"].startswith("One Flew Over")
    with pytest.raises(DataError, match="has no run config"):
        item_titles(Recommender(rec.model, rec.data), movies)
    # a map that is not one, and metadata that shares no id with the run, are named
    broken = tmp_path / "broken_map.txt"
    broken.write_text("1 1198\n2 3552 7\n")
    with pytest.raises(DataError, match=r"broken_map.txt:2: expected 'run_id original_id'"):
        item_titles(rec, movies, broken)
    other = tmp_path / "other.csv"
    other.write_text("item,title\nx1,Nothing\n")
    with pytest.raises(DataError, match="none of the run's 3416 item ids has a title"):
        item_titles(rec, other, "identity")
    assert main(["recommend", str(out), "--items", "1", "--item-map", str(sas_map)]) == 2     # needs --titles


ARABIC, FULLWIDTH = str.maketrans("0123456789", "٠١٢٣٤٥٦٧٨٩"), str.maketrans("0123456789", "０１２３４５６７８９")


@pytest.mark.parametrize("spell", [lambda i: f"{str(i)[:-1]}_{str(i)[-1]}", lambda i: str(i).translate(ARABIC),
                                   lambda i: str(i).translate(FULLWIDTH), lambda i: f"{i}.0", lambda i: hex(i)],
                         ids=["underscore", "arabic-indic", "fullwidth", "decimal", "hex"])
def test_item_ids_as_text_are_plain_ascii_integers_or_unknown(rec, spell):
    """Regression (fuzzing): numpy's int() read "100_7" as 1007 and "١٠٠٧" as 1007, so a history of text that is
    no id in the file answered as if it held item 1007."""
    real = rec.data.item_vocab.raw[:3].tolist()
    shown = spell(real[0])
    assert rec.data.item_vocab.raw.dtype.kind == "i"
    with pytest.raises(RecommendError, match="unknown item id"):
        rec.recommend(history=[real[1], shown], k=3)
    answer = rec.recommend(history=[real[1], shown], k=3, ignore_unknown=True)
    assert answer.ignored == [shown] and answer.history_length == 1
    assert rec.recommend(history=[f" {real[1]} ", f"+{real[2]}"], k=3).history_length == 2


def test_integers_beyond_int64_are_unknown_not_an_overflow(rec):
    """Regression (fuzzing): 2**64 raised OverflowError (a 500 in the service); [id, 2**63] went through float64."""
    real = rec.data.item_vocab.raw[:2].tolist()
    for huge in (2 ** 64, 2 ** 63, -2 ** 63 - 1, 10 ** 30):
        with pytest.raises(RecommendError, match=f"unknown item id.*{huge}"):
            rec.recommend(history=[real[0], huge], k=3)
        assert rec.recommend(history=[real[0], huge], k=3, ignore_unknown=True).ignored == [huge]
        assert rec.recommend(history=real, k=3, deny=[huge]).items == rec.recommend(history=real, k=3).items
        with pytest.raises(RecommendError, match="unknown user"):
            rec.recommend(huge, k=3)


@pytest.mark.parametrize("bad", [True, np.bool_(True), 1.0, np.float64(2)])
def test_bool_or_float_users_are_refused_not_taken_for_another_user(rec, bad):
    """Regression (fuzzing): user=True answered for user 1, user=1.0 for user 1."""
    with pytest.raises(RecommendError, match="is not a user id") as caught:
        rec.recommend(bad, k=3)
    assert caught.value.field == "user" and caught.value.status == 422
    with pytest.raises(RecommendError, match="unknown user"):
        rec.recommend_batch([rec.data.users.raw[0].item(), bad], k=3)


def test_read_user_ids_parses_csv_quoting_and_names_a_short_line(tmp_path):
    from seqrec.errors import DataError
    from seqrec.recommend import read_user_ids

    users = tmp_path / "users.csv"
    users.write_text('name,user\n"Doe, Jane","u,1"\nx,u2\n')
    assert read_user_ids(users) == ["u,1", "u2"]                               # was ['1"', 'u2']: split by hand
    users.write_text("name,user\nx,u2\nonly-a-name\n")
    with pytest.raises(DataError, match=r"users.csv:3: too few fields") as error:   # seqrec.data.sidefiles
        read_user_ids(users)
    assert "only-a-name" in str(error.value)
