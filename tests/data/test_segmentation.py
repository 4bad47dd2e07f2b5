"""Segmentation data: mask folders (PNG and TIFF, 0/255 or class ids), one sentence per bad
pair, train-only standardisation, and the nuclei starter's fixed spatial cut."""

import re
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
from PIL import Image

from fieldguide.data import load_data
from fieldguide.data.segmentation import load_mask_folder, mask_ids, read_array
from fieldguide.data.series import starter_file
from fieldguide.tasks.segmentation import SegmentationTask
from tests.data.helpers import load_starter

SIZE = (12, 10)  # H, W of every written pair


def one_sentence(message: str) -> bool:
    return "\n" not in message and re.search(r"[.;]\s+[A-Z]", message) is None


def save(path: Path, array: np.ndarray) -> None:
    if path.suffix in (".tif", ".tiff"):
        tifffile.imwrite(path, array)
    else:
        Image.fromarray(array).save(path)


def write_folder(root: Path, n: int = 5, colour: bool = False, classes: list[str] | None = None):
    """Images (PNG, every other one a uint16 TIFF) with masks (0/255, or ids < len(classes)).

    Returns the raw image (in [0, 1], (C, H, W)) and mask (ids) of each stem.
    """
    rng = np.random.default_rng(0)
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    if classes:
        (root / "classes.txt").write_text("\n".join(classes) + "\n")
    written = {}
    for i in range(n):
        stem = f"cell{i}"
        shape = (*SIZE, 3) if colour else SIZE
        if i % 2:
            image = rng.integers(0, 65536, shape, dtype=np.uint16)
            save(root / "images" / f"{stem}.tif", image)
            raw = image / 65535
        else:
            image = rng.integers(0, 256, shape, dtype=np.uint8)
            save(root / "images" / f"{stem}.png", image)
            raw = image / 255
        ids = rng.integers(0, len(classes) if classes else 2, SIZE).astype(np.uint8)
        save(root / "masks" / f"{stem}.png", ids if classes else ids * 255)
        written[stem] = (raw.transpose(2, 0, 1) if colour else raw[None], ids.astype(np.int64))
    return written


def unstandardised(data, image: torch.Tensor) -> np.ndarray:
    mean = np.array(data.preprocessing["mean"])[:, None, None]
    std = np.array(data.preprocessing["std"])[:, None, None]
    return image.double().numpy() * std + mean


def splits(data):
    return [(s, getattr(data, s)) for s in ("train", "val", "test")]


# ---------------------------------------------------------------------------------------------
# Good folders
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("colour", [False, True])
def test_png_and_tiff_images_with_0_255_masks_load_as_binary(tmp_path, colour):
    written = write_folder(tmp_path / "cells", colour=colour)
    data = load_mask_folder(tmp_path / "cells")
    assert data.classes == ["background", "foreground"]
    assert data.modality == "segmentation" and data.input_shape == (3 if colour else 1, *SIZE)
    seen = []
    for _, part in splits(data):
        for image, mask, name in zip(part.images, part.masks, part.names, strict=True):
            raw, ids = written[name]
            assert mask.dtype == torch.int64 and set(mask.unique().tolist()) <= {0, 1}
            np.testing.assert_array_equal(mask.numpy(), ids)  # 255 read as class 1
            # PNG bytes / 255 and TIFF uint16 / 65535, then standardised: undoing it gives raw
            np.testing.assert_allclose(unstandardised(data, image), raw, atol=1e-5)
            seen.append(name)
    assert sorted(seen) == sorted(written)  # every pair in exactly one split
    assert [len(p) for _, p in splits(data)] == [3, 1, 1]


def test_class_id_masks_take_their_names_from_classes_txt(tmp_path):
    written = write_folder(tmp_path / "cells", classes=["soil", "leaf", "stem"])
    data = load_mask_folder(tmp_path / "cells")
    assert data.classes == ["soil", "leaf", "stem"]
    for _, part in splits(data):
        for mask, name in zip(part.masks, part.names, strict=True):
            np.testing.assert_array_equal(mask.numpy(), written[name][1])
    assert SegmentationTask(data).k == 3


def test_class_id_masks_without_classes_txt_are_numbered(tmp_path):
    write_folder(tmp_path / "cells", classes=["a", "b", "c", "d"])
    (tmp_path / "cells" / "classes.txt").unlink()
    assert load_mask_folder(tmp_path / "cells").classes == ["0", "1", "2", "3"]


def test_palette_masks_read_their_indices_as_class_ids(tmp_path):
    written = write_folder(tmp_path / "cells", classes=["void", "road", "car"])
    palette = [0, 0, 0, 128, 0, 0, 0, 128, 0]  # VOC-style colours: no channel equals the id
    for stem, (_, ids) in written.items():
        mask = Image.fromarray(ids.astype(np.uint8), mode="P")
        mask.putpalette(palette + [0] * (768 - len(palette)))
        mask.save(tmp_path / "cells" / "masks" / f"{stem}.png")
    data = load_mask_folder(tmp_path / "cells")
    for _, part in splits(data):
        for mask, name in zip(part.masks, part.names, strict=True):
            np.testing.assert_array_equal(mask.numpy(), written[name][1])


def test_standardisation_uses_train_pixels_only(tmp_path):
    root = tmp_path / "cells"
    write_folder(root, n=6)
    before = load_mask_folder(root)
    train_pixels = torch.cat([i.flatten() for i in before.train.images]).double()
    assert float(train_pixels.mean()) == pytest.approx(0, abs=1e-6)
    assert float(train_pixels.std(unbiased=False)) == pytest.approx(1, abs=1e-6)
    # overwrite every val and test image with other pixels: train stays bit for bit
    for stem in before.val.names + before.test.names:
        (path,) = (root / "images").glob(f"{stem}.*")
        save(path, np.full(SIZE, 7, dtype=np.uint16 if path.suffix == ".tif" else np.uint8))
    after = load_mask_folder(root)
    assert after.train.names == before.train.names
    assert after.preprocessing["mean"] == before.preprocessing["mean"]
    assert after.preprocessing["std"] == before.preprocessing["std"]
    for a, b in zip(after.train.images, before.train.images, strict=True):
        assert a.equal(b)
    assert not after.val.images[0].equal(before.val.images[0])


def test_tiff_saved_channels_first_reads_channels_last(tmp_path):
    array = np.arange(3 * 5 * 7, dtype=np.uint8).reshape(3, 5, 7)
    tifffile.imwrite(tmp_path / "a.tif", array, photometric="rgb", planarconfig="separate")
    np.testing.assert_array_equal(read_array(tmp_path / "a.tif"), array.transpose(1, 2, 0))


def test_mask_ids_read_0_255_as_binary_and_refuse_negatives():
    path = Path("m.png")
    assert mask_ids(np.array([[0, 255], [255, 0]], dtype=np.uint8), path).tolist() == [
        [0, 1],
        [1, 0],
    ]
    grey3 = np.stack([np.array([[0, 2], [1, 0]])] * 3, -1).astype(np.uint8)
    assert mask_ids(grey3, path).tolist() == [[0, 2], [1, 0]]
    with pytest.raises(ValueError, match="m.png holds the negative value -1"):
        mask_ids(np.array([[0, -1]]), path)
    with pytest.raises(ValueError, match="whole numbers"):
        mask_ids(np.array([[0.0, 0.5]]), path)


# ---------------------------------------------------------------------------------------------
# Bad folders: one sentence naming the file
# ---------------------------------------------------------------------------------------------


def drop_mask(root):
    (root / "masks" / "cell2.png").unlink()
    return "cell2.png"  # the image's name (its mask is missing)


def drop_image(root):
    (root / "images" / "cell2.png").unlink()
    return r"masks/cell2\.png"


def resize_mask(root):
    save(root / "masks" / "cell3.png", np.zeros((SIZE[0], SIZE[1] + 1), dtype=np.uint8))
    return r"masks/cell3\.png"


def id_beyond_classes(root):
    (root / "classes.txt").write_text("background\nforeground\n")
    save(root / "masks" / "cell1.png", np.full(SIZE, 2, dtype=np.uint8))
    return r"masks/cell1\.png holds class id 2"


def uint16_mask(root):
    mask = np.zeros(SIZE, dtype=np.uint16)
    mask[0, :3] = (1, 2, 300)  # an instance mask: ids beyond 255
    tifffile.imwrite(root / "masks" / "cell4.tif", mask)
    (root / "masks" / "cell4.png").unlink()
    return r"masks/cell4\.tif holds class id 300"


def colour_mask(root):
    mask = np.zeros((*SIZE, 3), dtype=np.uint8)
    mask[0, 0] = (255, 0, 0)
    save(root / "masks" / "cell0.png", mask)
    return r"masks/cell0\.png has 3 channels that differ"


def two_pairs(root):
    for i in (2, 3, 4):
        (root / "masks" / f"cell{i}.png").unlink()
        next((root / "images").glob(f"cell{i}.*")).unlink()
    return "holds 2 image and mask pairs"


def same_stem_twice(root):
    save(root / "images" / "cell0.tif", np.zeros(SIZE, dtype=np.uint8))
    return r"cell0\.png and cell0\.tif with the same name"


def mixed_grey_and_colour(root):
    save(root / "images" / "cell2.png", np.zeros((*SIZE, 3), dtype=np.uint8))
    return r"images/cell2\.png has 3 channel"


@pytest.mark.parametrize(
    "spoil",
    [
        drop_mask,
        drop_image,
        resize_mask,
        id_beyond_classes,
        uint16_mask,
        colour_mask,
        two_pairs,
        mixed_grey_and_colour,
        same_stem_twice,
    ],
)
def test_a_bad_pair_is_refused_in_one_sentence_naming_the_file(tmp_path, spoil):
    write_folder(tmp_path / "cells")
    match = spoil(tmp_path / "cells")
    with pytest.raises(ValueError, match=match) as info:
        load_mask_folder(tmp_path / "cells")
    assert one_sentence(str(info.value)), str(info.value)


def test_load_data_reads_a_mask_folder(tmp_path):
    write_folder(tmp_path / "cells")
    data = load_data(str(tmp_path / "cells"))
    assert data.modality == "segmentation" and data.classes == ["background", "foreground"]


# ---------------------------------------------------------------------------------------------
# The nuclei starter
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def nuclei():
    return load_starter("nuclei")


def test_nuclei_splits_are_the_stated_disjoint_regions(nuclei):
    raw = read_array(Path(starter_file("nuclei", 0))).astype(np.float64) / 65535
    instances = read_array(Path(starter_file("nuclei", 1)))
    assert raw.shape == instances.shape == (512, 512)
    regions = {  # (rows, columns) of the 512x512 image
        "train": (slice(0, 512), slice(0, 384)),
        "val": (slice(0, 256), slice(384, 512)),
        "test": (slice(256, 512), slice(384, 512)),
    }
    covered = np.zeros((512, 512), dtype=int)
    for name, part in splits(nuclei):
        assert len(part) == 1
        rows, cols = regions[name]
        (image,), (mask,) = part.images, part.masks
        h, w = rows.stop - rows.start, cols.stop - cols.start
        assert image.shape == (1, h, w) and mask.shape == (h, w)
        np.testing.assert_allclose(unstandardised(nuclei, image)[0], raw[rows, cols], atol=1e-5)
        np.testing.assert_array_equal(mask.numpy(), instances[rows, cols] > 0)
        assert set(mask.unique().tolist()) == {0, 1}
        covered[rows, cols] += 1
    assert (covered == 1).all()  # the three parts tile the image without overlap
    assert nuclei.input_shape == (1, 512, 384)
    assert nuclei.classes == ["background", "nucleus"]
    train = nuclei.train.images[0].double()
    assert float(train.mean()) == pytest.approx(0, abs=1e-5)


def test_nuclei_otsu_baseline_is_a_fair_but_beatable_bar(nuclei):
    task = SegmentationTask(nuclei)
    for split in ("val", "test"):
        baselines = task.baselines(split)
        otsu = baselines["Otsu threshold of train"]
        assert 0.6 < otsu["fg_iou"] < 0.95
        assert otsu["dice"] > otsu["fg_iou"]  # Dice = 2 IoU / (1 + IoU) > IoU below 1
        assert otsu["dice"] == pytest.approx(2 * otsu["fg_iou"] / (1 + otsu["fg_iou"]))
        majority = baselines["majority class of train"]
        assert majority["fg_iou"] == 0  # the majority is background: no nucleus found
