"""Classification: examples to one of K classes, for images, tabular rows or pooled sequences.

Batch: (x, y) with x of shape (B, *input_shape) and y of shape (B,) class indices.
Head: the model's last layer gives K logits. Loss: cross-entropy with optional label smoothing
and class weights. Metrics (torchmetrics): accuracy, macro-F1, macro one-vs-rest AUROC and the
expected calibration error (ECE, 15 equal-width bins).
"""

from __future__ import annotations

import math
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchmetrics.classification import (
    MulticlassAccuracy,
    MulticlassAUROC,
    MulticlassCalibrationError,
    MulticlassF1Score,
)

from fieldguide.data.base import ClassificationData
from fieldguide.tasks.base import evaluating, instantiate, preset_config

SPLITS = ("train", "val", "test")


class ClassificationTask:
    """Classification of in-memory tensors into `len(data.classes)` classes."""

    name = "classification"
    monitor = "val/accuracy"
    monitor_mode = "max"

    def __init__(
        self, data: ClassificationData, *, label_smoothing: float = 0.0, class_weights: str = "none"
    ) -> None:
        self.data = data
        self.num_classes = len(data.classes)
        self.label_smoothing = label_smoothing
        self._inputs = {s: getattr(data, s).x for s in SPLITS}
        self._targets = {s: getattr(data, s).y for s in SPLITS}
        self.class_weights = class_weight_vector(
            class_weights, self._targets["train"], self.num_classes
        )

    def build_model(self, name: str, **overrides: Any) -> nn.Module:
        """Create model `name` sized for this data: input shape in, one logit per class out."""
        cls, config = preset_config(name, overrides)
        config = cls.config_for_data(config, tuple(self.data.input_shape), self.num_classes)
        model = instantiate(cls, config, name)
        # A model that reads vectors (an MLP) sees each image as its flattened pixels.
        wants_vectors = model.example_input(1).ndim == 2
        if wants_vectors and len(self.data.input_shape) > 1:
            self._inputs = {s: x.flatten(1) for s, x in self._inputs.items()}
        return model

    def split_sizes(self) -> dict[str, int]:
        """Examples per split, for reports."""
        return {s: len(self._targets[s]) for s in SPLITS}

    @property
    def train_size(self) -> int:
        """Number of training examples."""
        return len(self._targets["train"])

    def batch(self, split: str, index: Tensor) -> tuple[Tensor, Tensor]:
        """(x, y) for the examples `index` of `split`."""
        return self._inputs[split][index], self._targets[split][index]

    def logits(self, model: nn.Module, inputs: tuple[Tensor, ...]) -> Tensor:
        """The model's logits (B, K) for the inputs of one batch: everything but the labels.

        Subclasses whose batches carry lengths or padding masks say here how the model takes them.
        """
        return model(*inputs)

    def loss(self, model: nn.Module, batch: tuple[Tensor, ...]) -> Tensor:
        """Cross-entropy of the model's logits against the labels (the batch's last tensor)."""
        *inputs, y = batch
        logits = self.logits(model, tuple(inputs))
        return cross_entropy(logits, y, self.class_weights, self.label_smoothing)

    @torch.no_grad()
    def predict(
        self,
        model: nn.Module,
        split: str,
        *,
        device: str,
        batch_size: int,
        autocast: AbstractContextManager | None = None,
    ) -> tuple[Tensor, Tensor]:
        """Class probabilities (N, K) and labels (N,) of a whole split, in eval mode."""
        with evaluating(model):
            probs = []
            for index in torch.arange(len(self._targets[split])).split(batch_size):
                *inputs, _ = self.batch(split, index)
                with autocast or nullcontext():
                    logits = self.logits(model, tuple(t.to(device) for t in inputs))
                probs.append(logits.float().softmax(-1).cpu())
        return torch.cat(probs), self._targets[split]

    def evaluate(
        self,
        model: nn.Module,
        split: str,
        *,
        device: str,
        batch_size: int,
        autocast: AbstractContextManager | None = None,
    ) -> dict[str, float]:
        """Loss, accuracy, macro-F1, AUROC and ECE of `split`."""
        probs, y = self.predict(
            model, split, device=device, batch_size=batch_size, autocast=autocast
        )
        return classification_metrics(probs, y, self.num_classes, split)


def class_weight_vector(class_weights: str, train_labels: Tensor, k: int) -> Tensor | None:
    """None for "none"; for "balanced", w_c = N / (K · N_c) over the training labels."""
    if class_weights not in ("none", "balanced"):
        raise ValueError(f"class_weights must be 'none' or 'balanced', got '{class_weights}'.")
    if class_weights == "none":
        return None
    counts = torch.bincount(train_labels, minlength=k).float()  # rare classes weigh more
    return counts.sum() / (k * counts.clamp(min=1))


def cross_entropy(
    logits: Tensor, y: Tensor, class_weights: Tensor | None, label_smoothing: float
) -> Tensor:
    """Cross-entropy in float32 with optional class weights and label smoothing."""
    weight = None if class_weights is None else class_weights.to(logits.device)
    return F.cross_entropy(logits.float(), y, weight=weight, label_smoothing=label_smoothing)


def classification_metrics(probs: Tensor, y: Tensor, k: int, split: str) -> dict[str, float]:
    """Loss, accuracy, macro-F1, AUROC and ECE of probabilities (N, k) against labels (N,)."""
    nll = F.nll_loss(probs.clamp_min(1e-12).log(), y).item()
    metrics = {
        "loss": nll,
        "accuracy": MulticlassAccuracy(k, average="micro")(probs, y).item(),
        "macro_f1": MulticlassF1Score(k, average="macro")(probs, y).item(),
        "ece": MulticlassCalibrationError(k, n_bins=15, norm="l1")(probs, y).item(),
    }
    # AUROC needs both a positive and a negative of each class; report NaN otherwise.
    present = torch.bincount(y, minlength=k)
    metrics["auroc"] = (
        MulticlassAUROC(k, average="macro")(probs, y).item()
        if bool((present > 0).all())
        else math.nan
    )
    return {f"{split}/{name}": value for name, value in metrics.items()}
