"""Input checks at public boundaries: one sentence that names the argument, expected and given.

Models call these once per forward, on shapes, dtypes and devices only (cheap Python), and
their inner blocks trust what passed. The rules every family shares:

- A floating input such as x must be in the model's own dtype (float32 as built) and on its
  device: pass a parameter as `like`. No dtype is cast silently; under autocast, inputs in the
  autocast dtype are accepted too, since autocast decides the precision of each op.
- Integer inputs (token ids, lengths, edge_index) are int64 or int32 tensors on the model's
  device (`lengths` may also stay on the CPU, where packing wants them).
"""

from __future__ import annotations

import torch
from torch import Tensor


def check_shape(
    x: object,
    spec: str,
    *,
    owner: str,
    name: str,
    what: str = "",
    like: Tensor | None = None,
    **sizes: int,
) -> None:
    """Raise one clear sentence unless `x` is a floating tensor whose shape matches `spec`.

    Args:
        x: the value passed by the caller.
        spec: space-separated letters, one per axis, e.g. "B C H W".
        owner: who is checking, e.g. "resnet18"; starts the message.
        name: the argument's name, e.g. "x".
        what: what the tensor holds, e.g. "images"; makes the message read naturally.
        like: a tensor of the model (a parameter) whose device and dtype x must share; the
            dtype may also be the autocast dtype while autocast is on. None checks neither.
        **sizes: letters whose size is fixed, e.g. C=3.
    """
    letters = spec.split()
    expected = "(" + ", ".join(str(sizes.get(letter, letter)) for letter in letters) + ")"
    noun = f"{what} {name}" if what else name
    if not isinstance(x, Tensor):
        raise TypeError(
            f"{owner} expects {noun} as a torch.Tensor of shape {expected}; got {type(x).__name__}."
        )
    if not torch.is_floating_point(x):
        raise TypeError(f"{owner} expects {noun} as a floating-point tensor; got dtype {x.dtype}.")
    given = tuple(x.shape)
    wrong_rank = x.ndim != len(letters)
    wrong_size = not wrong_rank and any(
        letter in sizes and size != sizes[letter]
        for letter, size in zip(letters, given, strict=True)
    )
    if wrong_rank or wrong_size:
        raise ValueError(f"{owner} expects {noun} of shape {expected}; got {given}.")
    if like is not None:
        check_device(x, like.device, owner=owner, name=name, what=what)
        if x.dtype != like.dtype and x.dtype != autocast_dtype(x.device.type):
            raise TypeError(
                f"{owner} expects {noun} in the model's dtype {like.dtype}; got {x.dtype}; "
                f"convert it with {name}.to({like.dtype}) or the model with model.to({x.dtype})."
            )


def check_device(
    x: Tensor,
    device: torch.device,
    *,
    owner: str,
    name: str,
    what: str = "",
    cpu_ok: bool = False,
) -> None:
    """Raise one sentence unless tensor `x` is on `device` (or on the CPU, when `cpu_ok`)."""
    if x.device == device or (cpu_ok and x.device.type == "cpu"):
        return
    noun = f"{what} {name}" if what else name
    where = f"{device} or the CPU" if cpu_ok and device.type != "cpu" else str(device)
    raise ValueError(
        f"{owner} expects {noun} on the model's device, {where}; got a tensor on {x.device}."
    )


def autocast_dtype(device_type: str) -> torch.dtype | None:
    """The dtype autocast runs in on `device_type` ("cpu", "cuda"), or None when it is off."""
    try:
        enabled = torch.is_autocast_enabled(device_type)
    except TypeError:  # torch < 2.4 takes no device type
        enabled = (
            torch.is_autocast_cpu_enabled() if device_type == "cpu" else torch.is_autocast_enabled()
        )
    if not enabled:
        return None
    if hasattr(torch, "get_autocast_dtype"):
        return torch.get_autocast_dtype(device_type)
    if device_type == "cpu":
        return torch.get_autocast_cpu_dtype()
    return torch.get_autocast_gpu_dtype()


def check_token_ids(
    x: object,
    *,
    owner: str,
    name: str,
    vocab_size: int,
    max_len: int | None = None,
    ndim: int = 2,
    device: torch.device | None = None,
) -> None:
    """Raise one sentence unless x is an integer tensor of ids in [0, vocab_size), rank `ndim`.

    ndim 2 is a batch of sequences (B, T), 1 to `max_len` ids long; ndim 1 is one step (B,).
    With `device`, the ids must be there (the embedding's device). The range check reads the
    ids' min and max: the one scan over the data that a wrong id (a silent gather out of
    bounds on a GPU) is worth.
    """
    shape = "(B, T)" if ndim == 2 else "(B,)"
    if not isinstance(x, Tensor):
        raise TypeError(
            f"{owner} expects token ids {name} as a torch.Tensor of shape {shape}; "
            f"got {type(x).__name__}."
        )
    if x.dtype not in (torch.int64, torch.int32):
        raise TypeError(
            f"{owner} expects token ids {name} as an int64 tensor; got dtype {x.dtype}; "
            f"ids index the embedding table, so pass {name}.long()."
        )
    if x.ndim != ndim:
        raise ValueError(
            f"{owner} expects token ids {name} of shape {shape}; got {tuple(x.shape)}."
        )
    if ndim == 2 and x.shape[1] == 0:
        raise ValueError(
            f"{owner} expects token ids {name} of at least one token per sequence; "
            f"got shape {tuple(x.shape)}."
        )
    if max_len is not None and x.shape[-1] > max_len:
        raise ValueError(
            f"{owner} expects token ids {name} of at most max_len={max_len} steps; got "
            f"{x.shape[-1]}; build it with a larger max_len or rotary positions."
        )
    if device is not None:
        check_device(x, device, owner=owner, name=name, what="token ids")
    # The range scan reads values: torch.export cannot trace it, so an export skips it.
    if x.numel() > 0 and not torch.compiler.is_exporting():
        low, high = int(x.min()), int(x.max())
        if low < 0 or high >= vocab_size:
            raise ValueError(
                f"{owner} expects token ids {name} in [0, {vocab_size}); got ids from {low} "
                f"to {high}."
            )


def check_images(x: object, channels: int, *, owner: str, like: Tensor | None = None) -> None:
    """`check_shape` for images x (B, channels, H, W), and one sentence unless H, W >= 1."""
    check_shape(x, "B C H W", C=channels, owner=owner, name="x", what="images", like=like)
    height, width = x.shape[-2:]  # type: ignore[union-attr]
    if height == 0 or width == 0:
        raise ValueError(
            f"{owner} expects images x of at least 1x1 pixels; got {height}x{width} in a batch "
            f"of shape {tuple(x.shape)}."  # type: ignore[union-attr]
        )
