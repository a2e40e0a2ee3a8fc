"""Weight initialisation shared by the models: one function per scheme, the padding row kept at zero."""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn

InitScheme = Literal["normal", "truncated_normal", "xavier"]


def truncated_normal_(tensor: Tensor, std: float = 0.02, bound: float = 2.0) -> Tensor:
    """Fill `tensor` in place from Normal(0, std) truncated to [-bound * std, bound * std].

    The generative-recommenders embeddings (HSTU) are drawn this way: no value beyond two standard deviations,
    so no extreme initial logits. Draws come from torch's global generator (seeded runs repeat).
    """
    with torch.no_grad():
        return nn.init.trunc_normal_(tensor, mean=0.0, std=std, a=-bound * std, b=bound * std)


def init_weight_(tensor: Tensor, scheme: InitScheme, std: float = 0.02) -> Tensor:
    """Initialise a weight matrix in place with `scheme` (`std` is ignored by Xavier)."""
    if scheme == "normal":
        return nn.init.normal_(tensor, 0.0, std)
    if scheme == "truncated_normal":
        return truncated_normal_(tensor, std)
    if scheme == "xavier":
        return nn.init.xavier_uniform_(tensor)
    raise ValueError(f"unknown initialisation {scheme!r}; known: normal, truncated_normal, xavier")


def init_embedding_(embedding: nn.Embedding, scheme: InitScheme, std: float = 0.02) -> nn.Embedding:
    """Initialise an embedding table in place; its padding row (if any) is zeroed afterwards."""
    init_weight_(embedding.weight, scheme, std)
    if embedding.padding_idx is not None:
        with torch.no_grad():
            embedding.weight[embedding.padding_idx].zero_()
    return embedding


def init_linear_and_embeddings_(model: nn.Module, scheme: InitScheme, std: float = 0.02,
                                padding: nn.Embedding | None = None) -> None:
    """Every Linear and Embedding weight of `model` by `scheme` (in module order, so seeded runs repeat),
    every Linear bias zero, and `padding`'s row 0 zeroed (the padding item)."""
    for module in model.modules():
        if isinstance(module, (nn.Linear, nn.Embedding)):
            init_weight_(module.weight, scheme, std)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)
    if padding is not None:
        with torch.no_grad():
            padding.weight[0].zero_()
