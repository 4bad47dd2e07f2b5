"""The user's own sequences: a folder of CSV files per class, or one .npz, as classification."""

import csv

import numpy as np
import pytest

from fieldguide.api import train
from fieldguide.data import load_data
from fieldguide.data.base import ClassificationData
from fieldguide.tasks import make_task
from fieldguide.tasks.sequence_classification import SequenceClassificationTask
from tests.data.helpers import require_starter

MFCC = [f"mfcc{i}" for i in range(13)]


def spoken_digits(per_class=None):
    """The real spoken-digit utterances as raw MFCC frames (T_i, 13), with their digit labels.

    The starter's standardisation is undone, so these are the frames of its archive.
    """
    require_starter("spoken-digits")
    data = load_data("spoken-digits")
    mean, std = np.array(data.preprocessing["mean"]), np.array(data.preprocessing["std"])
    frames, labels = [], []
    for split in (data.train, data.val, data.test):
        rows = zip(split.x.numpy(), split.lengths.tolist(), split.y.tolist(), strict=True)
        for x, length, y in rows:
            if per_class is None or labels.count(y) < per_class:
                frames.append(x[:length].astype(np.float64) * std + mean)
                labels.append(y)
    return frames, np.array(labels), data.classes


def write_sequence(path, rows, header=MFCC):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)


def write_folder(root, frames, labels, classes):
    for i, (steps, label) in enumerate(zip(frames, labels, strict=True)):
        write_sequence(root / classes[label] / f"{i:04d}.csv", steps.tolist())
    return str(root)


def raw_sequences(data):
    """Every loaded sequence of the three splits with its standardisation undone, and its class."""
    mean, std = np.array(data.preprocessing["mean"]), np.array(data.preprocessing["std"])
    out = []
    for split in (data.train, data.val, data.test):
        lengths = split.lengths.tolist() if split.lengths is not None else None
        for i, (x, y) in enumerate(zip(split.x.numpy(), split.y.tolist(), strict=True)):
            n = lengths[i] if lengths else len(x)
            assert not x[n:].any()  # zeros past each sequence's end
            out.append((x[:n].astype(np.float64) * std + mean, data.classes[y]))
    return out


def assert_same_sequences(data, frames, labels, classes):
    """Each loaded sequence, standardisation undone, is a distinct written one of its class."""
    by_length = {}
    for i, steps in enumerate(frames):
        by_length.setdefault(len(steps), []).append(i)
    loaded, used = raw_sequences(data), set()
    assert len(loaded) == len(frames)
    for steps, name in loaded:
        candidates = by_length[len(steps)]
        error = [np.abs(frames[i] - steps).max() for i in candidates]
        best = candidates[int(np.argmin(error))]
        assert min(error) < 1e-3 and classes[labels[best]] == name and best not in used
        used.add(best)
    # Standardised with the train split's real steps: mean 0 and std 1 there.
    lengths = data.train.lengths.tolist()
    real = np.concatenate([x[:n] for x, n in zip(data.train.x.numpy(), lengths, strict=True)])
    assert np.allclose(real.mean(0), 0, atol=1e-4) and np.allclose(real.std(0), 1, atol=1e-3)


def test_real_spoken_digits_round_trip_through_a_folder_of_csv_files(tmp_path):
    frames, labels, classes = spoken_digits(per_class=10)
    data = load_data(write_folder(tmp_path / "recordings", frames, labels, classes))
    assert isinstance(data, ClassificationData) and data.modality == "sequences"
    assert data.classes == classes and data.name == "recordings"
    longest = max(len(s) for s in frames)
    assert data.input_shape == (longest, 13) and data.preprocessing["channels"] == MFCC
    assert sorted(sum((s.lengths.tolist() for s in (data.train, data.val, data.test)), [])) == (
        sorted(len(s) for s in frames)
    )
    assert_same_sequences(data, frames, labels, classes)
    assert "real steps" in data.preprocessing["scale"]
    assert isinstance(make_task(data), SequenceClassificationTask)


def test_real_spoken_digits_round_trip_through_an_npz(tmp_path):
    frames, labels, classes = spoken_digits()
    flat = tmp_path / "digits.npz"
    lengths = np.array([len(s) for s in frames])
    np.savez(flat, x=np.concatenate(frames), lengths=lengths, y=labels)
    data = load_data(str(flat), seed=2)
    assert data.modality == "sequences" and data.input_shape == (92, 13)
    assert data.classes == [str(c) for c in range(10)] and len(data.train) == 2100
    assert_same_sequences(data, frames, labels, [str(c) for c in range(10)])
    # The same sequences padded to (N, T, C) with lengths, and string labels, load the same.
    padded = np.zeros((len(frames), 92, 13))
    for i, steps in enumerate(frames):
        padded[i, : len(steps)] = steps
    names = np.array([f"digit-{y}" for y in labels])
    np.savez(tmp_path / "padded.npz", x=padded, lengths=lengths, y=names)
    again = load_data(str(tmp_path / "padded.npz"), seed=2)
    assert again.classes == [f"digit-{c}" for c in range(10)]
    assert np.allclose(again.train.x.numpy(), data.train.x.numpy(), atol=1e-5)


def test_equal_lengths_need_no_lengths(tmp_path):
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(40, 7, 2)), np.arange(40) % 2
    np.savez(tmp_path / "even.npz", x=x, y=y)
    data = load_data(str(tmp_path / "even.npz"))
    assert data.input_shape == (7, 2) and data.train.lengths is None
    assert isinstance(make_task(data), SequenceClassificationTask)


def test_gru_trains_on_a_folder_of_real_sequences(tmp_path):
    frames, labels, classes = spoken_digits(per_class=8)
    folder = write_folder(tmp_path / "recordings", frames, labels, classes)
    result = train("gru", folder, max_steps=3, progress="quiet", runs_dir=tmp_path / "runs")
    assert result.status == "finished" and "test/accuracy" in result.test_metrics


def tiny_folder(root, n=8, classes=("a", "b")):
    """A SYNTHETIC folder of n short two-channel sequences per class."""
    for name in classes:
        for i in range(n):
            write_sequence(root / name / f"{i}.csv", [[i, t] for t in range(3 + i % 3)], ["x", "y"])
    return root


def test_bad_folders_are_one_sentence(tmp_path):
    root = tiny_folder(tmp_path / "headers")
    write_sequence(root / "b" / "9.csv", [[1, 2]], ["x", "z"])
    with pytest.raises(ValueError, match=r"b/9\.csv has the columns \['x', 'z'\] but .*a/0\.csv"):
        load_data(str(root))

    root = tiny_folder(tmp_path / "cells")
    write_sequence(root / "a" / "9.csv", [[1, 2], [3, "loud"]], ["x", "y"])
    with pytest.raises(ValueError, match=r"a/9\.csv row 3 has 'loud' in column 'y'"):
        load_data(str(root))

    root = tiny_folder(tmp_path / "empty")
    (root / "b" / "9.csv").write_text("")
    with pytest.raises(ValueError, match=r"b/9\.csv is empty"):
        load_data(str(root))

    root = tiny_folder(tmp_path / "one", classes=("a",))
    with pytest.raises(ValueError, match=r"has 1 class sub-folder \('a'\); classification needs"):
        load_data(str(root))

    root = tiny_folder(tmp_path / "bare")
    write_sequence(root / "a" / "9.csv", [[1, 2]], ["3", "4"])
    with pytest.raises(ValueError, match=r"a/9\.csv starts with a row of numbers"):
        load_data(str(root))

    with pytest.raises(ValueError, match="image_size applies only to image folders"):
        load_data(str(tiny_folder(tmp_path / "sized")), image_size=8)


@pytest.mark.parametrize(
    ("arrays", "message"),
    [
        ({"y": np.arange(4)}, r"has no array 'x' \(it holds 'y'\)"),
        ({"x": np.zeros((4, 3, 1))}, r"has no array 'y' \(it holds 'x'\)"),
        (
            {"x": np.zeros((4, 3, 1)), "y": np.arange(5)},
            r"has y of shape \(5,\) for 4 sequences",
        ),
        (
            {"x": np.zeros((10, 2)), "lengths": np.array([3, 3, 3]), "y": np.arange(3)},
            r"lengths summing to 9 but x holds 10 steps",
        ),
        (
            {"x": np.zeros((4, 3, 1)), "lengths": np.array([1, 2, 3, 4]), "y": np.arange(4)},
            r"lengths of shape \(4,\) up to 4; expected one length per sequence, each at most T=3",
        ),
        ({"x": np.zeros((10, 2)), "y": np.arange(10)}, r"shape \(10, 2\) and no lengths; give"),
        ({"x": np.zeros(10), "y": np.arange(10)}, r"x of shape \(10,\); expected \(N, T, C\)"),
        ({"x": np.zeros((4, 3, 1)), "y": np.linspace(0, 1, 4)}, "y of dtype float64"),
        ({"x": np.zeros((12, 3, 1)), "y": np.zeros(12, dtype=int)}, r"holds one class \('0'\)"),
    ],
)
def test_bad_npz_files_are_one_sentence(tmp_path, arrays, message):
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    with pytest.raises(ValueError, match=message):
        load_data(str(path))


def test_ragged_object_arrays_are_refused_not_unpickled(tmp_path):
    ragged = np.empty(2, dtype=object)
    ragged[0], ragged[1] = np.zeros((3, 2)), np.zeros((5, 2))
    np.savez(tmp_path / "ragged.npz", x=ragged, y=np.arange(2))
    with pytest.raises(ValueError, match=r"'x' as an object array.*pickle is refused.*`lengths`"):
        load_data(str(tmp_path / "ragged.npz"))
    (tmp_path / "text.npz").write_text("not an archive")
    with pytest.raises(ValueError, match=r"text\.npz could not be read as a NumPy \.npz archive"):
        load_data(str(tmp_path / "text.npz"))
    with pytest.raises(ValueError, match="target applies only to .csv files"):
        load_data(str(tmp_path / "ragged.npz"), target="y")


def test_a_readme_beside_the_class_folders_keeps_it_a_sequence_folder(tmp_path):
    rng = np.random.default_rng(0)
    for label in ("a", "b"):
        (tmp_path / "rec" / label).mkdir(parents=True)
        for i in range(8):  # synthetic: 5 steps of 2 channels
            rows = "\n".join(",".join(f"{v:.3f}" for v in rng.normal(size=2)) for _ in range(5))
            (tmp_path / "rec" / label / f"{i}.csv").write_text("c0,c1\n" + rows + "\n")
    (tmp_path / "rec" / "README.txt").write_text("recordings of two kinds, one file each\n")
    data = load_data(str(tmp_path / "rec"))
    assert data.modality == "sequences" and data.input_shape == (5, 2)
