"""Neighbour sampling: mini-batches of a graph too large to train full-batch.

GraphSAGE's recipe (Hamilton, Ying & Leskovec, 2017): around a batch of seed nodes, draw up to
`fanouts[0]` in-neighbours of each seed, then up to `fanouts[1]` in-neighbours of each node
newly reached, and so on, one fan-out per message-passing layer. The sampled edges and the nodes
they reach form a small subgraph; an L-layer GNN run on it gives each seed an output computed
from at most prod(fanouts) nodes instead of its whole L-hop neighbourhood. Draws come from
torch's global generator, so a seeded run samples the same subgraphs and a resumed run (whose
generator state the checkpoint restores) continues exactly as an uninterrupted one.

Everything is vectorised over the frontier: within each node's in-edges, random keys are sorted
and the first `fanout` kept, which is sampling without replacement.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from fieldguide.layers.graph import EdgeStructure


@dataclass
class Subgraph:
    """A sampled subgraph around seed nodes.

    Attributes:
        nodes: Global ids of its nodes (n,); the seeds come first, in the order given.
        edge_index: (2, e) local edges (positions in `nodes`), source -> target.
        edge_weight: (e,) weights of the sampled edges, or None for an unweighted graph.
        num_seeds: How many of the first `nodes` are seeds.
    """

    nodes: Tensor
    edge_index: Tensor
    edge_weight: Tensor | None
    num_seeds: int


class NeighborSampler:
    """Samples fixed fan-out in-neighbourhoods around seed nodes, one fan-out per layer.

    Args:
        edge_index: (2, E) edges of the whole graph, source -> target.
        num_nodes: N.
        fanouts: In-neighbours drawn per node at each hop, e.g. (10, 5); -1 takes them all.
        edge_weight: (E,) weights, carried onto the sampled edges, or None.
        undirected: Sample over the edges in both directions (as the model will see them).
    """

    def __init__(
        self,
        edge_index: Tensor,
        num_nodes: int,
        fanouts: Sequence[int],
        edge_weight: Tensor | None = None,
        *,
        undirected: bool = False,
    ) -> None:
        if not fanouts or any(not isinstance(f, int) or (f < 1 and f != -1) for f in fanouts):
            raise ValueError(
                f"NeighborSampler expects fanouts as positive ints (or -1 for all), one per "
                f"layer, such as (10, 5); got {tuple(fanouts)}."
            )
        self.fanouts = tuple(fanouts)
        self.num_nodes = num_nodes
        # Coalesced and sorted by target: the in-edges of node i are crow[i]:crow[i + 1].
        self.edges = EdgeStructure.build(edge_index, edge_weight, num_nodes, undirected=undirected)
        self.weighted = edge_weight is not None

    def sample(self, seeds: Tensor) -> Subgraph:
        """The subgraph reached from `seeds` (int64 (B,), distinct global node ids)."""
        edges = self.edges
        local = torch.full((self.num_nodes,), -1, dtype=torch.long)
        local[seeds] = torch.arange(seeds.numel())
        nodes, frontier = [seeds], seeds
        chosen_edges = []
        for fanout in self.fanouts:
            if frontier.numel() == 0:
                break
            start = edges.crow[frontier]
            degree = edges.crow[frontier + 1] - start
            total = int(degree.sum())
            segment = torch.repeat_interleave(torch.arange(frontier.numel()), degree)  # (total,)
            first = torch.cumsum(degree, 0) - degree  # where each node's in-edges begin
            offset = torch.arange(total) - first[segment]  # 0, 1, ... within each node
            edge_ids = start[segment] + offset
            if fanout != -1:
                # Sort random keys within each segment; the first `fanout` are a uniform sample.
                order = torch.argsort(segment.double() + torch.rand(total, dtype=torch.float64))
                keep = offset < fanout  # rank within the segment after sorting
                edge_ids = edge_ids[order][keep]
            chosen_edges.append(edge_ids)
            sources = edges.src[edge_ids]
            new = torch.unique(sources[local[sources] < 0])
            local[new] = torch.arange(new.numel()) + sum(t.numel() for t in nodes)
            nodes.append(new)
            frontier = new
        chosen = torch.cat(chosen_edges) if chosen_edges else torch.zeros(0, dtype=torch.long)
        edge_index = torch.stack([local[edges.src[chosen]], local[edges.dst[chosen]]])
        return Subgraph(
            nodes=torch.cat(nodes),
            edge_index=edge_index,
            edge_weight=edges.weight[chosen] if self.weighted else None,
            num_seeds=seeds.numel(),
        )
