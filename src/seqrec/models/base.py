"""The model contract every seqrec model follows.

A model is an `nn.Module` built from its own config and the catalogue size, `Model(config, num_items)`:

- `forward(batch) -> Tensor`: sequence states, `[B, L, D]` for every position of a `CausalBatch`;
- `item_embeddings() -> Tensor`: the item table `[N + 1, D]`, row 0 = padding (never ranked);
- `predict(items) -> Tensor`: the state `[B, D]` that scores the next item after each history `[B, L]`
  (left- or right-aligned, 0-padded);
- `side_inputs`: the per-position inputs it reads besides the items (`{}` for most models), each with the
  config setting that asks for it, e.g. `{"times": InputSetting("time_bias: true", "model.time_bias: false")}`;
  `inputs` is then `("items", "times")`. The kinds (`seqrec.data.batches.SIDE_INPUTS`: `times`, `ratings`) are
  `CausalBatch` fields and `predict` keywords, `[B, L]` int64 aligned with the items and 0 at padding
  (timestamps; rating ids 1..`num_ratings`); the trainer, the evaluator and the recommender build them with
  the one function `seqrec.data.batches.side_windows`, after `data_side_inputs` checked the data has them;
- `similarity`: the module that turns states and item vectors into scores (dot product by default; a learned
  one such as MoL is a submodule, so its parameters train with the model).

Models never compute a loss, move data between devices or read files: losses and the training loop live in
`seqrec.train`, so every model gets every loss. A model that is not trained by gradient descent (Pop) sets
`trainable = False` and implements `fit(split)`.

Registration is the explicit table `MODELS` in `seqrec.models`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, ClassVar, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic_core import PydanticCustomError
from torch import Tensor, nn

from seqrec.data.batches import CausalBatch, InputSetting
from seqrec.errors import ConfigError
from seqrec.models.layers.similarity import make_similarity

if TYPE_CHECKING:
    from seqrec.data.splits import Split


class ModelConfig(BaseModel):
    """Base of every model's hyper-parameters: frozen, typed, unknown keys rejected."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    similarity: Literal["dot", "cosine", "mol"] = "dot"  # how states and item vectors become scores
    temperature: float = Field(0.05, gt=0)         # cosine and mol scores are divided by this
    mol_components: int = Field(4, ge=1)           # mol: P query-side and P item-side components (P x P logits)
    mol_dim: int | None = Field(None, ge=1)        # mol: size of each component; null = the model's dim
    mol_gating: Literal["additive", "glu_silu"] = "additive"   # mol: seqrec's additive gate, or the RAILS
                                                   # reference's (glu_silu; the keys below are for it)
    mol_gate_hidden: int | None = Field(None, ge=1)   # mol: width of the gating MLPs; null = dim (additive), 128
    mol_query_components: int | None = Field(None, ge=1)  # glu_silu: P_Q query-side components; null = P
    mol_query_hidden: int = Field(0, ge=0)         # glu_silu: query side SwiGLU D -> H -> P_Q d; 0 = one linear map
    mol_item_dropout: float = Field(0.0, ge=0, lt=1)   # glu_silu: dropout on item vectors before their projection
    mol_gate_dropout: float = Field(0.0, ge=0, lt=1)   # glu_silu: dropout on the mixture weights (renormalised)
    mol_balance: float = Field(0.0, ge=0)          # glu_silu: weight of the load-balancing loss (reference 0.001)
    mol_user_buckets: int = Field(0, ge=0)         # glu_silu: > 0: one query component is a user-id embedding
                                                   # (dense user index mod buckets; reference 6,040); HSTU only
    mol_user_dropout: float = Field(0.0, ge=0, lt=1)   # glu_silu: dropout on the user embedding (reference 0.5)
    mol_user_l2: float = Field(0.0, ge=0)          # glu_silu: weight of its mean squared norm in the loss (0.1)

    @model_validator(mode="after")
    def _mol_keys_need_glu_silu(self) -> ModelConfig:
        """The reference gate's keys mean nothing to the additive gate: setting one there is a mistake."""
        if self.mol_gating != "glu_silu":
            given = [f"mol_{key}" for key in ("query_components", "query_hidden", "item_dropout", "gate_dropout",
                                              "balance", "user_buckets", "user_dropout", "user_l2")
                     if getattr(self, f"mol_{key}") not in (None, 0, 0.0)]
            if given:
                raise PydanticCustomError("seqrec", "{message}", {
                    "message": f"{', '.join(given)} only apply with mol_gating: glu_silu (similarity: mol); "
                               f"mol_gating is {self.mol_gating!r}", "key": f"model.{given[0]}"})
        return self


def last_positions(items: Tensor) -> Tensor:
    """[B] int64 index of the last real (non-zero) item of each row; 0 for an empty row."""
    length = items.shape[1]
    valid = (items != 0).to(torch.int64)                                       # [B, L]
    # argmax over a ramp of valid positions finds the last real column for any alignment
    ramp = valid * torch.arange(1, length + 1, device=items.device)             # [B, L]
    return (ramp.argmax(dim=1)).clamp(min=0)


def align_right(items: Tensor) -> tuple[Tensor, Tensor]:
    """Move each row's real items to the end, keeping their order: (aligned [B, L], order [B, L]).

    `aligned = items.gather(1, order)`; one stable sort, no loop over rows.
    """
    order = torch.argsort((items != 0).to(torch.int8), dim=1, stable=True)    # padding first, then real items
    return items.gather(1, order), order


def align_left(items: Tensor) -> tuple[Tensor, Tensor]:
    """Move each row's real items to the start, keeping their order: (aligned [B, L], order [B, L])."""
    order = torch.argsort((items == 0).to(torch.int8), dim=1, stable=True)    # real items first, then padding
    return items.gather(1, order), order


class SequentialRecommender(nn.Module):
    """Base class: see the module docstring for the contract."""

    name: ClassVar[str]
    config_class: ClassVar[type[ModelConfig]]
    trainable: ClassVar[bool] = True
    objective: ClassVar[str] = "causal"   # how training batches are built (seqrec.train.objectives)
    causal: ClassVar[bool] = True         # the state at position t depends on items up to t only
    reads_users: ClassVar[bool] = False   # may append a user-id component to its states (`with_users`)

    def __init__(self, config: ModelConfig, num_items: int) -> None:
        super().__init__()
        self.config = config
        self.num_items = int(num_items)
        self.similarity = make_similarity(
            config.similarity, config.temperature, dim=getattr(config, "dim", 1), components=config.mol_components,
            component_dim=config.mol_dim, gating=config.mol_gating, query_components=config.mol_query_components,
            query_hidden=config.mol_query_hidden, item_dropout=config.mol_item_dropout,
            gate_hidden=config.mol_gate_hidden, gate_dropout=config.mol_gate_dropout, balance=config.mol_balance,
            user_buckets=config.mol_user_buckets, user_dropout=config.mol_user_dropout, user_l2=config.mol_user_l2)
        if self.user_buckets and not self.reads_users:
            raise ConfigError(f"model.mol_user_buckets: model {self.name!r} does not read user ids; a MoL user-id "
                              "component needs model hstu")

    @property
    def max_len(self) -> int:
        """Longest history the model reads (L); histories are cut to their last `max_len` items."""
        return int(getattr(self.config, "max_len", 1))

    def check_width(self, items: Tensor) -> None:
        """Refuse rows wider than `max_len` (the position tables and the attention scale are sized by it)."""
        if items.shape[1] > self.max_len:
            raise ValueError(f"sequence length {items.shape[1]} exceeds max_len={self.max_len}")

    def forward(self, batch: CausalBatch) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def item_embeddings(self) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def fit(self, split: Split) -> None:
        """Fit a model that is not trained by gradient descent (`trainable = False`, e.g. Pop) on `split`."""
        raise NotImplementedError(f"model {self.name!r} is trained by gradient descent (seqrec.train.Trainer)")

    def masking(self) -> tuple[int, float, float]:
        """(mask token id, share of items masked, share of rows with only the last item masked): what the
        `"masked"` objective needs (`seqrec.train.objectives.mask_items`); only models trained that way have it."""
        raise NotImplementedError(f"model {self.name!r} is not trained with masked items")

    @property
    def side_inputs(self) -> Mapping[str, InputSetting]:
        """The per-position inputs the model reads besides the items (names in `seqrec.data.batches.SIDE_INPUTS`),
        each with the setting that asks for it; the one place a model says what it reads. None by default."""
        return {}

    @property
    def inputs(self) -> tuple[str, ...]:
        """Every per-position input the model reads: `("items",)` and its `side_inputs`."""
        return ("items", *self.side_inputs)

    @property
    def user_buckets(self) -> int:
        """U: a model whose similarity has a user-id component reads user buckets 1..U (0 = padding/unknown
        user, `CausalBatch.users`); 0 for the others."""
        return int(getattr(self.similarity, "user_buckets", 0))

    def with_users(self, states: Tensor, users: Tensor | None) -> Tensor:
        """States [..., D] with the similarity's user-id component appended ([..., D + d]) when it has one
        (`mol_user_buckets`); `users` [...] are bucket ids (`CausalBatch.users`). Unchanged otherwise."""
        if not self.user_buckets:
            return states
        if users is None:
            raise ValueError("mol_user_buckets > 0 needs user ids in the batch (CausalBatch.users)")
        return torch.cat([states, self.similarity.user_vectors(users).to(states.dtype)], dim=-1)  # type: ignore

    @property
    def num_ratings(self) -> int:
        """R: a model that reads `ratings` reads rating ids 1..R (0 = padding/unknown); 0 for the others."""
        return int(getattr(self.config, "num_ratings", 0)) if "ratings" in self.side_inputs else 0

    def predict(self, items: Tensor, times: Tensor | None = None, *, ratings: Tensor | None = None,
                users: Tensor | None = None) -> Tensor:
        """[B, D] state after the last real item of each history `items` [B, L], given the side inputs the
        model reads (`side_inputs`: timestamps `times`, rating ids `ratings`, user buckets `users`, [B, L]
        each)."""
        return self.predict_batch(CausalBatch(items=items, times=times, ratings=ratings, users=users))

    def predict_batch(self, batch: CausalBatch) -> Tensor:
        """[B, D] state after the last real item of each row of `batch` (`predict`'s work; a model overrides
        this one to compute the last state more cheaply than `forward` at every position)."""
        states = self(batch)                                                          # [B, L, D]
        last = last_positions(batch.items)                                            # [B]
        return states[torch.arange(batch.items.shape[0], device=batch.items.device), last]  # [B, D]

    def score(self, states: Tensor, item_ids: Tensor | None = None) -> Tensor:
        """Scores [B, C] of `states` [B, D] against items `item_ids` [C] (all N + 1 rows when None)."""
        table = self.item_embeddings()
        if item_ids is not None:
            table = table[item_ids]
        return self.similarity(states, table)
