"""Model weight files that say when they are damaged: a run's model.safetensors.

`save_weights` writes the model through `safetensors.torch.save_model`, so tied weights (a
language model's embedding and head) are stored once, and records in the file's own metadata,
under "sha256", a hash of everything that decides what loads::

    sha256(u64le(len(table)) + table + data)

    table  the header as compact JSON with sorted keys: each tensor's name, dtype, shape and
           byte offsets, and the other metadata entries (all but "sha256" itself)
    data   every byte after the header, the tensors' contents

so a flipped bit anywhere in a tensor, its shape or its name no longer matches. The file is
written to a temporary sibling, fsynced, and moved into place with `os.replace`, so a reader
sees the old file or the new one, never half of one.

`load_weights` recomputes the hash over the bytes it read and parses those same bytes. Any
damage, a missing file or one that is not safetensors at all raises ValueError with one
sentence, which the CLI prints as one line. Files written before the hash existed (no "sha256"
entry) load unchecked.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
from pathlib import Path
from typing import Any

import safetensors.torch
import torch
from torch import Tensor, nn

from fieldguide.train.checkpoint import fsync_directory

__all__ = ["HASH_KEY", "load_weights", "save_weights"]

HASH_KEY = "sha256"
_LENGTH = struct.Struct("<Q")  # a safetensors file opens with its header length, u64 LE
_HEADER_LIMIT = 100_000_000  # safetensors itself refuses larger headers


def save_weights(
    model: nn.Module, path: str | Path, metadata: dict[str, str] | None = None
) -> Path:
    """Atomically write `model`'s parameters and buffers to a safetensors file with its hash.

    Args:
        model: The module to save; tensors that share memory (tied weights) are stored once
            and come back tied through `load_weights(path, model)`.
        path: The file to write, e.g. `run_dir / "model.safetensors"`; its folder must exist.
        metadata: Strings to store in the file's header, e.g. the model name and config.
            The key "sha256" is reserved for the hash.

    Returns:
        The path written.

    Raises:
        TypeError: If `model` is not an nn.Module or `metadata` is not a dict of str to str.
        ValueError: If `metadata` uses the reserved key "sha256".
    """
    if not isinstance(model, nn.Module):
        raise TypeError(
            f"save_weights expected model to be an nn.Module, but got {type(model).__name__}."
        )
    metadata = dict(metadata or {})  # save_model adds to it; never change the caller's dict
    for key, value in metadata.items():
        if type(key) is not str or type(value) is not str:
            raise TypeError(
                f"save_weights expected metadata to map str to str, but metadata[{key!r}] is "
                f"{type(value).__name__}; store other values as json.dumps(value)."
            )
    if HASH_KEY in metadata:
        raise ValueError(
            f"save_weights expected metadata without the key {HASH_KEY!r}, which holds the "
            "file's hash, but it has one; rename that entry."
        )
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        safetensors.torch.save_model(model, str(tmp), metadata=metadata)
        header, data = _split(tmp.read_bytes())
        header.setdefault("__metadata__", {})[HASH_KEY] = _digest(header, data)
        with open(tmp, "wb") as file:
            file.write(_join(header, data))
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_directory(path.parent)
    return path


def load_weights(path: str | Path, model: nn.Module | None = None) -> dict[str, Tensor]:
    """Read a weights file, checking its hash, and load it into `model` when one is given.

    Args:
        path: A file written by `save_weights`, or an older safetensors file without a hash
            (loaded unchecked).
        model: A module built with the same config; its parameters and buffers are
            overwritten, and tied weights stored once fill every name that shares them.

    Returns:
        The tensors as stored in the file (on the CPU), keyed by name.

    Raises:
        ValueError: If the file is missing, unreadable, not safetensors, does not match the
            hash written with it, or (with `model`) does not fit the model's names and shapes.
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError as err:
        raise ValueError(
            f"{path} does not exist; check the path, or train the run that writes it."
        ) from err
    except OSError as err:
        raise ValueError(f"{path} could not be read ({err.strerror}); check the path.") from err
    try:
        header, data = _split(raw)
    except ValueError as err:
        raise _unreadable(path, err) from err
    metadata = header.get("__metadata__", {})
    expected = metadata.get(HASH_KEY)
    # A flipped byte in the key itself must not pass the file off as an older one without a hash.
    renamed = expected is None and any(_near_hash_key(k) for k in metadata)
    if renamed or (expected is not None and _digest(header, data) != expected):
        raise ValueError(
            f"{path} is damaged: its sha256 does not match the hash written with it; "
            "retrain or restore the file."
        )
    try:
        # Parses safetensors bytes (never a pickle): the very bytes whose hash was just checked.
        tensors = safetensors.torch.load(raw)
    except Exception as err:  # SafetensorError and friends: the file is what matters
        raise _unreadable(path, err) from err
    if model is not None:
        _load_into(model, tensors, path)
    return tensors


# ---------------------------------------------------------------------------------------------
# The file's layout: u64le(n), n bytes of JSON header, data
# ---------------------------------------------------------------------------------------------


def _split(raw: bytes) -> tuple[dict[str, Any], memoryview]:
    """The header and data of a safetensors file; ValueError when it is not one."""
    if len(raw) < _LENGTH.size:
        raise ValueError(f"{len(raw)} bytes, too short for a header")
    (length,) = _LENGTH.unpack_from(raw)
    if length > min(len(raw) - _LENGTH.size, _HEADER_LIMIT):
        raise ValueError(f"the header claims {length} bytes of a {len(raw)}-byte file")
    try:
        header = json.loads(raw[_LENGTH.size : _LENGTH.size + length].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"the header is not JSON: {err}") from err
    metadata = header.get("__metadata__", {}) if isinstance(header, dict) else None
    if not (
        isinstance(metadata, dict)
        and all(isinstance(v, str) for v in metadata.values())
        and all(_offsets(v) for k, v in header.items() if k != "__metadata__")
    ):
        raise ValueError("the header is not a table of tensors")
    data = memoryview(raw)[_LENGTH.size + length :]
    end = max((_offsets(v)[1] for k, v in header.items() if k != "__metadata__"), default=0)
    if len(data) != end:
        raise ValueError(f"its tensors take {end} bytes but the file holds {len(data)}")
    return header, data


def _offsets(entry: Any) -> tuple[int, int] | None:
    """A header entry's (start, end) byte offsets, or None when it is not a tensor entry."""
    offsets = entry.get("data_offsets") if isinstance(entry, dict) else None
    if not (isinstance(offsets, list) and len(offsets) == 2):
        return None
    start, end = offsets
    ok = type(start) is int and type(end) is int and 0 <= start <= end
    return (start, end) if ok else None


def _join(header: dict[str, Any], data: memoryview) -> bytes:
    text = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    text += b" " * (-len(text) % 8)  # keep the data 8-byte aligned, as safetensors does
    return _LENGTH.pack(len(text)) + text + data


def _digest(header: dict[str, Any], data: memoryview) -> str:
    metadata = {k: v for k, v in header.get("__metadata__", {}).items() if k != HASH_KEY}
    table = {k: v for k, v in header.items() if k != "__metadata__"}
    canonical = json.dumps(
        {"metadata": metadata, "tensors": table},
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    ).encode("utf-8")
    digest = hashlib.sha256(_LENGTH.pack(len(canonical)))
    digest.update(canonical)
    digest.update(data)
    return digest.hexdigest()


def _near_hash_key(key: str) -> bool:
    if len(key) != len(HASH_KEY):
        return False
    return sum(a != b for a, b in zip(key, HASH_KEY, strict=True)) <= 1


def _unreadable(path: Path, err: Exception) -> ValueError:
    reason = " ".join(str(err).split()) or type(err).__name__  # one line, whatever it says
    return ValueError(
        f"{path} is damaged: it is not a readable safetensors file ({reason}); "
        "retrain or restore the file."
    )


# ---------------------------------------------------------------------------------------------
# Loading into a model
# ---------------------------------------------------------------------------------------------


def _load_into(model: nn.Module, tensors: dict[str, Tensor], path: Path) -> None:
    """`model.load_state_dict(tensors)`, where a tied name left out of the file is no gap."""
    own = model.state_dict()

    def place(tensor: Tensor) -> tuple | None:  # where a tensor lives; equal for tied ones
        pointer = tensor.untyped_storage().data_ptr()
        return (pointer, tensor.storage_offset(), tuple(tensor.shape)) if pointer else None

    stored = {place(own[k]) for k in own if k in tensors} - {None}
    missing = [k for k in own if k not in tensors and place(own[k]) not in stored]
    unexpected = [k for k in tensors if k not in own]
    reshaped = [
        f"{k} is {tuple(tensors[k].shape)} in the file but {tuple(own[k].shape)} in the model"
        for k in tensors
        if k in own and tensors[k].shape != own[k].shape
    ]
    problems = [
        *([f"the file lacks {_some(missing)}"] if missing else []),
        *([f"the model has no {_some(unexpected)}"] if unexpected else []),
        *reshaped[:3],
    ]
    if problems:
        raise ValueError(
            f"{path} does not fit the {type(model).__name__} built from its config: "
            f"{'; '.join(problems)}; load it into the model the run trained."
        )
    with torch.no_grad():
        model.load_state_dict(tensors, strict=False)  # tied names share the stored tensor


def _some(names: list[str]) -> str:
    shown = ", ".join(names[:3])
    return shown if len(names) <= 3 else f"{shown} and {len(names) - 3} more"
