import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits as sklearn_digits

from fieldguide.data import ClassificationData, load_data


@pytest.fixture(scope="module")
def digits() -> ClassificationData:
    return load_data("digits")


def _raw(data: ClassificationData, split) -> torch.Tensor:
    """Undo the standardization: back to pixel values in [0, 1]."""
    mean, std = data.preprocessing["mean"][0], data.preprocessing["std"][0]
    return split.x * std + mean


def test_digits_shapes_and_classes(digits):
    assert digits.name == "digits" and digits.modality == "images"
    assert digits.input_shape == (1, 8, 8)
    assert digits.classes == [str(d) for d in range(10)] and digits.num_classes == 10
    assert (len(digits.train), len(digits.val), len(digits.test)) == (1257, 270, 270)
    for split in (digits.train, digits.val, digits.test):
        assert split.x.dtype == torch.float32 and split.y.dtype == torch.int64
        assert split.x.shape[1:] == (1, 8, 8) and split.x.shape[0] == split.y.shape[0]
    assert not digits.synthetic and digits.feature_names is None
    assert "1,797" in digits.description


def test_digits_splits_do_not_overlap_and_cover_the_data(digits):
    # Each scan is a distinct 64-pixel pattern (up to a few duplicates), so compare rows.
    raw = {
        split: _raw(digits, s).round(decimals=4)
        for split, s in (("train", digits.train), ("val", digits.val), ("test", digits.test))
    }
    rows = torch.cat(list(raw.values())).reshape(-1, 64)
    reference = torch.from_numpy(sklearn_digits().images.reshape(-1, 64) / 16.0).float()
    assert rows.shape == reference.shape

    # The multiset of scans is unchanged: sorting rows lexicographically gives the same table.
    def key(t):
        return sorted(map(tuple, t.round(decimals=4).tolist()))

    assert key(rows) == key(reference)


def test_digits_standardized_with_train_stats_only(digits):
    assert abs(digits.train.x.mean().item()) < 1e-4
    assert abs(digits.train.x.std().item() - 1) < 1e-3
    # The stored mean is the train split's raw mean, not the whole dataset's.
    raw_train = _raw(digits, digits.train)
    assert raw_train.mean().item() == pytest.approx(digits.preprocessing["mean"][0], abs=1e-5)
    whole = sklearn_digits().images.mean() / 16.0
    assert abs(whole - digits.preprocessing["mean"][0]) > 1e-5
    assert digits.val.x.mean().item() != pytest.approx(0.0, abs=1e-6)


def test_digits_split_is_stratified(digits):
    overall = np.bincount(sklearn_digits().target, minlength=10) / 1797
    for split in (digits.train, digits.val, digits.test):
        share = np.bincount(split.y.numpy(), minlength=10) / len(split)
        assert np.abs(share - overall).max() < 0.01


def test_digits_same_seed_same_split_other_seed_other_split(digits):
    again = load_data("digits", seed=0)
    other = load_data("digits", seed=1)
    assert torch.equal(again.val.x, digits.val.x) and torch.equal(again.test.y, digits.test.y)
    assert not torch.equal(other.val.x, digits.val.x)


def test_digits_fractions_change_split_sizes():
    data = load_data("digits", val_fraction=0.1, test_fraction=0.2)
    assert (len(data.train), len(data.val), len(data.test)) == (1258, 180, 359)
