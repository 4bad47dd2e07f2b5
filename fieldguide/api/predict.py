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
from fieldguide.api.predict_inputs import READERS, Prepared, expect_suffix, is_path


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
    # Segmentation: each input's class ids (H, W) and its pixels as read (C, H, W), for PNGs.
    masks: list[Any] | None = None
    images: list[Any] | None = None

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

    def prepare(self, data: Any) -> Prepared:
        """The model's inputs for `data` (a path, or inputs held in Python), ids and notes.

        `Prepared.inputs["x"]` is the first positional input; any other key is passed by name
        (a padding mask, lengths, a graph's edges). See `predict_inputs` for what each kind of
        run reads.
        """
        reader = self._reader(data)
        if reader == "csv-series":
            raise ValueError(
                "predict prepares a series run's inputs inside `predict`, which forecasts from "
                "the last `context` rows of a .csv series; call predict(path) instead."
            )
        known = {
            "input_shape": self.preprocessing.get("input_shape") or [],
            "in_channels": getattr(getattr(self.model, "config", None), "in_channels", None),
        }
        return READERS[reader](data, self.preprocessing["data"] | known)

    def _reader(self, data: Any) -> str:
        """The reader this run's inputs need, once it is known to exist and a path exists."""
        reader = self.preprocessing["data"].get("reader", "")
        if reader not in READERS and reader not in ("csv-series", "mask-folder"):
            raise ValueError(
                f"predict applies runs trained on the user's own files (a table, images, texts, "
                f"sequences, pairs, a graph or a series); {self.run_dir} is a {self.task} run on "
                f"a starter, so give it new inputs through the model (`load_run(...).model`), or "
                f"use `fieldguide generate` for language models."
            )
        if is_path(data) and not Path(data).exists():
            raise ValueError(
                f"predict expects --data as a file or folder; '{data}' does not exist."
            )
        return reader

    @torch.no_grad()
    def predict(self, data: Any, batch_size: int = 256) -> Predictions:
        """Predictions for every input in `data`, prepared as the training inputs were.

        Args:
            data: A path to new inputs of the kind the run trained on, or the same inputs held
                in Python (rows, images, texts, sequences; see `predict_inputs`).
            batch_size: Inputs per forward pass.

        Classification gives the most likely class and one probability per class (per node for
        a graph); regression gives the value in the target's units; a pairs run gives the
        decoded target text; a series run the next `horizon` steps.
        """
        if self._reader(data) == "mask-folder":  # a class per pixel
            return self.segment(data)
        if self._reader(data) == "csv-series":  # the future, not rows
            if not is_path(data):
                raise ValueError(
                    f"predict forecasts a series run from a .csv series (its time stamps "
                    f"continue); give data as a path; got {type(data).__name__}."
                )
            return self._forecast(data)
        prepared = self.prepare(data)
        self.model.eval()
        reader = self.preprocessing["data"]["reader"]
        if reader == "csv-pairs":
            return self._decode(prepared, batch_size)
        outputs = self.outputs(prepared, batch_size)
        said = _notes(prepared.notes)
        ids, id_name = prepared.ids, prepared.id_name
        if self.task == "metric-learning":  # the nearest training example, by cosine
            return self._nearest(outputs, ids, id_name, said, k=1)
        if self.task == "ctr":  # one logit: the positive class's probability
            classes = self.preprocessing["classes"]
            p = torch.sigmoid(outputs.float().reshape(-1))
            rows = [[classes[int(v > 0.5)], round(float(v), 6)] for v in p]
            return Predictions(ids, ["prediction", f"p({classes[1]})"], rows, said, id_name)
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

    def outputs(self, prepared: Prepared, batch_size: int = 256) -> torch.Tensor:
        """The model's raw outputs (logits, z-scored values) for prepared inputs, in order."""
        from fieldguide.tasks.base import reads

        inputs, vectors = prepared.inputs, reads(self.model) == "vectors"
        if self.preprocessing["data"]["reader"] == "graph-folder":  # the whole graph at once
            if vectors:  # an MLP baseline reads node features alone
                return self.model(inputs["x"])
            weight = inputs["edge_weight"]
            return self.model(inputs["x"], inputs["edge_index"], weight if weight.numel() else None)
        parts = []
        for start in range(0, len(prepared.ids), batch_size):
            batch = {k: v[start : start + batch_size] for k, v in inputs.items()}
            x = batch.pop("x")
            if vectors and x.ndim > 2:
                x = x.flatten(1)  # an MLP reads images as their pixels, as in training
            if vectors and "ids" in batch:  # an MLP on fields rows reads them multi-hot
                from fieldguide.tasks.ctr import multi_hot

                data = self.preprocessing["data"]
                rows = [data["fields"][f]["cardinality"] for f in data["field_names"]]
                x = multi_hot(x, batch.pop("ids"), batch.pop("weights", None), rows)
            parts.append(self.model(x, **batch))
        return torch.cat(parts) if parts else torch.zeros(0, 1)

    def index(self) -> tuple[torch.Tensor, torch.Tensor, list[str], list[str]]:
        """A metric-learning run's index.safetensors: embeddings, labels, classes, sources."""
        from safetensors import SafetensorError
        from safetensors.torch import safe_open

        path = self.run_dir / "index.safetensors"
        if self.task != "metric-learning" or not path.is_file():
            raise ValueError(
                f"search ranks a metric-learning run's training examples; {self.run_dir.name} "
                f"is a {self.task} run"
                + ("" if self.task != "metric-learning" else " without index.safetensors")
                + "."
            )
        try:
            with safe_open(str(path), framework="pt") as f:
                meta = f.metadata() or {}
                z, labels = f.get_tensor("embeddings"), f.get_tensor("labels")
            classes, sources = json.loads(meta["classes"]), json.loads(meta["sources"])
        except (SafetensorError, KeyError, json.JSONDecodeError, OSError) as error:
            raise ValueError(f"{path} is damaged or not a fieldguide index ({error}).") from None
        if len(sources) != len(z) or labels.shape != (len(z),):
            raise ValueError(f"{path} is damaged: its rows, labels and sources disagree.")
        return z, labels, classes, sources

    def search(self, data: Any, k: int = 5, batch_size: int = 256) -> Predictions:
        """The `k` training examples nearest each input of `data`, by cosine similarity."""
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ValueError(f"search expects k as a positive integer; got {k!r}.")
        self.index()  # refuses other runs before reading the inputs
        prepared = self.prepare(data)
        self.model.eval()
        with torch.no_grad():
            z = self.outputs(prepared, batch_size)
        return self._nearest(z, prepared.ids, prepared.id_name, _notes(prepared.notes), k=k)

    def _nearest(
        self, z: torch.Tensor, ids: list, id_name: str, notes: list[str], k: int
    ) -> Predictions:
        """Rows (input, rank, similarity, class, source) of the k nearest indexed examples."""
        from fieldguide.tasks.retrieval_metrics import knn

        gallery, labels, classes, sources = self.index()
        k = min(k, len(gallery))
        scores, index = knn(z.float(), gallery.float(), k)
        rows, row_ids = [], []
        for q, identifier in enumerate(ids):
            for rank in range(k):
                j = int(index[q, rank])
                row_ids.append(identifier)
                rows.append(
                    [
                        rank + 1,
                        round(float(scores[q, rank]), 6),
                        classes[int(labels[j])],
                        sources[j],
                    ]
                )
        columns = ["rank", "similarity", "class", "source"]
        return Predictions(row_ids, columns, rows, notes, id_name=id_name)

    @torch.no_grad()
    def segment(self, data: Any, *, tile: int = 0, margin: int | None = None) -> Predictions:
        """Class ids per pixel of each image in `data`, in tiles for large images.

        Args:
            data: An image file, a folder of images (searched recursively), or images in Python
                (PIL images or arrays (H, W) / (H, W, C) as a file holds them).
            tile: Tile side for `fieldguide.api.segment.tiled_logits`; 0 takes its default.
            margin: Pixels dropped along inner tile edges; None: half the receptive field.

        Returns:
            One row per image (its height, width and the share of pixels of each class), with
            `masks` (H, W) class ids and `images` (C, H, W) as read.
        """
        from fieldguide.api.predict_inputs import segmentation_images
        from fieldguide.api.segment import DEFAULT_TILE, tiled_logits

        pixels, scaled, ids, id_name = segmentation_images(data, self.preprocessing["data"])
        classes = self.preprocessing["classes"]
        self.model.eval()
        masks, rows = [], []
        for x in scaled:
            logits = tiled_logits(self.model, x, tile=tile or DEFAULT_TILE, margin=margin)
            mask = (logits[0] > 0).long() if logits.shape[0] == 1 else logits.argmax(0)
            counts = torch.bincount(mask.flatten(), minlength=len(classes)).double()
            shares = (counts / mask.numel()).tolist()
            masks.append(mask.numpy())
            rows.append([int(mask.shape[0]), int(mask.shape[1]), *(round(v, 6) for v in shares)])
        columns = ["height", "width", *(f"share({c})" for c in classes)]
        return Predictions(ids, columns, rows, [], id_name, masks=masks, images=pixels)

    def _decode(self, prepared: Prepared, batch_size: int) -> Predictions:
        """Greedy outputs for each source, grouped by length so no padding reaches the encoder."""
        from fieldguide.data.tokenizer import BOS, EOS, ByteTokenizer
        from fieldguide.tasks.seq2seq import strip_output

        tokens, lengths = prepared.inputs["x"], prepared.inputs["lengths"]
        longest = self.preprocessing["task_state"]["max_decode_len"]
        texts: list[str] = [""] * len(tokens)
        tokenizer = ByteTokenizer()
        for length in lengths.unique().tolist():
            for chunk in (lengths == length).nonzero().flatten().split(batch_size):
                out = self.model.greedy(tokens[chunk, :length], longest, BOS, EOS)
                for row, ids in zip(chunk.tolist(), out.tolist(), strict=True):
                    texts[row] = tokenizer.decode(strip_output(ids))
        column = self.preprocessing["data"]["target_column"]
        rows = [[text] for text in texts]
        return Predictions(prepared.ids, [column], rows, [], id_name=prepared.id_name)

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
        expect_suffix(Path(path), ".csv", "a .csv series with the run's time and value columns")
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


def _notes(notes: dict) -> list[str]:
    """Preparation notes in words."""
    said = []
    if notes.get("filled_with_median"):
        said.append(f"filled with the training median: {notes['filled_with_median']}")
    if notes.get("unseen_categories"):
        said.append(
            f"categories not seen in training, encoded as none: {notes['unseen_categories']}"
        )
    if notes.get("hashed_values"):
        said.append(
            f"values outside the training vocabulary, hashed into the run's buckets: "
            f"{notes['hashed_values']}"
        )
    if notes.get("missing_cells"):
        said.append(f"missing cells, encoded as missing: {notes['missing_cells']}")
    if notes.get("truncated_bags"):
        said.append(f"bags longer than training's, cut: {notes['truncated_bags']}")
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

    A segmentation run writes into folder `output` (made if missing): NAME_mask.png (class ids;
    0/255 for two classes) and NAME_overlay.png per image, and predictions.csv. Nothing is
    written unless every input was read and predicted.
    """
    run = load_run(run_dir)
    segmentation = run.preprocessing["data"].get("reader") == "mask-folder"
    if segmentation and output is None:
        raise ValueError(
            f"predict writes a mask and an overlay PNG per image for segmentation run "
            f"{run.run_dir.name}; give -o FOLDER for them."
        )
    target = None if output is None else Path(output)
    if target is not None and not target.absolute().parent.is_dir():
        raise ValueError(f"predict -o {output}: folder {target.parent} does not exist.")
    if segmentation and target is not None and target.exists() and not target.is_dir():
        raise ValueError(f"predict -o {output}: expected a folder for the masks; it is a file.")
    predictions = run.predict(data)
    if target is None:
        return predictions
    if not segmentation:
        write_atomic(target, predictions.to_csv())
        return predictions
    from fieldguide.api.segment import mask_image, overlay, write_png

    target.mkdir(exist_ok=True)
    k = len(run.preprocessing["classes"])
    for name, mask, pixels in zip(
        predictions.ids, predictions.masks or [], predictions.images or [], strict=True
    ):
        stem = Path(str(name)).with_suffix("").as_posix().replace("/", "__")
        write_png(target / f"{stem}_mask.png", mask_image(mask, k))
        write_png(target / f"{stem}_overlay.png", overlay(pixels, mask))
    write_atomic(target / "predictions.csv", predictions.to_csv())
    return predictions
