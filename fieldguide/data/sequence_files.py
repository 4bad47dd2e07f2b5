"""The user's own sequences for classification: a folder of CSV files per class, or one .npz.

```
recordings/
  walk/  001.csv 002.csv ...      one sequence per file: a header naming the C channels,
  run/   001.csv ...              then one row of C numbers per time step
```
Class names are the sorted sub-folder names; every file needs the same header. Or one .npz
archive, read with `np.load(path, allow_pickle=False)`, holding `x` as (N, T, C) numbers, or
`x` as (sum of T_i, C) with the sequences back to back and `lengths` (N,) their steps, and `y`
(N,) integer or string labels; (N, T, C) with `lengths` is read as right-padded.

Sequences may differ in length: they are right-padded with zeros to the longest, T, and
`Split.lengths` holds each one's real steps. Each channel is standardised with the mean and std
of the real steps of the train split only, so padding never enters the statistics (as in the
spoken-digits starter). The split is stratified by class and drawn by seed.

Letters: N sequences, T time steps (the padded length), C channels per step.
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import numpy as np

from fieldguide.data.base import ClassificationData, safe_name, stratified_split
from fieldguide.data.csv_read import parse_number, read_csv_rows
from fieldguide.data.image_folder import IMAGE_SUFFIXES
from fieldguide.data.sequences import sequence_data


def _class_dirs(root: Path) -> list[Path]:
    """The sub-folders of `root`, sorted, hidden ones left out."""
    return sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))


def _files(folder: Path) -> list[Path]:
    """The files of `folder`, sorted, hidden ones left out."""
    return sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))


def is_sequence_folder(path: str | os.PathLike[str]) -> bool:
    """Whether `path` is a folder whose class sub-folders hold CSV files and no images."""
    root = Path(path)
    if not root.is_dir():
        return False
    suffixes = {f.suffix.lower() for d in _class_dirs(root) for f in _files(d)}
    return ".csv" in suffixes and not suffixes & IMAGE_SUFFIXES


def _read_sequence(path: Path) -> tuple[list[str], np.ndarray]:
    """The header and the values (T, C) of one sequence file, or one sentence naming the cell."""
    header, rows, lines = read_csv_rows(path)  # names the file when empty or ragged
    if all(parse_number(name) is not None for name in header):
        raise ValueError(
            f"CSV file {path} starts with a row of numbers; expected a header row naming the "
            f"channels, the same in every file, then one row of numbers per time step."
        )
    values = np.empty((len(rows), len(header)), dtype=np.float64)
    for i, (row, line) in enumerate(zip(rows, lines, strict=True)):
        for j, cell in enumerate(row):
            number = parse_number(cell)
            if number is None:
                raise ValueError(
                    f"CSV file {path} row {line} has {cell!r} in column '{header[j]}'; a "
                    f"sequence file holds a finite number in every cell."
                )
            values[i, j] = number
    return header, values


def load_sequence_folder(
    path: str | os.PathLike[str],
    *,
    seed: int = 0,
    val_fraction: float = 0.15,
    test_fraction: float = 0.15,
) -> ClassificationData:
    """Read a folder of class sub-folders of CSV sequences into sequence classification data.

    Args:
        path: The folder; each sub-folder is a class, each .csv file in it one sequence.
        seed: Seed of the split, stratified by class.
        val_fraction: Share of the sequences held out for validation.
        test_fraction: Share held out for test.

    Returns:
        `ClassificationData` of modality "sequences", x (N, T, C) standardised and
        right-padded with zeros, `Split.lengths` the real steps; `preprocessing` holds the
        channel names, means and stds.
    """
    root = Path(path)
    folders = _class_dirs(root)
    if len(folders) < 2:
        found = ", ".join(f"'{p.name}'" for p in folders) or "none"
        raise ValueError(
            f"sequence folder {root} has {len(folders)} class "
            f"sub-folder{'s' * (len(folders) != 1)} ({found}); classification needs at least "
            f"2, one per class, each holding that class's CSV files."
        )
    sequences, labels, channels, first = [], [], None, None
    for label, folder in enumerate(folders):
        files = [f for f in _files(folder) if f.suffix.lower() == ".csv"]
        if not files:
            raise ValueError(
                f"class '{folder.name}' (folder {folder}) has no .csv files; each class "
                f"sub-folder holds one CSV file per sequence."
            )
        for file in files:
            header, values = _read_sequence(file)
            if channels is None:
                channels, first = header, file
            elif header != channels:
                raise ValueError(
                    f"CSV file {file} has the columns {header} but {first} has {channels}; "
                    f"every sequence file needs the same header, one column per channel."
                )
            sequences.append(values)
            labels.append(label)
    classes = [folder.name for folder in folders]
    data = _sequence_classification(
        sequences,
        np.array(labels, dtype=np.int64),
        classes,
        channels,
        name=safe_name(root.name),
        what=f"sequence folder '{root.name}'",
        seed=seed,
        val_fraction=val_fraction,
        test_fraction=test_fraction,
    )
    data.preprocessing["reader"] = "csv-sequences"  # predict reads new CSV files the same way
    return data


def _array(archive: np.lib.npyio.NpzFile, key: str, path: Path) -> np.ndarray:
    """Array `key` of the archive, or one sentence when it would need pickle."""
    try:
        return archive[key]
    except ValueError as error:
        if "pickle" not in str(error):
            raise
        raise ValueError(
            f"NPZ file {path} holds '{key}' as an object array, which only pickle can read and "
            f"pickle is refused; store ragged sequences flat, x as (sum of T_i, C) numbers "
            f"back to back, and give `lengths` (N,) their steps, with y as numbers or strings."
        ) from None


def load_sequence_npz(
    path: str | os.PathLike[str],
    *,
    seed: int = 0,
    val_fraction: float = 0.15,
    test_fraction: float = 0.15,
) -> ClassificationData:
    """Read one .npz archive of sequences and labels into sequence classification data.

    Args:
        path: The .npz file: `x` (N, T, C), or (sum of T_i, C) with `lengths` (N,), and `y`
            (N,) integer or string labels. Nothing is unpickled.
        seed: Seed of the split, stratified by class.
        val_fraction: Share of the sequences held out for validation.
        test_fraction: Share held out for test.

    Returns:
        As `load_sequence_folder`; the channels are named "0".."C-1".
    """
    path = Path(path)
    try:
        archive = np.load(path, allow_pickle=False)
    except (OSError, EOFError, ValueError, zipfile.BadZipFile) as error:
        raise ValueError(
            f"NPZ file {path} could not be read as a NumPy .npz archive ({error}); save it "
            f"with np.savez(path, x=..., y=...)."
        ) from None
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise ValueError(
            f"file {path} holds a single array, not a .npz archive; save x and y together "
            f"with np.savez(path, x=..., y=...)."
        )
    with archive:
        keys = sorted(archive.files)
        missing = [key for key in ("x", "y") if key not in keys]
        if missing:
            raise ValueError(
                f"NPZ file {path} has no array '{missing[0]}' (it holds "
                f"{', '.join(repr(k) for k in keys) or 'nothing'}); expected x, the sequences, "
                f"y, their labels, and lengths for sequences stored back to back."
            )
        x, y = _array(archive, "x", path), _array(archive, "y", path)
        lengths = _array(archive, "lengths", path) if "lengths" in keys else None
    sequences = _split_sequences(x, lengths, path)
    if y.ndim != 1 or len(y) != len(sequences):
        raise ValueError(
            f"NPZ file {path} has y of shape {y.shape} for {len(sequences)} sequences in x; "
            f"expected one label per sequence, y of shape ({len(sequences)},)."
        )
    if y.dtype.kind in "US":
        names = [v.decode() if isinstance(v, bytes) else str(v) for v in y.tolist()]
        classes = sorted(set(names))
    elif y.dtype.kind in "iu":
        names = [str(v) for v in y.tolist()]
        classes = [str(v) for v in sorted(set(y.tolist()))]
    else:
        raise ValueError(
            f"NPZ file {path} has y of dtype {y.dtype}; expected integer or string class "
            f"labels, one per sequence."
        )
    code = {name: i for i, name in enumerate(classes)}
    data = _sequence_classification(
        sequences,
        np.array([code[name] for name in names], dtype=np.int64),
        classes,
        [str(c) for c in range(sequences[0].shape[1])],
        name=safe_name(path.stem),
        what=f"NPZ file '{path.name}'",
        seed=seed,
        val_fraction=val_fraction,
        test_fraction=test_fraction,
    )
    data.preprocessing["reader"] = "npz-sequences"  # predict reads a new .npz's x the same way
    return data


def _split_sequences(x: np.ndarray, lengths: np.ndarray | None, path: Path) -> list[np.ndarray]:
    """The N sequences (T_i, C) of x, cut by `lengths`, or one sentence on shapes that disagree."""
    if x.dtype.kind not in "biuf":
        raise ValueError(
            f"NPZ file {path} has x of dtype {x.dtype}; expected numbers (float or integer)."
        )
    if x.size and not np.isfinite(x).all():
        raise ValueError(
            f"NPZ file {path} has {int((~np.isfinite(x)).sum())} NaN or infinite values in x; "
            f"fill them first."
        )
    if lengths is not None and (
        lengths.ndim != 1 or lengths.dtype.kind not in "iu" or not len(lengths)
    ):
        raise ValueError(
            f"NPZ file {path} has lengths of dtype {lengths.dtype} and shape {lengths.shape}; "
            f"expected integers (N,), the steps of each sequence."
        )
    if lengths is not None and int(lengths.min()) < 1:
        raise ValueError(
            f"NPZ file {path} has a length of {int(lengths.min())} in lengths; every sequence "
            f"needs at least 1 step."
        )
    if x.ndim == 3 and x.shape[0] and x.shape[1] and x.shape[2]:
        if lengths is None:
            return list(x)
        if len(lengths) != x.shape[0] or int(lengths.max()) > x.shape[1]:
            raise ValueError(
                f"NPZ file {path} has x of shape {x.shape} but lengths of shape "
                f"{lengths.shape} up to {int(lengths.max())}; expected one length per "
                f"sequence, each at most T={x.shape[1]}."
            )
        return [x[i, : int(n)] for i, n in enumerate(lengths.tolist())]
    if x.ndim == 2 and x.shape[0] and x.shape[1]:
        if lengths is None:
            raise ValueError(
                f"NPZ file {path} has x of shape {x.shape} and no lengths; give lengths (N,), "
                f"the steps of each sequence stored back to back, or x as (N, T, C)."
            )
        if int(lengths.sum()) != x.shape[0]:
            raise ValueError(
                f"NPZ file {path} has lengths summing to {int(lengths.sum())} but x holds "
                f"{x.shape[0]} steps; the lengths of sequences stored back to back add up to "
                f"x's first dimension."
            )
        starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
        return [x[a : a + n] for a, n in zip(starts.tolist(), lengths.tolist(), strict=True)]
    raise ValueError(
        f"NPZ file {path} has x of shape {x.shape}; expected (N, T, C) sequences, or "
        f"(sum of T_i, C) steps with lengths (N,), with no dimension of size 0."
    )


def _sequence_classification(
    sequences: list[np.ndarray],
    y: np.ndarray,
    classes: list[str],
    channels: list[str],
    *,
    name: str,
    what: str,
    seed: int,
    val_fraction: float,
    test_fraction: float,
) -> ClassificationData:
    """Standardise sequences (T_i, C) with train statistics over real steps, pad, and pack."""
    if len(classes) < 2:
        raise ValueError(
            f"{what} holds one class ('{classes[0]}'); classification needs at least 2."
        )
    splits = stratified_split(y, seed, val_fraction, test_fraction, class_names=classes)
    lengths = np.array([len(s) for s in sequences], dtype=np.int64)  # (N,)
    # 1. train statistics over real steps only
    train_steps = np.concatenate([sequences[i] for i in splits[0]]).astype(np.float64)
    mean, std = train_steps.mean(axis=0), train_steps.std(axis=0)
    std[std < 1e-8] = 1.0  # a constant channel stays at zero instead of dividing by 0
    # 2. standardise, then right-pad with zeros
    x = np.zeros((len(sequences), int(lengths.max()), len(channels)), dtype=np.float32)
    for i, steps in enumerate(sequences):
        x[i, : len(steps)] = (steps - mean) / std
    ragged = bool((lengths != lengths.max()).any())
    return sequence_data(
        x,
        y,
        splits,
        lengths=lengths if ragged else None,
        name=name,
        classes=classes,
        description=(
            f"{what}: {len(y):,} sequences of {lengths.min()}-{lengths.max()} steps x "
            f"{len(channels)} channels, {len(classes)} classes"
        ),
        preprocessing={
            "channels": list(channels),
            "mean": mean.tolist(),
            "std": std.tolist(),
            "scale": "each channel standardised with the mean and std of the train split's "
            "real steps only",
            "padding": "zeros after standardisation, past each sequence's length",
        },
    )
