"""The model registry: one hop from a name to a frozen config and the class that builds it.

`register("resnet18", ResNetConfig(...), ResNet)` is the only way a preset comes to exist, so a
grep for the name finds the one line that defines it. This module imports no torch: the family
modules are imported on first lookup.
"""

from __future__ import annotations

import dataclasses
import importlib
from dataclasses import dataclass
from typing import Any

from fieldguide.suggest import unknown
from fieldguide.typed import replace_config

# Family modules under fieldguide.models, imported when the registry is first read.
FAMILIES = (
    "mlp",
    "resnet",
    "mobilenet",
    "unet",
    "rnn",
    "tcn",
    "ssm",
    "transformer",
    "vit",
    "gnn",
    "diffusion",
    "flows",
    "vae",
    "contrastive",
    "recsys",
)
# Non-neural baselines (models/classical.py): registered like networks, fitted in one pass;
# `list_models` leaves them out unless asked, so network-only contracts stay network-only.
CLASSICAL = ("classical",)


@dataclass(frozen=True)
class Entry:
    """A registered preset: its name, family, default config and model class."""

    name: str
    family: str
    config: Any
    cls: type

    @property
    def summary(self) -> str:
        """First line of the model class docstring."""
        return (self.cls.__doc__ or "").strip().splitlines()[0]


_REGISTRY: dict[str, Entry] = {}
_loaded = False


def register(name: str, config: Any, cls: type) -> None:
    """Register preset `name`: `create_model(name)` builds `cls(config)`."""
    if not dataclasses.is_dataclass(config) or isinstance(config, type):
        raise TypeError(
            f"register expects config as a dataclass instance; got {type(config).__name__}."
        )
    old = _REGISTRY.get(name)
    if old is not None and (old.cls.__qualname__, old.config) != (cls.__qualname__, config):
        # Two presets under one name would silently shadow each other; re-importing is fine.
        raise ValueError(f"model name '{name}' is already registered to {old.cls.__name__}.")
    family = cls.__module__.rsplit(".", 1)[-1]
    _REGISTRY[name] = Entry(name=name, family=family, config=config, cls=cls)


def _load_families() -> None:
    global _loaded
    if not _loaded:
        for family in (*FAMILIES, *CLASSICAL):
            importlib.import_module(f"fieldguide.models.{family}")
        _loaded = True


def list_models(family: str | None = None, *, classical: bool = False) -> list[str]:
    """Names of registered networks, sorted, optionally of one family ("mlp", "resnet", ...).

    The classical baselines (gbdt, linear, ...) are listed with `classical=True` or
    `family="classical"`.
    """
    _load_families()
    known = (*FAMILIES, *CLASSICAL)
    if family is not None and family not in known:
        raise ValueError(unknown("family", family, list(known)))
    return sorted(
        n
        for n, e in _REGISTRY.items()
        if (family is None and (classical or e.family not in CLASSICAL)) or e.family == family
    )


def get_entry(name: str) -> Entry:
    """The registry entry for `name`, or a ValueError that lists close matches."""
    if not isinstance(name, str):
        raise TypeError(f"model name must be a str such as 'resnet18'; got {type(name).__name__}.")
    _load_families()
    if name not in _REGISTRY:
        raise ValueError(unknown("model", name, sorted(_REGISTRY)))
    return _REGISTRY[name]


def create_model(name: str, **overrides: Any) -> Any:
    """Build the registered model `name`, with any config field overridden by keyword.

    Example:
        >>> model = create_model("resnet-tiny", out_dim=5)
    """
    entry = get_entry(name)
    config = replace_config(entry.config, name, **overrides)
    model = entry.cls(config)
    model.name = name  # used in error messages and run folders
    return model
