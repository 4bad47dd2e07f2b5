"""Graph classification: one label per graph, for sets of small graphs (molecules, scans).

A batch of graphs is one disjoint graph (`fieldguide.layers.graph.batch_graphs`) with a batch
vector saying which graph each node belongs to; the model pools its node features per graph
with a readout (mean by default) and gives one row of logits per graph.

Batch: (x, edge_index, edge_weight, batch, y): the graphs of the step as one disjoint graph,
edge_weight empty when no graph is weighted, and their labels (B,). Metrics: those of
`tasks.classification` (accuracy, macro-F1, AUROC, ECE).
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from fieldguide.data.base import GraphSetData
from fieldguide.layers.graph import batch_graphs
from fieldguide.tasks.base import SPLITS
from fieldguide.tasks.classification import LabelTask


class GraphClassificationTask(LabelTask):
    """Classification of whole graphs with a GNN and a readout (mean unless the user sets one)."""

    name = "graph-classification"
    accepts: ClassVar[frozenset[str]] = frozenset({"graph"})
    output = "per-graph"

    @classmethod
    def fits(cls, data: Any) -> bool:
        """A set of labelled graphs (`GraphSetData`)."""
        return isinstance(data, GraphSetData)

    def __init__(
        self, data: GraphSetData, *, label_smoothing: float = 0.0, class_weights: str = "none"
    ) -> None:
        self.graphs = {s: getattr(data, s) for s in SPLITS}
        self._labels = {s: torch.stack([g.y.reshape(()) for g in self.graphs[s]]) for s in SPLITS}
        super().__init__(data, label_smoothing=label_smoothing, class_weights=class_weights)

    def labels(self, split: str) -> Tensor:
        """The class (G,) of each graph of `split`."""
        return self._labels[split]

    def split_size(self, split: str) -> int:
        """Graphs of `split`."""
        return len(self.graphs[split])

    def batch(self, split: str, index: Tensor) -> tuple[Tensor, ...]:
        """(x, edge_index, edge_weight, batch, y) of the graphs `index` of `split`."""
        g = batch_graphs([self.graphs[split][i] for i in index.tolist()])
        weight = g.edge_weight if g.edge_weight is not None else g.x.new_zeros(0)
        return g.x, g.edge_index, weight, g.batch, self._labels[split][index]

    def logits(self, model: nn.Module, inputs: tuple[Tensor, ...]) -> Tensor:
        """Logits (B, K), one row per graph of the batch."""
        x, edge_index, edge_weight, graph_ids = inputs
        return model(x, edge_index, edge_weight if edge_weight.numel() else None, graph_ids)
