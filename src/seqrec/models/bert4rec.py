"""BERT4Rec: bidirectional self-attention trained by masked-item prediction (Sun et al., CIKM 2019).

The encoder is SASRec's transformer block (`seqrec.models.layers.attention.TransformerBlock`) without the
causal mask. Training (objective `"masked"`, built in `seqrec.train.objectives`): each real item of a user's
window is replaced by the mask token (id N + 1) with probability `mask_prob` (at least one per row), and the
loss applies at the masked positions only. Inference appends the mask token after the history and scores
the state at that position (the history is cut to its last `max_len - 1` items to make room).

As in the paper: learned absolute positions, embedding LayerNorm and dropout, post-LN blocks with a GELU
feed-forward of 4·D, an output transform (Linear, GELU, LayerNorm) before the dot product with the item
table shared with the input. Positions count back from the end of the row (see `seqrec.models.sasrec`),
so left- and right-aligned rows give the same states and the appended mask always has position 0.

Deviations: no per-item output bias (scores stay a similarity between a state and the item table, so every
seqrec loss and the evaluator apply unchanged); masked tokens are always the mask token (no 80/10/10 rule,
as in the original code's default for items). `last_item_prob` optionally trains some rows with only their
last item masked, the inference task (0 by default).
"""

from __future__ import annotations

import torch
from pydantic import Field
from torch import Tensor, nn

from seqrec.data.batches import CausalBatch
from seqrec.models.base import ModelConfig, SequentialRecommender, align_right
from seqrec.models.layers.attention import Dropout, TransformerBlock, attention_mask
from seqrec.models.layers.init import init_linear_and_embeddings_


class BERT4RecConfig(ModelConfig):
    dim: int = Field(64, ge=1)                  # D, item embedding and hidden size
    num_blocks: int = Field(2, ge=1)            # transformer blocks
    num_heads: int = Field(2, ge=1)             # attention heads
    dropout: float = Field(0.1, ge=0, lt=1)     # on embeddings, attention weights and residual branches
    max_len: int = Field(200, ge=2)             # L, including the appended mask at inference
    ffn_multiplier: int = Field(4, ge=1)        # feed-forward hidden size = dim * ffn_multiplier
    norm_first: bool = False                    # post-LN as in BERT (True: pre-LN)
    mask_prob: float = Field(0.2, gt=0, le=1)   # share of real items masked in training rows
    last_item_prob: float = Field(0.0, ge=0, le=1)  # share of training rows with only the last item masked
    init_std: float = Field(0.02, gt=0)         # std of the (truncated at 2 std) normal initialisation


class BERT4Rec(SequentialRecommender):
    name = "bert4rec"
    config_class = BERT4RecConfig
    config: BERT4RecConfig
    objective = "masked"
    causal = False

    def __init__(self, config: BERT4RecConfig, num_items: int) -> None:
        super().__init__(config, num_items)
        dim = config.dim
        self.mask_id = num_items + 1
        self.items = nn.Embedding(num_items + 2, dim, padding_idx=0)             # row N + 1: the mask token
        self.positions = nn.Embedding(config.max_len, dim)
        self.embed_norm = nn.LayerNorm(dim)
        self.dropout = Dropout(config.dropout)
        self.blocks = nn.ModuleList(
            TransformerBlock(dim, config.num_heads, config.dropout, hidden=dim * config.ffn_multiplier,
                             norm_first=config.norm_first, activation="gelu")
            for _ in range(config.num_blocks))
        self.final_norm = nn.LayerNorm(dim) if config.norm_first else nn.Identity()
        self.head = nn.Sequential(nn.Linear(dim, dim), nn.GELU(), nn.LayerNorm(dim))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        init_linear_and_embeddings_(self, "truncated_normal", self.config.init_std, padding=self.items)

    def forward(self, batch: CausalBatch) -> Tensor:
        items = batch.items                                                      # [B, L], may hold mask ids
        self.check_width(items)
        valid = items != 0                                                       # [B, L]
        before = valid.cumsum(dim=1)
        positions = (before[:, -1:] - before).clamp(max=self.config.max_len - 1)  # real tokens after t
        x = self.embed_norm(self.items(items) + self.positions(positions))       # [B, L, D]
        keep = valid.unsqueeze(-1).to(x.dtype)                                   # [B, L, 1]
        x = self.dropout(x) * keep
        mask = attention_mask(valid, causal=False)                               # [B, 1, L, L]
        for block in self.blocks:
            x = block(x, mask) * keep
        return self.head(self.final_norm(x)) * keep                              # [B, L, D]

    def predict_batch(self, batch: CausalBatch) -> Tensor:
        """[B, D]: the state of a mask token appended after each history (its last `max_len - 1` items)."""
        right, _ = align_right(batch.items)                                            # real items at the end
        mask = torch.full_like(right[:, :1], self.mask_id)                       # [B, 1]
        query = torch.cat([right, mask], dim=1)[:, -self.config.max_len:]        # [B, <= max_len]
        return self(CausalBatch(items=query))[:, -1]                             # [B, D]

    def masking(self) -> tuple[int, float, float]:
        return self.mask_id, self.config.mask_prob, self.config.last_item_prob

    def item_embeddings(self) -> Tensor:
        return self.items.weight[: self.num_items + 1]                           # [N + 1, D], no mask row
