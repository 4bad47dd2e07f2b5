"""Sequence classification: a whole sequence (T, C) to one of K classes.

Letters: B batch, T time (the padded length), C channels, K classes.

Batch: (x, lengths, y) with x (B, T, C) right-padded, lengths (B,) the real steps of each
sequence (T for every one when the data has no padding) and y (B,) class indices.
Head: a sequence model pooled to one output per sequence (layers/sequence.py): pool="last",
the output after the last real step, for a causal model, whose last step has read the whole
sequence; pool="mean" over real steps otherwise. Loss and metrics: those of `ClassificationTask`
(cross-entropy; accuracy, macro-F1, AUROC, ECE), with the lengths passed to the model. Batches
are not sorted by length: the models mask or pack padding themselves.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor, nn

from fieldguide.data.base import ClassificationData, Split
from fieldguide.tasks.base import SPLITS
from fieldguide.tasks.classification import ClassificationTask


def split_lengths(split: Split, steps: int) -> Tensor:
    """The real steps of each sequence of `split`, padded to `steps`: its lengths, or all T."""
    if split.lengths is None:
        return torch.full((len(split),), steps, dtype=torch.int64)
    lengths = split.lengths
    if lengths.shape != (len(split),) or bool((lengths < 1).any() | (lengths > steps).any()):
        raise ValueError(
            f"Split.lengths must hold one length in [1, {steps}] per sequence ({len(split)}); "
            f"got shape {tuple(lengths.shape)} with values {int(lengths.min())}.."
            f"{int(lengths.max())}."
        )
    return lengths.to(torch.int64)


class SequenceClassificationTask(ClassificationTask):
    """Classification of right-padded sequences (N, T, C) with their lengths (N,).

    The model pools to one output per sequence: its config_for_data keeps a `pool` the user
    gives and otherwise picks "last" for a causal model, "mean" for any other.
    """

    name = "sequence-classification"
    modalities = ("sequences",)
    sample_shape = (2, "(T, C)")
    accepts: ClassVar[frozenset[str]] = frozenset({"sequences"})

    def __init__(
        self, data: ClassificationData, *, label_smoothing: float = 0.0, class_weights: str = "none"
    ) -> None:
        super().__init__(data, label_smoothing=label_smoothing, class_weights=class_weights)
        steps = int(data.input_shape[0])
        self._lengths = {s: split_lengths(getattr(data, s), steps) for s in SPLITS}

    def batch(self, split: str, index: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(x, lengths, y) for the examples `index` of `split`."""
        return (
            self._inputs[split][index],
            self._lengths[split][index],
            self._targets[split][index],
        )

    def logits(self, model: nn.Module, inputs: tuple[Tensor, ...]) -> Tensor:
        """Logits (B, K) of sequences x (B, T, C) with their lengths (B,)."""
        x, lengths = inputs
        return model(x, lengths=lengths)
