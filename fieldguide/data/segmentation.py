"""Segmentation data: images with one class id per pixel, from a mask folder or the nuclei starter.

A `SegmentationData` holds whole images per split, of any sizes, with their masks; training
cuts random crops from them (the task does, `fieldguide.tasks.segmentation`), evaluation reads
whole images. Pixels are standardised per channel with the mean and std of the train split's
pixels only.

The user's layout (`load_mask_folder`):

    data/images/NAME.png   one image per example (PNG, JPEG, BMP or TIFF; grey, RGB or RGBA)
    data/masks/NAME.png    its mask, same stem, same height and width (any of those formats)
    data/classes.txt       optional: one class name per line, class id = line number - 1

A mask holds class ids (0 = the first class, usually background), or 0 and 255 for a binary
mask (255 read as class 1); a palette PNG mask holds them as its palette indices, whatever the
colours. Without classes.txt the classes are "background" and "foreground" for binary masks,
else "0", "1", ... up to the largest id found. At most 256 classes. Every bad pair is refused
in one sentence naming the file before anything is written.

The nuclei starter (`load_nuclei`) is one 512x512 fluorescence image of the 2018 Data Science
Bowl shipped with stardist, with its instance mask read as nucleus vs background: the left three
quarters (columns 0-383) train, the right quarter (columns 384-511) is cut in two along its
height, rows 0-255 validate and rows 256-511 test. Those parts never overlap.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fieldguide.data.base import safe_name

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
MAX_CLASSES = 256
# The nuclei starter's cut: training columns, then the held-out quarter split by rows.
NUCLEI_TRAIN_COLUMNS = 384
NUCLEI_SPLIT_ROW = 256


@dataclass
class SegmentationSplit:
    """Whole images of one split and their masks.

    Attributes:
        images: float32 (C, H, W) each, standardised; sizes may differ between images.
        masks: int64 (H, W) each, class ids in [0, K).
        names: Where each image came from (a file name, or a region of the starter image).
    """

    images: list[torch.Tensor]
    masks: list[torch.Tensor]
    names: list[str]

    def __len__(self) -> int:
        return len(self.images)

    @property
    def pixels(self) -> int:
        """Pixels in all the images of the split."""
        return sum(int(m.numel()) for m in self.masks)


@dataclass
class SegmentationData:
    """A segmentation dataset in memory: whole images per split, with per-pixel class ids.

    Attributes:
        name: Short, filesystem-safe name for run folders.
        train, val, test: The splits; statistics come from train alone.
        classes: Class names; class id i names classes[i].
        description: One line for reports.
        preprocessing: How files became tensors (channel mean and std, mask reading); JSON.
        synthetic: True for generated data.
    """

    name: str
    train: SegmentationSplit
    val: SegmentationSplit
    test: SegmentationSplit
    classes: list[str]
    description: str = ""
    preprocessing: dict[str, Any] = field(default_factory=dict)
    synthetic: bool = False
    modality: str = "segmentation"  # images with masks: what `auto` and the selector read

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """(C, H, W) with H and W the smallest height and width of the training images."""
        c = self.train.images[0].shape[0]
        return (
            c,
            min(int(i.shape[1]) for i in self.train.images),
            min(int(i.shape[2]) for i in self.train.images),
        )


def _standardised(
    parts: dict[str, tuple[list[np.ndarray], list[np.ndarray], list[str]]],
) -> tuple[dict[str, SegmentationSplit], list[float], list[float]]:
    """Splits with each channel scaled by the train pixels' mean and std (float64 statistics)."""
    train = parts["train"][0]
    channels = train[0].shape[0]
    stacked = np.concatenate([a.reshape(channels, -1) for a in train], axis=1).astype(np.float64)
    mean, std = stacked.mean(axis=1), stacked.std(axis=1)
    std[std < 1e-12] = 1.0  # a constant channel stays at 0
    splits = {}
    for key, (images, masks, names) in parts.items():
        scaled = [
            torch.from_numpy(((a - mean[:, None, None]) / std[:, None, None]).astype(np.float32))
            for a in images
        ]
        splits[key] = SegmentationSplit(
            scaled, [torch.from_numpy(m.astype(np.int64)) for m in masks], names
        )
    return splits, mean.tolist(), std.tolist()


# ---------------------------------------------------------------------------------------------
# Reading files
# ---------------------------------------------------------------------------------------------


def read_array(path: Path, *, palette_indices: bool = False) -> np.ndarray:
    """The pixels of an image file as stored (H, W) or (H, W, C): TIFF by tifffile, else PIL.

    A palette image reads as its RGB colours, or as its palette indices with `palette_indices`
    (how masks saved by VOC-style tools hold their class ids).
    """
    if path.suffix.lower() in (".tif", ".tiff"):
        try:
            import tifffile
        except ImportError:
            raise ValueError(
                f"reading TIFF file {path} needs the tifffile package; install it with "
                f"`pip install tifffile`, or save the file as PNG."
            ) from None
        try:
            array = np.asarray(tifffile.imread(path))
        except Exception as error:  # tifffile raises many kinds on damaged files
            raise ValueError(f"TIFF file {path} could not be read ({error}).") from None
        if array.ndim == 3 and array.shape[0] in (3, 4) and array.shape[2] not in (3, 4):
            array = array.transpose(1, 2, 0)  # channels first, as some tools save them
        return array
    from PIL import Image

    try:
        with Image.open(path) as image:
            image.load()
            if image.mode == "P" and not palette_indices:
                image = image.convert("RGB")
            return np.asarray(image)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as error:
        raise ValueError(
            f"image {path} could not be decoded ({error}); fix or remove it."
        ) from None


def image_channels(array: np.ndarray, path: Path) -> np.ndarray:
    """An image's pixels as float64 (C, H, W) in [0, 1] for integer files (C = 1 or 3)."""
    if array.ndim == 3 and array.shape[2] == 4:
        array = array[..., :3]  # alpha dropped
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[..., 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] != 3):
        raise ValueError(
            f"image {path} has pixels of shape {array.shape}; expected (H, W) grey or "
            f"(H, W, 3) colour."
        )
    if array.dtype == np.bool_:
        array = array.astype(np.uint8)
    if array.dtype.kind in "iu":
        scale = float(np.iinfo(array.dtype).max)
        values = array.astype(np.float64) / scale
    elif array.dtype.kind == "f":
        values = array.astype(np.float64)
        if not np.isfinite(values).all():
            raise ValueError(f"image {path} holds NaN or infinite pixels; expected finite ones.")
    else:
        raise ValueError(f"image {path} has pixels of type {array.dtype}; expected numbers.")
    return values[None] if values.ndim == 2 else values.transpose(2, 0, 1)


def mask_ids(array: np.ndarray, path: Path) -> np.ndarray:
    """A mask file's class ids (H, W) int64; a 0/255 mask becomes 0/1."""
    if array.ndim == 3:
        if not (array == array[..., :1]).all():
            raise ValueError(
                f"mask {path} has {array.shape[2]} channels that differ; expected one class id "
                f"per pixel (a grey image)."
            )
        array = array[..., 0]
    if array.ndim != 2:
        raise ValueError(f"mask {path} has shape {array.shape}; expected (H, W) class ids.")
    if array.dtype.kind == "f":
        if not np.isfinite(array).all() or (array != np.round(array)).any():
            raise ValueError(
                f"mask {path} holds values that are not whole numbers; expected "
                f"class ids 0, 1, 2, ..."
            )
    elif array.dtype.kind not in "iub":
        raise ValueError(f"mask {path} has values of type {array.dtype}; expected class ids.")
    ids = array.astype(np.int64)
    if ids.size and int(ids.min()) < 0:
        raise ValueError(
            f"mask {path} holds the negative value {int(ids.min())}; expected class "
            f"ids 0, 1, 2, ..."
        )
    values = np.unique(ids)
    if len(values) <= 2 and values[-1] == 255:
        return (ids == 255).astype(np.int64)  # a binary mask saved as 0 and 255
    if int(values[-1]) >= MAX_CLASSES:
        raise ValueError(
            f"mask {path} holds class id {int(values[-1])}; at most {MAX_CLASSES} classes "
            f"(ids 0-{MAX_CLASSES - 1}) are read, so an instance mask needs its ids mapped to "
            f"classes first."
        )
    return ids


def _files(folder: Path) -> dict[str, Path]:
    """Image files of `folder` by stem; one sentence when two files share a stem."""
    found: dict[str, Path] = {}
    for p in sorted(folder.iterdir()):
        if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith("."):
            if p.stem in found:
                raise ValueError(
                    f"folder {folder} holds {found[p.stem].name} and {p.name} with the same "
                    f"name; keep one file per example."
                )
            found[p.stem] = p
    return found


def is_mask_folder(path: str | os.PathLike[str]) -> bool:
    """Whether `path` is a folder holding sub-folders images/ and masks/."""
    root = Path(path)
    return (root / "images").is_dir() and (root / "masks").is_dir()


def load_mask_folder(
    path: str | os.PathLike[str],
    *,
    seed: int = 0,
    val_fraction: float = 0.15,
    test_fraction: float = 0.15,
) -> SegmentationData:
    """Images and masks from `path`/images and `path`/masks (see the module docstring).

    Pairs are split at random by seed: round(n * val_fraction) validate, round(n * test_fraction)
    test, at least one each, the rest train.
    """
    root = Path(path)
    images, masks = _files(root / "images"), _files(root / "masks")
    for stem in images:
        if stem not in masks:
            raise ValueError(
                f"image {images[stem]} has no mask; expected {root / 'masks' / stem}.png (or "
                f"another image suffix) with the same name."
            )
    for stem in masks:
        if stem not in images:
            raise ValueError(
                f"mask {masks[stem]} has no image; expected {root / 'images' / stem}.png (or "
                f"another image suffix) with the same name."
            )
    if len(images) < 3:
        raise ValueError(
            f"mask folder {root} holds {len(images)} image and mask pair"
            f"{'s' * (len(images) != 1)}; training, validation and test need at least 3."
        )
    names = None
    if (root / "classes.txt").is_file():
        names = [
            line.strip()
            for line in (root / "classes.txt").read_text(encoding="utf-8").splitlines()
            if line.strip()
        ]
        if not 2 <= len(names) <= MAX_CLASSES:
            raise ValueError(
                f"{root / 'classes.txt'} names {len(names)} classes; expected 2 to "
                f"{MAX_CLASSES}, one per line."
            )
    arrays, ids, stems, channels, binary = [], [], sorted(images), None, True
    for stem in stems:
        image = image_channels(read_array(images[stem]), images[stem])
        mask_raw = read_array(masks[stem], palette_indices=True)
        mask = mask_ids(mask_raw, masks[stem])
        if mask.shape != image.shape[1:]:
            raise ValueError(
                f"mask {masks[stem]} is {mask.shape[0]}x{mask.shape[1]} but its image "
                f"{images[stem].name} is {image.shape[1]}x{image.shape[2]}; expected the same "
                f"height and width."
            )
        if channels is not None and image.shape[0] != channels:
            raise ValueError(
                f"image {images[stem]} has {image.shape[0]} channel(s) but {stems[0]} has "
                f"{channels}; expected every image grey or every image colour."
            )
        channels = image.shape[0]
        binary &= int(np.max(mask_raw)) in (0, 1, 255) and len(np.unique(mask)) <= 2
        if names is not None and int(mask.max()) >= len(names):
            raise ValueError(
                f"mask {masks[stem]} holds class id {int(mask.max())} but classes.txt names "
                f"{len(names)} classes (ids 0-{len(names) - 1})."
            )
        arrays.append(image)
        ids.append(mask)
    if names is None:
        top = max(int(m.max()) for m in ids)
        names = (
            ["background", "foreground"] if binary or top < 1 else [str(i) for i in range(top + 1)]
        )
    n = len(stems)
    order = np.random.default_rng(seed).permutation(n)
    n_val, n_test = max(1, round(n * val_fraction)), max(1, round(n * test_fraction))
    if n - n_val - n_test < 1:
        raise ValueError(
            f"mask folder {root} holds {n} pairs, too few for val_fraction={val_fraction} and "
            f"test_fraction={test_fraction} to leave one for training; add pairs or lower them."
        )
    parts_index = (order[n_val + n_test :], order[:n_val], order[n_val : n_val + n_test])
    parts = {
        key: ([arrays[i] for i in index], [ids[i] for i in index], [stems[i] for i in index])
        for key, index in zip(("train", "val", "test"), parts_index, strict=True)
    }
    splits, mean, std = _standardised(parts)
    counts = {key: len(s) for key, s in splits.items()}
    return SegmentationData(
        name=safe_name(root.resolve().name),
        **splits,
        classes=names,
        description=(
            f"mask folder '{root.name}': {n} images with masks ({counts['train']} train, "
            f"{counts['val']} val, {counts['test']} test), {len(names)} classes"
        ),
        preprocessing={
            "reader": "mask-folder",
            "channels": channels,
            "mean": mean,
            "std": std,
            "scale": "integer pixels divided by their type's maximum, then each channel "
            "standardised with the train pixels' mean and std",
            "masks": "class ids per pixel; a 0/255 mask reads 255 as class 1",
        },
    )


def load_nuclei(
    *, seed: int = 0, val_fraction: float = 0.15, test_fraction: float = 0.15
) -> SegmentationData:
    """The DSB2018 nuclei image from stardist, nucleus vs background (a fixed spatial cut).

    The split is the fixed cut of the module docstring; seed and fractions do not change it.
    """
    from fieldguide.data.series import starter_file

    image = image_channels(read_array(Path(starter_file("nuclei", 0))), Path("img2d.tif"))
    instances = read_array(Path(starter_file("nuclei", 1)))
    mask = (instances > 0).astype(np.int64)
    c, r = NUCLEI_TRAIN_COLUMNS, NUCLEI_SPLIT_ROW
    parts = {
        "train": ([image[:, :, :c]], [mask[:, :c]], ["left 3/4 (columns 0-383)"]),
        "val": ([image[:, :r, c:]], [mask[:r, c:]], ["right 1/4, rows 0-255"]),
        "test": ([image[:, r:, c:]], [mask[r:, c:]], ["right 1/4, rows 256-511"]),
    }
    splits, mean, std = _standardised(parts)
    share = float(mask.mean())
    return SegmentationData(
        name="nuclei",
        **splits,
        classes=["background", "nucleus"],
        description=(
            f"nuclei: one 512x512 fluorescence image, {math.floor(share * 100)} % nucleus "
            f"pixels; train on the left 3/4, validate and test on halves of the right 1/4"
        ),
        preprocessing={
            "reader": "mask-folder",
            "channels": 1,
            "mean": mean,
            "std": std,
            "scale": "uint16 pixels divided by 65535, then standardised with the train pixels",
            "masks": "instance ids > 0 read as nucleus (class 1)",
            "split": "train: columns 0-383; val: columns 384-511, rows 0-255; test: columns "
            "384-511, rows 256-511",
        },
    )
