"""The reader for the user's own graph: a folder holding nodes.csv and edges.csv."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fieldguide.data.base import GraphData, safe_name
from fieldguide.data.graph_features import _check_kind
from fieldguide.data.graphs import _node_data
from fieldguide.data.tabular import read_csv_rows


def _number(value: str) -> float | None:
    """The finite float in `value`, or None."""
    try:
        number = float(value)
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def _class_order(values: set[str]) -> list[str]:
    """Class names sorted numerically when they are all numbers ("2" before "10"), else as text."""
    if all(_number(v) is not None for v in values):
        return sorted(values, key=lambda v: (float(v), v))
    return sorted(values)


def _column(header: list[str], name: str, path: Path, expected: str) -> int:
    """Index of column `name` in `header`, or one sentence naming the file and its columns."""
    if name not in header:
        raise ValueError(
            f"{path} line 1 (the header) has no '{name}' column; expected {expected}; got "
            f"{', '.join(repr(h) for h in header)}."
        )
    return header.index(name)


@dataclass
class GraphFolder:
    """What a graph folder holds, as read (nothing standardised or featurised yet).

    Attributes:
        ids: Node ids in nodes.csv order (node i is the i-th row).
        labels: Each node's label text, "" where it has none (or there is no label column).
        feature_columns: Names of the numeric feature columns, in file order.
        features: (N, F) float64 values of those columns, or None without feature columns.
        edge_index: (2, E) int64 node positions, sources then targets, as listed.
        edge_weight: (E,) float64 non-negative weights, or None without a weight column.
    """

    ids: list[str]
    labels: list[str]
    feature_columns: list[str]
    features: np.ndarray | None
    edge_index: np.ndarray
    edge_weight: np.ndarray | None


def read_graph_folder(path: str | os.PathLike[str]) -> GraphFolder:
    """Read nodes.csv and edges.csv of a graph folder, or one sentence on the first bad row.

    The layout is `load_graph_folder`'s; labels are read when there is a label column but not
    required (predicting on a new graph needs none).
    """
    folder = Path(path)
    nodes_path, edges_path = folder / "nodes.csv", folder / "edges.csv"
    for file, what in (
        (nodes_path, "columns id, optionally label, and numeric features"),
        (edges_path, "columns source, target and optionally weight"),
    ):
        if not file.is_file():
            raise ValueError(f"graph folder {folder} has no {file.name}; expected one with {what}.")

    # 1. Nodes: ids in file order, labels ("" = none), numeric feature columns.
    header, rows, lines = read_csv_rows(nodes_path)
    id_col = _column(header, "id", nodes_path, "columns id, optionally label, and features")
    label_col = header.index("label") if "label" in header else None
    feature_cols = [i for i in range(len(header)) if i not in (id_col, label_col)]
    feature_columns = [header[i] for i in feature_cols]
    ids: dict[str, int] = {}
    for row, line in zip(rows, lines, strict=True):
        if row[id_col] in ids:
            raise ValueError(
                f"{nodes_path} line {line} repeats id '{row[id_col]}'; expected each node once."
            )
        ids[row[id_col]] = len(ids)
    given = None
    if feature_cols:
        given = np.empty((len(rows), len(feature_cols)))
        for r, (row, line) in enumerate(zip(rows, lines, strict=True)):
            for c, col in enumerate(feature_cols):
                number = _number(row[col])
                if number is None:
                    raise ValueError(
                        f"{nodes_path} line {line} has {row[col]!r} in feature column "
                        f"'{header[col]}'; expected a number (every column but id and label is "
                        f"a feature)."
                    )
                given[r, c] = number
    labels = [row[label_col] if label_col is not None else "" for row in rows]

    # 2. Edges: ids looked up in nodes.csv, weights finite and non-negative.
    header, rows, lines = read_csv_rows(edges_path)
    expected = "columns source, target and optionally weight"
    ends = [_column(header, name, edges_path, expected) for name in ("source", "target")]
    weight_col = header.index("weight") if "weight" in header else None
    edge_index = np.empty((2, len(rows)), dtype=np.int64)
    weights = np.ones(len(rows)) if weight_col is not None else None
    for e, (row, line) in enumerate(zip(rows, lines, strict=True)):
        for side, (col, end) in enumerate(zip(ends, ("source", "target"), strict=True)):
            node = ids.get(row[col])
            if node is None:
                raise ValueError(
                    f"{edges_path} line {line} has {end} '{row[col]}', which is not an id in "
                    f"nodes.csv; add that node or remove the edge."
                )
            edge_index[side, e] = node
        if weights is not None:
            number = _number(row[weight_col])
            if number is None or number < 0:
                raise ValueError(
                    f"{edges_path} line {line} has weight {row[weight_col]!r}; expected a "
                    f"non-negative number."
                )
            weights[e] = number
    return GraphFolder(
        ids=list(ids),
        labels=labels,
        feature_columns=feature_columns,
        features=given,
        edge_index=edge_index,
        edge_weight=weights,
    )


def load_graph_folder(
    path: str | os.PathLike[str],
    *,
    seed: int = 0,
    val_fraction: float = 0.15,
    test_fraction: float = 0.15,
    labels_per_class: int | None = None,
    node_features: str = "auto",
) -> GraphData:
    """The user's own graph for node classification: a folder with nodes.csv and edges.csv.

    nodes.csv has a header row and one row per node: an `id` column (any text or number; node i
    is the i-th row), an optional `label` column (an empty label leaves the node unlabelled:
    y = -1, in no split) and any other columns as numeric features, standardised to mean 0
    and std 1 over all nodes (every node's features are model input in node classification,
    so this uses no label). Without feature columns, features are made by `node_features`.

    edges.csv has a header row and columns `source` and `target` (ids from nodes.csv) and an
    optional non-negative `weight`. Edges are directed as given (`directed=True`): list an
    undirected tie in both directions. Only the csv module reads them; nothing is written.

    Args:
        path: The folder.
        seed: Seed of the split.
        val_fraction: Share of the labelled nodes held out for validation.
        test_fraction: Share held out for test (not used with `labels_per_class`).
        labels_per_class: Training labels per class, or None for a stratified split.
        node_features: "auto" (the feature columns if any, else spectral), or a kind that
            replaces them: "spectral", "degree" or "identity".
    """
    folder = Path(path)
    kind = _check_kind(node_features, "load_graph_folder")
    read = read_graph_folder(folder)
    given, standardised = read.features, {}
    if given is not None:
        mean, std = given.mean(axis=0), given.std(axis=0)
        std[std < 1e-12] = 1.0  # a constant column stays at 0 rather than dividing by 0
        given = (given - mean) / std
        standardised = {
            "feature_columns": read.feature_columns,
            "mean": mean.tolist(),
            "std": std.tolist(),
        }
    classes = _class_order(set(read.labels) - {""})
    if not classes:
        raise ValueError(
            f"{folder / 'nodes.csv'} has no labelled node; expected a 'label' column with at "
            f"least one non-empty value."
        )
    code = {name: i for i, name in enumerate(classes)}
    y = np.array([code.get(label, -1) for label in read.labels], dtype=np.int64)
    edge_index, weights, ids = read.edge_index, read.edge_weight, read.ids
    return _node_data(
        name=safe_name(folder.resolve().name),
        edge_index=edge_index,
        edge_weight=weights,
        y=y,
        given=given,
        classes=classes,
        description=f"graph folder {folder.name}: {len(ids):,} nodes ({int((y >= 0).sum()):,} "
        f"labelled), {edge_index.shape[1]:,} directed edges, {len(classes)} classes",
        directed=True,
        seed=seed,
        val_fraction=val_fraction,
        test_fraction=test_fraction,
        labels_per_class=labels_per_class,
        node_features=kind,
        preprocessing={
            "reader": "graph-folder",  # predict reads a new nodes.csv and edges.csv the same way
            "nodes": "rows of nodes.csv in order",
            **standardised,
        },
    )
