"""The contract between a task and the trainer.

The trainer knows nothing of images, tokens or graphs. It asks the task for the size of the
training set, for the batch made of some example indices, for the loss of a batch, and for the
metrics of a split. Forecasting, language modelling or node classification fit the same loop
by answering the same four questions.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Protocol

import torch
from torch import Tensor, nn

from fieldguide.models.registry import get_entry, replace_config


class Task(Protocol):
    """What the trainer needs from a task."""

    name: str
    # Default metric for early stopping and for choosing the best weights, and its direction.
    monitor: str
    monitor_mode: str  # "max" or "min"

    @property
    def train_size(self) -> int:
        """Number of training examples the trainer shuffles and batches."""
        ...

    def split_sizes(self) -> dict[str, int]:
        """Number of examples (or windows) per split, for reports."""
        ...

    def batch(self, split: str, index: Tensor) -> tuple[Tensor, ...]:
        """Tensors of the examples `index` of `split` ("train", "val" or "test"), on the CPU."""
        ...

    def loss(self, model: nn.Module, batch: tuple[Tensor, ...]) -> Tensor:
        """Scalar training loss of one batch (already on the model's device)."""
        ...

    def evaluate(
        self, model: nn.Module, split: str, *, device: str, batch_size: int
    ) -> dict[str, float]:
        """Metrics of `split`, named "<split>/<metric>", e.g. "val/accuracy"."""
        ...


@contextmanager
def evaluating(model: nn.Module) -> Iterator[None]:
    """Eval mode without gradients inside the block; the model's own mode comes back after it.

    A task evaluates in the middle of training, so it must hand the model back in train mode
    (dropout on) if that is how it found it, even when evaluation raises.
    """
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        model.train(was_training)


def preset_config(name: str, overrides: dict[str, Any]) -> tuple[type, Any]:
    """The class and config of preset `name` with `overrides` applied (checked by the registry)."""
    entry = get_entry(name)
    return entry.cls, replace_config(entry.config, name, **overrides)


def instantiate(cls: type, config: Any, name: str) -> nn.Module:
    """Build `cls(config)` and give it its registry name (used in errors and run folders)."""
    model = cls(config)
    model.name = name
    return model
