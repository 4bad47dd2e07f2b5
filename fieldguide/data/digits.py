"""The scikit-learn digits starter: 1,797 real 8x8 scans of handwritten digits, 10 classes."""

from __future__ import annotations

import numpy as np

from fieldguide.data.base import ClassificationData, image_data, stratified_split

DIGIT_CLASSES = [str(d) for d in range(10)]


def load_digits(
    *, seed: int = 0, val_fraction: float = 0.15, test_fraction: float = 0.15
) -> ClassificationData:
    """Digits as images of shape (1, 8, 8), split by seed and standardized by train statistics.

    Pixel counts 0..16 are scaled to [0, 1], then standardized with the mean and std of the
    train split. The split is stratified, so each class keeps its share in every split.

    Args:
        seed: Seed of the split.
        val_fraction: Share of the 1,797 scans held out for validation.
        test_fraction: Share held out for test.
    """
    # Imported here: scikit-learn is the carrier, and importing it costs about half a second.
    from sklearn.datasets import load_digits as sklearn_digits

    bunch = sklearn_digits()
    x = (bunch.images.astype(np.float32) / 16.0)[:, None]  # (N, 1, 8, 8)
    y = bunch.target.astype(np.int64)
    splits = stratified_split(y, seed, val_fraction, test_fraction, class_names=DIGIT_CLASSES)
    return image_data(
        x,
        y,
        splits,
        name="digits",
        classes=DIGIT_CLASSES,
        description=f"scikit-learn digits: {len(y):,} real 8x8 scans, 10 classes",
        levels=17,  # pixel counts 0..16
    )
