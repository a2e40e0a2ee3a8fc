"""BERT4Rec specifics: the masked objective (loss only on masked positions) and the appended mask at inference."""

import numpy as np
import pytest
import torch

from seqrec.data.batches import CausalBatch
from seqrec.models import build_model
from seqrec.train.losses import full_softmax_ce
from seqrec.train.objectives import make_batch, mask_items

N = 50


def model(**params):
    torch.manual_seed(0)
    return build_model("bert4rec", N, {"dim": 16, "num_heads": 2, "max_len": 10, **params}).eval()


def flat_log(lengths, seed=0):
    rng = np.random.default_rng(seed)
    items = rng.integers(1, N + 1, size=int(sum(lengths)))
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    return items, starts, starts + np.asarray(lengths)


@pytest.mark.parametrize("align", ["right", "left"])
def test_masked_batch_targets_only_the_masked_items(align):
    bert = model(mask_prob=0.3)
    items, starts, ends = flat_log([1, 2, 5, 9, 14, 30, 3])
    batch = make_batch(bert, items, starts, ends, align=align, rng=np.random.default_rng(1))
    inputs, targets = batch.items.numpy(), batch.targets.numpy()
    masked = inputs == bert.mask_id
    assert ((targets != 0) == masked).all()                                  # a target exactly where masked
    assert masked.any(axis=1).all()                                          # every row trains on something
    # unmasked positions keep their item; masked ones hide the target, which is the original item
    from seqrec.data.sequences import gather_windows
    window = gather_windows(items, starts, ends, bert.max_len, align=align)
    assert (np.where(masked, targets, inputs) == window).all()


def test_mask_rate_and_last_item_rows():
    window = np.arange(1, 20_001).reshape(1000, 20)
    rng = np.random.default_rng(0)
    inputs, _ = mask_items(window, 99_999, 0.2, 0.0, rng)
    assert (inputs == 99_999).mean() == pytest.approx(0.2, abs=0.01)
    inputs, targets = mask_items(window, 99_999, 0.2, 1.0, rng)              # every row: only the last item
    assert ((targets != 0) == (np.arange(20) == 19)[None, :]).all()
    # the generator drives the draws: same seed, same masks
    a = mask_items(window, 7, 0.2, 0.1, np.random.default_rng(5))[0]
    assert (a == mask_items(window, 7, 0.2, 0.1, np.random.default_rng(5))[0]).all()


def test_loss_ignores_unmasked_positions():
    bert = model()
    items, starts, ends = flat_log([9, 9, 9])
    batch = make_batch(bert, items, starts, ends, rng=np.random.default_rng(2))
    states = bert(batch)
    states.retain_grad()
    scored = batch.targets != 0                                              # the trainer's selection
    loss = full_softmax_ce(states[scored], batch.targets[scored], bert.item_embeddings(), bert.similarity)
    loss.backward()
    touched = states.grad.abs().sum(-1) > 0                                  # [B, L] positions the loss reads
    assert torch.equal(touched, batch.items == bert.mask_id)
    assert scored.sum() < (batch.items != 0).sum()
    assert bert.item_embeddings().shape == (N + 1, 16)                      # the mask row is never ranked


def test_predict_scores_a_mask_appended_after_the_history():
    bert = model()
    history = torch.tensor([[0, 0, 3, 4, 5], [7, 8, 9, 10, 11]])
    expected = bert(CausalBatch(torch.tensor([[3, 4, 5, bert.mask_id]])))
    got = bert.predict(history)
    assert torch.allclose(got[0], expected[0, -1], atol=1e-5)
    # a history of max_len items keeps its last max_len - 1 to make room for the mask
    long = torch.arange(1, 11).unsqueeze(0)                                  # 10 items, max_len 10
    query = torch.cat([torch.arange(2, 11), torch.tensor([bert.mask_id])]).unsqueeze(0)
    assert torch.allclose(bert.predict(long), bert(CausalBatch(query))[:, -1], atol=1e-5)
    assert torch.allclose(got[1], bert(CausalBatch(torch.tensor([[7, 8, 9, 10, 11, bert.mask_id]])))[0, -1],
                          atol=1e-5)
