"""Classification: examples to one of K classes, for images, tabular rows or pooled sequences.

Batch: (x, y) with x of shape (B, *input_shape) and y of shape (B,) class indices.
Head: the model's last layer gives K logits. Loss: cross-entropy with optional label smoothing
and class weights. Metrics (torchmetrics): accuracy, macro-F1, macro one-vs-rest AUROC and the
expected calibration error (ECE, 15 equal-width bins).
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

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
from fieldguide.models.base import DataSpec
from fieldguide.tasks.base import SPLITS, Task, named, reads

CLASSIFICATION_METRICS = ("loss", "accuracy", "macro_f1", "ece", "auroc")


class LabelTask(Task):
    """What every task that predicts one class per example (row, image, node, graph) shares.

    Subclasses say how a batch reaches the model (`logits`) and where the labels are (`labels`);
    the loss (cross-entropy with label smoothing and class weights), the probabilities `predict`
    gathers and the metrics are the same for all of them.
    """

    monitor = "val/accuracy"
    metric_names = CLASSIFICATION_METRICS
    options = ("label_smoothing", "class_weights")

    def __init__(self, data: Any, *, label_smoothing: float, class_weights: str) -> None:
        super().__init__(data)
        self.num_classes = len(data.classes)
        self.label_smoothing = label_smoothing
        self.class_weights = class_weight_vector(
            class_weights, self.labels("train"), self.num_classes
        )

    def spec(self) -> DataSpec:
        """One example of the data's input shape in, one logit per class out."""
        k = self.num_classes
        return DataSpec(
            tuple(self.data.input_shape), k, output=self.output, description=f"{k} classes"
        )

    def labels(self, split: str) -> Tensor:
        """The true classes (N,) of `split`."""
        raise NotImplementedError

    def logits(self, model: nn.Module, inputs: tuple[Tensor, ...]) -> Tensor:
        """The model's logits (B, K) for a batch's inputs (everything but the labels, last)."""
        raise NotImplementedError

    def loss(self, model: nn.Module, batch: tuple[Tensor, ...]) -> Tensor:
        """Cross-entropy of the model's logits against the labels (the batch's last tensor)."""
        logits = self.logits(model, batch[:-1])
        return cross_entropy(logits, batch[-1], self.class_weights, self.label_smoothing)

    def outputs(self, model: nn.Module, batch: tuple[Tensor, ...]) -> Tensor:
        """Class probabilities (B, K) of one batch."""
        return self.logits(model, batch[:-1]).float().softmax(-1)

    def evaluate(self, model: nn.Module, split: str, **eval_options: Any) -> dict[str, float]:
        """Loss, accuracy, macro-F1, AUROC and ECE of `split`."""
        probs = self.predict(model, split, **eval_options)
        return classification_metrics(probs, self.labels(split), self.num_classes, split)

    def baselines(self, split: str) -> dict[str, dict[str, float]]:
        """Accuracy and macro-F1 of `split` when every example gets the training majority class."""
        k, y = self.num_classes, self.labels(split)
        majority = int(torch.bincount(self.labels("train"), minlength=k).argmax())
        guess = torch.full_like(y, majority)
        return {
            "majority class of train": {
                "accuracy": MulticlassAccuracy(k, average="micro")(guess, y).item(),
                "macro_f1": MulticlassF1Score(k, average="macro")(guess, y).item(),
            }
        }


class ClassificationTask(LabelTask):
    """Classification of in-memory tensors into `len(data.classes)` classes.

    Images train models that read images, or vectors (an MLP sees the flattened pixels); tables
    train models that read vectors. Subclasses for sequences and texts say in `logits` how the
    model takes lengths or padding masks.
    """

    name = "classification"
    accepts: ClassVar[frozenset[str]] = frozenset({"vectors", "images"})
    modalities: ClassVar[tuple[str, ...]] = ("images", "tabular")  # of the data it `fits`
    sample_shape: ClassVar[tuple[int, str]] = (0, "")  # rank its examples need, and in words

    @classmethod
    def fits(cls, data: Any) -> bool:
        """Labelled tensors of one of `modalities`."""
        return isinstance(data, ClassificationData) and data.modality in cls.modalities

    def __init__(
        self, data: ClassificationData, *, label_smoothing: float = 0.0, class_weights: str = "none"
    ) -> None:
        rank, words = self.sample_shape
        if not self.fits(data) or rank not in (0, len(data.input_shape)):
            shape = f" and samples {words}" if words else ""
            raise ValueError(
                f"{type(self).__name__} expects data with modality "
                f"{' or '.join(repr(m) for m in self.modalities)}{shape}; got modality "
                f"'{data.modality}' with samples {tuple(data.input_shape)}."
            )
        self._inputs = {s: getattr(data, s).x for s in SPLITS}
        self._targets = {s: getattr(data, s).y for s in SPLITS}
        super().__init__(data, label_smoothing=label_smoothing, class_weights=class_weights)

    # Classical models fitted beside every run of this data (models/classical.py): trees and
    # logistic regression on tables, nearest neighbours on images up to this many rows.
    KNN_MAX_ROWS = 20000

    def baselines(self, split: str) -> dict[str, dict[str, float]]:
        """The majority class, and the classical models the guide says compete on this data.

        Tables: gradient-boosted trees (`gbdt`) and logistic regression (`linear`); images of
        at most 20,000 training examples: k nearest neighbours (`knn`). Each is fitted once on
        the same training split (choices on validation) and scored on the same `split` rows.
        """
        out = super().baselines(split)
        k, y = self.num_classes, self.labels(split)
        for label, model in self.classical_models().items():
            guess = self.predict(model, split).argmax(1)
            out[label] = {
                "accuracy": MulticlassAccuracy(k, average="micro")(guess, y).item(),
                "macro_f1": MulticlassF1Score(k, average="macro")(guess, y).item(),
            }
        return out

    def classical_models(self) -> dict[str, nn.Module]:
        """The fitted classical baselines of this data, by label; fitted on first use."""
        if getattr(self, "_classical", None) is None:
            names = {}
            if self.data.modality == "tabular":
                names = {"gradient-boosted trees (gbdt)": "gbdt", "logistic regression": "linear"}
            elif self.data.modality == "images" and self.train_size <= self.KNN_MAX_ROWS:
                names = {"k nearest neighbours (knn)": "knn"}
            self._classical = {}
            for label, name in names.items():
                model = self.build_model(name)
                model.fit(self, seed=0)
                self._classical[label] = model.eval()
        return self._classical

    def accepted(self) -> frozenset[str]:
        """What `accepts` says, but image models only when the examples are images (C, H, W)."""
        return self.accepts - ({"images"} if self.data.modality != "images" else set())

    def labels(self, split: str) -> Tensor:
        """The true classes (N,) of `split`."""
        return self._targets[split]

    def split_size(self, split: str) -> int:
        """Examples of `split`."""
        return len(self._targets[split])

    def batch(self, split: str, index: Tensor) -> tuple[Tensor, ...]:
        """(x, y) for the examples `index` of `split`."""
        return self._inputs[split][index], self._targets[split][index]

    def logits(self, model: nn.Module, inputs: tuple[Tensor, ...]) -> Tensor:
        """The model's logits (B, K); a model that reads vectors sees images flattened."""
        x, *rest = inputs
        if reads(model) == "vectors" and x.ndim > 2:
            x = x.flatten(1)  # (B, C * H * W)
        return model(x, *rest)


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
    return named(split, metrics)
