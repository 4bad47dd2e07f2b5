"""New inputs for `predict`, prepared with a run's own preprocessing, from files or from Python.

One reader per kind of training data (`preprocessing.json`'s `data.reader`). Each takes what a
user gives, a path or the same inputs held in Python, and returns the model's input tensors
with one identifier per input. Statistics, categories, image size and byte limits all come from
the run, never from the new inputs, so a prediction sees what training saw.

| reader        | path                                    | in Python                              |
| ------------- | --------------------------------------- | -------------------------------------- |
| csv-table     | a .csv with the run's columns           | {column: values} or [{column: value}]  |
| image-folder  | an image file or a folder of them       | PIL images or uint8 arrays (H, W[, C]) |
| csv-text      | a .csv with the run's text column       | a list of strings                      |
| text-folder   | a .txt file or a folder of them         | a list of strings                      |
| csv-sequences | a .csv sequence or a folder of them     | arrays (T, C) in the channels' units   |
| npz-sequences | a .npz with x (and lengths)             | arrays (T, C), or one (N, T, C)        |
| csv-pairs     | a .csv with the run's source column     | a list of source strings               |
| graph-folder  | a folder with nodes.csv and edges.csv   | (a path only)                          |
| mask-folder   | an image file or a folder of them       | PIL images or arrays (H, W[, C])       |
| csv-series    | a .csv series (the last `context` rows) | (a path only)                          |
| csv-fields    | a .csv with the run's fields and dense  | {column: values} or [{column: value}]  |
|               | columns (also for the adult starter)    |                                        |
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor


@dataclass
class Prepared:
    """Inputs ready for the model.

    Attributes:
        inputs: "x", the first positional input, and any input passed by name (a padding mask,
            lengths), each with one row per input.
        ids: One identifier per input (a CSV row number, a file, a position).
        id_name: What the ids are: "row", "file", "index" or "id".
        notes: What preparing did that a reader should know (cells filled, categories unseen).
    """

    inputs: dict[str, Tensor]
    ids: list[Any]
    id_name: str
    notes: dict[str, Any] = field(default_factory=dict)


Source = str | os.PathLike[str] | Any


def is_path(source: Source) -> bool:
    """Whether `source` names a file or folder rather than holding inputs."""
    return isinstance(source, str | os.PathLike)


def expect_suffix(path: Path, suffixes: str | tuple[str, ...], what: str) -> None:
    """One sentence when `path` is not a file of the kind the run reads."""
    if not str(path).lower().endswith(suffixes):
        raise ValueError(f"predict expects --data as {what}, as the run was trained; got '{path}'.")


def files_of(path: Path, suffixes: tuple[str, ...], noun: str) -> tuple[list[Path], list[str]]:
    """The files a path names: itself, or every file under a folder with one of `suffixes`.

    Returns the files in order and their ids (names relative to the folder). One sentence when
    the file has another suffix or the folder holds none; `noun` names one input ("image").
    """
    article = "an" if noun[0] in "aeiou" else "a"
    if path.is_dir():
        files = sorted(
            p
            for p in path.rglob("*")
            if p.is_file() and p.suffix.lower() in suffixes and not p.name.startswith(".")
        )
        if not files:
            raise ValueError(f"predict found no {noun}s in {path} ({', '.join(suffixes)}).")
        return files, [str(p.relative_to(path)) for p in files]
    expect_suffix(path, suffixes, f"{article} {noun} file or a folder of {noun}s")
    return [path], [path.name]


def _in_python(source: Any, what: str) -> list:
    """`source` as a non-empty list, or one sentence saying what a run of this kind takes."""
    if isinstance(source, str | bytes) or not isinstance(source, Sequence | np.ndarray | Tensor):
        raise ValueError(f"predict expects data as a path or {what}; got {type(source).__name__}.")
    items = list(source)
    if not items:
        raise ValueError(f"predict got no inputs; expected {what} with at least one.")
    return items


# ---------------------------------------------------------------------------------------------
# Tables
# ---------------------------------------------------------------------------------------------


def _cell(value: Any) -> str:
    """A Python value as the CSV cell it would be: None and NaN are empty (missing)."""
    if value is None or (isinstance(value, float) and value != value):
        return ""
    return str(value)


def table(source: Source, data: dict) -> Prepared:
    """Rows of a CSV file, or columns {name: values} / rows [{name: value}] held in Python."""
    from fieldguide.data.tabular import transform_rows, transform_table

    if is_path(source):
        path = Path(source)
        expect_suffix(path, ".csv", "a .csv file with the run's columns")
        x, ids, notes = transform_rows(path, data)
        return Prepared({"x": torch.from_numpy(x)}, ids, "row", notes)
    if isinstance(source, Mapping):
        header = [str(k) for k in source]
        columns = [list(v) if not isinstance(v, str) else [v] for v in source.values()]
        sizes = {len(c) for c in columns}
        if len(sizes) > 1:
            lengths = {h: len(c) for h, c in zip(header, columns, strict=True)}
            raise ValueError(
                f"predict got columns of different lengths {lengths}; give one value "
                f"per row in every column."
            )
        rows = [[_cell(v) for v in row] for row in zip(*columns, strict=True)]
    else:
        records = _in_python(source, "rows as a {column: values} mapping or a list of mappings")
        if not all(isinstance(r, Mapping) for r in records):
            raise ValueError(
                "predict expects table rows in Python as mappings {column: value}; "
                f"got {type(records[0]).__name__}."
            )
        header = list(dict.fromkeys(str(k) for r in records for k in r))
        rows = [[_cell(r.get(h)) for h in header] for r in records]
    if not rows:
        raise ValueError("predict got no rows; expected at least one.")
    ids = list(range(len(rows)))
    x, ids, notes = transform_table(header, rows, ids, data, "the rows given")
    return Prepared({"x": torch.from_numpy(x)}, ids, "index", notes)


# ---------------------------------------------------------------------------------------------
# Images
# ---------------------------------------------------------------------------------------------


def images(source: Source, data: dict) -> Prepared:
    """An image file or a folder searched recursively, or PIL images / uint8 arrays in Python."""
    from fieldguide.data.image_folder import IMAGE_SUFFIXES, _open, _to_array

    size, mean, std = data["image_size"], data["mean"], data["std"]
    if is_path(source):
        path = Path(source)
        files, ids = files_of(path, tuple(IMAGE_SUFFIXES), "image")
        pictures, id_name, where = [_open(f) for f in files], "file", str(path)
    else:
        items = _in_python(source, "images: PIL images or uint8 arrays (H, W) or (H, W, C)")
        pictures = [_picture(item, i) for i, item in enumerate(items)]
        ids, id_name, where = list(range(len(items))), "index", "the images given"
    if not data["rgb"]:  # a grey run: training read no colour, so colour is not its input
        from fieldguide.data.image_folder import _GRAY_MODES

        colour = next((i for i, p in enumerate(pictures) if p.mode not in _GRAY_MODES), None)
        if colour is not None:
            which = ids[colour]
            raise ValueError(
                f"predict got colour image {which!r} ({pictures[colour].mode}) in {where}; the "
                f"run was trained on 1 grey channel, so give grey images."
            )
    arrays = [_to_array(p, data["rgb"], size) for p in pictures]  # (C, H, W) in [0, 1]
    shapes = {a.shape for a in arrays}
    expected = tuple(data.get("input_shape") or ()) or None
    if len(shapes) > 1 or (expected and arrays[0].shape[1:] != expected[1:]):
        got = sorted(s[1:] for s in shapes)
        want = f" of {expected[1]}x{expected[2]}" if expected else ""
        raise ValueError(
            f"predict got images of sizes {got} in {where}; the run was trained on one "
            f"size{want} with no image_size to resize to, so give images of that size."
        )
    x = np.stack(arrays)
    x = (x - np.array(mean, np.float32)[:, None, None]) / np.array(std, np.float32)[:, None, None]
    return Prepared({"x": torch.from_numpy(x.astype(np.float32))}, ids, id_name)


def _picture(item: Any, i: int) -> Any:
    """A PIL image from a PIL image or a uint8 array (H, W) or (H, W, C) with C in 1, 3, 4."""
    from PIL import Image

    if isinstance(item, Image.Image):
        return item
    array = item.numpy() if isinstance(item, Tensor) else np.asarray(item)
    if (
        array.dtype != np.uint8
        or array.ndim not in (2, 3)
        or (array.ndim == 3 and array.shape[2] not in (1, 3, 4))
    ):
        raise ValueError(
            f"predict expects image {i} as a PIL image or a uint8 array (H, W) or (H, W, C) with "
            f"C in 1, 3, 4 (pixels 0..255, as a file holds them); got {array.dtype} "
            f"{array.shape}."
        )
    return Image.fromarray(array[..., 0] if array.ndim == 3 and array.shape[2] == 1 else array)


def segmentation_images(
    source: Source, data: dict
) -> tuple[list[np.ndarray], list[torch.Tensor], list[Any], str]:
    """Images for a segmentation run, each at its own size, read as the training images were.

    Returns the pixels as read (C, H, W) float64, the same standardised with the training
    channel statistics as float32 tensors, the ids and what the ids are.
    """
    from fieldguide.data.segmentation import IMAGE_SUFFIXES, image_channels, read_array

    if is_path(source):
        path = Path(source)
        files, ids = files_of(path, tuple(IMAGE_SUFFIXES), "image")
        pixels = [image_channels(read_array(f), f) for f in files]
        id_name = "file"
    else:
        items = _in_python(source, "images: PIL images or arrays (H, W) or (H, W, C)")
        pixels = []
        for i, item in enumerate(items):
            array = np.asarray(item.numpy() if isinstance(item, Tensor) else item)
            pixels.append(image_channels(array, Path(f"image {i}")))
        ids, id_name = list(range(len(items))), "index"
    mean, std = np.array(data["mean"]), np.array(data["std"])
    for name, p in zip(ids, pixels, strict=True):
        if p.shape[0] != len(mean):
            raise ValueError(
                f"predict got image {name!r} with {p.shape[0]} channel(s); the run was trained "
                f"on {len(mean)}, so give images like its training images."
            )
    scaled = [
        torch.from_numpy(((p - mean[:, None, None]) / std[:, None, None]).astype(np.float32))
        for p in pixels
    ]
    return pixels, scaled, ids, id_name


# ---------------------------------------------------------------------------------------------
# Texts
# ---------------------------------------------------------------------------------------------


def _encoded(texts: list[str], data: dict, ids: list, id_name: str) -> Prepared:
    """Texts as the run's tokens, cut to its max_len, with a padding mask (True at real ones).

    The tokens are bytes, or a pretrained model's WordPiece ids when the run recorded one.
    """
    from fieldguide.data.tokenizer import ByteTokenizer
    from fieldguide.data.wordpiece import TOKENIZERS, encode

    if data.get("tokenizer") in TOKENIZERS:
        tokens, lengths, _ = encode(texts, data["tokenizer"], data["max_len"])
    else:
        tokens, lengths = ByteTokenizer().batch_encode(texts, data["max_len"])  # (N, T), (N,)
    mask = torch.arange(tokens.shape[1])[None, :] < lengths[:, None]
    return Prepared({"x": tokens, "padding_mask": mask}, ids, id_name)


def _strings(source: Any, strip: bool) -> list[str]:
    """Texts given in Python, each non-empty (after stripping when training stripped)."""
    texts = _in_python(source, "texts as a list of strings")
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise ValueError(
                f"predict expects texts as strings; item {i} is {type(text).__name__}."
            )
        if not (text.strip() if strip else text):
            raise ValueError(
                f"predict got an empty text at position {i}; give at least one character."
            )
    return [t.strip() for t in texts] if strip else texts


def csv_column(path: Path, column: str, role: str) -> tuple[list[str], list[int]]:
    """The non-empty cells of the run's `column` in a CSV file and their line numbers.

    `role` names the column in errors ("text", "source"); a missing column or an empty cell is
    one sentence naming the file (and the row).
    """
    from fieldguide.data.csv_read import read_csv_rows

    expect_suffix(path, ".csv", f"a .csv file with a '{column}' column")
    header, rows, lines = read_csv_rows(path)
    if column not in header:
        raise ValueError(
            f"CSV file {path} has no column '{column}', the {role} the run was trained on; its "
            f"columns are {header}."
        )
    j = header.index(column)
    texts = [row[j] for row in rows]
    empty = next((line for text, line in zip(texts, lines, strict=True) if not text), None)
    if empty is not None:
        raise ValueError(f"CSV file {path} row {empty} has an empty {role}; fill it or remove it.")
    return texts, lines


def csv_texts(source: Source, data: dict) -> Prepared:
    """The run's text column of a CSV, or a list of strings."""
    if not is_path(source):
        texts = _strings(source, strip=False)
        return _encoded(texts, data, list(range(len(texts))), "index")
    texts, lines = csv_column(Path(source), data["text_column"], "text")
    return _encoded(texts, data, lines, "row")


def text_files(source: Source, data: dict) -> Prepared:
    """A .txt file or every .txt under a folder (one text each, stripped), or a list of strings."""
    from fieldguide.data.text_files import read_text_file

    if not is_path(source):
        texts = _strings(source, strip=True)
        return _encoded(texts, data, list(range(len(texts))), "index")
    files, ids = files_of(Path(source), (".txt",), "text")
    texts = []
    for file in files:
        text = read_text_file(file).strip()  # UTF-8 checked, as in training
        if not text:
            raise ValueError(
                f"text file {file} holds only whitespace; give it a text or remove it."
            )
        texts.append(text)
    return _encoded(texts, data, ids, "file")


# ---------------------------------------------------------------------------------------------
# Sequences
# ---------------------------------------------------------------------------------------------


def _padded(sequences: list[np.ndarray], data: dict, ids: list, id_name: str) -> Prepared:
    """Raw sequences (T_i, C) scaled with the training statistics, zero-padded, with lengths."""
    mean, std = np.array(data["mean"]), np.array(data["std"])
    lengths = torch.tensor([len(s) for s in sequences])
    x = torch.zeros(len(sequences), int(lengths.max()), len(mean))  # zeros past each length
    for i, s in enumerate(sequences):
        x[i, : len(s)] = torch.from_numpy(((s - mean) / std).astype(np.float32))
    return Prepared({"x": x, "lengths": lengths}, ids, id_name)


def _arrays(source: Any, channels: int) -> list[np.ndarray]:
    """Sequences given in Python: arrays (T, C), or one array (N, T, C), finite, C = channels."""
    if isinstance(source, np.ndarray | Tensor) and source.ndim == 3:
        source = list(source)
    items = _in_python(source, f"sequences as arrays (T, {channels}) or one (N, T, {channels})")
    out = []
    for i, item in enumerate(items):
        array = np.asarray(item.numpy() if isinstance(item, Tensor) else item, dtype=np.float64)
        if array.ndim != 2 or array.shape[1] != channels or not len(array):
            raise ValueError(
                f"predict expects sequence {i} as an array (T, {channels}) with "
                f"T >= 1, the run's {channels} channels; got shape {array.shape}."
            )
        if not np.isfinite(array).all():
            raise ValueError(
                f"predict got NaN or infinite values in sequence {i}; fill them first."
            )
        out.append(array)
    return out


def csv_sequences(source: Source, data: dict) -> Prepared:
    """A .csv sequence or every .csv under a folder, or arrays (T, C) in Python."""
    from fieldguide.data.sequence_files import _read_sequence

    channels = data["channels"]
    if not is_path(source):
        sequences = _arrays(source, len(channels))
        return _padded(sequences, data, list(range(len(sequences))), "index")
    files, ids = files_of(Path(source), (".csv",), "sequence")
    sequences = []
    for file in files:
        header, values = _read_sequence(file)
        if header != channels:
            raise ValueError(
                f"sequence file {file} has channels {header}; the run was trained on "
                f"{channels}, in that order."
            )
        if not len(values):
            raise ValueError(f"sequence file {file} has no steps; give at least one row.")
        sequences.append(values)
    return _padded(sequences, data, ids, "file")


def npz_sequences(source: Source, data: dict) -> Prepared:
    """The sequences of a .npz archive (x, and lengths; no y needed), or arrays (T, C)."""
    import zipfile

    from fieldguide.data.sequence_files import _array, _split_sequences

    channels = len(data["channels"])
    if not is_path(source):
        sequences = _arrays(source, channels)
        return _padded(sequences, data, list(range(len(sequences))), "index")
    path = Path(source)
    expect_suffix(path, ".npz", "a .npz file holding x (and lengths)")
    try:
        archive = np.load(path, allow_pickle=False)
    except (OSError, EOFError, ValueError, zipfile.BadZipFile) as error:
        raise ValueError(
            f"NPZ file {path} could not be read as a NumPy .npz archive ({error})."
        ) from None
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise ValueError(f"file {path} holds a single array, not a .npz archive with x.")
    with archive:
        if "x" not in archive.files:
            raise ValueError(f"NPZ file {path} has no array 'x'; expected the sequences as x.")
        x = _array(archive, "x", path)
        lengths = _array(archive, "lengths", path) if "lengths" in archive.files else None
    sequences = _split_sequences(x, lengths, path)
    if sequences[0].shape[1] != channels:
        raise ValueError(
            f"NPZ file {path} has sequences of {sequences[0].shape[1]} channels; the run was "
            f"trained on {channels}."
        )
    return _padded(
        [s.astype(np.float64) for s in sequences], data, list(range(len(sequences))), "index"
    )


# ---------------------------------------------------------------------------------------------
# Pairs (sources to decode)
# ---------------------------------------------------------------------------------------------


def pair_sources(source: Source, data: dict) -> Prepared:
    """The run's source column of a CSV (the target column may be there or not), or strings."""
    from fieldguide.data.tokenizer import ByteTokenizer

    if is_path(source):
        texts, lines = csv_column(Path(source), data["source_column"], "source")
        ids, id_name = lines, "row"
    else:
        texts = _strings(source, strip=False)
        ids, id_name = list(range(len(texts))), "index"
    tokens, lengths = ByteTokenizer().batch_encode(texts, data["max_bytes"])
    return Prepared({"x": tokens, "lengths": lengths}, ids, id_name)


# ---------------------------------------------------------------------------------------------
# Graphs
# ---------------------------------------------------------------------------------------------


def graph(source: Source, data: dict) -> Prepared:
    """A graph folder's nodes and edges, features made as in training.

    Given feature columns are standardised with the training mean and std; structural features
    (spectral, degree) are computed from the new graph's edges; one-hot ids only fit a graph
    with the training graph's node count.
    """
    from fieldguide.data.graph_features import node_features
    from fieldguide.data.graph_folder import read_graph_folder

    if not is_path(source):
        raise ValueError(
            f"predict expects a graph as a folder with nodes.csv and edges.csv; got "
            f"{type(source).__name__}."
        )
    path = Path(source)
    if not path.is_dir():
        raise ValueError(
            f"predict expects --data as a folder with nodes.csv and edges.csv, as the run was "
            f"trained; got '{path}'."
        )
    read = read_graph_folder(path)
    index = torch.from_numpy(read.edge_index)
    weight = None if read.edge_weight is None else torch.from_numpy(read.edge_weight).float()
    kind = data["node_features"]
    if kind == "given":
        expected = data["feature_columns"]
        if read.feature_columns != expected:
            raise ValueError(
                f"graph folder {path} has feature columns {read.feature_columns} in nodes.csv; "
                f"the run was trained on {expected}, in that order."
            )
        scaled = (read.features - np.array(data["mean"])) / np.array(data["std"])
        x = torch.from_numpy(scaled.astype(np.float32))
    else:
        x = node_features(index, len(read.ids), kind, weight)
        if kind == "identity" and x.shape[1] != data["input_shape"][0]:
            raise ValueError(
                f"graph folder {path} has {len(read.ids)} nodes; the run's one-hot node ids "
                f"fit a graph of {data['input_shape'][0]} nodes only."
            )
    weights = weight if weight is not None else torch.zeros(0)
    inputs = {"x": x, "edge_index": index, "edge_weight": weights}
    return Prepared(inputs, list(read.ids), "id")


def fields_rows(source: Source, data: dict) -> Prepared:
    """Fields rows (Wide & Deep, DLRM) from a CSV file or columns / rows held in Python.

    Categories outside the training vocabulary hash into the run's buckets, as rare ones did in
    training; a missing dense cell takes the training median.
    """
    from fieldguide.data.csv_read import read_csv_rows
    from fieldguide.data.fields import transform_fields

    notes: dict[str, Any] = {}
    if is_path(source):
        path = Path(source)
        expect_suffix(path, ".csv", "a .csv file with the run's columns")
        header, rows, lines = read_csv_rows(path)
        columns = {h: [row[i] for row in rows] for i, h in enumerate(header)}
        dense, ids, weights = transform_fields(
            columns, data, notes=notes, where=f"CSV file {path}", lines=lines
        )
        identifiers, id_name = list(lines), "row"
    else:
        if isinstance(source, Mapping):
            columns = {
                str(k): list(v)
                if isinstance(v, Sequence | np.ndarray | Tensor) and not isinstance(v, str)
                else [v]  # a lone value is one row
                for k, v in source.items()
            }
        else:
            records = _in_python(source, "rows as a {column: values} mapping or a list of mappings")
            if not all(isinstance(r, Mapping) for r in records):
                raise ValueError(
                    "predict expects fields rows in Python as mappings {column: value}; "
                    f"got {type(records[0]).__name__}."
                )
            names = list(dict.fromkeys(str(k) for r in records for k in r))
            columns = {h: [r.get(h) for r in records] for h in names}
        dense, ids, weights = transform_fields(columns, data, notes=notes)
        identifiers, id_name = list(range(len(ids))), "index"
    inputs = {"x": dense, "ids": ids}
    if weights is not None:
        inputs["weights"] = weights
    return Prepared(inputs, identifiers, id_name, notes)


READERS: dict[str, Callable[[Source, dict], Prepared]] = {
    "csv-fields": fields_rows,
    "adult": fields_rows,
    "csv-table": table,
    "image-folder": images,
    "csv-text": csv_texts,
    "text-folder": text_files,
    "csv-sequences": csv_sequences,
    "npz-sequences": npz_sequences,
    "csv-pairs": pair_sources,
    "graph-folder": graph,
}
