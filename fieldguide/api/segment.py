"""Applying a segmentation run to whole images: tiled inference, mask and overlay PNGs.

`tiled_logits` runs a per-pixel model over an image of any size in tiles of `tile` pixels
that overlap by 2 * `margin`. Each tile keeps only its centre (its `margin` pixels along an
inner edge are dropped), so every kept pixel saw at least `margin` pixels of real context on
each side. The image is first padded as one pass would pad it (`model.pad`), so tile origins
sit on the model's 2^depth grid and no tile is padded again. So for a model whose outputs
depend only on nearby pixels (BatchNorm in eval mode, or no norm) and a margin of at least half
the receptive field, the stitched logits equal one pass over the whole image; an image that
fits in one tile is one pass. GroupNorm normalises over each tile's own pixels, so there
tiles differ slightly from one pass: tile only what does not fit in memory (the default tile,
1024, keeps most images whole).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

DEFAULT_TILE = 1024
# Overlay colours (RGB) of classes 1, 2, ...; class 0 (background) is left untinted.
PALETTE = [(255, 64, 64), (64, 200, 64), (64, 128, 255), (255, 200, 0), (200, 64, 255)]
OVERLAY_ALPHA = 0.45


def grid_of(model: nn.Module) -> int:
    """The multiple tile origins must sit on: 2^depth for a U-Net, else 1."""
    depth = getattr(getattr(model, "config", None), "depth", 0)
    return 2**depth


def default_margin(model: nn.Module, tile: int) -> int:
    """Half the model's receptive field, rounded up to its grid, at most a quarter tile."""
    grid = grid_of(model)
    half = math.ceil(getattr(model, "receptive_field", 2 * grid) / 2)
    margin = math.ceil(half / grid) * grid
    return min(margin, (tile // 4) // grid * grid)


@torch.no_grad()
def tiled_logits(
    model: nn.Module, image: Tensor, *, tile: int = DEFAULT_TILE, margin: int | None = None
) -> Tensor:
    """Logits (K, H, W) of `image` (C, H, W), computed in overlapping tiles (module docstring).

    Args:
        model: A per-pixel model: (B, C, h, w) -> (B, K, h, w) for any h, w.
        image: One image, already standardised as in training.
        tile: Side of a tile; a multiple of the model's grid.
        margin: Pixels dropped along each inner tile edge; by default half the receptive field.
    """
    grid = grid_of(model)
    if tile < 1 or tile % grid:
        raise ValueError(f"tiled_logits expects tile as a positive multiple of {grid}; got {tile}.")
    margin = default_margin(model, tile) if margin is None else margin
    if margin < 0 or margin % grid or tile - 2 * margin < grid:
        raise ValueError(
            f"tiled_logits expects margin as a multiple of {grid} with tile - 2 * margin >= "
            f"{grid}; got margin {margin} for tile {tile}."
        )
    _, h, w = image.shape
    if h <= tile and w <= tile:
        return model(image[None])[0]
    # Pad once as one pass would (a U-Net centres its padding), so that every tile is a
    # multiple of the grid, needs no padding of its own and pools on the whole image's grid.
    if callable(getattr(model, "pad", None)):
        padded, (crop_rows, crop_cols) = model.pad(image[None])
        padded = padded[0]
    else:
        padded, crop_rows, crop_cols = image, slice(0, h), slice(0, w)
    _, hp, wp = padded.shape
    rows, cols = _spans(hp, tile, margin), _spans(wp, tile, margin)
    out: Tensor | None = None
    for top, bottom, keep_top, keep_bottom in rows:
        for left, right, keep_left, keep_right in cols:
            logits = model(padded[None, :, top:bottom, left:right])[0]
            if out is None:
                out = logits.new_empty(logits.shape[0], hp, wp)
            out[:, keep_top:keep_bottom, keep_left:keep_right] = logits[
                :, keep_top - top : keep_bottom - top, keep_left - left : keep_right - left
            ]
    assert out is not None
    return out[:, crop_rows, crop_cols]


def _spans(size: int, tile: int, margin: int) -> list[tuple[int, int, int, int]]:
    """(start, end, keep_start, keep_end) of the tiles along one axis of `size` pixels."""
    stride = tile - 2 * margin
    spans, start = [], 0
    while True:
        end = min(start + tile, size)
        keep_start = start + margin if start else 0
        keep_end = size if end == size else end - margin
        spans.append((start, end, keep_start, keep_end))
        if end == size:
            return spans
        start += stride


def mask_image(mask: np.ndarray, num_classes: int) -> np.ndarray:
    """A mask as uint8 pixels: 0/255 for two classes, else the class ids."""
    if num_classes == 2:
        return (mask * 255).astype(np.uint8)
    return mask.astype(np.uint8)


def overlay(pixels: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """RGB uint8 (H, W, 3): the image, contrast-stretched to grey, tinted where a class is found.

    Args:
        pixels: The image as read, (C, H, W) floats.
        mask: Class ids (H, W).
    """
    grey = pixels.mean(axis=0)
    lo, hi = np.percentile(grey, [1, 99])
    grey = np.clip((grey - lo) / max(hi - lo, 1e-12), 0, 1) * 255
    rgb = np.repeat(grey[..., None], 3, axis=2)
    for c in range(1, int(mask.max()) + 1):
        colour = np.array(PALETTE[(c - 1) % len(PALETTE)], dtype=np.float64)
        where = mask == c
        rgb[where] = (1 - OVERLAY_ALPHA) * rgb[where] + OVERLAY_ALPHA * colour
    return rgb.round().astype(np.uint8)


def write_png(path: Path, pixels: np.ndarray) -> None:
    """Save uint8 (H, W) or (H, W, 3) pixels as a PNG, through a temporary file."""
    from PIL import Image

    partial = path.with_name(path.name + ".partial")
    Image.fromarray(pixels).save(partial, format="PNG")
    partial.replace(path)
