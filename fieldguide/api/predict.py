"""`predict`: apply a finished run to new inputs, with exactly the run's own preprocessing.

`load_run(RUN)` rebuilds the model from config.toml, loads model.safetensors after checking its
sha256, and reads preprocessing.json (the statistics, categories and target scaling fitted on
the training rows). `Run.predict(path)` prepares new inputs with those, never with statistics of
the new data, so there is no train/predict skew, and returns one prediction per input beside its
identifier (a CSV row number).

Today: runs trained on a CSV table (classification or regression). Other kinds are refused in
one sentence that says so.
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

    def to_csv(self) -> str:
        """The predictions as CSV text: an id column, then `columns`."""
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(["row", *self.columns])
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

    def prepare(self, path: str | os.PathLike[str]) -> tuple[torch.Tensor, list[int], dict]:
        """The model's input tensor for the inputs in `path`, their ids and preparation notes."""
        from fieldguide.data.tabular import transform_rows

        data = self.preprocessing["data"]
        if self.task not in ("classification", "regression") or "columns" not in data:
            raise ValueError(
                f"predict handles runs trained on a CSV table so far; {self.run_dir} is a "
                f"{self.task} run (use `fieldguide generate` for language models)."
            )
        if not str(path).lower().endswith(".csv"):
            raise ValueError(
                f"predict expects --data as a .csv file with the run's columns, as the run was "
                f"trained on a CSV table; got '{path}'."
            )
        x, ids, notes = transform_rows(path, data)
        return torch.from_numpy(x), ids, notes

    @torch.no_grad()
    def predict(self, path: str | os.PathLike[str], batch_size: int = 1024) -> Predictions:
        """Predictions for every input in `path`, prepared as the training inputs were.

        Classification gives the most likely class and one probability per class; regression
        gives the value in the target's units.
        """
        x, ids, notes = self.prepare(path)
        self.model.eval()
        outputs = torch.cat([self.model(chunk) for chunk in x.split(batch_size)]) if len(x) else x
        said = _notes(notes)
        if self.task == "regression":
            state = self.preprocessing["task_state"]
            values = outputs[:, 0].double() * state["target_std"] + state["target_mean"]
            return Predictions(ids, ["prediction"], [[v] for v in values.tolist()], said)
        classes = self.preprocessing["classes"]
        probs = outputs.float().softmax(-1)
        rows = [[classes[int(p.argmax())], *(round(v, 6) for v in p.tolist())] for p in probs]
        return Predictions(ids, ["prediction", *(f"p({c})" for c in classes)], rows, said)


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
