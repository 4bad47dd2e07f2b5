"""Convolutional variational autoencoder (see docs/guide/vae.md).

Letters: B batch, C channels, H×W spatial, P the padded H, L latent, K classes.

Kingma & Welling, "Auto-Encoding Variational Bayes" (2014). An encoder maps an image x to a
diagonal Gaussian posterior q(z|x) = N(mu, diag(exp(logvar))) over a latent z of `latent_dim`
numbers; a decoder maps z to a distribution p(x|z) over images; the prior is p(z) = N(0, I).
Training maximises the evidence lower bound (ELBO), a lower bound of log p(x):

    ELBO(x) = E_q[log p(x|z)] - KL(q(z|x) || p(z))  <=  log p(x)

with one reparameterised draw z = mu + exp(logvar / 2) * eps, eps ~ N(0, I), so gradients
reach mu and logvar through z. β-VAE (Higgins et al., 2017) weighs the KL term by `beta`; only
the training loss uses it: `elbo` is always the β = 1 bound.

Images live in model space, [-1, 1] (models/base.py), of shape (C, H, W) with H = W =
`image_size`. The encoder pads H×W to a multiple of 2^num_layers (8x8 digits and 28x28
Fashion-MNIST need none), halves it `num_layers` times down to a b×b bottleneck, and the
decoder doubles it back and crops the padding off, so `decode` returns exactly H×W.

Two decoders, both proper densities on continuous x, so the generation task can turn
`elbo` into bits per dimension of its dequantised images:

- "gaussian": p(x|z) = N(mean(z), diag(exp(logvar(z)))), a mean and a log-variance per pixel
  and per example, both predicted by the decoder. The log-variance is softly held in
  [MIN_LOGVAR, MAX_LOGVAR]: its floor is about the variance of the dequantisation noise of
  8-bit images, so the density cannot collapse onto a pixel value.
- "bernoulli": the continuous Bernoulli of Loaiza-Ganem & Cunningham (2019) on pixels
  p = (x + 1) / 2 in [0, 1]: log p(p|λ) = p log λ + (1 - p) log(1 - λ) + log C(λ), where C(λ)
  normalises it into a density for grey pixels as well as for black and white ones. The plain
  Bernoulli is a probability mass on {0, 1} only; on grey pixels it is no density at all
  (its "log-likelihood" is not comparable across models), so it is not offered. Its mean,
  not λ, is the decoded image. x must lie in [-1, 1].

Both densities are over model space: pixels in [0, 1] map onto [-1, 1] with Jacobian 2 per
dimension, so the Bernoulli case subtracts log 2 per dimension.

Class conditioning (`conditional`): the label's one-hot vector enters the encoder as K
constant channels beside the image and the decoder beside z. With `label_dropout` > 0,
training replaces that share of the labels with the all-zero vector, which then means "class
unknown": y=None uses it. A conditional model trained without label dropout requires y.

For a latent-diffusion model on top: `encode` gives (mu, logvar) of the latent and `decode`
the mean image of a latent, with no sampling hidden in either.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import pairwise
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fieldguide.layers.shapes import check_device, check_shape
from fieldguide.models.base import DataSpec, Model
from fieldguide.models.registry import register

DECODERS = ("gaussian", "bernoulli")
MAX_BOTTLENECK = 16  # the flattened bottleneck feeds a Linear: b*b*width inputs
# Soft bounds of the Gaussian decoder's log-variance. Dequantised 8-bit pixels spread
# uniformly over bins 2/256 wide in model space: standard deviation (2/256)/sqrt(12) = 0.0023,
# log-variance -12.2. A floor near it lets a certain pixel be modelled about as well as the
# data allows; the ceiling (std 2.7) is wider than the whole range of x.
MIN_LOGVAR = -12.0
MAX_LOGVAR = 2.0


@dataclass(frozen=True)
class VAEConfig:
    """Sizes of a convolutional VAE; `create_model` takes any field as an override."""

    in_channels: int = 1
    image_size: int = 28  # H = W; from 2^num_layers up to 16 * 2^num_layers pixels
    latent_dim: int = 16  # numbers in z
    hidden_dim: int = 32  # width of the first level; each halving of H×W doubles it
    num_layers: int = 2  # stride-2 halvings of H×W in the encoder, doublings in the decoder
    decoder: Literal["gaussian", "bernoulli"] = "gaussian"  # p(x|z); see the module docstring
    beta: float = 1.0  # weight of the KL term in the training loss (β-VAE); elbo ignores it
    conditional: bool = False  # condition encoder and decoder on the class label
    num_classes: int = 0  # classes to condition on, set from the data; 0 unless conditional
    label_dropout: float = 0.0  # share of training labels replaced by "class unknown"

    def __post_init__(self) -> None:
        for field in ("in_channels", "latent_dim", "hidden_dim", "num_layers"):
            if getattr(self, field) < 1:
                raise ValueError(
                    f"VAEConfig.{field} must be at least 1, got {getattr(self, field)}."
                )
        low, high = 2**self.num_layers, MAX_BOTTLENECK * 2**self.num_layers
        if not low <= self.image_size <= high:
            raise ValueError(
                f"VAEConfig.image_size must be from {low} to {high} pixels (H = W) with "
                f"num_layers={self.num_layers} halvings, got {self.image_size}; change "
                f"num_layers to fit the images, or resize them."
            )
        if self.decoder not in DECODERS:
            raise ValueError(f"VAEConfig.decoder must be one of {DECODERS}, got {self.decoder!r}.")
        if not (math.isfinite(self.beta) and self.beta >= 0):
            raise ValueError(f"VAEConfig.beta must be a finite number >= 0, got {self.beta}.")
        if not 0 <= self.label_dropout < 1:
            raise ValueError(
                f"VAEConfig.label_dropout must be in [0, 1), got {self.label_dropout}."
            )
        if self.num_classes < 0:
            raise ValueError(f"VAEConfig.num_classes must be >= 0, got {self.num_classes}.")

    @property
    def padded_size(self) -> int:
        """image_size rounded up to a multiple of 2^num_layers."""
        step = 2**self.num_layers
        return -(-self.image_size // step) * step

    @property
    def widths(self) -> list[int]:
        """Channels at each level, from full resolution (0) down to the bottleneck."""
        return [self.hidden_dim * 2**i for i in range(self.num_layers + 1)]


# ---------------------------------------------------------------------------------------------
# The two terms of the ELBO that do not involve the networks.
# ---------------------------------------------------------------------------------------------


def reparameterise(mu: Tensor, logvar: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """Draw z ~ N(mu, diag(exp(logvar))) as a differentiable function of mu and logvar.

    The noise comes from `generator` (on its own device, then moved) or torch's global one.
    """
    # z = mu + sigma * eps: the randomness sits in eps, so dz/dmu = 1, dz/dlogvar = sigma*eps/2
    device = generator.device if generator is not None else mu.device
    eps = torch.randn(mu.shape, generator=generator, device=device, dtype=mu.dtype)
    return mu + torch.exp(0.5 * logvar) * eps.to(mu.device)


def gaussian_kl(mu: Tensor, logvar: Tensor) -> Tensor:
    """KL(N(mu, diag(exp(logvar))) || N(0, I)) of each row, (B, L) -> (B,), in nats."""
    # KL = 1/2 sum_j (mu_j^2 + sigma_j^2 - 1 - log sigma_j^2)
    return 0.5 * (mu.pow(2) + logvar.exp() - 1 - logvar).sum(-1)


def soft_clamp(x: Tensor, low: float, high: float) -> Tensor:
    """Squash x into [low, high] smoothly: about x well inside, never a flat zero gradient."""
    # softplus(t) ~ t for large t and ~ 0 for very negative t: each side bends, the other stays
    return high - F.softplus(high - (low + F.softplus(x - low)))


def gaussian_log_prob(z: Tensor, mu: Tensor, logvar: Tensor) -> Tensor:
    """The Gaussian log-density log N(z; mu, diag(exp(logvar))), summed over the last axis."""
    return -0.5 * (math.log(2 * math.pi) + logvar + (z - mu).pow(2) / logvar.exp()).sum(-1)


# ---------------------------------------------------------------------------------------------
# Networks
# ---------------------------------------------------------------------------------------------


class Encoder(nn.Module):
    """Image (and one-hot class channels) -> (mu, logvar) of q(z|x)."""

    def __init__(self, config: VAEConfig, classes: int) -> None:
        super().__init__()
        widths, side = config.widths, config.padded_size >> config.num_layers
        self.stem = nn.Conv2d(config.in_channels + classes, widths[0], 3, padding=1)
        # 4x4 kernels with stride 2 and padding 1 halve an even size exactly
        self.down = nn.ModuleList(
            nn.Conv2d(w_in, w_out, 4, stride=2, padding=1) for w_in, w_out in pairwise(widths)
        )
        self.to_posterior = nn.Linear(widths[-1] * side * side, 2 * config.latent_dim)

    def forward(self, x: Tensor, onehot: Tensor | None) -> tuple[Tensor, Tensor]:
        """Map padded x (B, C, P, P) and onehot (B, K) or None to mu, logvar, each (B, L)."""
        if onehot is not None:
            planes = onehot[:, :, None, None].expand(-1, -1, *x.shape[2:])  # (B, K, P, P)
            x = torch.cat([x, planes], dim=1)
        h = F.silu(self.stem(x))
        for conv in self.down:
            h = F.silu(conv(h))  # (B, width, P / 2^i, P / 2^i)
        mu, logvar = self.to_posterior(h.flatten(1)).chunk(2, dim=-1)  # (B, L) each
        return mu, logvar


class Decoder(nn.Module):
    """z (and a one-hot class) -> per-pixel parameters of p(x|z) at the padded size."""

    def __init__(self, config: VAEConfig, classes: int) -> None:
        super().__init__()
        widths = config.widths
        self.side, self.width = config.padded_size >> config.num_layers, widths[-1]
        self.from_latent = nn.Linear(config.latent_dim + classes, widths[-1] * self.side**2)
        # 4x4 transposed convolutions, stride 2, padding 1: out = 2 * in exactly
        self.up = nn.ModuleList(
            nn.ConvTranspose2d(w_in, w_out, 4, stride=2, padding=1)
            for w_in, w_out in zip(widths[:0:-1], widths[-2::-1], strict=True)
        )
        per_pixel = 2 if config.decoder == "gaussian" else 1  # mean and log-variance, or logit
        self.head = nn.Conv2d(widths[0], per_pixel * config.in_channels, 3, padding=1)

    def forward(self, z: Tensor, onehot: Tensor | None) -> Tensor:
        """Map z (B, L) and onehot (B, K) or None to parameters (B, C or 2C, P, P)."""
        if onehot is not None:
            z = torch.cat([z, onehot], dim=-1)
        h = F.silu(self.from_latent(z))
        h = h.view(z.shape[0], self.width, self.side, self.side)  # (B, width, b, b)
        for conv in self.up:
            h = F.silu(conv(h))  # doubles H×W
        return self.head(h)


# ---------------------------------------------------------------------------------------------
# Model
# ---------------------------------------------------------------------------------------------


class VAE(Model):
    """Convolutional VAE (Kingma & Welling, 2014): ELBO, importance-sampled log p(x), samples.

    `forward(x)` is the deterministic reconstruction decode(mu(x)); training calls `loss`.
    """

    invariants = frozenset({"batch_independent"})
    reads = "images"
    outputs = ("generative",)
    trains_for = "generation"

    def __init__(self, config: VAEConfig) -> None:
        super().__init__(config)
        if config.conditional and config.num_classes < 1:
            raise ValueError(
                f"VAEConfig.num_classes must be at least 1 for a conditional VAE, got "
                f"{config.num_classes}; train it on labelled data, which sets it."
            )
        if not config.conditional and config.num_classes:
            raise ValueError(
                f"VAEConfig.num_classes must be 0 unless conditional=True, got "
                f"{config.num_classes}."
            )
        classes = config.num_classes if config.conditional else 0
        self.encoder = Encoder(config, classes)
        self.decoder = Decoder(config, classes)

    @property
    def input_description(self) -> str:
        """What forward expects."""
        s = self.config.image_size
        labels = ", labels y (B,)" if self.config.conditional else ""
        return f"images (B, {self.config.in_channels}, {s}, {s}) in [-1, 1]{labels}"

    def example_input(self, batch_size: int = 2) -> Tensor:
        """Random images in [-1, 1] of shape (batch_size, C, image_size, image_size)."""
        s = self.config.image_size
        return torch.rand(batch_size, self.config.in_channels, s, s) * 2 - 1

    @classmethod
    def config_for_data(cls, config: VAEConfig, spec: DataSpec) -> VAEConfig:
        """Examples (C, H, W) with H = W set in_channels and image_size; classes if conditional."""
        return cls.square_image_fields(config, spec)

    # -- input checks --------------------------------------------------------------------------
    def _check_x(self, x: object) -> Tensor:
        s = self.config.image_size
        check_shape(
            x,
            "B C H W",
            C=self.config.in_channels,
            H=s,
            W=s,
            owner=self.name,
            name="x",
            what="images",
            like=self.decoder.head.weight,
        )
        return x  # type: ignore[return-value]

    def _onehot(self, y: object, batch: int, *, train: bool = False) -> Tensor | None:
        """The class input (B, K): one-hot rows, zero rows for "class unknown"; None if unused."""
        config = self.config
        if not config.conditional:
            return None  # an unconditional model ignores labels, as the task passes them
        weight = self.decoder.head.weight
        if y is None:
            if config.label_dropout == 0:
                raise ValueError(
                    f"{self.name} is class-conditional and expects labels y of shape "
                    f"({batch},); got None, and it trains without label_dropout, so it has "
                    f"no unconditioned mode."
                )
            return weight.new_zeros(batch, config.num_classes)
        if not isinstance(y, Tensor) or y.dtype not in (torch.int64, torch.int32):
            kind = f"dtype {y.dtype}" if isinstance(y, Tensor) else type(y).__name__
            raise TypeError(
                f"{self.name} expects labels y as an int64 tensor of shape ({batch},); got {kind}."
            )
        if tuple(y.shape) != (batch,):
            raise ValueError(
                f"{self.name} expects labels y of shape ({batch},), one per example; got "
                f"{tuple(y.shape)}."
            )
        check_device(y, weight.device, owner=self.name, name="y", what="labels")
        if y.numel() and (int(y.min()) < 0 or int(y.max()) >= config.num_classes):
            raise ValueError(
                f"{self.name} expects labels y in [0, {config.num_classes}); got labels from "
                f"{int(y.min())} to {int(y.max())}."
            )
        onehot = F.one_hot(y.long(), config.num_classes).to(weight.dtype)
        if train and config.label_dropout > 0:
            keep = torch.rand(batch, device=y.device) >= config.label_dropout
            onehot = onehot * keep[:, None].to(onehot.dtype)  # dropped rows: class unknown
        return onehot

    # -- the two halves --------------------------------------------------------------------------
    def _pad(self, x: Tensor) -> Tensor:
        extra = self.config.padded_size - self.config.image_size
        if not extra:
            return x
        before = extra // 2
        return F.pad(x, (before, extra - before, before, extra - before))

    def _params(self, z: Tensor, onehot: Tensor | None) -> Tensor:
        """Decoder parameters cropped to H×W: (B, 2C, H, W) mean+logvar, or (B, C, H, W) logits."""
        out = self.decoder(z, onehot)
        start, s = (self.config.padded_size - self.config.image_size) // 2, self.config.image_size
        return out[:, :, start : start + s, start : start + s]

    def _mean(self, params: Tensor) -> Tensor:
        """The decoded image (the mean of p(x|z)) in model space."""
        if self.config.decoder == "gaussian":
            return params[:, : self.config.in_channels]
        pixels = torch.distributions.ContinuousBernoulli(logits=params, validate_args=False)
        return pixels.mean * 2 - 1

    def _log_px(self, x: Tensor, params: Tensor) -> Tensor:
        """The log-density log p(x|z) of each example (B,), nats, over model space."""
        if self.config.decoder == "gaussian":
            mean, raw = params.chunk(2, dim=1)
            logvar = soft_clamp(raw, MIN_LOGVAR, MAX_LOGVAR)
            log_p = -0.5 * (math.log(2 * math.pi) + logvar + (x - mean).pow(2) / logvar.exp())
        else:
            pixels = torch.distributions.ContinuousBernoulli(logits=params, validate_args=False)
            # x = 2p - 1 stretches [0, 1] onto [-1, 1]: p_x(x) = p_p((x + 1) / 2) / 2 per pixel
            log_p = pixels.log_prob((x + 1) / 2) - math.log(2)
        return log_p.flatten(1).sum(-1)

    def _check_range(self, x: Tensor) -> None:
        if self.config.decoder == "bernoulli" and x.numel():
            low, high = float(x.min()), float(x.max())
            if low < -1 or high > 1:  # NaN passes through: it gives NaN, as other models
                raise ValueError(
                    f"{self.name} has a continuous Bernoulli decoder and expects images x in "
                    f"[-1, 1]; got values from {low:.3g} to {high:.3g}."
                )

    def encode(self, x: Tensor, y: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """The posterior q(z|x): images x (B, C, H, W) -> mu, logvar, each (B, latent_dim)."""
        x = self._check_x(x)
        return self.encoder(self._pad(x), self._onehot(y, x.shape[0]))

    def decode(self, z: Tensor, y: Tensor | None = None) -> Tensor:
        """The mean image of p(x|z): z (B, latent_dim) -> (B, C, H, W) in model space."""
        check_shape(
            z,
            "B L",
            L=self.config.latent_dim,
            owner=self.name,
            name="z",
            what="latents",
            like=self.decoder.head.weight,
        )
        return self._mean(self._params(z, self._onehot(y, z.shape[0])))

    def decoder_log_prob(self, x: Tensor, z: Tensor, y: Tensor | None = None) -> Tensor:
        """The log-density log p(x|z) of each example (B,), nats: x (B, C, H, W), z (B, L)."""
        x = self._check_x(x)
        self._check_range(x)
        check_shape(
            z,
            "B L",
            L=self.config.latent_dim,
            owner=self.name,
            name="z",
            what="latents",
            like=self.decoder.head.weight,
        )
        return self._log_px(x, self._params(z, self._onehot(y, x.shape[0])))

    # -- the bound and the likelihood ----------------------------------------------------------
    def elbo_terms(
        self, x: Tensor, y: Tensor | None = None, *, generator: torch.Generator | None = None
    ) -> tuple[Tensor, Tensor]:
        """(log p(x|z) at one draw z ~ q(z|x), KL(q(z|x) || p(z))), each (B,) in nats."""
        return self._terms(x, y, generator, train=False)

    def _terms(
        self, x: Tensor, y: object, generator: torch.Generator | None, train: bool
    ) -> tuple[Tensor, Tensor]:
        x = self._check_x(x)
        self._check_range(x)
        onehot = self._onehot(y, x.shape[0], train=train)
        mu, logvar = self.encoder(self._pad(x), onehot)
        z = reparameterise(mu, logvar, generator)
        return self._log_px(x, self._params(z, onehot)), gaussian_kl(mu, logvar)

    def elbo(
        self, x: Tensor, y: Tensor | None = None, *, generator: torch.Generator | None = None
    ) -> Tensor:
        """A one-draw estimate of the ELBO of each image (B,), in nats; its mean is <= log p(x)."""
        log_px, kl = self._terms(x, y, generator, train=False)
        return log_px - kl

    def loss(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        """(-log p(x|z) + beta KL) averaged over the batch, divided by C*H*W: nats per dimension.

        With beta = 1 this is the negative ELBO per dimension. Labels are dropped at rate
        `label_dropout` in training mode.
        """
        log_px, kl = self._terms(x, y, None, train=self.training)
        dims = self.config.in_channels * self.config.image_size**2
        return (kl * self.config.beta - log_px).mean() / dims

    def log_prob_is(
        self,
        x: Tensor,
        y: Tensor | None = None,
        k: int = 64,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """Importance-sampled estimate of log p(x) of each image (B,), in nats (Burda et al.).

        log p(x) ~= logsumexp_j [log p(x|z_j) + log p(z_j) - log q(z_j|x)] - log k, with
        z_1..z_k ~ q(z|x). Its mean is a lower bound of log p(x) that rises with k, from the
        ELBO at k = 1 towards log p(x).
        """
        if not isinstance(k, int) or k < 1:
            raise ValueError(f"{self.name} expects k, the importance samples, >= 1; got {k!r}.")
        x = self._check_x(x)
        self._check_range(x)
        batch = x.shape[0]
        onehot = self._onehot(y, batch)
        mu, logvar = self.encoder(self._pad(x), onehot)
        chunk = max(1, 4096 // max(batch, 1))  # draws decoded at once, to bound memory
        log_w = []
        for start in range(0, k, chunk):
            j = min(chunk, k - start)
            mu_j, logvar_j = mu.repeat(j, 1), logvar.repeat(j, 1)  # (j*B, L), draw-major
            z = reparameterise(mu_j, logvar_j, generator)
            onehot_j = None if onehot is None else onehot.repeat(j, 1)
            log_px = self._log_px(x.repeat(j, 1, 1, 1), self._params(z, onehot_j))
            log_pz = gaussian_log_prob(z, torch.zeros_like(z), torch.zeros_like(z))
            log_qz = gaussian_log_prob(z, mu_j, logvar_j)
            log_w.append((log_px + log_pz - log_qz).view(j, batch))  # (j, B)
        return torch.logsumexp(torch.cat(log_w), dim=0) - math.log(k)

    # -- generation ----------------------------------------------------------------------------
    def sample(
        self,
        n: int,
        y: Tensor | None = None,
        *,
        generator: torch.Generator | None = None,
        temperature: float = 1.0,
    ) -> Tensor:
        """Draw n images (n, C, H, W) in model space: decoder means at z ~ N(0, temperature^2 I)."""
        if not isinstance(n, int) or n < 0:
            raise ValueError(f"{self.name} expects n, the number of samples, >= 0; got {n!r}.")
        if not (isinstance(temperature, int | float) and 0 <= temperature < math.inf):
            raise ValueError(
                f"{self.name} expects temperature >= 0 (1 samples the prior); got {temperature!r}."
            )
        zero = self.decoder.head.weight.new_zeros(n, self.config.latent_dim)
        z = reparameterise(zero, zero, generator) * temperature  # (n, L) ~ N(0, temperature^2 I)
        return self._mean(self._params(z, self._onehot(y, n)))

    def forward(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        """The reconstruction decode(mu(x)): images (B, C, H, W) -> (B, C, H, W), no sampling."""
        x = self._check_x(x)
        onehot = self._onehot(y, x.shape[0])
        mu, _ = self.encoder(self._pad(x), onehot)
        return self._mean(self._params(mu, onehot))


register("vae", VAEConfig(), VAE)
register("vae-cond", VAEConfig(conditional=True, num_classes=10, label_dropout=0.1), VAE)
