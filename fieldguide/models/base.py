"""What every fieldguide model shares: a config, a name, declared invariants, an example input.

Invariants a model may declare (one generic checker in tests/test_model_contract.py verifies
every declared property of every registered model):

- ``batch_independent``: in eval mode, a sample's output does not depend on the other samples
  of its batch (no batch statistics leak across samples).
- ``causal``: for sequences (B, T, C), the output at step t depends on inputs at steps <= t only.
- ``streamable``: `initial_state(batch_size)` and `step(x_t, state)` reproduce the full forward
  pass one step at a time, batched.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from fieldguide.layers.shapes import check_shape


class Model(nn.Module):
    """Base class of registered models; subclasses set `config` and the class variables."""

    invariants: ClassVar[frozenset[str]] = frozenset()
    name: str = ""  # the registry name, set by create_model

    def __init__(self, config: Any) -> None:
        super().__init__()
        self.config = config
        self.name = type(self).__name__.lower()

    @property
    def input_description(self) -> str:
        """What forward expects, in words and shape letters, e.g. "images (B, 3, H, W)"."""
        raise NotImplementedError

    def example_input(self, batch_size: int = 2) -> Tensor:
        """A small random input that forward accepts; used by tests, diagrams and benchmarks."""
        raise NotImplementedError

    @classmethod
    def config_for_data(cls, config: Any, input_shape: tuple[int, ...], num_outputs: int) -> Any:
        """Return `config` adapted to samples of `input_shape` and `num_outputs` outputs."""
        raise NotImplementedError

    def no_weight_decay(self) -> set[str]:
        """Names of parameters the trainer must not weight-decay (beyond norms and biases)."""
        return set()

    def optimizer_hints(self) -> dict[str, dict[str, float]]:
        """Per-parameter optimizer settings: name -> {"lr": ..., "weight_decay": ...}."""
        return {}

    def num_parameters(self) -> int:
        """Number of trainable parameters."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad)


class SequenceModel(Model):
    """Base of sequence models: config has in_channels, out_dim and pool (layers/sequence.py)."""

    example_length = 16  # T of the example input

    @property
    def input_description(self) -> str:
        """What forward expects."""
        return f"sequences (B, T, {self.config.in_channels}), optional lengths (B,)"

    def example_input(self, batch_size: int = 2) -> Tensor:
        """Random sequences of shape (batch_size, example_length, in_channels)."""
        return torch.randn(batch_size, self.example_length, self.config.in_channels)

    @classmethod
    def config_for_data(cls, config: Any, input_shape: tuple[int, ...], num_outputs: int) -> Any:
        """Samples (T, C) set in_channels = C; the task sets pool; out_dim = num_outputs."""
        from dataclasses import replace

        if len(input_shape) != 2:
            raise ValueError(
                f"{cls.__name__} needs sequence samples of shape (T, C); "
                f"the data gives {input_shape}."
            )
        return replace(config, in_channels=input_shape[1], out_dim=num_outputs)

    def initial_state(self, batch_size: int) -> Any:
        """The streaming state before the first step."""
        raise NotImplementedError(f"{type(self).__name__} does not stream.")

    def step(self, x_t: Tensor, state: Any) -> tuple[Tensor, Any]:
        """One step: x_t (B, in_channels) -> (y_t (B, out_dim), next state)."""
        raise NotImplementedError(f"{type(self).__name__} does not stream.")

    def _check_step(self, x_t: object) -> None:
        if getattr(self.config, "pool", "none") == "mean":
            raise ValueError(
                f"{self.name} streams only with pool 'none' or 'last'; it has pool='mean'."
            )
        check_shape(
            x_t, "B C", C=self.config.in_channels, owner=self.name, name="x_t", what="one step"
        )
