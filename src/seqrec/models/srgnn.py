"""SR-GNN (Wu et al., AAAI 2019, arXiv:1811.00855) and GC-SAN (Xu et al., IJCAI 2019): session graphs + gated GNN.

Both turn each history into its session graph (nodes = distinct items, degree-normalised in/out adjacency;
`seqrec.models.layers.graphs.srgnn_graph`, built for the whole batch with tensor ops), run a gated graph
neural network over it (`layers.gnn.GatedGraphNetwork`) and read one session state out at the last click:

- SR-GNN: soft attention over the clicks with the last click as query,
  alpha_i = q · sigmoid(W1 v_last + W2 v_i + c), s_g = sum_i alpha_i v_i, state = W3 [v_last ; s_g]
  (the "hybrid" session embedding of the paper). `form: tensorflow` follows SR-GNN's TensorFlow code instead
  of its PyTorch code (`layers.gnn.GatedGraphNetwork`'s docstring; state = W3 [s_g ; W1 v_last], no bias).
- GC-SAN: the clicks' node states go through self-attention blocks (post-LN, causal over the clicks, as in
  RecBole's GC-SAN, the seed of this implementation's reading) and the state is
  `weight * attention_last + (1 - weight) * gnn_last`.

Contract: these are prefix models (`objective = "prefix"`): a training row is one prefix of a history with its
next item as the only target, as in the papers (every prefix of every training session is a sample). `forward`
returns `[B, L, D]` states that are zero except at each row's last real position, which holds the session
state; `predict` returns that state. The graph and the readouts do not depend on the padding or alignment.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from pydantic import Field, model_validator
from torch import Tensor, nn

from seqrec.data.batches import CausalBatch
from seqrec.models.base import ModelConfig, SequentialRecommender, last_positions
from seqrec.models.layers.attention import Dropout, TransformerBlock, attention_mask
from seqrec.models.layers.gnn import GatedGraphNetwork
from seqrec.models.layers.graphs import srgnn_graph
from seqrec.models.layers.init import init_linear_and_embeddings_


class SessionGraphConfig(ModelConfig):
    """What the shared session-graph part reads; each model sets its own defaults."""

    dim: int = Field(100, ge=1)             # D, item embedding size
    max_len: int = Field(50, ge=1)          # most recent clicks read
    dropout: float = Field(0.0, ge=0, lt=1)  # on the item embeddings


class SRGNNConfig(SessionGraphConfig):
    dim: int = Field(100, ge=1)             # D, item embedding and node state size (paper: 100)
    steps: int = Field(1, ge=1)             # gated GNN propagation steps (paper: 1)
    max_len: int = Field(50, ge=1)          # L, most recent clicks of a history that form the graph
    dropout: float = Field(0.0, ge=0, lt=1)  # on the item embeddings (the paper uses none)
    # the biases SR-GNN's code has beyond the paper's equations: b_iah / b_oah added to the GNN's messages after
    # the adjacency product, and biases on W2 and W3 (linear_two, linear_transform; W3's adds a learned
    # b · e_i to every item's score). GC-SAN reads the message biases (RecBole's GNN has them too).
    reference_biases: bool = False
    # which of SR-GNN's two reference codes the model follows: "pytorch" (pytorch_code/model.py, the paper's
    # equations) or "tensorflow" (tensorflow_code/model.py): transposed adjacencies (edges weighted by the
    # sender's degree), TensorFlow's GRUCell (reset gate before the hidden map, gate biases from 1.0, Glorot
    # kernels), the attention's bias from 0, and the hybrid embedding W3 [s_g ; W1 v_n] over the transformed last
    # click (W1 shared with the attention) with no bias
    form: Literal["pytorch", "tensorflow"] = "pytorch"

    @model_validator(mode="after")
    def _one_reference(self) -> SRGNNConfig:
        if self.form == "tensorflow" and self.reference_biases:
            raise ValueError("reference_biases adds the biases of SR-GNN's PyTorch code; form: tensorflow has "
                             "none of them (leave reference_biases false)")
        return self


class GCSANConfig(SRGNNConfig):
    num_blocks: int = Field(1, ge=1)        # self-attention blocks after the GNN
    num_heads: int = Field(1, ge=1)         # attention heads (the paper: 1)
    weight: float = Field(0.6, ge=0, le=1)  # share of the attention output in the final state
    dropout: float = Field(0.2, ge=0, lt=1)  # embeddings, attention and residual branches
    init_std: float = Field(0.02, gt=0)     # Normal(0, init_std) weights as RecBole's GC-SAN
    form: Literal["pytorch"] = "pytorch"    # GC-SAN's reference (RecBole) has the PyTorch cell only


class _SessionGraphModel(SequentialRecommender):
    """Shared part of the session graph models: item table, prefix contract, click states of a gated GNN."""

    objective = "prefix"
    causal = False
    config: SessionGraphConfig
    gnn: GatedGraphNetwork                 # SR-GNN's and GC-SAN's, read by `click_states`

    def __init__(self, config: SessionGraphConfig, num_items: int) -> None:
        super().__init__(config, num_items)
        self.items = nn.Embedding(num_items + 1, config.dim, padding_idx=0)
        self.dropout = Dropout(config.dropout)

    def item_embeddings(self) -> Tensor:
        return self.items.weight                                                    # [N + 1, D]

    def fit_width(self, items: Tensor) -> Tensor:
        """The history cut to its last `max_len` real items when it is wider."""
        return _keep_recent(items, self.config.max_len) if items.shape[1] > self.config.max_len else items

    def click_states(self, items: Tensor) -> tuple[Tensor, Tensor]:
        """(node states gathered at every position [B, L, D], zero at padding; the last real position [B]),
        through the subclass's gated GNN `self.gnn`."""
        graph = srgnn_graph(items)
        hidden = self.dropout(self.items(graph.nodes.items))                       # [B, V, D]
        hidden = self.gnn(graph, hidden)                                            # [B, V, D]
        alias = graph.nodes.alias.unsqueeze(-1).expand(-1, -1, hidden.shape[-1])    # [B, L, D]
        clicks = hidden.gather(1, alias) * graph.nodes.is_click.unsqueeze(-1)       # [B, L, D]
        return clicks, last_positions(items)

    def session_state(self, items: Tensor) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def predict_batch(self, batch: CausalBatch) -> Tensor:
        return self.session_state(batch.items)                                      # [B, D]

    def forward(self, batch: CausalBatch) -> Tensor:
        items = batch.items
        state = self.session_state(items)                                           # [B, D]
        out = state.new_zeros(items.shape[0], items.shape[1], state.shape[-1])      # [B, L, D]
        rows = torch.arange(items.shape[0], device=items.device)
        last = last_positions(items)
        has_items = (items != 0).any(dim=1)
        out[rows[has_items], last[has_items]] = state[has_items]
        return out


def _keep_recent(items: Tensor, max_len: int) -> Tensor:
    """The last `max_len` real items of each row, right-aligned."""
    from seqrec.models.base import align_right

    return align_right(items)[0][:, -max_len:]


class SRGNN(_SessionGraphModel):
    name = "srgnn"
    config_class = SRGNNConfig
    config: SRGNNConfig

    def __init__(self, config: SRGNNConfig, num_items: int) -> None:
        super().__init__(config, num_items)
        self.gnn = GatedGraphNetwork(config.dim, config.steps, message_bias=config.reference_biases,
                                     form=config.form)
        dim, biases = config.dim, config.reference_biases
        self.query_last = nn.Linear(dim, dim)                # W1 (c is W1's bias)
        self.query_click = nn.Linear(dim, dim, bias=biases)  # W2
        self.attention = nn.Linear(dim, 1, bias=False)       # q
        self.hybrid = nn.Linear(2 * dim, dim, bias=biases)   # W3
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Uniform(-1/sqrt(D), 1/sqrt(D)) for every weight, as SR-GNN's code; with `form: tensorflow`, its
        TensorFlow code's GRUCell init and a zero attention bias (`nasr_b`)."""
        bound = 1.0 / math.sqrt(self.config.dim)
        for weight in self.parameters():
            nn.init.uniform_(weight, -bound, bound)
        with torch.no_grad():
            self.items.weight[0].zero_()
            if self.config.form == "tensorflow":
                self.gnn.reset_parameters_tensorflow()
                self.query_last.bias.zero_()

    def session_state(self, items: Tensor) -> Tensor:
        items = self.fit_width(items)
        clicks, last = self.click_states(items)                                     # [B, L, D], [B]
        rows = torch.arange(items.shape[0], device=items.device)
        v_last = clicks[rows, last]                                                 # [B, D]
        mask = items != 0
        alpha = self.attention(torch.sigmoid(self.query_last(v_last).unsqueeze(1)
                                             + self.query_click(clicks)))           # [B, L, 1]
        global_state = (alpha * clicks * mask.unsqueeze(-1)).sum(dim=1)             # [B, D]
        if self.config.form == "tensorflow":                                        # W3 [s_g ; W1 v_n]
            last_state = nn.functional.linear(v_last, self.query_last.weight)
            return self.hybrid(torch.cat([global_state, last_state], dim=-1))       # [B, D]
        return self.hybrid(torch.cat([v_last, global_state], dim=-1))               # [B, D]


class GCSAN(_SessionGraphModel):
    name = "gcsan"
    config_class = GCSANConfig
    config: GCSANConfig

    def __init__(self, config: GCSANConfig, num_items: int) -> None:
        super().__init__(config, num_items)
        self.gnn = GatedGraphNetwork(config.dim, config.steps, message_bias=config.reference_biases)
        self.blocks = nn.ModuleList(
            TransformerBlock(config.dim, config.num_heads, config.dropout, hidden=config.dim, norm_first=False,
                             activation="gelu")
            for _ in range(config.num_blocks))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        init_linear_and_embeddings_(self, "normal", self.config.init_std, padding=self.items)

    def session_state(self, items: Tensor) -> Tensor:
        items = self.fit_width(items)
        clicks, last = self.click_states(items)                                     # [B, L, D], [B]
        valid = items != 0
        keep = valid.unsqueeze(-1).to(clicks.dtype)
        mask = attention_mask(valid, causal=True)                                   # [B, 1, L, L]
        x = clicks
        for block in self.blocks:
            x = block(x, mask) * keep
        rows = torch.arange(items.shape[0], device=items.device)
        w = self.config.weight
        return w * x[rows, last] + (1 - w) * clicks[rows, last]                     # [B, D]
