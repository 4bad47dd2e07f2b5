"""The Fashion-MNIST starter: 70,000 real 28x28 grayscale product photos, 10 classes.

The Debian package dataset-fashion-mnist ships the four IDX files of the official release;
they are read here with gzip and numpy alone. IDX layout (all integers big-endian): two zero
bytes, a type code (0x08 = uint8), the number of dimensions d, then d uint32 sizes, then the
values in C order.
"""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np

from fieldguide.data.base import ClassificationData, image_data, stratified_split
from fieldguide.data.starters import FASHION_MNIST_DIR

FASHION_CLASSES = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
]

# IDX type codes the format defines, as numpy big-endian dtypes.
_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an IDX file, gzipped (".gz") or not, into an array of its declared shape.

    Args:
        path: The file.

    Returns:
        The values with the shape and (native-endian) dtype in the file's header.
    """
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as error:  # gzip raises BadGzipFile (an OSError) or EOFError
        raise ValueError(f"IDX file {path} could not be read: {error}.") from error
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise ValueError(
            f"IDX file {path} does not start with an IDX header (0, 0, type code, rank); "
            f"got bytes {list(raw[:4])}."
        )
    dtype, ndim = np.dtype(_IDX_DTYPES[raw[2]]), raw[3]
    header = 4 + 4 * ndim
    shape = tuple(int(s) for s in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    expected = header + int(np.prod(shape)) * dtype.itemsize
    if len(raw) != expected:
        raise ValueError(
            f"IDX file {path} declares shape {shape}, which needs {expected} bytes, "
            f"but it holds {len(raw)}; the file is truncated or corrupt."
        )
    values = np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape)
    return values.astype(dtype.newbyteorder("="))


def _read_part(root: Path, part: str) -> tuple[np.ndarray, np.ndarray]:
    """Images (N, 28, 28) and labels (N,) of the official "train" or "t10k" part."""
    images = read_idx(root / f"{part}-images-idx3-ubyte.gz")
    labels = read_idx(root / f"{part}-labels-idx1-ubyte.gz")
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise ValueError(
            f"Fashion-MNIST part '{part}' in {root} expected images (N, H, W) and labels (N,); "
            f"got {images.shape} and {labels.shape}."
        )
    if labels.size and (labels.min() < 0 or labels.max() >= len(FASHION_CLASSES)):
        raise ValueError(
            f"Fashion-MNIST part '{part}' in {root} expected labels 0..9; "
            f"got {labels.min()}..{labels.max()}."
        )
    return images, labels.astype(np.int64)


def load_fashion_mnist(
    *,
    seed: int = 0,
    val_fraction: float = 0.15,
    test_fraction: float = 0.15,
    root: str | os.PathLike[str] = FASHION_MNIST_DIR,
) -> ClassificationData:
    """Fashion-MNIST as images (1, 28, 28): official test set, validation carved from train.

    The official 60k/10k split is kept, so `test_fraction` is not used: test is always the
    official 10,000. Validation takes `val_fraction` of the 60,000 training images, stratified
    by seed. Pixels are scaled to [0, 1], then standardized with the train split's statistics.

    Args:
        seed: Seed of the train/validation split.
        val_fraction: Share of the official training set held out for validation.
        test_fraction: Not used (kept so every starter loader takes the same arguments).
        root: Folder holding the four `*-ubyte.gz` files; the Debian package's by default.
    """
    del test_fraction  # the official test set is the test split
    root = Path(root)
    train_images, train_labels = _read_part(root, "train")
    test_images, test_labels = _read_part(root, "t10k")
    if train_images.shape[1:] != test_images.shape[1:]:
        raise ValueError(
            f"Fashion-MNIST in {root} expected train and test images of one size; "
            f"got {train_images.shape[1:]} and {test_images.shape[1:]}."
        )
    train, val, _ = stratified_split(
        train_labels, seed, val_fraction, 0.0, class_names=FASHION_CLASSES
    )
    n_train, n_test = len(train_labels), len(test_labels)
    x = np.concatenate([train_images, test_images])[:, None].astype(np.float32)  # (N, 1, H, W)
    x /= 255.0
    y = np.concatenate([train_labels, test_labels])
    height, width = x.shape[2:]
    return image_data(
        x,
        y,
        (train, val, np.arange(n_train, n_train + n_test)),
        name="fashion-mnist",
        classes=FASHION_CLASSES,
        description=(
            f"Fashion-MNIST: {n_train + n_test:,} real {height}x{width} product photos, "
            f"10 classes, official {n_train:,}/{n_test:,} split"
        ),
    )
