"""`model.form: tensorflow`: SR-GNN as its TensorFlow code computes it (tensorflow_code/model.py and utils.py of
CRIPAC-DIG/SR-GNN), checked against a per-session reference written here from that code: its graph matrices
built by its own loop (sorted nodes, `u_A` divided as it divides it, never transposed), TensorFlow's GRUCell
equations, and its readout (hybrid over [s_g ; W1 v_n] through B)."""

import numpy as np
import pytest
import torch

from seqrec.models import build_model
from seqrec.models.layers.gnn import GatedGraphNetwork
from seqrec.models.srgnn import SRGNN

N = 30
SESSIONS = [[5, 3, 5, 5, 7, 2], [9], [4, 2, 4, 2, 8], [8, 8, 8], [1, 2, 3, 2, 1, 2], [6, 7]]


def tf_graph(session: list[int]) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[int]]:
    """SR-GNN's TensorFlow `Data.get_slice` (method ggnn) for one unpadded session."""
    node = np.unique(session)
    u_a = np.zeros((len(node), len(node)))
    for i in np.arange(len(session) - 1):
        u = np.where(node == session[i])[0][0]
        v = np.where(node == session[i + 1])[0][0]
        u_a[u][v] = 1
    u_sum_in = np.sum(u_a, 0)
    u_sum_in[np.where(u_sum_in == 0)] = 1
    u_a_in = np.divide(u_a, u_sum_in)
    u_sum_out = np.sum(u_a, 1)
    u_sum_out[np.where(u_sum_out == 0)] = 1
    u_a_out = np.divide(u_a.transpose(), u_sum_out)
    alias = [int(np.where(node == i)[0][0]) for i in session]
    return node, u_a_in, u_a_out, alias


def tf_session_state(model: SRGNN, session: list[int]) -> torch.Tensor:
    """`Model.forward`'s y1 (the hybrid session state) for one session, TensorFlow's equations, one GNN step."""
    node, adj_in, adj_out, alias = tf_graph(session)
    adj_in, adj_out = torch.tensor(adj_in, dtype=torch.float32), torch.tensor(adj_out, dtype=torch.float32)
    gnn, dim = model.gnn, model.config.dim
    h = model.items.weight[torch.tensor(node)]                                       # [n, D]
    fin_in = h @ gnn.edge_in.weight.T + gnn.edge_in.bias                             # W_in, b_in
    fin_out = h @ gnn.edge_out.weight.T + gnn.edge_out.bias
    av = torch.cat([adj_in @ fin_in, adj_out @ fin_out], dim=-1)                     # [n, 2D]
    # GRUCell: value = sigmoid([av, h] K_g + b_g); r, u = split; c = tanh([av, r h] K_c + b_c); h' = u h + (1-u) c
    gate_kernel = torch.cat([gnn.input_gates.weight[:2 * dim], gnn.hidden_gates.weight[:2 * dim]], dim=1).T
    gate_bias = gnn.input_gates.bias[:2 * dim] + gnn.hidden_gates.bias[:2 * dim]
    r, u = torch.sigmoid(torch.cat([av, h], dim=-1) @ gate_kernel + gate_bias).chunk(2, dim=-1)
    cand_kernel = torch.cat([gnn.input_gates.weight[2 * dim:], gnn.hidden_gates.weight[2 * dim:]], dim=1).T
    cand_bias = gnn.input_gates.bias[2 * dim:] + gnn.hidden_gates.bias[2 * dim:]
    c = torch.tanh(torch.cat([av, r * h], dim=-1) @ cand_kernel + cand_bias)
    re_embedding = u * h + (1 - u) * c                                               # [n, D]
    seq_h = re_embedding[torch.tensor(alias)]                                        # [T, D]
    last = re_embedding[alias[-1]] @ model.query_last.weight.T                       # nasr_w1, no bias
    seq = seq_h @ model.query_click.weight.T                                         # nasr_w2
    m = torch.sigmoid(last + seq + model.query_last.bias)                            # nasr_b
    coef = m @ model.attention.weight.T                                              # nasr_v, [T, 1]
    ma = torch.cat([(coef * seq_h).sum(0), last])
    return ma @ model.hybrid.weight.T                                                # B


def padded(sessions: list[list[int]], width: int, align: str) -> torch.Tensor:
    out = torch.zeros(len(sessions), width, dtype=torch.int64)
    for row, session in enumerate(sessions):
        if align == "right":
            out[row, width - len(session):] = torch.tensor(session)
        else:
            out[row, :len(session)] = torch.tensor(session)
    return out


@pytest.mark.parametrize("align", ["left", "right"])
def test_session_states_match_the_tensorflow_code(align):
    torch.manual_seed(3)
    model = build_model("srgnn", N, {"dim": 8, "form": "tensorflow"}).eval()
    with torch.no_grad():                             # random biases, so that every bias placement is checked
        for layer in (model.gnn.input_gates, model.gnn.hidden_gates, model.gnn.edge_in, model.gnn.edge_out,
                      model.query_last):
            layer.bias.uniform_(-0.5, 0.5)
        got = model.predict(padded(SESSIONS, 9, align))
        want = torch.stack([tf_session_state(model, session) for session in SESSIONS])
    torch.testing.assert_close(got, want)


def test_the_forms_differ_on_repeated_items_with_the_same_weights():
    torch.manual_seed(4)
    tensorflow = build_model("srgnn", N, {"dim": 8, "form": "tensorflow"}).eval()
    pytorch = build_model("srgnn", N, {"dim": 8}).eval()
    assert set(dict(pytorch.named_parameters())) == set(dict(tensorflow.named_parameters()))
    pytorch.load_state_dict(tensorflow.state_dict())
    items = padded(SESSIONS, 9, "right")
    with torch.no_grad():
        assert not torch.allclose(tensorflow.predict(items), pytorch.predict(items), atol=1e-4)


def test_tensorflow_initialisation():
    torch.manual_seed(5)
    model = build_model("srgnn", N, {"dim": 10, "form": "tensorflow"})
    gnn = model.gnn
    assert torch.equal(gnn.input_gates.bias[:20], torch.ones(20))              # r, u start at sigmoid(1)
    assert not gnn.input_gates.bias[20:].any() and not gnn.hidden_gates.bias.any()
    assert not model.query_last.bias.any()                                       # nasr_b
    gate_bound, candidate_bound = (6 / 50) ** 0.5, (6 / 40) ** 0.5              # Glorot over [a ; h]
    for layer in (gnn.input_gates, gnn.hidden_gates):
        assert layer.weight[:20].abs().max() <= gate_bound
        assert layer.weight[:20].abs().max() > 1 / 10 ** 0.5                     # wider than SR-GNN's uniform
        assert layer.weight[20:].abs().max() <= candidate_bound
    assert model.hybrid.bias is None and model.query_click.bias is None
    assert not model.items.weight[0].any()


def test_forms_that_do_not_exist_are_refused():
    with pytest.raises(ValueError, match="reference_biases"):
        build_model("srgnn", N, {"form": "tensorflow", "reference_biases": True})
    with pytest.raises(ValueError, match="form"):
        build_model("gcsan", N, {"form": "tensorflow"})
    with pytest.raises(ValueError, match="form"):
        build_model("srgnn", N, {"form": "keras"})
    with pytest.raises(ValueError, match="message bias"):
        GatedGraphNetwork(8, form="tensorflow", message_bias=True)


def test_tensorflow_form_trains_through_every_parameter():
    torch.manual_seed(6)
    model = build_model("srgnn", N, {"dim": 8, "form": "tensorflow"})
    items = padded(SESSIONS, 9, "right")
    scores = model.score(model.predict(items))
    torch.nn.functional.cross_entropy(scores, torch.arange(len(SESSIONS)) + 1).backward()
    missing = [name for name, p in model.named_parameters() if p.grad is None or not p.grad.any()]
    assert missing == []
