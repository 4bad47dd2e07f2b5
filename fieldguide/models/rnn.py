"""Recurrent networks: vanilla RNN, GRU and LSTM (docs/guide/rnn.md).

Letters: B batch, T time, C channels.

Elman, "Finding Structure in Time" (1990); Hochreiter & Schmidhuber, "Long Short-Term Memory"
(1997); Cho et al., "Learning Phrase Representations using RNN Encoder-Decoder" (2014, the GRU).
The recurrence runs on torch's fused `nn.RNN` / `nn.GRU` / `nn.LSTM` (1.4-1.6x a hand-written
loop, perf-notes.md) and a linear head maps each step's top-layer state to `out_dim`: per-step
outputs for forecasting (pool="none") or one output per sequence for classification.

Variable-length batches are right-padded and described by `lengths` (B,). They are packed
before the recurrence, so padding never reaches a real step in either direction: the backward
direction of a bidirectional model starts at each sequence's own last real step. Outputs at
padded steps are zeros. A unidirectional model is causal and streams one step at a time
through `initial_state` / `step`; a bidirectional one does neither.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from fieldguide.layers.sequence import check_sequence, pool_sequence
from fieldguide.layers.shapes import check_shape
from fieldguide.models.base import SequenceModel
from fieldguide.models.registry import register

# The fused torch module behind each cell.
CELLS = {"rnn": nn.RNN, "gru": nn.GRU, "lstm": nn.LSTM}

# An LSTM state is (h, c); RNN and GRU states are h alone. Each is (num_layers, B, hidden_dim).
State = Tensor | tuple[Tensor, Tensor]


@dataclass(frozen=True)
class RNNConfig:
    """Sizes of a recurrent network; `create_model` takes any field as an override."""

    cell: Literal["rnn", "gru", "lstm"] = "gru"  # rnn is Elman's tanh cell
    in_channels: int = 1
    hidden_dim: int = 64
    num_layers: int = 2  # stacked recurrent layers, each reading the one below
    out_dim: int = 1  # targets per step for forecasting, classes for classification
    bidirectional: bool = False  # also read right to left; gives up causality and streaming
    dropout: float = 0.0  # between stacked layers (torch's), so it needs num_layers >= 2
    pool: Literal["none", "last", "mean"] = "none"  # per-step outputs, or one per sequence

    def __post_init__(self) -> None:
        if self.cell not in CELLS:
            raise ValueError(f"RNNConfig.cell must be 'rnn', 'gru' or 'lstm', got {self.cell!r}.")
        for field in ("in_channels", "hidden_dim", "num_layers", "out_dim"):
            if getattr(self, field) < 1:
                raise ValueError(
                    f"RNNConfig.{field} must be at least 1, got {getattr(self, field)}."
                )
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"RNNConfig.dropout must be in [0, 1), got {self.dropout}.")
        if self.dropout > 0 and self.num_layers == 1:
            # torch would only warn and then drop nothing: its dropout sits between layers.
            raise ValueError(
                f"RNNConfig.dropout acts between stacked layers only, so it needs "
                f"num_layers >= 2; got dropout={self.dropout} with num_layers=1."
            )
        if self.pool not in ("none", "last", "mean"):
            raise ValueError(f"RNNConfig.pool must be 'none', 'last' or 'mean', got {self.pool!r}.")


class RNN(SequenceModel):
    """Stacked RNN, GRU or LSTM (Elman 1990; Hochreiter & Schmidhuber 1997; Cho et al. 2014)."""

    def __init__(self, config: RNNConfig) -> None:
        super().__init__(config)
        self.recurrent = CELLS[config.cell](
            config.in_channels,
            config.hidden_dim,
            num_layers=config.num_layers,
            batch_first=True,
            dropout=config.dropout,
            bidirectional=config.bidirectional,
        )
        directions = 2 if config.bidirectional else 1
        self.head = nn.Linear(directions * config.hidden_dim, config.out_dim)
        self._init_weights()

    def _init_weights(self) -> None:
        # As in Keras (docs/guide/README.md#training-habits): orthogonal recurrent matrices keep
        # the norm of h through time at init; Xavier for input weights (the gates are sigmoid and
        # tanh); zero biases. Each weight stacks one (hidden_dim, ·) block per gate, and each
        # block gets its own init, so every gate's recurrent matrix is orthogonal on its own.
        h = self.config.hidden_dim
        with torch.no_grad():
            for name, param in self.recurrent.named_parameters():
                for block in param.split(h, dim=0):
                    if name.startswith("weight_hh"):
                        nn.init.orthogonal_(block)
                    elif name.startswith("weight_ih"):
                        nn.init.xavier_uniform_(block)
                    else:
                        nn.init.zeros_(block)
                # LSTM gates are ordered (input, forget, cell, output). bias_ih and bias_hh
                # are summed inside the cell, so only bias_ih's forget block is set to 1: the
                # sum is 1 and the cell starts by keeping its memory (Jozefowicz et al., 2015).
                if self.config.cell == "lstm" and name.startswith("bias_ih"):
                    param[h : 2 * h].fill_(1.0)

    @property
    def invariants(self) -> frozenset[str]:  # type: ignore[override]
        """`causal` and `streamable` for unidirectional models with per-step outputs."""
        # A bidirectional model reads the future; a pooled one has no per-step output to
        # check (its `step` still gives the pooled output of each prefix for pool="last").
        if self.config.bidirectional or self.config.pool != "none":
            return frozenset()
        return frozenset({"causal", "streamable"})

    def forward(self, x: Tensor, lengths: Tensor | None = None) -> Tensor:
        """Map sequences x (B, T, in_channels), right-padded to `lengths` (B,), to outputs.

        Returns (B, T, out_dim) for pool="none", zero at padded steps, or (B, out_dim) for
        pool="last" (the last real step) and pool="mean" (the mean over real steps).
        """
        mask = check_sequence(
            x, lengths, in_channels=self.config.in_channels, owner=self.name, like=self.head.weight
        )
        h = self._encode(x, lengths)  # (B, T, directions * hidden_dim), zero at padding
        if self.config.pool == "none":
            y = self.head(h)  # (B, T, out_dim)
            return y if mask is None else y.masked_fill(~mask[..., None], 0.0)
        if self.config.pool == "last" and self.config.bidirectional:
            d = self.config.hidden_dim
            # Each direction's final state: forward at the last real step, backward at step
            # 0, where it has read the whole sequence.
            forward_last = pool_sequence(h[..., :d], lengths, "last")  # (B, hidden_dim)
            return self.head(torch.cat([forward_last, h[:, 0, d:]], dim=-1))
        return self.head(pool_sequence(h, lengths, self.config.pool))  # (B, out_dim)

    def _encode(self, x: Tensor, lengths: Tensor | None) -> Tensor:
        """Top-layer states (B, T, directions * hidden_dim), zeros at padded steps."""
        cpu_lengths = None if lengths is None else lengths.cpu()  # torch packs with CPU lengths
        if cpu_lengths is None or bool((cpu_lengths == x.shape[1]).all()):
            # Nothing is padded: the unpacked path is the same computation, and packing costs
            # a GRU twice the time (measured: 75 vs 37 ms fwd+bwd at B=T=D=64).
            return self.recurrent(x)[0]
        # Packing runs each sequence for its own length only.
        packed = pack_padded_sequence(x, cpu_lengths, batch_first=True, enforce_sorted=False)
        h, _ = pad_packed_sequence(
            self.recurrent(packed)[0], batch_first=True, total_length=x.shape[1]
        )
        return h

    def initial_state(self, batch_size: int) -> State:
        """Zero state (num_layers, batch_size, hidden_dim); for an LSTM the pair (h, c)."""
        self._check_streams()
        weight = self.head.weight  # the state follows the model's device and dtype
        h = weight.new_zeros(self.config.num_layers, batch_size, self.config.hidden_dim)
        return (h, torch.zeros_like(h)) if self.config.cell == "lstm" else h

    def step(self, x_t: Tensor, state: State) -> tuple[Tensor, State]:
        """One step: x_t (B, in_channels) and a state to y_t (B, out_dim) and the next state.

        y_t equals forward's output at this step (pool="none"), which is also the pooled output
        of the prefix read so far (pool="last").
        """
        self._check_streams()
        self._check_step(x_t)
        for part in state if isinstance(state, tuple) else (state,):
            check_shape(
                part,
                "L B D",
                L=self.config.num_layers,
                B=x_t.shape[0],
                D=self.config.hidden_dim,
                owner=self.name,
                name="state",
                what="recurrent",
                like=self.head.weight,
            )
        # The fused module on a length-1 sequence: the same cells and weights as forward.
        h, state = self.recurrent(x_t[:, None], state)  # h: (B, 1, hidden_dim)
        return self.head(h[:, 0]), state

    def _check_streams(self) -> None:
        if self.config.bidirectional:
            raise NotImplementedError(
                f"{self.name} is bidirectional and cannot stream, since its backward direction "
                "starts at the end of the sequence; build it with bidirectional=False to step."
            )


register("rnn", RNNConfig(cell="rnn", hidden_dim=64, num_layers=2), RNN)
register("gru", RNNConfig(cell="gru", hidden_dim=64, num_layers=2), RNN)
register("lstm", RNNConfig(cell="lstm", hidden_dim=64, num_layers=2), RNN)
register("gru-bi", RNNConfig(cell="gru", hidden_dim=64, num_layers=2, bidirectional=True), RNN)
