"""SASRec: self-attentive sequential recommendation (Kang & McAuley, ICDM 2018, arXiv:1808.09781).

Causal self-attention over the item history with learned absolute positions; the item table is shared between
input and output, and the next item is predicted at every position.

Positions: the paper's code left-pads every row and numbers the columns, so the most recent item always has
the last position (positions count back from the end of the window). `positions="from_end"` (default) keeps
that meaning without depending on the padding: position = number of real items after this one in the row,
so left- and right-aligned rows give the same states. It tells each position how many items follow it in the
training window (never which items), as the original does. `positions="from_start"` counts from the first
real item instead.

Deviations from the paper:
- the feed-forward layer is Linear (same function as the paper's Conv1d with kernel 1), GELU by default;
- the default loss is full softmax cross-entropy (Klenitskiy & Vasilev, RecSys 2023, "SASRec+"); the paper's
  binary cross-entropy with one uniform negative is `loss.name=bce`. The loss lives in `seqrec.train`.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field
from torch import Tensor, nn

from seqrec.data.batches import CausalBatch
from seqrec.models.base import ModelConfig, SequentialRecommender, last_positions
from seqrec.models.layers.attention import Dropout, TransformerBlock, attention_mask
from seqrec.models.layers.init import init_linear_and_embeddings_


class SASRecConfig(ModelConfig):
    dim: int = Field(64, ge=1)              # D, item embedding and hidden size
    num_blocks: int = Field(2, ge=1)        # transformer blocks
    num_heads: int = Field(1, ge=1)         # attention heads (dim must be divisible by it)
    dropout: float = Field(0.2, ge=0, lt=1)  # on embeddings, attention weights and residual branches
    max_len: int = Field(200, ge=1)         # L, longest history fed to the encoder
    norm_first: bool = True                 # pre-LN blocks (True) or post-LN as in the original Transformer
    block: Literal["standard", "sasrec"] = "standard"  # "sasrec": the SASRec authors' block (layers/attention.py)
    activation: Literal["gelu", "relu"] = "gelu"
    ffn_multiplier: int = Field(1, ge=1)    # feed-forward hidden size = dim * ffn_multiplier (paper: 1)
    positions: Literal["from_end", "from_start"] = "from_end"  # see the module docstring
    init_std: float | None = Field(0.02, gt=0)  # std of the normal initialisation; None: Xavier uniform
    # attention in-projection (query/key/value weights) initialisation: "default" follows init_std; "xavier":
    # Xavier uniform, as torch's nn.MultiheadAttention (the SASRec authors' PyTorch port, Klenitskiy & Vasilev)
    qkv_init: Literal["default", "xavier"] = "default"
    norm_eps: float = Field(1e-5, gt=0)     # LayerNorm epsilon (the SASRec authors' code: 1e-8)


class SASRec(SequentialRecommender):
    name = "sasrec"
    config_class = SASRecConfig
    config: SASRecConfig

    def __init__(self, config: SASRecConfig, num_items: int) -> None:
        super().__init__(config, num_items)
        dim = config.dim
        self.items = nn.Embedding(num_items + 1, dim, padding_idx=0)
        self.positions = nn.Embedding(config.max_len, dim)
        self.dropout = Dropout(config.dropout)
        self.blocks = nn.ModuleList(
            TransformerBlock(dim, config.num_heads, config.dropout, hidden=dim * config.ffn_multiplier,
                             norm_first=config.norm_first, activation=config.activation,
                             style="sasrec" if config.block == "sasrec" else None, norm_eps=config.norm_eps)
            for _ in range(config.num_blocks))
        final = config.norm_first or config.block == "sasrec"
        self.final_norm = nn.LayerNorm(dim, eps=config.norm_eps) if final else nn.Identity()
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Normal(0, init_std) weights, zero biases (BERT/GPT-2 style); `init_std=None` uses Xavier uniform."""
        std = self.config.init_std
        init_linear_and_embeddings_(self, "xavier" if std is None else "normal", std or 0.0, padding=self.items)
        if self.config.qkv_init == "xavier":
            for block in self.blocks:
                assert isinstance(block, TransformerBlock)
                nn.init.xavier_uniform_(block.attn.qkv.weight)

    def forward(self, batch: CausalBatch) -> Tensor:
        x, keep, mask = self._encode(batch.items, len(self.blocks))
        return self.final_norm(x) * keep                                              # [B, L, D]

    def predict_batch(self, batch: CausalBatch) -> Tensor:
        """[B, D] state after each history: the last block computes only the last real position's query
        (its keys are still every position), the same state as `forward` there at a fraction of the cost."""
        items = batch.items
        x, _, mask = self._encode(items, len(self.blocks) - 1)
        last = last_positions(items)                                                  # [B]
        return self.final_norm(self.blocks[-1](x, mask, positions=last))             # [B, D]

    def _encode(self, items: Tensor, num_blocks: int) -> tuple[Tensor, Tensor, Tensor]:
        """(states after the first `num_blocks` blocks [B, L, D], real-position mask [B, L, 1], attention mask)."""
        self.check_width(items)
        valid = items != 0                                                            # [B, L]
        before = valid.cumsum(dim=1)                                                  # [B, L] real items up to t
        from_end = self.config.positions == "from_end"
        positions = before[:, -1:] - before if from_end else before - 1               # items after / before t
        positions = positions.clamp(min=0, max=self.config.max_len - 1)               # [B, L]
        x = self.items(items) * self.config.dim ** 0.5 + self.positions(positions)   # [B, L, D]
        keep = valid.unsqueeze(-1).to(x.dtype)                                        # [B, L, 1]
        x = self.dropout(x) * keep
        mask = attention_mask(valid, causal=True)                                     # [B, 1, L, L]
        for block in self.blocks[:num_blocks]:
            x = block(x, mask) * keep
        return x, keep, mask

    def item_embeddings(self) -> Tensor:
        return self.items.weight                                                      # [N + 1, D]
