"""Shape checks at public boundaries: one sentence that names the argument, expected and given."""

from __future__ import annotations

import torch
from torch import Tensor


def check_shape(
    x: object, spec: str, *, owner: str, name: str, what: str = "", **sizes: int
) -> None:
    """Raise one clear sentence unless `x` is a floating tensor whose shape matches `spec`.

    Args:
        x: the value passed by the caller.
        spec: space-separated letters, one per axis, e.g. "B C H W".
        owner: who is checking, e.g. "resnet18"; starts the message.
        name: the argument's name, e.g. "x".
        what: what the tensor holds, e.g. "images"; makes the message read naturally.
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
