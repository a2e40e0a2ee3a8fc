"""HSTU: hierarchical sequential transduction units (Zhai et al., "Actions Speak Louder than Words: Trillion-
Parameter Sequential Transducers for Generative Recommendations", ICML 2024, arXiv:2402.17152).

Item embeddings (truncated-normal initialisation) scaled by sqrt(D) plus learned absolute positions, dropout,
then `num_blocks` HSTU blocks (`layers/hstu.py`: pointwise SiLU attention without softmax, relative position
bias, gated output) and an output normalisation (`output_norm`, L2 by default). The defaults are the paper's
MovieLens-1M setting (generative-recommenders' `hstu` config): D = 50, 2 blocks, 1 head, attention and linear
dims 50, dropout 0.2, histories of 200 items, L2-normalised states scored by cosine / 0.05 against the
(L2-normalised) item table, which is what the reference's dot product of normalised embeddings divided by the
sampled-softmax temperature computes.

Positions: `positions="from_start"` (default) numbers the real items from the oldest one in the window, as the
reference does with its left-aligned rows; `from_end` counts back from the most recent (SASRec's convention).
Both count real items, never padded columns, so left- and right-aligned rows give the same states.

Timestamps: with `time_bias=True` the relative bias also uses log-bucketed time gaps, read from
`CausalBatch.times` (the model then says it reads `times` through `side_inputs`).

Ratings (`inputs`, the paper's rating-aware inputs; the reference's input preprocessors): the model then reads
`CausalBatch.ratings`, rating ids 1..`num_ratings` (0 = padding/unknown), and says so through `side_inputs`.
- `items` (default): item embeddings only (the reference's `LearnablePositionalEmbeddingInputFeaturesPreprocessor`).
- `items_ratings`: each event is the first `dim - rating_dim` columns of its item's embedding concatenated with
  a learned rating embedding of size `rating_dim`, then scaled and given positions as above (the reference's
  `LearnablePositionalEmbeddingRatedInputFeaturesPreprocessor`). The item table stays [N + 1, dim] for scoring:
  its last `rating_dim` columns are output-side only.
- `interleaved`: items and ratings are separate tokens `[item_1, rating_1, item_2, rating_2, ...]` (rating
  embeddings of size `dim`), so the encoder sees 2L tokens, positions and relative distances count real tokens,
  and its attention scale n and relative-position table are `2 * max_len` (the reference's
  `CombinedItemAndRatingInputFeaturesPreprocessor`). The state that predicts the item after t is the output at
  rating token t: it has read item t and its rating, and the causal mask keeps item t + 1 out. `forward` returns
  those states, [B, L, D] aligned with the items, so losses, trainer and evaluator are unchanged. A padded item
  pads both of its tokens.

Deviations:
- the time gap of query i is measured from item i, not from the item after it (see `layers/hstu.py`);
- the attention scale n is `max_len` (the reference's padded length), see `layers/hstu.py`;
- the projections have biases (zero at initialisation); the paper's loss (sampled softmax with 128 uniform
  negatives) is chosen in the run config (`configs/ml1m_hstu.yaml`), like every loss.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field, model_validator
from pydantic_core import PydanticCustomError
from torch import Tensor, nn

from seqrec.data.batches import CausalBatch, InputSetting
from seqrec.models.base import ModelConfig, SequentialRecommender
from seqrec.models.layers.attention import Dropout
from seqrec.models.layers.hstu import HSTUBlock, bias_indices, causal_valid_mask
from seqrec.models.layers.init import init_embedding_, init_weight_


class HSTUConfig(ModelConfig):
    similarity: Literal["dot", "cosine", "mol"] = "cosine"  # how states and item vectors become scores
    dim: int = Field(50, ge=1)                # D, item embedding and hidden size
    num_blocks: int = Field(2, ge=1)          # HSTU blocks
    num_heads: int = Field(1, ge=1)           # attention heads
    attention_dim: int = Field(50, ge=1)      # size of Q and K per head
    linear_dim: int = Field(50, ge=1)         # size of V and U per head
    dropout: float = Field(0.2, ge=0, lt=1)   # on embeddings and on each block's gated output
    attention_dropout: float = Field(0.0, ge=0, lt=1)  # on the (softmax-free) attention weights
    max_len: int = Field(200, ge=1)           # L, longest history fed to the encoder; also the attention scale n
    positions: Literal["from_start", "from_end"] = "from_start"  # count real items from the oldest or the newest
    output_norm: Literal["l2", "layernorm", "none"] = "l2"   # normalisation of the output states
    time_bias: bool = False                   # add the bucketed time-gap bias (needs batch.times)
    time_buckets: int = Field(128, ge=1)      # time-gap buckets 0..time_buckets of the relative bias
    time_bucket_base: float = Field(0.301, gt=0)  # bucket = floor(log(max(1, |gap seconds|)) / base)
    init: Literal["truncated_normal", "normal", "xavier"] = "truncated_normal"  # embedding init (truncated at 2 std)
    init_std: float = Field(0.02, gt=0)       # std of the embedding initialisation
    inputs: Literal["items", "items_ratings", "interleaved"] = Field(
        "items", description="what the encoder reads per event: items: the item embedding; items_ratings: the "
                             "item embedding's first dim - rating_dim columns + a rating embedding (rating_dim); "
                             "interleaved: item and rating as separate tokens (2 * max_len); the last two need "
                             "ratings in the data")
    rating_dim: int = Field(8, ge=1)          # items_ratings: size of the rating part of each event (< dim)
    num_ratings: int = Field(5, ge=1)         # rating ids 1..num_ratings (ratings rounded, clamped); 0 = padding

    @model_validator(mode="after")
    def _rating_dim_below_dim(self) -> HSTUConfig:
        if self.inputs == "items_ratings" and self.rating_dim >= self.dim:
            raise PydanticCustomError("seqrec", "{message}", {
                "message": f"value {self.rating_dim} is not allowed; inputs: items_ratings needs rating_dim "
                           f"below dim ({self.dim}), the item part is dim - rating_dim", "key": "model.rating_dim"})
        return self


class HSTU(SequentialRecommender):
    name = "hstu"
    config_class = HSTUConfig
    config: HSTUConfig
    reads_users = True    # a MoL user-id component (`mol_user_buckets`) is appended to the states

    def __init__(self, config: HSTUConfig, num_items: int) -> None:
        super().__init__(config, num_items)
        dim = config.dim
        self.items = nn.Embedding(num_items + 1, dim, padding_idx=0)
        if config.inputs != "items":                                    # no new parameters for `items`
            rating_size = config.rating_dim if config.inputs == "items_ratings" else dim
            self.ratings = nn.Embedding(config.num_ratings + 1, rating_size, padding_idx=0)
        self.positions = nn.Embedding(self.encoder_len, dim)
        self.dropout = Dropout(config.dropout)
        buckets = config.time_buckets if config.time_bias else 0
        self.blocks = nn.ModuleList(
            HSTUBlock(dim, config.num_heads, config.attention_dim, config.linear_dim, config.dropout,
                      max_len=self.encoder_len, num_buckets=buckets, attention_dropout=config.attention_dropout)
            for _ in range(config.num_blocks))
        self.final_norm = (nn.LayerNorm(dim, eps=1e-6, elementwise_affine=False)
                           if config.output_norm == "layernorm" else nn.Identity())
        self.reset_parameters()

    @property
    def side_inputs(self) -> dict[str, InputSetting]:
        """What HSTU reads besides the items: timestamps with its time bias (`CausalBatch.times`), rating ids
        unless `inputs` is `items` (`CausalBatch.ratings`)."""
        reads = {}
        if self.config.time_bias:
            reads["times"] = InputSetting("time_bias: true", "model.time_bias: false")
        if self.config.inputs != "items":
            reads["ratings"] = InputSetting(f"inputs: {self.config.inputs}", "model.inputs: items")
        if self.user_buckets:
            reads["users"] = InputSetting("mol_user_buckets > 0", "model.mol_user_buckets: 0")
        return reads

    @property
    def encoder_len(self) -> int:
        """Longest token sequence of the encoder: `max_len`, or `2 * max_len` for interleaved item/rating
        tokens (also the positions table, the relative-position table and the attention scale n)."""
        return 2 * self.config.max_len if self.config.inputs == "interleaved" else self.config.max_len

    def reset_parameters(self) -> None:
        """As the reference: embeddings `init` (truncated normal, std 0.02), the U, V, Q, K projection
        Normal(0, 0.02), the output projection Xavier uniform, zero biases.

        The small projection matters: with Xavier there, ML-1M validation NDCG@10 after 4 epochs was 0.015
        instead of 0.053 (the attention starts far from uniform and learns slowly).
        """
        init_embedding_(self.items, self.config.init, self.config.init_std)
        init_embedding_(self.positions, self.config.init, self.config.init_std)
        if self.config.inputs != "items":
            init_embedding_(self.ratings, self.config.init, self.config.init_std)
        for block in self.blocks:
            assert isinstance(block, HSTUBlock)
            init_weight_(block.uvqk.weight, "normal", 0.02)
            init_weight_(block.out.weight, "xavier")
            nn.init.zeros_(block.uvqk.bias)
            nn.init.zeros_(block.out.bias)

    def forward(self, batch: CausalBatch) -> Tensor:
        items = batch.items                                                           # [B, L]
        config = self.config
        self.check_width(items)
        times = batch.times if config.time_bias else None                            # [B, L] or None
        if config.time_bias and times is None:
            raise ValueError("time_bias=True needs timestamps in the batch (CausalBatch.times)")
        if config.inputs != "items" and batch.ratings is None:
            raise ValueError(f"inputs={config.inputs!r} needs rating ids in the batch (CausalBatch.ratings)")
        valid = items != 0                                                            # [B, L]
        x = self.embed(items, batch.ratings)                                          # [B, T, D], T = L or 2L
        if config.inputs == "interleaved":                                            # both tokens of an item
            valid = valid.repeat_interleave(2, dim=1)                                 # [B, 2L]
            times = times.repeat_interleave(2, dim=1) if times is not None else None  # rating t at item t's time
        before = valid.cumsum(dim=1)                                                  # [B, T] real tokens up to t
        from_end = config.positions == "from_end"
        positions = before[:, -1:] - before if from_end else before - 1               # tokens after / before t
        positions = positions.clamp(min=0, max=self.encoder_len - 1)                  # [B, T]
        x = x + self.positions(positions)                                             # [B, T, D]
        keep = valid.unsqueeze(-1).to(x.dtype)                                        # [B, T, 1]
        x = self.dropout(x) * keep
        allowed = causal_valid_mask(valid).to(x.dtype)                                # [B, 1, T, T]
        distance, buckets = bias_indices(valid, times, self.encoder_len, config.time_buckets,
                                         config.time_bucket_base)                       # [B or 1, T, T], [B, T, T]
        for block in self.blocks:
            x = block(x, allowed, distance, buckets) * keep
        if config.inputs == "interleaved":                                            # the rating tokens' states
            x, keep = x[:, 1::2], keep[:, 1::2]                                       # [B, L, D], [B, L, 1]
        if config.output_norm == "l2":
            x = F.normalize(x, dim=-1, eps=1e-6)
        x = self.final_norm(x) * keep                                                 # [B, L, D]
        return self.with_users(x, batch.users)                                        # [B, L, D (+ d)]

    def embed(self, items: Tensor, ratings: Tensor | None) -> Tensor:
        """Scaled input embeddings before positions: [B, L, D] (`items`, `items_ratings`) or the interleaved
        item/rating tokens [B, 2L, D] (`interleaved`), for items [B, L] and rating ids [B, L]."""
        scale = self.config.dim ** 0.5
        x = self.items(items)                                                         # [B, L, D]
        if self.config.inputs == "items":
            return x * scale
        if ratings is None:
            raise ValueError(f"inputs={self.config.inputs!r} needs rating ids in the batch (CausalBatch.ratings)")
        rated = self.ratings(ratings.clamp(0, self.config.num_ratings))               # [B, L, R or D]
        if self.config.inputs == "items_ratings":
            item_part = x[..., :self.config.dim - self.config.rating_dim]             # [B, L, D - R]
            return torch.cat([item_part, rated], dim=-1) * scale                      # [B, L, D]
        b, length, dim = x.shape
        return torch.stack([x, rated], dim=2).reshape(b, 2 * length, dim) * scale     # [B, 2L, D] i1 r1 i2 r2

    def item_embeddings(self) -> Tensor:
        return self.items.weight                                                      # [N + 1, D]
