"""The HSTU block (Zhai et al., "Actions Speak Louder than Words", ICML 2024) and its relative attention bias.

One block, for input x [B, L, D]:

    U, V, Q, K = split(SiLU(Linear(LayerNorm(x))))          pointwise projection
    A = SiLU(Q K^T + rab) / n * allowed                     pointwise attention: no softmax
    x = x + Linear(Dropout(LayerNorm(A V) * U))             gated output, residual

`allowed` is the causal mask restricted to real keys, so padding never reaches a real position. There is no
softmax, so nothing normalises a row: `n` is a constant, the model's `max_len` (the reference divides by the
padded sequence length, which is `max_len` there). A constant keeps every state independent of how much
padding a row carries; dividing by the number of visible items instead would turn the block into an average.

`rab[b, i, j]` is a learned scalar per distance between query i and key j, counted in real items (so the
bias does not depend on where the padding is), plus, when timestamps are given, a learned scalar per
log-bucket of their time gap (`time_buckets`). As in the reference, each block has its own bias weights, shared
by its heads. Deviation: the reference measures the time gap of query i from the timestamp of the item *after*
i (the time the prediction is made); here it is measured from item i itself, so no state depends on anything
after it.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from seqrec.models.layers.attention import Dropout
from seqrec.models.layers.chunks import chunk_rows


def time_buckets(gaps: Tensor, num_buckets: int, base: float = 0.301) -> Tensor:
    """int64 bucket of each time gap (any sign): floor(log(max(1, |gap|)) / base), clamped to [0, num_buckets].

    With the reference's base 0.301 a bucket spans a factor e^0.301 = 1.35 in time: gaps of 0 and 1 s share
    bucket 0, one hour is bucket 27, one day 37; gaps beyond e^(0.301 * num_buckets) share the last bucket.
    """
    magnitude = gaps.abs().clamp(min=1).to(torch.float32)
    return (torch.log(magnitude) / base).floor().to(torch.int64).clamp(0, num_buckets)


def causal_valid_mask(valid: Tensor) -> Tensor:
    """[B, 1, L, L] float, 1 where query i may read key j: j <= i and j is a real item."""
    length = valid.shape[1]
    earlier = torch.ones(length, length, dtype=torch.bool, device=valid.device).tril()   # [L, L]
    return (earlier & valid[:, None, :]).unsqueeze(1).float()                           # [B, 1, L, L]


def bias_indices(valid: Tensor, times: Tensor | None, max_len: int, num_buckets: int, base: float = 0.301, *,
                 shared: bool = True) -> tuple[Tensor, Tensor | None]:
    """Gather indices of the relative bias, computed once per batch and shared by the blocks.

    Returns:
        distance [B, L, L] int64, the number of real items after key j up to query i, clamped to
        [0, max_len - 1] (pairs that the causal mask removes clamp to 0); buckets [B, L, L] int64 of the time
        gap t_i - t_j (`time_buckets`), or None without times or time buckets.

        When every row's real items are one run of columns (padding only before and/or after them, as
        `make_batch` builds rows), the count of real items between a real key j and a real query i >= j is
        i - j, so `distance` is the one [1, L, L] matrix (i - j) clamped, shared by the batch: the bias is then
        gathered once per block instead of once per row (and its gradient summed, not scattered, over the
        batch). It differs from the per-row counts only on pairs whose weight the causal mask zeroes or whose
        query is padding, which no real position reads. `shared=False` always gives the per-row [B, L, L].
    """
    if shared and bool((valid[:, 0].long() + (valid[:, 1:] & ~valid[:, :-1]).sum(1) <= 1).all()):  # one run a row
        steps = torch.arange(valid.shape[1], device=valid.device)
        distance = (steps[:, None] - steps[None, :]).clamp(0, max_len - 1).unsqueeze(0)  # [1, L, L]
    else:
        order = valid.to(torch.int64).cumsum(dim=1)                                   # [B, L] real items up to t
        distance = (order[:, :, None] - order[:, None, :]).clamp(0, max_len - 1)       # [B, L, L]
    if times is None or num_buckets <= 0:
        return distance, None
    return distance, time_buckets(times[:, :, None] - times[:, None, :], num_buckets, base)  # [B, L, L]


class RelativeBias(nn.Module):
    """Relative attention bias rab [B, L, L]: a learned scalar per item distance plus one per time bucket.

    Args:
        max_len: distances 0..max_len - 1 each have their own weight.
        num_buckets: time-gap buckets 0..num_buckets (0 = no time bias).
    """

    def __init__(self, max_len: int, num_buckets: int = 128) -> None:
        super().__init__()
        self.position_weight = nn.Parameter(torch.empty(max_len).normal_(0.0, 0.02))
        self.time_weight = nn.Parameter(torch.empty(num_buckets + 1).normal_(0.0, 0.02)) if num_buckets > 0 else None

    def forward(self, distance: Tensor, buckets: Tensor | None = None) -> Tensor:
        """rab [B, L, L] (or [1, L, L] for shared distances and no time buckets) from the indices of
        `bias_indices` (embedding lookups, no loop)."""
        bias = self.position_weight[distance]                                          # [B, L, L]
        if buckets is not None and self.time_weight is not None:
            bias = bias + self.time_weight[buckets]
        return bias


class HSTUBlock(nn.Module):
    """One HSTU layer (see the module docstring).

    Args:
        dim: D, input and output size.
        num_heads: H.
        attention_dim: size of Q and K per head.
        linear_dim: size of V and U per head.
        dropout: on the gated attention output, before the output projection (as the reference).
        max_len: longest history (relative-position weights and the attention scale n).
        num_buckets: time-gap buckets of the relative bias (0 = positions only).
        attention_dropout: on the attention weights A.
    """

    def __init__(self, dim: int, num_heads: int, attention_dim: int, linear_dim: int, dropout: float, *,
                 max_len: int, num_buckets: int = 0, attention_dropout: float = 0.0) -> None:
        super().__init__()
        self.num_heads, self.attention_dim, self.linear_dim = num_heads, attention_dim, linear_dim
        self.sizes = [num_heads * linear_dim, num_heads * linear_dim, num_heads * attention_dim,
                      num_heads * attention_dim]                                       # U, V, Q, K
        self.input_norm = nn.LayerNorm(dim, eps=1e-6, elementwise_affine=False)
        self.uvqk = nn.Linear(dim, sum(self.sizes))
        self.output_norm = nn.LayerNorm(num_heads * linear_dim, eps=1e-6, elementwise_affine=False)
        self.out = nn.Linear(num_heads * linear_dim, dim)
        self.dropout = Dropout(dropout)
        self.attention_dropout = Dropout(attention_dropout)
        self.bias = RelativeBias(max_len, num_buckets)
        self.scale = float(max_len)

    def attention(self, x: Tensor, allowed: Tensor, distance: Tensor, buckets: Tensor | None = None
                  ) -> tuple[Tensor, Tensor]:
        """(weights A [B, H, L, L], gated output LayerNorm(A V) * U [B, L, H * linear_dim]) for x [B, L, D]."""
        unscaled, gated = self._attend(x, allowed, distance, buckets, fused=False)
        assert unscaled is not None
        return unscaled / self.scale, gated

    def _attend(self, x: Tensor, allowed: Tensor, distance: Tensor, buckets: Tensor | None, *, fused: bool
                ) -> tuple[Tensor | None, Tensor]:
        """(n A, or None when fused; gated output). The [B, H, L, L] maps are the block's largest tensors. Fused
        (on CPU, without attention dropout), `_PointwiseAttention` makes them a few rows at a time and
        recomputes them in the backward, so they never exist whole. Otherwise they are made twice only (the
        scores, their SiLU): the bias is added to the scores in place and the mask multiplies the SiLU's output
        in place (neither product's backward needs the overwritten values). Either way 1 / n scales A V
        [B, L, H V] instead of A."""
        b, length, _ = x.shape
        u, v, q, k = F.silu(self.uvqk(self.input_norm(x))).split(self.sizes, dim=-1)
        q = q.view(b, length, self.num_heads, self.attention_dim).transpose(1, 2)     # [B, H, L, A]
        k = k.view(b, length, self.num_heads, self.attention_dim).transpose(1, 2)     # [B, H, L, A]
        v = v.view(b, length, self.num_heads, self.linear_dim).transpose(1, 2)        # [B, H, L, V]
        bias = self.bias(distance, buckets).unsqueeze(1)                               # [1 or B, 1, L, L]
        unscaled = None
        if fused:
            rows = chunk_rows(self.num_heads * length * length, POINTWISE_BLOCK, x.device, accelerator=POINTWISE_BLOCK)
            mixed = _PointwiseAttention.apply(q, k, v, bias, allowed, rows) / self.scale      # [B, H, L, V]
        else:
            unscaled = F.silu((q @ k.transpose(-2, -1)).add_(bias)).mul_(allowed)   # n A [B, H, L, L]; no softmax
            mixed = (self.attention_dropout(unscaled) @ v) / self.scale                # [B, H, L, V]
        return unscaled, self.output_norm(mixed.transpose(1, 2).reshape(b, length, -1)) * u

    def forward(self, x: Tensor, allowed: Tensor, distance: Tensor, buckets: Tensor | None = None) -> Tensor:
        """x [B, L, D] -> [B, L, D]; `allowed` [B, 1, L, L] (`causal_valid_mask`), indices of `bias_indices`."""
        fused = (FUSE_ATTENTION and x.device.type == "cpu"
                 and not (self.attention_dropout.training and self.attention_dropout.p > 0))
        _, gated = self._attend(x, allowed, distance, buckets, fused=fused)
        return x + self.out(self.dropout(gated))


def _rows(t: Tensor, rows: slice) -> Tensor:
    """The batch rows `rows` of t [B, ...], or t itself when it is shared by the batch ([1, ...])."""
    return t if t.shape[0] == 1 else t[rows]


# the blocks' attention on CPU goes through `_PointwiseAttention` (False: the plain path, for A/B timings)
FUSE_ATTENTION = True
# attention-map values [rows x H x L x L] per chunk and CPU thread in `_PointwiseAttention` (1 MB)
POINTWISE_BLOCK = 1 << 18


class _PointwiseAttention(torch.autograd.Function):
    """(SiLU(Q K^T + bias) * allowed) V, `rows` batch rows at a time, the maps recomputed in the backward.

    Through autograd an HSTU block keeps two [B, H, L, L] maps for its backward (the scores and A: 40 MB each for
    ML-1M's 128 x 2 x 200 x 200) and writes three more in it (dA, dS and the SiLU's gradient). Here each chunk's
    maps stay in cache; the backward recomputes S = Q K^T + bias and A = SiLU(S) * allowed per chunk and writes
    dV = A^T dO, dS = (dO V^T) * allowed * SiLU'(S) with SiLU'(s) = sigma(s) (1 + s (1 - sigma(s))),
    dQ = dS K, dK = dS^T Q and the bias's gradient (dS summed over heads, and over the batch when the bias is
    shared), as autograd's graph would (tested against it in float64). One attention layer's forward + backward
    on [128, 2, 200, 25]: 0.19 s -> 0.10 s on one thread.
    """

    @staticmethod
    def _scores(q: Tensor, k: Tensor, bias: Tensor, rows: slice) -> Tensor:
        scores = torch.matmul(q[rows], k[rows].transpose(-2, -1))                      # [c, H, L, L]
        scores += _rows(bias, rows)
        return scores

    @staticmethod
    def forward(ctx: Any, q: Tensor, k: Tensor, v: Tensor, bias: Tensor, allowed: Tensor, rows: int) -> Tensor:
        ctx.save_for_backward(q, k, v, bias, allowed)
        ctx.rows = rows
        out = v.new_empty(*q.shape[:3], v.shape[-1])                                   # [B, H, L, V]
        for start in range(0, q.shape[0], rows):
            chunk = slice(start, start + rows)
            weights = F.silu(_PointwiseAttention._scores(q, k, bias, chunk)).mul_(_rows(allowed, chunk))
            torch.matmul(weights.to(v.dtype), v[chunk], out=out[chunk])
        return out

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:
        q, k, v, bias, allowed = ctx.saved_tensors
        grad_q, grad_k, grad_v = torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)
        grad_bias = torch.zeros_like(bias)
        grad = grad.to(v.dtype)
        for start in range(0, q.shape[0], ctx.rows):
            chunk = slice(start, start + ctx.rows)
            scores = _PointwiseAttention._scores(q, k, bias, chunk)
            gate = torch.sigmoid(scores)
            weights = (scores * gate).mul_(_rows(allowed, chunk))                             # A
            torch.matmul(weights.transpose(-2, -1).to(v.dtype), grad[chunk], out=grad_v[chunk])
            grad_scores = torch.matmul(grad[chunk], v[chunk].transpose(-2, -1)).mul_(_rows(allowed, chunk))
            grad_scores = grad_scores.mul_(gate.mul_(scores.mul_(1 - gate).add_(1)))   # dS = dA * SiLU'(S)
            torch.matmul(grad_scores.to(q.dtype), k[chunk], out=grad_q[chunk])
            torch.matmul(grad_scores.transpose(-2, -1).to(q.dtype), q[chunk], out=grad_k[chunk])
            if bias.shape[0] == 1:
                grad_bias += grad_scores.sum((0, 1), keepdim=True).to(grad_bias.dtype)
            else:
                grad_bias[chunk] = grad_scores.sum(1, keepdim=True).to(grad_bias.dtype)
        return grad_q, grad_k, grad_v, grad_bias, None, None
