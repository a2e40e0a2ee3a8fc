"""Session graphs for a whole batch, built with tensor ops (sort, gather, cumsum, scatter); no loop over rows.

Input: a padded batch of item rows `items [B, L]` (0 = padding; each row's clicks contiguous, left- or
right-aligned: the graphs are the same either way, only the per-position fields `alias`, `is_click` and
`occurrence` follow the input's layout). `session_nodes` takes the real clicks out of the padding (C = real
clicks in the batch, typically far fewer than B * L) and does the batch's one sort; the builders then read
its per-position fields and write each output with one scatter over the [B, L] positions (or position pairs),
a pair with padding adding nothing. Every op is small, so a batch costs a few dozen op calls plus the dense
[B, V, V] outputs. Shape letters beyond `types.py`: V = most nodes (distinct items) of a row in the batch,
E = most incoming EOP edges of a node; V, E and C are read from the batch (a few host syncs).

- `session_nodes`: a row's nodes are its distinct items, numbered in order of first appearance; `alias` maps
  every position to its node, `occurrence` counts the earlier clicks of its item, `last` is the node of the
  row's last click (the readouts use it).
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


def _move(graph: SessionNodes, device: torch.device | str) -> SessionNodes:
    return replace(graph, **{f.name: getattr(graph, f.name).to(device) for f in fields(graph)})


@dataclass(frozen=True, slots=True)
class SessionNodes:
    """The nodes of each row of a batch of sessions, with every input position's node and occurrence.

    `lengths` and the click lists (`click_rows`, `click_nodes`, `click_order`) are computed on demand.
    """

    items: Tensor       # [B, V] item id of each node (the input's dtype), 0 = padding node
    alias: Tensor       # [B, L] int64 node of each input position (0 at padding positions: mask with is_click)
    is_click: Tensor    # [B, L] bool, True at real input positions (items != 0)
    num_nodes: Tensor   # [B] int64 nodes (distinct items) per row
    last: Tensor        # [B] int64 node of the row's last click (0 for an empty row)
    occurrence: Tensor  # [B, L] int64 earlier clicks of the position's item in its row (0 at padding)
    seen: Tensor        # [B, L] int64 nodes of the row first clicked at or before the position (0 at padding)

    @property
    def valid(self) -> Tensor:
        """[B, V] bool, True at real nodes."""
        return self.items != 0

    @property
    def lengths(self) -> Tensor:
        """[B] int64 clicks per row."""
        return self.is_click.sum(1)

    @property
    def click_rows(self) -> Tensor:
        """[C] int64 row of each real click, rows ascending, click order within a row."""
        return self.is_click.nonzero()[:, 0]

    @property
    def click_nodes(self) -> Tensor:
        """[C] int64 node (within its row) of each real click, in the order of `click_rows`."""
        return self.alias[self.is_click]

    @property
    def click_order(self) -> Tensor:
        """[C] int64 permutation of the clicks grouping them by (row, item), click order within a group."""
        rows, clicks = self.click_rows, self.click_nodes
        if not rows.numel():
            return rows
        # a node's flat slot in `items [B, V]` stands for its click's item: same groups, same order
        return _group_by_row_and_item(self.items, rows * self.items.shape[1] + clicks)[0]

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
    #                     (a view with row stride V * E + 1: slot 0 of each row took the non-edges)
    sources_valid: Tensor  # [B, V, E] bool, True where sources holds an edge (a prefix of each node's row)
    in_degree: Tensor   # [B, V] int64 incoming edges of each node (with multiplicity): sources_valid.sum(-1)

    def to(self, device: torch.device | str) -> EOPGraph:
        return EOPGraph(self.nodes.to(device), self.sources.to(device), self.sources_valid.to(device),
                        self.in_degree.to(device))


@dataclass(frozen=True, slots=True)
class ShortcutGraph:
    """LESSR's shortcut graph: an edge from every node to every node clicked at or after it."""

    nodes: SessionNodes
    adjacency: Tensor   # [B, V, V] bool, adjacency[u, v]: edge u -> v (v aggregates from u); diagonal set at real nodes
    #                     (a transposed view: memory holds [B, v, u], the layout SGAT reads)
    reach: Tensor       # [B, V] int64 the edges into v are exactly the u < reach[v] (0 at padding nodes)

    def to(self, device: torch.device | str) -> ShortcutGraph:
        return ShortcutGraph(self.nodes.to(device), self.adjacency.to(device), self.reach.to(device))


def session_nodes(items: Tensor) -> SessionNodes:
    """Distinct items of every row, numbered in order of first appearance (see the module docstring).

    One stable sort of the real clicks by (row, item) groups each row's clicks of an item, first click first;
    group starts mark new nodes, a running count of the marks along each row numbers them, and every click takes
    the number of its group's first click; its rank in the group is its `occurrence`.

    Args:
        items: [B, L] integer item ids (int64 or int32), 0 = padding; each row's real items are contiguous (a left-
            or right-aligned row); the graphs read consecutive real positions as consecutive clicks.
    """
    batch, length = items.shape
    device = items.device
    real = items != 0                                                               # [B, L]
    positions = real.view(-1).nonzero().squeeze(1)                                  # [C] flat, row-major
    count = positions.shape[0]
    if not count:                                                                   # no click, no node
        empty, none = torch.zeros(batch, length, dtype=torch.int64, device=device), real.new_zeros(batch).long()
        return SessionNodes(items.new_zeros(batch, 1), empty, real, none, none, empty, empty)
    order, group_start = _group_by_row_and_item(items, positions)                   # [C], [C] sorted order
    at = (positions.index_select(0, order),)                                        # flat position of sorted clicks
    ramp = torch.arange(count, device=device)
    group_first = ramp.masked_fill(~group_start, 0).cummax(0).values                # [C] sorted index of group start
    is_first = real.new_zeros(batch * length).index_put_(at, group_start)           # [B * L]
    seen = is_first.view(batch, length).cumsum(1)                                   # [B, L] nodes first clicked so far
    node = seen.view(-1).index_select(0, at[0].index_select(0, group_first)).sub_(1)  # [C] node of sorted clicks
    alias = torch.zeros(batch * length, dtype=torch.int64, device=device).index_put_(at, node).view(batch, length)
    occurrence = torch.zeros_like(alias).view(-1).index_put_(at, ramp - group_first).view(batch, length)
    num_nodes = seen[:, -1].clone()                                                 # [B] (seen is masked below)
    width = max(int(num_nodes.max()), 1)                                            # V
    # a node's clicks all carry its item; padding positions (node 0, item 0) never win the max
    node_items = items.new_zeros(batch, width).scatter_reduce_(1, alias, items, "amax")
    # the row's last click is its clicks' last flat position (`positions` is row-major); empty rows keep node 0
    clicks = real.sum(1)                                                            # [B]
    ends = clicks.cumsum(0).sub_(1).clamp_(min=0)                                   # [B] index of the last click
    last = alias.view(-1).index_select(0, positions.index_select(0, ends)).masked_fill_(clicks == 0, 0)  # [B]
    return SessionNodes(node_items, alias, real, num_nodes, last, occurrence, seen.mul_(real))


def _group_by_row_and_item(items: Tensor, positions: Tensor) -> tuple[Tensor, Tensor]:
    """Sort the clicks at flat `positions` of `items [B, L]` by (row, item), click order among equal pairs
    (stable): ([C] permutation, [C] bool True at the first click of each (row, item) group in that order)."""
    batch, length = items.shape
    group_start = torch.ones_like(positions, dtype=torch.bool)
    span = int(items.max()) + 1
    if batch * span < 2 ** 62:                                                      # one sort of a joint key
        clicks = items.reshape(-1).index_select(0, positions)                       # [C]
        key, order = torch.sort(torch.add(clicks, positions // length, alpha=span), stable=True)
        torch.ne(key[1:], key[:-1], out=group_start[1:])
        return order, group_start
    rows, clicks = positions // length, items.reshape(-1).index_select(0, positions).long()  # [C]
    by_item = torch.sort(clicks, stable=True).indices                               # two stable sorts, row last
    order = by_item.index_select(0, torch.sort(rows.index_select(0, by_item), stable=True).indices)
    rows, clicks = rows.index_select(0, order), clicks.index_select(0, order)
    group_start[1:] = (rows[1:] != rows[:-1]) | (clicks[1:] != clicks[:-1])
    return order, group_start


def srgnn_graph(items_or_nodes: Tensor | SessionNodes) -> SRGNNGraph:
    """SR-GNN's degree-normalised in/out adjacency of every row (see the module docstring).

    Works on the click pairs, never on the dense matrices until the one write: the batch's distinct edges
    (row, u, v) come from one sort of their joint key, their counts per source and per target node are the
    out- and in-degrees, and each distinct edge writes 1 / outdeg(u) at [u, v] of the out-graph and 1 /
    indeg(v) at [v, u] of the in-graph of a zeroed [2, B, V, V].

    Args:
        items_or_nodes: [B, L] integer item ids (0 = padding) or their `session_nodes`.
    """
    nodes = _nodes(items_or_nodes)
    batch, width = nodes.items.shape
    alias, real = nodes.alias, nodes.is_click
    square = width * width
    adjacency = torch.zeros(2, batch * square, device=alias.device)
    is_edge = (real[:, :-1] & real[:, 1:]).view(-1)                                 # [B * (L - 1)] click pairs
    if alias.shape[1] > 1 and bool(is_edge.any()):
        pair = torch.nonzero(is_edge).squeeze(1)                                    # [P] flat pair index
        row = pair // (alias.shape[1] - 1)
        flat = pair + row                                                           # the pair's source position
        source, target = alias.view(-1)[flat], alias.view(-1)[flat + 1]
        edge = torch.unique(row * square + source * width + target)                 # [Q] distinct (row, u, v)
        from_u, target = edge // width, edge % width                                # [Q] flat node row * V + u, v
        source = from_u % width
        into_v = from_u - source + target                                           # [Q] flat node row * V + v
        out_degree = torch.bincount(from_u, minlength=batch * width)
        in_degree = torch.bincount(into_v, minlength=batch * width)
        adjacency[0].index_put_((into_v * width + source,),                         # in-graph slot [row, v, u]
                                in_degree.index_select(0, into_v).to(adjacency.dtype).reciprocal_())
        adjacency[1].index_put_((edge,), out_degree.index_select(0, from_u).to(adjacency.dtype).reciprocal_())
    adjacency = adjacency.view(2, batch, width, width)
    return SRGNNGraph(nodes, adjacency[0], adjacency[1])


def eop_multigraph(items_or_nodes: Tensor | SessionNodes) -> EOPGraph:
    """LESSR's EOP multigraph: for every node, the sources of its incoming edges in order of occurrence.

    The edge into a click comes from the click before it in its row, so every click has one except the row's
    first, which is the first click of node 0: the rank of a click's edge among its node's incoming edges is
    its `occurrence`, less one for node 0 (-1: no edge, padding included), and one scatter writes them all.

    Args:
        items_or_nodes: [B, L] integer item ids (0 = padding) or their `session_nodes`.
    """
    nodes = _nodes(items_or_nodes)
    batch, width = nodes.items.shape
    alias = nodes.alias
    edges = torch.add(nodes.occurrence, alias != 0)                                 # [B, L] in-edges up to here
    in_degree = alias.new_zeros(batch, width).scatter_reduce_(1, alias, edges, "amax")  # [B, V]
    depth = max(int(in_degree.max()) if batch else 0, 1)                            # E
    # the edge into position i (1..L-1) goes to slot 1 + (node * E + rank); no edge (edges = 0, node 0): slot 0
    slots = torch.add(edges[:, 1:], alias[:, 1:], alpha=depth)                     # [B, L - 1]
    sources = alias.new_zeros(batch, 1 + width * depth).scatter_(1, slots, alias[:, :-1])
    sources = sources[:, 1:].view(batch, width, depth)                              # spare slot 0 dropped
    sources_valid = _prefixes(in_degree, depth)                                     # [B, V, E]
    return EOPGraph(nodes, sources, sources_valid, in_degree)


def shortcut_graph(items_or_nodes: Tensor | SessionNodes) -> ShortcutGraph:
    """LESSR's shortcut graph: u -> v iff first click of u <= last click of v (see the module docstring).

    Nodes are numbered by first click, so `first(u) <= last(v)` iff `u < reach(v)`, the number of the row's
    nodes first clicked at or before v's last click (`seen` there): one scatter-max.

    Args:
        items_or_nodes: [B, L] integer item ids (0 = padding) or their `session_nodes`.
    """
    nodes = _nodes(items_or_nodes)
    batch, width = nodes.items.shape
    alias = nodes.alias
    reach = alias.new_zeros(batch, width).scatter_reduce_(1, alias, nodes.seen, "amax")  # [B, V]
    # row v of the [B, v, u] layout is the prefix u < reach(v): rows of a small table (cheaper than a compare)
    adjacency = _prefixes(reach, width).transpose(1, 2)                             # [B, V(u), V(v)]
    return ShortcutGraph(nodes, adjacency, reach)


def _prefixes(counts: Tensor, size: int) -> Tensor:
    """[..., size] bool, True at the first `counts[...]` places (0 <= counts <= size): rows of a lookup table."""
    ramp = torch.arange(size + 1, device=counts.device)
    return (ramp.unsqueeze(1) > ramp[:-1]).index_select(0, counts.view(-1)).view(*counts.shape, size)


def _nodes(items_or_nodes: Tensor | SessionNodes) -> SessionNodes:
    return items_or_nodes if isinstance(items_or_nodes, SessionNodes) else session_nodes(items_or_nodes)
