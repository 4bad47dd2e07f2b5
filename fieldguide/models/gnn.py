"""Graph neural networks: GCN, GAT and GraphSAGE on sparse edges (docs/guide/gnn.md).

Letters: N nodes, E edges, C features, D width, h heads, G graphs.

Three message-passing layers, each mapping node features (N, C) to (N, D) over sparse edges
(fieldguide/layers/graph.py; O(E) memory, where the guide's dense A_hat @ X needs O(N^2)):

- GCN (Kipf & Welling, "Semi-Supervised Classification with Graph Convolutional Networks",
  2017): H' = D^-1/2 (A + I) D^-1/2 H W, with the normalised adjacency built once per graph.
- GAT (Velickovic et al., "Graph Attention Networks", 2018): per head, attention
  a_ij = softmax_j LeakyReLU(a_src . W h_j + a_dst . W h_i) over i's in-neighbours and itself;
  heads concatenated (hidden layers) or averaged.
- GraphSAGE (Hamilton, Ying & Leskovec, "Inductive Representation Learning on Large Graphs",
  2017): H' = W_root H + W_neigh agg_j(H_j), agg the mean or the elementwise max.

A model stacks `num_layers` of them (dropout -> layer -> norm -> activation, plus the layer's
input when `residual` and the widths match), so a node's output sees its `num_layers`-hop
neighbourhood; a linear head maps each node (or, with a readout, each graph) to `out_dim`.
Node outputs are permutation equivariant and graph readouts invariant (tested for every preset).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fieldguide.layers.graph import (
    EdgeStructure,
    StructureCache,
    as_graph,
    check_graph,
    edge_softmax,
    gcn_values,
    max_aggregate,
    mean_values,
    readout,
    spmm,
)
from fieldguide.models.base import DataSpec, Model
from fieldguide.models.registry import register


@dataclass(frozen=True)
class GNNConfig:
    """Sizes of a GCN; GAT and GraphSAGE add their own fields. `create_model` takes any field."""

    in_channels: int = 16  # node features
    hidden_dim: int = 64
    out_dim: int = 2  # classes (node or graph level)
    num_layers: int = 2  # message-passing layers = hops each output sees
    dropout: float = 0.5  # on the features entering every layer and the head
    norm: Literal["none", "layer", "batch"] = "none"
    residual: bool = False  # add a layer's input to its output where the widths match
    undirected: bool = False  # also pass messages against each edge's direction
    readout: Literal["none", "mean", "sum", "max"] = "none"  # none: one output per node

    def __post_init__(self) -> None:
        name = type(self).__name__
        for field in ("in_channels", "hidden_dim", "out_dim", "num_layers"):
            if getattr(self, field) < 1:
                raise ValueError(f"{name}.{field} must be at least 1, got {getattr(self, field)}.")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"{name}.dropout must be in [0, 1), got {self.dropout}.")


@dataclass(frozen=True)
class GATConfig(GNNConfig):
    """Sizes of a GAT: a GNNConfig plus attention heads."""

    dropout: float = 0.6  # the paper's value, on features
    num_heads: int = 8  # hidden_dim is split across them when concat_heads
    concat_heads: bool = True  # False: every head has hidden_dim features, averaged
    attn_dropout: float = 0.6  # on the attention weights, in training
    negative_slope: float = 0.2  # of the LeakyReLU on attention scores

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.num_heads < 1:
            raise ValueError(f"GATConfig.num_heads must be at least 1, got {self.num_heads}.")
        if self.concat_heads and self.hidden_dim % self.num_heads:
            raise ValueError(
                f"GATConfig.hidden_dim ({self.hidden_dim}) must be divisible by num_heads "
                f"({self.num_heads}) when concat_heads is True."
            )
        if not 0.0 <= self.attn_dropout < 1.0:
            raise ValueError(f"GATConfig.attn_dropout must be in [0, 1), got {self.attn_dropout}.")


@dataclass(frozen=True)
class SAGEConfig(GNNConfig):
    """Sizes of a GraphSAGE model: a GNNConfig plus its aggregator."""

    aggregator: Literal["mean", "max"] = "mean"  # over in-neighbours
    root_weight: bool = True  # add W_root h_i: a node keeps its own features apart


# -------------------------------------------------------------------------------------------
# Message-passing layers: (x (N, C), edges) -> (N, D)
# -------------------------------------------------------------------------------------------


class GCNConv(nn.Module):
    """H' = D^-1/2 (A + I) D^-1/2 H W + b (Kipf & Welling, 2017)."""

    diagram_label = "GCNConv: Σ over neighbours"

    def __init__(self, in_dim: int, out_dim: int) -> None:
        super().__init__()
        self.linear = nn.Linear(in_dim, out_dim, bias=False)
        self.bias = nn.Parameter(torch.zeros(out_dim))
        nn.init.xavier_uniform_(self.linear.weight)  # Glorot, as in the paper

    def forward(self, x: Tensor, edges: EdgeStructure) -> Tensor:
        """Map x (N, in_dim) to (N, out_dim)."""
        looped, values = edges.with_self_loops(), gcn_values(edges)
        # A_hat (X W) = (A_hat X) W: aggregate on the narrower side of the projection.
        if self.linear.out_features <= self.linear.in_features:
            return spmm(looped, values, self.linear(x)) + self.bias
        return self.linear(spmm(looped, values, x)) + self.bias


class GATConv(nn.Module):
    """Multi-head graph attention over in-neighbours and self (Velickovic et al., 2018)."""

    diagram_label = "GATConv: attention over neighbours"

    def __init__(self, in_dim: int, out_dim: int, config: GATConfig, concat: bool) -> None:
        super().__init__()
        self.heads, self.concat = config.num_heads, concat
        self.head_dim = out_dim // config.num_heads if concat else out_dim
        self.attn_dropout, self.negative_slope = config.attn_dropout, config.negative_slope
        self.linear = nn.Linear(in_dim, self.heads * self.head_dim, bias=False)
        self.att_src = nn.Parameter(torch.empty(self.heads, self.head_dim))
        self.att_dst = nn.Parameter(torch.empty(self.heads, self.head_dim))
        self.bias = nn.Parameter(torch.zeros(out_dim))
        for weight in (self.linear.weight, self.att_src, self.att_dst):
            nn.init.xavier_uniform_(weight)

    def forward(self, x: Tensor, edges: EdgeStructure) -> Tensor:
        """Map x (N, in_dim) to (N, out_dim)."""
        looped = edges.with_self_loops()
        z = self.linear(x).view(x.shape[0], self.heads, self.head_dim)  # (N, h, D/h)
        # a . [W h_j ; W h_i] splits into a source part and a target part, one number per node.
        source = (z * self.att_src).sum(-1)  # (N, h)
        target = (z * self.att_dst).sum(-1)  # (N, h)
        pair = source.index_select(0, looped.src) + target.index_select(0, looped.dst)  # (E', h)
        scores = F.leaky_relu(pair, self.negative_slope)
        alpha = edge_softmax(looped, scores)  # (E', h), sums to 1 over each node's in-edges
        alpha = F.dropout(alpha, self.attn_dropout, self.training)
        out = spmm(looped, alpha.t(), z)  # (N, h, D/h)
        out = out.flatten(1) if self.concat else out.mean(1)  # (N, out_dim)
        return out + self.bias


class SAGEConv(nn.Module):
    """h_i' = W_root h_i + W_neigh agg_{j -> i} h_j (Hamilton et al., 2017)."""

    def __init__(self, in_dim: int, out_dim: int, config: SAGEConfig) -> None:
        super().__init__()
        self.aggregator = config.aggregator
        self.diagram_label = f"SAGEConv: {config.aggregator} over neighbours"
        self.neighbours = nn.Linear(in_dim, out_dim)
        self.root = nn.Linear(in_dim, out_dim, bias=False) if config.root_weight else None

    def forward(self, x: Tensor, edges: EdgeStructure) -> Tensor:
        """Map x (N, in_dim) to (N, out_dim)."""
        if self.aggregator == "max":
            out = self.neighbours(max_aggregate(edges, x))
        elif self.neighbours.out_features <= self.neighbours.in_features:
            # The mean commutes with W; its weights sum to 1 (or 0 alone), so b passes unchanged.
            weight = self.neighbours.weight
            out = spmm(edges, mean_values(edges), x @ weight.t()) + self.neighbours.bias
        else:
            out = self.neighbours(spmm(edges, mean_values(edges), x))
        return out if self.root is None else out + self.root(x)


# -------------------------------------------------------------------------------------------
# The model: layers, readout, head
# -------------------------------------------------------------------------------------------


class GNNBlock(nn.Module):
    """Dropout -> message passing -> norm -> activation, plus the input when `residual`."""

    def __init__(self, conv: nn.Module, in_dim: int, out_dim: int, config: GNNConfig) -> None:
        super().__init__()
        self.drop = nn.Dropout(config.dropout)
        self.conv = conv
        self.norm = {
            "none": nn.Identity,
            "layer": lambda: nn.LayerNorm(out_dim),
            "batch": lambda: nn.BatchNorm1d(out_dim),
        }[config.norm]()
        self.act = nn.ELU() if isinstance(conv, GATConv) else nn.ReLU()  # ELU: the GAT paper's
        self.residual = config.residual and in_dim == out_dim

    @property
    def diagram_label(self) -> str:
        """The box's name in traced diagrams: the layer, what it aggregates, its activation."""
        return f"{self.conv.diagram_label} → {type(self.act).__name__}"

    def forward(self, x: Tensor, edges: EdgeStructure) -> Tensor:
        """Map x (N, in_dim) to (N, out_dim)."""
        h = self.act(self.norm(self.conv(self.drop(x), edges)))
        return x + h if self.residual else h


class GNN(Model):
    """Graph convolutional network (Kipf & Welling, 2017) on sparse edges."""

    invariants = frozenset({"permutation_equivariant"})
    reads = "graph"  # forward reads (x, edge_index, ...), not one tensor per example
    outputs = ("per-node", "per-graph")  # per graph through the readout
    reads_edge_weight = True  # False: edge weights are checked, then left out
    example_nodes_per_graph = 5  # nodes of each graph in a graph-level example input

    def __init__(self, config: GNNConfig) -> None:
        super().__init__(config)
        dims = [config.in_channels] + [config.hidden_dim] * config.num_layers
        self.blocks = nn.ModuleList(
            GNNBlock(self.make_conv(d_in, d_out), d_in, d_out, config)
            for d_in, d_out in zip(dims[:-1], dims[1:], strict=True)
        )
        self.head = nn.Sequential(nn.Dropout(config.dropout), nn.Linear(dims[-1], config.out_dim))
        self._edges = StructureCache()  # the normalised graph, built once per graph

    def make_conv(self, in_dim: int, out_dim: int) -> nn.Module:
        """One message-passing layer."""
        return GCNConv(in_dim, out_dim)

    @property
    def hops(self) -> int:
        """How far a node's output reaches: its num_layers-hop in-neighbourhood."""
        return self.config.num_layers

    @property
    def input_description(self) -> str:
        """What forward expects."""
        batch = ", batch (N,) of graph ids" if self.config.readout != "none" else ""
        return (
            f"node features x (N, {self.config.in_channels}), edge_index (2, E), optional "
            f"edge_weight (E,){batch}; or a fieldguide Graph / torch_geometric Data"
        )

    def example_input(self, batch_size: int = 2) -> tuple[Tensor, ...]:
        """A random graph: a ring with both directions plus chords, with edge weights.

        Node-level models get `batch_size` nodes; graph-level ones (a readout) get
        `batch_size` graphs of `example_nodes_per_graph` nodes and the batch vector.
        """
        graphs = 1 if self.config.readout == "none" else batch_size
        n = batch_size if self.config.readout == "none" else self.example_nodes_per_graph
        parts = []
        for g in range(graphs):
            ring = torch.arange(n)
            chords = torch.randint(0, n, (2, n))
            ei = torch.cat(
                [torch.stack([ring, (ring + 1) % n]), torch.stack([(ring + 1) % n, ring]), chords],
                1,
            )
            parts.append(ei + g * n)
        edge_index = torch.cat(parts, 1)
        x = torch.randn(graphs * n, self.config.in_channels)
        weight = torch.rand(edge_index.shape[1]) + 0.5
        if self.config.readout == "none":
            return x, edge_index, weight
        return x, edge_index, weight, torch.arange(graphs).repeat_interleave(n)

    @classmethod
    def config_for_data(cls, config: GNNConfig, spec: DataSpec) -> GNNConfig:
        """Node features (C,) in, `num_outputs` per node (readout "none") or per graph.

        Per graph, the user's readout stays and "none" becomes "mean"; per node, the readout
        must be "none".
        """
        cls.refuse_shape(spec, "C")
        cls.refuse_output(spec)
        readout = config.readout
        if spec.output == "per-node":
            readout = "none"
        elif readout == "none":
            readout = "mean"
        return replace(config, in_channels=spec.shape[0], out_dim=spec.num_outputs, readout=readout)

    def forward(
        self,
        x: Any,
        edge_index: Tensor | None = None,
        edge_weight: Tensor | None = None,
        batch: Tensor | None = None,
    ) -> Tensor:
        """Map node features x (N, in_channels) over edges (2, E) to (N, out_dim), or (G, out_dim).

        Args:
            x: node features, or a whole graph (a fieldguide `Graph` or a torch_geometric
                `Data`/`Batch`), whose edges, weights and batch vector are then used.
            edge_index: (2, E) int64, sources then targets; messages flow source -> target.
            edge_weight: (E,) non-negative weights; GAT ignores them.
            batch: (N,) sorted graph id per node, for a readout over several graphs.
        """
        graph = as_graph(x)
        if graph is not None:
            x, edge_index = graph.x, graph.edge_index
            edge_weight = graph.edge_weight if edge_weight is None else edge_weight
            batch = graph.batch if batch is None else batch
        check_graph(
            x,
            edge_index,
            edge_weight,
            batch,
            in_dim=self.config.in_channels,
            owner=self.name,
            like=self.head[-1].weight,
        )
        weight = edge_weight if self.reads_edge_weight else None  # GAT learns its own weights
        edges = self._edges.get(
            edge_index, weight, x.shape[0], undirected=self.config.undirected, dtype=x.dtype
        )
        h = x
        for block in self.blocks:
            h = block(h, edges)  # (N, hidden_dim)
        if self.config.readout != "none":
            h = readout(h, batch, self.config.readout)  # (G, hidden_dim)
        return self.head(h)


class GAT(GNN):
    """Graph attention network (Velickovic et al., 2018) on sparse edges."""

    reads_edge_weight = False  # attention decides how much each neighbour counts

    def make_conv(self, in_dim: int, out_dim: int) -> nn.Module:
        """One multi-head attention layer."""
        return GATConv(in_dim, out_dim, self.config, concat=self.config.concat_heads)


class GraphSAGE(GNN):
    """GraphSAGE (Hamilton, Ying & Leskovec, 2017) with mean or max aggregation."""

    def make_conv(self, in_dim: int, out_dim: int) -> nn.Module:
        """One GraphSAGE layer."""
        return SAGEConv(in_dim, out_dim, self.config)


register("gcn", GNNConfig(), GNN)
register("gcn-deep", GNNConfig(num_layers=4, norm="layer", residual=True, dropout=0.2), GNN)
register("gat", GATConfig(), GAT)
register("graphsage", SAGEConfig(), GraphSAGE)
register("graphsage-max", SAGEConfig(aggregator="max"), GraphSAGE)
