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

import dataclasses
from typing import Any

import torch
from torch import Tensor, nn

from fieldguide.data.base import ClassificationData, Split
from fieldguide.tasks.base import instantiate, preset_config
from fieldguide.tasks.classification import SPLITS, ClassificationTask


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


def choose_pool(cls: type, config: Any) -> str:
    """The pool for a model of `cls`: "last" if it declares itself causal, else "mean".

    A causal model's output at the last real step has read the whole sequence and nothing
    else, so it summarises it; a non-causal one (bidirectional, attention without a mask) has
    no such step, and the mean over real steps is the safer summary. Invariants may depend on
    the config (an RNN is causal only with pool="none"), so a probe with pool="none" is built.
    """
    with torch.random.fork_rng(devices=[]):  # the probe must not shift the weights' seed
        probe = cls(dataclasses.replace(config, pool="none"))
    return "last" if "causal" in getattr(probe, "invariants", frozenset()) else "mean"


class SequenceClassificationTask(ClassificationTask):
    """Classification of right-padded sequences (N, T, C) with their lengths (N,)."""

    name = "sequence-classification"

    def __init__(
        self, data: ClassificationData, *, label_smoothing: float = 0.0, class_weights: str = "none"
    ) -> None:
        if data.modality != "sequences" or len(data.input_shape) != 2:
            raise ValueError(
                f"SequenceClassificationTask expects data with modality 'sequences' and samples "
                f"(T, C); got modality '{data.modality}' with samples {tuple(data.input_shape)}; "
                f"use ClassificationTask for images and tables."
            )
        super().__init__(data, label_smoothing=label_smoothing, class_weights=class_weights)
        steps = int(data.input_shape[0])
        self._lengths = {s: split_lengths(getattr(data, s), steps) for s in SPLITS}

    def build_model(self, name: str, **overrides: Any) -> nn.Module:
        """Create sequence model `name`: C channels in, K logits out, pooled per sequence.

        The pool is "last" for a causal model and "mean" otherwise (see `choose_pool`); a
        `pool` in `overrides` wins.
        """
        cls, config = preset_config(name, overrides)
        if not hasattr(config, "pool"):
            raise ValueError(
                f"sequence classification needs a sequence model, whose config has pool; "
                f"model '{name}' has none; try 'gru' or 'tcn' (`fieldguide list`)."
            )
        config = cls.config_for_data(config, tuple(self.data.input_shape), self.num_classes)
        if "pool" not in overrides:
            config = dataclasses.replace(config, pool=choose_pool(cls, config))
        return instantiate(cls, config, name)

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
