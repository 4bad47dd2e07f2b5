"""`fieldguide data inspect PATH`: what a file or folder holds and what training would make of it.

Imports no torch. It sniffs with the same functions the readers use (`fieldguide.data.csv_read`),
so the kind, target and task it reports are what `fieldguide train --data PATH` does, and it
names the model `--model auto` would pick and why (`fieldguide.guide.select.auto_model`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from fieldguide.data.csv_read import (
    MISSING,
    decide_task,
    find_target,
    find_time_column,
    is_series_csv,
    parse_number,
    read_csv_rows,
    text_column,
)
from fieldguide.guide.select import auto_model

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"})


@dataclass
class Inspection:
    """What `inspect_data` found.

    Attributes:
        path: The file, folder or starter name inspected.
        kind: In words: "CSV table", "CSV time series", "image folder", ...
        task: The task training would run: "classification", "regression", ...
        facts: Ordered (label, text) lines: sizes, columns and their types, target, classes
            or range, missing values.
        model: The model `--model auto` picks, and why.
    """

    path: str
    kind: str
    task: str
    facts: list[tuple[str, str]] = field(default_factory=list)
    model: tuple[str, str] = ("", "")

    def lines(self) -> list[str]:
        """The report as aligned text lines, ending with the command that trains on it."""
        rows = [("data", self.path), ("kind", self.kind), *self.facts, ("task", self.task)]
        if self.model[0]:
            rows.append(("auto model", f"{self.model[0]}: {self.model[1]}"))
        rows.append(("train", f"fieldguide train --data {self.path}"))
        width = max(len(label) for label, _ in rows)
        return [f"{label.ljust(width)}  {text}" for label, text in rows]


def _column_type(values: list[str]) -> str:
    """'numeric', 'text' (several words, mostly distinct), 'categorical' or 'empty'."""
    present = [v for v in values if v.lower() not in MISSING]
    if not present:
        return "empty"
    if all(parse_number(v) is not None for v in present):
        return "numeric"
    words = sum(len(v.split()) for v in present) / len(present)
    return "text" if words >= 3 and len(set(present)) > len(present) / 2 else "categorical"


def _inspect_csv(path: Path, target: str | None) -> Inspection:
    header, rows, _ = read_csv_rows(path)
    shown = str(path)
    types = {name: _column_type([row[j] for row in rows]) for j, name in enumerate(header)}
    missing = {
        name: n
        for j, name in enumerate(header)
        if (n := sum(row[j].lower() in MISSING for row in rows)) and types[name] != "empty"
    }
    facts = [("size", f"{len(rows):,} rows, {len(header)} columns")]
    facts.append(("columns", ", ".join(f"{n} ({types[n]})" for n in header)))
    facts.append(("missing", ", ".join(f"{n} {c:,}" for n, c in missing.items()) or "none"))
    from fieldguide.data.pairs_csv import find_pair  # torch-free, like csv_read

    pair = find_pair(header, rows, target)
    if pair is not None:
        s, t = pair
        facts.append(("pairs", f"source '{header[s]}' -> target '{header[t]}', byte tokens"))
        return Inspection(shown, "CSV of text pairs", "seq2seq", facts, auto_model("seq2seq", ()))
    if is_series_csv(path, target):
        t = find_time_column(header, rows)
        types[header[t]] = "time"
        facts[1] = ("columns", ", ".join(f"{n} ({types[n]})" for n in header))
        facts.insert(1, ("time", f"column '{header[t]}', {rows[0][t]} to {rows[-1][t]}"))
        return Inspection(
            shown, "CSV time series", "forecasting", facts, auto_model("time-series", ())
        )
    t = find_target(header, target, path)
    values = [row[t] for row in rows]
    text = text_column(header, rows, t)
    if text is not None:
        counts = {c: values.count(c) for c in sorted(set(values))}
        facts.append(("target", f"'{header[t]}', classes " + _classes(counts)))
        facts.append(("text", f"column '{header[text]}' holds free text: byte tokens"))
        model = auto_model("text", (256,))
        return Inspection(shown, "CSV of texts and labels", "text-classification", facts, model)
    if any(not v for v in values):
        facts.append(("target", f"'{header[t]}' has {values.count('')} empty cell(s): fill them"))
    kind, reason = decide_task([v for v in values if v])
    if kind == "regression":
        numbers = [parse_number(v) for v in values if v]
        summary = f"from {min(numbers):g} to {max(numbers):g}"
        facts.append(("target", f"'{header[t]}', {summary}: {reason}"))
    else:
        counts = {c: values.count(c) for c in sorted(set(values) - {""})}
        facts.append(("target", f"'{header[t]}', classes {_classes(counts)} ({reason})"))
    return Inspection(shown, "CSV table", kind, facts, auto_model("tabular", (len(header) - 1,)))


def _classes(counts: dict[str, int]) -> str:
    """Class counts in words, such as: a 50, b 48 (2 classes); the first ten."""
    items = list(counts.items())
    text = ", ".join(f"{c} {n:,}" for c, n in items[:10])
    more = f" and {len(items) - 10} more" if len(items) > 10 else ""
    return f"{text}{more} ({len(items)} classes)"


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))


def _inspect_folder(path: Path) -> Inspection:
    shown = str(path)
    if (path / "nodes.csv").is_file() and not (path / "edges.csv").is_file():
        raise ValueError(
            f"graph folder {path} has no edges.csv; expected one with columns source, target "
            f"and optionally weight."
        )
    if (path / "edges.csv").is_file():
        edges = max(0, sum(1 for _ in open(path / "edges.csv", encoding="utf-8")) - 1)
        nodes_file = path / "nodes.csv"
        nodes = (
            max(0, sum(1 for _ in open(nodes_file, encoding="utf-8")) - 1)
            if nodes_file.is_file()
            else 0
        )
        facts = [("size", f"{nodes:,} node rows, {edges:,} edge rows")]
        return Inspection(
            shown, "graph folder", "node-classification", facts, auto_model("graphs", ())
        )
    if (path / "images").is_dir() and (path / "masks").is_dir():
        return _inspect_mask_folder(path)
    classes = sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        texts = [f for f in _files(path) if f.suffix.lower() == ".txt"]
        if texts:
            size = sum(f.stat().st_size for f in texts)
            facts = [("size", f"{len(texts)} .txt file(s), {size:,} bytes")]
            return Inspection(
                shown, "folder of text", "language-modelling", facts, auto_model("text", ())
            )
        raise ValueError(
            f"folder '{path}' holds neither class sub-folders, edges.csv nor .txt files; see "
            f"`fieldguide data --help` for the layouts training reads."
        )
    per_class = {c.name: _files(c) for c in classes}
    suffixes = {f.suffix.lower() for files in per_class.values() for f in files}
    counts = {name: len(files) for name, files in per_class.items()}
    facts = [("classes", _classes(counts))]
    if suffixes and suffixes <= IMAGE_SUFFIXES:
        from PIL import Image  # reads the header only

        first = next(f for files in per_class.values() for f in files)
        with Image.open(first) as image:
            width, height = image.size
            channels = len(image.getbands())
        facts.append(("images", f"e.g. {first.name}: {width}x{height}, {channels} channel(s)"))
        model = auto_model("images", (channels, height, width))
        return Inspection(shown, "image folder", "classification", facts, model)
    if suffixes == {".txt"}:
        return Inspection(
            shown,
            "folder of texts per class",
            "text-classification",
            facts,
            auto_model("text", (256,)),
        )
    if suffixes == {".csv"}:
        return Inspection(
            shown,
            "folder of sequences per class",
            "sequence-classification",
            facts,
            auto_model("sequences", ()),
        )
    raise ValueError(
        f"folder '{path}' mixes file kinds {sorted(suffixes)} in its class sub-folders; give "
        f"each class images, .txt files or .csv sequences, one kind for the whole folder."
    )


def _inspect_mask_folder(path: Path) -> Inspection:
    """images/ and masks/ sub-folders: segmentation (pairs matched by name, classes listed)."""
    images = {f.stem: f for f in _files(path / "images") if f.suffix.lower() in IMAGE_SUFFIXES}
    masks = {f.stem: f for f in _files(path / "masks") if f.suffix.lower() in IMAGE_SUFFIXES}
    paired = sorted(images.keys() & masks.keys())
    facts = [("size", f"{len(paired)} image and mask pairs")]
    unpaired = len(images) + len(masks) - 2 * len(paired)
    if unpaired:
        facts.append(("unpaired", f"{unpaired} file(s) without a partner (training refuses)"))
    if paired:
        from PIL import Image  # reads the header only

        first = images[paired[0]]
        if first.suffix.lower() not in (".tif", ".tiff"):
            with Image.open(first) as image:
                width, height = image.size
                channels = len(image.getbands())
            facts.append(("images", f"e.g. {first.name}: {width}x{height}, {channels} channel(s)"))
    names = path / "classes.txt"
    if names.is_file():
        listed = [n.strip() for n in names.read_text(encoding="utf-8").splitlines() if n.strip()]
        facts.append(("classes", f"{len(listed)} from classes.txt: {', '.join(listed[:8])}"))
    else:
        facts.append(("classes", "from the mask values (0/255 masks: background, foreground)"))
    return Inspection(
        str(path), "mask folder", "segmentation", facts, auto_model("segmentation", ())
    )


def inspect_data(spec: str | os.PathLike[str], target: str | None = None) -> Inspection:
    """What `spec` (a starter name, a file or a folder) holds and what training would do with it.

    Raises:
        ValueError: For a path that does not exist or that no reader takes, in one sentence.
    """
    from fieldguide.data.starters import STARTERS, get_starter, is_present, looks_like_path

    spec = os.fspath(spec)
    if spec in STARTERS and not looks_like_path(spec):
        starter = get_starter(spec)
        present = "installed" if is_present(starter) else f"missing: {starter.install}"
        facts = [("starter", f"{starter.description} ({present})")]
        return Inspection(spec, f"starter dataset ({starter.modality})", starter.task, facts)
    path = Path(spec)
    if not path.exists():
        if not looks_like_path(spec):
            get_starter(spec)  # an unknown name: raises with the close matches
        raise ValueError(f"data path '{spec}' does not exist.")
    if path.is_dir():
        return _inspect_folder(path)
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return _inspect_csv(path, target)
    if suffix == ".txt":
        facts = [("size", f"{path.stat().st_size:,} bytes")]
        return Inspection(spec, "text file", "language-modelling", facts, auto_model("text", ()))
    if suffix == ".npz":
        import numpy as np

        with np.load(path, allow_pickle=False) as arrays:
            shapes = []
            for key in arrays.files:
                try:
                    shapes.append(f"{key} {tuple(arrays[key].shape)}")
                except ValueError:  # an object array: only pickle reads it
                    raise ValueError(
                        f"NPZ file {path} holds {key!r} as an object array, which only pickle "
                        f"can read and pickle is refused; store numbers (see `fieldguide data "
                        f"--help`)."
                    ) from None
        facts = [("arrays", ", ".join(shapes))]
        return Inspection(
            spec, "array file", "sequence-classification", facts, auto_model("sequences", ())
        )
    raise ValueError(
        f"data path '{spec}' is not a .csv, .txt or .npz file or a folder; see `fieldguide data "
        f"--help` for the layouts training reads."
    )
