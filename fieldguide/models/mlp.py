"""Multi-layer perceptron for dense features (docs/guide/mlp.md). Letters: B batch, D features.

The guide's first pick for tabular data and the head on top of other encoders. Each hidden
block is Linear -> norm -> activation -> dropout; with `residual=True` a block adds its input
back, which keeps deep MLPs trainable.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Literal

import torch
from torch import Tensor, nn

from fieldguide.layers.shapes import check_shape
from fieldguide.models.base import DataSpec, Model
from fieldguide.models.registry import register

ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU, "silu": nn.SiLU, "tanh": nn.Tanh}


@dataclass(frozen=True)
class MLPConfig:
    """Sizes of an MLP; `create_model` takes any field as an override."""

    in_channels: int = 64
    out_dim: int = 10  # classes for classification, targets for regression
    hidden_dim: int = 256
    num_layers: int = 2  # hidden blocks; 0 gives a linear model
    activation: Literal["relu", "gelu", "silu", "tanh"] = "relu"
    norm: Literal["none", "batch", "layer"] = "none"
    dropout: float = 0.1
    residual: bool = False  # add each hidden block's input to its output

    def __post_init__(self) -> None:
        for field in ("in_channels", "out_dim", "hidden_dim"):
            if getattr(self, field) < 1:
                raise ValueError(
                    f"MLPConfig.{field} must be at least 1, got {getattr(self, field)}."
                )
        if self.num_layers < 0:
            raise ValueError(f"MLPConfig.num_layers must be >= 0, got {self.num_layers}.")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"MLPConfig.dropout must be in [0, 1), got {self.dropout}.")


class HiddenBlock(nn.Module):
    """Linear -> norm -> activation -> dropout, optionally added to its input."""

    def __init__(self, in_dim: int, config: MLPConfig) -> None:
        super().__init__()
        self.linear = nn.Linear(in_dim, config.hidden_dim)
        self.norm = {
            "none": nn.Identity,
            "batch": lambda: nn.BatchNorm1d(config.hidden_dim),
            "layer": lambda: nn.LayerNorm(config.hidden_dim),
        }[config.norm]()
        self.act = ACTIVATIONS[config.activation]()
        self.drop = nn.Dropout(config.dropout)
        # Only a block whose width does not change can add its input back.
        self.residual = config.residual and in_dim == config.hidden_dim
        # Xavier suits tanh, Kaiming (He) the ReLU family (docs/guide/README.md#training-habits).
        if config.activation == "tanh":
            nn.init.xavier_uniform_(self.linear.weight)
        else:
            nn.init.kaiming_uniform_(self.linear.weight, a=math.sqrt(5))

    def forward(self, x: Tensor) -> Tensor:
        """Map (B, in_dim) to (B, hidden_dim)."""
        h = self.drop(self.act(self.norm(self.linear(x))))
        return x + h if self.residual else h


class MLP(Model):
    """Multi-layer perceptron (Rumelhart et al., 1986) with optional norms and residual blocks."""

    invariants = frozenset({"batch_independent"})
    reads = "vectors"
    outputs = ("per-example", "per-node")  # a node's features are a vector too

    def __init__(self, config: MLPConfig) -> None:
        super().__init__(config)
        dims = [config.in_channels] + [config.hidden_dim] * config.num_layers
        self.blocks = nn.Sequential(*(HiddenBlock(d, config) for d in dims[:-1]))
        self.head = nn.Linear(dims[-1], config.out_dim)

    @property
    def input_description(self) -> str:
        """What forward expects."""
        return f"features (B, {self.config.in_channels})"

    def example_input(self, batch_size: int = 2) -> Tensor:
        """Random features of shape (batch_size, in_channels)."""
        return torch.randn(batch_size, self.config.in_channels)

    @classmethod
    def config_for_data(cls, config: MLPConfig, spec: DataSpec) -> MLPConfig:
        """Flattened examples in, one output per example or node: images read as pixel vectors."""
        cls.refuse_output(spec)
        return replace(config, in_channels=math.prod(spec.shape), out_dim=spec.num_outputs)

    def forward(self, x: Tensor) -> Tensor:
        """Map features x of shape (B, in_channels) to outputs of shape (B, out_dim)."""
        check_shape(
            x,
            "B D",
            D=self.config.in_channels,
            owner=self.name,
            name="x",
            what="features",
            like=self.head.weight,
        )
        return self.head(self.blocks(x))


register("mlp", MLPConfig(dropout=0.3), MLP)  # 0.3: see benchmarks/small_tables.py
register("mlp-small", MLPConfig(hidden_dim=128, num_layers=2, dropout=0.1), MLP)
register("mlp-deep", MLPConfig(hidden_dim=256, num_layers=6, norm="layer", residual=True), MLP)
