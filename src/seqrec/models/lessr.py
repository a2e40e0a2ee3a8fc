"""LESSR (Chen & Wong, KDD 2020, "Handling Information Loss of Graph Neural Networks for Session-based
Recommendation"): EOPA and SGAT layers alternating over two graphs of each session, densely connected.

Each history becomes (built for the whole batch with tensor ops, `seqrec.models.layers.graphs`):
- the edge-order preserving multigraph (one edge per consecutive click pair, each node's incoming edges kept
  in click order), read by EOPA layers (`layers.gnn.EOPA`: a GRU over the ordered neighbour messages), and
- the shortcut graph (an edge from every item to every item clicked at or after it), read by SGAT layers
  (`layers.gnn.SGAT`: attention over the shortcut neighbours).

Layers alternate EOPA, SGAT, EOPA, ... and are densely connected (layer l reads the concatenation of the
embeddings and every earlier layer's output). The readout attends over the nodes with the last click's node as
query; the session state is `W [x_last ; readout]` after batch norm and feature dropout, as in the paper's code.
Item embeddings have norm at most 1 (the reference's `max_norm=1`, here a differentiable rescaling of the table,
the same vectors for input and scoring).

Contract: a prefix model like SR-GNN (`objective = "prefix"`; `forward` gives `[B, L, D]`, zero except at the
last real position). Batch norm uses the real nodes of the batch only, so padding never changes it.
"""

from __future__ import annotations

import torch
from pydantic import Field
from torch import Tensor, nn

from seqrec.models.layers.attention import Dropout
from seqrec.models.layers.gnn import EOPA, SGAT, AttentionReadout, batch_norm
from seqrec.models.layers.graphs import eop_multigraph, session_nodes, shortcut_graph
from seqrec.models.srgnn import SessionGraphConfig, _SessionGraphModel


class LESSRConfig(SessionGraphConfig):
    dim: int = Field(32, ge=1)               # D (the paper: 32)
    num_layers: int = Field(3, ge=1)         # EOPA, SGAT, EOPA, ... (the paper: 3 on Diginetica)
    dropout: float = Field(0.2, ge=0, lt=1)  # feature dropout before each layer, the readout and the output
    batch_norm: bool = True                  # batch norm of the inputs of each layer, readout and output
    max_len: int = Field(20, ge=1)           # most recent clicks read (LESSR truncates sessions to 20)


class LESSR(_SessionGraphModel):
    name = "lessr"
    config_class = LESSRConfig
    config: LESSRConfig
    dynamic_parameters = True   # EOPA's GRU gets no gradient in a batch where no node has two in-edges (DDP)

    def __init__(self, config: LESSRConfig, num_items: int) -> None:
        super().__init__(config, num_items)
        dim, width = config.dim, config.dim
        self.layers = nn.ModuleList()
        for index in range(config.num_layers):
            layer: EOPA | SGAT
            if index % 2 == 0:
                layer = EOPA(width, dim, batch_norm=config.batch_norm, dropout=config.dropout)
            else:
                layer = SGAT(width, dim, dim, batch_norm=config.batch_norm, dropout=config.dropout)
            self.layers.append(layer)
            width += dim
        self.readout = AttentionReadout(width, dim, dim, batch_norm=config.batch_norm, dropout=config.dropout)
        self.output_norm = nn.BatchNorm1d(width + dim) if config.batch_norm else nn.Identity()
        self.output_dropout = Dropout(config.dropout)
        self.output = nn.Linear(width + dim, dim, bias=False)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Item rows rescaled to norm 1: the reference's `max_norm=1` lookup does this in place to every row it
        reads, so its Adam steps move rows of norm 1. Left at N(0, 1) (norm ~sqrt(D)), the rows would move
        sqrt(D) times slower relative to their size (on Diginetica the loss stayed at 10.41, near log N, after a
        whole epoch)."""
        with torch.no_grad():
            weight = self.items.weight
            weight.div_(weight.norm(dim=-1, keepdim=True).clamp(min=1.0))
            weight[0].zero_()

    def item_embeddings(self) -> Tensor:
        weight = self.items.weight
        norms = weight.norm(dim=-1, keepdim=True)
        return weight * (1.0 / norms.clamp(min=1.0))                   # rows of norm <= 1 (row 0 stays 0)

    def session_state(self, items: Tensor) -> Tensor:
        items = self.fit_width(items)
        nodes = session_nodes(items)
        multigraph, shortcut = eop_multigraph(nodes), shortcut_graph(nodes)
        x = nn.functional.embedding(nodes.items, self.item_embeddings())            # [B, V, D]
        for index, layer in enumerate(self.layers):
            out = layer(multigraph if index % 2 == 0 else shortcut, x)              # [B, V, D]
            x = torch.cat([out, x], dim=-1)                                         # dense connections
        valid = nodes.valid                                                         # [B, V]
        rows = torch.arange(items.shape[0], device=items.device)
        pooled = self.readout(x, valid, nodes.last)                                 # [B, D]
        state = torch.cat([x[rows, nodes.last], pooled], dim=-1)                    # [B, width + D]
        has_items = nodes.num_nodes > 0                                             # [B] rows with a click
        normed = torch.zeros_like(state)
        if isinstance(self.output_norm, nn.BatchNorm1d):
            normed[has_items] = batch_norm(self.output_norm, state[has_items])
        else:
            normed = state
        return self.output(self.output_dropout(normed))                             # [B, D]
