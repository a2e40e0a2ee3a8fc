"""Similarity modules: turn query states and item vectors into scores (the generative-recommenders idea of
keeping scoring apart from encoding).

Every module has two forms:
- `forward(queries [B, D], items [C, D]) -> [B, C]`: every query against a shared set of items (ranking, full
  softmax);
- `pairwise(queries [M, D], items [M, K, D]) -> [M, K]`: each query against its own items (positives and
  sampled negatives);
- `gathered(queries [M, D], table [N, D], ids [M, K]) -> [M, K]`: `pairwise(queries, table[ids])`, where a
  similarity with per-item work (the cosine's normalisation, MoL's item projections and gates) may do that work
  once per table row instead of once per drawn id. `table` may also be a lookup-only view of the table
  (`seqrec.train.losses.SparseRows`, anything that is not a Tensor): then only `table[ids]` is read.

`temperature` divides the normalised similarities (`cosine`, `mol`), whose values lie in [-1, 1]; the plain dot
product has none (its scale is learned with the vectors). HSTU's reference scores L2-normalised states against
L2-normalised item embeddings divided by a temperature, which is `cosine`.
"""

from __future__ import annotations

import functools
from typing import Any, Protocol

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from seqrec.models.layers.chunks import chunk_rows
from seqrec.models.layers.gated_mol import GatedMixtureOfLogits


class Rows(Protocol):
    """An item table [N + 1, D] read by row lookups `table[ids]`: a Tensor, or a table whose lookups give sparse
    gradients (`seqrec.train.losses.SparseRows`)."""

    @property
    def shape(self) -> torch.Size: ...

    def __getitem__(self, ids: Tensor, /) -> Tensor: ...


class DotProduct(nn.Module):
    """score = <q, v>."""

    def forward(self, queries: Tensor, items: Tensor) -> Tensor:
        return queries @ items.transpose(0, 1)                        # [B, C]

    def operands(self, queries: Tensor, items: Tensor) -> tuple[Tensor, Tensor]:
        """(q, v) with `forward(queries, items) == q @ v.T`."""
        return queries, items

    def pairwise(self, queries: Tensor, items: Tensor) -> Tensor:
        return (items * queries.unsqueeze(1)).sum(-1)                 # [M, K]

    def gathered(self, queries: Tensor, table: Rows, ids: Tensor) -> Tensor:
        return self.pairwise(queries, table[ids])                     # [M, K]


class Cosine(nn.Module):
    """score = cos(q, v) / temperature."""

    def __init__(self, temperature: float = 0.05) -> None:
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        self.temperature = float(temperature)

    def forward(self, queries: Tensor, items: Tensor) -> Tensor:
        q, v = self.operands(queries, items)
        return q @ v.transpose(0, 1)                                  # [B, C]

    def operands(self, queries: Tensor, items: Tensor) -> tuple[Tensor, Tensor]:
        """(q, v) with `forward(queries, items) == q @ v.T`: both normalised, the temperature on the queries."""
        return F.normalize(queries, dim=-1) / self.temperature, F.normalize(items, dim=-1)

    def pairwise(self, queries: Tensor, items: Tensor) -> Tensor:
        q, v = F.normalize(queries, dim=-1), F.normalize(items, dim=-1)
        return (v * q.unsqueeze(1)).sum(-1) / self.temperature        # [M, K]

    def gathered(self, queries: Tensor, table: Rows, ids: Tensor) -> Tensor:
        if ids.numel() < table.shape[0] or not isinstance(table, Tensor):   # few ids, or lookups only
            return self.pairwise(queries, table[ids])
        q, v = F.normalize(queries, dim=-1), F.normalize(table, dim=-1)[ids]
        return (v * q.unsqueeze(1)).sum(-1) / self.temperature        # [M, K]


class MixtureOfLogits(nn.Module):
    """Mixture of logits (MoL; Zhai et al., "Revisiting Neural Retrieval on Accelerators", KDD 2023).

    score(q, x) = sum over pairs (p, r) of pi_pr(q, x) * <f_p(q), g_r(x)> / temperature, where

    - f_1..f_P(q) = rows of `query_proj(q)` [P, d] and g_1..g_P(x) = rows of `item_proj(x)` [P, d], each
      L2-normalised, so every one of the P x P component logits is a cosine in [-1, 1];
    - pi(q, x) = softmax over the P x P pairs of `query_gate(q) + item_gate(x) + logit_gate(logits)`: the
      gating network sees the query, the item and the pairwise logits (as in generative-recommenders' MoL, its
      query and item parts are MLPs evaluated once per query and once per item, not once per pair).

    With P = 1 the gate is exactly 1 and the score is cos(query_proj(q), item_proj(x)) / temperature, which with
    identity projections (weight I, bias 0) is `Cosine`. Its parameters are trained with the model (it is the model's
    `similarity` submodule); the fused dot-product CE does not apply to it, losses go through autograd.

    Args:
        dim: D, size of states and item vectors.
        components: P, components per side (P x P logits per score).
        component_dim: d, size of each component (default D).
        temperature: the mixed cosine is divided by this.
        hidden: width of the query and item gating MLPs (default D).
        max_block: `forward` scores the items in chunks of at most this many pair logits.
        gather_block: `gathered` scores the query rows in chunks of at most this many gathered component values
            (rows x K x P x d); default 2^19 per CPU thread (2 MB each, kept in cache), 2^26 on an accelerator.
    """

    def __init__(self, dim: int, components: int = 4, component_dim: int | None = None, temperature: float = 0.05,
                 hidden: int | None = None, max_block: int = 1 << 22, gather_block: int | None = None) -> None:
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        self.components, self.component_dim = int(components), int(component_dim or dim)
        self.temperature, self.max_block = float(temperature), int(max_block)
        self.gather_block = gather_block
        pairs, hidden = self.components ** 2, int(hidden or dim)
        self.query_proj = nn.Linear(dim, self.components * self.component_dim)
        self.item_proj = nn.Linear(dim, self.components * self.component_dim)
        self.query_gate = nn.Sequential(nn.Linear(dim, hidden), nn.SiLU(), nn.Linear(hidden, pairs))
        self.item_gate = nn.Sequential(nn.Linear(dim, hidden), nn.SiLU(), nn.Linear(hidden, pairs))
        self.logit_gate = nn.Linear(pairs, pairs)

    def _parts(self, x: Tensor, proj: nn.Linear) -> Tensor:
        """[..., P, d] L2-normalised components of x [..., D]."""
        return F.normalize(proj(x).unflatten(-1, (self.components, self.component_dim)), dim=-1)

    def _mix(self, logits: Tensor, gate: Tensor) -> Tensor:
        """Scores [...] from pair logits [..., P * P] and the query + item gate terms broadcast to them."""
        weights = torch.softmax(gate + self.logit_gate(logits), dim=-1)              # [..., P * P]
        return (weights * logits).sum(-1) / self.temperature

    def forward(self, queries: Tensor, items: Tensor) -> Tensor:
        q, x = self._parts(queries, self.query_proj), self._parts(items, self.item_proj)   # [B, P, d], [C, P, d]
        gate_q, gate_x = self.query_gate(queries), self.item_gate(items)                  # [B, P*P], [C, P*P]
        chunk = max(1, self.max_block // max(1, queries.shape[0] * self.components ** 2))
        blocks = []
        for start in range(0, items.shape[0], chunk):                                    # item chunks, not rows
            logits = torch.einsum("bpd,crd->bcpr", q, x[start:start + chunk]).flatten(2)  # [B, c, P*P]
            gate = gate_q.unsqueeze(1) + gate_x[start:start + chunk].unsqueeze(0)          # [B, c, P*P]
            blocks.append(self._mix(logits, gate))                                        # [B, c]
        return torch.cat(blocks, dim=1) if blocks else queries.new_zeros(queries.shape[0], 0)

    def pairwise(self, queries: Tensor, items: Tensor) -> Tensor:
        q, x = self._parts(queries, self.query_proj), self._parts(items, self.item_proj)   # [M, P, d], [M, K, P, d]
        logits = torch.einsum("mpd,mkrd->mkpr", q, x).flatten(2)                           # [M, K, P*P]
        gate = self.query_gate(queries).unsqueeze(1) + self.item_gate(items)               # [M, K, P*P]
        return self._mix(logits, gate)                                                     # [M, K]

    def gathered(self, queries: Tensor, table: Rows, ids: Tensor) -> Tensor:
        """`pairwise(queries, table[ids])` with the item projections and gates computed once per table row and
        then gathered (per drawn id they would cost M * K MLP evaluations: 128 negatives for each of ~15,000
        positions against a 3,417-row table on ML-1M)."""
        if ids.numel() < table.shape[0] or not isinstance(table, Tensor):                  # few ids: per id
            return self.pairwise(queries, table[ids])
        per_row = ids.shape[1] * self.components * self.component_dim
        rows = (max(1, self.gather_block // per_row) if self.gather_block
                else chunk_rows(per_row, 1 << 19, queries.device, accelerator=1 << 26))
        # the pairs in item-major order (r, p), the order in which one product gives the logits: the gates and
        # the logit gate are permuted to it (their own order is query-major, (p, r))
        order = torch.arange(self.components ** 2, device=queries.device).view(self.components, -1).t().flatten()
        inputs = (self._parts(queries, self.query_proj), self._parts(table, self.item_proj),  # [M, P, d], [N, P, d]
                  self.query_gate(queries)[:, order], self.item_gate(table)[:, order],         # [M, P*P], [N, P*P]
                  self.logit_gate.weight[order][:, order], self.logit_gate.bias[order])
        dtype = functools.reduce(torch.promote_types, [t.dtype for t in inputs])           # fp32 under autocast
        with torch.autocast(queries.device.type, enabled=False):
            return _GatheredMixture.apply(*(t.to(dtype) for t in inputs), ids, self.temperature, rows)  # [M, K]


class _GatheredMixture(torch.autograd.Function):
    """MoL's `gathered` scores, computed `rows` query rows at a time and recomputed in the backward.

    Through autograd, scoring M positions against K drawn items each materialises the gathered item components
    [M, K, P, d] (ML-1M, HSTU-large: 19,000 positions x 128 negatives x 4 x 32 floats = 1.2 GB), writes a
    gradient of the same size and scatters it back, and keeps the [M, K, P*P] logits, gates and weights for the
    backward: most of an HSTU-large + MoL step. Here each chunk's gathered components stay in cache: the forward
    keeps only the scores' inputs, and the backward gathers each chunk again, recomputes its mixture and writes
    the gradients of the query components, the table's components (summed per table row), both gate terms and
    the logit gate's weight and bias, which are autograd's (tested against it in float64).

    The pairs come in item-major order (r, p). With u = sum_j w_j l_j over the P*P pair logits l, w = softmax(z),
    z = gate_q + gate_x + l W^T + b and score u / T: du/dz_i = w_i (l_i - u) and du/dl_j = w_j + sum_i du/dz_i W_ij.
    """

    @staticmethod
    def forward(ctx: Any, q: Tensor, x: Tensor, gate_q: Tensor, gate_x: Tensor, weight: Tensor, bias: Tensor,
                ids: Tensor, temperature: float, rows: int) -> Tensor:
        ctx.save_for_backward(q, x, gate_q, gate_x, weight, bias, ids)
        ctx.temperature, ctx.rows = temperature, rows
        out = q.new_empty(ids.shape)
        for start in range(0, ids.shape[0], rows):
            chunk = slice(start, start + rows)
            out[chunk] = _GatheredMixture._mixture(q[chunk], x, gate_q[chunk], gate_x, weight, bias,
                                                   ids[chunk])[3] / temperature
        return out

    @staticmethod
    def _mixture(q: Tensor, x: Tensor, gate_q: Tensor, gate_x: Tensor, weight: Tensor, bias: Tensor, ids: Tensor
                 ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """(gathered components [c, K*P, d], logits [c, K, P*P], mixture weights [c, K, P*P], mixed logits u
        [c, K]) of one chunk of rows."""
        c, k = ids.shape
        flat = ids.flatten()
        parts = x.flatten(1).index_select(0, flat).view(c, k * x.shape[1], -1)     # [c, K*P, d]
        logits = torch.bmm(parts, q.transpose(1, 2)).view(c, k, -1)                  # [c, K, P*P], (r, p)
        z = torch.addmm(bias, logits.flatten(0, 1), weight.t()).view_as(logits)      # l W^T + b
        z += gate_q.unsqueeze(1)
        z += gate_x.index_select(0, flat).view_as(z)
        weights = torch.softmax(z, dim=-1)
        return parts, logits, weights, (weights * logits).sum(-1)

    @staticmethod
    def backward(ctx: Any, grad_out: Tensor) -> tuple[Tensor | None, ...]:
        q, x, gate_q, gate_x, weight, bias, ids = ctx.saved_tensors
        p = q.shape[1]
        grad_q, grad_x = torch.zeros_like(q), torch.zeros_like(x)
        grad_gate_q, grad_gate_x = torch.zeros_like(gate_q), torch.zeros_like(gate_x)
        grad_weight, grad_bias = torch.zeros_like(weight), torch.zeros_like(bias)
        for start in range(0, ids.shape[0], ctx.rows):
            chunk = slice(start, start + ctx.rows)
            rows_ids = ids[chunk]
            c, k = rows_ids.shape
            parts, logits, weights, mixed = _GatheredMixture._mixture(q[chunk], x, gate_q[chunk], gate_x, weight,
                                                                      bias, rows_ids)
            g = (grad_out[chunk] / ctx.temperature).unsqueeze(-1)                    # [c, K, 1]
            grad_z = g * weights * (logits - mixed.unsqueeze(-1))                    # [c, K, P*P]
            flat_z = grad_z.flatten(0, 1)                                            # [c*K, P*P]
            grad_logits = (g * weights).flatten(0, 1).addmm_(flat_z, weight).view_as(logits)
            grad_weight.addmm_(flat_z.t(), logits.flatten(0, 1))
            grad_bias += flat_z.sum(0)
            grad_gate_q[chunk] = grad_z.sum(1)
            grad_gate_x.index_add_(0, rows_ids.flatten(), flat_z)
            grad_l = grad_logits.view(c, -1, p)                                      # [c, K*P(r), P(p)]
            grad_q[chunk] = torch.bmm(grad_l.transpose(1, 2), parts)                 # [c, P, d]
            grad_parts = torch.bmm(grad_l, q[chunk])                                 # [c, K*P, d]
            grad_x.index_add_(0, rows_ids.flatten(), grad_parts.view(c * k, *x.shape[1:]))
        return grad_q, grad_x, grad_gate_q, grad_gate_x, grad_weight, grad_bias, None, None, None


SIMILARITIES = {"dot": DotProduct, "cosine": Cosine, "mol": MixtureOfLogits}
Similarity = DotProduct | Cosine | MixtureOfLogits | GatedMixtureOfLogits
MOL_GATINGS = ("additive", "glu_silu")


def make_similarity(name: str, temperature: float = 0.05, *, dim: int = 1, components: int = 4,
                    component_dim: int | None = None, gating: str = "additive", query_components: int | None = None,
                    query_hidden: int = 0, item_dropout: float = 0.0, gate_hidden: int | None = None,
                    gate_dropout: float = 0.0, balance: float = 0.0, user_buckets: int = 0, user_dropout: float = 0.0,
                    user_l2: float = 0.0) -> Similarity:
    """The similarity module `name`; `dim` (D), `components` (P) and `component_dim` (d) size MoL. MoL's
    `gating` is seqrec's additive gate (`MixtureOfLogits`, P x P logits) or the RAILS reference's
    (`glu_silu`: `GatedMixtureOfLogits`, `query_components` x `components` logits, and the other keywords)."""
    if name == "cosine":
        return Cosine(temperature)
    if name == "dot":
        return DotProduct()
    if name == "mol" and gating == "glu_silu":
        return GatedMixtureOfLogits(dim, query_components or components, components, component_dim or dim,
                                    temperature, query_hidden, item_dropout, gate_hidden or 128, gate_dropout,
                                    balance, user_buckets=user_buckets, user_dropout=user_dropout, user_l2=user_l2)
    if name == "mol" and gating == "additive":
        return MixtureOfLogits(dim, components, component_dim, temperature, hidden=gate_hidden)
    if name == "mol":
        raise ValueError(f"unknown MoL gating {gating!r}; known: {', '.join(MOL_GATINGS)}")
    raise ValueError(f"unknown similarity {name!r}; known: {', '.join(SIMILARITIES)}")
