"""A run's whole configuration — model, data, recipe — and its config.toml.

The file a run writes is the file that repeats it: `fieldguide train --config RUN/config.toml`.
TOML has no null, so "no value" is written as "" or 0 where a field is optional.
"""

from __future__ import annotations

import dataclasses
import os
import re
import sys
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import tomli_w

from fieldguide.train.config import OptionError, TrainConfig, check_fields

# What `node_features` may name (see `fieldguide.data.graph_features`).
NODE_FEATURES = ("auto", "spectral", "degree", "identity")

if sys.version_info >= (3, 11):  # noqa: UP036 (Python 3.10 is supported)
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


@dataclass(frozen=True)
class DataConfig:
    """Which data and how to split it."""

    name: str = (
        "digits"  # a starter dataset (`fieldguide data list`), an image folder or a CSV file
    )
    split_seed: int = 0  # of the train/val/test split
    val_fraction: float = 0.15
    test_fraction: float = 0.15
    target: str = ""  # CSV target column; "" looks for target/label/class
    task: Literal["auto", "forecasting", "classification", "regression"] = "auto"  # CSV only
    season: int = 0  # time series CSV: seasonal period in steps; 0 guesses it from the step
    image_size: int = 0  # resize images to this square size; 0 keeps their size
    context: int = 0  # forecasting or language modelling: steps per window; 0: the default
    horizon: int = 0  # forecasting: steps to predict; 0 takes the dataset's default
    labels_per_class: int = 0  # graphs: train on this many labelled nodes per class; 0: fractions
    node_features: str = ""  # graphs without features: spectral, degree or identity; "": spectral
    fanouts: str = ""  # graphs: neighbours sampled per layer, such as "10,5"; "": full-batch
    crop: int = 0  # segmentation: side of the random training crops; 0: 128 or the smallest image
    held_out_classes: int = -1  # metric learning: last N classes only in test; -1: half if >= 4
    categorical: str = ""  # CSV as fields rows (wide-deep, dlrm): categorical columns, a,b,c
    dense: str = ""  # CSV as fields rows: dense (numeric) columns, a,b,c

    def __post_init__(self) -> None:
        check_fields(
            self,
            split_seed={"minimum": 0, "below": 2**32},
            val_fraction={"above": 0, "below": 1},
            test_fraction={"above": 0, "below": 1},
            image_size={"minimum": 0},
            context={"minimum": 0},
            horizon={"minimum": 0},
            labels_per_class={"minimum": 0},
            season={"minimum": 0},
            crop={"minimum": 0},
            held_out_classes={"minimum": -1},
        )
        if self.val_fraction + self.test_fraction >= 1:
            raise OptionError(
                "{val_fraction} + {test_fraction} must be below 1 so that rows remain for "
                f"training; got {self.val_fraction} + {self.test_fraction}.",
                "val_fraction",
                "test_fraction",
                owner="DataConfig",
            )
        if not self.name.strip():
            raise OptionError(
                "{name} must name a starter or a path; got ''.", "name", owner="DataConfig"
            )
        if self.node_features not in ("", *NODE_FEATURES):
            raise OptionError(
                f"{{node_features}} must be one of {', '.join(NODE_FEATURES)} (or empty); "
                f"got {self.node_features!r}.",
                "node_features",
                owner="DataConfig",
            )
        parts = [part.strip() for part in self.fanouts.split(",")] if self.fanouts.strip() else []
        if not all(re.fullmatch(r"-1|\d+", part) and int(part) != 0 for part in parts):
            raise OptionError(
                "{fanouts} expects positive integers separated by commas, one per layer, such as "
                f"'10,5' (-1 takes all neighbours); got {self.fanouts!r}.",
                "fanouts",
                owner="DataConfig",
            )

    def with_absolute_path(self) -> DataConfig:
        """This config with a data path made absolute, so the run repeats from any folder.

        A starter name stays a name (a starter wins over a folder of the same name, as in
        `load_data`), and so does a path that does not exist, which loading then names.
        """
        if _is_starter(self.name) or not os.path.exists(self.name):
            return self
        return dataclasses.replace(self, name=os.path.abspath(self.name))

    def check_applies(self) -> None:
        """Refuse target unless the data is a CSV file, and image_size unless an image folder.

        Raises:
            OptionError: naming the option that does not apply to the data in `name`.
        """
        if self.task != "auto" and not self.name.lower().endswith(".csv"):
            raise OptionError(
                f"{{task}} chooses forecasting, classification or regression for a CSV file, so "
                f"it applies only to .csv data; got {self.task!r} for data {self.name!r}.",
                "task",
                owner="DataConfig",
            )
        if self.season and not self.name.lower().endswith(".csv"):
            raise OptionError(
                f"{{season}} sets the season of a time series CSV file, so it applies only to "
                f".csv data; got {self.season} for data {self.name!r}.",
                "season",
                owner="DataConfig",
            )
        for option in ("categorical", "dense"):
            if getattr(self, option) and not self.name.lower().endswith(".csv"):
                raise OptionError(
                    f"{{{option}}} names columns of a CSV file read as fields rows, so it applies "
                    f"only to .csv data; got {getattr(self, option)!r} for data {self.name!r}.",
                    option,
                    owner="DataConfig",
                )
        if self.target and not self.name.lower().endswith(".csv"):
            raise OptionError(
                f"{{target}} names a column of a CSV file, so it applies only to .csv data; got "
                f"{self.target!r} for data {self.name!r}.",
                "target",
                owner="DataConfig",
            )
        folder = os.path.isdir(self.name) and not _is_starter(self.name)
        if self.image_size and not (
            folder and not os.path.isfile(os.path.join(self.name, "edges.csv"))
        ):
            raise OptionError(
                f"{{image_size}} resizes the images of an image folder, so it applies only to one; "
                f"got {self.image_size} for data {self.name!r}.",
                "image_size",
                owner="DataConfig",
            )


def _is_starter(name: str) -> bool:
    """Whether `name` loads a starter: a starter's name that does not look like a path."""
    from fieldguide.data.starters import STARTERS, looks_like_path

    return name in STARTERS and not looks_like_path(name)


@dataclass(frozen=True)
class RunConfig:
    """Model name and config fields, data and recipe: everything needed to repeat a run."""

    model: str = "auto"
    model_config: dict[str, Any] = field(default_factory=dict)  # overrides of the preset's fields
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_toml(self) -> str:
        """The config as TOML text."""
        doc = {
            "model": {"name": self.model, "config": _plain(self.model_config)},
            "data": asdict(self.data),
            "train": asdict(self.train),
        }
        return tomli_w.dumps(doc)

    @classmethod
    def from_toml(cls, path: str | Path) -> RunConfig:
        """Read a config.toml; unknown sections or keys are errors that name them."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"config file {path} does not exist.")
        try:
            doc = tomllib.loads(path.read_text())
        except tomllib.TOMLDecodeError as e:
            raise ValueError(f"config file {path} is not valid TOML: {e}.") from None
        unknown = set(doc) - {"model", "data", "train"}
        if unknown:
            raise ValueError(
                f"config file {path} has unknown section(s) {sorted(unknown)}; "
                "expected model, data, train."
            )
        model = doc.get("model", {})
        return cls(
            model=model.get("name", "auto"),
            model_config=dict(model.get("config", {})),
            data=build(DataConfig, doc.get("data", {}), f"{path} [data]"),
            train=build(TrainConfig, doc.get("train", {}), f"{path} [train]"),
        )


def _plain(value: Any) -> Any:
    """Tuples to lists, recursively, for TOML."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def build(cls: type, values: dict[str, Any], where: str) -> Any:
    """Instantiate dataclass `cls` from `values`, naming `where` for unknown or ill-typed keys."""
    from fieldguide.typed import replace_config

    return replace_config(cls(), where, **values)


def write_atomic(path: Path, text: str) -> None:
    """Write `text` to `path` so that a reader sees the old file or the new one, never half."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def fields_of(cls: type) -> list[dataclasses.Field]:
    """The dataclass fields of `cls` (for generating CLI flags)."""
    return list(dataclasses.fields(cls))
