"""SYNTHETIC two moons: 2-D points on two interleaved half circles, for density models.

scikit-learn's `make_moons` draws the points (with Gaussian noise of std 0.1); the split is
stratified by moon and drawn by seed, and both coordinates are standardised with the train
split's mean and std. A flow's negative log-likelihood on it is easy to read against one
Gaussian fitted to the same points (the task's baseline).
"""

from __future__ import annotations

import numpy as np

from fieldguide.data.base import ClassificationData, stratified_split, tensor_splits

NUM_POINTS = 4000
NOISE = 0.1


def load_two_moons(
    *, seed: int = 0, val_fraction: float = 0.15, test_fraction: float = 0.15
) -> ClassificationData:
    """SYNTHETIC two moons: 4,000 points (2,), labelled by moon, standardised with train stats."""
    from sklearn.datasets import make_moons

    points, moon = make_moons(NUM_POINTS, noise=NOISE, random_state=seed)
    y = moon.astype(np.int64)
    splits = stratified_split(y, seed, val_fraction, test_fraction, class_names=["upper", "lower"])
    mean, std = points[splits[0]].mean(0), points[splits[0]].std(0)
    x = ((points - mean) / std).astype(np.float32)
    parts = tensor_splits(x, y, splits)
    return ClassificationData(
        name="two-moons",
        modality="tabular",
        **parts,
        classes=["upper", "lower"],
        input_shape=(2,),
        description=f"synthetic two moons: {NUM_POINTS:,} 2-D points, noise {NOISE}",
        synthetic=True,
        preprocessing={"mean": mean.tolist(), "std": std.tolist(), "columns": ["x", "y"]},
    )
