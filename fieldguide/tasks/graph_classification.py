"""Graph classification: one label per graph, for sets of small graphs (molecules, scans).

A batch of graphs is one disjoint graph (`fieldguide.layers.graph.batch_graphs`) with a batch
vector saying which graph each node belongs to; the model pools its node features per graph
with a readout (mean by default) and gives one row of logits per graph.

Batch: (x, edge_index, edge_weight, batch, y): the graphs of the step as one disjoint graph,
edge_weight empty when no graph is weighted, and their labels (B,). Metrics: those of
`tasks.classification` (accuracy, macro-F1, AUROC, ECE).
"""

from __future__ import annotations

import dataclasses
from contextlib import nullcontext
from typing import Any

import torch
from torch import Tensor, nn

from fieldguide.data.base import GraphSetData
from fieldguide.layers.graph import batch_graphs
from fieldguide.tasks.base import evaluating, instantiate, preset_config
from fieldguide.tasks.classification import (
    class_weight_vector,
    classification_metrics,
    cross_entropy,
)

SPLITS = ("train", "val", "test")


class GraphClassificationTask:
    """Classification of whole graphs with a GNN and a readout."""

    name = "graph-classification"
    monitor = "val/accuracy"
    monitor_mode = "max"

    def __init__(
        self, data: GraphSetData, *, label_smoothing: float = 0.0, class_weights: str = "none"
    ) -> None:
        self.data = data
        self.num_classes = len(data.classes)
        self.label_smoothing = label_smoothing
        self.graphs = {s: getattr(data, s) for s in SPLITS}
        self.labels = {s: torch.stack([g.y.reshape(()) for g in self.graphs[s]]) for s in SPLITS}
        self.class_weights = class_weight_vector(
            class_weights, self.labels["train"], self.num_classes
        )

    def build_model(self, name: str, **overrides: Any) -> nn.Module:
        """Create graph model `name` with a readout: node features in, K logits per graph out."""
        cls, config = preset_config(name, overrides)
        if not getattr(cls, "takes_graph", False):
            raise ValueError(
                f"graph classification needs a graph model (gcn, gat, graphsage, ...); {name} "
                "does not read edges."
            )
        config = cls.config_for_data(config, tuple(self.data.input_shape), self.num_classes)
        if config.readout == "none":  # one output per graph: pool the nodes, mean by default
            config = dataclasses.replace(config, readout="mean")
        return instantiate(cls, config, name)

    def split_sizes(self) -> dict[str, int]:
        """Graphs per split."""
        return {s: len(self.graphs[s]) for s in SPLITS}

    @property
    def train_size(self) -> int:
        """Number of training graphs."""
        return len(self.graphs["train"])

    def batch(self, split: str, index: Tensor) -> tuple[Tensor, ...]:
        """(x, edge_index, edge_weight, batch, y) of the graphs `index` of `split`."""
        g = batch_graphs([self.graphs[split][i] for i in index.tolist()])
        weight = g.edge_weight if g.edge_weight is not None else g.x.new_zeros(0)
        return g.x, g.edge_index, weight, g.batch, self.labels[split][index]

    def logits(self, model: nn.Module, batch: tuple[Tensor, ...]) -> Tensor:
        """Logits (B, K), one row per graph of the batch."""
        x, edge_index, edge_weight, graph_ids, _ = batch
        return model(x, edge_index, edge_weight if edge_weight.numel() else None, graph_ids)

    def loss(self, model: nn.Module, batch: tuple[Tensor, ...]) -> Tensor:
        """Cross-entropy of the graphs' logits against their labels."""
        return cross_entropy(
            self.logits(model, batch), batch[-1], self.class_weights, self.label_smoothing
        )

    @torch.no_grad()
    def evaluate(
        self, model: nn.Module, split: str, *, device: str, batch_size: int, autocast: Any = None
    ) -> dict[str, float]:
        """Loss, accuracy, macro-F1, AUROC and ECE over the graphs of `split`."""
        probs = []
        with evaluating(model):
            for index in torch.arange(len(self.graphs[split])).split(batch_size):
                batch = tuple(t.to(device) for t in self.batch(split, index))
                with autocast or nullcontext():
                    probs.append(self.logits(model, batch).float().softmax(-1).cpu())
        return classification_metrics(torch.cat(probs), self.labels[split], self.num_classes, split)
