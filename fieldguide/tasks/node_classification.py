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
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from fieldguide.data.base import GraphData
from fieldguide.tasks.base import SPLITS, evaluating, reads
from fieldguide.tasks.classification import LabelTask


def graph_forward(model: nn.Module, x: Tensor, edge_index: Tensor, edge_weight: Tensor) -> Tensor:
    """The model's outputs for every node; an empty edge_weight means unweighted."""
    return model(x, edge_index, edge_weight if edge_weight.numel() else None)


class NodeClassificationTask(LabelTask):
    """Classification of the nodes of `data.graph`, full-batch or with neighbour sampling."""

    name = "node-classification"
    accepts: ClassVar[frozenset[str]] = frozenset({"graph", "vectors"})
    options = ("label_smoothing", "class_weights", "fanouts")
    output = "per-node"

    @classmethod
    def fits(cls, data: Any) -> bool:
        """One graph with labelled nodes (`GraphData`)."""
        return isinstance(data, GraphData)

    def __init__(
        self,
        data: GraphData,
        *,
        fanouts: Sequence[int] = (),
        label_smoothing: float = 0.0,
        class_weights: str = "none",
    ) -> None:
        self.graph = data.graph
        self.nodes = {s: getattr(data, s) for s in SPLITS}
        self.fanouts = tuple(fanouts)
        empty = torch.zeros(0, dtype=self.graph.x.dtype)
        self.edge_weight = self.graph.edge_weight if self.graph.edge_weight is not None else empty
        self._samplers: dict[bool, Any] = {}  # one per `undirected`, built on first use
        super().__init__(data, label_smoothing=label_smoothing, class_weights=class_weights)

    def check_model(self, name: str, cls: type, config: Any) -> None:
        """Neighbour sampling needs a graph model with one fan-out per layer."""
        if not self.fanouts or getattr(cls, "fits_directly", False):
            return  # a classical model is fitted on the whole graph (its run refuses fanouts)
        if cls.reads != "graph":
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

    # Graphs up to this many nodes get the spectral baseline (a dense eigendecomposition).
    SPECTRAL_MAX_NODES = 5000

    def baselines(self, split: str) -> dict[str, dict[str, float]]:
        """The majority class, and spectral embedding + logistic regression on small graphs.

        `spectral-logreg` (models/classical.py) puts each node's features beside the graph's
        leading eigenvectors: the classical way to use the edges without message passing.
        """
        out = super().baselines(split)
        if self.graph.num_nodes > self.SPECTRAL_MAX_NODES:
            return out
        if getattr(self, "_spectral", None) is None:
            self._spectral = self.build_model("spectral-logreg")
            self._spectral.fit(self, seed=0)
            self._spectral.eval()
        from torchmetrics.classification import MulticlassAccuracy, MulticlassF1Score

        k, y = self.num_classes, self.labels(split)
        guess = self.predict(self._spectral, split).argmax(1)
        out["spectral embedding + logistic regression"] = {
            "accuracy": MulticlassAccuracy(k, average="micro")(guess, y).item(),
            "macro_f1": MulticlassF1Score(k, average="macro")(guess, y).item(),
        }
        return out

    def labels(self, split: str) -> Tensor:
        """The classes (N,) of the labelled nodes of `split`."""
        return self.graph.y[self.nodes[split]]

    def split_size(self, split: str) -> int:
        """Labelled nodes of `split`."""
        return len(self.nodes[split])

    def batch(self, split: str, index: Tensor) -> tuple[Tensor, ...]:
        """(x, edge_index, edge_weight, nodes, y): the whole graph and the nodes `index`."""
        nodes = self.nodes[split][index]
        g = self.graph
        return g.x, g.edge_index, self.edge_weight, nodes, g.y[nodes]

    def _sampler(self, undirected: bool) -> Any:
        """The neighbour sampler over the graph's edges (both directions if `undirected`)."""
        if undirected not in self._samplers:
            from fieldguide.data.sampling import NeighborSampler

            g = self.graph
            self._samplers[undirected] = NeighborSampler(
                g.edge_index, g.num_nodes, self.fanouts, g.edge_weight, undirected=undirected
            )
        return self._samplers[undirected]

    def logits(self, model: nn.Module, inputs: tuple[Tensor, ...]) -> Tensor:
        """Logits (B, K) of the batch's nodes.

        A model that reads vectors sees their features alone (the baseline that shows what the
        edges add). With fanouts, a training step runs on the subgraph sampled around its nodes
        (GraphSAGE's neighbour sampling), for graphs too large for full-batch steps.
        """
        x, edge_index, edge_weight, nodes = inputs
        if reads(model) == "vectors":
            return model(x[nodes])
        if self.fanouts and model.training:
            sub = self._sampler(model.config.undirected).sample(nodes.cpu())
            weight = sub.edge_weight if sub.edge_weight is not None else edge_weight[:0]
            device = x.device
            out = graph_forward(
                model, x[sub.nodes.to(device)], sub.edge_index.to(device), weight.to(device)
            )
            return out[: sub.num_seeds]  # the seeds come first, in order
        return graph_forward(model, x, edge_index, edge_weight)[nodes]

    def predict(self, model: nn.Module, split: str, **eval_options: Any) -> Tensor:
        """Probabilities (N, K) at the nodes of `split`, from one pass over the whole graph."""
        if reads(model) == "vectors":  # no graph to share: the batched loop is right
            return super().predict(model, split, **eval_options)
        g, nodes = self.graph, self.nodes[split]
        device = eval_options.get("device", "cpu")
        with evaluating(model), eval_options.get("autocast") or nullcontext():
            out = graph_forward(
                model, g.x.to(device), g.edge_index.to(device), self.edge_weight.to(device)
            )[nodes.to(device)]
        return out.float().softmax(-1).cpu()
