"""Denoising diffusion (docs/guide/diffusion.md).

Letters: B batch, C channels, H×W spatial, T diffusion steps.

Ho, Jain & Abbeel, "Denoising Diffusion Probabilistic Models" (2020); Song, Meng & Ermon,
"Denoising Diffusion Implicit Models" (2021); Nichol & Dhariwal, "Improved DDPM" (2021, the
cosine schedule); Salimans & Ho, "Progressive Distillation" (2022, v-prediction); Ho & Salimans,
"Classifier-Free Diffusion Guidance" (2022).

The forward process adds Gaussian noise in T steps, t = 0 .. T-1, with variances beta_t:

    q(x_t | x_{t-1}) = N(sqrt(1 - beta_t) x_{t-1}, beta_t I)
    q(x_t | x_0)     = N(sqrt(alpha_bar_t) x_0, (1 - alpha_bar_t) I)
    alpha_bar_t      = prod_{s<=t} alpha_s

with alpha_t = 1 - beta_t. A network learns to undo it: given x_t and t it predicts the noise eps
(or v = sqrt(alpha_bar_t) eps - sqrt(1 - alpha_bar_t) x_0), trained by plain mean squared error
at a uniformly drawn t. Sampling starts from pure noise and walks t down, each step through the
network's estimate of x_0: DDPM draws from the Gaussian posterior q(x_{t-1} | x_t, x_0); DDIM
takes the same marginals on any evenly spaced subset of steps, deterministic at eta = 0.

Three parts, each swappable: `Schedule` (parameter-free: betas, alpha_bar, the closed-form
forward process, the posterior, conversions between eps, x_0 and v); the sampler steps
(`ddim_sigma`, `ddim_mean`, and the posterior for DDPM); and the denoiser, a U-Net whose every
block reads a time embedding. The guide's sketch calls its U-Net on x_t alone, so the network
cannot know how much noise to remove (known-defects §10); here t enters every block, and a test
fails if the output does not change with t.

`Diffusion` is that time-conditioned U-Net (it subclasses `UNet`, reusing its levels, padding
and skips through `UNet.make_block` and `UNet.features(x, *cond)`) and owns the schedule, the
training loss, the samplers and an EMA of its weights. Subclassing rather than wrapping keeps the
U-Net's parts at the top of the model, so its depth-1 diagram shows the time embedding entering
every block.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call

from fieldguide.layers.shapes import check_device, check_shape
from fieldguide.models.base import DataSpec
from fieldguide.models.registry import register
from fieldguide.models.unet import MAX_DEPTH, ConvBlock, UNet, make_norm

SCHEDULES = ("linear", "cosine")
PREDICTIONS = ("eps", "v")
SAMPLERS = ("ddim", "ddpm")
MAX_STEPS = 10_000  # T; alpha_bar stays well inside (0, 1) in float64 up to here


# ---------------------------------------------------------------------------------------------
# Config.
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DiffusionConfig:
    """Sizes of a diffusion model and its process; `create_model` takes any field as an override."""

    in_channels: int = 1
    image_size: int = 8  # H = W of the samples; forward takes any size (the U-Net pads)
    conditional: bool = False  # class-conditional, with classifier-free guidance
    num_classes: int = 0  # set from the data when conditional, else 0; label num_classes = none
    hidden_dim: int = 32  # width of the first U-Net level; the time embedding is 4x wider
    depth: int = 2  # downsamplings of the U-Net
    channel_mults: tuple[int, ...] = ()  # per level, as UNetConfig; () doubles per level
    attention: bool = False  # self-attention after the bottleneck block (lowest resolution)
    dropout: float = 0.0  # inside every block
    num_steps: int = 200  # T, steps of the forward process
    schedule: Literal["linear", "cosine"] = "cosine"
    prediction: Literal["eps", "v"] = "eps"  # what the network predicts
    label_dropout: float = 0.1  # training labels replaced by "no class" (for guidance)
    ema_decay: float = 0.999  # EMA of the weights, used for sampling; 0 keeps none

    # The U-Net settings this family fixes; UNet's own code reads them from the config.
    # (Plain class attributes, not fields: they cannot be overridden.)
    norm = "group"  # per-example statistics: batch independent, fine at batch size 1
    upsample = "transpose"
    residual = True
    pad_mode = "reflect"

    def __post_init__(self) -> None:
        for field in ("in_channels", "image_size", "hidden_dim"):
            if getattr(self, field) < 1:
                raise ValueError(
                    f"DiffusionConfig.{field} must be at least 1, got {getattr(self, field)}."
                )
        if not 1 <= self.depth <= MAX_DEPTH:
            raise ValueError(
                f"DiffusionConfig.depth must be between 1 and {MAX_DEPTH}, got {self.depth}."
            )
        mults = self.channel_mults
        if mults and (len(mults) != self.depth + 1 or min(mults) < 1):
            raise ValueError(
                f"DiffusionConfig.channel_mults must hold depth + 1 = {self.depth + 1} positive "
                f"multipliers, or be empty to double per level; got {mults}."
            )
        if not 1 <= self.num_steps <= MAX_STEPS:
            raise ValueError(
                f"DiffusionConfig.num_steps must be between 1 and {MAX_STEPS}, got "
                f"{self.num_steps}."
            )
        for field, choices in (("schedule", SCHEDULES), ("prediction", PREDICTIONS)):
            if getattr(self, field) not in choices:
                raise ValueError(
                    f"DiffusionConfig.{field} must be one of {choices}, "
                    f"got {getattr(self, field)!r}."
                )
        for field in ("dropout", "label_dropout", "ema_decay"):
            if not 0.0 <= getattr(self, field) < 1.0:
                raise ValueError(
                    f"DiffusionConfig.{field} must be in [0, 1), got {getattr(self, field)}."
                )
        if self.num_classes < 0 or (not self.conditional and self.num_classes != 0):
            raise ValueError(
                f"DiffusionConfig.num_classes must be 0 for an unconditional model, got "
                f"{self.num_classes}; pass conditional=True to condition on classes."
            )

    @property
    def widths(self) -> tuple[int, ...]:
        """Channels of U-Net levels 0..depth (the last is the bottleneck)."""
        mults = self.channel_mults or tuple(2**i for i in range(self.depth + 1))
        return tuple(self.hidden_dim * m for m in mults)

    @property
    def out_dim(self) -> int:
        """Channels the U-Net's head gives: one prediction per input channel."""
        return self.in_channels

    @property
    def embedding_dim(self) -> int:
        """Width of the time (and class) embedding that every block reads."""
        return 4 * self.hidden_dim


# ---------------------------------------------------------------------------------------------
# The noise schedule: parameter-free, float64, apart from the network.
# ---------------------------------------------------------------------------------------------


class Schedule:
    """betas of the forward process and what follows from them, in float64.

    Time steps t are integers 0 .. T-1; t = -1 stands for "no noise yet" (alpha_bar = 1), the
    step before the first, which the posterior and the samplers' last step need.

    Attributes:
        betas: (T,) variances of the steps, each strictly in (0, 1).
        alphas: (T,) 1 - betas.
        alpha_bar: (T,) cumulative products, strictly decreasing and strictly in (0, 1).
    """

    def __init__(self, betas: Tensor) -> None:
        betas = torch.as_tensor(betas, dtype=torch.float64)
        if betas.ndim != 1 or betas.numel() == 0:
            raise ValueError(f"Schedule expects betas of shape (T,); got {tuple(betas.shape)}.")
        if not bool(((betas > 0) & (betas < 1)).all()):
            raise ValueError(
                f"Schedule expects every beta strictly between 0 and 1; got values from "
                f"{float(betas.min())} to {float(betas.max())}."
            )
        self.betas = betas
        self.alphas = 1.0 - betas
        self.alpha_bar = torch.cumprod(self.alphas, 0)  # alpha_bar_t = prod_{s<=t} alpha_s
        if float(self.alpha_bar[-1]) <= 0.0:
            raise ValueError("Schedule's alpha_bar underflows to 0; use fewer steps.")
        # alpha_bar with a trailing 1: index -1 (torch wraps negative indices) reads the 1 of
        # "before the first step", so posterior and samplers need no special case for t = 0.
        self._alpha_bar_or_one = torch.cat([self.alpha_bar, torch.ones(1, dtype=torch.float64)])

    @classmethod
    def linear(cls, num_steps: int) -> Schedule:
        """Ho et al.'s betas 1e-4 .. 0.02 over 1000 steps, scaled by 1000 / T for other T.

        The scaling (Nichol & Dhariwal) keeps alpha_bar at the last step about as small for any
        T; betas are capped at 0.999 for T below 20, where the scaled end would pass 1.
        """
        scale = 1000.0 / num_steps
        betas = torch.linspace(scale * 1e-4, scale * 0.02, num_steps, dtype=torch.float64)
        return cls(betas.clamp(max=0.999))

    @classmethod
    def cosine(cls, num_steps: int, offset: float = 0.008, max_beta: float = 0.999) -> Schedule:
        """Nichol & Dhariwal's cosine schedule: alpha_bar(t) = f(t) / f(0).

        f(t) = cos^2((t/T + s) / (1 + s) · pi/2), s = `offset`; beta_t = 1 - alpha_bar(t+1) /
        alpha_bar(t). f reaches 0 at t = T, which would make the last beta 1 and alpha_bar 0, so
        betas are clipped at `max_beta` and alpha_bar is recomputed from the clipped betas.
        """
        steps = torch.arange(num_steps + 1, dtype=torch.float64) / num_steps
        f = torch.cos((steps + offset) / (1 + offset) * math.pi / 2) ** 2
        betas = 1 - f[1:] / f[:-1]
        return cls(betas.clamp(max=max_beta))

    @classmethod
    def make(cls, kind: str, num_steps: int) -> Schedule:
        """The schedule called `kind` ("linear" or "cosine") with `num_steps` steps."""
        if kind not in SCHEDULES:
            raise ValueError(f"Schedule kind must be one of {SCHEDULES}; got {kind!r}.")
        return cls.linear(num_steps) if kind == "linear" else cls.cosine(num_steps)

    @property
    def num_steps(self) -> int:
        """T."""
        return self.betas.numel()

    # -- gathering per-example coefficients ---------------------------------------------------
    def alpha_bar_at(self, t: Tensor | int) -> Tensor:
        """alpha_bar_t in float64, on the CPU; t = -1 gives 1."""
        index = torch.as_tensor(t, dtype=torch.int64).cpu()
        return self._alpha_bar_or_one[index]

    @staticmethod
    def _like(values: Tensor, x: Tensor) -> Tensor:
        """(B,) float64 values as (B, 1, ..., 1) in x's dtype and on its device."""
        values = values.to(x.dtype).to(x.device, non_blocking=True)
        return values.reshape(-1, *([1] * (x.ndim - 1)))

    def coefficients(self, t: Tensor, x: Tensor) -> tuple[Tensor, Tensor]:
        """sqrt(alpha_bar_t) and sqrt(1 - alpha_bar_t), shaped to broadcast against x."""
        alpha_bar = self.alpha_bar_at(t)  # float64: 1 - alpha_bar keeps its digits near t = 0
        return self._like(alpha_bar.sqrt(), x), self._like((1 - alpha_bar).sqrt(), x)

    # -- the forward process ------------------------------------------------------------------
    def q_sample(self, x0: Tensor, t: Tensor, noise: Tensor) -> Tensor:
        """x_t ~ q(x_t | x_0) in closed form: sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) eps."""
        a, b = self.coefficients(t, x0)
        return a * x0 + b * noise

    def posterior(
        self, x0: Tensor, x_t: Tensor, t: Tensor, s: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        """Mean and variance of q(x_s | x_t, x_0) for s < t (s = t - 1 by default; -1 allowed).

        With a = alpha_bar_t / alpha_bar_s (the step's alpha, over several steps when s < t-1)
        and beta = 1 - a:

            mean     = sqrt(alpha_bar_s) beta / (1 - alpha_bar_t) x_0
                       + sqrt(a) (1 - alpha_bar_s) / (1 - alpha_bar_t) x_t
            variance = beta (1 - alpha_bar_s) / (1 - alpha_bar_t)

        For s = t - 1 these are Ho et al.'s mu-tilde and beta-tilde; at t = 0 the variance is 0
        and the mean is x_0.
        """
        t = torch.as_tensor(t, dtype=torch.int64).cpu()
        s = t - 1 if s is None else torch.as_tensor(s, dtype=torch.int64).cpu()
        ab_t, ab_s = self.alpha_bar_at(t), self.alpha_bar_at(s)
        a = ab_t / ab_s
        coef_x0 = ab_s.sqrt() * (1 - a) / (1 - ab_t)
        coef_xt = a.sqrt() * (1 - ab_s) / (1 - ab_t)
        variance = (1 - a) * (1 - ab_s) / (1 - ab_t)
        mean = self._like(coef_x0, x0) * x0 + self._like(coef_xt, x_t) * x_t
        return mean, self._like(variance, x_t)

    # -- eps, x_0 and v: each pair gives the third, given x_t --------------------------------
    def x0_from_eps(self, x_t: Tensor, t: Tensor, eps: Tensor) -> Tensor:
        """The clean image from eps: x_0 = (x_t - sqrt(1 - alpha_bar_t) eps) / sqrt(alpha_bar_t)."""
        a, b = self.coefficients(t, x_t)
        return (x_t - b * eps) / a

    def eps_from_x0(self, x_t: Tensor, t: Tensor, x0: Tensor) -> Tensor:
        """The noise from x_0: eps = (x_t - sqrt(alpha_bar_t) x_0) / sqrt(1 - alpha_bar_t)."""
        a, b = self.coefficients(t, x_t)
        return (x_t - a * x0) / b

    def v_from(self, x0: Tensor, eps: Tensor, t: Tensor) -> Tensor:
        """The velocity (Salimans & Ho): v = sqrt(alpha_bar_t) eps - sqrt(1 - alpha_bar_t) x_0."""
        a, b = self.coefficients(t, x0)
        return a * eps - b * x0

    def x0_from_v(self, x_t: Tensor, t: Tensor, v: Tensor) -> Tensor:
        """The clean image from v: x_0 = sqrt(alpha_bar_t) x_t - sqrt(1 - alpha_bar_t) v."""
        a, b = self.coefficients(t, x_t)
        return a * x_t - b * v

    def eps_from_v(self, x_t: Tensor, t: Tensor, v: Tensor) -> Tensor:
        """The noise from v: eps = sqrt(1 - alpha_bar_t) x_t + sqrt(alpha_bar_t) v."""
        a, b = self.coefficients(t, x_t)
        return b * x_t + a * v

    def x0_and_eps(
        self, x_t: Tensor, t: Tensor, out: Tensor, prediction: str
    ) -> tuple[Tensor, Tensor]:
        """The network's output `out` ("eps" or "v" prediction) as the pair (x_0, eps)."""
        if prediction == "eps":
            return self.x0_from_eps(x_t, t, out), out
        return self.x0_from_v(x_t, t, out), self.eps_from_v(x_t, t, out)


# ---------------------------------------------------------------------------------------------
# Sampler steps: from x_t to x_s (s < t), given the network's x_0 and eps.
# ---------------------------------------------------------------------------------------------


def sampling_steps(num_steps: int, steps: int) -> list[int]:
    """`steps` time steps evenly spaced from T-1 down to 0, both included (one step: T-1).

    Spacing (T-1)/(steps-1) >= 1, so rounding never repeats a step; starting at T-1 means the
    first step always sees the noise level that sampling starts from.
    """
    if steps == 1:
        return [num_steps - 1]
    grid = torch.linspace(num_steps - 1, 0, steps, dtype=torch.float64).round().long()
    return grid.tolist()


def ddim_sigma(alpha_bar_t: float, alpha_bar_s: float, eta: float) -> float:
    """DDIM's noise scale: eta sqrt((1 - ab_s) / (1 - ab_t)) sqrt(1 - ab_t / ab_s).

    eta = 0 is deterministic; eta = 1 is the DDPM posterior's standard deviation.
    """
    return eta * math.sqrt((1 - alpha_bar_s) / (1 - alpha_bar_t) * (1 - alpha_bar_t / alpha_bar_s))


def ddim_mean(x0: Tensor, eps: Tensor, alpha_bar_s: float, sigma: float) -> Tensor:
    """The mean of DDIM's x_s: sqrt(ab_s) x_0 + sqrt(1 - ab_s - sigma^2) eps (Song et al., eq. 12).

    "Point back at x_0, then step out along the predicted noise direction to noise level s",
    leaving sigma^2 of the variance to fresh noise.
    """
    direction = math.sqrt(max(1.0 - alpha_bar_s - sigma**2, 0.0))  # >= 0 up to round-off
    return math.sqrt(alpha_bar_s) * x0 + direction * eps


# ---------------------------------------------------------------------------------------------
# Blocks: the U-Net's, reading the embedding.
# ---------------------------------------------------------------------------------------------


def sinusoidal(t: Tensor, dim: int, max_period: float = 10_000.0) -> Tensor:
    """Transformer-style features of integer steps t (B,): (B, dim), sin then cos, dim even.

    Frequencies 1 .. 1/max_period, geometrically spaced, so both adjacent steps and the whole
    range of T are told apart.
    """
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device) / half)
    angles = t.float()[:, None] * freqs[None, :]  # (B, dim/2)
    return torch.cat([angles.sin(), angles.cos()], dim=1)  # (B, dim)


class TimeEmbedding(nn.Module):
    """Sinusoidal features of t, then a two-layer MLP: (B,) steps -> (B, embedding_dim)."""

    def __init__(self, hidden_dim: int, embedding_dim: int) -> None:
        super().__init__()
        self.features = 2 * max(1, hidden_dim // 2)  # sin and cos pairs
        self.fc1 = nn.Linear(self.features, embedding_dim)
        self.act = nn.SiLU()
        self.fc2 = nn.Linear(embedding_dim, embedding_dim)

    def forward(self, t: Tensor) -> Tensor:
        """Map steps t (B,) to embeddings (B, embedding_dim)."""
        h = sinusoidal(t, self.features).to(self.fc1.weight.dtype)
        return self.fc2(self.act(self.fc1(h)))


class TimeBlock(ConvBlock):
    """The U-Net's ConvBlock, with a per-channel scale and shift read from the embedding.

    h = norm1(conv1(x)) · (1 + scale) + shift,  (scale, shift) = Linear(silu(emb))

    after the first normalisation (as in Dhariwal & Nichol's "adaptive group norm"), so every
    block knows the noise level (and the class) of each example.
    """

    def __init__(self, in_ch: int, out_ch: int, embedding_dim: int, **options: Any) -> None:
        super().__init__(in_ch, out_ch, **options)
        self.condition = nn.Linear(embedding_dim, 2 * out_ch)

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        """Map x (B, in_ch, H, W) and emb (B, embedding_dim) to (B, out_ch, H, W)."""
        scale, shift = self.condition(F.silu(emb))[:, :, None, None].chunk(2, dim=1)  # (B, C, 1, 1)
        h = self.norm1(self.conv1(x)) * (1 + scale) + shift
        h = self.drop(self.act(h))
        h = self.norm2(self.conv2(h))
        if self.shortcut is not None:
            h = h + self.shortcut(x)
        return self.act(h)


class SelfAttention(nn.Module):
    """One-head self-attention over the H·W positions of a feature map, pre-norm and residual."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.norm = make_norm("group", channels)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.proj = nn.Conv2d(channels, channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        """Map (B, C, H, W) to (B, C, H, W); every position reads every other."""
        b, c, height, width = x.shape
        qkv = self.qkv(self.norm(x)).reshape(b, 3, c, height * width)  # (B, 3, C, HW)
        q, k, v = qkv.transpose(2, 3).unbind(1)  # (B, HW, C) each
        h = F.scaled_dot_product_attention(q, k, v)  # (B, HW, C)
        return x + self.proj(h.transpose(1, 2).reshape(b, c, height, width))


class Bottleneck(nn.Module):
    """The deepest block followed by self-attention, where H·W is smallest."""

    def __init__(self, block: TimeBlock, channels: int) -> None:
        super().__init__()
        self.block = block
        self.attention = SelfAttention(channels)

    def path(self) -> list[nn.Module]:
        """The block's convolutions (attention reads the whole map anyway)."""
        return self.block.path()

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        """Map (B, in_ch, H, W) and emb (B, embedding_dim) to (B, out_ch, H, W)."""
        return self.attention(self.block(x, emb))


# ---------------------------------------------------------------------------------------------
# EMA of the weights: buffers, so they are saved with the model and resume bitwise.
# ---------------------------------------------------------------------------------------------


class EMA(nn.Module):
    """An exponential moving average of a module's parameters, kept as buffers.

    shadow <- d · shadow + (1 - d) · param,  d = min(decay, (1 + n) / (10 + n))

    after the n-th update; the warm-up (TensorFlow's ExponentialMovingAverage with num_updates)
    lets short runs average their recent weights rather than the initial ones. Buffers rather than
    parameters: the optimizer never sees them and they get no gradient, yet they are in the
    state_dict (and so in model.safetensors and checkpoints, with the update count).
    """

    def __init__(self, module: nn.Module, decay: float) -> None:
        super().__init__()
        self.decay = decay
        self.names = [name for name, _ in module.named_parameters()]
        for name, param in module.named_parameters():
            # A buffer name cannot hold ".", and "-" never occurs in an attribute path.
            self.register_buffer(name.replace(".", "-"), param.detach().clone())
        self.register_buffer("updates", torch.zeros((), dtype=torch.int64))

    @torch.no_grad()
    def update(self, module: nn.Module) -> None:
        """Move every shadow towards the module's current parameters."""
        self.updates += 1
        n = self.updates.double()  # on the model's device: no sync with the host per step
        weight = 1 - ((1 + n) / (10 + n)).clamp(max=self.decay)  # 1 - d
        for name, param in module.named_parameters():
            shadow = self.get_buffer(name.replace(".", "-"))
            shadow.lerp_(param.detach(), weight.to(shadow.dtype))

    def weights(self) -> dict[str, Tensor]:
        """Parameter name -> its average, for `torch.func.functional_call`."""
        return {name: self.get_buffer(name.replace(".", "-")) for name in self.names}


# ---------------------------------------------------------------------------------------------
# The model.
# ---------------------------------------------------------------------------------------------


class Diffusion(UNet):
    """DDPM/DDIM diffusion (Ho et al., 2020; Song et al., 2021): a time-conditioned U-Net."""

    invariants = frozenset({"batch_independent", "uses_skips"})
    reads = "images"
    outputs = ("generative",)
    trains_for = "generation"

    def __init__(self, config: DiffusionConfig) -> None:
        super().__init__(config)  # stem, downs, ups, head: blocks from make_block below
        c = config
        if c.conditional and c.num_classes < 1:
            raise ValueError(
                f"Diffusion with conditional=True needs num_classes of at least 1, got "
                f"{c.num_classes}; train it on labelled data, or pass num_classes."
            )
        self.time_embedding = TimeEmbedding(c.hidden_dim, c.embedding_dim)
        # One row more than the classes: label num_classes is "no class", which label dropout
        # trains and guidance uses for the unconditional prediction.
        self.class_embedding = (
            nn.Embedding(c.num_classes + 1, c.embedding_dim) if c.conditional else None
        )
        if c.attention:
            deepest = self.downs[-1]  # depth >= 1: there is always a Down
            deepest.block = Bottleneck(deepest.block, c.widths[-1])
        self.schedule = Schedule.make(c.schedule, c.num_steps)  # no parameters, not a module
        self.ema = EMA(self, c.ema_decay) if c.ema_decay > 0 else None  # last: sees every param

    def make_block(self, in_ch: int, out_ch: int) -> nn.Module:
        """The U-Net's block, reading the embedding (called by UNet.__init__ for every level)."""
        c = self.config
        return TimeBlock(
            in_ch,
            out_ch,
            c.embedding_dim,
            norm=c.norm,
            dropout=c.dropout,
            residual=c.residual,
        )

    # -- what it reads and how it sizes itself ------------------------------------------------
    @property
    def input_description(self) -> str:
        """What forward expects."""
        c = self.config
        labels = f", labels y (B,) in [0, {c.num_classes}]" if c.conditional else ""
        return (
            f"noisy images x (B, {c.in_channels}, H, W) in [-1, 1] scale, steps t (B,) in "
            f"[0, {c.num_steps}){labels}"
        )

    def example_input(self, batch_size: int = 2) -> tuple[Tensor, ...]:
        """(x_t, t) or, when conditional, (x_t, t, y): random images, steps and labels."""
        c = self.config
        x = torch.randn(batch_size, c.in_channels, c.image_size, c.image_size)
        t = torch.randint(0, c.num_steps, (batch_size,))
        if not c.conditional:
            return x, t
        return x, t, torch.randint(0, c.num_classes, (batch_size,))

    @classmethod
    def config_for_data(cls, config: DiffusionConfig, spec: DataSpec) -> DiffusionConfig:
        """Square (C, H, H) images set in_channels and image_size; classes when conditional."""
        return cls.square_image_fields(config, spec)

    @property
    def receptive_field(self) -> int | None:
        """Pixels per axis an output pixel reads; None with attention (every pixel)."""
        return None if self.config.attention else super().receptive_field

    # -- the network ----------------------------------------------------------------------------
    def forward(self, x: Tensor, t: Tensor, y: Tensor | None = None) -> Tensor:
        """The network's prediction (eps or v, per config.prediction) for noisy images x.

        Args:
            x: (B, in_channels, H, W) noisy images x_t, any H, W >= 1.
            t: (B,) integer steps in [0, num_steps).
            y: (B,) class labels in [0, num_classes] of a conditional model (num_classes: no
                class, the unconditional prediction), or None (no class); None when
                unconditional.

        Returns:
            (B, in_channels, H, W).
        """
        self._check(x, t, y)
        emb = self.time_embedding(t)  # (B, embedding_dim)
        if self.class_embedding is not None:
            if y is None:
                y = torch.full_like(t, self.config.num_classes)  # "no class"
            emb = emb + self.class_embedding(y)
        padded, (rows, cols) = self.pad(x)  # (B, C, H', W'), multiples of 2^depth
        out = self.head(self.features(padded, emb))  # every block reads emb
        return out[:, :, rows, cols]  # (B, C, H, W)

    def _check(self, x: Any, t: Any, y: Any) -> None:
        c, owner = self.config, self.name
        check_shape(
            x,
            "B C H W",
            C=c.in_channels,
            owner=owner,
            name="x",
            what="noisy images",
            like=self.head.weight,
        )
        batch, height, width = x.shape[0], x.shape[2], x.shape[3]
        if height == 0 or width == 0:
            raise ValueError(
                f"{owner} expects noisy images x of at least 1x1 pixels; got {height}x{width} in "
                f"a batch of shape {tuple(x.shape)}."
            )
        self._check_ids(t, "t", "steps", batch, c.num_steps)
        if y is None:
            return
        if not c.conditional:
            raise ValueError(
                f"{owner} is unconditional and takes no class labels y; pass y=None, or build "
                f"it with conditional=True."
            )
        self._check_ids(y, "y", "class labels", batch, c.num_classes + 1)

    def _check_ids(self, ids: Any, name: str, what: str, batch: int, high: int) -> None:
        """Integer tensor (batch,) on the model's device with values in [0, high)."""
        owner = self.name
        if not isinstance(ids, Tensor):
            raise TypeError(
                f"{owner} expects {what} {name} as a torch.Tensor of shape ({batch},), one per "
                f"image of x; got {type(ids).__name__}."
            )
        if ids.dtype not in (torch.int64, torch.int32):
            raise TypeError(
                f"{owner} expects {what} {name} as an int64 tensor; got dtype {ids.dtype}; "
                f"pass {name}.long()."
            )
        if tuple(ids.shape) != (batch,):
            raise ValueError(
                f"{owner} expects {what} {name} of shape ({batch},), one per image of x; got "
                f"{tuple(ids.shape)}."
            )
        check_device(ids, self.head.weight.device, owner=owner, name=name, what=what)
        exporting = torch.compiler.is_exporting()  # export cannot trace the range scan
        if ids.numel() and not exporting and (int(ids.min()) < 0 or int(ids.max()) >= high):
            raise ValueError(
                f"{owner} expects {what} {name} in [0, {high - 1}]; got values from "
                f"{int(ids.min())} to {int(ids.max())}."
            )

    # -- training --------------------------------------------------------------------------------
    def loss(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        """Mean squared error of the eps (or v) prediction at uniformly drawn steps.

        t, the noise and the label dropout come from torch's global generators, in that order,
        so a resumed run (which restores them) draws the same. t is drawn on the CPU and the
        noise on x's device.

        Args:
            x: (B, in_channels, H, W) clean images x_0 in model space, [-1, 1].
            y: (B,) labels in [0, num_classes) of a conditional model; ignored otherwise.
        """
        c = self.config
        check_shape(
            x,
            "B C H W",
            C=c.in_channels,
            owner=self.name,
            name="x",
            what="images",
            like=self.head.weight,
        )
        batch = x.shape[0]
        # 1. noise a random step of each example
        t = torch.randint(0, c.num_steps, (batch,))
        noise = torch.randn_like(x)
        x_t = self.schedule.q_sample(x, t, noise)
        target = noise if c.prediction == "eps" else self.schedule.v_from(x, noise, t)
        # 2. labels, each dropped to "no class" with probability label_dropout
        labels = None
        if c.conditional:
            if y is None:
                raise ValueError(
                    f"{self.name} is class-conditional and its loss needs labels y of shape "
                    f"({batch},); pass the batch's labels."
                )
            self._check_ids(y, "y", "class labels", batch, c.num_classes)
            drop = torch.rand(batch) < c.label_dropout
            labels = torch.where(drop.to(y.device), torch.full_like(y, c.num_classes), y)
        # 3. predict and compare
        prediction = self(x_t, t.to(x.device), labels)
        return F.mse_loss(prediction, target)

    @torch.no_grad()
    def ema_update(self) -> None:
        """Move the EMA weights towards the current ones (once per optimizer step)."""
        if self.ema is not None:
            self.ema.update(self)

    def after_optimizer_step(self) -> None:
        """The trainer's hook after every optimizer step: the EMA update."""
        self.ema_update()

    # -- sampling --------------------------------------------------------------------------------
    def guided(
        self, x: Tensor, t: Tensor, y: Tensor | None, guidance: float = 1.0, *, ema: bool = False
    ) -> Tensor:
        """The prediction under classifier-free guidance: out_u + w (out_c - out_u).

        w = `guidance`: 1 is the conditional prediction alone (one pass), 0 the unconditional
        one, above 1 pushes samples towards their class. Linear in the output, so guiding the
        eps or the v prediction is the same (eps is linear in v given x_t). With `ema`, the EMA
        weights predict (when there are any and they have been updated).
        """
        weights = None
        if ema and self.ema is not None and int(self.ema.updates) > 0:
            weights = self.ema.weights()

        def net(*args: Tensor | None) -> Tensor:
            return self(*args) if weights is None else functional_call(self, weights, args)

        if y is None or guidance == 1.0:
            return net(x, t, y)
        null = torch.full_like(y, self.config.num_classes)
        both = net(torch.cat([x, x]), torch.cat([t, t]), torch.cat([y, null]))  # (2B, C, H, W)
        cond, uncond = both.chunk(2)
        return uncond + guidance * (cond - uncond)

    @torch.no_grad()
    def sample(
        self,
        n: int,
        y: Tensor | None = None,
        *,
        generator: torch.Generator | None = None,
        steps: int | None = None,
        sampler: str = "ddim",
        eta: float = 0.0,
        guidance: float = 1.0,
        clip: bool = True,
        ema: bool = True,
        progress: Callable[[int, int], Any] | None = None,
    ) -> Tensor:
        """Draw n images (n, in_channels, image_size, image_size) in model space, [-1, 1].

        Start from x_{T-1} ~ N(0, I) and step down a subset of the steps (`sampling_steps`).
        Each step predicts x_0 and eps, clips x_0 to [-1, 1] (then eps is recomputed from it,
        so the two agree with x_t), and moves to the next step's noise level:

        - "ddpm": a draw from the posterior q(x_s | x_t, x_0), ancestral sampling (over a
          subset of steps this is the respaced process of Nichol & Dhariwal);
        - "ddim": sqrt(ab_s) x_0 + sqrt(1 - ab_s - sigma^2) eps + sigma z, sigma from `eta`;
          eta = 0 draws no noise after x_{T-1}, eta = 1 equals "ddpm".

        Args:
            n: how many images.
            y: (n,) class labels in [0, num_classes) of a conditional model; None samples
                without a class (the unconditional model that label dropout trained).
            generator: draws the initial noise and every step's noise (default: the global).
            steps: how many steps, 1 .. num_steps; default all for "ddpm", min(50, T) for
                "ddim".
            sampler: "ddim" or "ddpm".
            eta: DDIM's noise scale, >= 0 (ignored by "ddpm").
            guidance: classifier-free guidance scale w >= 0 (needs y); 1 is no guidance.
            clip: clip the predicted x_0 to [-1, 1] at every step.
            ema: sample with the EMA weights, when they have been updated at least once.
            progress: called as progress(done, total) after every step.
        """
        c, s = self.config, self.schedule
        steps = self._check_sampling(n, y, steps, sampler, eta, guidance, generator)
        device = self.head.weight.device
        if y is not None:
            y = torch.as_tensor(y, dtype=torch.int64).to(device)

        def noise(shape: tuple[int, ...]) -> Tensor:
            where = generator.device if generator is not None else device
            z = torch.randn(shape, generator=generator, device=where)
            return z.to(device=device, dtype=self.head.weight.dtype)

        x = noise((n, c.in_channels, c.image_size, c.image_size))  # x_{T-1}
        grid = sampling_steps(c.num_steps, steps)
        for i, t_now in enumerate(grid):
            t_next = grid[i + 1] if i + 1 < len(grid) else -1  # -1: x_0
            t = torch.full((n,), t_now, dtype=torch.int64, device=device)
            out = self.guided(x, t, y, guidance, ema=ema)
            # 1. predict x_0 and eps; clip x_0 and make eps agree with it
            x0, eps = s.x0_and_eps(x, t, out, c.prediction)
            if clip:
                x0 = x0.clamp(-1.0, 1.0)
                eps = s.eps_from_x0(x, t, x0)
            # 2. move to the next noise level
            if sampler == "ddpm":
                mean, variance = s.posterior(x0, x, t, torch.full_like(t, t_next))
                std = variance.sqrt()  # 0 at the last step
            else:
                ab_t, ab_s = float(s.alpha_bar_at(t_now)), float(s.alpha_bar_at(t_next))
                sigma = ddim_sigma(ab_t, ab_s, eta)
                mean, std = ddim_mean(x0, eps, ab_s, sigma), sigma
            # 3. fresh noise, only where there is some to add (eta = 0 and the last step: none)
            fresh = t_next >= 0 and (sampler == "ddpm" or eta > 0)
            x = mean + std * noise(tuple(x.shape)) if fresh else mean
            if progress is not None:
                progress(i + 1, len(grid))
        return x

    def _check_sampling(
        self,
        n: Any,
        y: Any,
        steps: Any,
        sampler: Any,
        eta: Any,
        guidance: Any,
        generator: Any,
    ) -> int:
        """Refuse bad sampling options in one sentence; return the number of steps."""
        c, owner = self.config, self.name
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"{owner} sample expects n as a positive int; got {n!r}.")
        if sampler not in SAMPLERS:
            raise ValueError(f"{owner} sample expects sampler in {SAMPLERS}; got {sampler!r}.")
        if steps is None:
            steps = c.num_steps if sampler == "ddpm" else min(50, c.num_steps)
        if isinstance(steps, bool) or not isinstance(steps, int) or not 1 <= steps <= c.num_steps:
            raise ValueError(
                f"{owner} sample expects steps between 1 and num_steps={c.num_steps}; got "
                f"{steps!r}."
            )
        if not isinstance(eta, int | float) or not eta >= 0:
            raise ValueError(f"{owner} sample expects eta >= 0; got {eta!r}.")
        if not isinstance(guidance, int | float) or not guidance >= 0:
            raise ValueError(f"{owner} sample expects guidance >= 0; got {guidance!r}.")
        if generator is not None and not isinstance(generator, torch.Generator):
            raise TypeError(
                f"{owner} sample expects generator as a torch.Generator; got "
                f"{type(generator).__name__}."
            )
        if y is None:
            if guidance != 1.0:
                raise ValueError(
                    f"{owner} sample got guidance={guidance} without class labels y; guidance "
                    f"needs y (a conditional model and the classes to sample)."
                )
            return steps
        if not c.conditional:
            raise ValueError(
                f"{owner} is unconditional and samples without class labels; pass y=None."
            )
        if not isinstance(y, Tensor) or tuple(y.shape) != (n,) or y.is_floating_point():
            shown = tuple(y.shape) if isinstance(y, Tensor) else type(y).__name__
            raise ValueError(
                f"{owner} sample expects class labels y as an int64 tensor of shape ({n},); "
                f"got {shown}."
            )
        if y.numel() and (int(y.min()) < 0 or int(y.max()) >= c.num_classes):
            raise ValueError(
                f"{owner} sample expects class labels y in [0, {c.num_classes - 1}]; got "
                f"values from {int(y.min())} to {int(y.max())}."
            )
        return steps


# For digits 8x8: unconditional, widths 16-32-64 (8 -> 4 -> 2), T = 200 (cosine), eps-prediction.
register("ddpm-tiny", DiffusionConfig(hidden_dim=16, depth=2, num_steps=200), Diffusion)
# Class-conditional with classifier-free guidance, for digits or Fashion-MNIST 28x28: widths
# 16-32-64 (28 -> 14 -> 7), attention at 7x7, v-prediction, T = 500. A training step of 128
# images costs about a second on one CPU thread, less with more cores.
register(
    "ddpm-cond",
    DiffusionConfig(
        image_size=28,
        conditional=True,
        num_classes=10,
        hidden_dim=16,
        depth=2,
        channel_mults=(1, 2, 4),
        attention=True,
        num_steps=500,
        prediction="v",
    ),
    Diffusion,
)
# Ho et al.'s recipe at reduced width, 32x32 (28x28 is padded): linear betas over T = 1000,
# eps-prediction, widths 64-128-128-128 with attention at 4x4, dropout 0.1, EMA 0.9999.
register(
    "ddpm",
    DiffusionConfig(
        image_size=32,
        hidden_dim=64,
        depth=3,
        channel_mults=(1, 2, 2, 2),
        attention=True,
        dropout=0.1,
        num_steps=1000,
        schedule="linear",
        ema_decay=0.9999,
    ),
    Diffusion,
)
