"""Pretrained image models read images standardised with ImageNet's statistics."""

import torch

from fieldguide.data import load_data
from fieldguide.data.imagenet import MEAN, STD, imagenet_standardized


def test_pixels_are_restandardised_with_imagenet_statistics():
    data = load_data("digits")
    out = imagenet_standardized(data)
    pre = data.preprocessing
    pixels = data.train.x * pre["std"][0] + pre["mean"][0]  # the [0, 1] pixels
    mean, std = sum(MEAN) / 3, sum(STD) / 3  # one grey channel: the channels' mean
    torch.testing.assert_close(out.train.x, (pixels - mean) / std)
    assert out.preprocessing["mean"] == [mean] and out.preprocessing["std"] == [std]
    assert torch.equal(out.test.y, data.test.y)
    assert data.preprocessing["mean"] != [mean]  # the input is left as it was


def _folder(root):
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for c in ("a", "b"):
        (root / c).mkdir(parents=True)
        for i in range(12):
            pixels = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / c / f"{i}.png")
    return root


def test_a_pretrained_image_run_records_imagenet_statistics_for_predict(tmp_path):
    import json

    from fieldguide.api import train

    folder = _folder(tmp_path / "images")
    common = {"runs_dir": tmp_path / "runs", "progress": "quiet", "max_steps": 1, "epochs": 1}
    run = train("mobilenetv2", str(folder), batch_size=8, **common).run_dir
    doc = json.loads((run / "preprocessing.json").read_text())
    assert doc["data"]["mean"] == list(MEAN) and doc["data"]["std"] == list(STD)
    scratch = train("mobilenetv2-scratch", str(folder), batch_size=8, **common).run_dir
    doc = json.loads((scratch / "preprocessing.json").read_text())
    assert doc["data"]["mean"] != list(MEAN)  # from scratch: the folder's own statistics
