"""What every sequence model shares: input checks, padding masks, pooling, the streaming pair.

Letters: B batch, T time, C input channels, D width. A batch of sequences is right-padded to a
common length T; `lengths` (B,) says how many steps of each are real. Sequence models map
x (B, T, C) to per-step outputs (B, T, out_dim) when `pool="none"`, or to one output per
sequence (B, out_dim) when `pool` is "last" (the last real step) or "mean" (over real steps).

Streaming: `state = model.initial_state(batch_size)` then `y_t, state = model.step(x_t, state)`
with x_t (B, C) and y_t (B, out_dim). For a causal model, y_t equals the full forward's output at
step t (pool="none"), which is also the pooled output of the prefix ending at t (pool="last").
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from fieldguide.layers.shapes import check_device, check_shape

Pool = Literal["none", "last", "mean"]


def check_sequence(
    x: object,
    lengths: object,
    *,
    in_channels: int,
    owner: str,
    like: Tensor | None = None,
) -> Tensor | None:
    """Check x (B, T, C) and lengths (B,) or None; return the (B, T) mask of real steps or None.

    Args:
        x: right-padded sequences; T must be at least 1, B may be 0.
        lengths: (B,) int64 or int32 real steps of each sequence, on x's device or the CPU.
        in_channels: C.
        owner: who is checking, e.g. "gru"; starts the message.
        like: a parameter of the model, whose device and dtype x must share (check_shape).
    """
    check_shape(x, "B T C", C=in_channels, owner=owner, name="x", what="sequences", like=like)
    b, t, _ = x.shape
    if t == 0:
        raise ValueError(
            f"{owner} expects sequences x of at least one step; got shape {tuple(x.shape)}."
        )
    if lengths is None:
        return None
    if not isinstance(lengths, Tensor) or lengths.dtype not in (torch.int32, torch.int64):
        got = (
            type(lengths).__name__ if not isinstance(lengths, Tensor) else f"dtype {lengths.dtype}"
        )
        raise TypeError(f"{owner} expects lengths as an integer tensor of shape ({b},); got {got}.")
    if lengths.shape != (b,):
        raise ValueError(f"{owner} expects lengths of shape ({b},); got {tuple(lengths.shape)}.")
    check_device(lengths, x.device, owner=owner, name="lengths", cpu_ok=True)
    if bool((lengths < 1).any()):
        raise ValueError(
            f"{owner} expects lengths with every length >= 1; got {int(lengths.min())}."
        )
    if bool((lengths > t).any()):
        raise ValueError(
            f"{owner} got a length of {int(lengths.max())} but x has only T={t} steps; "
            "lengths count the real (unpadded) steps of each sequence."
        )
    return torch.arange(t, device=x.device) < lengths.to(x.device)[:, None]  # (B, T)


def pool_sequence(h: Tensor, lengths: Tensor | None, pool: str) -> Tensor:
    """Pool per-step features h (B, T, D) into (B, D), or return h unchanged for "none"."""
    if pool == "none":
        return h
    b, t, _ = h.shape
    if pool == "last":
        if lengths is None:
            return h[:, -1]
        index = (lengths.to(h.device) - 1).view(b, 1, 1).expand(b, 1, h.shape[-1])  # (B, 1, D)
        return h.gather(1, index).squeeze(1)
    if pool == "mean":
        if lengths is None:
            return h.mean(1)
        mask = (torch.arange(t, device=h.device) < lengths.to(h.device)[:, None]).to(h.dtype)
        return (h * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)
    raise ValueError(f"pool must be 'none', 'last' or 'mean'; got '{pool}'.")
