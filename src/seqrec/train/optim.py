"""Optimiser helpers of the trainer: learning-rate schedules, weight-decay groups, the sparse item table's
optimiser and gradient clipping that takes sparse gradients.

- `schedule_factor`: linear warm-up then constant / linear / cosine decay, a function of the step index alone
  (`train.warmup_steps`, `train.schedule`, `train.min_lr_ratio`);
- `decay_groups`: parameter groups exempting embeddings, biases or norms from weight decay (`train.no_decay`);
- `enable_sparse_items`, `Optimizers`, `clip_gradients`: `train.sparse_embeddings` (sparse gradients for the
  item table, SparseAdam beside the dense optimiser).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from seqrec.errors import ConfigError
from seqrec.models.base import SequentialRecommender


def schedule_factor(step: int, total: int, warmup: int, schedule: str, min_ratio: float) -> float:
    """Multiplier of the learning rate at optimiser step `step` (0-based) of `total`: a linear warm-up from
    1 / warmup to 1 over the first `warmup` steps, then `schedule` (constant, linear or cosine) from 1 down to
    `min_ratio` at the last step. A function of the step alone, so a resumed run continues the same curve."""
    if warmup and step < warmup:
        return (step + 1) / warmup
    if schedule == "constant":
        return 1.0
    span = max(total - warmup - 1, 1)
    progress = min(max(step - warmup, 0) / span, 1.0)
    shape = 1.0 - progress if schedule == "linear" else 0.5 * (1.0 + math.cos(math.pi * progress))
    return min_ratio + (1.0 - min_ratio) * shape


def decay_groups(model: nn.Module, params: list[nn.Parameter], weight_decay: float, skip: Sequence[str]
                 ) -> list[dict]:
    """Optimiser parameter groups: `params` with `weight_decay`, except the kinds in `skip` (embeddings: the
    weights of nn.Embedding modules; biases: parameters whose own name ends in `bias` or starts with `bias_`, so
    nn.GRU's `bias_ih_l0` / `bias_hh_l0` too; norms: the parameters of LayerNorm-like modules), which get none
    (as BERT's, HSTU's and most transformer references' training code does)."""
    if not skip or not weight_decay:
        return [{"params": params, "weight_decay": weight_decay}]
    exempt: set[int] = set()
    for module in model.modules():
        own = list(module.parameters(recurse=False))
        if "embeddings" in skip and isinstance(module, nn.Embedding):
            exempt.update(id(p) for p in own)
        if "norms" in skip and isinstance(module, (nn.LayerNorm, nn.GroupNorm, nn.BatchNorm1d, nn.RMSNorm)):
            exempt.update(id(p) for p in own)
    if "biases" in skip:
        exempt.update(id(p) for name, p in model.named_parameters() if _is_bias(name.rsplit(".", 1)[-1]))
    decayed = [p for p in params if id(p) not in exempt]
    kept = [p for p in params if id(p) in exempt]
    return [group for group in ({"params": decayed, "weight_decay": weight_decay},
                                {"params": kept, "weight_decay": 0.0}) if group["params"]]


def _is_bias(own_name: str) -> bool:
    return own_name.endswith("bias") or own_name.startswith("bias_")


def clip_gradients(params: list[torch.Tensor], max_norm: float) -> None:
    """`clip_grad_norm_` that also takes sparse gradients (`train.sparse_embeddings`): the norm of a sparse
    gradient is that of its coalesced values (rows looked up twice summed first, as the dense gradient would)."""
    if not any(p.grad is not None and p.grad.is_sparse for p in params):
        torch.nn.utils.clip_grad_norm_(params, max_norm)
        return
    squares = []
    for p in params:
        if p.grad is None:
            continue
        if p.grad.is_sparse:
            p.grad = p.grad.coalesce()
            squares.append(p.grad.values().pow(2).sum())
        else:
            squares.append(p.grad.pow(2).sum())
    scale = max_norm / (float(torch.stack(squares).sum().sqrt()) + 1e-6)
    if scale < 1:
        for p in params:
            if p.grad is not None:
                p.grad.mul_(scale)


class Optimizers:
    """A dense optimiser and a sparse one (the item table's `SparseAdam`) stepped as one."""

    def __init__(self, *optimizers: torch.optim.Optimizer) -> None:
        self.optimizers = optimizers

    @property
    def param_groups(self) -> list[dict]:
        return [group for optimizer in self.optimizers for group in optimizer.param_groups]

    def zero_grad(self, set_to_none: bool = True) -> None:
        for optimizer in self.optimizers:
            optimizer.zero_grad(set_to_none=set_to_none)

    def step(self) -> None:
        for optimizer in self.optimizers:
            optimizer.step()

    def state_dict(self) -> dict:
        return {"optimizers": [optimizer.state_dict() for optimizer in self.optimizers]}

    def load_state_dict(self, state: dict) -> None:
        if "optimizers" not in state or len(state["optimizers"]) != len(self.optimizers):
            raise ConfigError("the checkpoint's optimiser state does not match train.sparse_embeddings; resume "
                              "with the setting the run started with")
        for optimizer, part in zip(self.optimizers, state["optimizers"], strict=True):
            optimizer.load_state_dict(part)


SPARSE_MARK = "_seqrec_sparse"     # attribute set on a parameter whose gradients are sparse (its own optimiser)


def is_sparse(param: torch.Tensor) -> bool:
    """Whether `enable_sparse_items` made `param` a sparse-gradient table."""
    return bool(getattr(param, SPARSE_MARK, False))


def enable_sparse_items(model: SequentialRecommender, loss: str) -> None:
    """Give the model's item table sparse gradients (`train.sparse_embeddings`).

    Only for a model whose `item_embeddings()` is its embedding table itself (SASRec, GRU4Rec, NextItNet, HSTU,
    SR-GNN) and a sampled loss: the full-softmax CE reads every row, so its gradient is dense by nature.

    Raises:
        ConfigError: a full-softmax loss, or a model whose item vectors are computed from the table.
    """
    if loss == "ce":
        raise ConfigError("train.sparse_embeddings: the full-softmax loss (loss.name: ce) touches every item row; "
                          "use loss.name: sampled_softmax, bce or bpr with sparse embeddings")
    table = model.item_embeddings()
    modules = [m for m in model.modules() if isinstance(m, nn.Embedding) and m.weight is table]
    items = getattr(model, "items", None)
    if not modules or not isinstance(items, nn.Embedding):
        raise ConfigError(f"train.sparse_embeddings: model {model.name!r} computes its item vectors from its "
                          "table (not a plain embedding lookup), so its gradient is dense; set it to false")
    for module in {id(m): m for m in (*modules, items)}.values():
        module.sparse = True
        setattr(module.weight, SPARSE_MARK, True)
