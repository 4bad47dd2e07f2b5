"""Datasets: real starter data that ships inside installed packages, and the user's own files.

`load_data("digits")` loads a starter by name; `load_data("path/to/folder")` reads an image
folder (one sub-folder per class) and `load_data("table.csv")` a CSV file. Classification data
comes back as `ClassificationData`; the forecasting starters (sunspots, co2) as `SeriesData`,
one series cut chronologically; the language-modelling starter (kjv) as `TextData`, one byte
stream cut into consecutive parts; the seq2seq starter (dates, synthetic) as `Seq2SeqData`.
Graph starters come as `GraphData` (karate, drosophila, sbm: one graph, its nodes classified)
or `GraphSetData` (digit-graphs: many graphs, each classified), and a folder holding
edges.csv and nodes.csv is read as the user's own graph. Everything is held in memory.
Importing this package, or calling `list_starters`, imports no torch: the readers are imported
inside `load_data`, so `fieldguide data list` answers at once.
"""

from __future__ import annotations

import importlib
import os
from typing import TYPE_CHECKING, Any

from fieldguide.data.starters import STARTERS, get_starter, is_present, list_starters

if TYPE_CHECKING:
    from fieldguide.data.base import (
        ClassificationData,
        GraphData,
        GraphSetData,
        RegressionData,
        Seq2SeqData,
        SeriesData,
        Split,
        TextData,
    )

__all__ = [
    "ClassificationData",
    "GraphData",
    "GraphSetData",
    "Seq2SeqData",
    "SeriesData",
    "Split",
    "TextData",
    "list_starters",
    "load_data",
]
# The tasks `load_data` builds starters for; the others (segmentation, ...) come later.
_LOADABLE_TASKS = (
    "classification",
    "forecasting",
    "language-modelling",
    "seq2seq",
    "node-classification",
    "graph-classification",
    "segmentation",
    "ctr",
    "ranking",
)
# What `node_features` may name (see `fieldguide.data.graph_features`).
_NODE_FEATURES = ("auto", "spectral", "degree", "identity")


def _trainable() -> str:
    """What `load_data` can build today, named in errors about other starters."""
    names = ", ".join(name for name, s in STARTERS.items() if s.loader is not None)
    return f"the starters {names}, an image folder, a graph folder or a .csv file"


def __getattr__(name: str) -> Any:
    # The dataclasses live beside torch-using helpers, so they are imported on first use.
    if name in (
        "ClassificationData",
        "GraphData",
        "GraphSetData",
        "RegressionData",
        "Seq2SeqData",
        "SeriesData",
        "Split",
        "TextData",
    ):
        from fieldguide.data import base

        return getattr(base, name)
    raise AttributeError(f"module 'fieldguide.data' has no attribute '{name}'")


def _check_arguments(
    spec: Any,
    seed: Any,
    val_fraction: Any,
    test_fraction: Any,
    target: Any,
    image_size: Any,
    labels_per_class: Any = None,
    node_features: Any = None,
) -> None:
    """Raise one sentence for the first argument of `load_data` of the wrong type or range."""
    if not isinstance(spec, str | os.PathLike):
        raise TypeError(
            f"load_data expects spec as a str: a starter name such as 'digits' or a path; "
            f"got {type(spec).__name__}."
        )
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"load_data expects seed as an int; got {type(seed).__name__}.")
    if not 0 <= seed < 2**32:
        raise ValueError(f"load_data expects seed in [0, 2**32); got {seed}.")
    for arg, value in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise TypeError(f"load_data expects {arg} as a float; got {type(value).__name__}.")
        if not 0 < value < 1:
            raise ValueError(f"load_data expects {arg} in (0, 1), such as 0.15; got {value}.")
    if val_fraction + test_fraction >= 1:
        raise ValueError(
            f"load_data expects val_fraction + test_fraction below 1 so that rows remain for "
            f"training; got {val_fraction} + {test_fraction}."
        )
    if target is not None and not isinstance(target, str):
        raise TypeError(
            f"load_data expects target as a column name (str) or None; got {type(target).__name__}."
        )
    if image_size is not None:
        if isinstance(image_size, bool) or not isinstance(image_size, int):
            raise TypeError(
                f"load_data expects image_size as an int or None; got {type(image_size).__name__}."
            )
        if image_size < 1:
            raise ValueError(
                f"load_data expects image_size of at least 1, such as 32; got {image_size}."
            )
    if labels_per_class is not None:
        if isinstance(labels_per_class, bool) or not isinstance(labels_per_class, int):
            raise TypeError(
                f"load_data expects labels_per_class as an int or None; "
                f"got {type(labels_per_class).__name__}."
            )
        if labels_per_class < 1:
            raise ValueError(
                f"load_data expects labels_per_class of at least 1, such as 20; "
                f"got {labels_per_class}."
            )
    if node_features is not None and node_features not in _NODE_FEATURES:
        raise ValueError(
            f"load_data expects node_features as one of "
            f"{', '.join(repr(k) for k in _NODE_FEATURES)} or None; got {node_features!r}."
        )


def _graph_options(labels_per_class: int | None, node_features: str | None) -> dict[str, Any]:
    """The graph-only arguments that were given, keyed by name."""
    options = {"labels_per_class": labels_per_class, "node_features": node_features}
    return {arg: value for arg, value in options.items() if value is not None}


def _refuse(options: dict[str, Any], what: str) -> None:
    """One sentence for the first graph-only argument given for data that is not a graph."""
    if options:
        arg, value = next(iter(options.items()))
        raise ValueError(
            f"load_data got {arg}={value!r} for {what}; {arg} applies only to node "
            f"classification on a graph (a graph starter such as 'karate' or a folder with "
            f"edges.csv), so leave it out."
        )


def _looks_like_path(spec: str) -> bool:
    """Whether `spec` names a file or folder rather than a starter."""
    return os.sep in spec or "/" in spec or spec.startswith(".") or spec.lower().endswith(".csv")


def load_data(
    spec: str,
    *,
    seed: int = 0,
    val_fraction: float = 0.15,
    test_fraction: float = 0.15,
    target: str | None = None,
    image_size: int | None = None,
    labels_per_class: int | None = None,
    node_features: str | None = None,
    task: str = "auto",
    season: int | None = None,
    categorical: list[str] | None = None,
    dense: list[str] | None = None,
    fields: bool = False,
) -> (
    RegressionData
    | ClassificationData
    | SeriesData
    | TextData
    | Seq2SeqData
    | GraphData
    | GraphSetData
):
    """Load a dataset into memory, split into train, validation and test.

    A starter name wins over a folder of the same name in the working directory; write
    `./digits` for the folder.

    Args:
        spec: A starter name ("digits", "fashion-mnist", "sunspots"; see `list_starters`), a
            folder with one sub-folder of images per class, a graph folder (edges.csv and
            nodes.csv; see `fieldguide.data.graph_folder.load_graph_folder`), or a .csv file.
        seed: Seed of the split: the same seed gives the same split. A forecasting starter is
            cut chronologically and ignores it, as does kjv (a fixed cut); a synthetic one
            draws its data from it.
        val_fraction: Share of the samples held out for validation, in (0, 1); for a series,
            the steps just before the test steps.
        test_fraction: Share held out for test, in (0, 1); for a series, the last steps.
            Starters with an official test set (fashion-mnist, gunpoint) keep it instead, and
            kjv keeps its documented cut (last 10 % test, the 5 % before it validation).
        target: CSV only: the target column; by default the one named target, label or class.
        image_size: Image folders only: resize every image to (image_size, image_size).
        labels_per_class: Node classification only (karate, drosophila, sbm, a graph
            folder): train on exactly this many labelled nodes per class, validate on
            val_fraction of the labelled nodes and test on all the others; by default a split
            stratified by class.
        task: CSV only: "auto" (a time series when it has a time column and numbers
            elsewhere, see `fieldguide.data.series_csv`; else regression for a numeric target
            with many distinct values, see `fieldguide.data.tabular.decide_task`),
            "forecasting", "classification" or "regression".
        season: A time series CSV only: the seasonal period in steps; by default guessed.
        categorical: A CSV read as fields rows (Wide & Deep, DLRM, click prediction): its
            categorical columns; see `fieldguide.data.fields.load_fields_csv`.
        dense: A fields CSV's dense columns.
        fields: Read a CSV as fields rows even when neither list is given (columns of text
            become categorical fields, numbers dense features).
        node_features: Node classification only: how featureless nodes get features,
            "auto" (spectral, or the graph's own features where it has them), "spectral",
            "degree" or "identity"; a kind named for a graph with features replaces them.

    Returns:
        The splits, class names and input shape, inputs standardized with statistics of the
        train split only; or, for a forecasting starter, a `SeriesData` in raw units; for
        kjv a `TextData` and for dates a `Seq2SeqData`, both as byte-token ids; for node
        classification a `GraphData` (one graph, node indices per split) and for
        digit-graphs a `GraphSetData` (graphs per split).

    Example:
        >>> data = load_data("digits", seed=1)
        >>> data.input_shape, data.classes[:3]
        ((1, 8, 8), ['0', '1', '2'])
    """
    _check_arguments(
        spec, seed, val_fraction, test_fraction, target, image_size, labels_per_class, node_features
    )
    spec = os.fspath(spec)
    if task not in ("auto", "forecasting", "classification", "regression"):
        raise ValueError(
            f"load_data expects task 'auto', 'forecasting', 'classification' or 'regression'; "
            f"got {task!r}."
        )
    as_fields = fields or bool(categorical) or bool(dense)
    for arg, value, default in (
        ("task", task, "auto"),
        ("season", season, None),
        ("categorical", categorical or None, None),
        ("dense", dense or None, None),
    ):
        if value != default and not spec.lower().endswith(".csv"):
            raise ValueError(
                f"load_data got {arg}={value!r} for '{spec}'; {arg} applies to .csv files "
                f"only, so leave it out."
            )
    fractions = {"seed": seed, "val_fraction": val_fraction, "test_fraction": test_fraction}
    options = _graph_options(labels_per_class, node_features)

    if spec in STARTERS and not _looks_like_path(spec):
        return _load_starter(spec, target, image_size, fractions, options)
    if not os.path.exists(spec):
        if _looks_like_path(spec):
            raise ValueError(f"data path '{spec}' does not exist.")
        get_starter(spec)  # raises: unknown starter, with close matches
    # Either file makes a graph folder, so that its reader names the one that is missing.
    graph_files = ("edges.csv", "nodes.csv")
    if os.path.isdir(spec) and any(os.path.isfile(os.path.join(spec, f)) for f in graph_files):
        for arg, value in (("target", target), ("image_size", image_size)):
            if value is not None:
                raise ValueError(
                    f"load_data got {arg}={value!r} for graph folder '{spec}'; {arg} applies "
                    f"only to {'.csv files' if arg == 'target' else 'image folders'}, so "
                    f"leave it out."
                )
        from fieldguide.data.graph_folder import load_graph_folder

        return load_graph_folder(spec, **fractions, **options)
    _refuse(options, f"'{spec}', which is not a graph folder holding edges.csv")
    from fieldguide.data.segmentation import is_mask_folder

    if is_mask_folder(spec):  # images/ and masks/: segmentation
        for arg, value in (("target", target), ("image_size", image_size)):
            if value is not None:
                raise ValueError(
                    f"load_data got {arg}={value!r} for mask folder '{spec}'; segmentation "
                    f"reads images at their own size and takes no target, so leave it out."
                )
        from fieldguide.data.segmentation import load_mask_folder

        return load_mask_folder(spec, **fractions)
    if os.path.isdir(spec):
        from fieldguide.data.text_files import folder_kind

        kind = folder_kind(spec)  # "text", "stream" (language modelling) or "images"
        what = "folder" if kind == "images" else "text folder"
        for arg, value in (("target", target), ("image_size", image_size)):
            if value is not None and (arg == "target" or kind != "images"):
                raise ValueError(
                    f"load_data got {arg}={value!r} for {what} '{spec}'; {arg} applies only to "
                    f"{'.csv files' if arg == 'target' else 'image folders'}, so leave it out."
                )
        if kind != "images":
            from fieldguide.data.text_files import load_text_folder, load_text_stream

            load = load_text_folder if kind == "text" else load_text_stream
            return load(spec, **fractions)
        from fieldguide.data.sequence_files import is_sequence_folder, load_sequence_folder

        if is_sequence_folder(spec):  # class sub-folders of CSV files: sequences
            if image_size is not None:
                raise ValueError(
                    f"load_data got image_size={image_size} for sequence folder '{spec}'; "
                    f"image_size applies only to image folders, so leave it out."
                )
            return load_sequence_folder(spec, **fractions)
        from fieldguide.data.image_folder import load_image_folder

        return load_image_folder(spec, image_size=image_size, **fractions)
    if spec.lower().endswith(".txt"):
        for arg, value in (("target", target), ("image_size", image_size)):
            if value is not None:
                raise ValueError(
                    f"load_data got {arg}={value!r} for text file '{spec}'; {arg} applies only "
                    f"to {'.csv files' if arg == 'target' else 'image folders'}, so leave it out."
                )
        from fieldguide.data.text_files import load_text_stream

        return load_text_stream(spec, **fractions)
    if spec.lower().endswith(".csv"):
        if image_size is not None:
            raise ValueError(
                f"load_data got image_size={image_size} for CSV file '{spec}'; image_size "
                f"applies only to image folders, so leave it out."
            )
        if as_fields:  # categorical bags and dense features: click prediction
            if task != "auto" or season is not None:
                raise ValueError(
                    f"load_data reads '{spec}' as fields rows (categorical and dense columns) "
                    f"for click prediction; task and season do not apply, so leave them out."
                )
            from fieldguide.data.fields import load_fields_csv

            return load_fields_csv(
                spec, target=target, categorical=categorical, dense=dense, **fractions
            )
        from fieldguide.data.csv_read import is_series_csv
        from fieldguide.data.pairs_csv import is_pairs_csv, load_pairs_csv
        from fieldguide.data.series_csv import load_series_csv
        from fieldguide.data.tabular import load_csv

        if task == "auto" and is_pairs_csv(spec, target):  # source and target text: seq2seq
            if season is not None:
                raise ValueError(
                    f"load_data got season={season} for '{spec}', which holds text pairs, not "
                    f"a time series; leave season out."
                )
            return load_pairs_csv(spec, target=target, **fractions)
        if task == "forecasting" or (task == "auto" and is_series_csv(spec, target)):
            return load_series_csv(spec, target=target, season=season, **fractions)
        if season is not None:
            raise ValueError(
                f"load_data got season={season} for '{spec}', which reads as a table, not a "
                f"time series; leave season out, or pass task='forecasting'."
            )
        return load_csv(spec, target=target, task=task, **fractions)
    if spec.lower().endswith(".npz"):
        for arg, value in (("target", target), ("image_size", image_size)):
            if value is not None:
                raise ValueError(
                    f"load_data got {arg}={value!r} for NPZ file '{spec}'; {arg} applies only "
                    f"to {'.csv files' if arg == 'target' else 'image folders'}, so leave it out."
                )
        from fieldguide.data.sequence_files import load_sequence_npz

        return load_sequence_npz(spec, **fractions)
    raise ValueError(
        f"data path '{spec}' is not a folder, a .csv, .txt or .npz file; give one of those "
        f"(`fieldguide data inspect PATH` says what a path holds) or a starter such as 'digits'."
    )


def _load_starter(
    name: str,
    target: str | None,
    image_size: int | None,
    fractions: dict[str, Any],
    options: dict[str, Any],
) -> ClassificationData | SeriesData | TextData | Seq2SeqData | GraphData | GraphSetData:
    """Build starter `name`, or say in one sentence why it cannot be built here."""
    starter = get_starter(name)
    if starter.task not in _LOADABLE_TASKS:
        raise ValueError(
            f"starter '{name}' is for {starter.task}, which `fieldguide train` does not support "
            f"yet; it supports {_trainable()}."
        )
    if starter.loader is None:
        raise ValueError(
            f"starter '{name}' ({starter.modality} {starter.task}) has no loader yet; "
            f"`fieldguide train` supports {_trainable()}."
        )
    for arg, value in (("target", target), ("image_size", image_size)):
        if value is not None:
            raise ValueError(
                f"load_data got {arg}={value!r} for starter '{name}'; {arg} applies only to "
                f"{'.csv files' if arg == 'target' else 'image folders'}, so leave it out."
            )
    if starter.task != "node-classification":
        _refuse(options, f"starter '{name}' ({starter.modality} {starter.task})")
    if not is_present(starter):
        raise ValueError(
            f"starter '{name}' needs {starter.carrier.split(': ', 1)[1]}, which is not "
            f"installed; install it with: {starter.install}"
        )
    module, function = starter.loader.split(":")
    return getattr(importlib.import_module(module), function)(**fractions, **options)
