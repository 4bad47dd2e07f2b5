import dataclasses
import gzip
import os
import struct

import numpy as np
import pytest
import torch

from fieldguide.data import load_data, starters
from fieldguide.data.fashion_mnist import FASHION_CLASSES, load_fashion_mnist, read_idx


def _write_idx(path, array, compress=True):
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim)
    header += struct.pack(f">{array.ndim}I", *array.shape)
    raw = header + array.astype(np.uint8).tobytes()
    if compress:
        with gzip.open(path, "wb") as f:
            f.write(raw)
    else:
        path.write_bytes(raw)


def _fake_fashion(root, n_train_per_class=10, n_test=20, size=4):
    """Tiny IDX files in the layout of the Debian package; images encode their own label."""
    rng = np.random.default_rng(0)
    root.mkdir(parents=True, exist_ok=True)
    train_y = np.repeat(np.arange(10), n_train_per_class)
    test_y = np.arange(n_test) % 10
    for part, y in (("train", train_y), ("t10k", test_y)):
        x = rng.integers(0, 200, (len(y), size, size)).astype(np.uint8)
        x[:, 0, 0] = y * 20  # so a test can check images stay with their labels
        _write_idx(root / f"{part}-images-idx3-ubyte.gz", x)
        _write_idx(root / f"{part}-labels-idx1-ubyte.gz", y)
    return root


def test_read_idx_round_trip(tmp_path):
    array = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    _write_idx(tmp_path / "a.gz", array)
    _write_idx(tmp_path / "a.idx", array, compress=False)
    assert np.array_equal(read_idx(tmp_path / "a.gz"), array)
    assert np.array_equal(read_idx(tmp_path / "a.idx"), array)


def test_read_idx_rejects_bad_files(tmp_path):
    (tmp_path / "bad.idx").write_bytes(b"\x12\x34\x08\x01abcd")
    with pytest.raises(ValueError, match="does not start with an IDX header"):
        read_idx(tmp_path / "bad.idx")
    _write_idx(tmp_path / "full.idx", np.zeros((4, 5), np.uint8), compress=False)
    (tmp_path / "cut.idx").write_bytes((tmp_path / "full.idx").read_bytes()[:-3])
    with pytest.raises(ValueError, match="truncated or corrupt"):
        read_idx(tmp_path / "cut.idx")
    (tmp_path / "notgz.gz").write_bytes(b"plain")
    with pytest.raises(ValueError, match="could not be read"):
        read_idx(tmp_path / "notgz.gz")


def test_fashion_loader_on_synthetic_idx(tmp_path):
    root = _fake_fashion(tmp_path / "fm")
    data = load_fashion_mnist(root=root, seed=0, val_fraction=0.2)
    assert data.name == "fashion-mnist" and data.classes == FASHION_CLASSES
    assert data.input_shape == (1, 4, 4)
    assert (len(data.train), len(data.val), len(data.test)) == (80, 20, 20)
    # The official test split is kept whole and in order; val is stratified from train.
    assert data.test.y.tolist() == (np.arange(20) % 10).tolist()
    assert torch.bincount(data.val.y, minlength=10).tolist() == [2] * 10
    assert abs(data.train.x.mean().item()) < 1e-5
    mean, std = data.preprocessing["mean"][0], data.preprocessing["std"][0]
    for split in (data.train, data.val, data.test):
        corner = (split.x[:, 0, 0, 0] * std + mean) * 255
        assert torch.allclose(corner, split.y.float() * 20, atol=1e-3)
    other = load_fashion_mnist(root=root, seed=1, val_fraction=0.2)
    assert not torch.equal(other.val.y, data.val.y) or not torch.equal(other.val.x, data.val.x)
    # Another seed moves train/val rows, so the statistics move, but the raw test set is fixed.
    o_mean, o_std = other.preprocessing["mean"][0], other.preprocessing["std"][0]
    assert torch.allclose(other.test.x * o_std + o_mean, data.test.x * std + mean, atol=1e-5)


def test_fashion_loader_rejects_mismatched_files(tmp_path):
    root = _fake_fashion(tmp_path / "fm")
    _write_idx(root / "t10k-labels-idx1-ubyte.gz", np.zeros(3, np.uint8))
    with pytest.raises(ValueError, match="part 't10k'"):
        load_fashion_mnist(root=root)


def test_missing_fashion_mnist_names_the_install_command(monkeypatch):
    absent = dataclasses.replace(
        starters.STARTERS["fashion-mnist"], files=("/nonexistent/fieldguide/train.gz",)
    )
    monkeypatch.setitem(starters.STARTERS, "fashion-mnist", absent)
    with pytest.raises(
        ValueError, match="install it with: apt-get install -y dataset-fashion-mnist"
    ):
        load_data("fashion-mnist")


@pytest.mark.skipif(
    # CI installs the Debian package (scripts/starter-data.sh), so there a missing one fails.
    not starters.is_present(starters.STARTERS["fashion-mnist"]) and os.environ.get("CI") != "true",
    reason="Debian package dataset-fashion-mnist is not installed",
)
def test_real_fashion_mnist():
    data = load_data("fashion-mnist", val_fraction=0.1)
    assert (len(data.train), len(data.val), len(data.test)) == (54000, 6000, 10000)
    assert data.input_shape == (1, 28, 28)
    assert data.preprocessing["mean"][0] == pytest.approx(0.286, abs=0.002)
    assert torch.bincount(data.test.y).tolist() == [1000] * 10
