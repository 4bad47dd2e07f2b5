"""Graphs as sparse edges, and message passing over them.

Letters: N nodes, E edges, C features, D width, h heads, G graphs.

A graph is `x` (N, C) node features and `edge_index` (2, E): row 0 the source of each edge, row 1
its target. Messages flow source -> target, so node i aggregates over its in-neighbours. All
costs are O(E): the guide's dense `A_hat @ X` (O(N^2) memory, 37 GiB at 100k nodes) never
appears. Aggregation is a sparse CSR matrix times a dense one (torch's own kernel), with a custom
backward that reuses cached transposed indices; the per-edge gradient of attention weights is a
sampled dense-dense product (`torch.sparse.sampled_addmm`), so no (E, h, D) message tensor is
ever materialised.

Conventions, tested in tests/layers/test_graph.py:

- Duplicate edges add their weights: parallel edges of a multigraph count, as in A = sum of
  edges.
- `undirected=True` links both ways with W_ij = W_ji = max(W_ij, W_ji): an edge listed in one
  direction gets its reverse, and one listed in both directions is not doubled.
- Operators that add self loops (GCN, GAT) keep a node's own loop with its weight and give a
  loop of weight 1 to every node without one (an isolated node then keeps its own features).
- Mean and max aggregation (GraphSAGE) use the edges as given: an isolated node aggregates to 0.
- Edge weights must be finite and non-negative; GAT reads only which edges exist.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, fields, replace
from typing import Any

import torch
from torch import Tensor

from fieldguide.layers.shapes import check_device, check_shape

# -------------------------------------------------------------------------------------------
# The graph container and input checks
# -------------------------------------------------------------------------------------------


@dataclass
class Graph:
    """A graph in memory: node features, edges (source -> target) and optional extras.

    Attributes:
        x: (N, C) float node features.
        edge_index: (2, E) int64; row 0 holds sources, row 1 targets, values in [0, N).
        edge_weight: (E,) non-negative float weights, or None for weight 1 on every edge.
        y: labels: (N,) for nodes, or one per graph.
        batch: (N,) sorted graph id of each node when several graphs share one Graph.
    """

    x: Tensor
    edge_index: Tensor
    edge_weight: Tensor | None = None
    y: Tensor | None = None
    batch: Tensor | None = None

    @property
    def num_nodes(self) -> int:
        """N."""
        return self.x.shape[0]

    @property
    def num_edges(self) -> int:
        """E, counting each listed edge (a reverse pair counts twice)."""
        return self.edge_index.shape[1]

    @property
    def num_graphs(self) -> int:
        """Graphs in this batch: 1 without a batch vector."""
        if self.batch is None or self.batch.numel() == 0:
            return 1
        return int(self.batch[-1]) + 1

    def to(self, device: str | torch.device) -> Graph:
        """A copy with every tensor on `device`."""
        return replace(self, **{f.name: _move(getattr(self, f.name), device) for f in fields(self)})


def _move(t: Tensor | None, device: str | torch.device) -> Tensor | None:
    return None if t is None else t.to(device)


def as_graph(obj: Any) -> Graph | None:
    """`obj` as a Graph if it is one, or a torch_geometric `Data`/`Batch`; else None.

    torch_geometric is never imported: anything with `x` and `edge_index` attributes is read
    as PyG reads it. A 1-D `edge_weight` (or a 1-D `edge_attr`) becomes the edge weights.
    """
    if isinstance(obj, Graph):
        return obj
    if isinstance(obj, Tensor) or not (hasattr(obj, "x") and hasattr(obj, "edge_index")):
        return None
    weight = getattr(obj, "edge_weight", None)
    attr = getattr(obj, "edge_attr", None)
    if weight is None and isinstance(attr, Tensor) and attr.ndim == 1:
        weight = attr
    return Graph(
        x=obj.x,
        edge_index=obj.edge_index,
        edge_weight=weight,
        y=getattr(obj, "y", None),
        batch=getattr(obj, "batch", None),
    )


def check_graph(
    x: object,
    edge_index: object,
    edge_weight: object = None,
    batch: object = None,
    *,
    in_dim: int,
    owner: str,
    like: Tensor | None = None,
) -> None:
    """Raise one clear sentence for the first argument that is not a valid graph input.

    `like`, a parameter of the model, sets the device and dtype of x (see check_shape); the
    edges, weights and batch vector must be on x's device.
    """
    check_shape(x, "N C", C=in_dim, owner=owner, name="x", what="node features", like=like)
    n = x.shape[0]  # type: ignore[union-attr]
    if not isinstance(edge_index, Tensor):
        raise TypeError(
            f"{owner} expects edge_index as a torch.Tensor of shape (2, E); "
            f"got {type(edge_index).__name__}."
        )
    if edge_index.dtype not in (torch.int64, torch.int32):
        raise TypeError(
            f"{owner} expects edge_index of dtype torch.int64 (node numbers); "
            f"got {edge_index.dtype}."
        )
    if edge_index.ndim != 2 or edge_index.shape[0] != 2:
        hint = "; transpose it" if edge_index.ndim == 2 and edge_index.shape[1] == 2 else ""
        raise ValueError(
            f"{owner} expects edge_index of shape (2, E), sources then targets; "
            f"got {tuple(edge_index.shape)}{hint}."
        )
    check_device(edge_index, x.device, owner=owner, name="edge_index")
    if edge_index.numel():
        low, high = int(edge_index.min()), int(edge_index.max())
        if low < 0 or high >= n:
            bad = low if low < 0 else high
            raise ValueError(
                f"{owner} expects edge_index values in [0, {n}) for {n} nodes; got {bad}."
            )
    if edge_weight is not None:
        e = edge_index.shape[1]
        if not isinstance(edge_weight, Tensor) or not edge_weight.is_floating_point():
            got = (
                edge_weight.dtype if isinstance(edge_weight, Tensor) else type(edge_weight).__name__
            )
            raise TypeError(
                f"{owner} expects edge_weight as a float tensor of shape ({e},); got {got}."
            )
        if tuple(edge_weight.shape) != (e,):
            raise ValueError(
                f"{owner} expects edge_weight of shape ({e},), one per edge; "
                f"got {tuple(edge_weight.shape)}."
            )
        check_device(edge_weight, x.device, owner=owner, name="edge_weight")
        if edge_weight.numel() and not bool(
            (edge_weight >= 0).all() & edge_weight.isfinite().all()
        ):
            raise ValueError(f"{owner} expects edge_weight finite and non-negative.")
    if batch is not None:
        check_batch(batch, n, owner=owner, device=x.device)


def check_batch(
    batch: object, num_nodes: int, *, owner: str, device: torch.device | None = None
) -> None:
    """Raise one sentence unless `batch` is a sorted (N,) tensor of graph ids from 0.

    With `device` (the node features'), the batch vector must be there too.
    """
    if not isinstance(batch, Tensor) or batch.dtype not in (torch.int64, torch.int32):
        got = batch.dtype if isinstance(batch, Tensor) else type(batch).__name__
        raise TypeError(f"{owner} expects batch as an int64 tensor of shape (N,); got {got}.")
    if tuple(batch.shape) != (num_nodes,):
        raise ValueError(
            f"{owner} expects batch of shape ({num_nodes},), one graph id per node; "
            f"got {tuple(batch.shape)}."
        )
    if device is not None:
        check_device(batch, device, owner=owner, name="batch")
    if num_nodes and (int(batch[0]) < 0 or bool((batch[1:] < batch[:-1]).any())):
        raise ValueError(
            f"{owner} expects batch sorted from 0 upwards (the nodes of graph 0, then graph 1, "
            "...); it is not: concatenate graphs with fieldguide.layers.graph.batch_graphs."
        )


def batch_graphs(graphs: Sequence[Graph]) -> Graph:
    """Many graphs as one disjoint graph, with `batch` telling which graph each node is in.

    Node numbers of graph k are shifted by the nodes of graphs 0..k-1; labels are concatenated
    (graph labels of shape () or (1,) become one entry per graph).
    """
    if not graphs:
        raise ValueError("batch_graphs expects at least one graph; got none.")
    sizes = torch.tensor([g.num_nodes for g in graphs])
    offsets = torch.cumsum(sizes, 0) - sizes
    edge_index = torch.cat(
        [g.edge_index.long() + off for g, off in zip(graphs, offsets.tolist(), strict=True)], 1
    )
    weighted = any(g.edge_weight is not None for g in graphs)
    edge_weight = (
        torch.cat(
            [
                g.edge_weight
                if g.edge_weight is not None
                else torch.ones(g.num_edges, dtype=g.x.dtype)
                for g in graphs
            ]
        )
        if weighted
        else None
    )
    labels = [g.y for g in graphs]
    y = None if any(t is None for t in labels) else torch.cat([t.reshape(-1) for t in labels])
    return Graph(
        x=torch.cat([g.x for g in graphs]),
        edge_index=edge_index,
        edge_weight=edge_weight,
        y=y,
        batch=torch.repeat_interleave(torch.arange(len(graphs)), sizes),
    )


# -------------------------------------------------------------------------------------------
# Edges as a sparse structure: coalesced, sorted by target, cached per graph
# -------------------------------------------------------------------------------------------


def _csr(crow: Tensor, col: Tensor, values: Tensor, size: int) -> Tensor:
    with warnings.catch_warnings():  # torch flags sparse CSR as beta on every construction
        warnings.simplefilter("ignore")
        return torch.sparse_csr_tensor(crow, col, values, (size, size), check_invariants=False)


class EdgeStructure:
    """Edges coalesced (one entry per source-target pair) and sorted by target, then source.

    Sorted by target, the edges are the rows of a CSR matrix M with M[target, source] = weight,
    so aggregation over in-neighbours is `M @ X`. Derived pieces (self loops, the transposed
    order, normalised values) are computed on first use and kept.
    """

    def __init__(self, src: Tensor, dst: Tensor, weight: Tensor, num_nodes: int) -> None:
        self.src, self.dst, self.weight, self.num_nodes = src, dst, weight, num_nodes
        counts = torch.bincount(dst, minlength=num_nodes)
        self.crow = torch.zeros(num_nodes + 1, dtype=torch.long, device=dst.device)
        self.crow[1:] = torch.cumsum(counts, 0)
        self._derived: dict[Any, Any] = {}

    @property
    def num_edges(self) -> int:
        """Distinct source-target pairs."""
        return self.src.numel()

    @classmethod
    def build(
        cls,
        edge_index: Tensor,
        edge_weight: Tensor | None,
        num_nodes: int,
        *,
        undirected: bool = False,
        dtype: torch.dtype = torch.float32,
    ) -> EdgeStructure:
        """Coalesce `edge_index` (duplicates add up), optionally make it undirected (max)."""
        src, dst = edge_index.long()
        w = (
            edge_weight.to(dtype)
            if edge_weight is not None
            else src.new_ones(src.shape, dtype=dtype)
        )
        key, w = _coalesce(dst * num_nodes + src, w, "sum")
        if undirected:
            src, dst = key % num_nodes, key // num_nodes
            both = torch.cat([key, src * num_nodes + dst])  # each edge and its reverse
            key, w = _coalesce(both, torch.cat([w, w]), "amax")
        return cls(key % num_nodes, key // num_nodes, w, num_nodes)

    def _get(self, name: Any, make: Any) -> Any:
        if name not in self._derived:
            self._derived[name] = make()
        return self._derived[name]

    def with_self_loops(self) -> EdgeStructure:
        """These edges plus a weight-1 loop at every node that has none (kept loops keep theirs)."""

        def make() -> EdgeStructure:
            n = self.num_nodes
            has_loop = torch.zeros(n, dtype=torch.bool, device=self.src.device)
            has_loop[self.src[self.src == self.dst]] = True
            new = (~has_loop).nonzero().squeeze(1)
            key = torch.cat([self.dst * n + self.src, new * n + new])
            weight = torch.cat([self.weight, self.weight.new_ones(new.numel())])
            key, weight = _coalesce(key, weight, "sum")  # sorts the new loops into place
            return EdgeStructure(key % n, key // n, weight, n)

        return self._get("self_loops", make)

    def in_degree(self, weight: Tensor | None = None) -> Tensor:
        """Weighted in-degree of every node (N,): the row sums of M."""
        w = self.weight if weight is None else weight
        return torch.zeros(self.num_nodes, dtype=w.dtype, device=w.device).index_add_(
            0, self.dst, w
        )

    def transposed(self) -> tuple[Tensor, Tensor, Tensor]:
        """CSR rows of M^T: (crow, col, perm) with M^T's values = M's values[perm]."""

        def make() -> tuple[Tensor, Tensor, Tensor]:
            n = self.num_nodes
            perm = torch.argsort(self.src * n + self.dst)
            counts = torch.bincount(self.src, minlength=n)
            crow = torch.zeros(n + 1, dtype=torch.long, device=self.src.device)
            crow[1:] = torch.cumsum(counts, 0)
            return crow, self.dst[perm], perm

        return self._get("transposed", make)

    def matrix(self, values: Tensor, transpose: bool = False) -> Tensor:
        """The (N, N) CSR matrix M with `values` (E,) on its edges, or its transpose M^T."""
        if transpose:
            crow, col, perm = self.transposed()
            return _csr(crow, col, self._permuted(values, perm), self.num_nodes)
        return _csr(self.crow, self.src, values.contiguous(), self.num_nodes)

    def _permuted(self, values: Tensor, perm: Tensor) -> Tensor:
        """values[perm], kept for constant values (a GCN's normalised adjacency) across steps.

        One entry, replaced when other values come: it holds the values it was made from, so
        their memory (and address, part of the key) cannot pass to another tensor meanwhile.
        """
        if values.requires_grad:
            return values[perm]
        key = (values.data_ptr(), values.shape, values.dtype, values._version)
        cached = self._derived.get("permuted")
        if cached is None or cached[0] != key:
            cached = self._derived["permuted"] = (key, values, values[perm])
        return cached[2]


def _coalesce(key: Tensor, weight: Tensor, reduce: str) -> tuple[Tensor, Tensor]:
    """Unique sorted keys, with the weights of equal keys reduced ("sum" or "amax")."""
    unique, inverse = torch.unique(key, sorted=True, return_inverse=True)
    out = weight.new_zeros(unique.numel())
    if reduce == "sum":
        return unique, out.index_add(0, inverse, weight)
    return unique, out.scatter_reduce(0, inverse, weight, "amax", include_self=False)


class StructureCache:
    """The last few graphs' EdgeStructures, found again by the content of their edges.

    A graph is found again when its `edge_index` and `edge_weight` hold the same values as a
    cached one (compared with `torch.equal` against a private copy, so an in-place edit of the
    caller's tensors is noticed), as in full-batch training where every step passes the same
    graph, also after a copy to the device. Weights that need a gradient are never cached.
    Not saved with the model: it is rebuilt on first use.
    """

    def __init__(self, size: int = 2) -> None:
        self.size = size
        self._entries: list[tuple[tuple[Any, ...], EdgeStructure]] = []

    def get(
        self,
        edge_index: Tensor,
        edge_weight: Tensor | None,
        num_nodes: int,
        *,
        undirected: bool,
        dtype: torch.dtype,
    ) -> EdgeStructure:
        """The cached structure of this graph, built on first sight."""
        build = EdgeStructure.build
        if edge_weight is not None and edge_weight.requires_grad:
            return build(edge_index, edge_weight, num_nodes, undirected=undirected, dtype=dtype)
        options = (num_nodes, undirected, dtype, edge_index.device)
        for i, ((index, weight, *rest), structure) in enumerate(self._entries):
            if tuple(rest) == options and _same(index, edge_index) and _same(weight, edge_weight):
                self._entries.insert(0, self._entries.pop(i))
                return structure
        structure = build(edge_index, edge_weight, num_nodes, undirected=undirected, dtype=dtype)
        weight = None if edge_weight is None else edge_weight.detach().clone()
        key = (edge_index.clone(), weight, *options)
        self._entries = [(key, structure), *self._entries][: self.size]
        return structure


def _same(cached: Tensor | None, given: Tensor | None) -> bool:
    if cached is None or given is None:
        return cached is None and given is None
    return (
        cached.shape == given.shape
        and cached.dtype == given.dtype
        and cached.device == given.device
        and torch.equal(cached, given)
    )


# -------------------------------------------------------------------------------------------
# Sparse-dense products with a backward that knows the structure
# -------------------------------------------------------------------------------------------


class _SpMM(torch.autograd.Function):
    """out[k] = M_k @ x[k] for heads k, with M_k the structure's matrix holding values[k].

    One CSR product per head on the same cached indices: as fast here as one block-diagonal
    product over all heads, without a copy of the indices per head.
    """

    @staticmethod
    def forward(ctx: Any, values: Tensor, x: Tensor, structure: EdgeStructure) -> Tensor:
        ctx.structure = structure
        ctx.save_for_backward(values, x)
        return torch.stack([structure.matrix(v) @ h for v, h in zip(values, x, strict=True)])

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, Tensor | None, None]:
        values, x = ctx.saved_tensors
        structure: EdgeStructure = ctx.structure
        grad = grad.contiguous()
        grad_values = grad_x = None
        if ctx.needs_input_grad[1]:  # dL/dx = M^T @ dL/dout
            grad_x = torch.stack(
                [structure.matrix(v, transpose=True) @ g for v, g in zip(values, grad, strict=True)]
            )
        if ctx.needs_input_grad[0]:  # dL/dM_ij = <dL/dout_i, x_j>, only where an edge exists
            pattern = structure.matrix(values.new_zeros(structure.num_edges))
            grad_values = torch.stack(
                [
                    torch.sparse.sampled_addmm(pattern, g, h.t(), beta=0.0).values()
                    for g, h in zip(grad, x, strict=True)
                ]
            )
        return grad_values, grad_x, None


def spmm(structure: EdgeStructure, values: Tensor, x: Tensor) -> Tensor:
    """Aggregate over in-neighbours: sum_j M[i, j] x_j, for M with `values` on the edges.

    Args:
        structure: the graph's edges.
        values: (E,) one weight per edge, or (h, E) one per head.
        x: (N, D) features, or (N, h, D) per head.

    Returns:
        (N, D), or (N, h, D) per head.
    """
    per_head = values.ndim == 2
    v = values if per_head else values.unsqueeze(0)  # (h, E)
    h = x.transpose(0, 1) if per_head else x.unsqueeze(0)  # (h, N, D)
    dtype = torch.float32 if h.dtype in (torch.float16, torch.bfloat16) else h.dtype
    out = _SpMM.apply(v.to(dtype), h.to(dtype).contiguous(), structure).to(x.dtype)
    return out.transpose(0, 1) if per_head else out.squeeze(0)


def gcn_values(structure: EdgeStructure) -> Tensor:
    """Values of D^-1/2 (A + I) D^-1/2 on `structure.with_self_loops()` edges (E',)."""

    def make() -> Tensor:
        looped = structure.with_self_loops()
        inv_sqrt = looped.in_degree().pow(-0.5).nan_to_num(posinf=0.0)  # deg 0: weight-0 loops
        return inv_sqrt[looped.dst] * looped.weight * inv_sqrt[looped.src]

    if structure.weight.requires_grad:
        return make()
    return structure._get("gcn_values", make)


def mean_values(structure: EdgeStructure) -> Tensor:
    """Values of D^-1 A: each node's in-neighbours averaged by weight (E,)."""

    def make() -> Tensor:
        degree = structure.in_degree()
        return structure.weight / degree.clamp_min(torch.finfo(degree.dtype).tiny)[structure.dst]

    if structure.weight.requires_grad:
        return make()
    return structure._get("mean_values", make)


def max_aggregate(structure: EdgeStructure, x: Tensor) -> Tensor:
    """Elementwise max of x over each node's in-neighbours (N, D); 0 for a node without any."""
    index = structure.dst.unsqueeze(1).expand(-1, x.shape[1])
    return x.new_zeros(x.shape).scatter_reduce(
        0, index, x.index_select(0, structure.src), "amax", include_self=False
    )


def edge_softmax(structure: EdgeStructure, scores: Tensor) -> Tensor:
    """Softmax of edge scores (E, h) over the in-edges of each target node."""
    index = structure.dst.unsqueeze(1).expand_as(scores)
    n = structure.num_nodes
    top = scores.new_full((n, scores.shape[1]), float("-inf"))
    top = top.scatter_reduce(0, index, scores.detach(), "amax")  # subtracted for stability
    # index_select, not x[index]: its backward is a fast index_add rather than index_put.
    p = (scores - top.index_select(0, structure.dst)).exp()
    total = scores.new_zeros(n, scores.shape[1]).index_add_(0, structure.dst, p)
    return p / total.index_select(0, structure.dst)


def readout(x: Tensor, batch: Tensor | None, how: str, num_graphs: int | None = None) -> Tensor:
    """Pool node features (N, D) into one row per graph (G, D): "mean", "sum" or "max"."""
    if batch is None:
        batch = torch.zeros(x.shape[0], dtype=torch.long, device=x.device)
    g = num_graphs if num_graphs is not None else (int(batch[-1]) + 1 if batch.numel() else 1)
    index = batch.long().unsqueeze(1).expand_as(x)
    if how == "max":
        return x.new_zeros(g, x.shape[1]).scatter_reduce(0, index, x, "amax", include_self=False)
    total = x.new_zeros(g, x.shape[1]).index_add_(0, batch.long(), x)
    if how == "sum":
        return total
    count = torch.bincount(batch.long(), minlength=g).clamp_min(1).to(x.dtype)
    return total / count.unsqueeze(1)
