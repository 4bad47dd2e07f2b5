"""DERIVED segmentation starter: Fashion-MNIST photos with masks made from their own pixels.

No second real segmentation set with masks ships in a package these machines can install (the
package lists were searched for cell, nuclei, medical, street-scene and pet sets: the ones found
download their data at run time or hold code only), so this one is derived and named so. Each
28x28 Fashion-MNIST photo keeps its pixels; its mask labels every pixel brighter than
`FOREGROUND_LEVEL` (of 255) with the photo's garment class (1-10) and every other pixel
background (0). A model must find the garment and name it per pixel: 11 classes, the shape
from the pixels, the class from the whole garment.

Splits: `train_size` photos of the official training set drawn by seed, `val_size` others from
it, and the first `test_size` of the official test set.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fieldguide.data.fashion_mnist import FASHION_CLASSES, FASHION_MNIST_DIR, _read_part
from fieldguide.data.segmentation import SegmentationData, _standardised

FOREGROUND_LEVEL = 25  # of 255: above the paper-white noise of the photos' background
TRAIN_SIZE, VAL_SIZE, TEST_SIZE = 6000, 1000, 1000


def load_fashion_masks(
    *,
    seed: int = 0,
    val_fraction: float = 0.15,
    test_fraction: float = 0.15,
    root: str = FASHION_MNIST_DIR,
    train_size: int = TRAIN_SIZE,
    val_size: int = VAL_SIZE,
    test_size: int = TEST_SIZE,
) -> SegmentationData:
    """Fashion-MNIST photos with DERIVED per-pixel garment masks (see the module docstring).

    Args:
        seed: Seed of the draw of training and validation photos.
        val_fraction: Not used: the sizes are fixed (kept so every starter takes the arguments).
        test_fraction: Not used, as val_fraction.
        root: Folder of the four Fashion-MNIST files.
        train_size: Training photos.
        val_size: Validation photos.
        test_size: Test photos, from the official test set.
    """
    del val_fraction, test_fraction
    images, labels = _read_part(Path(root), "train")
    test_images, test_labels = _read_part(Path(root), "t10k")
    order = np.random.default_rng(seed).permutation(len(labels))
    picks = {
        "train": (images, labels, order[:train_size]),
        "val": (images, labels, order[train_size : train_size + val_size]),
        "test": (test_images, test_labels, np.arange(test_size)),
    }
    parts = {}
    for key, (pixels, classes, index) in picks.items():
        photos = [pixels[i][None].astype(np.float64) / 255 for i in index]  # (1, 28, 28)
        masks = [(pixels[i] > FOREGROUND_LEVEL) * (int(classes[i]) + 1) for i in index]
        parts[key] = (photos, masks, [f"{key} photo {int(i)}" for i in index])
    splits, mean, std = _standardised(parts)
    return SegmentationData(
        name="fashion-masks",
        **splits,
        classes=["background", *FASHION_CLASSES],
        description=(
            f"fashion-masks (DERIVED masks): {train_size:,}/{val_size:,}/{test_size:,} "
            f"Fashion-MNIST photos, each pixel above {FOREGROUND_LEVEL}/255 labelled with its "
            f"garment class, 11 classes"
        ),
        preprocessing={
            "reader": "mask-folder",
            "channels": 1,
            "mean": mean,
            "std": std,
            "scale": "pixels divided by 255, then standardised with the train pixels",
            "masks": f"DERIVED: garment class + 1 where the pixel exceeds {FOREGROUND_LEVEL}/255",
        },
    )
