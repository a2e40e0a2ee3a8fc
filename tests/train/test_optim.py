"""Learning-rate schedules (per step, resume-safe), weight decay that skips parameter kinds, the epoch line."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from seqrec import api
from seqrec.models import build_model
from seqrec.train.optim import decay_groups, schedule_factor
from seqrec.train.trainer import Trainer


def test_warmup_is_linear_then_constant():
    assert [schedule_factor(s, 100, 4, "constant", 0.0) for s in range(6)] == [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]


@pytest.mark.parametrize("schedule", ["linear", "cosine"])
def test_decay_runs_from_one_to_the_floor_at_the_last_step(schedule):
    total, warmup, floor = 51, 10, 0.1
    span = total - warmup - 1                                            # 40 decay steps after the warm-up
    factors = [schedule_factor(s, total, warmup, schedule, floor) for s in range(total)]
    assert factors[warmup] == pytest.approx(1.0)
    assert factors[-1] == pytest.approx(floor)
    assert all(a >= b for a, b in zip(factors[warmup:], factors[warmup + 1:], strict=False))   # never rises
    for done in (10, 20, 30):                                            # hand-computed shapes
        shape = 1 - done / span if schedule == "linear" else 0.5 * (1 + math.cos(math.pi * done / span))
        assert factors[warmup + done] == pytest.approx(floor + (1 - floor) * shape)
    assert factors[warmup + 20] == pytest.approx(floor + (1 - floor) * 0.5)   # both halfway at the middle


def _trainer(**train) -> Trainer:
    config = api.make_config(model={"name": "sasrec", "dim": 16, "num_blocks": 1, "max_len": 20},
                             train={"progress": False, **train})
    split = api.load_split(config)
    torch.manual_seed(0)
    return Trainer(build_model("sasrec", split.data.num_items, config.model.params), split, config)


def test_the_trainer_sets_the_scheduled_rate_before_every_step():
    trainer = _trainer(lr=0.01, epochs=2, warmup_steps=5, schedule="cosine", min_lr_ratio=0.2, batch_size=500)
    seen = []
    step = trainer._step

    def recording(rows, rng=None):
        seen.append(trainer.optimizer.param_groups[0]["lr"])
        return step(rows, rng)

    trainer._step = recording
    trainer._train_epoch(1)
    trainer._train_epoch(2)
    steps = len(seen) // 2
    expected = [0.01 * schedule_factor(i, 2 * steps, 5, "cosine", 0.2) for i in range(2 * steps)]
    np.testing.assert_allclose(seen, expected, rtol=1e-12)
    assert seen[-1] == pytest.approx(0.002)


def test_no_decay_groups_exempt_embeddings_biases_and_norms():
    trainer = _trainer(optimizer="adamw", weight_decay=0.1, no_decay=["embeddings", "biases", "norms"])
    groups = trainer.optimizer.param_groups
    assert [g["weight_decay"] for g in groups] == [0.1, 0.0]
    exempt = {id(p) for p in groups[1]["params"]}
    named = dict(trainer.model.named_parameters())
    assert id(named["items.weight"]) in exempt and id(named["positions.weight"]) in exempt
    assert all(id(p) in exempt for name, p in named.items() if name.endswith("bias"))
    decayed = [name for name, p in named.items() if id(p) not in exempt]
    assert decayed and all(name.endswith("weight") and "norm" not in name for name in decayed)
    assert len(groups[0]["params"]) + len(groups[1]["params"]) == len(named)


def test_without_no_decay_every_parameter_decays():
    model = torch.nn.Sequential(torch.nn.Embedding(3, 2), torch.nn.Linear(2, 2))
    params = list(model.parameters())
    assert decay_groups(model, params, 0.1, []) == [{"params": params, "weight_decay": 0.1}]
    assert decay_groups(model, params, 0.0, ["biases"]) == [{"params": params, "weight_decay": 0.0}]


def test_the_epoch_line_names_what_it_shows():
    from seqrec.train.trainer import epoch_line

    record = {"epoch": 3, "loss": 6.79661, "valid": {"NDCG@10": 0.08671}, "improved": True, "seconds": 24.31}
    assert epoch_line(record, "NDCG@10") == "epoch 3  loss 6.7966  valid NDCG@10 0.0867 (best)  24.3 s"
    assert epoch_line({"epoch": 4, "loss": 1.0, "seconds": 2.0}, "NDCG@10") == "epoch 4  loss 1.0000  2.0 s"


def test_no_decay_biases_include_recurrent_biases():
    from seqrec.models import build_model

    model = build_model("gru4rec", 20, {"dim": 8, "hidden_size": 8, "num_layers": 2})
    params = list(model.parameters())
    decayed, kept = decay_groups(model, params, 0.1, ["biases"])
    named = {id(p): name for name, p in model.named_parameters()}
    kept_names = {named[id(p)] for p in kept["params"]}
    assert {"gru.bias_ih_l0", "gru.bias_hh_l0", "gru.bias_ih_l1", "gru.bias_hh_l1"} <= kept_names
    assert all(".bias" in name or name.startswith("bias") for name in kept_names)
    assert {named[id(p)] for p in decayed["params"]} >= {"gru.weight_ih_l0", "gru.weight_hh_l1"}
