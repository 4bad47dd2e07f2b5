"""Segmentation runs applied to new images: tiles equal one pass, PNGs equal the model's masks."""

import numpy as np
import pytest
import torch
from PIL import Image

import fieldguide
from fieldguide.api import train
from fieldguide.api.predict import predict
from fieldguide.api.segment import _spans, default_margin, tiled_logits
from fieldguide.cli.main import main
from fieldguide.models.unet import UNet, UNetConfig


def _unet(norm: str, depth: int = 2) -> UNet:
    torch.manual_seed(0)
    config = UNetConfig(in_channels=1, out_dim=3, hidden_dim=4, depth=depth, norm=norm)
    return UNet(config).eval()


@pytest.mark.parametrize("size", [(200, 150), (161, 167), (33, 300)])
def test_tiles_with_a_half_receptive_field_margin_equal_one_pass(size):
    model = _unet("none")
    image = torch.randn(1, *size)
    margin = default_margin(model, 128)
    assert margin * 2 >= model.receptive_field - 1  # every kept pixel sees all it reads
    with torch.no_grad():
        whole = model(image[None])[0]
    tiled = tiled_logits(model, image, tile=128, margin=margin)
    torch.testing.assert_close(tiled, whole, atol=1e-5, rtol=1e-5)


def test_a_margin_below_the_receptive_field_changes_the_logits():
    model = _unet("none")
    image = torch.randn(1, 100, 90)
    with torch.no_grad():
        whole = model(image[None])[0]
    tiled = tiled_logits(model, image, tile=32, margin=0)  # tile seams see padding
    assert (tiled - whole).abs().max() > 1e-3


def test_an_image_that_fits_in_one_tile_is_one_pass_even_with_groupnorm():
    model = _unet("group")
    image = torch.randn(1, 45, 50)
    with torch.no_grad():
        whole = model(image[None])[0]
    assert torch.equal(tiled_logits(model, image, tile=64), whole)


def test_tile_spans_cover_every_pixel_once_on_the_grid():
    for size in (5, 64, 65, 200, 333):
        spans = _spans(size, 64, 16)
        kept = [k for _, _, a, b in spans for k in range(a, b)]
        assert kept == list(range(size))
        assert all(start % 4 == 0 for start, *_ in spans)
    with pytest.raises(ValueError, match="tile as a positive multiple of 4; got 30"):
        tiled_logits(_unet("none"), torch.randn(1, 8, 8), tile=30)


@pytest.fixture(scope="module")
def seg_run(tmp_path_factory):
    """A unet-tiny run on 6 synthetic grey images whose bright discs are the foreground."""
    root = tmp_path_factory.mktemp("seg")
    rng = np.random.default_rng(0)
    (root / "data" / "images").mkdir(parents=True)
    (root / "data" / "masks").mkdir(parents=True)
    yy, xx = np.mgrid[:40, :48]
    for i in range(6):  # SYNTHETIC: discs on noise
        mask = np.zeros((40, 48), dtype=np.uint8)
        for _ in range(3):
            cy, cx = rng.integers(8, 32), rng.integers(8, 40)
            mask[(yy - cy) ** 2 + (xx - cx) ** 2 < 36] = 255
        pixels = np.clip(rng.normal(60, 20, mask.shape) + (mask > 0) * 120, 0, 255)
        Image.fromarray(pixels.astype(np.uint8)).save(root / "data" / "images" / f"{i}.png")
        Image.fromarray(mask).save(root / "data" / "masks" / f"{i}.png")
    result = train(
        "unet-tiny", str(root / "data"), runs_dir=root / "runs", progress="quiet", max_steps=3
    )
    return root, result.run_dir


def test_predict_writes_masks_and_overlays_equal_to_the_model(seg_run, tmp_path):
    root, run_dir = seg_run
    out = tmp_path / "out"
    assert main(
        ["predict", str(run_dir), "--data", str(root / "data" / "images"), "-o", str(out)]
    ) in (
        0,
        None,
    )
    assert sorted(p.name for p in out.iterdir())[:3] == [
        "0_mask.png",
        "0_overlay.png",
        "1_mask.png",
    ]
    run = fieldguide.load_run(run_dir)
    stats = run.preprocessing["data"]
    pixels = np.asarray(Image.open(root / "data" / "images" / "4.png"), dtype=np.float64) / 255
    x = torch.from_numpy(((pixels - stats["mean"][0]) / stats["std"][0]).astype(np.float32))
    with torch.no_grad():
        expected = (run.model(x[None, None])[0, 0] > 0).numpy()
    written = np.asarray(Image.open(out / "4_mask.png"))
    assert np.array_equal(written == 255, expected)
    overlay = np.asarray(Image.open(out / "4_overlay.png"))
    assert overlay.shape == (40, 48, 3)
    # The same images held in Python give the same masks.
    arrays = [np.asarray(Image.open(root / "data" / "images" / f"{i}.png")) for i in range(6)]
    in_python = run.predict(arrays)
    assert np.array_equal(in_python.masks[4], expected.astype(np.int64))
    assert (out / "predictions.csv").read_text().splitlines()[0] == (
        "file,height,width,share(background),share(foreground)"
    )


def test_segmentation_predict_refusals_are_one_sentence(seg_run, tmp_path):
    root, run_dir = seg_run
    images = str(root / "data" / "images")
    with pytest.raises(ValueError, match="give -o FOLDER for them"):
        predict(run_dir, images)
    colour = tmp_path / "colour.png"
    Image.fromarray(np.zeros((20, 20, 3), dtype=np.uint8)).save(colour)
    with pytest.raises(ValueError, match="with 3 channel\\(s\\); the run was trained on 1"):
        predict(run_dir, colour, str(tmp_path / "o"))
    assert not (tmp_path / "o").exists()
