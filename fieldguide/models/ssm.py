"""State-space and long-convolution sequence models (see docs/guide/ssm.md).

Letters: B batch, T time, C input channels, D width, N state size.

A linear time-invariant system, per channel,

    x'(t) = A x(t) + B u(t),    y(t) = C x(t) + D u(t),

discretised with step dt, is both a recurrence (stream one step at a time) and a convolution
with the kernel K[t] = C A_bar^t B_bar (train on the whole sequence at once, by FFT in
O(T log T)). The guide's stand-in, a depthwise `Conv1d(k, padding=k-1)`, returns T+k-1 steps
and costs O(T k); both mixers here return T steps through `layers.fftconv`.

- S4D: Gu, Gupta, Goel, Ré, "On the Parameterization and Initialization of Diagonal State
  Space Models" (NeurIPS 2022). A is diagonal and complex, N/2 modes in conjugate pairs, so a
  real kernel is 2 Re(...) of a sum over N/2 modes; initialised S4D-Lin or S4D-Inv.
- Hyena: Poli et al., "Hyena Hierarchy: Towards Larger Convolutional Language Models"
  (ICML 2023). Long filters made by a small MLP of the position, interleaved with gates.

Both mixers sit in pre-norm residual blocks with a gated MLP, as in the S4/Mamba/Hyena stacks.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fieldguide.layers.fftconv import causal_fft_conv
from fieldguide.layers.sequence import check_sequence, pool_sequence
from fieldguide.models.base import SequenceModel
from fieldguide.models.registry import register

# Hyena's implicit filter: positional features [t, cos, sin of 2 bands] -> MLP of this width.
FILTER_BANDS = 2
FILTER_WIDTH = 64
# Hyena's decay window reaches 1e-2 between 30% and 150% of max_len, slow to fast by channel.
FILTER_DECAY_TARGET, FILTER_FAST_DECAY, FILTER_SLOW_DECAY = 1e-2, 0.3, 1.5


@dataclass(frozen=True)
class SSMConfig:
    """Sizes of a state-space model; `create_model` takes any field as an override."""

    in_channels: int = 1
    out_dim: int = 1  # outputs per step ("none") or per sequence ("last", "mean")
    hidden_dim: int = 64  # D: the mixers act on each of the D channels separately
    num_layers: int = 4  # blocks of mixer + gated MLP
    mixer: Literal["s4d", "hyena"] = "s4d"
    state_dim: int = 64  # S4D: N, the state size per channel (N/2 complex conjugate pairs)
    init: Literal["lin", "inv"] = "lin"  # S4D: imaginary parts of A, S4D-Lin or S4D-Inv
    dt_min: float = 1e-3  # S4D: log dt is drawn uniformly in [log dt_min, log dt_max]
    dt_max: float = 1e-1
    ssm_lr: float = 1e-3  # lr of A and dt (S4D) or the filter MLP (Hyena), without weight decay
    dropout: float = 0.1  # on the mixer's output, before the residual add
    max_len: int = 4096  # Hyena: longest sequence; filter positions are t / (max_len - 1)
    pool: Literal["none", "last", "mean"] = "none"

    def __post_init__(self) -> None:
        for field in ("in_channels", "out_dim", "hidden_dim", "num_layers", "max_len"):
            if getattr(self, field) < 1:
                raise ValueError(
                    f"SSMConfig.{field} must be at least 1, got {getattr(self, field)}."
                )
        if self.state_dim < 2 or self.state_dim % 2:
            raise ValueError(
                f"SSMConfig.state_dim must be an even number >= 2 (modes come in conjugate "
                f"pairs), got {self.state_dim}."
            )
        choices = {
            "mixer": ("s4d", "hyena"),
            "init": ("lin", "inv"),
            "pool": ("none", "last", "mean"),
        }
        for field, allowed in choices.items():
            if getattr(self, field) not in allowed:
                raise ValueError(
                    f"SSMConfig.{field} must be one of {', '.join(allowed)}, "
                    f"got '{getattr(self, field)}'."
                )
        if not 0.0 < self.dt_min <= self.dt_max:
            raise ValueError(
                f"SSMConfig.dt_min and dt_max must satisfy 0 < dt_min <= dt_max, "
                f"got dt_min={self.dt_min}, dt_max={self.dt_max}."
            )
        if self.ssm_lr <= 0:
            raise ValueError(f"SSMConfig.ssm_lr must be positive, got {self.ssm_lr}.")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"SSMConfig.dropout must be in [0, 1), got {self.dropout}.")


class S4D(nn.Module):
    """Diagonal state-space layer S4D (Gu et al., 2022), one SSM per channel.

    Per channel, with N/2 complex modes A_n = -exp(log_neg_re_n) + i a_imag_n (so Re A < 0
    and the system is stable whatever the optimizer does), B_n = 1 and learned C_n, D, dt,
    zero-order hold gives

        A_bar = exp(dt A),    B_bar = (A_bar - 1) / A · B,
        x_t = A_bar x_{t-1} + B_bar u_t,    y_t = 2 Re(C x_t) + D u_t,

    the recurrence of `step`, which unrolls into the convolution of `forward`:

        K[t] = 2 Re(sum_n C_n B_bar_n A_bar_n^t),    y = K * u + D u.

    B is fixed to 1: with a diagonal A only the products C_n B_n reach the output, so a
    learned B would duplicate C (the paper's S4D reference code does the same).
    """

    def __init__(self, dim: int, config: SSMConfig) -> None:
        super().__init__()
        modes = config.state_dim // 2
        n = torch.arange(modes, dtype=torch.float32)
        if config.init == "lin":  # S4D-Lin: A_n = -1/2 + i π n
            imag = math.pi * n
        else:  # S4D-Inv: A_n = -1/2 + i N/π (N/(2n+1) - 1), the asymptotics of HiPPO-LegS
            big_n = config.state_dim
            imag = big_n / math.pi * (big_n / (2 * n + 1) - 1)
        lo, hi = math.log(config.dt_min), math.log(config.dt_max)
        self.log_dt = nn.Parameter(torch.rand(dim) * (hi - lo) + lo)  # (D,)
        self.log_neg_re = nn.Parameter(torch.full((dim, modes), math.log(0.5)))  # (D, N/2)
        self.a_imag = nn.Parameter(imag.repeat(dim, 1))  # (D, N/2)
        # C ~ CN(0, 1), stored as real pairs (safetensors holds no complex tensors).
        self.c = nn.Parameter(torch.randn(dim, modes, 2) * math.sqrt(0.5))  # (D, N/2, 2)
        self.skip = nn.Parameter(torch.randn(dim))  # D, the feed-through
        self.act = nn.GELU()
        self.out = nn.Linear(dim, dim)  # the SSMs are per channel; this mixes channels

    def ssm_parameter_names(self) -> tuple[str, ...]:
        """Parameters trained at the SSM learning rate without weight decay (A and dt)."""
        return ("log_dt", "log_neg_re", "a_imag")

    def continuous(self) -> tuple[Tensor, Tensor]:
        """The step sizes dt (D, 1) and the diagonal of A (D, N/2), complex."""
        dt = self.log_dt.exp()[:, None]  # (D, 1)
        return dt, torch.complex(-self.log_neg_re.exp(), self.a_imag)

    def discrete(self) -> tuple[Tensor, Tensor, Tensor]:
        """A_bar, B_bar and C, each (D, N/2) complex, by zero-order hold."""
        dt, a = self.continuous()
        # A_bar = exp(dt A)
        a_bar = torch.exp(dt * a)
        # B_bar = (A_bar - 1) / A · B, with B = 1
        b_bar = (a_bar - 1) / a
        return a_bar, b_bar, torch.view_as_complex(self.c)

    def kernel(self, length: int) -> Tensor:
        """The convolution kernel K[t], t < length, of shape (D, length).

        K[t] = 2 Re(sum_n C_n B_bar_n A_bar_n^t) is a Vandermonde product. Written with
        t = q J + r and J = ceil(sqrt(T)), A_bar^t = A_bar^(q J) A_bar^r, so the (D, N/2, T)
        matrix of powers factors into two (D, N/2, sqrt T) ones and a batched matmul: the same
        O(D N T) multiply-adds, but O(D N sqrt T) exponentials and memory (the full matrix
        takes 0.3 GB at D=64, N=64, T=16k and made the kernel 12x slower than the FFT).
        """
        dt, a = self.continuous()
        _, b_bar, c = self.discrete()
        dt_a = (dt * a)[..., None]  # (D, N/2, 1)
        cols = math.isqrt(length - 1) + 1  # J = ceil(sqrt(T))
        rows = -(-length // cols)  # Q = ceil(T / J) <= J, as T <= J^2
        r = torch.arange(cols, device=a.device, dtype=dt.dtype)
        # A_bar^t = exp(t dt A), for t = r and t = q J: exact in t, no repeated products
        low = torch.exp(dt_a * r)  # (D, N/2, J)
        high = torch.exp(dt_a * (r[:rows] * cols))  # (D, N/2, Q)
        # K[q J + r] = 2 Re(sum_n (C_n B_bar_n A_bar_n^(q J)) A_bar_n^r)
        k = 2 * torch.matmul(((c * b_bar)[..., None] * high).transpose(1, 2), low).real
        return k.reshape(k.shape[0], rows * cols)[:, :length]  # (D, T)

    def forward(self, u: Tensor) -> Tensor:
        """Map u of shape (B, T, D) to (B, T, D), convolving each channel with its kernel."""
        u = u.transpose(1, 2)  # (B, D, T): the FFT runs along the last axis
        y = causal_fft_conv(u, self.kernel(u.shape[-1])) + self.skip[:, None] * u
        return self.out(self.act(y.transpose(1, 2)))  # (B, T, D)

    def initial_state(self, batch_size: int) -> Tensor:
        """The state x before the first step: zeros of shape (B, D, N/2), complex."""
        a = self.continuous()[1]
        return a.new_zeros(batch_size, *a.shape)

    def step(self, u_t: Tensor, x: Tensor) -> tuple[Tensor, Tensor]:
        """One step of the recurrence: u_t (B, D) and state x -> (y_t (B, D), next x)."""
        a_bar, b_bar, c = self.discrete()
        # x_t = A_bar x_{t-1} + B_bar u_t
        x = a_bar * x + b_bar * u_t[..., None]
        # y_t = 2 Re(C x_t) + D u_t
        y = 2 * (c * x).sum(-1).real + self.skip * u_t
        return self.out(self.act(y)), x


class Sine(nn.Module):
    """sin(w x) with a learned frequency w per feature, the implicit filter's activation."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.freq = nn.Parameter(torch.ones(dim))

    def forward(self, x: Tensor) -> Tensor:
        """Elementwise on (..., dim)."""
        return torch.sin(self.freq * x)


class HyenaFilter(nn.Module):
    """Implicit long filters h[t] = MLP(features of t) · exp(-|delta| t), one per channel.

    Positions are normalised by the fixed `max_len`, not by T, so the filter tap at step t is
    the same for every sequence length: what streaming needs to equal the full forward.
    """

    def __init__(self, dim: int, num_filters: int, max_len: int) -> None:
        super().__init__()
        self.dim, self.num_filters, self.max_len = dim, num_filters, max_len
        self.mlp = nn.Sequential(
            nn.Linear(1 + 2 * FILTER_BANDS, FILTER_WIDTH),
            Sine(FILTER_WIDTH),
            nn.Linear(FILTER_WIDTH, FILTER_WIDTH),
            Sine(FILTER_WIDTH),
            nn.Linear(FILTER_WIDTH, num_filters * dim, bias=False),
        )
        self.bias = nn.Parameter(torch.randn(num_filters, dim))  # the filters' D u term
        fast = math.log(FILTER_DECAY_TARGET) / FILTER_FAST_DECAY
        slow = math.log(FILTER_DECAY_TARGET) / FILTER_SLOW_DECAY
        self.register_buffer("decay", torch.linspace(slow, fast, dim).abs(), persistent=False)

    def forward(self, length: int) -> Tensor:
        """Filters of shape (num_filters, D, length) for the steps 0 .. length-1."""
        device = self.decay.device
        dtype = self.bias.dtype
        steps = torch.arange(length, device=device, dtype=dtype)[:, None]  # (T, 1)
        t = steps / max(self.max_len - 1, 1)  # in [0, 1] over max_len, whatever T is
        angle = 2 * math.pi * steps / self.max_len
        bands = torch.linspace(1e-4, FILTER_BANDS - 1, FILTER_BANDS, device=device, dtype=dtype)
        features = torch.cat([t, torch.cos(bands * angle), -torch.sin(bands * angle)], -1)
        h = self.mlp(features) * torch.exp(-t * self.decay.repeat(self.num_filters))  # (T, F·D)
        return h.T.reshape(self.num_filters, self.dim, length)  # (F, D, T)


class Hyena(nn.Module):
    """Hyena operator of order 2 (Poli et al., 2023): gated implicit long convolutions.

    Three streams (v, x1, x2) = short causal depthwise conv (3 taps) of a projection of u;
    with long filters h1, h2 and their feed-through biases b1, b2,

        z = x1 ⊙ (h1 * v + b1 v),    y = x2 ⊙ (h2 * z + b2 z),

    then an output projection. The convolutions run by FFT over the T steps given, so
    `step` cannot summarise the past in a fixed-size state: it keeps the histories of v and z
    and computes the current output as the full forward would, O(t) work at step t.
    """

    def __init__(self, dim: int, config: SSMConfig) -> None:
        super().__init__()
        self.dim, self.max_len = dim, config.max_len
        self.in_proj = nn.Linear(dim, 3 * dim)
        # Depthwise, 3 taps, padded on the left only (in forward), so no future leaks.
        self.short_conv = nn.Conv1d(3 * dim, 3 * dim, 3, groups=3 * dim)
        self.filter = HyenaFilter(dim, 2, config.max_len)
        self.out_proj = nn.Linear(dim, dim)

    def ssm_parameter_names(self) -> tuple[str, ...]:
        """Parameters trained at the SSM learning rate without decay: the filter MLP's."""
        return tuple(f"filter.mlp.{name}" for name, _ in self.filter.mlp.named_parameters())

    def forward(self, u: Tensor) -> Tensor:
        """Map u of shape (B, T, D) to (B, T, D)."""
        length = u.shape[1]
        p = self.in_proj(u).transpose(1, 2)  # (B, 3D, T)
        p = self.short_conv(F.pad(p, (2, 0)))  # (B, 3D, T), causal
        v, x1, x2 = p.split(self.dim, dim=1)  # 3 x (B, D, T)
        h = self.filter(length)  # (2, D, T)
        b1, b2 = self.filter.bias[..., None]  # 2 x (D, 1)
        z = x1 * (causal_fft_conv(v, h[0]) + b1 * v)
        y = x2 * (causal_fft_conv(z, h[1]) + b2 * z)
        return self.out_proj(y.transpose(1, 2))  # (B, T, D)

    def initial_state(self, batch_size: int) -> dict[str, Tensor]:
        """The last two projected inputs (for the 3-tap conv) and empty histories of v and z."""
        w = self.in_proj.weight
        return {
            "recent": w.new_zeros(batch_size, 3 * self.dim, 2),  # the left zero padding
            "v": w.new_zeros(batch_size, self.dim, 0),
            "z": w.new_zeros(batch_size, self.dim, 0),
        }

    def step(self, u_t: Tensor, state: dict[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        """One step: u_t (B, D) -> (y_t (B, D), state with histories one step longer)."""
        t = state["v"].shape[-1]  # steps already seen
        if t >= self.max_len:
            raise ValueError(
                f"Hyena streams at most max_len={self.max_len} steps; this is step {t + 1}; "
                "build the model with a larger max_len."
            )
        window = torch.cat([state["recent"], self.in_proj(u_t)[..., None]], -1)  # (B, 3D, 3)
        p = (window * self.short_conv.weight[:, 0]).sum(-1) + self.short_conv.bias  # (B, 3D)
        v_t, x1_t, x2_t = p.split(self.dim, dim=1)  # 3 x (B, D)
        h = self.filter(t + 1).flip(-1)  # (2, D, t+1): h[t - s] lines up with step s
        b1, b2 = self.filter.bias
        v = torch.cat([state["v"], v_t[..., None]], -1)  # (B, D, t+1)
        z_t = x1_t * ((v * h[0]).sum(-1) + b1 * v_t)
        z = torch.cat([state["z"], z_t[..., None]], -1)  # (B, D, t+1)
        y_t = x2_t * ((z * h[1]).sum(-1) + b2 * z_t)
        return self.out_proj(y_t), {"recent": window[..., 1:], "v": v, "z": z}


class GatedMLP(nn.Module):
    """SwiGLU feed-forward (Shazeer, 2020): down(silu(gate(x)) ⊙ up(x)), width 2 D."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.up = nn.Linear(dim, 2 * 2 * dim)  # gate and value halves at once
        self.down = nn.Linear(2 * dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        """Map (..., D) to (..., D), each step on its own."""
        gate, value = self.up(x).chunk(2, dim=-1)  # 2 x (..., 2D)
        return self.down(F.silu(gate) * value)


class SSMBlock(nn.Module):
    """Pre-norm residual block: h + dropout(mixer(norm(h))), then h + mlp(norm(h))."""

    def __init__(self, config: SSMConfig) -> None:
        super().__init__()
        dim = config.hidden_dim
        self.mixer_norm = nn.LayerNorm(dim)
        self.mixer = S4D(dim, config) if config.mixer == "s4d" else Hyena(dim, config)
        self.drop = nn.Dropout(config.dropout)
        self.mlp_norm = nn.LayerNorm(dim)
        self.mlp = GatedMLP(dim)

    def forward(self, h: Tensor) -> Tensor:
        """Map (B, T, D) to (B, T, D)."""
        h = h + self.drop(self.mixer(self.mixer_norm(h)))
        return h + self.mlp(self.mlp_norm(h))

    def step(self, h_t: Tensor, state: Any) -> tuple[Tensor, Any]:
        """One step: h_t (B, D) -> (B, D); the norms and the MLP act on each step alone."""
        y_t, state = self.mixer.step(self.mixer_norm(h_t), state)
        h_t = h_t + self.drop(y_t)
        return h_t + self.mlp(self.mlp_norm(h_t)), state


class SSM(SequenceModel):
    """State-space sequence model: S4D (Gu et al., 2022) or Hyena (Poli et al., 2023) blocks."""

    invariants = frozenset({"causal", "streamable"})

    def __init__(self, config: SSMConfig) -> None:
        super().__init__(config)
        self.stem = nn.Linear(config.in_channels, config.hidden_dim)
        self.blocks = nn.ModuleList(SSMBlock(config) for _ in range(config.num_layers))
        self.norm = nn.LayerNorm(config.hidden_dim)
        self.head = nn.Linear(config.hidden_dim, config.out_dim)

    def optimizer_hints(self) -> dict[str, dict[str, float]]:
        """A and dt of every S4D layer, or every Hyena filter MLP: lr ssm_lr, no decay.

        Both papers train these at a small fixed lr without weight decay: decay would pull
        Re A and log dt toward arbitrary values, and a large lr makes dt jump across scales.
        """
        hint = {"lr": self.config.ssm_lr, "weight_decay": 0.0}
        return {
            f"blocks.{i}.mixer.{name}": dict(hint)
            for i, block in enumerate(self.blocks)
            for name in block.mixer.ssm_parameter_names()
        }

    def _check_length(self, length: int) -> None:
        if self.config.mixer == "hyena" and length > self.config.max_len:
            raise ValueError(
                f"{self.name} expects sequences x of at most max_len={self.config.max_len} "
                f"steps; got T={length}; build the model with a larger max_len."
            )

    def forward(self, x: Tensor, lengths: Tensor | None = None) -> Tensor:
        """Map x (B, T, in_channels) to (B, T, out_dim), or (B, out_dim) when pooled.

        Causal, so the right padding of shorter sequences cannot reach their real steps;
        `lengths` (B,) only chooses the last real step ("last") or masks the mean ("mean").
        """
        check_sequence(
            x, lengths, in_channels=self.config.in_channels, owner=self.name, like=self.head.weight
        )
        self._check_length(x.shape[1])
        h = self.stem(x)  # (B, T, D)
        for block in self.blocks:
            h = block(h)
        h = pool_sequence(self.norm(h), lengths, self.config.pool)  # (B, T, D) or (B, D)
        return self.head(h)

    def initial_state(self, batch_size: int) -> list[Any]:
        """One state per block: (B, D, N/2) complex for S4D, growing histories for Hyena."""
        return [block.mixer.initial_state(batch_size) for block in self.blocks]

    def _check_state(self, state: object, batch: int) -> None:
        """Raise one sentence unless `state` is one from initial_state(batch) or a later step."""
        first = state[0] if isinstance(state, list) and len(state) == len(self.blocks) else None
        if isinstance(first, dict):  # Hyena: histories, and the short conv's last inputs
            first = first.get("recent")
        if not isinstance(first, Tensor) or first.shape[0] != batch:
            raise ValueError(
                f"{self.name} expects a state from initial_state({batch}) for x_t of batch size "
                f"{batch}; pass the state returned by the previous step."
            )

    def step(self, x_t: Tensor, state: list[Any]) -> tuple[Tensor, list[Any]]:
        """One step: x_t (B, in_channels) -> (y_t (B, out_dim), next state)."""
        self._check_step(x_t)
        self._check_state(state, x_t.shape[0])
        h_t = self.stem(x_t)  # (B, D)
        new_state = []
        for block, block_state in zip(self.blocks, state, strict=True):
            h_t, block_state = block.step(h_t, block_state)
            new_state.append(block_state)
        return self.head(self.norm(h_t)), new_state


register("s4d", SSMConfig(hidden_dim=64, num_layers=4, state_dim=64, init="lin"), SSM)
register("s4d-inv", SSMConfig(hidden_dim=64, num_layers=4, state_dim=64, init="inv"), SSM)
register("hyena", SSMConfig(hidden_dim=64, num_layers=3, mixer="hyena", max_len=4096), SSM)
