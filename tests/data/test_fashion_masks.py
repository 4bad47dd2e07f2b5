"""The DERIVED fashion-masks starter: masks follow from each photo's own pixels and label."""

from pathlib import Path

import numpy as np
import torch

from fieldguide.data.fashion_masks import FOREGROUND_LEVEL, load_fashion_masks
from fieldguide.data.fashion_mnist import FASHION_MNIST_DIR, _read_part
from tests.data.helpers import require_starter


def test_masks_are_the_bright_pixels_labelled_with_the_garment_class():
    require_starter("fashion-masks")
    data = load_fashion_masks(train_size=50, val_size=20, test_size=30)
    assert data.classes[0] == "background" and len(data.classes) == 11
    assert "DERIVED" in data.description
    assert [len(data.train), len(data.val), len(data.test)] == [50, 20, 30]
    images, labels = _read_part(Path(FASHION_MNIST_DIR), "t10k")
    mean, std = data.preprocessing["mean"][0], data.preprocessing["std"][0]
    for i in range(30):  # test photos are the first of the official test set, in order
        raw = images[i].astype(np.float64)
        back = data.test.images[i][0].double() * std + mean
        assert torch.allclose(back, torch.from_numpy(raw / 255), atol=1e-5)
        expected = torch.from_numpy((raw > FOREGROUND_LEVEL) * (int(labels[i]) + 1))
        assert torch.equal(data.test.masks[i], expected)
    # The training photos are a seeded draw, disjoint from validation.
    again = load_fashion_masks(train_size=50, val_size=20, test_size=30)
    other = load_fashion_masks(seed=1, train_size=50, val_size=20, test_size=30)
    assert all(torch.equal(a, b) for a, b in zip(data.train.masks, again.train.masks, strict=True))
    assert data.train.names != other.train.names
    assert not set(data.train.names) & {n.replace("val", "train") for n in data.val.names}
