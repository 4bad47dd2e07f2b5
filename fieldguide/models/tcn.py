"""Temporal convolutional networks (docs/guide/tcn.md).

Letters: B batch, T time, C channels, D width.

Bai, Kolter & Koltun, "An Empirical Evaluation of Generic Convolutional and Recurrent Networks
for Sequence Modeling" (2018). A stack of residual blocks, each two dilated convolutions with
the same dilation, which doubles from block to block (1, 2, 4, ...), so the receptive field
grows exponentially with depth:

    receptive_field = 1 + 2 (k - 1) (2^L - 1)      (k kernel size, L blocks)

The guide's sketch pads `dilation*(k-1)//2` on both sides, so the output at t sees the future
(forecasts leak) and an even kernel shortens the sequence. Here each convolution pads only on
the left by (k-1)·d, so the model is causal and streams step by step; `causal=False` pads on
both sides instead, left (k-1)·d // 2 and right the rest, as torch's `padding="same"` does,
so the length stays T for every kernel (an even kernel leans one step to the future).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.parametrizations import weight_norm

from fieldguide.layers.sequence import check_sequence, pool_sequence
from fieldguide.models.base import SequenceModel
from fieldguide.models.registry import register

# One streaming buffer per convolution: the last (k-1)·d inputs it saw, (B, C, (k-1)·d).
BlockState = tuple[Tensor, Tensor]


@dataclass(frozen=True)
class TCNConfig:
    """Sizes of a TCN; `create_model` takes any field as an override."""

    in_channels: int = 1
    hidden_dim: int = 64
    num_layers: int = 4  # residual blocks; dilation doubles per block: 1, 2, 4, 8
    kernel_size: int = 3  # taps per convolution, at least 2
    out_dim: int = 1
    dropout: float = 0.1
    causal: bool = True  # pad on the left only; False pads both sides and cannot stream
    weight_norm: bool = False  # weight-normalise the convolutions, as in the paper
    pool: Literal["none", "last", "mean"] = "none"  # per-step outputs, or one per sequence

    def __post_init__(self) -> None:
        for field in ("in_channels", "hidden_dim", "num_layers", "out_dim"):
            if getattr(self, field) < 1:
                raise ValueError(
                    f"TCNConfig.{field} must be at least 1, got {getattr(self, field)}."
                )
        if self.kernel_size < 2:
            raise ValueError(
                f"TCNConfig.kernel_size must be at least 2, got {self.kernel_size}; "
                "a 1-tap convolution sees no other step."
            )
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"TCNConfig.dropout must be in [0, 1), got {self.dropout}.")
        if self.pool not in ("none", "last", "mean"):
            raise ValueError(f"TCNConfig.pool must be 'none', 'last' or 'mean', got {self.pool!r}.")


def dilated_conv(in_ch: int, out_ch: int, k: int, dilation: int, norm: bool) -> nn.Module:
    """Conv1d without padding (the block pads), weight-normalised on request."""
    conv = nn.Conv1d(in_ch, out_ch, k, dilation=dilation)
    # w = g v / ||v||, per output channel (Salimans & Kingma, 2016), as in the paper's TCN.
    return weight_norm(conv) if norm else conv


class TemporalBlock(nn.Module):
    """Residual block: two dilated convolutions, ReLU and dropout, and a shortcut.

    y = relu(drop(relu(conv2(drop(relu(conv1(x)))))) + shortcut(x)); the shortcut is a 1x1
    convolution when the width changes (the first block), the identity otherwise.
    """

    def __init__(self, in_ch: int, dilation: int, config: TCNConfig) -> None:
        super().__init__()
        d, k = config.hidden_dim, config.kernel_size
        self.dilation = dilation
        # Padding is applied by F.pad, never by the conv: a conv pads both sides equally.
        self.context = (k - 1) * dilation  # steps of history each convolution needs
        left = self.context if config.causal else self.context // 2
        self.pad = (left, self.context - left)
        self.conv1 = dilated_conv(in_ch, d, k, dilation, config.weight_norm)
        self.conv2 = dilated_conv(d, d, k, dilation, config.weight_norm)
        self.shortcut = nn.Conv1d(in_ch, d, 1) if in_ch != d else nn.Identity()
        self.act = nn.ReLU()
        self.drop = nn.Dropout(config.dropout)

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        """Map (B, in_ch, T) to (B, hidden_dim, T); `mask` (B, 1, T) marks real steps.

        The caller zeroes x beyond each sequence's end; the block keeps every conv input zero
        there, so a padded batch sees exactly the implicit zero padding of each sequence alone
        (which matters when causal=False) and stays zero there for the next block.
        """
        h = self.drop(self.act(self.conv1(F.pad(x, self.pad))))
        h = h if mask is None else h.masked_fill(~mask, 0.0)
        h = self.drop(self.act(self.conv2(F.pad(h, self.pad))))
        y = self.act(h + self.shortcut(x))
        return y if mask is None else y.masked_fill(~mask, 0.0)

    def initial_state(self, batch_size: int, like: Tensor) -> BlockState:
        """Zero buffers of the last (k-1)·d inputs of each conv: the causal left padding."""
        in_ch, d = self.conv1.in_channels, self.conv2.in_channels
        zeros = like.new_zeros
        return zeros(batch_size, in_ch, self.context), zeros(batch_size, d, self.context)

    def step(self, x_t: Tensor, state: BlockState) -> tuple[Tensor, BlockState]:
        """Map one step (B, in_ch) to (B, hidden_dim) given each conv's buffered history."""
        buf1, buf2 = state
        # Buffer plus the new step is exactly the k dilated taps' window: one output each.
        window1 = torch.cat([buf1, x_t[..., None]], 2)  # (B, in_ch, (k-1)·d + 1)
        h = self.drop(self.act(self.conv1(window1)))  # (B, D, 1)
        window2 = torch.cat([buf2, h], 2)  # (B, D, (k-1)·d + 1)
        h = self.drop(self.act(self.conv2(window2)))  # (B, D, 1)
        y = self.act(h + self.shortcut(x_t[..., None]))[..., 0]  # (B, D)
        return y, (window1[..., 1:], window2[..., 1:])


class TCN(SequenceModel):
    """Temporal convolutional network (Bai et al., 2018): dilated residual conv blocks."""

    def __init__(self, config: TCNConfig) -> None:
        super().__init__(config)
        widths = [config.in_channels] + [config.hidden_dim] * config.num_layers
        self.blocks = nn.ModuleList(
            TemporalBlock(widths[i], 2**i, config) for i in range(config.num_layers)
        )
        self.head = nn.Linear(config.hidden_dim, config.out_dim)

    @property
    def invariants(self) -> frozenset[str]:  # type: ignore[override]
        """Causal and streamable only when causal with per-step outputs, as the checkers test."""
        if self.config.causal and self.config.pool == "none":
            return frozenset({"batch_independent", "causal", "streamable"})
        return frozenset({"batch_independent"})

    @property
    def receptive_field(self) -> int:
        """Input steps the output at one step can see: 1 + 2 (k-1) (2^L - 1).

        Each of the L blocks has two convolutions of dilation 2^i, each widening the field by
        (k-1)·2^i steps; causal models see them all in the past, non-causal ones split them.
        """
        k, layers = self.config.kernel_size, self.config.num_layers
        return 1 + 2 * (k - 1) * (2**layers - 1)

    @property
    def context(self) -> tuple[int, int]:
        """Steps (before, after) t that the output at t can see; they sum to receptive_field-1."""
        before = sum(2 * block.pad[0] for block in self.blocks)
        after = sum(2 * block.pad[1] for block in self.blocks)
        return before, after

    def forward(self, x: Tensor, lengths: Tensor | None = None) -> Tensor:
        """Map sequences x (B, T, in_channels) to (B, T, out_dim), or (B, out_dim) when pooled.

        Args:
            x: right-padded sequences.
            lengths: (B,) real steps of each sequence; padded steps never change real ones.
        """
        mask = check_sequence(
            x, lengths, in_channels=self.config.in_channels, owner=self.name, like=self.head.weight
        )
        h = x.transpose(1, 2)  # (B, C, T): Conv1d wants channels first
        if mask is not None:
            mask = mask[:, None]  # (B, 1, T), broadcast over channels
            h = h.masked_fill(~mask, 0.0)  # masked_fill, not a product: NaN * 0 is NaN
        for block in self.blocks:
            h = block(h, mask)  # (B, D, T), the length kept by the padding
        h = pool_sequence(h.transpose(1, 2), lengths, self.config.pool)  # (B, T, D) or (B, D)
        return self.head(h)  # linear, so pooling before the head equals pooling after

    def initial_state(self, batch_size: int) -> list[BlockState]:
        """Per-conv buffers of zeros, on the model's device and dtype."""
        self._check_streams()
        return [block.initial_state(batch_size, self.head.weight) for block in self.blocks]

    def step(self, x_t: Tensor, state: list[BlockState]) -> tuple[Tensor, list[BlockState]]:
        """One step: x_t (B, in_channels) -> (y_t (B, out_dim), next state), as the forward."""
        self._check_step(x_t)
        self._check_streams()
        if len(state) != len(self.blocks) or state[0][0].shape[0] != x_t.shape[0]:
            raise ValueError(
                f"{self.name} expects a state from initial_state({x_t.shape[0]}) for x_t of "
                f"batch size {x_t.shape[0]}; pass the state returned by the previous step."
            )
        h, new_state = x_t, []
        for block, block_state in zip(self.blocks, state, strict=True):
            h, block_state = block.step(h, block_state)  # (B, D)
            new_state.append(block_state)
        return self.head(h), new_state

    def _check_streams(self) -> None:
        if not self.config.causal:
            raise ValueError(
                f"{self.name} cannot stream because it is not causal (causal=False): its "
                "output at step t needs inputs after t; build it with causal=True to step."
            )


register("tcn", TCNConfig(hidden_dim=64, num_layers=4, kernel_size=3), TCN)
register("tcn-small", TCNConfig(hidden_dim=32, num_layers=3, kernel_size=3), TCN)
register("tcn-noncausal", TCNConfig(hidden_dim=64, num_layers=4, causal=False), TCN)
