"""U-Net for per-pixel prediction (docs/guide/unet.md).

Letters: B batch, C channels, H×W spatial, K classes.

Ronneberger, Fischer & Brox, "U-Net: Convolutional Networks for Biomedical Image Segmentation"
(2015). An encoder halves H×W `depth` times while widening the features; a decoder doubles H×W
back, and at each level concatenates the encoder's features of the same size (a skip), so fine
detail lost to pooling comes straight across. A 1x1 convolution gives K logits per pixel.

Any input size. The guide's sketch concatenates after three poolings and fails on `torch.cat`
whenever H or W is not a multiple of 8. Here the input is padded up to the next multiple of
2^depth, split evenly between the two sides, and the logits are cropped back, so the output is
(B, K, H, W) for every H, W >= 1, odd and prime sizes included. The padding is `pad_mode`:

- "reflect" mirrors the image outward (no artificial edge at the border, as the paper's
  mirroring), continuing the mirror image periodically when the pad is wider than the image
  (torch's own reflection refuses a pad of side pixels or more); a 1-pixel side is repeated.
- "zeros" pads with zeros, which every size tolerates trivially.

Inner 3x3 convolutions pad with zeros ("same" padding, unlike the paper's unpadded ones), so
encoder and decoder features of one level always have the same size.

The receptive field (`receptive_field`) is traced back from an output pixel, layer by layer.
GroupNorm takes its statistics over the whole image, so strictly every output pixel depends a
little on every input pixel through them; the receptive field counts the convolutions only.
With BatchNorm in training, a batch of one image that shrinks to 1x1 at the bottom has a
single value per channel, which BatchNorm cannot normalise; forward refuses it in one sentence.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from itertools import pairwise
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fieldguide.layers.shapes import check_images
from fieldguide.models.base import DataSpec, Model
from fieldguide.models.registry import register

NORMS = ("group", "batch", "none")
UPSAMPLES = ("transpose", "bilinear")
PAD_MODES = ("reflect", "zeros")
MAX_DEPTH = 8  # a 1-pixel image is padded to 2^depth a side: 256x256 at the limit


@dataclass(frozen=True)
class UNetConfig:
    """Sizes of a U-Net; `create_model` takes any field as an override."""

    in_channels: int = 1
    out_dim: int = 1  # K logits per pixel: 1 for binary masks, else one per class
    hidden_dim: int = 64  # width of the first level
    depth: int = 4  # downsamplings; H and W are padded to multiples of 2^depth
    # Width of level i is hidden_dim * channel_mults[i], for levels 0..depth; () doubles per
    # level (1, 2, 4, ..., 2^depth), as in the paper.
    channel_mults: tuple[int, ...] = ()
    norm: Literal["group", "batch", "none"] = "group"  # suits small batches (docs/guide/README.md)
    upsample: Literal["transpose", "bilinear"] = "transpose"  # 2x2/2 up-conv, or bilinear + 1x1
    residual: bool = False  # add a shortcut around the two convolutions of each block
    dropout: float = 0.0  # between the two convolutions of every block
    pad_mode: Literal["reflect", "zeros"] = "reflect"  # how H×W is padded to a multiple

    def __post_init__(self) -> None:
        for field in ("in_channels", "out_dim", "hidden_dim"):
            if getattr(self, field) < 1:
                raise ValueError(
                    f"UNetConfig.{field} must be at least 1, got {getattr(self, field)}."
                )
        if not 1 <= self.depth <= MAX_DEPTH:
            raise ValueError(
                f"UNetConfig.depth must be between 1 and {MAX_DEPTH} downsamplings, got "
                f"{self.depth}; each level doubles the multiple that H and W are padded to."
            )
        mults = self.channel_mults
        if mults and (len(mults) != self.depth + 1 or min(mults) < 1):
            raise ValueError(
                f"UNetConfig.channel_mults must hold depth + 1 = {self.depth + 1} positive "
                f"multipliers, one per level, or be empty to double per level; got {mults}."
            )
        for field, choices in (("norm", NORMS), ("upsample", UPSAMPLES), ("pad_mode", PAD_MODES)):
            if getattr(self, field) not in choices:
                raise ValueError(
                    f"UNetConfig.{field} must be one of {choices}, got {getattr(self, field)!r}."
                )
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"UNetConfig.dropout must be in [0, 1), got {self.dropout}.")

    @property
    def widths(self) -> tuple[int, ...]:
        """Channels of levels 0..depth (the last is the bottleneck)."""
        mults = self.channel_mults or tuple(2**i for i in range(self.depth + 1))
        return tuple(self.hidden_dim * m for m in mults)


# ---------------------------------------------------------------------------------------------
# Blocks. Each takes optional extra inputs (*cond) and hands them to its ConvBlock, so a
# subclass can swap in blocks that read, say, a time embedding without rewriting the U-Net.
# ---------------------------------------------------------------------------------------------


def make_norm(kind: str, channels: int) -> nn.Module:
    """GroupNorm (see below), BatchNorm2d, or nothing for "none".

    GroupNorm takes the most groups, up to 32, that divide `channels` with at least two
    channels each: a 1x1 map at the bottleneck then still has two values per group to
    normalise (one value would normalise to zero, and torch refuses it at batch size 1).
    """
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "none":
        return nn.Identity()
    groups = next(
        g for g in (32, 16, 8, 4, 2, 1) if (channels % g == 0 and channels // g >= 2) or g == 1
    )
    return nn.GroupNorm(groups, channels)


def conv3x3(in_ch: int, out_ch: int, norm: str) -> nn.Conv2d:
    """3x3 convolution with zero "same" padding; a bias only when no norm follows."""
    return nn.Conv2d(in_ch, out_ch, 3, padding=1, bias=norm == "none")


class ConvBlock(nn.Module):
    """Two 3x3 convolutions, each followed by norm and ReLU; optionally residual.

    y = relu(norm2(conv2(drop(relu(norm1(conv1(x)))))) [+ shortcut(x) before the last relu]
    """

    def __init__(
        self, in_ch: int, out_ch: int, *, norm: str, dropout: float, residual: bool
    ) -> None:
        super().__init__()
        self.conv1 = conv3x3(in_ch, out_ch, norm)
        self.norm1 = make_norm(norm, out_ch)
        self.drop = nn.Dropout(dropout)
        self.conv2 = conv3x3(out_ch, out_ch, norm)
        self.norm2 = make_norm(norm, out_ch)
        self.act = nn.ReLU()
        self.shortcut: nn.Module | None = None
        if residual:  # a 1x1 projection when the width changes, as in ResNet
            self.shortcut = (
                nn.Sequential(
                    nn.Conv2d(in_ch, out_ch, 1, bias=norm == "none"), make_norm(norm, out_ch)
                )
                if in_ch != out_ch
                else nn.Identity()
            )

    def path(self) -> list[nn.Module]:
        """The layers that widen the receptive field, in order (the shortcut widens nothing)."""
        return [self.conv1, self.conv2]

    def forward(self, x: Tensor) -> Tensor:
        """Map (B, in_ch, H, W) to (B, out_ch, H, W)."""
        h = self.drop(self.act(self.norm1(self.conv1(x))))
        h = self.norm2(self.conv2(h))
        if self.shortcut is not None:
            h = h + self.shortcut(x)
        return self.act(h)


class Down(nn.Module):
    """One encoder level: 2x2 max-pooling, then a block (H×W halves, width changes)."""

    def __init__(self, block: nn.Module) -> None:
        super().__init__()
        self.pool = nn.MaxPool2d(2)
        self.block = block

    def path(self) -> list[nn.Module]:
        """The layers that widen the receptive field, in order."""
        return [self.pool, *self.block.path()]

    def forward(self, x: Tensor, *cond: Tensor) -> Tensor:
        """Map (B, C, H, W) to (B, C', H/2, W/2); H and W are even (the input was padded)."""
        return self.block(self.pool(x), *cond)


class Up(nn.Module):
    """One decoder level: upsample 2x to the skip's width, concatenate the skip, then a block.

    "transpose" is the paper's 2x2 up-convolution (stride 2); "bilinear" interpolates, then a
    1x1 convolution sets the width (fewer parameters, no checkerboard artefacts).
    """

    def __init__(self, in_ch: int, skip_ch: int, block: nn.Module, upsample: str) -> None:
        super().__init__()
        if upsample == "transpose":
            self.up: nn.Module = nn.ConvTranspose2d(in_ch, skip_ch, 2, stride=2)
        else:
            self.up = nn.Sequential(
                nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
                nn.Conv2d(in_ch, skip_ch, 1),
            )
        self.block = block

    def upsampling(self) -> list[nn.Module]:
        """The layers x passes through before the concatenation, in order."""
        return list(self.up) if isinstance(self.up, nn.Sequential) else [self.up]

    def forward(self, x: Tensor, skip: Tensor, *cond: Tensor) -> Tensor:
        """Map x (B, C, H, W) and skip (B, C_s, 2H, 2W) to (B, C', 2H, 2W)."""
        h = torch.cat([skip, self.up(x)], dim=1)  # (B, 2 C_s, 2H, 2W)
        return self.block(h, *cond)


def input_span(layer: nn.Module, lo: int, hi: int) -> tuple[int, int]:
    """The input pixels [lo', hi'] that the output pixels [lo, hi] of `layer` read, on one axis.

    For an unbounded image (borders only clip). Per output pixel o of a layer with k taps,
    stride s, padding p and dilation d:
    convolution, o·s - p + [0, (k-1)·d]; max-pooling, o·s + [0, k-1]; transposed
    convolution, every i with o - k < i·s <= o; bilinear 2x (align_corners=False), the two
    neighbours of the source point (o - 1/2)/2, floor((o-1)/2) and floor((o+1)/2).
    """
    if isinstance(layer, nn.Conv2d):
        (k,), (s,), (p,), (d,) = (
            getattr(layer, a)[:1] for a in ("kernel_size", "stride", "padding", "dilation")
        )
        return lo * s - p, hi * s - p + (k - 1) * d
    if isinstance(layer, nn.MaxPool2d):
        k, s = layer.kernel_size, layer.stride
        return lo * s, hi * s + k - 1
    if isinstance(layer, nn.ConvTranspose2d):
        k, s = layer.kernel_size[0], layer.stride[0]
        return -((k - 1 - lo) // s), hi // s  # ceil((lo - k + 1) / s), floor(hi / s)
    if isinstance(layer, nn.Upsample) and layer.scale_factor == 2 and layer.mode == "bilinear":
        return (lo - 1) // 2, (hi + 1) // 2
    raise TypeError(f"input_span does not know {type(layer).__name__}.")


def trace_back(layers: list[nn.Module], lo: int, hi: int) -> tuple[int, int]:
    """The input span of output pixels [lo, hi] of `layers` run in order."""
    for layer in reversed(layers):
        lo, hi = input_span(layer, lo, hi)
    return lo, hi


def mirror_pad(x: Tensor, before: int, after: int, axis: int) -> Tensor:
    """Pad `axis` with the image's periodic mirror image, for any pad: ... 2 1 | 0 1 2 3 | 2 1 0 ...

    Equal to torch's "reflect" padding where that works; torch refuses a pad of side pixels
    or more, which a small image needs at depth. A side of one pixel is repeated.
    """
    side = x.shape[axis]
    index = torch.arange(-before, side + after, device=x.device)
    if side == 1:
        return x.index_select(axis, torch.zeros_like(index))
    period = 2 * (side - 1)  # 0 1 2 3 2 1 | 0 1 2 3 2 1 | ...
    index = index.remainder(period)  # into [0, period), also for negative positions
    return x.index_select(axis, torch.where(index < side, index, period - index))


# ---------------------------------------------------------------------------------------------
# The model.
# ---------------------------------------------------------------------------------------------


class UNet(Model):
    """U-Net (Ronneberger et al., 2015): encoder, decoder with skip concatenations, pixel logits."""

    invariants = frozenset({"batch_independent", "size_preserving", "uses_skips"})
    reads = "images"
    outputs = ("per-pixel",)

    def __init__(self, config: UNetConfig) -> None:
        super().__init__(config)
        widths = config.widths
        self.stem = self.make_block(config.in_channels, widths[0])
        self.downs = nn.ModuleList(
            Down(self.make_block(c_in, c_out)) for c_in, c_out in pairwise(widths)
        )
        # Deepest first: level i takes width widths[i+1] up to widths[i], concatenates its skip.
        self.ups = nn.ModuleList(
            Up(widths[i + 1], widths[i], self.make_block(2 * widths[i], widths[i]), config.upsample)
            for i in reversed(range(config.depth))
        )
        self.head = nn.Conv2d(widths[0], config.out_dim, 1)
        self._init_weights()

    def make_block(self, in_ch: int, out_ch: int) -> nn.Module:
        """The block of every level; a subclass may return one that takes extra inputs."""
        c = self.config
        return ConvBlock(in_ch, out_ch, norm=c.norm, dropout=c.dropout, residual=c.residual)

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d) and m is not self.head:  # He init: ReLU follows
                nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    # -- what it reads and how it sizes itself ------------------------------------------------
    @property
    def input_description(self) -> str:
        """What forward expects."""
        return f"images (B, {self.config.in_channels}, H, W), any H, W >= 1"

    def example_input(self, batch_size: int = 2) -> Tensor:
        """Random images two pixels wide at the bottleneck (at least 16x16); any size works."""
        size = max(16, 2 ** (self.config.depth + 1))
        return torch.randn(batch_size, self.config.in_channels, size, size)

    @classmethod
    def config_for_data(cls, config: UNetConfig, spec: DataSpec) -> UNetConfig:
        """Take the channel count from (C, H, W) examples and K logits per pixel."""
        cls.refuse_shape(spec, "C H W")
        cls.refuse_output(spec)
        return replace(config, in_channels=spec.shape[0], out_dim=spec.num_outputs)

    @property
    def receptive_field(self) -> int:
        """Input pixels, per axis, that the widest-seeing output pixel reads.

        Traced back from one output pixel through every path, head to input, layer by layer
        (`input_span`): each decoder level sends its span across the skip to the encoder and
        through the upsampling to the level below. Pooling makes the span depend on where a
        pixel sits in the 2^depth grid, so this is the widest over those positions: 44, 100 and
        204 pixels at depths 2, 3 and 4 with transposed convolutions; bilinear reads more.
        """
        return max(hi - lo + 1 for lo, hi in map(self._input_span, range(2**self.config.depth)))

    def _input_span(self, position: int) -> tuple[int, int]:
        """The span of (padded) input pixels, on one axis, that output pixel `position` reads."""
        encoder = [self.stem.path(), *(down.path() for down in self.downs)]
        skips = []  # span each decoder level needs from the encoder output of its level
        lo, hi = trace_back([self.head], position, position)
        for up in reversed(self.ups):  # decoder, from the output (level 0) down
            lo, hi = trace_back(up.block.path(), lo, hi)
            skips.append((lo, hi))
            lo, hi = trace_back(up.upsampling(), lo, hi)
        for level in reversed(range(len(encoder))):  # encoder, from the bottleneck up
            if level < len(skips):  # the union of both routes into this level's output
                lo, hi = min(lo, skips[level][0]), max(hi, skips[level][1])
            lo, hi = trace_back(encoder[level], lo, hi)
        return lo, hi

    def skip_modules(self) -> list[nn.Module]:
        """The modules whose second input is a skip (`forward(x, skip, ...)`), deepest first."""
        return list(self.ups)

    # -- forward ------------------------------------------------------------------------------
    def pad(self, x: Tensor) -> tuple[Tensor, tuple[slice, slice]]:
        """Pad (B, C, H, W) to multiples of 2^depth; return it and the slices that crop back."""
        multiple = 2**self.config.depth
        height, width = x.shape[-2:]
        pad_h, pad_w = -height % multiple, -width % multiple
        top, left = pad_h // 2, pad_w // 2  # split evenly, the extra pixel below / right
        if self.config.pad_mode == "zeros":
            x = F.pad(x, (left, pad_w - left, top, pad_h - top))
        else:
            x = mirror_pad(x, top, pad_h - top, axis=-2)
            x = mirror_pad(x, left, pad_w - left, axis=-1)
        return x, (slice(top, top + height), slice(left, left + width))

    def features(self, x: Tensor, *cond: Tensor) -> Tensor:
        """Decoder output (B, hidden_dim·mult_0, H, W) for padded x; *cond goes to every block."""
        skips = []
        h = self.stem(x, *cond)
        for down in self.downs:
            skips.append(h)  # (B, widths[i], H/2^i, W/2^i)
            h = down(h, *cond)
        for up, skip in zip(self.ups, reversed(skips), strict=True):
            h = up(h, skip, *cond)
        return h

    def forward(self, x: Tensor) -> Tensor:
        """Map images x of shape (B, in_channels, H, W) to logits of shape (B, out_dim, H, W)."""
        self._check_input(x)
        padded, (rows, cols) = self.pad(x)  # (B, C, H', W'), multiples of 2^depth
        logits = self.head(self.features(padded))  # (B, K, H', W')
        return logits[:, :, rows, cols]  # (B, K, H, W)

    def _check_input(self, x: Any) -> None:
        check_images(x, self.config.in_channels, owner=self.name, like=self.head.weight)
        height, width = x.shape[-2:]
        multiple = 2**self.config.depth
        bottom = -(-height // multiple) * -(-width // multiple)  # pixels per map at the bottom
        if self.config.norm == "batch" and self.training and x.shape[0] * bottom == 1:
            raise ValueError(
                f"{self.name} expects images x to leave BatchNorm more than one value per channel "
                f"in training, but one {height}x{width} image shrinks to 1x1 at depth "
                f"{self.config.depth}; train on batches of 2 or more, or use norm='group'."
            )


# For starter data (8x8 digits up to 256x256 crops), fast on a CPU.
register("unet-tiny", UNetConfig(hidden_dim=8, depth=2), UNet)
register("unet-small", UNetConfig(hidden_dim=16, depth=3), UNet)
# The paper's widths 64, 128, 256, 512, 1024 (same-padded convs; 2 classes, grey input).
register("unet", UNetConfig(in_channels=1, out_dim=2, hidden_dim=64, depth=4), UNet)
