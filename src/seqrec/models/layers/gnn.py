"""The gated graph neural network of SR-GNN and GC-SAN, over batched session graphs.

One propagation step (Li et al. 2016, as SR-GNN's eq. 1-5): every node gathers messages along its incoming
and outgoing edges, each through its own linear map and weighted by the degree-normalised adjacency,

    a_v = [A_in[v] · (W_in h + b_in) ; A_out[v] · (W_out h + b_out)]          [2D]

(with `message_bias`, SR-GNN's code's b_iah and b_oah are added to a_v after the adjacency products)

and updates its state with a GRU cell whose input is a_v:

    r = σ(W_r a + U_r h),  z = σ(W_z a + U_z h),  n = tanh(W_n a + r ⊙ (U_n h)),  h' = (1 − z) ⊙ h + z ⊙ n.

All rows of the batch go through batched matrix products `[B, V, V] @ [B, V, D]`; padding nodes have no
edges and their states are zeroed.

`form="tensorflow"` is the cell of SR-GNN's TensorFlow code (tensorflow_code/model.py, utils.py), which differs
from its PyTorch code in three ways:

- its adjacency matrices are the transposes of the PyTorch code's (it never transposes `u_A_in` / `u_A_out`):
  node u's first message is sum over its out-neighbours v of (W_in h_v + b_in) / indeg(v), its second the sum
  over its in-neighbours w of (W_out h_w + b_out) / outdeg(w): each edge is weighted by the sender's degree;
- `tf.nn.rnn_cell.GRUCell` applies the reset gate before the hidden map: n = tanh(W_n a + U_n (r ⊙ h) + b),
  and keeps h' = u ⊙ h + (1 − u) ⊙ n (the `z` chunk here is TensorFlow's u);
- its gate biases start at 1.0 (candidate bias 0) and its kernels are Glorot-uniform over the concatenated
  [a ; h] input: `reset_parameters_tensorflow` sets that.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from seqrec.models.layers.attention import Dropout
from seqrec.models.layers.graphs import EOPGraph, ShortcutGraph, SRGNNGraph


class GatedGraphNetwork(nn.Module):
    """`steps` gated propagation steps over an `SRGNNGraph` (weights shared across steps, as in SR-GNN)."""

    def __init__(self, dim: int, steps: int = 1, message_bias: bool = False, form: str = "pytorch") -> None:
        super().__init__()
        if steps < 1:
            raise ValueError(f"steps must be >= 1, got {steps}")
        if form not in ("pytorch", "tensorflow"):
            raise ValueError(f"form must be 'pytorch' or 'tensorflow', got {form!r}")
        if form == "tensorflow" and message_bias:
            raise ValueError("SR-GNN's TensorFlow cell has no message bias after the adjacency product")
        self.steps = int(steps)
        self.form = form
        self.edge_in = nn.Linear(dim, dim)
        self.edge_out = nn.Linear(dim, dim)
        self.input_gates = nn.Linear(2 * dim, 3 * dim)       # W_r, W_z, W_n on the messages
        self.hidden_gates = nn.Linear(dim, 3 * dim)          # U_r, U_z, U_n on the state
        # SR-GNN's code also adds b_iah / b_oah after the adjacency product, so that a node without incoming
        # (outgoing) edges, e.g. a session's first click, still gets a learned message instead of zero
        self.message_bias = nn.Parameter(torch.zeros(2 * dim)) if message_bias else None

    def reset_parameters_tensorflow(self) -> None:
        """TensorFlow's GRUCell initialisation: Glorot-uniform kernels over [a ; h] (gates [3D -> 2D],
        candidate [3D -> D]), gate biases 1.0, candidate bias 0 (the edge maps keep their own init)."""
        dim = self.hidden_gates.in_features
        gate_bound = (6.0 / (3 * dim + 2 * dim)) ** 0.5
        candidate_bound = (6.0 / (3 * dim + dim)) ** 0.5
        with torch.no_grad():
            for layer in (self.input_gates, self.hidden_gates):
                layer.weight[:2 * dim].uniform_(-gate_bound, gate_bound)
                layer.weight[2 * dim:].uniform_(-candidate_bound, candidate_bound)
                layer.bias.zero_()
            self.input_gates.bias[:2 * dim].fill_(1.0)

    def forward(self, graph: SRGNNGraph, hidden: Tensor) -> Tensor:
        """Node states [B, V, D] after the propagation steps, from initial states `hidden` [B, V, D]."""
        if self.form == "tensorflow":
            return self._forward_tensorflow(graph, hidden)
        keep = graph.nodes.valid.unsqueeze(-1).to(hidden.dtype)                   # [B, V, 1]
        for _ in range(self.steps):
            messages = torch.cat([graph.adj_in @ self.edge_in(hidden),
                                  graph.adj_out @ self.edge_out(hidden)], dim=-1)   # [B, V, 2D]
            if self.message_bias is not None:
                messages = messages + self.message_bias
            i_r, i_z, i_n = self.input_gates(messages).chunk(3, dim=-1)
            h_r, h_z, h_n = self.hidden_gates(hidden).chunk(3, dim=-1)
            reset = torch.sigmoid(i_r + h_r)
            update = torch.sigmoid(i_z + h_z)
            new = torch.tanh(i_n + reset * h_n)
            hidden = ((1 - update) * hidden + update * new) * keep                   # [B, V, D]
        return hidden

    def _forward_tensorflow(self, graph: SRGNNGraph, hidden: Tensor) -> Tensor:
        keep = graph.nodes.valid.unsqueeze(-1).to(hidden.dtype)                   # [B, V, 1]
        adj_in, adj_out = graph.adj_in.transpose(1, 2), graph.adj_out.transpose(1, 2)
        dim = hidden.shape[-1]
        w_h, b_h = self.hidden_gates.weight, self.hidden_gates.bias
        for _ in range(self.steps):
            messages = torch.cat([adj_in @ self.edge_in(hidden), adj_out @ self.edge_out(hidden)], dim=-1)
            i_r, i_u, i_n = self.input_gates(messages).chunk(3, dim=-1)
            h_r, h_u = nn.functional.linear(hidden, w_h[:2 * dim], b_h[:2 * dim]).chunk(2, dim=-1)
            reset = torch.sigmoid(i_r + h_r)
            kept = torch.sigmoid(i_u + h_u)
            new = torch.tanh(i_n + nn.functional.linear(reset * hidden, w_h[2 * dim:], b_h[2 * dim:]))
            hidden = (kept * hidden + (1 - kept) * new) * keep                      # [B, V, D]
        return hidden


# ------------------------------------------------------------------------------------------------ LESSR layers


class NodeNorm(nn.Module):
    """BatchNorm1d over the real nodes of a batch of graphs [B, V, C] (padding nodes neither count nor change)."""

    def __init__(self, channels: int, enabled: bool = True) -> None:
        super().__init__()
        self.norm = nn.BatchNorm1d(channels) if enabled else None

    def forward(self, x: Tensor, valid: Tensor) -> Tensor:
        if self.norm is None:
            return x
        out = torch.zeros_like(x)
        out[valid] = batch_norm(self.norm, x[valid])                                   # [M, C] real nodes
        return out


def channels_last(module: nn.Module, x: Tensor) -> Tensor:
    """A per-channel module (PReLU, which reads channels at dim 1) applied to x [..., C]."""
    return module(x.reshape(-1, x.shape[-1])).view_as(x)


def batch_norm(norm: nn.BatchNorm1d, x: Tensor) -> Tensor:
    """`norm(x)` for rows x [M, C]; with fewer than 2 rows in training (a last, tiny batch) the running
    statistics are used instead of the batch's, which torch cannot compute from one row."""
    if norm.training and x.shape[0] < 2:
        return nn.functional.batch_norm(x, norm.running_mean, norm.running_var, norm.weight, norm.bias,
                                        training=False, eps=norm.eps)
    return norm(x)


class EOPA(nn.Module):
    """LESSR's edge-order preserving aggregation: a GRU reads each node's incoming messages in edge order.

    out_v = PReLU(W_self x_v + W_neigh GRU(x_{s_1}, ..., x_{s_k})) over the sources s_1..s_k of v's incoming
    edges in the order they occur; a node without incoming edges gets W_self x_v only.

    The GRU's first step starts from h = 0, so it needs no hidden-state product: with the gates of
    `nn.GRU` (r, z, n from W_i x + b_i and b_h), h_1 = (1 - z) ⊙ tanh(W_in x + b_in + r ⊙ b_hn). That step
    runs here for every node with an edge at once, on its first source's row; `nn.GRU` (the same weights)
    continues from h_1 on the packed later messages of the nodes with two or more incoming edges only. On
    ML-1M's windows no item repeats, every node has at most one incoming edge, and the second part never runs
    (the layer at width 192 took 433 ms a training step through `nn.GRU` on all messages, one thread).
    """

    def __init__(self, in_dim: int, out_dim: int, *, batch_norm: bool = True, dropout: float = 0.0) -> None:
        super().__init__()
        self.norm = NodeNorm(in_dim, batch_norm)
        self.dropout = Dropout(dropout)
        self.gru = nn.GRU(in_dim, in_dim, batch_first=True)
        self.self_map = nn.Linear(in_dim, out_dim, bias=False)
        self.neighbour_map = nn.Linear(in_dim, out_dim, bias=False)
        self.activation = nn.PReLU(out_dim)

    def forward(self, graph: EOPGraph, x: Tensor) -> Tensor:
        """x [B, V, C] node features -> [B, V, out] (zero at padding nodes)."""
        valid = graph.nodes.valid                                                       # [B, V]
        x = self.dropout(self.norm(x, valid))
        b, v, e = graph.sources.shape
        flat = x.reshape(b * v, x.shape[-1])                                            # [B * V, C]
        degree = graph.in_degree.reshape(-1)                                            # [B * V]
        targets = degree.nonzero().squeeze(1)                                           # [M] nodes with an edge
        neighbours = torch.zeros_like(flat)
        if targets.numel():
            offset = targets - targets % v                                              # [M] row * V
            sources = graph.sources.reshape(b * v, e).index_select(0, targets).add_(offset.unsqueeze(1))  # [M, E]
            hidden = self._first_step(flat.index_select(0, sources[:, 0]))              # [M, C]
            more = (degree.index_select(0, targets) > 1).nonzero().squeeze(1)           # [M2] rows of `targets`
            if more.numel():
                later = flat[sources.index_select(0, more)[:, 1:]]                      # [M2, E - 1, C]
                lengths = degree.index_select(0, targets.index_select(0, more)).sub(1).cpu()
                packed = nn.utils.rnn.pack_padded_sequence(later, lengths, batch_first=True, enforce_sorted=False)
                _, last = self.gru(packed, hidden.index_select(0, more).unsqueeze(0).contiguous())   # [1, M2, C]
                hidden = hidden.index_put((more,), last[0])
            neighbours = neighbours.index_put((targets,), hidden)
        out = self.self_map(flat) + self.neighbour_map(neighbours)                      # [B * V, out]
        return self.activation(out).view(b, v, -1) * valid.unsqueeze(-1)

    def _first_step(self, first: Tensor) -> Tensor:
        """The GRU's state after reading `first` [M, C] from h = 0 (nn.GRU's equations, its weights)."""
        weight_ih, _, bias_ih, bias_hh = self.gru.all_weights[0]                        # layer 0, with biases
        gates = nn.functional.linear(first, weight_ih, bias_ih)                         # [M, 3C]: r, z, n
        hidden_bias = bias_hh.view(3, -1)
        i_r, i_z, i_n = gates.chunk(3, dim=-1)
        reset = torch.sigmoid(i_r + hidden_bias[0])
        keep_new = 1 - torch.sigmoid(i_z + hidden_bias[1])                             # 1 - z
        return keep_new * torch.tanh(torch.addcmul(i_n, reset, hidden_bias[2]))


class _AdditiveScores(torch.autograd.Function):
    """out[b, i, j] = sum_h w[h] * sigmoid(q[b, j, h] + k[b, i, h]) without keeping the [B, V, V, H] tensor.

    The dense autograd path writes, keeps and rereads that tensor about ten times (add, sigmoid, the energy
    matmul and their backwards: most of a LESSR step on ML-1M's 50-click windows). Here it is built for a few
    rows at a time, cache-sized, in the forward pass and again in the backward pass.

    With `limit` [B, V] only the entries j < limit[b, i] are needed: the rows i are taken in blocks, and a block
    of a chunk of rows is computed up to the largest limit in it (the entries after that are 0, those between a
    row's limit and that are scores as well; the caller masks both). A shortcut graph's limits are its
    reach, which grows along i (at least i + 1), so about half of the square is left out when no item repeats
    (ML-1M's windows: 0.64 of it with 4 blocks).
    """

    @staticmethod
    def _plan(q: Tensor, limit: Tensor | None) -> tuple[int, int, list[list[int]]]:
        """(rows per chunk, rows i per block, [chunks][blocks] columns to compute)."""
        b, v, h = q.shape
        block = v if limit is None or v <= 16 else -(-v // 4)
        step = max(1, (1 << 18) // max(block * v * h, 1))
        chunks, blocks = -(-b // step), -(-v // block)
        if limit is None:
            return step, block, [[v] * blocks for _ in range(chunks)]
        padded = limit.new_zeros(chunks * step, blocks * block)
        padded[:b, :v] = limit.clamp(0, v)
        columns = padded.view(chunks, step, blocks, block).amax(dim=(1, 3))           # [chunks, blocks]
        return step, block, columns.tolist()

    @staticmethod
    def forward(ctx: Any, q: Tensor, k: Tensor, w: Tensor, limit: Tensor | None) -> Tensor:
        plan = _AdditiveScores._plan(q, limit)
        ctx.save_for_backward(q, k, w)
        ctx.plan = plan
        step, block, columns = plan
        out = q.new_zeros(q.shape[0], q.shape[1], q.shape[1])
        for chunk, widths in enumerate(columns):
            rows = slice(chunk * step, (chunk + 1) * step)
            for index, width in enumerate(widths):
                if width:
                    i = slice(index * block, (index + 1) * block)
                    s = (q[rows, None, :width, :] + k[rows, i, None, :]).sigmoid_()      # [c, S, R, H]
                    out[rows, i, :width] = s @ w
        return out

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, Tensor, Tensor, None]:
        q, k, w = ctx.saved_tensors
        step, block, columns = ctx.plan
        grad_q, grad_k = torch.zeros_like(q), torch.zeros_like(k)
        grad_w = torch.zeros_like(w)
        for chunk, widths in enumerate(columns):
            rows = slice(chunk * step, (chunk + 1) * step)
            for index, width in enumerate(widths):
                if not width:
                    continue
                i = slice(index * block, (index + 1) * block)
                g = grad[rows, i, :width]                                                 # [c, S, R]
                s = (q[rows, None, :width, :] + k[rows, i, None, :]).sigmoid_()
                grad_w += g.reshape(-1) @ s.reshape(-1, s.shape[-1])                      # sum g s
                ds = s.addcmul_(s, s, value=-1.0).mul_(w).mul_(g.unsqueeze(-1))          # g w s (1 - s)
                grad_q[rows, :width] += ds.sum(dim=1)
                torch.sum(ds, dim=2, out=grad_k[rows, i])
        return grad_q, grad_k, grad_w, None


def additive_scores(q: Tensor, k: Tensor, w: Tensor, limit: Tensor | None = None) -> Tensor:
    """[B, V, V] scores sum_h w[h] sigmoid(q[b, j, h] + k[b, i, h]) at [b, i, j], for q, k [B, V, H], w [H];
    with `limit` [B, V] int64 only j < limit[b, i] are sure to be scores (the caller masks the rest)."""
    return _AdditiveScores.apply(q, k, w, limit)


class SGAT(nn.Module):
    """LESSR's shortcut graph attention: each node attends over the nodes with an edge into it.

    e_uv = w · sigmoid(W_q x_u + W_k x_v) for an edge u -> v, softmax over the u of each v, out_v =
    PReLU(sum_u a_uv W_v x_u); dense over the batch's [B, V, V] adjacency (every real node has a self loop).
    """

    def __init__(self, in_dim: int, hidden_dim: int, out_dim: int, *, batch_norm: bool = True,
                 dropout: float = 0.0) -> None:
        super().__init__()
        self.norm = NodeNorm(in_dim, batch_norm)
        self.dropout = Dropout(dropout)
        self.query = nn.Linear(in_dim, hidden_dim)
        self.key = nn.Linear(in_dim, hidden_dim, bias=False)
        self.value = nn.Linear(in_dim, out_dim, bias=False)
        self.energy = nn.Linear(hidden_dim, 1, bias=False)
        self.activation = nn.PReLU(out_dim)

    def forward(self, graph: ShortcutGraph, x: Tensor) -> Tensor:
        """x [B, V, C] -> [B, V, out]; `graph.adjacency[u, v]`: an edge u -> v."""
        valid = graph.nodes.valid                                                       # [B, V]
        x = self.dropout(self.norm(x, valid))
        q, k = self.query(x), self.key(x)                                               # [B, V, H]
        scores = additive_scores(q, k, self.energy.weight[0], graph.reach)             # [B, V(v), V(u)]
        allowed = graph.adjacency.transpose(1, 2)                                       # [B, v, u]
        eye = torch.eye(allowed.shape[1], dtype=torch.bool, device=x.device)
        allowed = allowed | (eye & ~valid.unsqueeze(-1))                                 # padding rows: no NaN
        weights = scores.masked_fill(~allowed, float("-inf")).softmax(dim=-1)           # [B, V, V]
        out = channels_last(self.activation, weights @ self.value(x))                   # [B, V, out]
        return out * valid.unsqueeze(-1)


class AttentionReadout(nn.Module):
    """LESSR's readout: attention over a session's nodes with its last node as query, then a projection.

    alpha_i = softmax_i(w · sigmoid(W_u x_i + W_v x_last + b)), out = PReLU(W_out sum_i alpha_i x_i).
    """

    def __init__(self, in_dim: int, hidden_dim: int, out_dim: int, *, batch_norm: bool = True,
                 dropout: float = 0.0) -> None:
        super().__init__()
        self.norm = NodeNorm(in_dim, batch_norm)
        self.dropout = Dropout(dropout)
        self.node_map = nn.Linear(in_dim, hidden_dim, bias=False)
        self.last_map = nn.Linear(in_dim, hidden_dim)
        self.energy = nn.Linear(hidden_dim, 1, bias=False)
        self.out = nn.Linear(in_dim, out_dim, bias=False) if out_dim != in_dim else nn.Identity()
        self.activation = nn.PReLU(out_dim)

    def forward(self, x: Tensor, valid: Tensor, last: Tensor) -> Tensor:
        """x [B, V, C] node features, valid [B, V], last [B] node index -> [B, out]."""
        x = self.dropout(self.norm(x, valid))
        rows = torch.arange(x.shape[0], device=x.device)
        energy = self.energy(torch.sigmoid(self.node_map(x) + self.last_map(x[rows, last]).unsqueeze(1)))  # [B,V,1]
        alpha = energy.squeeze(-1).masked_fill(~valid, float("-inf")).softmax(dim=-1)  # [B, V]
        alpha = torch.nan_to_num(alpha)                                                 # empty rows
        return self.activation(self.out((alpha.unsqueeze(-1) * x).sum(dim=1)))          # [B, out]
