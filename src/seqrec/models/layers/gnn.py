"""The gated graph neural network of SR-GNN and GC-SAN, over batched session graphs.

One propagation step (Li et al. 2016, as SR-GNN's eq. 1-5): every node gathers messages along its incoming
and outgoing edges, each through its own linear map and weighted by the degree-normalised adjacency,

    a_v = [A_in[v] · (W_in h + b_in) ; A_out[v] · (W_out h + b_out)]          [2D]

and updates its state with a GRU cell whose input is a_v:

    r = σ(W_r a + U_r h),  z = σ(W_z a + U_z h),  n = tanh(W_n a + r ⊙ (U_n h)),  h' = (1 − z) ⊙ h + z ⊙ n.

All rows of the batch go through batched matrix products `[B, V, V] @ [B, V, D]`; padding nodes have no
edges and their states are zeroed.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from seqrec.models.layers.graphs import SRGNNGraph


class GatedGraphNetwork(nn.Module):
    """`steps` gated propagation steps over an `SRGNNGraph` (weights shared across steps, as in SR-GNN)."""

    def __init__(self, dim: int, steps: int = 1) -> None:
        super().__init__()
        if steps < 1:
            raise ValueError(f"steps must be >= 1, got {steps}")
        self.steps = int(steps)
        self.edge_in = nn.Linear(dim, dim)
        self.edge_out = nn.Linear(dim, dim)
        self.input_gates = nn.Linear(2 * dim, 3 * dim)       # W_r, W_z, W_n on the messages
        self.hidden_gates = nn.Linear(dim, 3 * dim)          # U_r, U_z, U_n on the state

    def forward(self, graph: SRGNNGraph, hidden: Tensor) -> Tensor:
        """Node states [B, V, D] after the propagation steps, from initial states `hidden` [B, V, D]."""
        keep = graph.nodes.valid.unsqueeze(-1).to(hidden.dtype)                   # [B, V, 1]
        for _ in range(self.steps):
            messages = torch.cat([graph.adj_in @ self.edge_in(hidden),
                                  graph.adj_out @ self.edge_out(hidden)], dim=-1)   # [B, V, 2D]
            i_r, i_z, i_n = self.input_gates(messages).chunk(3, dim=-1)
            h_r, h_z, h_n = self.hidden_gates(hidden).chunk(3, dim=-1)
            reset = torch.sigmoid(i_r + h_r)
            update = torch.sigmoid(i_z + h_z)
            new = torch.tanh(i_n + reset * h_n)
            hidden = ((1 - update) * hidden + update * new) * keep                   # [B, V, D]
        return hidden
