"""A run's whole configuration — model, data, recipe — and its config.toml.

The file a run writes is the file that repeats it: `fieldguide train --config RUN/config.toml`.
TOML has no null, so "no value" is written as "" or 0 where a field is optional.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import tomli_w

from fieldguide.train.config import TrainConfig

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
    image_size: int = 0  # resize images to this square size; 0 keeps their size
    context: int = 0  # forecasting or language modelling: steps per window; 0: the default
    horizon: int = 0  # forecasting: steps to predict; 0 takes the dataset's default
    labels_per_class: int = 0  # graphs: train on this many labelled nodes per class; 0: fractions
    node_features: str = ""  # graphs without features: spectral, degree or identity; "": spectral
    fanouts: str = ""  # graphs: neighbours sampled per layer, such as "10,5"; "": full-batch


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
    from fieldguide.models.registry import replace_config

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
