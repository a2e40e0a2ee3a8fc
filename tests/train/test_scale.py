"""Large-catalogue training paths: sparse item gradients with a lazy Adam, mixed precision, sampled validation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from seqrec import api
from seqrec.errors import ConfigError
from seqrec.models import build_model
from seqrec.models.layers.similarity import Cosine, DotProduct
from seqrec.train.losses import LossSpec, SparseRows, compute_loss
from seqrec.train.optim import Optimizers
from seqrec.train.trainer import Trainer

SMALL = {"name": "sasrec", "dim": 16, "num_blocks": 1, "max_len": 20, "dropout": 0.0}


def _trainer(model=SMALL, **sections) -> Trainer:
    config = api.make_config(model=model, **sections)
    split = api.load_split(config)
    torch.manual_seed(0)
    net = build_model(config.model.name, split.data.num_items, config.model.params)
    return Trainer(net, split, config)


@pytest.mark.parametrize("similarity", [DotProduct(), Cosine(0.1)])
@pytest.mark.parametrize("spec", [LossSpec("sampled_softmax", 7),
                                  LossSpec("sampled_softmax", 7, shared_negatives=False),
                                  LossSpec("bce", 3), LossSpec("bpr", 3),
                                  LossSpec("sampled_softmax", negatives="in_batch")])
def test_sparse_lookups_give_the_dense_loss_and_gradient(spec, similarity):
    torch.manual_seed(1)
    table = torch.randn(50, 8, requires_grad=True)
    states = torch.randn(30, 8)
    targets = torch.randint(1, 50, (30,))
    log_pop = torch.log(torch.full((50,), 1 / 50))
    losses, grads = [], []
    for sparse in (False, True):
        generator = torch.Generator().manual_seed(5)
        loss = compute_loss(spec, states, targets, table, similarity, log_popularity=log_pop, generator=generator,
                            sparse=sparse)
        (grad,) = torch.autograd.grad(loss, table)
        losses.append(loss)
        grads.append(grad)
    assert not grads[0].is_sparse and grads[1].is_sparse
    torch.testing.assert_close(losses[1], losses[0])
    torch.testing.assert_close(grads[1].to_dense(), grads[0])
    assert grads[1].coalesce().indices().shape[1] < 50          # only the rows looked up


def test_sparse_rows_is_only_a_lookup():
    table = torch.randn(5, 2)
    rows = SparseRows(table)
    assert rows.shape == table.shape and not isinstance(rows, torch.Tensor)
    torch.testing.assert_close(rows[torch.tensor([[1, 4]])], table[torch.tensor([[1, 4]])])
    with pytest.raises(ValueError, match="no sparse form"):
        compute_loss(LossSpec("ce"), torch.randn(3, 2), torch.tensor([1, 2, 3]), table, DotProduct(), sparse=True)


def _changed_rows(before: torch.Tensor, after: torch.Tensor) -> set[int]:
    return set(torch.nonzero((before != after).any(dim=1)).flatten().tolist())


@pytest.mark.parametrize("sparse", [True, False])
def test_sparse_embeddings_update_only_the_rows_a_batch_used(sparse):
    trainer = _trainer(loss={"name": "sampled_softmax", "negatives": "in_batch"},
                       train={"sparse_embeddings": sparse, "lr": 0.01})
    assert isinstance(trainer.optimizer, Optimizers) == sparse
    data = trainer.split.data
    first, second = np.arange(0, 8), np.arange(8, 16)
    trainer._step(first)
    before = trainer.model.items.weight.detach().clone()
    trainer._step(second)
    after = trainer.model.items.weight.detach()
    used = set()
    for row in second:      # every item of the second batch's rows (inputs and targets: in-batch negatives)
        used |= set(data.items[trainer.starts[row]:trainer.ends[row]].tolist())
    changed = _changed_rows(before, after)
    assert changed
    if sparse:
        assert changed <= used                               # rows of the first batch alone stay put
    else:
        assert changed - used                                # dense Adam's momentum moves them again
    assert after[0].abs().sum() == 0                         # padding never moves


def test_sparse_embeddings_resume_restores_both_optimisers(tmp_path):
    run = api.train(model=SMALL, loss={"name": "sampled_softmax", "num_negatives": 16},
                    train={"sparse_embeddings": True, "epochs": 1, "progress": False}, out=tmp_path / "run")
    assert run.results["test"]["HR@10"] > 0
    resumed = api.train(out=tmp_path / "run", resume=True, train={"epochs": 2}, config=run.config)
    assert resumed.results["epochs_run"] == 2


def test_sparse_embeddings_are_refused_where_the_gradient_is_dense():
    with pytest.raises(ConfigError, match="loss.name: ce"):
        _trainer(train={"sparse_embeddings": True})
    with pytest.raises(ConfigError, match="computes its item vectors"):
        _trainer(model={"name": "bert4rec", "dim": 16, "num_blocks": 1, "max_len": 20},
                 loss={"name": "sampled_softmax", "num_negatives": 4}, train={"sparse_embeddings": True})


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_mixed_precision_steps_train_on_cpu_when_asked(precision):
    trainer = _trainer(train={"precision": precision, "lr": 0.01})
    assert (trainer.scaler is not None) == (precision == "fp16")
    before = trainer.model.items.weight.detach().clone()
    losses = [trainer._step(np.arange(i * 32, (i + 1) * 32)) for i in range(3)]
    assert all(np.isfinite(losses))
    assert trainer.model.items.weight.dtype == torch.float32               # the weights stay fp32
    assert not torch.equal(before, trainer.model.items.weight)


def test_validation_on_a_seeded_user_sample():
    trainer = _trainer(eval={"max_users": 150})
    sample = trainer.validate()
    assert sample == trainer.validate()                                     # the same users every time
    assert abs(sample["HR@10"] * 150 - round(sample["HR@10"] * 150)) < 1e-9  # an average over 150 users
    full = trainer.evaluate("valid")
    assert abs(full["HR@10"] * 150 - round(full["HR@10"] * 150)) > 1e-9 or len(trainer.split.valid) == 150
    results = trainer.write_results()
    assert results["valid_users_per_epoch"] == 150
    assert results["valid"] == full                                        # the final figures use every user


def test_clipping_sparse_gradients_matches_dense_clipping():
    from seqrec.train.optim import clip_gradients

    torch.manual_seed(2)
    weights = [torch.randn(6, 3, requires_grad=True), torch.randn(4, requires_grad=True)]
    ids = torch.tensor([1, 4, 1, 5])
    clipped = []
    for sparse in (False, True):
        for w in weights:
            w.grad = None
        loss = (torch.nn.functional.embedding(ids, weights[0], sparse=sparse).sum(1) * 7).sum() + weights[1].sum() * 3
        loss.backward()
        clip_gradients(weights, 1.5)
        clipped.append([w.grad.to_dense() if w.grad.is_sparse else w.grad.clone() for w in weights])
    for dense, sparse in zip(*clipped, strict=True):
        torch.testing.assert_close(sparse, dense)
    assert float(torch.cat([g.flatten() for g in clipped[0]]).norm()) == pytest.approx(1.5, rel=1e-4)


def test_negatives_across_ranks_needs_in_batch_negatives():
    with pytest.raises(ConfigError, match=r"loss.negatives_across_ranks: .*needs loss.name: sampled_softmax"):
        api.make_config(loss={"name": "sampled_softmax", "negatives": "uniform", "negatives_across_ranks": True})
    config = api.make_config(loss={"name": "sampled_softmax", "negatives": "in_batch", "negatives_across_ranks": True})
    assert config.loss.negatives_across_ranks


def test_precision_and_timeout_keys_are_checked():
    with pytest.raises(ConfigError, match="train.precision"):
        api.make_config(train={"precision": "fp8"})
    with pytest.raises(ConfigError, match="train.dist_timeout"):
        api.make_config(train={"dist_timeout": 0})
