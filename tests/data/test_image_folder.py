import numpy as np
import pytest
import torch
from PIL import Image

from fieldguide.data import load_data
from fieldguide.data.image_folder import load_image_folder


def _write(path, mode="L", size=(6, 5), value=None, seed=0):
    """Write a small random image; `value` fixes every pixel instead."""
    rng = np.random.default_rng(seed)
    w, h = size
    if mode == "RGB":
        pixels = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    else:
        pixels = rng.integers(0, 256, (h, w), dtype=np.uint8)
    if value is not None:
        pixels[...] = value
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)
    return path


def _folder(root, classes=("cat", "dog"), per_class=8, mode="L", size=(6, 5), ext="png"):
    for k, name in enumerate(classes):
        for i in range(per_class):
            _write(root / name / f"{i:02d}.{ext}", mode, size, seed=100 * k + i)
    return root


def test_grayscale_folder_loads_with_one_channel(tmp_path):
    root = _folder(tmp_path / "Pets Set", classes=("dog", "cat", "owl"))
    (root / "cat" / "notes.txt").write_text("not an image")  # ignored
    (root / "README.md").write_text("root files are ignored")
    data = load_data(str(root))
    assert data.name == "pets-set" and data.modality == "images"
    assert data.classes == ["cat", "dog", "owl"]  # sorted folder names
    assert data.input_shape == (1, 5, 6)  # (C, H, W) of 6 wide x 5 high images
    assert len(data.train) + len(data.val) + len(data.test) == 24
    assert len(data.val) == len(data.test) == 4  # round(24 * 0.15)
    assert data.train.x.dtype == torch.float32 and data.train.y.dtype == torch.int64
    assert abs(data.train.x.mean().item()) < 1e-5
    assert abs(data.train.x.std(correction=0).item() - 1) < 1e-4
    assert "grayscale" in data.description


def test_pixels_are_scaled_then_standardized_with_train_stats(tmp_path):
    root = _folder(tmp_path / "d")
    data = load_image_folder(root, seed=2)
    mean, std = data.preprocessing["mean"][0], data.preprocessing["std"][0]
    raw = data.train.x * std + mean
    assert raw.min().item() >= -1e-6 and raw.max().item() <= 1 + 1e-6
    assert raw.mean().item() == pytest.approx(mean, abs=1e-5)
    # The raw pixel values are k/255: standardization is exactly invertible.
    ints = (torch.cat([data.val.x, data.test.x]) * std + mean) * 255
    assert torch.allclose(ints, ints.round(), atol=1e-3)


def test_one_rgb_image_makes_the_whole_folder_rgb(tmp_path):
    root = _folder(tmp_path / "mixed")
    _write(root / "dog" / "colour.png", mode="RGB", seed=9)
    data = load_data(str(root))
    assert data.input_shape == (3, 5, 6)
    assert len(data.preprocessing["mean"]) == 3
    assert "RGB" in data.description


def test_rgb_folder_and_jpeg(tmp_path):
    root = _folder(tmp_path / "rgb", mode="RGB", ext="jpg")
    data = load_data(str(root))
    assert data.input_shape == (3, 5, 6)
    channel_means = data.train.x.mean(dim=(0, 2, 3))
    assert torch.allclose(channel_means, torch.zeros(3), atol=1e-5)


def test_sixteen_bit_grayscale_is_scaled_not_clipped(tmp_path):
    root = tmp_path / "deep"
    for k, name in enumerate(("a", "b")):
        for i in range(8):
            pixels = np.full((4, 4), 20000 * k + 1000 * i, dtype=np.uint16)
            (root / name).mkdir(parents=True, exist_ok=True)
            Image.fromarray(pixels).save(root / name / f"{i}.png")
    data = load_data(str(root))
    mean, std = data.preprocessing["mean"][0], data.preprocessing["std"][0]
    raw = torch.cat([data.train.x, data.val.x, data.test.x]) * std + mean
    assert data.input_shape == (1, 4, 4)
    assert raw.max().item() == pytest.approx(27000 / 65535, abs=1e-4)


def test_image_size_resizes_images_of_different_sizes(tmp_path):
    root = _folder(tmp_path / "sizes")
    _write(root / "cat" / "big.png", size=(12, 9))
    data = load_data(str(root), image_size=4)
    assert data.input_shape == (1, 4, 4)
    assert "resized to 4x4" in data.description


def test_different_sizes_without_image_size_name_both_files(tmp_path):
    root = _folder(tmp_path / "sizes")
    _write(root / "dog" / "big.png", size=(12, 9))
    with pytest.raises(ValueError, match=r"00\.png is 6x5 but .*big\.png is 12x9; pass image_size"):
        load_data(str(root))


def test_corrupt_image_is_named(tmp_path):
    root = _folder(tmp_path / "bad")
    (root / "dog" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    with pytest.raises(ValueError, match=r"image .*broken\.png could not be decoded"):
        load_data(str(root))


def test_truncated_image_is_named(tmp_path):
    root = _folder(tmp_path / "bad")
    good = _write(tmp_path / "full.png", size=(64, 64))
    (root / "cat" / "cut.png").write_bytes(good.read_bytes()[:200])
    with pytest.raises(ValueError, match=r"cut\.png could not be decoded"):
        load_data(str(root))


def test_empty_class_folder_is_named(tmp_path):
    root = _folder(tmp_path / "pets")
    (root / "bird").mkdir()
    with pytest.raises(ValueError, match=r"class 'bird' \(folder .*bird\) has no images"):
        load_data(str(root))


def test_class_folder_with_only_other_files_has_no_images(tmp_path):
    root = _folder(tmp_path / "pets")
    (root / "fish").mkdir()
    (root / "fish" / "list.csv").write_text("a,b\n")
    with pytest.raises(ValueError, match="class 'fish' .* has no images"):
        load_data(str(root))


def test_fewer_than_two_class_folders(tmp_path):
    root = _folder(tmp_path / "one", classes=("cat",))
    with pytest.raises(ValueError, match=r"at least 2 class sub-folders .* has 1 \('cat'\)"):
        load_data(str(root))
    flat = tmp_path / "flat"
    _write(flat / "a.png")
    with pytest.raises(ValueError, match=r"has 0 \(none\)"):
        load_data(str(flat))


def test_class_with_too_few_images_is_named(tmp_path):
    root = _folder(tmp_path / "pets")
    for i in range(3):
        _write(root / "owl" / f"{i}.png")
    with pytest.raises(ValueError, match="class 'owl' has 3 samples"):
        load_data(str(root))


def test_image_folder_rejects_target(tmp_path):
    root = _folder(tmp_path / "pets")
    with pytest.raises(ValueError, match="target applies only to .csv files"):
        load_data(str(root), target="label")
