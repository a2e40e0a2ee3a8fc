"""Losses over sequence states and the item table: pure functions, the same for every model.

All take `states` [M, D] (one row per scored position), `targets` [M] int64 item ids in 1..N, the item
table `table` [N + 1, D] (row 0 = padding, never a candidate) and the model's similarity module.

- `full_softmax_ce`: softmax cross-entropy over all N items (SASRec+, Klenitskiy & Vasilev 2023).
- `bce`: binary cross-entropy, the positive against `num_negatives` uniform negatives (original SASRec).
- `bpr`: -log sigmoid(s_pos - s_neg), averaged over the negatives.
- `sampled_softmax`: softmax over the positive and sampled negatives; negatives equal to the positive are
  masked out. Uniform negatives are one draw of K shared by every position of the batch (default: one [M, K]
  score matmul) or, with `shared_negatives=False`, K per position as generative-recommenders' local negatives
  ([M, K, D] gathered item vectors). Uniform negatives need no correction; in-batch negatives (the other rows'
  targets) are popular items more often, which the log-Q correction `s - log q(item)` removes (Yi et al.,
  RecSys 2019).

Uniform negatives are drawn from 1..N without excluding the positive (a collision has probability 1/N);
for BCE/BPR a drawn negative equal to the positive is ignored (masked out of the mean).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import Tensor

from seqrec.models.layers.chunks import chunk_rows
from seqrec.models.layers.similarity import Cosine, DotProduct, Rows, Similarity

if TYPE_CHECKING:
    from seqrec.config import LossConfig

LOSSES = ("ce", "bce", "bpr", "sampled_softmax")
# Per-row negatives (dot or cosine) score every item and pick the drawn columns when the table has at most
# DENSE_ROWS_PER_NEGATIVE rows per negative, else they gather the drawn item vectors a chunk of rows at a time
# (`_GatheredDot`). Sampled softmax forward + backward, M 19,000, D 50, K 128, one / two CPU threads: all-items
# scores 0.23 / 0.13 s at N 1,024, 0.55 / 0.28 s at N 3,417, 13.3 / 7.8 s at N 100,000; chunked gathers 0.21 /
# 0.32 s, 0.20 / 0.15 s, 0.56 / 0.32 s (gathering through autograd: 1.23 s at N 3,417 on one thread).
DENSE_ROWS_PER_NEGATIVE = 8
DENSE_CHUNK = 1 << 24          # all-items scores are computed in row chunks of at most this many scores
GATHER_BLOCK = 3 << 18         # gathered item vectors per chunk and CPU thread (rows x K x D values, 3 MB)


def full_softmax_ce(states: Tensor, targets: Tensor, table: Tensor, similarity: Similarity,
                    matmul_dtype: torch.dtype | None = None, padding_class: bool = False) -> Tensor:
    """Mean cross-entropy of the targets against every real item.

    With the dot product this runs the fused, row-chunked kernel `_DotSoftmaxCE` (same value and gradients,
    about 3x faster on CPU and without the [M, N] score matrix); other similarities go through autograd.
    `matmul_dtype` (e.g. bfloat16, `train.precision: bf16`): the kernel's three matrix products take their inputs
    in that type (scores, softmax, loss and gradient sums stay fp32); other similarities ignore it.
    `padding_class`: the padding row is one more class of the softmax, never a target (a learned extra negative,
    trained through the scores: the logits `states @ item_emb.weight.T` of Klenitskiy & Vasilev's SASRec code).
    """
    if isinstance(similarity, DotProduct):
        return _DotSoftmaxCE.apply(states, table, targets, None, matmul_dtype, padding_class)
    first = 0 if padding_class else 1
    scores = similarity(states, table[first:])                    # [M, N (+ 1)], column j = item j + first
    return F.cross_entropy(scores, targets - first)


class _DotSoftmaxCE(torch.autograd.Function):
    """Softmax cross-entropy of `states @ table[1:].T`, gradients computed during the forward pass.

    The gradient of the mean loss with respect to the scores is (softmax - onehot) / M, so each chunk of rows
    computes its scores, turns them in place into that gradient and folds it into the gradients of `states`
    and `table` right away; backward only scales them. Peak memory is one [chunk, N] block, and the
    log-softmax, its backward and the one-hot fill of the autograd path (the bulk of SASRec's CPU time on
    ML-1M) become one exp pass.
    """

    @staticmethod
    def forward(ctx: Any, states: Tensor, table: Tensor, targets: Tensor, transposed: bool | None = None,
                matmul_dtype: torch.dtype | None = None, padding_class: bool = False) -> Tensor:
        first = 0 if padding_class else 1                                          # the table's first class row
        items = table[first:]                                                      # [N (+ 1), D]
        rows, num_items = states.shape[0], items.shape[0]
        # Chunks of ~2^20 scores (4 MB, cache-sized: the exp/sum/scale passes are memory-bound), but at least
        # 2D rows so that the matmuls stay efficient with wide embeddings. When the catalogue is so large that
        # the 2D floor wins (Diginetica: 43k items), the block is computed transposed, [N, c]: the tall-by-thin
        # `items @ part.T` and its two gradient matmuls run ~1.4x faster per batch at D 32 on one core (and no
        # slower at D 100); below that size the [c, N] layout is as fast or faster (benchmarks/README.md).
        cached = (1 << 20) // max(num_items, 1)
        chunk = max(2 * items.shape[1], cached, 1)
        if transposed is None:                                                     # None: choose (benchmarks force it)
            transposed = cached < 2 * items.shape[1]
        dim = 0 if transposed else 1                                               # the items axis of a block
        need_grad = ctx.needs_input_grad[0] or ctx.needs_input_grad[1]
        grad_states = states.new_empty(states.shape) if need_grad else None                # contiguous
        grad_items = torch.zeros_like(items) if need_grad else None
        total = torch.zeros((), dtype=torch.float64, device=states.device)
        low = matmul_dtype is not None and matmul_dtype != states.dtype
        out_dtype = states.dtype
        if low:     # the products' inputs in the low type (bf16 products run ~6x faster on AVX512-BF16 CPUs)
            states, items = states.to(matmul_dtype), items.to(matmul_dtype)
        for start in range(0, rows, chunk):
            part = states[start:start + chunk]                                     # [c, D]
            cols = (targets[start:start + chunk] - first).unsqueeze(dim)           # [1, c] or [c, 1]
            scores = items @ part.T if transposed else part @ items.T              # [N, c] or [c, N]
            if low:
                scores = scores.float()                                            # softmax and sums in fp32
            target_scores = scores.gather(dim, cols)
            peak = scores.amax(dim=dim, keepdim=True)
            scores.sub_(peak).exp_()                                               # one exp pass, in place
            norm = scores.sum(dim=dim, keepdim=True)
            total += (peak + norm.log() - target_scores).sum(dtype=torch.float64)  # logsumexp - target
            if grad_states is not None and grad_items is not None:
                grad = scores.mul_(norm.reciprocal_())                             # softmax
                grad.scatter_add_(dim, cols, torch.full_like(norm, -1.0))          # - onehot
                if low:
                    grad = grad.to(matmul_dtype)
                    if transposed:
                        grad_states[start:start + chunk] = grad.T @ items
                        grad_items += grad @ part
                    else:
                        grad_states[start:start + chunk] = grad @ items
                        grad_items += grad.T @ part
                elif transposed:
                    torch.mm(grad.T, items, out=grad_states[start:start + chunk])
                    grad_items.addmm_(grad, part)
                else:
                    torch.mm(grad, items, out=grad_states[start:start + chunk])
                    grad_items.addmm_(grad.T, part)
        if need_grad:
            ctx.save_for_backward(grad_states, grad_items)
        ctx.rows, ctx.padding_class = rows, padding_class
        return (total / max(rows, 1)).to(out_dtype)

    @staticmethod
    def backward(ctx: Any, grad_output: Tensor) -> tuple[Tensor, Tensor, None, None, None, None]:
        grad_states, grad_items = ctx.saved_tensors
        scale = grad_output / max(ctx.rows, 1)
        if ctx.padding_class:
            return grad_states * scale, grad_items * scale, None, None, None, None
        grad_table = torch.cat([torch.zeros_like(grad_items[:1]), grad_items]) * scale   # padding row: 0
        return grad_states * scale, grad_table, None, None, None, None


def uniform_negatives(shape: tuple[int, ...], num_items: int, device: torch.device | str,
                      generator: torch.Generator | None = None) -> Tensor:
    """int64 item ids drawn uniformly from 1..N."""
    return torch.randint(1, num_items + 1, shape, device=device, generator=generator)


def _pos_neg_scores(states: Tensor, targets: Tensor, table: Rows, similarity: Similarity, negatives: Tensor
                    ) -> tuple[Tensor, Tensor, Tensor]:
    pos = similarity.gathered(states, table, targets.unsqueeze(1)).squeeze(1)   # [M]
    neg = similarity.gathered(states, table, negatives)                          # [M, K]
    return pos, neg, negatives != targets.unsqueeze(1)                          # valid negatives [M, K]


def bce(states: Tensor, targets: Tensor, table: Rows, similarity: Similarity, negatives: Tensor) -> Tensor:
    """Binary cross-entropy: positive -> 1, each negative [M, K] -> 0; colliding negatives ignored."""
    pos, neg, keep = _pos_neg_scores(states, targets, table, similarity, negatives)
    neg_loss = (F.softplus(neg) * keep).sum(1) / keep.sum(1).clamp(min=1)       # -log(1 - sigmoid(s))
    return (F.softplus(-pos) + neg_loss).mean()                                 # -log sigmoid(s_pos)


def bpr(states: Tensor, targets: Tensor, table: Rows, similarity: Similarity, negatives: Tensor) -> Tensor:
    """Bayesian personalised ranking, averaged over the valid negatives of each position."""
    pos, neg, keep = _pos_neg_scores(states, targets, table, similarity, negatives)
    loss = F.softplus(neg - pos.unsqueeze(1))                                    # -log sigmoid(pos - neg)
    return ((loss * keep).sum(1) / keep.sum(1).clamp(min=1)).mean()


def sampled_softmax(states: Tensor, targets: Tensor, table: Rows, similarity: Similarity, negatives: Tensor,
                    log_q: Tensor | None = None) -> Tensor:
    """Softmax cross-entropy of the positive against sampled negatives.

    Args:
        negatives: [K] ids shared by every row, or [M, K] per row.
        log_q: [N + 1] log sampling probability of each item; when given, every score (positive and
            negatives) is corrected by `- log_q[item]`.
    """
    pos = similarity.gathered(states, table, targets.unsqueeze(1))              # [M, 1]
    if negatives.dim() == 1:
        neg = similarity(states, table[negatives])                              # [M, K]
        collide = negatives.unsqueeze(0) == targets.unsqueeze(1)                 # [M, K]
    elif isinstance(similarity, (DotProduct, Cosine)) and isinstance(table, Tensor):
        # per-row negatives: over a small catalogue score every item (one GEMM per chunk of rows) and pick the
        # drawn columns, else gather the drawn vectors a chunk of rows at a time (not for MoL, whose own
        # `gathered` chunks its P x P logits per pair)
        q, v = similarity.operands(states, table)                              # [M, D], [N + 1, D]
        dtype = torch.promote_types(torch.promote_types(q.dtype, v.dtype), torch.float32)
        q, v = q.to(dtype), v.to(dtype)                                        # under autocast: scores in fp32
        if table.shape[0] <= DENSE_ROWS_PER_NEGATIVE * negatives.shape[1]:
            neg = _ColumnScores.apply(q, v, negatives, max(1, DENSE_CHUNK // table.shape[0]))   # [M, K]
        else:
            rows = chunk_rows(negatives.shape[1] * q.shape[1], GATHER_BLOCK, q.device, accelerator=GATHER_BLOCK * 64)
            neg = _GatheredDot.apply(q, v, negatives, rows)
        collide = negatives == targets.unsqueeze(1)
    else:
        neg = similarity.gathered(states, table, negatives)                     # [M, K]
        collide = negatives == targets.unsqueeze(1)
    if log_q is not None:
        pos = pos - log_q[targets].unsqueeze(1)
        neg = neg - log_q[negatives].expand_as(neg) if negatives.dim() == 1 else neg - log_q[negatives]
    logits = torch.cat([pos, neg.masked_fill(collide, float("-inf"))], dim=1)   # [M, 1 + K]
    return F.cross_entropy(logits, torch.zeros_like(targets))


def _saved_and_gradients(ctx: Any) -> tuple[tuple[Tensor, ...], Tensor | None, Tensor | None]:
    """The saved (q, v, ids) of a scoring function's context, and the gradients of q (to fill) and v (to add
    into) when they are needed."""
    q, v, ids = ctx.saved_tensors
    grad_q = torch.empty_like(q) if ctx.needs_input_grad[0] else None
    grad_v = torch.zeros_like(v) if ctx.needs_input_grad[1] else None
    return (q, v, ids), grad_q, grad_v


class _ColumnScores(torch.autograd.Function):
    """`(q @ v.T).gather(1, cols)`, computed in chunks of `rows` rows through one [rows, N] buffer.

    Per-row negatives over a small catalogue score every item and keep the drawn columns. Through autograd that
    allocates a fresh [rows, N] block for each chunk's scores and again for each chunk's gradient (a zero fill
    and a scatter), and on CPU most of that cost is faulting the fresh pages in (an HSTU-large step on ML-1M
    allocated ~800 MB of them). Here the forward writes every chunk's scores into one buffer and keeps only the
    [M, K] picked columns; the backward scatters the [M, K] gradient into one reused buffer per chunk and folds
    it into the gradients of `q` and `v` with two matrix products, as autograd's graph would.
    """

    @staticmethod
    def forward(ctx: Any, q: Tensor, v: Tensor, cols: Tensor, rows: int) -> Tensor:
        out = q.new_empty(cols.shape)                                              # [M, K]
        buffer = q.new_empty(min(rows, q.shape[0]), v.shape[0])                    # [rows, N]
        for start in range(0, q.shape[0], rows):
            part = buffer[:min(rows, q.shape[0] - start)]
            torch.mm(q[start:start + rows], v.T, out=part)
            torch.gather(part, 1, cols[start:start + rows], out=out[start:start + rows])
        ctx.save_for_backward(q, v, cols)
        ctx.rows = rows
        return out

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, Tensor | None, None, None]:
        (q, v, cols), grad_q, grad_v = _saved_and_gradients(ctx)
        rows = ctx.rows
        buffer = q.new_empty(min(rows, q.shape[0]), v.shape[0])                    # [rows, N]
        for start in range(0, q.shape[0], rows):
            stop = min(start + rows, q.shape[0])
            part = buffer[:stop - start].zero_()
            part.scatter_add_(1, cols[start:stop], grad[start:stop].to(part.dtype))  # a column drawn twice adds
            if grad_q is not None:
                torch.mm(part, v, out=grad_q[start:stop])
            if grad_v is not None:
                grad_v.addmm_(part.T, q[start:stop])
        return grad_q, grad_v, None, None


class _GatheredDot(torch.autograd.Function):
    """`(v[ids] * q.unsqueeze(1)).sum(-1)`: q [M, D] against its own K drawn rows of v [N, D], `rows` rows of q at
    a time.

    Through autograd the gathered vectors [M, K, D] are written out whole (19,000 positions x 128 negatives x 50
    floats = 490 MB on ML-1M), their gradient again, and then scattered back. Here each chunk's gathered vectors
    stay in cache: the forward keeps only q, v and the ids, and the backward gathers each chunk again for q's
    gradient and adds `grad x q` into v's rows (a row drawn twice adds twice), as autograd's graph would.
    """

    @staticmethod
    def forward(ctx: Any, q: Tensor, v: Tensor, ids: Tensor, rows: int) -> Tensor:
        out = q.new_empty(ids.shape)                                               # [M, K]
        for start in range(0, q.shape[0], rows):
            chunk = ids[start:start + rows]
            drawn = v.index_select(0, chunk.flatten()).view(*chunk.shape, -1)      # [c, K, D]
            torch.sum(drawn * q[start:start + rows].unsqueeze(1), dim=-1, out=out[start:start + rows])
        ctx.save_for_backward(q, v, ids)
        ctx.rows = rows
        return out

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, Tensor | None, None, None]:
        (q, v, ids), grad_q, grad_v = _saved_and_gradients(ctx)
        grad = grad.to(q.dtype)
        for start in range(0, q.shape[0], ctx.rows):
            stop = min(start + ctx.rows, q.shape[0])
            chunk, part = ids[start:stop], grad[start:stop].unsqueeze(-1)          # [c, K], [c, K, 1]
            if grad_q is not None:
                drawn = v.index_select(0, chunk.flatten()).view(*chunk.shape, -1)  # [c, K, D]
                torch.sum(part * drawn, dim=1, out=grad_q[start:stop])
            if grad_v is not None:
                grad_v.index_add_(0, chunk.flatten(), (part * q[start:stop].unsqueeze(1)).flatten(0, 1))
        return grad_q, grad_v, None, None


def in_batch_softmax(states: Tensor, targets: Tensor, table: Rows, similarity: Similarity, negatives: Tensor,
                     log_q: Tensor | None = None) -> Tensor:
    """`sampled_softmax` with in-batch negatives, in one [M, K] score block.

    The negatives are the sorted unique targets of the batch (of every rank's part with `negatives_across_ranks`),
    so each row's own target is one of them: the softmax over the positive and the other negatives is the softmax
    over all K columns with the target's column as the label. No separate positive score, no [M, K] collision
    mask and no [M, 1 + K] concatenation (on 1M items with ~5,000 scored positions and ~5,000 negatives per step
    these passes were about a fifth of the step).

    Args:
        negatives: [K] sorted unique ids that include every target.
        log_q: [N + 1] log sampling probability; every score is corrected by `- log_q[item]`.
    """
    scores = similarity(states, table[negatives])                               # [M, K]
    if log_q is not None:
        scores = scores - log_q[negatives]
    return F.cross_entropy(scores, torch.searchsorted(negatives, targets))


@dataclass(frozen=True)
class LossSpec:
    """Which loss to use and how to sample its negatives (the `loss` config section)."""

    name: str = "ce"
    num_negatives: int = 1
    negatives: str = "uniform"          # sampled softmax: "uniform" or "in_batch"
    log_q_correction: bool = True       # in-batch sampled softmax only
    shared_negatives: bool = True       # uniform sampled softmax: K for the batch (True) or K per position
    padding_class: bool = False         # ce: the padding row is one more (never-target) class of the softmax

    @classmethod
    def of(cls, section: LossConfig) -> LossSpec:
        """The spec of a `loss` config section (`seqrec.config.LossConfig`): its keys of the same names."""
        return cls(**{f.name: getattr(section, f.name) for f in fields(cls)})


def compute_loss(spec: LossSpec, states: Tensor, targets: Tensor, table: Tensor, similarity: Similarity, *,
                 log_popularity: Tensor | None = None, generator: torch.Generator | None = None,
                 gather_ids: Callable[[Tensor], Tensor] | None = None, sparse: bool = False,
                 matmul_dtype: torch.dtype | None = None) -> Tensor:
    """Dispatch on `spec.name`; draws negatives as the spec says.

    Args:
        log_popularity: [N + 1] log of each item's share of training positions, for in-batch log-Q correction.
        gather_ids: in-batch negatives: maps this process's targets to those of every DDP rank (all-gather), so
            the negatives come from the whole global batch; the law of a drawn negative, and so log-Q, is the same.
        sparse: the sampled losses read the table through sparse-gradient lookups (`F.embedding(sparse=True)`),
            so the table's gradient holds only the rows used (`train.sparse_embeddings`); not for `ce`.
        matmul_dtype: `ce` with the dot product: the type of its matrix products' inputs (`full_softmax_ce`).
    """
    if spec.name == "ce":
        if sparse:
            raise ValueError("the full-softmax loss reads every item row; it has no sparse form")
        return full_softmax_ce(states, targets, table, similarity, matmul_dtype, spec.padding_class)
    num_items = table.shape[0] - 1
    rows: Rows = SparseRows(table) if sparse else table
    if spec.name in ("bce", "bpr"):
        negatives = uniform_negatives((targets.shape[0], spec.num_negatives), num_items, targets.device, generator)
        fn = bce if spec.name == "bce" else bpr
        return fn(states, targets, rows, similarity, negatives)
    if spec.name != "sampled_softmax":
        raise ValueError(f"unknown loss {spec.name!r}; known: {', '.join(LOSSES)}")
    if spec.negatives == "in_batch":
        pool = gather_ids(targets) if gather_ids is not None else targets
        negatives = torch.unique(pool)                                           # [K] the batch's positives
        log_q = log_popularity if spec.log_q_correction else None
        return in_batch_softmax(states, targets, rows, similarity, negatives, log_q)
    shape = (spec.num_negatives,) if spec.shared_negatives else (targets.shape[0], spec.num_negatives)
    negatives = uniform_negatives(shape, num_items, targets.device, generator)                 # [K] or [M, K]
    return sampled_softmax(states, targets, rows, similarity, negatives)


class SparseRows:
    """An item table read only by row lookups with sparse gradients: `rows[ids]` is `F.embedding(ids, table,
    sparse=True)`, so backward yields a sparse [N + 1, D] gradient holding just the looked-up rows instead of a
    dense one (a million-row zero fill and a million-row optimiser step per batch). Shape and device are the
    table's; the sampled losses and the similarities' `gathered` (which read `table[ids]`) accept it as a table.
    """

    def __init__(self, table: Tensor) -> None:
        self.table = table
        self.shape, self.device, self.dtype = table.shape, table.device, table.dtype

    def __getitem__(self, ids: Tensor) -> Tensor:
        return F.embedding(ids, self.table, sparse=True)
