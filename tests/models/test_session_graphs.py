"""Batched session graphs (models/layers/graphs.py) against a plain per-session reference written here."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import torch

from seqrec.models.layers.graphs import eop_multigraph, session_nodes, shortcut_graph, srgnn_graph


def reference(session: list[int]) -> dict:
    """Obviously-correct graphs of one session (list of real item ids), node order = first appearance."""
    nodes: list[int] = []
    for item in session:
        if item not in nodes:
            nodes.append(item)
    index = {item: k for k, item in enumerate(nodes)}
    seq = [index[item] for item in session]
    n = len(nodes)
    edges = list(zip(seq[:-1], seq[1:]))
    linked = set(edges)
    out_degree = Counter(u for u, _ in linked)
    in_degree = Counter(v for _, v in linked)
    adj_out = [[1 / out_degree[u] if (u, v) in linked else 0.0 for v in range(n)] for u in range(n)]
    adj_in = [[1 / in_degree[v] if (u, v) in linked else 0.0 for u in range(n)] for v in range(n)]
    sources = [[u for u, v in edges if v == w] for w in range(n)]
    shortcut = {(seq[i], seq[j]) for i in range(len(seq)) for j in range(i, len(seq))}
    return {"items": nodes, "seq": seq, "adj_out": adj_out, "adj_in": adj_in, "sources": sources,
            "shortcut": shortcut, "last": seq[-1] if seq else 0}


def pad(sessions: list[list[int]], length: int, align: str) -> torch.Tensor:
    out = torch.zeros(len(sessions), length, dtype=torch.int64)
    for row, session in enumerate(sessions):
        if session:
            if align == "right":
                out[row, length - len(session):] = torch.tensor(session)
            else:
                out[row, :len(session)] = torch.tensor(session)
    return out


def check_batch(sessions: list[list[int]], items: torch.Tensor) -> None:
    """Every graph of every row equals the reference."""
    nodes = session_nodes(items)
    srgnn, eop, short = srgnn_graph(nodes), eop_multigraph(nodes), shortcut_graph(nodes)
    width = nodes.items.shape[1]
    for row, session in enumerate(sessions):
        ref = reference(session)
        n = len(ref["items"])
        assert nodes.num_nodes[row] == n and nodes.lengths[row] == len(session)
        assert nodes.items[row, :n].tolist() == ref["items"]
        assert not nodes.items[row, n:].any()
        real = items[row] != 0
        assert torch.equal(nodes.is_click[row], real)
        assert nodes.alias[row][real].tolist() == ref["seq"]
        assert nodes.last[row] == ref["last"]
        expected_out = torch.zeros(width, width)
        expected_in = torch.zeros(width, width)
        if n:
            expected_out[:n, :n] = torch.tensor(ref["adj_out"])
            expected_in[:n, :n] = torch.tensor(ref["adj_in"])
        torch.testing.assert_close(srgnn.adj_out[row], expected_out)
        torch.testing.assert_close(srgnn.adj_in[row], expected_in)
        for node in range(width):
            valid = eop.sources_valid[row, node]
            got = eop.sources[row, node][valid].tolist()
            assert got == (ref["sources"][node] if node < n else [])
            assert valid.tolist() == sorted(valid.tolist(), reverse=True)  # a prefix
        pairs = {tuple(p) for p in short.adjacency[row].nonzero().tolist()}
        assert pairs == ref["shortcut"]


HAND_MADE = [
    [5, 3, 5, 5, 7],      # repeats, a back-to-back repeat (self loop)
    [],                   # empty (padding only)
    [9],                  # one item
    [4, 2, 4, 2],         # repeated edges 4 -> 2 counted once by SR-GNN, twice by EOP
    [8, 8, 8],            # only self loops
    [1, 2, 3, 2, 1, 2],   # incoming edges of 2 from 1, 3, 1 in that order
    [6, 7],
]


@pytest.mark.parametrize("align", ["left", "right"])
def test_hand_made_sessions_match_the_reference(align):
    check_batch(HAND_MADE, pad(HAND_MADE, 8, align))


def test_hand_computed_values():
    graph = srgnn_graph(pad([[5, 3, 5, 5, 7]], 5, "right"))
    # nodes 5, 3, 7; edges 5->3, 3->5, 5->5, 5->7
    assert graph.nodes.items[0].tolist() == [5, 3, 7]
    third = 1 / 3
    torch.testing.assert_close(graph.adj_out[0], torch.tensor([[third, third, third], [1, 0, 0], [0, 0, 0.]]))
    torch.testing.assert_close(graph.adj_in[0], torch.tensor([[0.5, 0.5, 0], [1, 0, 0], [1, 0, 0.]]))
    eop = eop_multigraph(pad([[1, 2, 3, 2, 1, 2]], 6, "left"))
    assert eop.sources[0, 1][eop.sources_valid[0, 1]].tolist() == [0, 2, 0]   # edge order kept
    assert eop.in_degree[0].tolist() == [1, 3, 1]
    short = shortcut_graph(pad([[1, 2, 3, 2]], 4, "left")).adjacency[0]
    assert short.int().tolist() == [[1, 1, 1], [0, 1, 1], [0, 1, 1]]


def test_left_and_right_alignment_give_the_same_graphs():
    left, right = pad(HAND_MADE, 9, "left"), pad(HAND_MADE, 9, "right")
    a, b = session_nodes(left), session_nodes(right)
    for name in ("items", "lengths", "num_nodes", "last"):
        assert torch.equal(getattr(a, name), getattr(b, name)), name
    assert torch.equal(a.alias[left != 0], b.alias[right != 0])
    assert torch.equal(srgnn_graph(a).adj_in, srgnn_graph(b).adj_in)
    assert torch.equal(srgnn_graph(a).adj_out, srgnn_graph(b).adj_out)
    assert torch.equal(eop_multigraph(a).sources, eop_multigraph(b).sources)
    assert torch.equal(shortcut_graph(a).adjacency, shortcut_graph(b).adjacency)


def test_extra_padding_changes_nothing_but_the_layout():
    base = session_nodes(pad(HAND_MADE, 6, "right"))
    wide = session_nodes(pad(HAND_MADE, 12, "right"))
    assert torch.equal(base.items, wide.items)
    assert torch.equal(eop_multigraph(base).sources, eop_multigraph(wide).sources)


def test_all_padding_batch():
    nodes = session_nodes(torch.zeros(3, 4, dtype=torch.int64))
    assert nodes.num_nodes.tolist() == [0, 0, 0] and nodes.items.shape == (3, 1)
    assert not srgnn_graph(nodes).adj_out.any()
    assert not eop_multigraph(nodes).sources_valid.any()
    assert not shortcut_graph(nodes).adjacency.any()


@pytest.mark.parametrize("vocabulary", [4, 1000])
def test_random_sessions_match_the_reference(vocabulary):
    rng = np.random.default_rng(vocabulary)
    sessions = [rng.integers(1, vocabulary + 1, size=rng.integers(0, 16)).tolist() for _ in range(1500)]
    for start in range(0, len(sessions), 500):
        part = sessions[start:start + 500]
        check_batch(part, pad(part, 16, "right" if start % 1000 else "left"))


def test_huge_item_ids_take_the_two_sort_path():
    big = 2 ** 61                                    # rows * (largest id + 1) no longer fits one int64 key
    sessions = [[big, 5, big, big + 1], [7, 7], [], [big + 1, 5]]
    check_batch(sessions, pad(sessions, 5, "right"))


def test_int32_items_give_the_same_graphs():
    items = pad(HAND_MADE, 8, "right")
    a, b = session_nodes(items), session_nodes(items.int())
    assert torch.equal(a.alias, b.alias) and torch.equal(a.items, b.items.long())
    assert torch.equal(eop_multigraph(a).sources, eop_multigraph(b).sources)
    assert torch.equal(srgnn_graph(a).adj_in, srgnn_graph(b).adj_in)


def test_graphs_move_to_a_device():
    graph = eop_multigraph(pad(HAND_MADE, 8, "right")).to("cpu")
    assert graph.nodes.items.device.type == "cpu"


def test_occurrence_and_click_lists_match_the_reference():
    sessions = HAND_MADE + [[3, 1, 3, 3, 2, 1]]
    items = pad(sessions, 8, "left")
    nodes = session_nodes(items)
    rows, clicks = [], []
    for row, session in enumerate(sessions):
        ref = reference(session)
        real = items[row] != 0
        assert nodes.occurrence[row][real].tolist() == [session[:i].count(x) for i, x in enumerate(session)]
        assert not nodes.occurrence[row][~real].any()
        rows += [row] * len(session)
        clicks += ref["seq"]
    assert nodes.click_rows.tolist() == rows and nodes.click_nodes.tolist() == clicks
    # grouped by (row, item id), click order within a group
    flat_items = [s for session in sessions for s in session]
    expected = sorted(range(len(rows)), key=lambda c: (rows[c], flat_items[c], c))
    assert nodes.click_order.tolist() == expected
    eop = eop_multigraph(nodes)
    assert torch.equal(eop.in_degree, eop.sources_valid.sum(-1))


def test_degenerate_shapes():
    for shape in [(0, 4), (3, 0), (0, 0)]:
        items = torch.zeros(shape, dtype=torch.int64)
        nodes = session_nodes(items)
        assert nodes.items.shape == (shape[0], 1) and nodes.alias.shape == shape
        assert nodes.lengths.shape == (shape[0],) and nodes.click_order.numel() == 0
        assert srgnn_graph(nodes).adj_in.shape == (shape[0], 1, 1)
        assert eop_multigraph(nodes).sources.shape == (shape[0], 1, 1)
        assert shortcut_graph(nodes).adjacency.shape == (shape[0], 1, 1)
    sessions = [[4], [], [7]]                                      # one column: no click pairs at all
    check_batch(sessions, pad(sessions, 1, "right"))


def test_non_contiguous_input_gives_the_same_graphs():
    wide = pad(HAND_MADE, 12, "right")
    view = wide[:, 3:]                                             # a column slice, as `fit_width` makes
    assert not view.is_contiguous()
    check_batch(HAND_MADE, view)
    assert torch.equal(srgnn_graph(view).adj_out, srgnn_graph(view.contiguous()).adj_out)


def test_sgat_additive_scores_match_the_dense_formula_and_its_gradients():
    from seqrec.models.layers.gnn import additive_scores

    generator = torch.Generator().manual_seed(3)
    q, k = (torch.randn(9, 6, 4, dtype=torch.float64, generator=generator, requires_grad=True) for _ in range(2))
    w = torch.randn(4, dtype=torch.float64, generator=generator, requires_grad=True)
    dense = torch.sigmoid(q[:, None, :, :] + k[:, :, None, :]) @ w                  # [b, i, j]: q at j, k at i
    assert torch.allclose(additive_scores(q, k, w), dense, atol=1e-12)
    assert float(dense[2, 1, 4].detach()) == pytest.approx(float((torch.sigmoid(q[2, 4] + k[2, 1]) @ w).detach()))
    assert torch.autograd.gradcheck(additive_scores, (q, k, w))
    # more rows than one chunk (the chunk is sized by V * V * H): same values in every chunk
    big_q, big_k = torch.randn(2, 600, 80, 4), torch.randn(2, 600, 80, 4)
    assert torch.allclose(additive_scores(big_q[0], big_k[0], w.detach().float()),
                          torch.sigmoid(big_q[0][:, None] + big_k[0][:, :, None]) @ w.detach().float(), atol=1e-5)


def test_eopa_matches_a_gru_over_every_node_s_ordered_messages():
    """EOPA's split GRU (first step by hand from h = 0, `nn.GRU` on the later messages of nodes with two or more
    in-edges) against the plain formula: `nn.GRU` over each node's full ordered message list, per session."""
    from seqrec.models.layers.gnn import EOPA

    torch.manual_seed(0)
    layer = EOPA(6, 5, batch_norm=False).double()
    sessions = HAND_MADE + [[3, 1, 3, 1, 3, 1, 3], [2, 2, 1, 2, 4, 2]]        # in-degrees up to 5
    items = pad(sessions, 8, "right")
    nodes = session_nodes(items)
    x = torch.randn(len(sessions), nodes.items.shape[1], 6, dtype=torch.float64, requires_grad=True)
    out = layer(eop_multigraph(nodes), x)
    weights = torch.randn_like(out)
    (out * weights).sum().backward()
    got_grads = [x.grad.clone()] + [p.grad.clone() for p in layer.parameters()]
    x.grad = None
    layer.zero_grad()
    expected = torch.zeros_like(out)
    for row, session in enumerate(sessions):
        ref = reference(session)
        for node, sources in enumerate(ref["sources"]):
            neighbour = torch.zeros(6, dtype=torch.float64)
            if sources:
                _, last = layer.gru(x[row, sources].unsqueeze(0))                     # one sequence, h0 = 0
                neighbour = last[0, 0]
            expected[row, node] = layer.activation(
                (layer.self_map(x[row, node]) + layer.neighbour_map(neighbour)).unsqueeze(0))[0]
    torch.testing.assert_close(out, expected)
    assert not out[~nodes.valid].any()                                              # padding nodes stay zero
    (expected * weights).sum().backward()
    for got, want in zip(got_grads, [x.grad] + [p.grad for p in layer.parameters()]):
        torch.testing.assert_close(got, want)


def test_eopa_on_chains_never_runs_the_packed_gru():
    """Sessions without a repeated item give every node at most one in-edge: the hand-made first step is all."""
    from seqrec.models.layers.gnn import EOPA

    layer = EOPA(4, 4)
    calls = []
    layer.gru.register_forward_hook(lambda *args: calls.append(1))
    items = pad([[1, 2, 3], [4, 5], [6]], 4, "left")
    out = layer(eop_multigraph(items), torch.randn(3, 3, 4))
    assert out.shape == (3, 3, 4) and not calls
    layer(eop_multigraph(pad([[1, 2, 1, 2]], 4, "left")), torch.randn(1, 2, 4))     # 1 -> 2 twice: degree 2
    assert calls


def test_sgat_additive_scores_with_limits_compute_exactly_the_prefix_of_each_row():
    from seqrec.models.layers.gnn import additive_scores

    generator = torch.Generator().manual_seed(4)
    for rows, width in [(5, 7), (3, 40)]:                                       # one block; four blocks of 10
        q, k = (torch.randn(rows, width, 3, dtype=torch.float64, generator=generator, requires_grad=True)
                for _ in range(2))
        w = torch.randn(3, dtype=torch.float64, generator=generator, requires_grad=True)
        limit = torch.randint(0, width + 1, (rows, width), generator=generator)
        limit[0] = torch.arange(1, width + 1)                                    # a chain's reach: i + 1
        limit[-1] = 0                                                            # a row of padding nodes
        inside = torch.arange(width) < limit.unsqueeze(-1)                       # [b, i, j]: j < limit[b, i]
        dense = torch.sigmoid(q[:, None, :, :] + k[:, :, None, :]) @ w
        got = additive_scores(q, k, w, limit)
        assert torch.allclose(got[inside], dense[inside], atol=1e-12)            # the rest: for the caller to mask
    # one chain (reach i + 1), four blocks of 10 rows i: block 0 stops at column 10, block 1 at 20, ...
    chain = torch.arange(1, 41).unsqueeze(0)
    got = additive_scores(q[:1].detach(), k[:1].detach(), w.detach(), chain)
    dense = torch.sigmoid(q[:1, None, :, :] + k[:1, :, None, :]).detach() @ w.detach()
    for block in range(4):
        rows = slice(10 * block, 10 * block + 10)
        assert torch.allclose(got[0, rows, :10 * block + 10], dense[0, rows, :10 * block + 10], atol=1e-12)
        assert not got[0, rows, 10 * block + 10:].any()                          # left out
        assert torch.autograd.gradcheck(lambda q, k, w: additive_scores(q, k, w, limit), (q, k, w))


def test_lessr_sgat_reach_is_the_row_count_of_the_shortcut_adjacency():
    items = pad(HAND_MADE, 7, "left")
    graph = shortcut_graph(items)
    assert torch.equal(graph.reach, graph.adjacency.sum(1))                      # edges into v, over u
    assert not graph.reach[~graph.nodes.valid].any()
