"""Session graphs for a whole batch, built with tensor ops (sort, gather, cumsum, scatter); no loop over rows.

Input: a padded batch of item rows `items [B, L]` (0 = padding; each row's clicks contiguous, left- or
right-aligned: the graphs are the same either way, only the per-position fields `alias` and `is_click` follow
the input's layout). The real clicks are taken out of the padding first and every step works on them (C = real
clicks in the batch, typically far fewer than B * L), so the cost does not grow with the padding except for the
dense [B, V, V] outputs. Shape letters beyond `types.py`: V = most nodes (distinct items) of a row in the
batch, E = most incoming EOP edges of a node; V, E and C are read from the batch (a few host syncs).

- `session_nodes`: a row's nodes are its distinct items, numbered in order of first appearance; `alias` maps
  every position to its node, `last` is the node of the row's last click (the readouts use it).
- `srgnn_graph` (SR-GNN, GC-SAN): in- and out-adjacency normalised by degree. As in SR-GNN's implementation
  (and RecBole's GC-SAN) an edge u -> v is 1 however often the pair is clicked: A_out[u, v] = 1 / outdeg(u),
  A_in[v, u] = 1 / indeg(v), with degrees counted over distinct neighbours (self loops included).
- `eop_multigraph` (LESSR's EOP multigraph): one edge per consecutive click pair, repeats and self loops kept;
  for every node the sources of its incoming edges in the order the edges occur (what EOPA's GRU reads).
- `shortcut_graph` (LESSR's SGAT graph): u -> v iff some click of u is at or before some click of v, i.e.
  `first(u) <= last(v)`; every node has a self loop (LESSR pairs positions i <= j).

SR-GNN and LESSR number nodes in sorted item-id order (`np.unique`); the order of first appearance used here
is a permutation of it, which the (permutation-equivariant) graph layers do not see. Padding nodes (index >=
a row's node count) have item 0 and no edges (SR-GNN's and RecBole's loaders make padding id 0 a node of every
padded row; here it is not a node). An empty row has no node; its `last` is 0 and must be masked by the caller.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

import torch
from torch import Tensor


def _move(graph, device: torch.device | str):
    return replace(graph, **{f.name: getattr(graph, f.name).to(device) for f in fields(graph)})


@dataclass(frozen=True, slots=True)
class SessionNodes:
    """The nodes of each row of a batch of sessions, and the batch's real clicks in row-major (click) order."""

    items: Tensor       # [B, V] item id of each node (the input's dtype), 0 = padding node
    alias: Tensor       # [B, L] int64 node of each input position (0 at padding positions: mask with is_click)
    is_click: Tensor    # [B, L] bool, True at real input positions (items != 0)
    lengths: Tensor     # [B] int64 clicks per row
    num_nodes: Tensor   # [B] int64 nodes (distinct items) per row
    last: Tensor        # [B] int64 node of the row's last click (0 for an empty row)
    click_rows: Tensor  # [C] int64 row of each real click, rows ascending, click order within a row
    click_nodes: Tensor  # [C] int64 node (within its row) of each real click
    click_order: Tensor  # [C] int64 clicks grouped by (row, node), click order within a group

    @property
    def valid(self) -> Tensor:
        """[B, V] bool, True at real nodes."""
        return self.items != 0

    def to(self, device: torch.device | str) -> SessionNodes:
        return _move(self, device)


@dataclass(frozen=True, slots=True)
class SRGNNGraph:
    """SR-GNN / GC-SAN session graph: nodes plus degree-normalised in- and out-adjacency."""

    nodes: SessionNodes
    adj_in: Tensor      # [B, V, V] float32, adj_in[v, u] = 1 / indeg(v) for an edge u -> v, else 0
    adj_out: Tensor     # [B, V, V] float32, adj_out[u, v] = 1 / outdeg(u) for an edge u -> v, else 0

    def to(self, device: torch.device | str) -> SRGNNGraph:
        return SRGNNGraph(self.nodes.to(device), self.adj_in.to(device), self.adj_out.to(device))


@dataclass(frozen=True, slots=True)
class EOPGraph:
    """LESSR's edge-order preserving multigraph, as each node's ordered incoming sources."""

    nodes: SessionNodes
    sources: Tensor     # [B, V, E] int64 source node of the k-th incoming edge of each node, in click order
    sources_valid: Tensor  # [B, V, E] bool, True where sources holds an edge (a prefix of each node's row)

    @property
    def in_degree(self) -> Tensor:
        """[B, V] int64 incoming edges of each node (with multiplicity)."""
        return self.sources_valid.sum(-1)

    def to(self, device: torch.device | str) -> EOPGraph:
        return EOPGraph(self.nodes.to(device), self.sources.to(device), self.sources_valid.to(device))


@dataclass(frozen=True, slots=True)
class ShortcutGraph:
    """LESSR's shortcut graph: an edge from every node to every node clicked at or after it."""

    nodes: SessionNodes
    adjacency: Tensor   # [B, V, V] bool, adjacency[u, v]: edge u -> v (v aggregates from u); diagonal set at real nodes

    def to(self, device: torch.device | str) -> ShortcutGraph:
        return ShortcutGraph(self.nodes.to(device), self.adjacency.to(device))


def session_nodes(items: Tensor) -> SessionNodes:
    """Distinct items of every row, numbered in order of first appearance (see the module docstring).

    Args:
        items: [B, L] integer item ids (int64 or int32), 0 = padding; each row's real items are contiguous (a left-
            or right-aligned row); the graphs read consecutive real positions as consecutive clicks.
    """
    batch, length = items.shape
    device = items.device
    real = items != 0                                                               # [B, L]
    lengths = real.sum(1)                                                           # [B]
    flat_positions = real.flatten().nonzero().squeeze(1)                            # [C] row-major positions
    click_items = items.flatten().index_select(0, flat_positions)                   # [C]
    click_rows = flat_positions // length if length else flat_positions            # [C]
    count = flat_positions.shape[0]
    click_order = _group_by_row_and_item(click_rows, click_items.long(), batch)     # [C]
    sorted_items, sorted_rows = click_items.index_select(0, click_order), click_rows.index_select(0, click_order)
    group_start = torch.ones(count, dtype=torch.bool, device=device)                # [C] in sorted order
    group_start[1:] = (sorted_items[1:] != sorted_items[:-1]) | (sorted_rows[1:] != sorted_rows[:-1])
    is_first = torch.zeros_like(group_start).scatter_(0, click_order, group_start)  # [C] click order
    num_nodes = torch.zeros(batch, dtype=torch.int64, device=device).index_add_(0, click_rows, is_first.long())
    node_base = num_nodes.cumsum(0) - num_nodes                                     # [B] nodes of earlier rows
    global_first = is_first.cumsum(0) - 1                                           # [C] batch-wide node id at firsts
    # every sorted click -> its group's first click -> that click's node
    starts = torch.arange(count, device=device).masked_fill_(~group_start, 0).cummax(0).values
    group_first = click_order.index_select(0, starts)                               # [C]
    node_sorted = global_first.index_select(0, group_first) - node_base.index_select(0, sorted_rows)  # [C]
    click_nodes = torch.empty_like(node_sorted).scatter_(0, click_order, node_sorted)  # [C]
    width = max(int(num_nodes.max()) if batch else 0, 1)                            # V
    # duplicates of a (row, node) slot all write the node's one item
    node_items = items.new_zeros(batch * width).scatter_(0, click_rows * width + click_nodes, click_items)
    alias = torch.zeros(batch * length, dtype=torch.int64, device=device).scatter_(0, flat_positions, click_nodes)
    row_end = lengths.cumsum(0) - 1                                                 # [B] flat index of last click
    last = (click_nodes.index_select(0, row_end.clamp(min=0)).masked_fill_(lengths == 0, 0) if count
            else lengths.new_zeros(batch))
    return SessionNodes(node_items.view(batch, width), alias.view(batch, length), real, lengths, num_nodes, last,
                        click_rows, click_nodes, click_order)


def _group_by_row_and_item(rows: Tensor, items: Tensor, batch: int) -> Tensor:
    """[C] permutation of the clicks sorting them by (row, item), click order among equal pairs (stable)."""
    if not rows.numel():
        return rows
    span = int(items.max()) + 1
    if batch * span < 2 ** 62:                                                      # one sort of a joint key
        return torch.sort(rows * span + items, stable=True).indices
    by_item = torch.sort(items, stable=True).indices                                # two stable sorts, row last
    return by_item.index_select(0, torch.sort(rows.index_select(0, by_item), stable=True).indices)


def _edges(nodes: SessionNodes) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Consecutive click pairs: [C - 1] row, source node, target node, and True where both are of one row."""
    rows, clicks = nodes.click_rows, nodes.click_nodes
    return rows[:-1], clicks[:-1], clicks[1:], rows[1:] == rows[:-1]


def srgnn_graph(items_or_nodes: Tensor | SessionNodes) -> SRGNNGraph:
    """SR-GNN's degree-normalised in/out adjacency of every row (see the module docstring).

    Args:
        items_or_nodes: [B, L] integer item ids (0 = padding) or their `session_nodes`.
    """
    nodes = _nodes(items_or_nodes)
    batch, width = nodes.items.shape
    rows, source, target, is_edge = _edges(nodes)                                   # [C - 1]
    spare = batch * width * width
    out_slot = ((rows * width + source) * width + target).masked_fill_(~is_edge, spare)
    in_slot = ((rows * width + target) * width + source).masked_fill_(~is_edge, spare)
    # an edge is 1 however often it is clicked; rows are then divided by their (distinct-neighbour) degree
    linked_out = torch.zeros(spare + 1, device=rows.device).index_fill_(0, out_slot, 1.0)[:-1]
    linked_in = torch.zeros(spare + 1, device=rows.device).index_fill_(0, in_slot, 1.0)[:-1]
    adj_out = linked_out.view(batch, width, width)                                  # [B, V, V] u -> v
    adj_in = linked_in.view(batch, width, width)                                    # [B, V, V] v <- u
    adj_out.div_(adj_out.sum(2, keepdim=True).clamp_(min=1.0))                      # / outdeg(u)
    adj_in.div_(adj_in.sum(2, keepdim=True).clamp_(min=1.0))                        # / indeg(v)
    return SRGNNGraph(nodes, adj_in, adj_out)


def eop_multigraph(items_or_nodes: Tensor | SessionNodes) -> EOPGraph:
    """LESSR's EOP multigraph: for every node, the sources of its incoming edges in order of occurrence.

    The edge into click c comes from click c - 1 of the same row. `nodes.click_order` lists each node's clicks
    in click order, so an edge's rank among the node's incoming edges is a running count within the group.

    Args:
        items_or_nodes: [B, L] integer item ids (0 = padding) or their `session_nodes`.
    """
    nodes = _nodes(items_or_nodes)
    batch, width = nodes.items.shape
    rows, clicks, order = nodes.click_rows, nodes.click_nodes, nodes.click_order
    count = clicks.shape[0]
    has_edge = torch.zeros(count, dtype=torch.bool, device=clicks.device)           # [C] click has an in-edge
    has_edge[1:] = rows[1:] == rows[:-1]
    previous = torch.zeros_like(clicks)
    previous[1:] = clicks[:-1]                                                      # [C] node of the click before
    edge_sorted, node_sorted, row_sorted = (x.index_select(0, order) for x in (has_edge, clicks, rows))
    group_start = torch.ones_like(edge_sorted)
    group_start[1:] = (node_sorted[1:] != node_sorted[:-1]) | (row_sorted[1:] != row_sorted[:-1])
    before = edge_sorted.cumsum(0) - edge_sorted.long()                             # [C] edges earlier in the batch
    start = torch.arange(count, device=clicks.device).masked_fill_(~group_start, 0).cummax(0).values
    rank = before - before.index_select(0, start)                                   # [C] edges earlier in the group
    depth = max(int((rank + 1).masked_fill_(~edge_sorted, 0).max()) if count else 0, 1)  # E
    spare = batch * width * depth
    slot = ((row_sorted * width + node_sorted) * depth + rank).masked_fill_(~edge_sorted, spare)
    sources = clicks.new_zeros(spare + 1).scatter_(0, slot, previous.index_select(0, order))
    sources_valid = torch.zeros(spare + 1, dtype=torch.bool, device=clicks.device).index_fill_(0, slot, True)
    return EOPGraph(nodes, sources[:-1].view(batch, width, depth), sources_valid[:-1].view(batch, width, depth))


def shortcut_graph(items_or_nodes: Tensor | SessionNodes) -> ShortcutGraph:
    """LESSR's shortcut graph: u -> v iff first click of u <= last click of v (see the module docstring).

    Nodes are numbered by first click, so `first(u) <= last(v)` iff `u < reach(v)`, the number of the row's
    nodes first clicked at or before v's last click: a running maximum of node ids and one scatter-max.

    Args:
        items_or_nodes: [B, L] integer item ids (0 = padding) or their `session_nodes`.
    """
    nodes = _nodes(items_or_nodes)
    batch, width = nodes.items.shape
    rows, clicks = nodes.click_rows, nodes.click_nodes
    node_base = nodes.num_nodes.cumsum(0) - nodes.num_nodes                         # [B]
    # batch-wide node ids grow along the click list, so one running maximum serves every row
    base = node_base.index_select(0, rows)                                          # [C]
    seen = (clicks + base).cummax(0).values - base + 1 if clicks.numel() else clicks
    reach = clicks.new_zeros(batch * width).scatter_reduce_(0, rows * width + clicks, seen, reduce="amax")
    node_index = torch.arange(width, device=clicks.device)[None, :, None]           # [1, V, 1]
    adjacency = node_index < reach.view(batch, 1, width)                            # [B, V, V]
    return ShortcutGraph(nodes, adjacency)


def _nodes(items_or_nodes: Tensor | SessionNodes) -> SessionNodes:
    return items_or_nodes if isinstance(items_or_nodes, SessionNodes) else session_nodes(items_or_nodes)
