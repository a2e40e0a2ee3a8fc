"""SASRec: self-attentive sequential recommendation (Kang & McAuley, ICDM 2018, arXiv:1808.09781).

Causal self-attention over the item history with learned absolute positions; the item table is shared between
input and output, and the next item is predicted at every position.

Deviations from the paper:
- positions count from the first real item of the window (0, 1, 2, ...), not from the padded column, so
  left- and right-aligned padding give the same states;
- the feed-forward layer is Linear (same function as the paper's Conv1d with kernel 1), GELU by default;
- the default loss is full softmax cross-entropy (Klenitskiy & Vasilev, RecSys 2023, "SASRec+"); the paper's
  binary cross-entropy with one uniform negative is `loss.name=bce`. The loss lives in `seqrec.train`.
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field
from torch import Tensor, nn

from seqrec.data.batches import CausalBatch
from seqrec.models.base import ModelConfig, SequentialRecommender
from seqrec.models.layers.attention import Dropout, TransformerBlock, attention_mask


class SASRecConfig(ModelConfig):
    dim: int = Field(64, ge=1)              # D, item embedding and hidden size
    num_blocks: int = Field(2, ge=1)        # transformer blocks
    num_heads: int = Field(1, ge=1)         # attention heads (dim must be divisible by it)
    dropout: float = Field(0.2, ge=0, lt=1)  # on embeddings, attention weights and residual branches
    max_len: int = Field(200, ge=1)         # L, longest history fed to the encoder
    norm_first: bool = True                 # pre-LN blocks (True) or post-LN as in the original Transformer
    activation: Literal["gelu", "relu"] = "gelu"
    ffn_multiplier: int = Field(1, ge=1)    # feed-forward hidden size = dim * ffn_multiplier (paper: 1)


class SASRec(SequentialRecommender):
    name = "sasrec"
    config_class = SASRecConfig

    def __init__(self, config: SASRecConfig, num_items: int) -> None:
        super().__init__(config, num_items)
        dim = config.dim
        self.items = nn.Embedding(num_items + 1, dim, padding_idx=0)
        self.positions = nn.Embedding(config.max_len, dim)
        self.dropout = Dropout(config.dropout)
        self.blocks = nn.ModuleList(
            TransformerBlock(dim, config.num_heads, config.dropout, hidden=dim * config.ffn_multiplier,
                             norm_first=config.norm_first, activation=config.activation)
            for _ in range(config.num_blocks))
        self.final_norm = nn.LayerNorm(dim) if config.norm_first else nn.Identity()
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                nn.init.zeros_(module.bias)
        nn.init.xavier_uniform_(self.positions.weight)
        nn.init.xavier_uniform_(self.items.weight)
        with torch.no_grad():
            self.items.weight[0].zero_()

    def forward(self, batch: CausalBatch) -> Tensor:
        items = batch.items                                                           # [B, L]
        if items.shape[1] > self.config.max_len:
            raise ValueError(f"sequence length {items.shape[1]} exceeds max_len={self.config.max_len}")
        valid = items != 0                                                            # [B, L]
        positions = (valid.cumsum(dim=1) - 1).clamp(min=0)                            # [B, L] from the first real item
        x = self.items(items) * self.config.dim ** 0.5 + self.positions(positions)   # [B, L, D]
        keep = valid.unsqueeze(-1).to(x.dtype)                                        # [B, L, 1]
        x = self.dropout(x) * keep
        mask = attention_mask(valid, causal=True)                                     # [B, 1, L, L]
        for block in self.blocks:
            x = block(x, mask) * keep
        return self.final_norm(x) * keep                                              # [B, L, D]

    def item_embeddings(self) -> Tensor:
        return self.items.weight                                                      # [N + 1, D]
