"""ImageNet's input statistics, for models pretrained on it (mobilenetv2).

A pretrained network expects the inputs it was trained on: pixels in [0, 1] standardised with
ImageNet's per-channel mean and std, not with the user's folder's own statistics. A run of
such a model re-standardises the images (they are held in [0, 1] before standardising), and
records these statistics in preprocessing.json, so `predict` prepares new images the same way.
Grey images (one channel, read by summed first-layer filters) use the mean of the three
channels' statistics.

Resizing stays the reader's (`--image-size`): small images such as 28x28 Fashion-MNIST
transfer better upscaled, since ImageNet's objects span a hundred pixels or more.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch

MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


def imagenet_standardized(data: Any) -> Any:
    """Image data standardised with ImageNet's statistics instead of its own; else as given."""
    pre = getattr(data, "preprocessing", {})
    if getattr(data, "modality", "") != "images" or "mean" not in pre or "std" not in pre:
        return data
    if not str(pre.get("scale", "")).startswith("pixel values mapped to [0, 1]"):
        return data  # only [0, 1] pixels have ImageNet's meaning
    channels = len(pre["mean"])
    if channels not in (1, 3):
        return data
    mean = list(MEAN) if channels == 3 else [sum(MEAN) / 3]
    std = list(STD) if channels == 3 else [sum(STD) / 3]
    old_m = torch.tensor(pre["mean"], dtype=torch.float32)[:, None, None]
    old_s = torch.tensor(pre["std"], dtype=torch.float32)[:, None, None]
    new_m = torch.tensor(mean)[:, None, None]
    new_s = torch.tensor(std)[:, None, None]
    splits = {}
    for name in ("train", "val", "test"):
        part = getattr(data, name)
        pixels = part.x * old_s + old_m  # back to [0, 1]
        splits[name] = dataclasses.replace(part, x=((pixels - new_m) / new_s).float())
    return dataclasses.replace(
        data,
        **splits,
        preprocessing={**pre, "mean": mean, "std": std, "statistics": "ImageNet's"},
    )
