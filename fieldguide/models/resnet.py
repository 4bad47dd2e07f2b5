"""Residual networks (docs/guide/resnet.md). Letters: B batch, C channels, H×W spatial.

He et al., "Deep Residual Learning for Image Recognition" (2016). Each block learns a residual
F(x) and adds it to a shortcut: the identity when the shape is unchanged, a 1x1 convolution
plus norm when a block changes stride or width (the guide's sketch adds the identity always,
which fails on any such block). The stride sits on the 3x3 convolution of a bottleneck
("ResNet v1.5", as in torchvision), so parameter counts match torchvision's models.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

import torch
from torch import Tensor, nn

from fieldguide.layers.shapes import check_images
from fieldguide.models.base import DataSpec, Model
from fieldguide.models.registry import register


@dataclass(frozen=True)
class ResNetConfig:
    """Sizes of a ResNet; `create_model` takes any field as an override."""

    block: Literal["basic", "bottleneck"] = "basic"
    layers: tuple[int, ...] = (2, 2, 2, 2)  # blocks per stage; stages after the first halve H×W
    widths: tuple[int, ...] = (64, 128, 256, 512)  # inner width per stage (x4 out for bottleneck)
    in_channels: int = 3
    out_dim: int = 1000
    stem: Literal["imagenet", "small"] = "imagenet"  # 7x7/2 + max-pool, or 3x3/1 for tiny images
    stem_width: int = 64
    norm: Literal["batch", "group"] = "batch"  # group norm for tiny batches (docs/guide/README.md)
    zero_init_residual: bool = False  # start each block as the identity on its residual path
    dropout: float = 0.0  # before the classifier

    def __post_init__(self) -> None:
        if len(self.layers) != len(self.widths) or not self.layers:
            raise ValueError(
                f"ResNetConfig.layers and widths must have the same non-zero length, "
                f"got {len(self.layers)} and {len(self.widths)}."
            )
        if min(self.layers) < 1 or min(self.widths) < 1:
            raise ValueError(
                f"ResNetConfig.layers and widths must be positive, "
                f"got {self.layers}, {self.widths}."
            )
        if self.in_channels < 1 or self.out_dim < 1:
            raise ValueError("ResNetConfig.in_channels and out_dim must be at least 1.")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"ResNetConfig.dropout must be in [0, 1), got {self.dropout}.")


def make_norm(kind: str, channels: int) -> nn.Module:
    """BatchNorm2d, or GroupNorm with the most groups (up to 32) that divide `channels`."""
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    groups = next(g for g in (32, 16, 8, 4, 2, 1) if channels % g == 0)
    return nn.GroupNorm(groups, channels)


def conv3x3(in_ch: int, out_ch: int, stride: int = 1) -> nn.Conv2d:
    """3x3 convolution, padding 1, no bias (a norm follows)."""
    return nn.Conv2d(in_ch, out_ch, 3, stride=stride, padding=1, bias=False)


class Shortcut(nn.Module):
    """Projection shortcut: 1x1 convolution with the block's stride, then norm."""

    def __init__(self, in_ch: int, out_ch: int, stride: int, norm: str) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_ch, out_ch, 1, stride=stride, bias=False)
        self.norm = make_norm(norm, out_ch)

    def forward(self, x: Tensor) -> Tensor:
        """Map (B, in_ch, H, W) to (B, out_ch, H/stride, W/stride)."""
        return self.norm(self.conv(x))


class BasicBlock(nn.Module):
    """Two 3x3 convolutions and a shortcut: y = relu(F(x) + shortcut(x))."""

    expansion = 1

    def __init__(self, in_ch: int, width: int, stride: int, norm: str) -> None:
        super().__init__()
        out_ch = width * self.expansion
        self.conv1 = conv3x3(in_ch, width, stride)
        self.norm1 = make_norm(norm, width)
        self.conv2 = conv3x3(width, out_ch)
        self.norm2 = make_norm(norm, out_ch)
        self.shortcut = (
            Shortcut(in_ch, out_ch, stride, norm)
            if stride != 1 or in_ch != out_ch
            else nn.Identity()
        )
        self.act = nn.ReLU(inplace=True)

    def last_norm(self) -> nn.Module:
        """The norm that closes the residual path (zero-initialised on request)."""
        return self.norm2

    def forward(self, x: Tensor) -> Tensor:
        """Map (B, in_ch, H, W) to (B, width, H/stride, W/stride)."""
        out = self.act(self.norm1(self.conv1(x)))
        out = self.norm2(self.conv2(out))
        return self.act(out + self.shortcut(x))


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3 (carrying the stride), 1x1 expand by 4, and a shortcut."""

    expansion = 4

    def __init__(self, in_ch: int, width: int, stride: int, norm: str) -> None:
        super().__init__()
        out_ch = width * self.expansion
        self.conv1 = nn.Conv2d(in_ch, width, 1, bias=False)
        self.norm1 = make_norm(norm, width)
        self.conv2 = conv3x3(width, width, stride)
        self.norm2 = make_norm(norm, width)
        self.conv3 = nn.Conv2d(width, out_ch, 1, bias=False)
        self.norm3 = make_norm(norm, out_ch)
        self.shortcut = (
            Shortcut(in_ch, out_ch, stride, norm)
            if stride != 1 or in_ch != out_ch
            else nn.Identity()
        )
        self.act = nn.ReLU(inplace=True)

    def last_norm(self) -> nn.Module:
        """The norm that closes the residual path (zero-initialised on request)."""
        return self.norm3

    def forward(self, x: Tensor) -> Tensor:
        """Map (B, in_ch, H, W) to (B, 4·width, H/stride, W/stride)."""
        out = self.act(self.norm1(self.conv1(x)))
        out = self.act(self.norm2(self.conv2(out)))
        out = self.norm3(self.conv3(out))
        return self.act(out + self.shortcut(x))


class ResNet(Model):
    """Residual network (He et al., 2016): stem, stages of residual blocks, pooled linear head."""

    invariants = frozenset({"batch_independent"})
    reads = "images"

    def __init__(self, config: ResNetConfig) -> None:
        super().__init__(config)
        block = BasicBlock if config.block == "basic" else Bottleneck
        c = config.stem_width
        if config.stem == "imagenet":  # 224x224 -> 56x56 before the first stage
            self.stem = nn.Sequential(
                nn.Conv2d(config.in_channels, c, 7, stride=2, padding=3, bias=False),
                make_norm(config.norm, c),
                nn.ReLU(inplace=True),
                nn.MaxPool2d(3, stride=2, padding=1),
            )
        else:  # tiny images (8x8 digits, 32x32) cannot afford a 4x downsampling stem
            self.stem = nn.Sequential(
                conv3x3(config.in_channels, c), make_norm(config.norm, c), nn.ReLU(inplace=True)
            )
        stages = []
        for i, (depth, width) in enumerate(zip(config.layers, config.widths, strict=True)):
            blocks = []
            for j in range(depth):
                stride = 2 if i > 0 and j == 0 else 1
                blocks.append(block(c, width, stride, config.norm))
                c = width * block.expansion
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.drop = nn.Dropout(config.dropout)
        self.head = nn.Linear(c, config.out_dim)
        self.feature_dim = c
        self._init_weights()

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):  # He init for ReLU networks (docs/guide/README.md)
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d | nn.GroupNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        if (
            self.config.zero_init_residual
        ):  # each block starts as relu(shortcut(x)) (Goyal et al., 2017)
            for m in self.modules():
                if isinstance(m, BasicBlock | Bottleneck):
                    nn.init.zeros_(m.last_norm().weight)

    @property
    def input_description(self) -> str:
        """What forward expects."""
        return f"images (B, {self.config.in_channels}, H, W)"

    def example_input(self, batch_size: int = 2) -> Tensor:
        """Random images: 8x8 for the small stem, 64x64 for the ImageNet stem (any size works)."""
        size = 8 if self.config.stem == "small" else 64
        return torch.randn(batch_size, self.config.in_channels, size, size)

    @classmethod
    def config_for_data(cls, config: ResNetConfig, spec: DataSpec) -> ResNetConfig:
        """Take the channel count from (C, H, W) examples and one output per class."""
        cls.refuse_shape(spec, "C H W")
        cls.refuse_output(spec)
        return replace(config, in_channels=spec.shape[0], out_dim=spec.num_outputs)

    def features(self, x: Tensor) -> Tensor:
        """Pooled features of shape (B, feature_dim) for images x of shape (B, C, H, W)."""
        check_images(x, self.config.in_channels, owner=self.name, like=self.head.weight)
        h = self.stages(self.stem(x))  # (B, C', H', W')
        return self.pool(h).flatten(1)  # (B, C')

    def forward(self, x: Tensor) -> Tensor:
        """Map images x of shape (B, in_channels, H, W) to logits of shape (B, out_dim)."""
        return self.head(self.drop(self.features(x)))


register("resnet18", ResNetConfig(block="basic", layers=(2, 2, 2, 2)), ResNet)
register("resnet34", ResNetConfig(block="basic", layers=(3, 4, 6, 3)), ResNet)
register("resnet50", ResNetConfig(block="bottleneck", layers=(3, 4, 6, 3)), ResNet)
register(
    "resnet-tiny",
    ResNetConfig(
        layers=(1, 1, 1),
        widths=(32, 64, 128),
        in_channels=1,
        out_dim=10,
        stem="small",
        stem_width=32,
    ),
    ResNet,
)
