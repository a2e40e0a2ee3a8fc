"""Mixture of logits with the gating of the RAILS reference (Ding et al., "Retrieval with Learned Similarities",
2024; github.com/bailuding/rails, `rails/similarities/mol/similarity_fn.py` and its ML-1M config), the MoL that
paper's HSTU-large + MoL figure was measured with (`similarity: mol`, `mol_gating: glu_silu`).

For a query q (a state) and an item x (its table row):

- P_Q query components f_p(q) = rows of `query_proj(q)` (a SwiGLU MLP D -> H -> P_Q * d when `query_hidden` > 0,
  else one linear map) and P_X item components g_r(x) = rows of `item_proj(dropout(x))`, each L2-normalised;
  with `user_buckets` > 0 the last query component is instead the user's row of a user-id table (the reference's
  `uid_embedding_hash_sizes`): the model appends it to its states (`user_vectors`, dropout `user_dropout`), so a
  query is then [D + d] (state, user part), and a zero user part (an unknown user, bucket 0) gives that
  component's logits 0;
- the P_Q * P_X logits l_pr = <f_p(q), g_r(x)> / temperature;
- gate z = query_gate(q) * item_gate(x) + pair_gate(l) (the query and item parts are MLPs evaluated once per
  query and once per item, the pair part an MLP over each pair's L = P_Q * P_X logits), weights
  w = softmax(silu(z)), in training dropped out with `gate_dropout` and renormalised to sum 1;
- score(q, x) = sum over pairs of w_pr * l_pr.

The reference's load-balancing regulariser (its `mi_loss`: minus the entropy of the batch's mean gate weights
plus the mean entropy of each pair's weights; weight 0.001 in its ML-1M config) is collected over the calls of
a training step, from `begin_step()` to `aux_loss()`, which returns it for the training step to add to the loss
(`balance` is its weight; 0 = none), with the reference's penalty on the user embeddings' mean squared norm
(`user_l2`). Within a step the query and table sides are computed once per tensor (the
loss scores the positives and then the negatives of the same states against the same table).

Cost: the pair gate's MLP runs on every (query, item) pair, L -> `gate_hidden` -> L: for sampled softmax over K
negatives that is M * (K + 1) small MLP evaluations per step. `gathered` scores chunks of query rows in a custom
autograd function (`_GatheredMix`) that recomputes each chunk in the backward, so the [M, K, hidden] activations
never exist for the whole batch, and adds the table's gradient chunk by chunk into one tensor. The gate dropout
draws its masks as `keep_mask` lanes (p in steps of 1/32768) and, being renormalised, needs no 1 / (1 - p).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from seqrec.models.layers.attention import keep_mask
from seqrec.models.layers.chunks import chunk_rows

EPS = 1e-6


class SwiGLU(nn.Module):
    """silu(x A + a) * (x B + b): the reference's query-side hidden layer (`query_nonlinearity: swiglu`)."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.hidden = int(hidden)
        self.proj = nn.Linear(dim, 2 * self.hidden)
        nn.init.normal_(self.proj.weight, std=0.02)                  # as the reference's SwiGLU
        nn.init.zeros_(self.proj.bias)

    def forward(self, x: Tensor) -> Tensor:
        gate, value = self.proj(x).split(self.hidden, dim=-1)
        return F.silu(gate) * value


def _mlp(dim: int, hidden: int, out: int, bias: bool = True) -> nn.Sequential:
    """Linear -> SiLU -> Linear, Xavier-uniform weights and zero biases (the reference's gating MLPs)."""
    mlp = nn.Sequential(nn.Linear(dim, hidden), nn.SiLU(), nn.Linear(hidden, out, bias=bias))
    for layer in mlp:
        if isinstance(layer, nn.Linear):
            nn.init.xavier_uniform_(layer.weight)
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)
    return mlp


class GatedMixtureOfLogits(nn.Module):
    """Mixture of logits with the RAILS reference's gating; see the module docstring.

    Args:
        dim: D, size of states and item vectors.
        query_components: P_Q (the reference's ML-1M config: 8).
        item_components: P_X (4).
        component_dim: d, size of each component (64).
        temperature: each component logit is divided by this (0.05).
        query_hidden: H of the query side's SwiGLU MLP; 0 = one linear map (512).
        item_dropout: dropout on the item vector before its projection (0.1).
        gate_hidden: width of the three gating MLPs (128).
        gate_dropout: dropout on the mixture weights in training, renormalised (0.2).
        balance: weight of the load-balancing loss returned by `aux_loss()` (0.001); 0 = none.
        user_buckets: U > 0: the last query component is a user-id embedding of U buckets (6,040); 0 = none.
        user_dropout: dropout on the user embedding in training (0.5).
        user_l2: weight of the user embeddings' mean squared norm in `aux_loss()` (0.1).
        max_block: `forward` scores the items in chunks of at most this many pair values.
        gather_block: `gathered` scores the query rows in chunks of at most this many pair values (rows x K x
            max(L, gate_hidden)); default 2^20 per CPU thread (the fastest of 2^18 to 2^23 on ML-1M's shapes),
            2^24 on an accelerator.
    """

    def __init__(self, dim: int, query_components: int = 8, item_components: int = 4, component_dim: int = 64,
                 temperature: float = 0.05, query_hidden: int = 512, item_dropout: float = 0.1,
                 gate_hidden: int = 128, gate_dropout: float = 0.2, balance: float = 0.0, *, user_buckets: int = 0,
                 user_dropout: float = 0.0, user_l2: float = 0.0, max_block: int = 1 << 22,
                 gather_block: int | None = None) -> None:
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        self.pq, self.px, self.d = int(query_components), int(item_components), int(component_dim)
        self.dim, self.user_buckets = int(dim), int(user_buckets)
        self.user_dropout, self.user_l2 = float(user_dropout), float(user_l2)
        if self.user_buckets and self.pq < 2:
            raise ValueError("a user-id component needs at least 2 query components (the others come from the "
                             f"state), got {self.pq}")
        from_state = self.pq - (1 if self.user_buckets else 0)            # query components from the state
        self.pairs = self.pq * self.px
        self.temperature, self.gate_dropout, self.balance = float(temperature), float(gate_dropout), float(balance)
        self.gate_threshold = round(self.gate_dropout * 32768)      # `keep_mask`'s: p in steps of 1/32768
        self.gate_hidden, self.max_block, self.gather_block = int(gate_hidden), int(max_block), gather_block
        out = nn.Linear(query_hidden if query_hidden > 0 else dim, from_state * self.d)
        nn.init.xavier_uniform_(out.weight)
        nn.init.zeros_(out.bias)
        self.query_proj = nn.Sequential(SwiGLU(dim, query_hidden), out) if query_hidden > 0 else nn.Sequential(out)
        self.item_dropout = nn.Dropout(item_dropout)
        self.item_proj = nn.Linear(dim, self.px * self.d)
        nn.init.xavier_uniform_(self.item_proj.weight)
        nn.init.zeros_(self.item_proj.bias)
        self.query_gate = _mlp(dim, self.gate_hidden, self.pairs, bias=False)
        self.item_gate = _mlp(dim, self.gate_hidden, self.pairs, bias=False)
        self.pair_gate = _mlp(self.pairs, self.gate_hidden, self.pairs)
        # the user-id table (torch's N(0, 1) init, as the reference's nn.Embedding); row 0 = unknown user
        self.users = nn.Embedding(self.user_buckets + 1, self.d, padding_idx=0) if self.user_buckets else None
        self._user_sq: Tensor | None = None    # training: sum of the step's user embeddings' squared norms
        self._user_count = 0                   # training: real positions they were read at
        self._usage: Tensor | None = None      # training: sum of the gate weights over the step's pairs [L]
        self._entropy: Tensor | None = None    # training: sum of each pair's gate entropy
        self._count = 0                        # training: pairs scored in the step
        self._sides: dict[str, tuple[Tensor, Tensor, Tensor]] = {}   # training: the step's query / table sides
        self._in_step = False                  # between begin_step() and aux_loss()

    # -- the two sides, each computed once per tensor within a training step ---------------------------------

    def _side(self, key: str, x: Tensor) -> tuple[Tensor, Tensor]:
        """`_query_side(x)` (`key` "query") or `_item_side(x)` ("item"), kept for the rest of a training step."""
        cached = self._sides.get(key)
        if cached is not None and cached[0] is x:                 # the loss scores positives, then negatives
            return cached[1], cached[2]
        parts, gate = self._query_side(x) if key == "query" else self._item_side(x)
        if self._in_step and self.training and torch.is_grad_enabled():
            self._sides[key] = (x, parts, gate)
        return parts, gate

    def _query_side(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(L2-normalised components [..., P_Q, d], gate term [..., L]) of queries [..., D] or, with a user-id
        component, [..., D + d] (state, user part)."""
        state = x
        if self.users is not None:
            if x.shape[-1] != self.dim + self.d:
                raise ValueError(f"queries with a user part are [..., {self.dim + self.d}] (state, user part: "
                                 f"`user_vectors`), got [..., {x.shape[-1]}]")
            state = x[..., :self.dim]
        parts = self.query_proj(state).unflatten(-1, (-1, self.d))
        if self.users is not None:
            parts = torch.cat([parts, x[..., self.dim:].unsqueeze(-2)], dim=-2)       # [..., P_Q, d]
        return parts / parts.norm(dim=-1, keepdim=True).clamp(min=EPS), self.query_gate(state)

    def _item_side(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(L2-normalised components [..., P_X, d], gate term [..., L]) of item vectors [..., D]."""
        parts = self.item_proj(self.item_dropout(x)).unflatten(-1, (self.px, self.d))
        return parts / parts.norm(dim=-1, keepdim=True).clamp(min=EPS), self.item_gate(x)

    # -- the mixture -------------------------------------------------------------------------------------------

    def _pair_weights(self) -> tuple[Tensor, ...]:
        """The pair gate MLP's (weight, bias, weight, bias), which `gathered` hands to its autograd function."""
        first, last = self.pair_gate[0], self.pair_gate[2]
        assert isinstance(first, nn.Linear) and isinstance(last, nn.Linear)
        return first.weight, first.bias, last.weight, last.bias

    def _mix(self, logits: Tensor, gate: Tensor, pair: tuple[Tensor, ...] | None = None,
             keep: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
        """(scores [...], gate weight sums [L], entropy sum []) from pair logits [..., L] (already divided by
        the temperature) and the query x item gate term [..., L]; `pair` the pair gate's weights (default its
        own), `keep` the gate dropout's mask [..., L] (default a new draw in training)."""
        w1, b1, w2, b2 = self._pair_weights() if pair is None else pair
        weights = torch.softmax(F.silu(gate + F.linear(F.silu(F.linear(logits, w1, b1)), w2, b2)), dim=-1)
        if self.training and self.gate_dropout > 0:
            if keep is None:
                keep = keep_mask(weights.shape, self.gate_threshold, weights.device)
            weights = weights * keep                       # renormalised below, so no 1 / (1 - p) scaling
            weights = weights / weights.sum(-1, keepdim=True).clamp(min=EPS)
        scores = (weights * logits).sum(-1)
        if self.training and self.balance > 0:
            flat = weights.reshape(-1, self.pairs)
            return scores, flat.sum(0), -(flat * torch.log(flat + EPS)).sum()
        return scores, logits.new_zeros(()), logits.new_zeros(())

    def _record(self, usage: Tensor, entropy: Tensor, count: int) -> None:
        if self._in_step and self.training and self.balance > 0 and torch.is_grad_enabled():
            self._usage = usage if self._usage is None else self._usage + usage
            self._entropy = entropy if self._entropy is None else self._entropy + entropy
            self._count += count

    def _pair_logits(self, q: Tensor, parts: Tensor) -> Tensor:
        """[c, K, L] logits / temperature of queries q [c, Pq, d] against their items' components [c, K, Px, d]:
        one batched product [c, Pq, d] x [c, d, K * Px] (the widest output of the layouts measured), then the
        small [c, K, L] result reordered to the pairs' order (p, r)."""
        c, k = parts.shape[:2]
        logits = torch.bmm(q, parts.reshape(c, k * self.px, self.d).transpose(1, 2))    # [c, Pq, K * Px]
        return logits.view(c, self.pq, k, self.px).transpose(1, 2).reshape(c, k, self.pairs) / self.temperature

    def user_vectors(self, users: Tensor) -> Tensor:
        """[..., d] user-id components of bucket ids `users` [...] (0 = padding / unknown: zeros), dropped out in
        training; within a training step their squared norms are collected for `user_l2`."""
        if self.users is None:
            raise ValueError("this MoL has no user-id component (user_buckets: 0)")
        vectors = self.users(users)
        if self._in_step and self.training and self.user_l2 > 0 and torch.is_grad_enabled():
            real = users != 0
            squares = (vectors[real] ** 2).sum()
            self._user_sq = squares if self._user_sq is None else self._user_sq + squares
            self._user_count += int(real.sum())
        return F.dropout(vectors, self.user_dropout, training=self.training) if self.user_dropout else vectors

    def begin_step(self) -> None:
        """Start a training step: from here to `aux_loss()` the calls' gate weights and user embeddings are
        collected and each query / table tensor's side is computed once."""
        self._usage, self._entropy, self._count, self._sides, self._in_step = None, None, 0, {}, True
        self._user_sq, self._user_count = None, 0

    def aux_loss(self) -> Tensor | None:
        """End the training step `begin_step()` started: its load-balancing loss (weighted by `balance`) plus
        the user embeddings' mean squared norm (weighted by `user_l2`); None when nothing was collected. Forgets
        the step's tensors."""
        usage, entropy, count = self._usage, self._entropy, self._count
        user_sq, user_count = self._user_sq, self._user_count
        self._usage, self._entropy, self._count, self._sides, self._in_step = None, None, 0, {}, False
        self._user_sq, self._user_count = None, 0
        terms = []
        if usage is not None and entropy is not None and count:
            mean = usage / count
            terms.append(self.balance * ((mean * torch.log(mean + EPS)).sum() + entropy / count))
        if user_sq is not None and user_count:
            terms.append(self.user_l2 * user_sq / user_count)
        return sum(terms[1:], terms[0]) if terms else None

    # -- the three forms of a similarity -----------------------------------------------------------------------

    def forward(self, queries: Tensor, items: Tensor) -> Tensor:
        """[B, C] scores of every query against every item."""
        q, gate_q = self._side("query", queries)                                    # [B, Pq, d], [B, L]
        x, gate_x = self._side("item", items)                                       # [C, Px, d], [C, L]
        width = max(self.pairs, self.gate_hidden)
        chunk = max(1, self.max_block // max(1, queries.shape[0] * width))
        blocks = []
        for start in range(0, items.shape[0], chunk):                              # item chunks
            part = slice(start, start + chunk)
            logits = torch.einsum("bpd,crd->bcpr", q, x[part]).flatten(2) / self.temperature   # [B, c, L]
            scores, usage, entropy = self._mix(logits, gate_q.unsqueeze(1) * gate_x[part].unsqueeze(0))
            self._record(usage, entropy, logits.shape[0] * logits.shape[1])
            blocks.append(scores)
        return torch.cat(blocks, dim=1) if blocks else queries.new_zeros(queries.shape[0], 0)

    def pairwise(self, queries: Tensor, items: Tensor) -> Tensor:
        """[M, K] scores of each query [M, D] against its own items [M, K, D]."""
        q, gate_q = self._side("query", queries)                                    # [M, Pq, d], [M, L]
        x, gate_x = self._item_side(items)                                          # [M, K, Px, d], [M, K, L]
        logits = self._pair_logits(q, x)                                            # [M, K, L]
        scores, usage, entropy = self._mix(logits, gate_q.unsqueeze(1) * gate_x)
        self._record(usage, entropy, logits.shape[0] * logits.shape[1])
        return scores

    def gathered(self, queries: Tensor, table: Any, ids: Tensor) -> Tensor:
        """`pairwise(queries, table[ids])` with the item components and gate term computed once per table row
        (the item dropout then draws one mask per row and call, not one per drawn id), scored in chunks of
        query rows by `_GatheredMix` (each chunk recomputed in the backward)."""
        if ids.numel() < table.shape[0] or not isinstance(table, Tensor):              # few ids: per id
            return self.pairwise(queries, table[ids])
        q, gate_q = self._side("query", queries)                                    # [M, Pq, d], [M, L]
        x, gate_x = self._side("item", table)                                       # [N, Px, d], [N, L]
        per_row = ids.shape[1] * max(self.pairs, self.gate_hidden)
        rows = (max(1, self.gather_block // per_row) if self.gather_block
                else chunk_rows(per_row, 1 << 20, queries.device, accelerator=1 << 24))
        scores, usage, entropy = _GatheredMix.apply(self, rows, q, gate_q, x, gate_x, ids, *self._pair_weights())
        self._record(usage, entropy, ids.numel())
        return scores

    def _gathered_chunk(self, q: Tensor, gate_q: Tensor, x: Tensor, gate_x: Tensor, ids: Tensor,
                        pair: tuple[Tensor, ...], keep: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
        """`_mix` of queries q [c, Pq, d] against their items `ids` [c, K] of the table sides x, gate_x."""
        flat = ids.flatten()
        parts = x.index_select(0, flat).view(*ids.shape, self.px, self.d)           # [c, K, Px, d]
        gate = gate_q.unsqueeze(1) * gate_x.index_select(0, flat).view(*ids.shape, -1)    # [c, K, L]
        return self._mix(self._pair_logits(q, parts), gate, pair, keep)


class _GatheredMix(torch.autograd.Function):
    """`GatheredMixtureOfLogits._gathered_chunk` over chunks of `rows` query rows: (scores [M, K], gate weight
    sums [L], entropy sum []), with the gradients of queries, table sides and the pair gate's weights.

    The forward keeps only its inputs and the gate dropout's masks (bools, [M, K, L]). The backward recomputes
    each chunk's logits, runs the gate and mixture under autograd from them, and turns the logits' gradient into
    the queries' and gathered components' by two batched products in row-contiguous layouts, adding the latter
    into one gradient of the table (`index_add_`). Checkpointing each chunk through autograd, as before, cost
    1.4x this on ML-1M's shapes: it zero-filled a whole-table gradient per chunk and scattered into it with
    `index_put_`, wrote the components' gradient transposed and copied it, and drew the masks twice.
    """

    @staticmethod
    def forward(ctx: Any, mol: GatedMixtureOfLogits, rows: int, q: Tensor, gate_q: Tensor, x: Tensor,
                gate_x: Tensor, ids: Tensor, *pair: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        dropout, stats = mol.training and mol.gate_dropout > 0, mol.training and mol.balance > 0
        scores, masks = q.new_empty(ids.shape), []
        usage, entropy = q.new_zeros(mol.pairs), q.new_zeros(())
        for start in range(0, ids.shape[0], rows):
            part = slice(start, start + rows)
            keep = (keep_mask((*ids[part].shape, mol.pairs), mol.gate_threshold, q.device) if dropout else None)
            masks.append(keep)
            scores[part], u, e = mol._gathered_chunk(q[part], gate_q[part], x, gate_x, ids[part], pair, keep)
            usage, entropy = usage + u, entropy + e
        ctx.save_for_backward(q, gate_q, x, gate_x, ids, *pair)
        ctx.mol, ctx.rows, ctx.masks, ctx.stats = mol, rows, masks, stats
        return scores, usage, entropy

    @staticmethod
    def backward(ctx: Any, grad_scores: Tensor, grad_usage: Tensor, grad_entropy: Tensor) -> tuple[Any, ...]:
        q, gate_q, x, gate_x, ids, *pair = ctx.saved_tensors
        mol, need = ctx.mol, ctx.needs_input_grad[2:]                     # q, gate_q, x, gate_x, ids, *pair
        grad_q = torch.empty_like(q) if need[0] else None
        grad_gate_q = torch.empty_like(gate_q) if need[1] else None
        grad_x = torch.zeros_like(x) if need[2] else None
        grad_gate_x = torch.zeros_like(gate_x) if need[3] else None
        grad_pair = [torch.zeros_like(w) if n else None for w, n in zip(pair, need[5:], strict=True)]
        for keep, start in zip(ctx.masks, range(0, ids.shape[0], ctx.rows), strict=True):
            part = slice(start, start + ctx.rows)
            chunk = ids[part]
            c, k, flat = chunk.shape[0], chunk.shape[1], chunk.flatten()
            q_part = q[part]
            parts = x.index_select(0, flat).view(c, k * mol.px, mol.d)                  # [c, K * Px, d]
            # the leaves of the chunk's graph (the backward runs without grad, so none has a history)
            logits = mol._pair_logits(q_part, parts.view(c, k, mol.px, mol.d)).requires_grad_(need[0] or need[2])
            gq = gate_q[part].detach().requires_grad_(need[1])
            gx = gate_x.index_select(0, flat).view(c, k, -1).requires_grad_(need[3])
            with torch.enable_grad():
                weights = [w.detach().requires_grad_(n) for w, n in zip(pair, need[5:], strict=True)]
                scores, usage, entropy = mol._mix(logits, gq.unsqueeze(1) * gx, tuple(weights), keep)
                outputs, upstream = [scores], [grad_scores[part]]
                if ctx.stats:
                    outputs, upstream = [scores, usage, entropy], [grad_scores[part], grad_usage, grad_entropy]
                leaves = [t for t in (logits, gq, gx, *weights) if t.requires_grad]
                got = dict(zip(map(id, leaves), torch.autograd.grad(outputs, leaves, upstream, allow_unused=True),
                               strict=True))
            g_logits = got.get(id(logits))
            if g_logits is not None:                      # [c, K, Pq, Px] -> [c, Pq, K * Px], / temperature
                g = (g_logits.view(c, k, mol.pq, mol.px).transpose(1, 2).reshape(c, mol.pq, k * mol.px)
                     / mol.temperature)
                if grad_q is not None:
                    torch.bmm(g, parts, out=grad_q[part])                                # [c, Pq, d]
                if grad_x is not None:                                                    # [c, K * Px, d]
                    grad_x.index_add_(0, flat, torch.bmm(g.transpose(1, 2), q_part).view(c * k, mol.px, mol.d))
            g_gq, g_gx = got.get(id(gq)), got.get(id(gx))
            if grad_gate_q is not None:
                grad_gate_q[part] = 0 if g_gq is None else g_gq
            if grad_gate_x is not None and g_gx is not None:
                grad_gate_x.index_add_(0, flat, g_gx.flatten(0, 1))
            for acc, w in zip(grad_pair, weights, strict=True):
                g_w = got.get(id(w))
                if acc is not None and g_w is not None:
                    acc += g_w
        return (None, None, grad_q, grad_gate_q, grad_x, grad_gate_x, None, *grad_pair)
