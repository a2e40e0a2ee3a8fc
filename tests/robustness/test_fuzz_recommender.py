"""Random histories, k, allow / deny lists and users into `Recommender`, against a brute-force reference.

Property: an accepted request answers with a true top-k of the candidates (every item 1..N, or the known ones
of `allow`; minus the history when `exclude_seen`, minus `deny`), scored as the model scores them; a refused one
raises `RecommendError` (a `SeqrecError`). bool and float ids, numbers that are no integer id (`"7_0"`, `"٣"`,
2**70) and bool users are refused or unknown, never taken for another id.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from fuzzing import fuzz
from hypothesis import event, given
from hypothesis import strategies as st

from seqrec.recommend import Recommender, RecommendError


@pytest.fixture(scope="module")
def rec(demo_run):
    mp = pytest.MonkeyPatch()
    mp.setenv("SEQREC_CACHE", str(demo_run[1]))
    yield Recommender.load(demo_run[0])
    mp.undo()


@pytest.fixture(scope="module")
def scores_of(rec):
    """Reference scores of every item after a dense history: the model's own full forward, one history at a time."""
    def scores(dense: list[int]) -> np.ndarray:
        window = torch.tensor([dense[-rec.max_len:]], dtype=torch.int64)
        with torch.inference_mode():
            return rec.model.score(rec.model.predict(window))[0].float().numpy()
    return scores


def item_ids(known: list[int]):
    """One raw item id as a client might send it: mostly known (int, numpy int, text), sometimes unknown or
    not an id at all."""
    weird = st.one_of(
        st.integers(-10, 10 ** 6),                              # mostly unknown ints
        st.integers(2 ** 62, 2 ** 70),                          # beyond int64 for part of them
        st.sampled_from(known).map(lambda i: f"{str(i)[:-1]}_{str(i)[-1]}"),   # int() reads "100_7" as 1007
        st.sampled_from(["٣", "１２", " 7", "+7", "7.0", "1e3", "", "zz", "None"]),
        st.floats(allow_nan=True), st.booleans(), st.none(),
        st.sampled_from(known).map(float),
    )
    return st.one_of(st.sampled_from(known), st.sampled_from(known), st.sampled_from(known).map(np.int64),
                     st.sampled_from(known).map(str), st.sampled_from(known), st.sampled_from(known), weird)


def expected_kind(rec: Recommender, value):
    """The known dense id a raw value must resolve to; None when unknown; 'refuse' for a non-id type."""
    if isinstance(value, (bool, float, np.bool_, np.floating)):
        return "refuse"
    raw = rec.data.item_vocab.raw
    text = value.strip() if isinstance(value, str) else ""
    if isinstance(value, (int, np.integer)) or (text[1:] if text[:1] in "+-" else text).isdigit() and text.isascii():
        number = int(value)
    else:
        return None
    where = np.flatnonzero(raw == number) if -2 ** 63 <= number < 2 ** 63 else []
    return int(where[0]) + 1 if len(where) else None


@fuzz(600)
@given(data=st.data())
def test_random_requests_are_answered_right_or_refused(rec, scores_of, data):
    known = rec.data.item_vocab.raw[:60].tolist() + rec.data.item_vocab.raw[-5:].tolist()
    ids = item_ids(known)
    clean = st.one_of(st.sampled_from(known), st.sampled_from(known).map(str), st.sampled_from(known).map(np.int64))
    history = data.draw(st.lists(clean, max_size=30) | st.lists(ids, max_size=30), label="history")
    k = data.draw(st.one_of(st.integers(1, 30), st.integers(1, 30), st.integers(-2, 1200),
                            st.sampled_from([0, True, 2.0, "5", 2 ** 64, None])), label="k")
    allow = data.draw(st.none() | st.lists(clean, max_size=40) | st.lists(ids, max_size=40), label="allow")
    deny = data.draw(st.none() | st.lists(clean, max_size=40) | st.lists(ids, max_size=40), label="deny")
    exclude_seen = data.draw(st.booleans(), label="exclude_seen")
    ignore_unknown = data.draw(st.booleans(), label="ignore_unknown")
    try:
        got = rec.recommend(history=history, k=k, allow=allow, deny=deny, exclude_seen=exclude_seen,
                            ignore_unknown=ignore_unknown)
    except RecommendError as error:
        assert str(error) and error.field in ("history", "k", "allow", "deny", "user")
        event(f"refused ({error.field})")
        return
    event("accepted")
    # accepted: every id must have had a meaning, and k a positive integer
    assert isinstance(k, int) and not isinstance(k, bool) and k >= 1
    kinds = [expected_kind(rec, v) for v in history]
    assert "refuse" not in kinds
    dense = [d for d in kinds if d is not None]
    assert dense and (ignore_unknown or len(dense) == len(history))
    assert got.history_length == len(dense) and got.used_length == min(len(dense), rec.max_len)
    candidates = set(range(1, rec.num_items + 1))
    if allow is not None:
        allowed = [expected_kind(rec, v) for v in allow]
        assert "refuse" not in allowed and (ignore_unknown or None not in allowed)
        candidates &= {d for d in allowed if d is not None}
    if exclude_seen:
        candidates -= set(dense)
    if deny is not None:
        denied = [expected_kind(rec, v) for v in deny]
        assert "refuse" not in denied
        candidates -= {d for d in denied if d is not None}
    scores = scores_of(dense)
    answer = rec.data.item_vocab.encode([item for item, _ in got.items]).tolist()
    assert len(answer) == min(k, len(candidates)) and len(set(answer)) == len(answer)
    assert set(answer) <= candidates
    shown = [s for _, s in got.items]
    assert shown == sorted(shown, reverse=True)
    assert np.allclose(shown, scores[answer], atol=1e-4)
    if len(answer) < len(candidates):           # nothing left out scores above the last one given
        rest = np.array(sorted(candidates - set(answer)))
        assert scores[rest].max() <= min(shown) + 1e-4


@fuzz(300)
@given(data=st.data())
def test_random_users_are_known_or_refused_never_another_user(rec, data):
    users = rec.data.users.raw
    real = users[:50].tolist()
    user = data.draw(st.one_of(st.sampled_from(real), st.sampled_from(real).map(str),
                               st.sampled_from(real).map(np.int64), st.sampled_from(real).map(float),
                               st.sampled_from(real).map(lambda u: f"{u}_0"), st.integers(-5, 3000),
                               st.integers(2 ** 62, 2 ** 70), st.booleans(), st.floats(), st.text(max_size=6),
                               st.sampled_from(["٣", "0x1", " 12", "1e3"])), label="user")
    k = data.draw(st.integers(1, 50), label="k")
    try:
        got = rec.recommend(user, k=k)
    except RecommendError as error:
        assert error.field == "user" and str(error)
        assert error.status == 404 or isinstance(user, (bool, float)), error
        event("refused")
        return
    event("accepted")
    assert not isinstance(user, (bool, float))
    text = str(user).strip().lstrip("+")
    number = int(text) if text.isdigit() and text.isascii() else None
    assert number is not None and number in users.tolist()
    row = int(np.flatnonzero(users == number)[0])
    assert got.history_length == rec.data.sequence(row).size
    assert got.items == rec.recommend(number, k=k).items
