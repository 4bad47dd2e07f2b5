import numpy as np
import pytest

from fieldguide.data.base import safe_name, stratified_split


def _labels(counts):
    return np.concatenate([np.full(c, k) for k, c in enumerate(counts)])


def test_split_sizes_cover_every_index_once():
    y = _labels([40, 30, 30])
    train, val, test = stratified_split(y, seed=0, val_fraction=0.2, test_fraction=0.1)
    assert (len(train), len(val), len(test)) == (70, 20, 10)
    both = np.concatenate([train, val, test])
    assert np.array_equal(np.sort(both), np.arange(100))


def test_split_is_stratified():
    y = _labels([60, 30, 10])
    train, val, test = stratified_split(y, seed=3, val_fraction=0.2, test_fraction=0.2)
    for part in (val, test):
        assert np.bincount(y[part], minlength=3).tolist() == [12, 6, 2]


def test_split_is_deterministic_by_seed():
    y = _labels([50, 50])
    first = stratified_split(y, 7, 0.2, 0.2)
    again = stratified_split(y, 7, 0.2, 0.2)
    other = stratified_split(y, 8, 0.2, 0.2)
    assert all(np.array_equal(a, b) for a, b in zip(first, again, strict=True))
    assert not np.array_equal(first[1], other[1])


def test_split_of_a_count_is_a_plain_shuffle():
    train, val, test = stratified_split(20, 0, 0.25, 0.25)
    assert (len(train), len(val), len(test)) == (10, 5, 5)
    assert np.array_equal(np.sort(np.concatenate([train, val, test])), np.arange(20))


def test_zero_test_fraction_gives_an_empty_test_split():
    train, val, test = stratified_split(_labels([10, 10]), 0, 0.5, 0.0)
    assert len(test) == 0 and len(val) == 10 and len(train) == 10


def test_split_names_a_class_that_is_too_small():
    y = _labels([30, 30, 2])
    with pytest.raises(ValueError, match="class 'owl' has 2 samples .* at least 7"):
        stratified_split(y, 0, 0.15, 0.15, class_names=["cat", "dog", "owl"])
    with pytest.raises(ValueError, match="class '2' has 2 samples"):
        stratified_split(y.astype(str), 0, 0.15, 0.15)


@pytest.mark.parametrize(
    ("val", "test"), [(0.0, 0.1), (1.0, 0.1), (0.5, 0.5), (0.2, -0.1), (0.6, 0.6)]
)
def test_split_rejects_bad_fractions(val, test):
    with pytest.raises(ValueError, match="val_fraction"):
        stratified_split(100, 0, val, test)


def test_split_rejects_too_few_samples_and_bad_types():
    with pytest.raises(ValueError, match="every split needs at least one sample"):
        stratified_split(3, 0, 0.1, 0.1)
    with pytest.raises(TypeError, match="labels"):
        stratified_split("abc", 0, 0.1, 0.1)
    with pytest.raises(TypeError, match="labels"):
        stratified_split(True, 0, 0.1, 0.1)


def test_safe_name():
    assert safe_name("My data!  v2") == "my-data-v2"
    assert safe_name("iris.v1") == "iris.v1"
    assert safe_name("???") == "data"
