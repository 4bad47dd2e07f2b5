"""`predict`: apply a finished run to new inputs, with exactly the run's own preprocessing.

`load_run(RUN)` rebuilds the model from config.toml, loads model.safetensors after checking its
sha256, and reads preprocessing.json (the statistics, categories and target scaling fitted on
the training rows). `Run.predict(path)` prepares new inputs with those, never with statistics of
the new data, so there is no train/predict skew, and returns one prediction per input beside its
identifier (a CSV row number).

Today: runs trained on a CSV table (classification or regression), on an image folder (new
images: a folder, searched recursively, or one file), on a CSV of texts and labels, and on a
folder of CSV sequences (new sequences: a folder, searched recursively, or one file). Other
kinds are refused in one sentence that says so. A series run forecasts the `horizon` steps after
the last row of a series CSV, with the time stamps continued.
"""

from __future__ import annotations

import csv
import io
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from fieldguide.api.config import RunConfig, write_atomic


@dataclass
class Predictions:
    """Predictions for new inputs, one row each.

    Attributes:
        ids: Each input's identifier (a CSV file's row numbers, the header being row 1).
        columns: Names of the prediction columns, such as ["prediction", "p(setosa)", ...].
        rows: One list of values per input, in `columns` order.
        notes: What preparing the inputs did that a reader should know (cells filled, ...).
    """

    ids: list[Any]
    columns: list[str]
    rows: list[list[Any]]
    notes: list[str] = field(default_factory=list)
    id_name: str = "row"  # what the ids are: CSV row numbers, files, or the forecast's times

    def to_csv(self) -> str:
        """The predictions as CSV text: an id column, then `columns`."""
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow([self.id_name, *self.columns])
        for identifier, row in zip(self.ids, self.rows, strict=True):
            writer.writerow([identifier, *row])
        return out.getvalue()


@dataclass
class Run:
    """A finished run: its config, its trained model (eval mode) and its preprocessing."""

    run_dir: Path
    config: RunConfig
    model: nn.Module
    preprocessing: dict[str, Any]

    @property
    def task(self) -> str:
        """The task the run trained for, such as "classification" or "regression"."""
        return self.preprocessing["task"]

    def prepare(self, path: str | os.PathLike[str]) -> tuple[dict[str, torch.Tensor], list, dict]:
        """The model's inputs for the inputs in `path` (by argument name), their ids and notes.

        "x" is the first positional input; any other key is passed by name (a padding mask).
        """
        data = self.preprocessing["data"]
        return READERS[self._reader(path)](Path(path), data)

    def _reader(self, path: str | os.PathLike[str]) -> str:
        """The reader this run's inputs need, once it is known to exist and `path` exists."""
        reader = self.preprocessing["data"].get("reader", "")
        if reader not in READERS and reader != "csv-series":
            raise ValueError(
                f"predict handles runs trained on a CSV table, an image folder, a CSV of texts, "
                f"a series CSV or a folder of CSV sequences so far; {self.run_dir} is a "
                f"{self.task} run on other data (use `fieldguide generate` for language models)."
            )
        if not Path(path).exists():
            raise ValueError(
                f"predict expects --data as a file or folder; '{path}' does not exist."
            )
        return reader

    @torch.no_grad()
    def predict(self, path: str | os.PathLike[str], batch_size: int = 256) -> Predictions:
        """Predictions for every input in `path`, prepared as the training inputs were.

        Classification gives the most likely class and one probability per class; regression
        gives the value in the target's units.
        """
        from fieldguide.tasks.base import reads

        if self._reader(path) == "csv-series":  # the future, not rows
            return self._forecast(path)
        inputs, ids, notes = self.prepare(path)
        self.model.eval()
        parts = []
        for start in range(0, len(ids), batch_size):
            batch = {k: v[start : start + batch_size] for k, v in inputs.items()}
            x = batch.pop("x")
            if reads(self.model) == "vectors" and x.ndim > 2:
                x = x.flatten(1)  # an MLP reads images as their pixels, as in training
            parts.append(self.model(x, **batch))
        outputs = torch.cat(parts) if parts else torch.zeros(0, 1)
        said = _notes(notes)
        by_file = self.preprocessing["data"]["reader"] in ("image-folder", "csv-sequences")
        id_name = "file" if by_file else "row"
        if self.task == "regression":
            state = self.preprocessing["task_state"]
            values = outputs[:, 0].double() * state["target_std"] + state["target_mean"]
            rows = [[v] for v in values.tolist()]
            return Predictions(ids, ["prediction"], rows, said, id_name=id_name)
        classes = self.preprocessing["classes"]
        probs = outputs.float().softmax(-1)
        rows = [[classes[int(p.argmax())], *(round(v, 6) for v in p.tolist())] for p in probs]
        columns = ["prediction", *(f"p({c})" for c in classes)]
        return Predictions(ids, columns, rows, said, id_name=id_name)

    def _forecast(self, path: str | os.PathLike[str]) -> Predictions:
        """The next `horizon` steps after the last row of a series CSV, time stamps continued.

        The last `context` rows are scaled with the training mean and std, read relative to the
        last value when the run anchored its windows (as in training), and the forecast is
        mapped back to the series' units.
        """
        from datetime import timedelta

        import numpy as np

        from fieldguide.data.csv_read import timestamp
        from fieldguide.data.series_csv import read_series
        from fieldguide.tasks.base import reads

        data, state = self.preprocessing["data"], self.preprocessing["task_state"]
        _expect_suffix(Path(path), ".csv", "a .csv series with the run's time and value columns")
        read = read_series(path)
        columns = [c for c in read.columns if c in data["columns"]]
        if columns != data["columns"]:
            raise ValueError(
                f"CSV file {path} has value columns {read.columns}; the run forecasts "
                f"{data['columns']}, so give those (other columns are not read)."
            )
        values = np.stack([read.blocks[read.columns.index(c)] for c in columns], axis=1)
        context, horizon = state["context"], state["horizon"]
        if len(values) < context:
            raise ValueError(
                f"CSV file {path} has {len(values)} steps; the run reads the last {context} to "
                f"forecast, so give at least that many rows."
            )
        mean = torch.tensor(state["mean"], dtype=torch.float64)
        std = torch.tensor(state["std"], dtype=torch.float64)
        window = torch.from_numpy(values[-context:])
        x = ((window - mean) / std).float()[None]  # (1, L, C), scaled as in training
        anchor = x[:, -1:, :] if state["anchor"] else torch.zeros_like(x[:, -1:, :])
        relative = x - anchor
        self.model.eval()
        with torch.no_grad():
            out = self.model(relative.flatten(1) if reads(self.model) == "vectors" else relative)
        z = out.view(1, horizon, len(columns)) + anchor  # (1, H, C)
        forecast = (z[0].double() * std + mean).tolist()  # (H, C) in the series' units
        last, step = read.rows[-1][read.time_index], data["step_value"]
        if data["dated"]:
            start = timestamp(last)
            ids = [(start + timedelta(days=step * (h + 1))).isoformat() for h in range(horizon)]
            ids = [i.removesuffix("T00:00:00") for i in ids]
        else:
            ids = [f"{float(last) + step * (h + 1):g}" for h in range(horizon)]
        notes = [f"filled by interpolation: {read.filled}"] if read.filled else []
        time_name = read.header[read.time_index]
        return Predictions(ids, list(columns), forecast, notes, id_name=time_name)


def _table(path: Path, data: dict) -> tuple[dict[str, torch.Tensor], list, dict]:
    """New rows of a CSV table, with the training statistics and categories."""
    from fieldguide.data.tabular import transform_rows

    _expect_suffix(path, ".csv", "a .csv file with the run's columns")
    x, ids, notes = transform_rows(path, data)
    return {"x": torch.from_numpy(x)}, ids, notes


def _images(path: Path, data: dict) -> tuple[dict[str, torch.Tensor], list, dict]:
    """New images: one file, or every image under a folder, read as the training images were."""
    import numpy as np

    from fieldguide.data.image_folder import IMAGE_SUFFIXES, _open, _to_array

    if path.is_dir():
        files = sorted(
            p
            for p in path.rglob("*")
            if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")
        )
        ids = [str(p.relative_to(path)) for p in files]
    else:
        _expect_suffix(path, tuple(IMAGE_SUFFIXES), "an image file or a folder of images")
        files, ids = [path], [path.name]
    if not files:
        raise ValueError(f"predict found no images in {path}; expected files such as *.png.")
    size, mean, std = data["image_size"], data["mean"], data["std"]
    arrays = [_to_array(_open(f), data["rgb"], size) for f in files]  # (C, H, W) in [0, 1]
    shapes = {a.shape for a in arrays}
    expected = (len(mean), *arrays[0].shape[1:]) if size else None
    if len(shapes) > 1 or (expected and arrays[0].shape != expected):
        raise ValueError(
            f"predict got images of sizes {sorted(s[1:] for s in shapes)} in {path}; the run "
            f"was trained on one size and no image_size, so give images of that size."
        )
    x = np.stack(arrays)
    x = (x - np.array(mean, np.float32)[:, None, None]) / np.array(std, np.float32)[:, None, None]
    return {"x": torch.from_numpy(x.astype(np.float32))}, ids, {}


def _texts(path: Path, data: dict) -> tuple[dict[str, torch.Tensor], list, dict]:
    """New texts from the run's text column of a CSV, as byte tokens cut as in training."""
    from fieldguide.data.csv_read import read_csv_rows
    from fieldguide.data.tokenizer import ByteTokenizer

    _expect_suffix(path, ".csv", f"a .csv file with a '{data['text_column']}' column")
    header, rows, lines = read_csv_rows(path)
    if data["text_column"] not in header:
        raise ValueError(
            f"CSV file {path} has no column '{data['text_column']}', the text the run was "
            f"trained on; its columns are {header}."
        )
    j = header.index(data["text_column"])
    texts = [row[j] for row in rows]
    empty = next((line for text, line in zip(texts, lines, strict=True) if not text), None)
    if empty is not None:
        raise ValueError(f"CSV file {path} row {empty} has an empty text; fill it or remove it.")
    ids, lengths = ByteTokenizer().batch_encode(texts, data["max_len"])  # (N, T), (N,)
    mask = torch.arange(ids.shape[1])[None, :] < lengths[:, None]  # True at real bytes
    return {"x": ids, "padding_mask": mask}, lines, {}


def _sequences(path: Path, data: dict) -> tuple[dict[str, torch.Tensor], list, dict]:
    """New sequences: one CSV file, or every CSV under a folder, scaled as in training."""
    import numpy as np

    from fieldguide.data.sequence_files import _read_sequence

    if path.is_dir():
        files = sorted(p for p in path.rglob("*.csv") if not p.name.startswith("."))
        ids = [str(p.relative_to(path)) for p in files]
    else:
        _expect_suffix(path, ".csv", "a .csv sequence or a folder of them")
        files, ids = [path], [path.name]
    if not files:
        raise ValueError(f"predict found no .csv sequences in {path}.")
    mean, std = np.array(data["mean"]), np.array(data["std"])
    sequences = []
    for file in files:
        header, values = _read_sequence(file)
        if header != data["channels"]:
            raise ValueError(
                f"sequence file {file} has channels {header}; the run was trained on "
                f"{data['channels']}, in that order."
            )
        if not len(values):
            raise ValueError(f"sequence file {file} has no steps; give at least one row.")
        sequences.append((values - mean) / std)
    lengths = torch.tensor([len(s) for s in sequences])
    x = torch.zeros(len(sequences), int(lengths.max()), len(mean))  # zeros past each length
    for i, s in enumerate(sequences):
        x[i, : len(s)] = torch.from_numpy(s.astype(np.float32))
    return {"x": x, "lengths": lengths}, ids, {}


def _expect_suffix(path: Path, suffixes: str | tuple[str, ...], what: str) -> None:
    if not str(path).lower().endswith(suffixes):
        raise ValueError(f"predict expects --data as {what}, as the run was trained; got '{path}'.")


READERS = {
    "csv-table": _table,
    "image-folder": _images,
    "csv-text": _texts,
    "csv-sequences": _sequences,
}


def _notes(notes: dict) -> list[str]:
    """Preparation notes in words."""
    said = []
    if notes.get("filled_with_median"):
        said.append(f"filled with the training median: {notes['filled_with_median']}")
    if notes.get("unseen_categories"):
        said.append(
            f"categories not seen in training, encoded as none: {notes['unseen_categories']}"
        )
    return said


def load_run(run_dir: str | os.PathLike[str]) -> Run:
    """The finished run in `run_dir`: its model (weights checked by sha256) and preprocessing.

    Raises:
        FileNotFoundError: If `run_dir` is not a finished run folder.
        ValueError: If its weights or preprocessing.json are damaged or unreadable.
    """
    from fieldguide.api.generate import load_run_model

    run_dir = Path(run_dir).absolute()
    model = load_run_model(run_dir)  # checks config.toml and the weights' hash
    path = run_dir / "preprocessing.json"
    if not path.is_file():
        raise FileNotFoundError(
            f"run folder {run_dir} has no preprocessing.json; it was written by an older "
            f"fieldguide or did not finish; train it again to predict with it."
        )
    try:
        preprocessing = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"{path} is damaged: it is not JSON ({error}).") from None
    if preprocessing.get("format") != "fieldguide-preprocessing-1":
        raise ValueError(f"{path} is not a fieldguide preprocessing file (no known format).")
    config = RunConfig.from_toml(run_dir / "config.toml")
    return Run(run_dir, config, model, preprocessing)


def predict(
    run_dir: str | os.PathLike[str], data: str | os.PathLike[str], output: str | None = None
) -> Predictions:
    """Apply run `run_dir` to the inputs in `data`; write them as CSV to `output` if given.

    Nothing is written unless every input was read and predicted.
    """
    predictions = load_run(run_dir).predict(data)
    if output is not None:
        target = Path(output)
        if not target.parent.is_dir():
            raise ValueError(f"predict -o {output}: folder {target.parent} does not exist.")
        write_atomic(target, predictions.to_csv())
    return predictions
