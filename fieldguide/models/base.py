"""What every fieldguide model shares: a config, a name, declared invariants, an example input.

Invariants a model may declare (one generic checker in tests/test_model_contract.py verifies
every declared property of every registered model):

- ``batch_independent``: in eval mode, a sample's output does not depend on the other samples
  of its batch (no batch statistics leak across samples).
"""

from __future__ import annotations

from typing import Any, ClassVar

from torch import Tensor, nn


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

    def num_parameters(self) -> int:
        """Number of trainable parameters."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad)
