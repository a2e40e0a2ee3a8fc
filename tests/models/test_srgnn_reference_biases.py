"""`model.reference_biases`: the biases of SR-GNN's code beyond the paper's equations (b_iah / b_oah on the
GNN's messages after the adjacency product, W2's and W3's biases), checked against that code's formula."""

import torch

from seqrec.models import build_model
from seqrec.models.layers.gnn import GatedGraphNetwork
from seqrec.models.layers.graphs import srgnn_graph


def reference_cell(gnn: GatedGraphNetwork, adj_in, adj_out, hidden):
    """One step of SR-GNN's GNNCell (pytorch_code/model.py), written from its equations. Its update gate is
    the complement of ours (h' = n + z (h - n), torch.nn.GRU's convention; ours h' = (1 - z) h + z n), the
    same function with the gate's pre-activation negated: that is the one change made here."""
    b_iah, b_oah = gnn.message_bias.chunk(2)
    input_in = adj_in @ gnn.edge_in(hidden) + b_iah
    input_out = adj_out @ gnn.edge_out(hidden) + b_oah
    gi = gnn.input_gates(torch.cat([input_in, input_out], dim=-1))
    gh = gnn.hidden_gates(hidden)
    i_r, i_i, i_n = gi.chunk(3, -1)
    h_r, h_i, h_n = gh.chunk(3, -1)
    resetgate = torch.sigmoid(i_r + h_r)
    inputgate = torch.sigmoid(-(i_i + h_i))
    newgate = torch.tanh(i_n + resetgate * h_n)
    return newgate + inputgate * (hidden - newgate)


def test_message_bias_matches_the_reference_cell_and_reaches_nodes_without_edges():
    torch.manual_seed(0)
    gnn = GatedGraphNetwork(8, steps=1, message_bias=True)
    torch.nn.init.uniform_(gnn.message_bias, -1, 1)
    items = torch.tensor([[3, 5, 3, 7], [0, 0, 4, 2]])
    graph = srgnn_graph(items)
    hidden = torch.randn(*graph.nodes.items.shape, 8)
    hidden = hidden * graph.nodes.valid.unsqueeze(-1)
    got = gnn(graph, hidden)
    want = reference_cell(gnn, graph.adj_in, graph.adj_out, hidden) * graph.nodes.valid.unsqueeze(-1)
    torch.testing.assert_close(got, want)
    # the first click of row 2 (item 4) has no incoming edge: its message is b_iah, not zero
    plain = GatedGraphNetwork(8, steps=1)
    plain.load_state_dict({k: v for k, v in gnn.state_dict().items() if k != "message_bias"})
    assert not torch.allclose(plain(graph, hidden)[1, 0], got[1, 0])


def test_parameters_with_and_without_reference_biases():
    plain = {name for name, _ in build_model("srgnn", 30, {"dim": 8}).named_parameters()}
    with_biases = {name for name, _ in build_model("srgnn", 30, {"dim": 8, "reference_biases": True})
                   .named_parameters()}
    assert with_biases - plain == {"gnn.message_bias", "query_click.bias", "hybrid.bias"}
    assert plain <= with_biases                    # runs saved without the key still load
    gcsan = {name for name, _ in build_model("gcsan", 30, {"dim": 8, "reference_biases": True}).named_parameters()}
    assert "gnn.message_bias" in gcsan


def test_hybrid_bias_adds_a_learned_term_to_every_item_score():
    torch.manual_seed(1)
    model = build_model("srgnn", 30, {"dim": 8, "reference_biases": True}).eval()
    items = torch.tensor([[0, 4, 9, 4]])
    with torch.no_grad():
        before = model.score(model.predict(items))
        model.hybrid.bias.add_(0.5)
        after = model.score(model.predict(items))
    # state + 0.5 * 1 -> every item's score moves by 0.5 * sum(e_i)
    torch.testing.assert_close(after - before, 0.5 * model.item_embeddings().sum(-1).unsqueeze(0))
