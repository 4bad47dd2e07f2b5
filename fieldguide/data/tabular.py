"""CSV files as tabular data, read with the standard `csv` module and numpy.

One row per sample, a header row of column names, one column as the target: classification
for labels, regression for a numeric target with many distinct values (`decide_task`). Every other
column becomes features: a numeric column is imputed with the train median and z-scored with
train statistics; a categorical column is one-hot encoded with the train vocabulary, so a
category first seen in validation or test encodes as all zeros. Row numbers in errors count
lines of the file as a spreadsheet shows them: the header is row 1.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from fieldguide.data.base import (
    ClassificationData,
    RegressionData,
    Split,
    safe_name,
    stratified_split,
    tensor_splits,
)
from fieldguide.data.csv_read import (
    MAX_CATEGORIES,
    MISSING,
    NUMERIC_SHARE,
    decide_task,
    find_target,
    parse_number,
    read_csv_rows,
    text_column,
)


def _class_order(values: set[str]) -> list[str]:
    """Class names sorted numerically when they are all numbers ("2" before "10"), else as text."""
    if all(parse_number(v) is not None for v in values):
        return sorted(values, key=lambda v: (float(v), v))
    return sorted(values)


def _numeric(values: list[str], train: np.ndarray) -> tuple[np.ndarray, dict[str, float]]:
    """A numeric column imputed with the train median and z-scored with train mean and std.

    The statistics include `filled`: how many cells (of all rows) were missing and took the
    median.
    """
    column = np.array(
        [np.nan if v.lower() in MISSING else float(v) for v in values], dtype=np.float64
    )
    seen = column[train][~np.isnan(column[train])]
    # A column with no train values at all carries nothing; 0 keeps it finite.
    median = float(np.median(seen)) if seen.size else 0.0
    missing = np.isnan(column)
    column[missing] = median
    mean, std = float(column[train].mean()), float(column[train].std())
    std = std if std > 1e-12 else 1.0  # a constant column stays at zero instead of dividing by 0
    stats = {"median": median, "mean": mean, "std": std, "filled": int(missing.sum())}
    return (column - mean) / std, stats


def _categorical(name: str, values: list[str], train: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """A categorical column one-hot encoded with the sorted train vocabulary ("" is missing)."""
    vocab = sorted({values[i] for i in train} - {""})
    if len(vocab) > MAX_CATEGORIES and len(vocab) > len(train) / 2:
        raise ValueError(
            f"column '{name}' has {len(vocab):,} distinct text values in {len(train):,} train "
            f"rows, so it looks like an identifier or free text; remove it from the CSV or pass "
            f"it as target."
        )
    position = {value: j for j, value in enumerate(vocab)}
    onehot = np.zeros((len(values), len(vocab)), dtype=np.float64)
    for i, value in enumerate(values):
        j = position.get(value)  # unseen or missing -> all zeros
        if j is not None:
            onehot[i, j] = 1.0
    return onehot, vocab


def _column_kind(name: str, values: list[str], lines: list[int], path: Path) -> str:
    """'numeric', 'categorical' or 'empty', or an error for a numeric column with a bad cell."""
    present = [(v, line) for v, line in zip(values, lines, strict=True) if v.lower() not in MISSING]
    if not present:
        return "empty" if not any(values) else "categorical"
    bad = [(v, line) for v, line in present if parse_number(v) is None]
    if not bad:
        return "numeric"
    if 1 - len(bad) / len(present) >= NUMERIC_SHARE:
        value, line = bad[0]
        raise ValueError(
            f"CSV file {path} row {line} has {value!r} in numeric column '{name}'; fix that "
            f"cell or leave it empty so it is imputed with the train median."
        )
    return "categorical"


def load_csv(
    path: str | os.PathLike[str],
    *,
    target: str | None = None,
    seed: int = 0,
    val_fraction: float = 0.15,
    test_fraction: float = 0.15,
    task: str = "auto",
) -> ClassificationData | RegressionData:
    """Read a CSV file into tabular classification or regression data of shape (D,) per row.

    Args:
        path: The .csv file, comma-separated, with a header row.
        target: Name of the target column; by default the one column named target, label or
            class (case-insensitive).
        seed: Seed of the split (stratified by class for classification).
        val_fraction: Share of the rows held out for validation.
        test_fraction: Share held out for test.
        task: "auto" (`decide_task`), "classification" or "regression".

    Returns:
        Features in `x` (numeric columns z-scored, categorical ones one-hot), their names in
        `feature_names`; the sorted target values as `classes` for classification, the target
        in its own units as `y` for regression. `preprocessing["task"]` says which and why.
    """
    path = Path(path)
    header, rows, lines = read_csv_rows(path)
    t = find_target(header, target, path)
    target_name = header[t]
    for row, line in zip(rows, lines, strict=True):
        if not row[t]:
            raise ValueError(
                f"CSV file {path} row {line} has no value in target column '{target_name}'; "
                f"fill it in or remove the row."
            )
    kind, reason = decide_task([row[t] for row in rows], task)

    # 1. The target and the split: stratified by class, or a plain shuffle for a quantity.
    if kind == "regression":
        y = _regression_target(rows, lines, t, target_name, path)
        splits = stratified_split(len(y), seed, val_fraction, test_fraction)
    else:
        classes = _class_order({row[t] for row in rows})
        if len(classes) < 2:
            raise ValueError(
                f"target column '{target_name}' of CSV file {path} has only one class "
                f"('{classes[0]}'); classification needs at least 2."
            )
        code = {name: i for i, name in enumerate(classes)}
        y = np.array([code[row[t]] for row in rows], dtype=np.int64)
        splits = stratified_split(y, seed, val_fraction, test_fraction, class_names=classes)

    # 2. One column of free text beside the target: text classification on its bytes.
    text = text_column(header, rows, t)
    if text is not None and kind == "classification":
        return _text_data(path, header, rows, lines, t, text, y, classes, splits, reason)

    # 3. Features, column by column, with every statistic taken from the train rows.
    x, feature_names, preprocessing = _features(header, rows, lines, t, splits[0], path)
    task_note = {"kind": kind, "reason": reason}
    preprocessing = {
        "reader": "csv-table",
        "target": target_name,
        "task": task_note,
        **preprocessing,
    }
    counts = preprocessing.pop("column_counts")
    name = safe_name(path.stem)
    if kind == "regression":
        return RegressionData(
            name=name,
            **_float_splits(x, y, splits),
            target=target_name,
            input_shape=(x.shape[1],),
            description=(
                f"CSV '{path.name}': {len(y):,} rows, {x.shape[1]} features from {counts}, "
                f"regression on '{target_name}'"
            ),
            feature_names=feature_names,
            preprocessing=preprocessing,
        )
    return ClassificationData(
        name=name,
        modality="tabular",
        **tensor_splits(x, y, splits),
        classes=classes,
        input_shape=(x.shape[1],),
        description=(
            f"CSV '{path.name}': {len(y):,} rows, {x.shape[1]} features from {counts}, "
            f"{len(classes)} classes of '{target_name}'"
        ),
        feature_names=feature_names,
        preprocessing=preprocessing,
    )


def _text_data(
    path: Path,
    header: list[str],
    rows: list[list[str]],
    lines: list[int],
    t: int,
    text: int,
    y: np.ndarray,
    classes: list[str],
    splits: tuple[np.ndarray, np.ndarray, np.ndarray],
    reason: str,
) -> ClassificationData:
    """Text classification data from the text column `text` (byte tokens, at most 256)."""
    from fieldguide.data.text import text_classification_data

    texts = [row[text] for row in rows]
    empty = next((line for value, line in zip(texts, lines, strict=True) if not value), None)
    if empty is not None:
        raise ValueError(
            f"CSV file {path} row {empty} has an empty text in column '{header[text]}'; "
            f"fill it in or remove the row."
        )
    return text_classification_data(
        texts,
        y,
        classes,
        splits,
        name=safe_name(path.stem),
        description=(
            f"CSV '{path.name}': {len(texts):,} texts of '{header[text]}' as byte tokens, "
            f"{len(classes)} classes of '{header[t]}'"
        ),
        preprocessing={
            "reader": "csv-text",
            "target": header[t],
            "task": {"kind": "text classification", "reason": f"'{header[text]}' is free text"},
            "text_column": header[text],
        },
    )


def transform_rows(
    path: str | os.PathLike[str], preprocessing: dict
) -> tuple[np.ndarray, list[int], dict]:
    """Features (N, D) of a new CSV's rows, prepared exactly as the training rows were.

    Numeric cells are z-scored with the training statistics and a missing one takes the
    training median; a categorical value not seen in training encodes as all zeros (counted).
    The target column may be present or not; any other column the training file did not have,
    or a feature column it lacks, is one sentence naming them.

    Returns:
        The features, each row's line number in the file, and notes: cells filled and unseen
        categories per column, and whether the target column was present.
    """
    path = Path(path)
    header, rows, lines = read_csv_rows(path)
    return transform_table(header, rows, lines, preprocessing, f"CSV file {path}")


def transform_table(
    header: list[str], rows: list[list[str]], lines: list, preprocessing: dict, where: str
) -> tuple[np.ndarray, list, dict]:
    """`transform_rows` for cells already read: `header`, `rows` of strings and their ids.

    `where` names the source in errors ("CSV file x.csv", "the rows given"); `lines` are what
    each row is called in them (line numbers, or positions for rows given in Python).
    """
    columns, target = preprocessing["columns"], preprocessing["target"]
    ignorable = {target, *preprocessing.get("dropped_empty_columns", [])}
    missing = [c for c in columns if c not in header]
    extra = [c for c in header if c not in columns and c not in ignorable]
    if missing or extra:
        problems = [f"missing {missing}"] * bool(missing) + [f"unknown {extra}"] * bool(extra)
        raise ValueError(
            f"{where} does not match the run's columns ({'; '.join(problems)}); the run "
            f"was trained on {columns}, with target '{target}' optional."
        )
    blocks, filled, unseen = [], {}, {}
    for name in columns:
        values = [row[header.index(name)] for row in rows]
        if name in preprocessing["numeric"]:
            stats = preprocessing["numeric"][name]
            column = np.empty(len(values), dtype=np.float64)
            for i, (value, line) in enumerate(zip(values, lines, strict=True)):
                number = None if value.lower() in MISSING else parse_number(value)
                if number is None and value.lower() not in MISSING:
                    raise ValueError(
                        f"{where} row {line} has {value!r} in numeric column '{name}'; "
                        f"expected a number (or an empty cell, which takes the training median)."
                    )
                column[i] = stats["median"] if number is None else number
            if n := sum(v.lower() in MISSING for v in values):
                filled[name] = n
            blocks.append(((column - stats["mean"]) / stats["std"])[:, None])
        else:
            position = {v: k for k, v in enumerate(preprocessing["categorical"][name])}
            onehot = np.zeros((len(values), len(position)), dtype=np.float64)
            for i, value in enumerate(values):
                if value in position:
                    onehot[i, position[value]] = 1.0
            if n := sum(bool(v) and v not in position for v in values):
                unseen[name] = n
            blocks.append(onehot)
    x = np.concatenate(blocks, axis=1).astype(np.float32)  # (N, D)
    notes = {"filled_with_median": filled, "unseen_categories": unseen}
    return x, lines, notes | {"has_target": target in header}


def _regression_target(
    rows: list[list[str]], lines: list[int], t: int, name: str, path: Path
) -> np.ndarray:
    """The target column as float64, or one sentence naming the first cell that is no number."""
    y = np.empty(len(rows), dtype=np.float64)
    for i, (row, line) in enumerate(zip(rows, lines, strict=True)):
        number = parse_number(row[t])
        if number is None:
            raise ValueError(
                f"CSV file {path} row {line} has {row[t]!r} in target column '{name}'; "
                f"regression needs a finite number in every row."
            )
        y[i] = number
    return y


def _float_splits(
    x: np.ndarray, y: np.ndarray, splits: tuple[np.ndarray, np.ndarray, np.ndarray]
) -> dict[str, Split]:
    """The train, val and test `Split`s of float32 inputs x and a float64 target y."""
    xt, yt = torch.from_numpy(np.asarray(x, dtype=np.float32)), torch.from_numpy(y)
    return {
        key: Split(xt[torch.from_numpy(index)].contiguous(), yt[torch.from_numpy(index)])
        for key, index in zip(("train", "val", "test"), splits, strict=True)
    }


def _features(
    header: list[str],
    rows: list[list[str]],
    lines: list[int],
    t: int,
    train: np.ndarray,
    path: Path,
) -> tuple[np.ndarray, list[str], dict]:
    """Features (N, D) of every column but the target, their names and what was done to them.

    Numeric columns take the median of the `train` rows where a cell is missing and are
    z-scored with train statistics; categorical ones are one-hot over the train categories.
    """
    blocks, feature_names, columns = [], [], []
    numeric, categorical, dropped = {}, {}, []
    for j, name in enumerate(header):
        if j == t:
            continue
        values = [row[j] for row in rows]
        kind = _column_kind(name, values, lines, path)
        if kind != "empty":
            columns.append(name)
        if kind == "empty":  # e.g. the unnamed column a trailing comma adds to every line
            dropped.append(name)
        elif kind == "numeric":
            block, numeric[name] = _numeric(values, train)
            blocks.append(block[:, None])
            feature_names.append(name)
        else:
            block, categorical[name] = _categorical(name, values, train)
            blocks.append(block)
            feature_names.extend(f"{name}={value}" for value in categorical[name])
    if not feature_names:
        raise ValueError(
            f"CSV file {path} has no feature columns besides target '{header[t]}'; "
            f"expected at least one more column with values."
        )
    x = np.concatenate(blocks, axis=1).astype(np.float32)  # (N, D)
    # Missing cells, counted per column over all rows: numeric ones took the train median,
    # categorical ones encode as all zeros.
    filled = {name: stats["filled"] for name, stats in numeric.items() if stats["filled"]}
    blank = {
        name: n for name in categorical if (n := sum(not row[header.index(name)] for row in rows))
    }
    return (
        x,
        feature_names,
        {
            "columns": columns,  # the feature columns, in the order their features are laid out
            "numeric": numeric,
            "categorical": categorical,
            "dropped_empty_columns": dropped,
            "missing_values": sorted(MISSING),
            "filled_with_median": filled,
            "missing_categorical": blank,
            "column_counts": f"{len(numeric)} numeric and {len(categorical)} categorical columns",
        },
    )
