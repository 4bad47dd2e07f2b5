import numpy as np
import pytest
import torch

from fieldguide.data import load_data
from fieldguide.data.sequences import (
    load_selective_copy,
    make_selective_copy,
    pixel_permutation,
    read_ts,
)
from tests.data.helpers import load_starter


# -- GunPoint ---------------------------------------------------------------------------------
def test_gunpoint_keeps_the_official_split():
    data = load_starter("gunpoint")
    assert data.modality == "sequences" and data.input_shape == (150, 1)
    assert data.classes == ["gun-draw", "point"] and not data.synthetic
    # Official 50 train (24 gun-draw, 26 point) and 150 test (76, 74); validation from train.
    assert (len(data.train), len(data.val), len(data.test)) == (42, 8, 150)
    official_train = torch.cat([data.train.y, data.val.y])
    assert torch.bincount(official_train).tolist() == [24, 26]
    assert torch.bincount(data.test.y).tolist() == [76, 74]
    assert torch.bincount(data.val.y).tolist() == [4, 4]  # stratified
    for split in (data.train, data.val, data.test):
        assert split.x.shape[1:] == (150, 1) and split.lengths is None
        # z-normalised per series
        assert split.x.mean(1).abs().max() < 1e-5
        assert (split.x.std(1, correction=0) - 1).abs().max() < 1e-4


def test_gunpoint_validation_follows_the_seed():
    first = load_starter("gunpoint", seed=0)
    other = load_data("gunpoint", seed=1)
    assert torch.equal(first.test.x, other.test.x)  # the official test set, whatever the seed
    assert not torch.equal(first.val.x, other.val.x)


def test_read_ts_parses_and_rejects(tmp_path):
    path = tmp_path / "toy.ts"
    path.write_text("# a comment\n@problemName toy\n@data\n1,2,3:a\n4,5,6:7,8,9:b\n")
    with pytest.raises(ValueError, match="unequal lengths"):
        read_ts(str(path))
    path.write_text("@data\n1,2,3:4,5,6:a\n7,8,9:1,1,1:b\n")
    x, labels = read_ts(str(path))
    assert x.shape == (2, 3, 2) and labels == ["a", "b"]
    assert x[0, :, 1].tolist() == [4, 5, 6]
    path.write_text("1,2,3:a\n")
    with pytest.raises(ValueError, match="no '@data' line"):
        read_ts(str(path))
    path.write_text("@data\n1,2,3:4,5:a\n")
    with pytest.raises(ValueError, match="line 2 expected dimensions of equal length"):
        read_ts(str(path))


# -- spoken digits ----------------------------------------------------------------------------
def test_spoken_digits_are_padded_with_lengths():
    data = load_starter("spoken-digits")
    assert data.modality == "sequences" and data.input_shape == (92, 13)
    splits = (data.train, data.val, data.test)
    assert sum(len(s) for s in splits) == 3000
    lengths = torch.cat([s.lengths for s in splits])
    assert lengths.dtype == torch.int64 and (lengths.min(), lengths.max()) == (6, 92)
    assert int(lengths.sum()) == 53999  # every frame of digits.npz, once
    for split in splits:
        assert torch.bincount(split.y, minlength=10).min() > 0
        steps = torch.arange(92)[None, :] < split.lengths[:, None]  # (N, T) real steps
        assert bool((split.x[~steps] == 0).all())  # padding is zero
        assert bool((split.x[steps].abs().sum(-1) > 0).all())  # real frames are not
    assert torch.bincount(torch.cat([s.y for s in splits])).tolist() == [300] * 10


def test_spoken_digits_are_standardised_over_real_train_frames_only():
    data = load_starter("spoken-digits")
    real = data.train.x[torch.arange(92)[None, :] < data.train.lengths[:, None]]  # (frames, 13)
    assert real.mean(0).abs().max() < 1e-4
    assert (real.std(0, correction=0) - 1).abs().max() < 1e-4
    # Padded zeros would pull the std of all train steps well below 1.
    assert data.train.x.reshape(-1, 13).std(0).max() < 0.9
    val = data.val.x[torch.arange(92)[None, :] < data.val.lengths[:, None]]
    assert val.mean(0).abs().max() > 1e-3  # validation frames were not used for the statistics


# -- digits read pixel by pixel ---------------------------------------------------------------
def test_pixel_digits_are_the_digits_scans_row_by_row():
    pixels = load_data("pixel-digits")
    images = load_data("digits")
    assert pixels.modality == "sequences" and pixels.input_shape == (64, 1)
    assert pixels.preprocessing["order"] == "row-major order"
    for part in ("train", "val", "test"):
        seq, img = getattr(pixels, part), getattr(images, part)
        assert seq.x.shape == (len(img), 64, 1) and torch.equal(seq.y, img.y)
        assert torch.allclose(seq.x[:, :, 0], img.x.reshape(len(img), 64), atol=1e-5)
        assert seq.lengths is None


def test_pixel_digits_permuted_reorders_every_split_the_same_way():
    plain = load_data("pixel-digits", seed=3)
    permuted = load_data("pixel-digits-permuted", seed=3)
    order = pixel_permutation()
    assert sorted(order.tolist()) == list(range(64)) and (order != np.arange(64)).sum() > 50
    assert permuted.preprocessing["permutation"] == order.tolist()
    for a, b in (
        (plain.train, permuted.train),
        (plain.val, permuted.val),
        (plain.test, permuted.test),
    ):
        assert torch.equal(b.x, a.x[:, torch.from_numpy(order)]) and torch.equal(a.y, b.y)
    # The permutation is fixed: another split seed reorders the pixels identically.
    assert load_data("pixel-digits-permuted", seed=0).preprocessing["permutation"] == order.tolist()


# -- synthetic selective copy -----------------------------------------------------------------
def oracle(x: np.ndarray, num_tokens: int) -> np.ndarray:
    """Read the label off the inputs: the token at the k-th marked step, k from the last step."""
    v = num_tokens
    labels = []
    for seq in x:
        marked = np.flatnonzero(seq[:, v] == 1)  # time order
        k = int(np.argmax(seq[-1, v + 1 :]))
        labels.append(int(np.argmax(seq[marked[k], :v])))
    return np.array(labels)


def test_selective_copy_labels_are_recoverable_by_an_oracle():
    x, y = make_selective_copy(300, length=50, num_tokens=6, num_queries=3, seed=7)
    assert x.shape == (300, 50, 6 + 1 + 3) and y.shape == (300,)
    assert np.array_equal(oracle(x, 6), y)
    marker = x[:, :, 6]
    assert (marker.sum(1) == 3).all() and (marker[:, -1] == 0).all()
    # Marked steps carry exactly one token; blank steps are all zero; the last holds a query.
    assert (x[:, :, :6].sum(-1) == marker).all()
    blank = (marker == 0)[:, :-1]
    assert (x[:, :-1][blank] == 0).all()
    assert (x[:, -1, 7:].sum(-1) == 1).all() and (x[:, -1, :7] == 0).all()
    assert set(y.tolist()) == set(range(6))


def test_selective_copy_starter_is_synthetic_and_deterministic():
    data = load_selective_copy(seed=0, num_examples=600, length=40)
    again = load_selective_copy(seed=0, num_examples=600, length=40)
    other = load_selective_copy(seed=1, num_examples=600, length=40)
    assert data.synthetic and "synthetic" in data.description and data.name == "selective-copy"
    assert data.modality == "sequences" and data.input_shape == (40, 13) and data.num_classes == 8
    assert (len(data.train), len(data.val), len(data.test)) == (420, 90, 90)
    assert torch.equal(data.train.x, again.train.x) and torch.equal(data.test.y, again.test.y)
    assert not torch.equal(data.train.x, other.train.x)
    # Each split is drawn from its own seed: no sequence repeats across splits.
    assert not torch.equal(data.val.x[:10], data.test.x[:10])
    for split in (data.train, data.val, data.test):
        assert np.array_equal(oracle(split.x.numpy(), 8), split.y.numpy())


def test_selective_copy_default_starter():
    data = load_data("selective-copy")
    assert data.input_shape == (200, 13)
    assert (len(data.train), len(data.val), len(data.test)) == (4200, 900, 900)


def test_make_selective_copy_rejects_impossible_sizes():
    with pytest.raises(ValueError, match="length >= num_queries \\+ 1"):
        make_selective_copy(4, length=4, num_queries=4)
    with pytest.raises(ValueError, match="num_tokens >= 2"):
        make_selective_copy(4, num_tokens=1)
