"""Node classification: label the nodes of one graph from a few labelled ones.

The examples the trainer shuffles are the training nodes. Full-batch (no `fanouts`), each step
runs the model over the whole graph and takes the loss at the step's training nodes; the graph
tensors are the same objects every step, so a GNN builds its normalised adjacency once. With
`fanouts`, each step samples a subgraph around its training nodes (GraphSAGE's neighbour
sampling, `fieldguide.data.sampling`) for graphs too large for full-batch steps. Evaluation
always runs on the whole graph. A model that takes no graph (an MLP) reads node features alone:
the baseline that shows what the edges add.

Batch: (x, edge_index, edge_weight, positions, y): the graph (or subgraph) the model runs on, the
positions of the step's labelled nodes in it and their labels; edge_weight is empty for an
unweighted graph. Metrics: those of `tasks.classification` (accuracy, macro-F1, AUROC, ECE).
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import nullcontext
from typing import Any

import torch
from torch import Tensor, nn

from fieldguide.data.base import GraphData
from fieldguide.tasks.base import evaluating, instantiate, preset_config
from fieldguide.tasks.classification import (
    class_weight_vector,
    classification_metrics,
    cross_entropy,
)

SPLITS = ("train", "val", "test")


def graph_forward(model: nn.Module, x: Tensor, edge_index: Tensor, edge_weight: Tensor) -> Tensor:
    """The model's outputs for every node; an empty edge_weight means unweighted."""
    return model(x, edge_index, edge_weight if edge_weight.numel() else None)


class NodeClassificationTask:
    """Classification of the nodes of `data.graph`, full-batch or with neighbour sampling."""

    name = "node-classification"
    monitor = "val/accuracy"
    monitor_mode = "max"

    def __init__(
        self,
        data: GraphData,
        *,
        fanouts: Sequence[int] = (),
        label_smoothing: float = 0.0,
        class_weights: str = "none",
    ) -> None:
        self.data = data
        self.graph = data.graph
        self.num_classes = len(data.classes)
        self.fanouts = tuple(fanouts)
        self.label_smoothing = label_smoothing
        self.nodes = {s: getattr(data, s) for s in SPLITS}
        empty = torch.zeros(0, dtype=self.graph.x.dtype)
        self.edge_weight = self.graph.edge_weight if self.graph.edge_weight is not None else empty
        self.class_weights = class_weight_vector(
            class_weights, self.graph.y[self.nodes["train"]], self.num_classes
        )
        self.sampler = None
        self.model_reads_graph = True

    def build_model(self, name: str, **overrides: Any) -> nn.Module:
        """Create model `name`: node features in, one logit per class out, per node."""
        cls, config = preset_config(name, overrides)
        config = cls.config_for_data(config, tuple(self.data.input_shape), self.num_classes)
        reads_graph = bool(getattr(cls, "takes_graph", False))
        if reads_graph and config.readout != "none":
            raise ValueError(
                f"node classification needs one output per node; {name} has "
                f"readout='{config.readout}', so leave readout out."
            )
        if self.fanouts:
            if not reads_graph:
                raise ValueError(
                    f"fanouts sample neighbourhoods for graph models; {name} reads node features "
                    "alone, so leave fanouts out."
                )
            if len(self.fanouts) != config.num_layers:
                raise ValueError(
                    f"fanouts gives {len(self.fanouts)} hop(s) but {name} has "
                    f"{config.num_layers} message-passing layers; give one fan-out per layer, "
                    f"such as {','.join(['10'] * config.num_layers)}."
                )
            from fieldguide.data.sampling import NeighborSampler

            self.sampler = NeighborSampler(
                self.graph.edge_index,
                self.graph.num_nodes,
                self.fanouts,
                self.graph.edge_weight,
                undirected=config.undirected,
            )
        self.model_reads_graph = reads_graph
        return instantiate(cls, config, name)

    def split_sizes(self) -> dict[str, int]:
        """Labelled nodes per split."""
        return {s: len(self.nodes[s]) for s in SPLITS}

    @property
    def train_size(self) -> int:
        """Number of labelled training nodes."""
        return len(self.nodes["train"])

    def batch(self, split: str, index: Tensor) -> tuple[Tensor, ...]:
        """(x, edge_index, edge_weight, positions, y) for the nodes `index` of `split`."""
        nodes = self.nodes[split][index]
        y = self.graph.y[nodes]
        g = self.graph
        if not self.model_reads_graph:  # features alone: the nodes are the whole "graph"
            none = torch.zeros(2, 0, dtype=torch.long)
            return g.x[nodes], none, self.edge_weight[:0], torch.arange(len(nodes)), y
        if self.sampler is None or split != "train":
            return g.x, g.edge_index, self.edge_weight, nodes, y
        sub = self.sampler.sample(nodes)
        weight = sub.edge_weight if sub.edge_weight is not None else self.edge_weight[:0]
        return g.x[sub.nodes], sub.edge_index, weight, torch.arange(sub.num_seeds), y

    def logits(self, model: nn.Module, batch: tuple[Tensor, ...]) -> Tensor:
        """Logits (B, K) of the batch's labelled nodes."""
        x, edge_index, edge_weight, positions, _ = batch
        if not self.model_reads_graph:
            return model(x[positions])
        return graph_forward(model, x, edge_index, edge_weight)[positions]

    def loss(self, model: nn.Module, batch: tuple[Tensor, ...]) -> Tensor:
        """Cross-entropy at the batch's labelled nodes."""
        return cross_entropy(
            self.logits(model, batch), batch[-1], self.class_weights, self.label_smoothing
        )

    @torch.no_grad()
    def evaluate(
        self, model: nn.Module, split: str, *, device: str, batch_size: int, autocast: Any = None
    ) -> dict[str, float]:
        """Loss, accuracy, macro-F1, AUROC and ECE at the nodes of `split`, on the whole graph."""
        nodes, g = self.nodes[split], self.graph
        with evaluating(model), autocast or nullcontext():
            if self.model_reads_graph:
                out = graph_forward(
                    model, g.x.to(device), g.edge_index.to(device), self.edge_weight.to(device)
                )[nodes.to(device)]
            else:
                out = torch.cat([model(g.x[i].to(device)) for i in nodes.split(batch_size)])
        probs = out.float().softmax(-1).cpu()
        return classification_metrics(probs, g.y[nodes], self.num_classes, split)
