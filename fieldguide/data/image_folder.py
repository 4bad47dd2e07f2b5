"""Image folders: one sub-folder per class, each holding that class's images.

```
pets/
  cat/  001.png 002.jpg ...
  dog/  001.png ...
```
Class names are the sorted sub-folder names. Images are decoded with Pillow; when all of them
are grayscale the data has 1 channel, otherwise every image is read as RGB (3 channels).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image

from fieldguide.data.base import ClassificationData, image_data, safe_name, stratified_split

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"})

# Pillow modes that hold one gray channel (with alpha for "LA"); every other mode is read as RGB.
_GRAY_MODES = frozenset({"1", "L", "LA", "I", "F", "I;16", "I;16L", "I;16B", "I;16N"})
_SIXTEEN_BIT = frozenset({"I;16", "I;16L", "I;16B", "I;16N"})


def class_folders(root: Path) -> list[tuple[str, list[Path]]]:
    """Class names and their image files under `root`, sorted, with every folder checked.

    Hidden folders and files (names starting with ".") and non-image files are ignored.
    """
    folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if len(folders) < 2:
        found = ", ".join(f"'{p.name}'" for p in folders) or "none"
        raise ValueError(
            f"image folder {root} needs at least 2 class sub-folders (one per class, holding "
            f"that class's images) but has {len(folders)} ({found})."
        )
    classes = []
    for folder in folders:
        files = sorted(
            p
            for p in folder.iterdir()
            if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_SUFFIXES
        )
        if not files:
            raise ValueError(
                f"class '{folder.name}' (folder {folder}) has no images; expected files ending "
                f"in {', '.join(sorted(IMAGE_SUFFIXES))}."
            )
        classes.append((folder.name, files))
    return classes


def _open(path: Path) -> Image.Image:
    """Decode `path` fully, or raise one sentence naming the file."""
    try:
        with Image.open(path) as image:
            image.load()  # decode now: a truncated file fails here, not later
            if image.mode == "P":  # a palette holds colours; read it as the colours it maps to
                return image.convert("RGBA" if "transparency" in image.info else "RGB")
            return image.copy()
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as error:
        raise ValueError(
            f"image {path} could not be decoded ({error}); fix or remove it."
        ) from error


def _to_array(image: Image.Image, rgb: bool, size: int | None) -> np.ndarray:
    """Pixels in [0, 1] as (C, H, W) float32, resized to (size, size) when size is given."""
    if image.mode in _SIXTEEN_BIT:
        # 8-bit conversion of 16-bit images clips instead of scaling, so scale as floats.
        gray = Image.fromarray(np.asarray(image, dtype=np.float32) / 65535.0)  # mode "F"
        if size is not None:
            gray = gray.resize((size, size), Image.Resampling.BILINEAR)
        pixels = np.asarray(gray, dtype=np.float32)[None]  # (1, H, W)
        return np.repeat(pixels, 3, axis=0) if rgb else pixels
    image = image.convert("RGB" if rgb else "L")
    if size is not None:
        image = image.resize((size, size), Image.Resampling.BILINEAR)
    pixels = np.asarray(image, dtype=np.float32) / 255.0
    return pixels.transpose(2, 0, 1) if rgb else pixels[None]  # (C, H, W)


def load_image_folder(
    path: str | os.PathLike[str],
    *,
    seed: int = 0,
    val_fraction: float = 0.15,
    test_fraction: float = 0.15,
    image_size: int | None = None,
) -> ClassificationData:
    """Read an image folder into memory, split by seed and standardized per channel.

    Args:
        path: Folder with one sub-folder per class.
        seed: Seed of the stratified split.
        val_fraction: Share of the images held out for validation.
        test_fraction: Share held out for test.
        image_size: Side to resize every image to; needed when image sizes differ.

    Returns:
        Images of shape (C, H, W), C = 1 when every image is grayscale and 3 otherwise,
        scaled to [0, 1] and standardized with the train split's per-channel mean and std.
    """
    root = Path(path)
    classes = class_folders(root)

    # 1. Decode everything once, noting sizes and whether any image has colour.
    images, labels, first_of_size = [], [], {}
    for label, (_, files) in enumerate(classes):
        for file in files:
            image = _open(file)
            images.append(image)
            labels.append(label)
            first_of_size.setdefault(image.size, file)
    if image_size is None and len(first_of_size) > 1:
        (size_a, file_a), (size_b, file_b) = list(first_of_size.items())[:2]
        raise ValueError(
            f"images differ in size: {file_a} is {size_a[0]}x{size_a[1]} but {file_b} is "
            f"{size_b[0]}x{size_b[1]}; pass image_size (e.g. image_size={min(*size_a, *size_b)}) "
            f"to resize them all to one square size."
        )
    rgb = any(image.mode not in _GRAY_MODES for image in images)

    # 2. Pixels in [0, 1], one (C, H, W) array per image.
    x = np.stack([_to_array(image, rgb, image_size) for image in images])  # (N, C, H, W)
    y = np.asarray(labels, dtype=np.int64)
    names = [name for name, _ in classes]

    # 3. Split, then standardize with the train split's statistics only.
    splits = stratified_split(y, seed, val_fraction, test_fraction, class_names=names)
    channels, height, width = x.shape[1:]
    kind = "RGB" if rgb else "grayscale"
    resized = f", resized to {image_size}x{image_size}" if image_size is not None else ""
    data = image_data(
        x,
        y,
        splits,
        name=safe_name(root.resolve().name),
        classes=names,
        description=(
            f"image folder '{root.name}': {len(y):,} {kind} {width}x{height} images"
            f"{resized}, {len(names)} classes"
        ),
    )
    # What predict needs to read new images the same way: colour, size, the channel statistics.
    data.preprocessing |= {"reader": "image-folder", "rgb": rgb, "image_size": image_size}
    # Each example's file, relative to the folder: what `fieldguide search` shows as a source.
    files = [str(f.relative_to(root)) for _, class_files in classes for f in class_files]
    data.sources = {
        split: [files[int(i)] for i in index]
        for split, index in zip(("train", "val", "test"), splits, strict=True)
    }
    return data
