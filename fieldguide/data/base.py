"""In-memory data: the `ClassificationData`, `SeriesData`, `TextData` and `Seq2SeqData` contracts.

Every classification reader (starters, image folders, CSV files) returns the same thing: three
splits of float32 inputs and int64 labels, the class names and the per-sample input shape.
Statistics for scaling (means, standard deviations, medians, vocabularies) come from the train
split only, so nothing about validation or test rows leaks into the inputs the model trains on.

A forecasting reader returns a `SeriesData` instead: one multivariate series in raw units, cut
chronologically into train, validation and test; the forecasting task does the scaling.

Text comes as token ids of the byte tokenizer (`fieldguide.data.tokenizer`: ids 0..255 are UTF-8
bytes, then PAD, BOS, EOS): a `TextData` is one long stream cut into three parts, for language
modelling; a `Seq2SeqData` holds (source, target) pairs; text classification uses
`ClassificationData` with modality "text", its x right-padded ids and `Split.lengths` set.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from sklearn.model_selection import train_test_split


@dataclass
class Split:
    """One split of a classification or regression dataset.

    Attributes:
        x: Inputs, float32, shape (N, *input_shape); for text, int64 token ids (N, T)
            right-padded with the tokenizer's PAD.
        y: Labels, int64, shape (N,), label i naming `classes[i]`; or, for regression, the
            target in its own units, float64 of shape (N,).
        lengths: For sequences (N, T, C) or texts (N, T) right-padded to a common T: the number
            of real steps (tokens) of each, int64 of shape (N,); None when every sequence
            fills all T steps.
    """

    x: torch.Tensor
    y: torch.Tensor
    lengths: torch.Tensor | None = None

    def __len__(self) -> int:
        return int(self.y.shape[0])


@dataclass
class ClassificationData:
    """A classification dataset held in memory, split into train, validation and test.

    Attributes:
        name: Short, filesystem-safe name used in run folders: "digits", or the file or
            folder stem.
        modality: "images", "tabular", "sequences" (samples (T, C), see `Split.lengths`) or
            "text" (samples (T,) of token ids, see `Split.lengths`).
        train: Split the model is fitted on; all scaling statistics come from it.
        val: Split for early stopping and model selection.
        test: Held-out split, reported once.
        classes: Class names; label i is `classes[i]`.
        input_shape: Shape of one sample: (C, H, W) for images, (D,) for tabular, (T, C) for
            sequences and (T,) for text (T the padded length).
        description: One line for reports.
        feature_names: Names of the D tabular features (one-hot columns expanded), else None.
        synthetic: True when the data is generated rather than real.
        preprocessing: How raw inputs were turned into `x` (for example the per-channel
            "mean" and "std"), so new inputs can be prepared the same way; JSON-friendly.
        sources: Per split, where each example came from (an image folder's files, relative
            to it), in the split's order; None when examples have no file of their own.
        texts: Text data only: per split, the raw texts in the split's order, so that a
            pretrained model can tokenize them with its own vocabulary; else None.
    """

    name: str
    modality: str
    train: Split
    val: Split
    test: Split
    classes: list[str]
    input_shape: tuple[int, ...]
    description: str
    feature_names: list[str] | None = None
    synthetic: bool = False
    preprocessing: dict[str, Any] = field(default_factory=dict)
    sources: dict[str, list[str]] | None = None
    texts: dict[str, list[str]] | None = None

    @property
    def num_classes(self) -> int:
        """Number of classes."""
        return len(self.classes)


@dataclass
class RegressionData:
    """A regression dataset held in memory: one numeric target per row, three splits.

    Attributes:
        name: Short, filesystem-safe name used in run folders (the file stem).
        train: Split for fitting; `y` holds the target in its own units (float64).
        val: Split for early stopping and model selection.
        test: Held-out split, reported once.
        target: Name of the target column.
        input_shape: Shape of one row's features, (D,).
        description: One line for reports.
        feature_names: Names of the D features (one-hot columns expanded).
        synthetic: True when the data is generated rather than real.
        preprocessing: How raw rows were turned into `x`; JSON-friendly.
        modality: Always "tabular".
    """

    name: str
    train: Split
    val: Split
    test: Split
    target: str
    input_shape: tuple[int, ...]
    description: str
    feature_names: list[str] | None = None
    synthetic: bool = False
    preprocessing: dict[str, Any] = field(default_factory=dict)
    modality: str = "tabular"


@dataclass
class SeriesData:
    """One multivariate time series held in memory, cut chronologically into three parts.

    `values[:train_end]` is the training part, `values[train_end:val_end]` validation and
    `values[val_end:]` test, so every split lies after the one before it in time. Values are in
    raw units: the forecasting task fits its scaling on the training part alone.

    Attributes:
        name: Short, filesystem-safe name used in run folders: "sunspots".
        values: The series, float32 of shape (T, C): T time steps of C columns, all finite.
        columns: Names of the C columns.
        train_end: First step after the training part.
        val_end: First step of the test part.
        season: Seasonal period in steps (11 for yearly sunspots, 52 for weekly CO2); the
            seasonal-naive baseline repeats the last `season` values.
        context: Suggested number of past steps a forecast reads.
        horizon: Suggested number of future steps a forecast predicts.
        description: One line for reports.
        synthetic: True when the data is generated rather than real.
        modality: Always "time-series".
        preprocessing: What was done to the raw file (for example how missing values were
            filled); JSON-friendly.
    """

    name: str
    values: torch.Tensor
    columns: list[str]
    train_end: int
    val_end: int
    season: int
    context: int
    horizon: int
    description: str
    synthetic: bool = False
    modality: str = "time-series"
    preprocessing: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        values = self.values
        if not isinstance(values, torch.Tensor) or values.ndim != 2:
            shown = tuple(values.shape) if isinstance(values, torch.Tensor) else type(values)
            raise ValueError(
                f"SeriesData expects values as a tensor of shape (T, C); got {shown}; "
                f"a single series is values[:, None]."
            )
        steps, width = values.shape
        if len(self.columns) != width:
            raise ValueError(
                f"SeriesData expects one name in columns per column of values ({width}); "
                f"got {len(self.columns)}."
            )
        if not bool(torch.isfinite(values).all()):
            raise ValueError(
                f"SeriesData '{self.name}' expects finite values; got "
                f"{int((~torch.isfinite(values)).sum())} NaN or infinite; fill them first."
            )
        if not 0 < self.train_end < self.val_end < steps:
            raise ValueError(
                f"SeriesData expects 0 < train_end < val_end < T={steps} so that every split "
                f"holds steps; got train_end={self.train_end} and val_end={self.val_end}."
            )
        for arg in ("season", "context", "horizon"):
            if getattr(self, arg) < 1:
                raise ValueError(
                    f"SeriesData expects {arg} of at least 1; got {getattr(self, arg)}."
                )

    @property
    def num_steps(self) -> int:
        """Length T of the whole series."""
        return int(self.values.shape[0])

    @property
    def num_columns(self) -> int:
        """Number of columns C."""
        return int(self.values.shape[1])

    @property
    def input_shape(self) -> tuple[int, int]:
        """Shape (context, C) of one forecast's input at the suggested context."""
        return (self.context, self.num_columns)

    def bounds(self, split: str) -> tuple[int, int]:
        """Steps [start, end) of `split` ("train", "val" or "test") in `values`."""
        edges = {
            "train": (0, self.train_end),
            "val": (self.train_end, self.val_end),
            "test": (self.val_end, self.num_steps),
        }
        if split not in edges:
            raise ValueError(f"split must be 'train', 'val' or 'test'; got {split!r}.")
        return edges[split]


def check_token_ids(
    ids: object,
    ndim: int,
    shape: str,
    *,
    owner: str,
    name: str,
    vocab_size: int | None,
    noun: str = "token ids",
) -> None:
    """One sentence unless `ids` is an int64 tensor of rank `ndim` with ids in [0, vocab_size)."""
    if not isinstance(ids, torch.Tensor) or ids.ndim != ndim or ids.dtype != torch.int64:
        shown = (
            f"{ids.dtype} of shape {tuple(ids.shape)}"
            if isinstance(ids, torch.Tensor)
            else type(ids).__name__
        )
        raise ValueError(f"{owner} expects {name} as int64 {noun} of shape {shape}; got {shown}.")
    if vocab_size is not None and ids.numel():
        low, high = int(ids.min()), int(ids.max())
        if low < 0 or high >= vocab_size:
            raise ValueError(
                f"{owner} expects {name} ids in [0, vocab_size={vocab_size}); "
                f"got ids {low}..{high}."
            )


@dataclass
class TextData:
    """One long stream of token ids held in memory, cut into train, validation and test.

    The three parts are consecutive stretches of the same text (for a starter: the last 10 %
    test, the 5 % before it validation), so no passage is in two splits. Ids come from a
    tokenizer without any vocabulary fitted on the data (the byte tokenizer), so nothing about
    the held-out text leaks into the ids.

    Attributes:
        name: Short, filesystem-safe name used in run folders: "kjv".
        train: Ids of the training part, int64 of shape (N_train,).
        val: Ids of the validation part, int64 of shape (N_val,).
        test: Ids of the test part, int64 of shape (N_test,).
        vocab_size: Number of token ids (259 for the byte tokenizer); every id is below it.
        description: One line for reports.
        synthetic: True when the text is generated rather than real.
        modality: Always "text".
        preprocessing: How the raw text became ids (tokenizer, where the splits were cut);
            JSON-friendly.
    """

    name: str
    train: torch.Tensor
    val: torch.Tensor
    test: torch.Tensor
    vocab_size: int
    description: str
    synthetic: bool = False
    modality: str = "text"
    preprocessing: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for split in ("train", "val", "test"):
            ids = getattr(self, split)
            check_token_ids(ids, 1, "(N,)", owner="TextData", name=split, vocab_size=None)
            if len(ids) < 2:
                raise ValueError(
                    f"TextData '{self.name}' expects at least 2 tokens in {split} (one input and "
                    f"its next token); got {len(ids)}."
                )
            check_token_ids(
                ids,
                1,
                "(N,)",
                owner=f"TextData '{self.name}'",
                name=split,
                vocab_size=self.vocab_size,
            )

    def split_sizes(self) -> dict[str, int]:
        """Tokens per split."""
        return {s: len(getattr(self, s)) for s in ("train", "val", "test")}


@dataclass
class Seq2SeqSplit:
    """One split of a sequence-to-sequence dataset: sources and targets as right-padded ids.

    Attributes:
        src: Source ids, int64 of shape (N, S), PAD after each source's end.
        tgt: Target ids, int64 of shape (N, T), PAD after each target's end; without BOS or
            EOS, which the seq2seq task adds (decoder input BOS + target, output target + EOS).
    """

    src: torch.Tensor
    tgt: torch.Tensor

    def __len__(self) -> int:
        return int(self.src.shape[0])


@dataclass
class Seq2SeqData:
    """(source, target) token sequences held in memory, split into train, validation and test.

    Ids are those of the byte tokenizer (`fieldguide.data.tokenizer`), whose PAD fills each
    row past its end; real ids never equal PAD, so `ids != PAD` marks the real tokens.

    Attributes:
        name: Short, filesystem-safe name used in run folders: "dates".
        train: Split the model is fitted on.
        val: Split for early stopping and model selection.
        test: Held-out split, reported once.
        vocab_size: Number of token ids, PAD, BOS and EOS included (259 for bytes).
        description: One line for reports; says "synthetic" when the pairs are generated.
        synthetic: True when the pairs are generated rather than real.
        modality: Always "seq2seq".
        preprocessing: How the pairs were made and encoded; JSON-friendly.
    """

    name: str
    train: Seq2SeqSplit
    val: Seq2SeqSplit
    test: Seq2SeqSplit
    vocab_size: int
    description: str
    synthetic: bool = False
    modality: str = "seq2seq"
    preprocessing: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for split in ("train", "val", "test"):
            part = getattr(self, split)
            for arg in ("src", "tgt"):
                check_token_ids(
                    getattr(part, arg),
                    2,
                    "(N, length)",
                    owner=f"Seq2SeqData '{self.name}'",
                    name=f"{split}.{arg}",
                    vocab_size=self.vocab_size,
                    noun="ids",
                )
            if part.src.shape[0] != part.tgt.shape[0]:
                raise ValueError(
                    f"Seq2SeqData expects one target per source in {split}; got "
                    f"{part.src.shape[0]} sources and {part.tgt.shape[0]} targets."
                )

    def split_sizes(self) -> dict[str, int]:
        """Pairs per split."""
        return {s: len(getattr(self, s)) for s in ("train", "val", "test")}


@dataclass
class GraphData:
    """One graph whose nodes are classified, with the node indices of each split.

    Attributes:
        name: Short, filesystem-safe name used in run folders: "karate".
        graph: The whole graph (`fieldguide.layers.graph.Graph`): x (N, C) float32 node
            features, edge_index (2, E) int64 (source -> target), edge_weight (E,) or None,
            y (N,) int64 labels (-1 for a node without one).
        train: Indices of the labelled training nodes, int64 (n_train,).
        val: Indices of the validation nodes.
        test: Indices of the test nodes; the three are disjoint.
        classes: Class names; label i is `classes[i]`.
        description: One line for reports.
        directed: Whether the edges are directed as given (a connectome) or listed both ways.
        features: How x was made: "given" or the default used for featureless nodes
            ("spectral", "degree", "identity"); see `fieldguide.data.graph_features`.
        synthetic: True when the data is generated rather than real.
        modality: Always "graphs".
        preprocessing: What was done to the raw files; JSON-friendly.
    """

    name: str
    graph: Any
    train: torch.Tensor
    val: torch.Tensor
    test: torch.Tensor
    classes: list[str]
    description: str
    directed: bool = False
    features: str = "given"
    synthetic: bool = False
    modality: str = "graphs"
    preprocessing: dict[str, Any] = field(default_factory=dict)

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one node's features: (C,)."""
        return (int(self.graph.x.shape[1]),)

    @property
    def num_classes(self) -> int:
        """Number of classes."""
        return len(self.classes)


@dataclass
class GraphSetData:
    """Many small graphs, each classified as a whole, split into train, validation and test.

    Attributes:
        name: Short, filesystem-safe name used in run folders.
        train: Graphs (`fieldguide.layers.graph.Graph`) the model is fitted on; each has x
            (N_i, C) float32, edge_index (2, E_i) and y, its label, an int64 tensor of shape ().
        val: Graphs for early stopping and model selection.
        test: Held-out graphs, reported once.
        classes: Class names; label i is `classes[i]`.
        description: One line for reports.
        synthetic: True when the data is generated rather than real.
        modality: Always "graphs".
        preprocessing: How the graphs were made; JSON-friendly.
    """

    name: str
    train: list[Any]
    val: list[Any]
    test: list[Any]
    classes: list[str]
    description: str
    synthetic: bool = False
    modality: str = "graphs"
    preprocessing: dict[str, Any] = field(default_factory=dict)

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one node's features: (C,)."""
        return (int(self.train[0].x.shape[1]),)

    @property
    def num_classes(self) -> int:
        """Number of classes."""
        return len(self.classes)


def chronological_bounds(steps: int, val_fraction: float, test_fraction: float) -> tuple[int, int]:
    """Chronological cut points (train_end, val_end) of a series of `steps` steps.

    The last round(steps * test_fraction) steps are test and the round(steps * val_fraction)
    before them validation; training keeps the rest, at the start.
    """
    n_test, n_val = round(steps * test_fraction), round(steps * val_fraction)
    train_end, val_end = steps - n_val - n_test, steps - n_test
    if not 0 < train_end < val_end < steps:
        raise ValueError(
            f"a series of {steps} steps cannot be cut with val_fraction={val_fraction} and "
            f"test_fraction={test_fraction}: every split needs at least one step."
        )
    return train_end, val_end


def stratified_split(
    labels: int | Sequence[Any] | np.ndarray,
    seed: int,
    val_fraction: float,
    test_fraction: float,
    *,
    class_names: Sequence[str] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Split sample indices into train, validation and test, stratified by label.

    The same seed gives the same split. Sizes are round(N * fraction) for validation and test;
    train takes the rest. Each class must have enough samples that every split can hold one of
    it: at least ceil(1 / smallest fraction), and never fewer than 3.

    Args:
        labels: One label per sample (stratified), or the sample count N (a plain shuffle).
        seed: Seed of the shuffle.
        val_fraction: Share of all samples for validation, in (0, 1).
        test_fraction: Share of all samples for test, in [0, 1); 0 gives an empty test split.
        class_names: Names to show in errors when `labels` are integer codes.

    Returns:
        Sorted index arrays (train, val, test) that together cover range(N) exactly once.
    """
    if isinstance(labels, bool | str) or not isinstance(labels, int | Sequence | np.ndarray):
        raise TypeError(
            f"stratified_split expects labels as an int count or a sequence of labels; "
            f"got {type(labels).__name__}."
        )
    train_fraction = 1.0 - val_fraction - test_fraction
    if not (0 < val_fraction < 1 and 0 <= test_fraction < 1 and train_fraction > 0):
        raise ValueError(
            f"stratified_split expects 0 < val_fraction, 0 <= test_fraction and a sum below 1; "
            f"got val_fraction={val_fraction} and test_fraction={test_fraction}."
        )
    stratify = None if isinstance(labels, int) else np.asarray(labels)
    n = labels if stratify is None else len(stratify)
    n_val, n_test = round(n * val_fraction), round(n * test_fraction)
    if n_val < 1 or (test_fraction > 0 and n_test < 1) or n - n_val - n_test < 1:
        raise ValueError(
            f"stratified_split cannot split {n} samples with val_fraction={val_fraction} and "
            f"test_fraction={test_fraction}: every split needs at least one sample."
        )
    if stratify is not None:
        _check_class_counts(stratify, val_fraction, test_fraction, class_names)

    indices = np.arange(n)
    try:
        # Test first, then validation from the rest, each split keeping the class proportions.
        rest, test = (
            train_test_split(indices, test_size=n_test, random_state=seed, stratify=stratify)
            if n_test > 0
            else (indices, indices[:0])
        )
        train, val = train_test_split(
            rest,
            test_size=n_val,
            random_state=seed,
            stratify=None if stratify is None else stratify[rest],
        )
    except ValueError as error:  # sklearn's own checks, in case rounding defeats ours
        raise ValueError(f"stratified_split could not split {n} samples: {error}") from error
    return np.sort(train), np.sort(val), np.sort(test)


def _check_class_counts(
    labels: np.ndarray,
    val_fraction: float,
    test_fraction: float,
    class_names: Sequence[str] | None,
) -> None:
    """Raise one sentence naming the first class too small to appear in every split."""
    fractions = [f for f in (val_fraction, test_fraction, 1 - val_fraction - test_fraction) if f]
    needed = max(3, math.ceil(1 / min(fractions) - 1e-9))
    values, counts = np.unique(labels, return_counts=True)
    for value, count in zip(values, counts.tolist(), strict=True):
        if count < needed:
            shown = class_names[int(value)] if class_names is not None else value
            raise ValueError(
                f"class '{shown}' has {count} sample{'s' * (count != 1)} but a split with "
                f"val_fraction={val_fraction} and test_fraction={test_fraction} needs at least "
                f"{needed} per class so that every split holds one; add samples of it, remove "
                f"it, or raise the fractions."
            )


def channel_stats(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and standard deviation of images x of shape (N, C, H, W).

    A constant channel gets std 1, so standardizing leaves it at zero instead of dividing by 0.
    """
    mean = x.mean(axis=(0, 2, 3), dtype=np.float64)
    std = x.std(axis=(0, 2, 3), dtype=np.float64)
    std[std < 1e-8] = 1.0
    return mean, std


def image_data(
    x: np.ndarray,
    y: np.ndarray,
    splits: tuple[np.ndarray, np.ndarray, np.ndarray],
    *,
    name: str,
    classes: list[str],
    description: str,
    synthetic: bool = False,
    levels: int = 256,
) -> ClassificationData:
    """Standardize images per channel with train statistics and pack them as ClassificationData.

    Args:
        x: Images scaled to [0, 1], shape (N, C, H, W); a float32 array is standardized in
            place rather than copied, since a full copy of Fashion-MNIST costs 220 MB.
        y: Integer labels, shape (N,).
        splits: Index arrays (train, val, test) into x and y.
        name: Dataset name for run folders.
        classes: Class names.
        description: One line for reports.
        synthetic: Whether the images are generated.
        levels: Distinct pixel values of the files (256 for 8-bit, 17 for the 0..16 digits):
            what a density model's bits per dimension are counted over.
    """
    train, val, test = splits
    mean, std = channel_stats(x[train])
    # Standardize in place, channel by channel, to avoid a second full-size float64 copy.
    x = np.asarray(x, dtype=np.float32)
    for c in range(x.shape[1]):
        x[:, c] -= np.float32(mean[c])
        x[:, c] /= np.float32(std[c])
    return ClassificationData(
        name=name,
        modality="images",
        **tensor_splits(x, y, splits),
        classes=list(classes),
        input_shape=tuple(int(s) for s in x.shape[1:]),
        description=description,
        synthetic=synthetic,
        preprocessing={
            "scale": "pixel values mapped to [0, 1]",
            "mean": [float(m) for m in mean],
            "std": [float(s) for s in std],
            "levels": levels,
            # New images for `predict`/`search` are read as an image folder's files are.
            "reader": "image-folder",
            "rgb": int(x.shape[1]) == 3,
            "image_size": None,
        },
    )


def tensor_splits(
    x: np.ndarray, y: np.ndarray, splits: tuple[np.ndarray, np.ndarray, np.ndarray]
) -> dict[str, Split]:
    """The train, val and test `Split`s of float32 inputs x and integer labels y."""
    xt = torch.from_numpy(np.asarray(x, dtype=np.float32))
    yt = torch.from_numpy(np.asarray(y, dtype=np.int64))
    out = {}
    for key, index in zip(("train", "val", "test"), splits, strict=True):
        index = torch.from_numpy(np.asarray(index, dtype=np.int64))
        out[key] = Split(xt[index].contiguous(), yt[index].contiguous())
    return out


def safe_name(stem: str) -> str:
    """A filesystem-safe dataset name from a file or folder stem ("My data!" -> "my-data")."""
    cleaned = "".join(c if c.isalnum() or c in "._-" else "-" for c in stem.lower())
    cleaned = "-".join(part for part in cleaned.split("-") if part).strip(".")
    return cleaned or "data"
