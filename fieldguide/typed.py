"""Typed dataclass overrides: `replace_config(config, owner, **overrides)` checks each value.

Model configs, the training recipe and the data options are frozen dataclasses; every override a
user gives (keyword, `--set`, config.toml) goes through here, so an unknown field lists the close
matches and an ill-typed value names the field and the type it expects. Imports no torch.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any

from fieldguide.suggest import unknown


def _matches(value: Any, annotation: Any) -> bool:
    """Whether `value` fits a config field's type annotation (bool is not an int here)."""
    origin = typing.get_origin(annotation)
    if annotation is Any:
        return True
    if origin in (typing.Union, types.UnionType):
        return any(_matches(value, arg) for arg in typing.get_args(annotation))
    if origin is typing.Literal:
        return value in typing.get_args(annotation)
    if origin is tuple:
        args = typing.get_args(annotation)
        if not isinstance(value, tuple):
            return False
        if len(args) == 2 and args[1] is Ellipsis:
            return all(_matches(v, args[0]) for v in value)
        return len(args) == len(value) and all(
            _matches(v, a) for v, a in zip(value, args, strict=True)
        )
    if annotation is type(None):
        return value is None
    if annotation is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, annotation)


def replace_config(config: Any, owner: str, **overrides: Any) -> Any:
    """Return `config` with `overrides` applied, each checked against the field's type."""
    hints = typing.get_type_hints(type(config))
    fields = [f.name for f in dataclasses.fields(config)]
    for key, value in list(overrides.items()):
        if key not in hints:
            raise ValueError(unknown(f"override for {owner}", key, fields))
        if isinstance(value, list):  # TOML and JSON give lists where configs hold tuples
            value = overrides[key] = tuple(value)
        if not _matches(value, hints[key]):
            if typing.get_origin(hints[key]) is typing.Literal:  # name the choices
                shown = "one of " + ", ".join(repr(c) for c in typing.get_args(hints[key]))
            else:
                shown = getattr(hints[key], "__name__", None) or str(hints[key]).replace(
                    "typing.", ""
                )
            raise TypeError(
                f"{owner} override '{key}' expects {shown}; got {value!r} ({type(value).__name__})."
            )
        if isinstance(value, int) and hints[key] is float:
            overrides[key] = float(value)
    return dataclasses.replace(config, **overrides)
