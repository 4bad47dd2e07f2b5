"""RealNVP normalizing flows (docs/guide/flows.md).

Letters: B batch, D features, C channels, H×W spatial.

Dinh, Sohl-Dickstein & Bengio, "Density estimation using Real NVP" (2017), with Glow's ActNorm
(Kingma & Dhariwal, 2018). A flow is an invertible map f from data x to a latent z of the same
size whose base density is a standard normal, so the density of x is exact:

    log p(x) = log N(f(x); 0, I) + log |det df/dx|

f is a stack of steps, each an ActNorm then an affine coupling. A coupling keeps the entries
where a binary mask b is 1 and scales and shifts the others, using only the kept ones:

    y = b * x + (1 - b) * (x * exp(s) + t),    (s, t) = net(b * x)

Its Jacobian is triangular, so log |det| = sum of s over the changed entries, and it inverts
in closed form: x = b * y + (1 - b) * (y - t) * exp(-s), where net(b * y) = net(b * x).

Two defects of the guide's sketch are mended here (known-defects §11):

- exp(s) unbounded: a coupling net that outputs a large s overflows early in training. Here
  s is soft-clamped, s = S * tanh(raw / S) with S = `LOG_SCALE_BOUND`: the identity near 0,
  never beyond ±S, so each coupling scales an entry by at most exp(S).
- no permutation between couplings: half the entries would never be transformed. Here the
  masks alternate (checkerboard parity and channel halves for images; halves, then even and
  odd entries for vectors), and a flow has at least two couplings per stage.

Images use the paper's multi-scale architecture. Each of `num_scales` levels runs couplings
with checkerboard masks at H×W, squeezes each 2x2 block of pixels into channels (C, H, W) ->
(4C, H/2, W/2), runs couplings with channel masks, then factors out half the channels: they
are final latents, and the next level works on the other half only. A last stage of
checkerboard couplings ends the flow. The latent z is given back in the shape of x (the
factored-out halves put back where they came from, squeezes undone), so z[i] is the latent
of pixel x[i] in the sense that both sit at one index. H = W = `image_size` must halve
`num_scales` times: 8x8 digits and 28x28 Fashion-MNIST (28 = 4 * 7) take at most two levels.

Every step appends its log |det| (B,) to a list that the caller sums once (`logdets`), so
`forward`, which gives z alone, adds nothing up, and its traced diagram shows the data path.

Both classes work in model space (models/base.py): images in [-1, 1], vectors standardised;
the generation task dequantises images and turns `log_prob` into bits per dimension.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fieldguide.layers.shapes import check_device, check_shape
from fieldguide.models.base import DataSpec, Model
from fieldguide.models.registry import register

# Largest |log-scale| of one coupling: each entry is scaled by at most exp(2) ~ 7.4 per step.
LOG_SCALE_BOUND = 2.0
# The coupling nets' last layer starts at 1/100 of its default init, so every step starts near
# the identity (a deep stack is stable from the first batch), but not at exactly zero, which
# would leave the layers before it without a gradient on the first step.
HEAD_INIT_SCALE = 0.01
LOG_2PI = math.log(2 * math.pi)


@dataclass(frozen=True)
class FlowConfig:
    """Sizes of a RealNVP flow; `create_model` takes any field as an override."""

    in_channels: int = 1  # channels of an image, or the width D of a vector
    image_size: int = 8  # H = W of the images; 0 for vectors
    hidden_dim: int = 64  # width of every coupling net
    num_layers: int = 2  # residual blocks per coupling net (3x3 convs or linear layers)
    num_couplings: int = 4  # couplings per stage; at least 2, so every entry is transformed
    num_scales: int = 2  # images: levels of squeeze and factor-out (H halves at each)
    conditional: bool = False  # add a class embedding into every coupling net
    num_classes: int = 0  # classes of a conditional flow (set from the data)
    label_dropout: float = 0.1  # conditional training: share of labels hidden, so y=None works

    def __post_init__(self) -> None:
        for field in ("in_channels", "hidden_dim", "num_layers"):
            if getattr(self, field) < 1:
                raise ValueError(
                    f"FlowConfig.{field} must be at least 1, got {getattr(self, field)}."
                )
        for field in ("image_size", "num_scales", "num_classes"):
            if getattr(self, field) < 0:
                raise ValueError(f"FlowConfig.{field} must be >= 0, got {getattr(self, field)}.")
        if self.num_couplings < 2:
            raise ValueError(
                f"FlowConfig.num_couplings must be at least 2, so that alternating masks "
                f"transform every entry; got {self.num_couplings}."
            )
        multiple = 2**self.num_scales
        if self.image_size and self.image_size % multiple:
            fits = max(k for k in range(self.num_scales + 1) if self.image_size % 2**k == 0)
            raise ValueError(
                f"FlowConfig.image_size must be a multiple of 2**num_scales = {multiple}, since "
                f"each of the {self.num_scales} squeezes halves H and W; got {self.image_size}, "
                f"so use num_scales={fits} or resize the images."
            )
        if not 0.0 <= self.label_dropout < 1.0:
            raise ValueError(
                f"FlowConfig.label_dropout must be in [0, 1), got {self.label_dropout}."
            )


# ---------------------------------------------------------------------------------------------
# Blocks: ActNorm, the coupling net, the affine coupling, and stacks of steps.
# ---------------------------------------------------------------------------------------------


class ActNorm(nn.Module):
    """Per-channel affine map y = (x + bias) * exp(log_scale), set from the first training batch.

    Data-dependent init (Glow): the first forward in training mode sets bias = -mean and
    log_scale = -log std per channel of that batch, so its outputs have zero mean and unit
    variance per channel; the buffer `initialized` then records it, and since it is saved with
    the weights, neither resuming nor loading a state dict initialises again. A batch with a
    single value per channel has no spread to measure, so it leaves the layer as it is.
    log |det| = sum(log_scale) for each spatial position.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(channels))
        self.log_scale = nn.Parameter(torch.zeros(channels))
        self.register_buffer("initialized", torch.tensor(False))

    def _params(self, x: Tensor) -> tuple[Tensor, Tensor]:
        shape = (1, -1) + (1,) * (x.ndim - 2)  # (1, C) or (1, C, 1, 1)
        return self.bias.view(shape), self.log_scale.view(shape)

    @torch.no_grad()
    def initialize(self, x: Tensor) -> None:
        """Set bias and log_scale from batch x (B, C, ...) and mark the layer initialised."""
        values = x.transpose(0, 1).reshape(x.shape[1], -1)  # (C, B·H·W)
        if values.shape[1] < 2:
            return
        self.bias.copy_(-values.mean(1))
        # A floor on std keeps a constant channel (a blank border) from an infinite scale.
        self.log_scale.copy_(-values.std(1, correction=0).clamp_min(1e-6).log())
        self.initialized.fill_(True)

    def forward(self, x: Tensor, logdets: list[Tensor]) -> Tensor:
        """Map x (B, C, ...) to y of the same shape; append log |det| (B,) to `logdets`."""
        if self.training and not self.initialized:
            self.initialize(x)
        bias, log_scale = self._params(x)
        positions = math.prod(x.shape[2:])  # H·W for images, 1 for vectors
        logdets.append((self.log_scale.sum() * positions).expand(x.shape[0]))
        return (x + bias) * log_scale.exp()

    def inverse(self, y: Tensor) -> Tensor:
        """Undo the map: x = y * exp(-log_scale) - bias."""
        bias, log_scale = self._params(y)
        return y * (-log_scale).exp() - bias


class ResidualBlock(nn.Module):
    """h + layer2(silu(layer1(silu(h)))), with 3x3 convolutions (images) or linear layers."""

    def __init__(self, width: int, image: bool) -> None:
        super().__init__()
        make = (lambda: nn.Conv2d(width, width, 3, padding=1)) if image else nn.Linear
        self.layer1 = make() if image else make(width, width)
        self.layer2 = make() if image else make(width, width)

    def forward(self, h: Tensor) -> Tensor:
        """Map (B, D) or (B, D, H, W) to the same shape."""
        return h + self.layer2(F.silu(self.layer1(F.silu(h))))


class CouplingNet(nn.Module):
    """The (s, t) network of a coupling: a small ResNet, convolutional for images, else an MLP.

    Reads the masked input (B, C, ...) and gives (B, 2C, ...): raw log-scales, then shifts. A
    conditional net adds a class embedding after its stem; row `num_classes` of the table
    stands for "no label" (y=None, and the labels hidden by `label_dropout` in training).
    """

    def __init__(self, channels: int, config: FlowConfig, image: bool) -> None:
        super().__init__()
        width = config.hidden_dim
        if image:  # 3x3 convolutions, zero-padded: a pixel's (s, t) reads its neighbours
            self.stem: nn.Module = nn.Conv2d(channels, width, 3, padding=1)
            self.head: nn.Module = nn.Conv2d(width, 2 * channels, 3, padding=1)
        else:
            self.stem = nn.Linear(channels, width)
            self.head = nn.Linear(width, 2 * channels)
        self.embed = nn.Embedding(config.num_classes + 1, width) if config.conditional else None
        self.blocks = nn.Sequential(
            *(ResidualBlock(width, image) for _ in range(config.num_layers))
        )
        with torch.no_grad():
            self.head.weight.mul_(HEAD_INIT_SCALE)
            self.head.bias.zero_()

    def forward(self, x: Tensor, label: Tensor | None) -> Tensor:
        """Map x (B, C, ...) and label (B,) or None to (B, 2C, ...)."""
        h = self.stem(x)  # (B, hidden_dim, ...)
        if self.embed is not None and label is not None:
            e = self.embed(label)  # (B, hidden_dim)
            h = h + e.view(*e.shape, *(1,) * (h.ndim - 2))  # broadcast over H×W
        return self.head(F.silu(self.blocks(h)))


class AffineCoupling(nn.Module):
    """y = b * x + (1 - b) * (x * exp(s) + t), (s, t) = net(b * x), |s| < LOG_SCALE_BOUND.

    The mask b (1 keeps an entry) is a buffer of shape (1, D), (1, 1, H, W) or (1, C, 1, 1),
    rebuilt from the config, so it is not saved with the weights.
    """

    def __init__(self, mask: Tensor, net: CouplingNet) -> None:
        super().__init__()
        self.net = net
        self.register_buffer("mask", mask, persistent=False)

    def scale_and_shift(self, kept: Tensor, label: Tensor | None) -> tuple[Tensor, Tensor]:
        """(s, t) from the kept entries, both zero where the mask keeps x as it is."""
        # In x's dtype: under autocast the net may answer in half precision, but the sums of
        # log-scales over thousands of entries and the exact inverse need x's own.
        raw, t = self.net(kept, label).to(kept.dtype).tensor_split(2, dim=1)  # (B, C, ...) each
        free = 1 - self.mask
        # s = S tanh(raw / S): slope 1 at 0, and |s| < S however large raw grows
        s = LOG_SCALE_BOUND * torch.tanh(raw / LOG_SCALE_BOUND)
        return s * free, t * free

    def forward(self, x: Tensor, label: Tensor | None, logdets: list[Tensor]) -> Tensor:
        """Map x to y of the same shape; append log |det| (B,) = sum of s to `logdets`."""
        s, t = self.scale_and_shift(x * self.mask, label)
        logdets.append(s.flatten(1).sum(1))
        return x * s.exp() + t

    def inverse(self, y: Tensor, label: Tensor | None) -> Tensor:
        """Undo the map: x = (y - t) * exp(-s), with s and t from the kept entries of y (= x's)."""
        s, t = self.scale_and_shift(y * self.mask, label)
        return (y - t) * (-s).exp()


class FlowStep(nn.Module):
    """One step of a flow: ActNorm, then an affine coupling."""

    def __init__(self, channels: int, coupling: AffineCoupling) -> None:
        super().__init__()
        self.norm = ActNorm(channels)
        self.coupling = coupling

    def forward(self, x: Tensor, label: Tensor | None, logdets: list[Tensor]) -> Tensor:
        """Map x to y of the same shape; append the log |det| of both parts to `logdets`."""
        return self.coupling(self.norm(x, logdets), label, logdets)

    def inverse(self, y: Tensor, label: Tensor | None) -> Tensor:
        """Undo the coupling, then the ActNorm."""
        return self.norm.inverse(self.coupling.inverse(y, label))


class Stage(nn.Module):
    """Steps run in order; their masks alternate, so together they transform every entry."""

    def __init__(self, channels: int, masks: list[Tensor], config: FlowConfig, image: bool):
        super().__init__()
        self.steps = nn.ModuleList(
            FlowStep(channels, AffineCoupling(mask, CouplingNet(channels, config, image)))
            for mask in masks
        )

    def forward(self, x: Tensor, label: Tensor | None, logdets: list[Tensor]) -> Tensor:
        """Map x to y of the same shape; each step appends its log |det| to `logdets`."""
        for step in self.steps:
            x = step(x, label, logdets)
        return x

    def inverse(self, y: Tensor, label: Tensor | None) -> Tensor:
        """Undo the steps, last first."""
        for step in reversed(self.steps):
            y = step.inverse(y, label)
        return y


def checkerboard_masks(size: int, count: int) -> list[Tensor]:
    """`count` masks (1, 1, size, size) keeping pixels with (i + j) even, then odd, and so on."""
    i = torch.arange(size)
    even = ((i[:, None] + i[None, :]) % 2 == 0).float()  # (H, W)
    return [(even if k % 2 == 0 else 1 - even).view(1, 1, size, size) for k in range(count)]


def channel_masks(channels: int, count: int) -> list[Tensor]:
    """`count` masks (1, C, 1, 1) keeping the first half of the channels, then the second."""
    first = (torch.arange(channels) < channels // 2).float()
    return [(first if k % 2 == 0 else 1 - first).view(1, channels, 1, 1) for k in range(count)]


def vector_masks(width: int, count: int) -> list[Tensor]:
    """`count` masks (1, D) keeping the first half, the second half, even, odd entries, again.

    Halves alone would only ever condition an entry on the other half; even and odd entries
    mix the halves (for D = 2 all four patterns are the same alternation).
    """
    i = torch.arange(width)
    first, even = (i < width // 2).float(), (i % 2 == 0).float()
    patterns = [first, 1 - first, even, 1 - even]
    return [patterns[k % 4].view(1, width) for k in range(count)]


def squeeze(x: Tensor) -> Tensor:
    """Space to depth: each 2x2 block of pixels to 4 channels, (B, C, H, W) -> (B, 4C, H/2, W/2).

    The channel order of `F.pixel_unshuffle` (channel c's four pixels side by side), written
    out because torch 2.x gives an empty batch back unchanged from it.
    """
    b, c, h, w = x.shape
    x = x.view(b, c, h // 2, 2, w // 2, 2)  # (B, C, H/2, row in block, W/2, column in block)
    return x.permute(0, 1, 3, 5, 2, 4).reshape(b, 4 * c, h // 2, w // 2)


def unsqueeze(x: Tensor) -> Tensor:
    """Depth to space, the inverse of `squeeze`: (B, 4C, H, W) -> (B, C, 2H, 2W)."""
    b, c4, h, w = x.shape
    x = x.view(b, c4 // 4, 2, 2, h, w)  # (B, C, row in block, column in block, H, W)
    return x.permute(0, 1, 4, 2, 5, 3).reshape(b, c4 // 4, 2 * h, 2 * w)


class Scale(nn.Module):
    """One level: checkerboard couplings at H×W, squeeze, channel couplings at H/2×W/2."""

    def __init__(self, channels: int, size: int, config: FlowConfig) -> None:
        super().__init__()
        n = config.num_couplings
        self.checkerboard = Stage(channels, checkerboard_masks(size, n), config, image=True)
        self.channelwise = Stage(4 * channels, channel_masks(4 * channels, n), config, image=True)

    def forward(
        self, x: Tensor, label: Tensor | None, logdets: list[Tensor]
    ) -> tuple[Tensor, Tensor]:
        """Map x (B, C, H, W) to (h, z_out), each (B, 2C, H/2, W/2); z_out is final."""
        h = squeeze(self.checkerboard(x, label, logdets))  # (B, 4C, H/2, W/2)
        h = self.channelwise(h, label, logdets)
        h, z_out = h.tensor_split(2, dim=1)  # go on with the first half, factor out the second
        return h, z_out

    def inverse(self, h: Tensor, z_out: Tensor, label: Tensor | None) -> Tensor:
        """Map (h, z_out), each (B, 2C, H/2, W/2), back to x (B, C, H, W)."""
        h = self.channelwise.inverse(torch.cat([h, z_out], dim=1), label)  # (B, 4C, H/2, W/2)
        return self.checkerboard.inverse(unsqueeze(h), label)


# ---------------------------------------------------------------------------------------------
# The models.
# ---------------------------------------------------------------------------------------------


class Flow(Model):
    """A normalizing flow: exact log-density, sampling and inversion over `_transform`.

    Subclasses set `shape` (one example's) and implement `_transform(x, label, logdets) -> z`
    (appending each step's log |det| (B,) to the list `logdets`) and `_untransform(z, label)
    -> x`; this class checks inputs, turns labels into the nets' class indices, sums the log
    |det| terms and adds the standard normal base.
    """

    invariants = frozenset({"batch_independent", "invertible"})
    outputs = ("generative",)
    trains_for = "generation"
    what = ""  # "vectors" or "images", for messages

    def __init__(self, config: FlowConfig) -> None:
        super().__init__(config)
        if config.conditional and config.num_classes < 1:
            raise ValueError(
                f"{type(self).__name__} is conditional, so FlowConfig.num_classes must be at "
                f"least 1; got {config.num_classes}; set it, or conditional=False."
            )
        self.shape: tuple[int, ...] = ()

    @property
    def dims(self) -> int:
        """Entries of one example: the D of "nats per dimension"."""
        return math.prod(self.shape)

    def _transform(self, x: Tensor, label: Tensor | None, logdets: list[Tensor]) -> Tensor:
        raise NotImplementedError

    def _untransform(self, z: Tensor, label: Tensor | None) -> Tensor:
        raise NotImplementedError

    # -- checks -------------------------------------------------------------------------------
    def _check(self, x: Any, name: str) -> None:
        letters = "B D" if len(self.shape) == 1 else "B C H W"
        sizes = dict(zip(letters.split()[1:], self.shape, strict=True))
        check_shape(
            x,
            letters,
            owner=self.name,
            name=name,
            what=self.what if name == "x" else "latents",
            like=next(self.parameters()),
            **sizes,
        )

    def _labels(self, y: Any, batch: int) -> Tensor | None:
        """The nets' class indices (B,), or None for an unconditional flow (y is ignored)."""
        if not self.config.conditional:
            return None
        device = next(self.parameters()).device
        if y is None:  # the "no label" row
            return torch.full((batch,), self.config.num_classes, dtype=torch.long, device=device)
        if not isinstance(y, Tensor) or y.dtype not in (torch.int64, torch.int32):
            given = f"dtype {y.dtype}" if isinstance(y, Tensor) else type(y).__name__
            raise TypeError(
                f"{self.name} expects class labels y as an int64 tensor of shape ({batch},); "
                f"got {given}."
            )
        if tuple(y.shape) != (batch,):
            raise ValueError(
                f"{self.name} expects class labels y of shape ({batch},), one per example; "
                f"got {tuple(y.shape)}."
            )
        check_device(y, device, owner=self.name, name="y", what="class labels")
        if y.numel() and (int(y.min()) < 0 or int(y.max()) >= self.config.num_classes):
            raise ValueError(
                f"{self.name} expects class labels y in [0, {self.config.num_classes}); got "
                f"labels from {int(y.min())} to {int(y.max())}."
            )
        return y.long()

    # -- the map and its inverse --------------------------------------------------------------
    def forward(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        """Map x (B, *shape) to its latent z = f(x) of the same shape (deterministic)."""
        self._check(x, "x")
        return self._transform(x, self._labels(y, x.shape[0]), [])

    def _transform_and_logdet(self, x: Tensor, label: Tensor | None) -> tuple[Tensor, Tensor]:
        logdets: list[Tensor] = []
        z = self._transform(x, label, logdets)
        return z, torch.stack(logdets).sum(0)  # (steps, B) -> (B,)

    def forward_and_logdet(self, x: Tensor, y: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Map x (B, *shape) to (z (B, *shape), log |det df/dx| (B,)); y (B,) for conditional."""
        self._check(x, "x")
        return self._transform_and_logdet(x, self._labels(y, x.shape[0]))

    def inverse(self, z: Tensor, y: Tensor | None = None) -> Tensor:
        """Map latents z (B, *shape) back to x = f^-1(z) (B, *shape)."""
        self._check(z, "z")
        return self._untransform(z, self._labels(y, z.shape[0]))

    # -- density and sampling -----------------------------------------------------------------
    def _log_prob(self, x: Tensor, label: Tensor | None) -> Tensor:
        z, logdet = self._transform_and_logdet(x, label)
        # log N(z; 0, I) = -1/2 sum(z^2 + log 2 pi)
        log_base = -0.5 * (z.square() + LOG_2PI).flatten(1).sum(1)
        return log_base + logdet

    def log_prob(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        """Exact log-density (B,) in nats of continuous x (B, *shape) in model space."""
        self._check(x, "x")
        return self._log_prob(x, self._labels(y, x.shape[0]))

    def loss(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        """Mean negative log-density per dimension, in nats: -mean(log p(x)) / dims.

        A conditional flow in training hides each label with probability `label_dropout`
        (the "no label" row), so it also learns the density of x alone, for y=None.
        """
        self._check(x, "x")
        label = self._labels(y, x.shape[0])
        if label is not None and self.training and self.config.label_dropout > 0:
            hide = torch.rand(label.shape, device=label.device) < self.config.label_dropout
            label = label.masked_fill(hide, self.config.num_classes)
        return -self._log_prob(x, label).mean() / self.dims

    @torch.no_grad()
    def sample(
        self,
        n: int,
        y: Tensor | None = None,
        *,
        generator: torch.Generator | None = None,
        temperature: float = 1.0,
    ) -> Tensor:
        """Draw n samples (n, *shape) in model space: x = f^-1(temperature * z), z ~ N(0, I).

        Latents are drawn on the generator's device (the CPU by default), then moved to the
        model's, so one seed gives the same samples on any device. Temperatures below 1 trade
        diversity for typical samples; 0 maps the mode of the base density.
        """
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise ValueError(f"{self.name} expects n, the number of samples, >= 0; got {n!r}.")
        if isinstance(temperature, bool) or not isinstance(temperature, int | float):
            raise TypeError(f"{self.name} expects temperature as a float; got {temperature!r}.")
        if not temperature >= 0:
            raise ValueError(f"{self.name} expects temperature >= 0; got {temperature}.")
        param = next(self.parameters())
        device = generator.device if generator is not None else torch.device("cpu")
        z = torch.randn((n, *self.shape), generator=generator, device=device, dtype=param.dtype)
        z = (z * temperature).to(param.device)
        return self._untransform(z, self._labels(y, n))


class VectorRealNVP(Flow):
    """RealNVP (Dinh et al., 2017) for vectors: MLP couplings over alternating masks."""

    reads = "vectors"
    what = "vectors"

    def __init__(self, config: FlowConfig) -> None:
        super().__init__(config)
        if config.image_size != 0:
            raise ValueError(
                f"VectorRealNVP reads vectors, so FlowConfig.image_size must be 0; got "
                f"{config.image_size}; use RealNVP ('realnvp') for images."
            )
        width = config.in_channels
        self.shape = (width,)
        self.flow = Stage(width, vector_masks(width, config.num_couplings), config, image=False)

    @property
    def input_description(self) -> str:
        """What forward expects."""
        return f"vectors (B, {self.config.in_channels}), standardised"

    def example_input(self, batch_size: int = 2) -> Tensor:
        """Random vectors of shape (batch_size, in_channels)."""
        return torch.randn(batch_size, self.config.in_channels)

    @classmethod
    def config_for_data(cls, config: FlowConfig, spec: DataSpec) -> FlowConfig:
        """Examples (D,) set in_channels = D; a conditional flow takes the class count."""
        cls.refuse_shape(spec, "D")
        cls.refuse_output(spec)
        classes = spec.num_outputs if config.conditional else 0
        return replace(config, in_channels=spec.shape[0], image_size=0, num_classes=classes)

    def _transform(self, x: Tensor, label: Tensor | None, logdets: list[Tensor]) -> Tensor:
        return self.flow(x, label, logdets)

    def _untransform(self, z: Tensor, label: Tensor | None) -> Tensor:
        return self.flow.inverse(z, label)


class RealNVP(Flow):
    """RealNVP (Dinh et al., 2017) for images: multi-scale, checkerboard and channel couplings."""

    reads = "images"
    what = "images"

    def __init__(self, config: FlowConfig) -> None:
        super().__init__(config)
        if config.image_size < 1:
            raise ValueError(
                f"RealNVP reads images, so FlowConfig.image_size (H = W) must be at least 1; "
                f"got {config.image_size}; use VectorRealNVP ('realnvp-2d') for vectors."
            )
        channels, size = config.in_channels, config.image_size
        self.shape = (channels, size, size)
        scales = []
        for _ in range(config.num_scales):
            scales.append(Scale(channels, size, config))
            channels, size = 2 * channels, size // 2  # squeeze (x4), factor out half (/2)
        self.scales = nn.ModuleList(scales)
        self.final = Stage(
            channels, checkerboard_masks(size, config.num_couplings), config, image=True
        )

    @property
    def input_description(self) -> str:
        """What forward expects."""
        c, s = self.config.in_channels, self.config.image_size
        return f"images (B, {c}, {s}, {s}) in [-1, 1]"

    def example_input(self, batch_size: int = 2) -> Tensor:
        """Random images of shape (batch_size, in_channels, image_size, image_size)."""
        c, s = self.config.in_channels, self.config.image_size
        return torch.randn(batch_size, c, s, s)

    @classmethod
    def config_for_data(cls, config: FlowConfig, spec: DataSpec) -> FlowConfig:
        """Square examples (C, H, H) set in_channels and image_size; conditional: classes too."""
        return cls.square_image_fields(config, spec)

    def _transform(self, x: Tensor, label: Tensor | None, logdets: list[Tensor]) -> Tensor:
        # 1. each level: couplings, squeeze, couplings, factor out half the channels
        factored = []
        h = x
        for scale in self.scales:
            h, z_out = scale(h, label, logdets)  # (B, 2C, H/2, W/2) each: go on with h
            factored.append(z_out)
        # 2. the last stage, at the smallest size
        h = self.final(h, label, logdets)
        # 3. put the factored-out halves back and undo the squeezes: z has the shape of x
        for z_out in reversed(factored):
            h = unsqueeze(torch.cat([h, z_out], dim=1))  # (B, C, H, W) of the level above
        return h

    def _untransform(self, z: Tensor, label: Tensor | None) -> Tensor:
        # 1. take z apart as _transform put it together
        factored = []
        h = z
        for _ in self.scales:
            h, z_out = squeeze(h).tensor_split(2, dim=1)  # (B, 2C, H/2, W/2) each
            factored.append(z_out)
        # 2. undo the last stage, then each level, deepest first
        h = self.final.inverse(h, label)
        for scale, z_out in zip(reversed(self.scales), reversed(factored), strict=True):
            h = scale.inverse(h, z_out, label)
        return h


# Two moons and other 2-D toy sets: 8 couplings of 2-block MLPs.
register("realnvp-2d", FlowConfig(in_channels=2, image_size=0, num_couplings=8), VectorRealNVP)
# Digits (8x8) and Fashion-MNIST (28x28): two levels of 3 + 3 couplings and 3 more at the end,
# as in the paper, with nets of one residual block 32 wide (set image_size from the data).
register("realnvp", FlowConfig(hidden_dim=32, num_layers=1, num_couplings=3), RealNVP)
# The same, class-conditional (classes set from the data); y=None is the "no label" density.
register(
    "realnvp-cond",
    FlowConfig(hidden_dim=32, num_layers=1, num_couplings=3, conditional=True, num_classes=10),
    RealNVP,
)
