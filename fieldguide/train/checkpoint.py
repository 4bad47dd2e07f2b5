"""Atomic, pickle-free checkpoints for exact resume.

A checkpoint directory holds one folder per saved step and a pointer to the newest one::

    directory/
        LATEST                  "step-00000200", the name of the newest committed folder
        step-00000100/
        step-00000200/
            model.safetensors   the weights, as given
            state.safetensors   every tensor and numpy array found in `state`, keyed by its path
            state.json          the rest of `state`, with typed markers for what JSON lacks
            meta.json           format version, step, and the byte size of each file above
            manifest.json       the sha256 of each file above, {"model.safetensors": "9f86...", ...}

Nothing is ever read back through pickle: tensors go through safetensors and everything else
through JSON, so opening a checkpoint from an untrusted source cannot run code.

A save is crash-safe. Files are written into a hidden sibling folder
(`.tmp-step-XXXXXXXX-<pid>`), flushed and fsynced, and the folder is renamed into place in one
step; only then does `LATEST` move, itself by an atomic replace. A writer killed at any point
therefore leaves either the previous checkpoint or the new one as the latest, never a torn one,
and its leftover `.tmp-*` debris is swept by the next save. One process writes to a directory
at a time; readers may run concurrently.

A load never trusts bytes it has not checked. manifest.json is written last, once the other
files are on disk, and every file is hashed again on load, so a checkpoint damaged later (a
flipped bit, a file overwritten in place at the same size) is refused, naming the file, and
`latest_checkpoint` falls back to the newest intact one, saying so in one line on stderr.
Folders written by format version 1, which had no manifest, still load, checked by size only.
"""

from __future__ import annotations

import errno
import hashlib
import json
import math
import os
import random
import re
import shutil
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import safetensors
import safetensors.torch
import torch
from torch import Tensor

__all__ = [
    "capture_rng_state",
    "latest_checkpoint",
    "load_checkpoint",
    "restore_rng_state",
    "save_checkpoint",
]

FORMAT_NAME = "fieldguide-checkpoint"
FORMAT_VERSION = 2  # 2 added manifest.json; version 1 folders are still read
_READABLE_VERSIONS = (1, 2)
WEIGHTS_FILE = "model.safetensors"
STATE_TENSORS_FILE = "state.safetensors"
STATE_FILE = "state.json"
META_FILE = "meta.json"
MANIFEST_FILE = "manifest.json"
LATEST_FILE = "LATEST"
_DATA_FILES = (WEIGHTS_FILE, STATE_TENSORS_FILE, STATE_FILE)
# meta.json follows the data files and lists their sizes; manifest.json, written last, holds
# the sha256 of all four. A folder without meta.json was never finished.
_HASHED_FILES = (META_FILE, *_DATA_FILES)
_HASH_CHUNK = 1 << 20

_STEP_RE = re.compile(r"step-(\d{8,})")  # `{step:08d}` grows past 8 digits after step 99,999,999
_TMP_PREFIX = ".tmp-"
_TMP_RE = re.compile(r"\.tmp-.*-(\d+)")  # every temporary name ends in the writer's pid
_MARK = "__type__"  # key that flags a JSON object as a typed marker rather than a plain dict

# dtypes that safetensors can store; others (complex128, quantized, sub-byte) are refused early,
# naming the offending entry, instead of failing halfway through a write.
_SAVABLE_DTYPES = frozenset(
    dtype
    for name in (
        "bool", "uint8", "int8", "int16", "int32", "int64", "uint16", "uint32", "uint64",
        "float16", "bfloat16", "float32", "float64", "complex64",
        "float8_e4m3fn", "float8_e4m3fnuz", "float8_e5m2", "float8_e5m2fnuz",
    )
    if isinstance(dtype := getattr(torch, name, None), torch.dtype)
)  # fmt: skip


# ---------------------------------------------------------------------------------------------
# Public API
# ---------------------------------------------------------------------------------------------


def save_checkpoint(
    directory: str | Path,
    step: int,
    *,
    weights: dict[str, Tensor],
    state: dict[str, Any],
    keep: int = 2,
) -> Path:
    """Atomically commit `directory/step-{step:08d}/` holding the weights and trainer state.

    After the new folder is committed and `LATEST` names it, step folders beyond the `keep`
    highest-numbered ones are deleted (never the one just written), along with `.tmp-*` debris
    left by writers that are no longer running. Saving a step that already exists replaces it.

    Args:
        directory: Folder holding the run's checkpoints; created if missing.
        step: Non-negative training step, used in the folder name.
        weights: Model parameters and buffers, e.g. `model.state_dict()`. Tensors that share
            memory (tied weights) are stored as separate copies.
        state: Everything else needed to resume: any nesting of dict (str or int keys), list,
            tuple, int, float, str, bool, None, torch.Tensor, numpy array and numpy scalar,
            such as `optimizer.state_dict()` and `capture_rng_state()`. Dict subclasses come
            back as dict and tensors come back on the CPU.
        keep: How many step folders to keep, at least 1.

    Returns:
        The committed checkpoint folder.

    Raises:
        TypeError: If an argument, or any value inside `state`, has an unsupported type.
        ValueError: If `step` is negative or `keep` is below 1.
    """
    _check_int("step", step, minimum=0)
    _check_int("keep", keep, minimum=1)
    # Encode everything before touching the disk, so bad input never leaves debris behind.
    weight_tensors = _weights_for_saving(weights)
    if not isinstance(state, dict):
        raise TypeError(
            f"save_checkpoint expected state to be a dict, but got {type(state).__name__}; "
            "wrap it, e.g. state={'optimizer': optimizer.state_dict()}."
        )
    state_tensors: dict[str, Tensor] = {}
    tree = _encode(state, "state", state_tensors, set())
    state_json = json.dumps(tree, allow_nan=False, ensure_ascii=False).encode("utf-8")

    directory = Path(directory)
    _make_directory(directory)
    name = _step_name(step)
    final = directory / name
    pid = os.getpid()
    tmp = directory / f"{_TMP_PREFIX}{name}-{pid}"
    if tmp.exists():  # our own earlier attempt, or a dead writer whose pid we now carry
        _discard(tmp)
    tmp.mkdir()
    try:
        # 1. Data files, each fsynced, then meta.json recording their sizes, then
        # manifest.json with the sha256 of each file as it now reads back from disk.
        _write_safetensors(tmp / WEIGHTS_FILE, weight_tensors, {"format": "pt"})
        _write_safetensors(tmp / STATE_TENSORS_FILE, state_tensors, None)
        _write_bytes(tmp / STATE_FILE, state_json)
        meta = {
            "format": FORMAT_NAME,
            "version": FORMAT_VERSION,
            "step": step,
            "files": {f: (tmp / f).stat().st_size for f in _DATA_FILES},
        }
        _write_bytes(tmp / META_FILE, (json.dumps(meta, indent=2) + "\n").encode("utf-8"))
        manifest = {name: _sha256_of(tmp / name) for name in _HASHED_FILES}
        _write_bytes(tmp / MANIFEST_FILE, (json.dumps(manifest, indent=2) + "\n").encode("utf-8"))
        fsync_directory(tmp)
        # 2. Rename into place. rename() cannot replace a non-empty folder, so an existing
        # copy of this step is moved aside first; a crash between the two renames leaves
        # this step missing, and readers fall back to the previous step (none with keep=1).
        if final.exists():
            aside = directory / f"{_TMP_PREFIX}replaced-{name}-{pid}"
            if aside.exists():
                _discard(aside)
            os.rename(final, aside)
            try:
                os.rename(tmp, final)
            except BaseException:
                os.rename(aside, final)
                raise
        else:
            os.rename(tmp, final)
    except BaseException:
        _discard(tmp)
        raise
    # The rename must be durable before LATEST may name the folder.
    fsync_directory(directory)
    # 3. Point LATEST at it, then 4. drop old folders and debris.
    _write_latest(directory, name)
    _prune(directory, keep, committed=name)
    return final


def latest_checkpoint(directory: str | Path) -> Path | None:
    """Return the newest intact checkpoint folder in `directory`, or None.

    `LATEST` is trusted when it names an intact folder: complete, and every file matching the
    sha256 in its manifest. Otherwise (missing, corrupt, or naming a folder that is gone or
    damaged) the highest-numbered intact `step-*` folder is returned, and the newer folders
    skipped on the way are named in one plain line on stderr, e.g. "checkpoint step-00000120
    in runs/x/checkpoint is damaged (sha256 mismatch in model.safetensors); using
    step-00000100." The same line is printed once per process. Temporary folders are never
    returned.

    Args:
        directory: Folder that `save_checkpoint` writes into. A missing folder has no
            checkpoints.

    Returns:
        Path of the checkpoint folder, or None when there is no complete checkpoint.

    Raises:
        ValueError: If `directory` exists but is not a folder, or if it holds step folders
            that were committed but are all damaged (the message lists each and why).
    """
    directory = Path(directory)
    if not directory.exists():
        return None
    if not directory.is_dir():
        raise ValueError(
            f"latest_checkpoint expected directory to be a folder of checkpoints, but "
            f"{directory} is a file; pass the folder given to save_checkpoint."
        )
    named = _read_latest(directory)
    problems: dict[str, _Problem | None] = {}
    if named is not None:
        problems[named] = _problem_with(directory / named)
        if problems[named] is None:
            return directory / named
    skipped: list[tuple[str, _Problem]] = []
    for _, folder in sorted(_step_folders(directory), reverse=True):
        if folder.name not in problems:
            problems[folder.name] = _problem_with(folder)
        problem = problems[folder.name]
        if problem is None:
            _report_skipped(directory, skipped, folder.name)
            return folder
        skipped.append((folder.name, problem))
    if any(problem.kind == "damaged" for _, problem in skipped):
        kinds = " or ".join(sorted({problem.kind for _, problem in skipped}))
        raise ValueError(
            f"every checkpoint in {directory} is {kinds}: {_listing(skipped)}; restore them "
            "from a backup, or start the run again in a new folder."
        )
    _report_skipped(directory, skipped, None)
    return None


def load_checkpoint(path: str | Path) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """Load `(weights, state)` from a checkpoint folder, validating every file.

    Args:
        path: A checkpoint folder (`step-XXXXXXXX`), or a directory given to
            `save_checkpoint`, in which case its latest committed checkpoint is loaded.

    Returns:
        The weights dict (in the file's key order, which `load_state_dict` ignores) and the
        state, with the types it was saved with; all tensors are on the CPU.

    Raises:
        ValueError: If the path does not exist, holds no committed checkpoint, or a file of
            the checkpoint is missing or corrupt (the message names the file).
    """
    path = Path(path)
    if not path.is_dir():
        raise ValueError(
            f"load_checkpoint expected path to be a checkpoint folder or a directory of them, "
            f"but {path} {'is a file' if path.exists() else 'does not exist'}; "
            "pass the folder given to save_checkpoint or one of its step-* folders."
        )
    if not ((path / META_FILE).exists() or _STEP_RE.fullmatch(path.name)):
        latest = latest_checkpoint(path)
        if latest is None:
            raise ValueError(
                f"load_checkpoint found no committed checkpoint in {path}; "
                "check the path, or start from scratch."
            )
        path = latest
    # Read each file once and parse exactly the bytes whose hashes were checked.
    contents = _read_folder(path)
    _validate_folder(path, contents)
    weights = _load_safetensors(path / WEIGHTS_FILE, contents[WEIGHTS_FILE])
    state_tensors = _load_safetensors(path / STATE_TENSORS_FILE, contents[STATE_TENSORS_FILE])
    tree = _parse_json(path / STATE_FILE, contents[STATE_FILE])
    try:
        state = _decode(tree, state_tensors)
    except (KeyError, TypeError, ValueError) as err:
        raise ValueError(
            f"checkpoint file {path / STATE_FILE} does not match {STATE_TENSORS_FILE} or "
            f"holds a malformed entry ({err}); the checkpoint is corrupt, load an older one."
        ) from err
    return weights, state


def capture_rng_state() -> dict[str, Any]:
    """Snapshot every global random number generator a training run draws from.

    Covers Python's `random`, numpy's global RNG, torch's CPU generator and, when CUDA has
    already been initialised, every CUDA device's generator (capturing never initialises
    CUDA itself). The result can be stored in a checkpoint's `state` as is.

    Returns:
        A dict with keys "python", "numpy", "torch" and possibly "cuda".
    """
    rng: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        rng["cuda"] = torch.cuda.get_rng_state_all()
    return rng


def restore_rng_state(state: dict[str, Any]) -> None:
    """Restore the generators captured by `capture_rng_state`, so the next draws repeat.

    CUDA states are restored device by device; if the saved device count differs from the
    visible one, or CUDA is unavailable, the mismatch is reported with a warning, since the
    run cannot then continue bitwise identically.

    Args:
        state: The dict returned by `capture_rng_state`, possibly after a checkpoint round
            trip.

    Raises:
        TypeError: If `state` is not a dict.
        ValueError: If a generator's entry is missing or malformed.
    """
    if not isinstance(state, dict):
        raise TypeError(
            f"restore_rng_state expected state to be the dict from capture_rng_state, "
            f"but got {type(state).__name__}."
        )
    missing = [key for key in ("python", "numpy", "torch") if key not in state]
    if missing:
        raise ValueError(
            f"restore_rng_state expected state to have keys 'python', 'numpy' and 'torch', "
            f"but {missing} are missing; pass the dict from capture_rng_state."
        )
    restorers = (
        ("python", random.setstate),
        ("numpy", np.random.set_state),
        ("torch", torch.set_rng_state),
    )
    for key, restore in restorers:
        try:
            restore(state[key])
        except (TypeError, ValueError, RuntimeError) as err:
            raise ValueError(
                f"restore_rng_state could not restore state[{key!r}] ({err}); "
                "pass the dict from capture_rng_state unchanged."
            ) from err
    if "cuda" in state:
        _restore_cuda_rng(state["cuda"])


# ---------------------------------------------------------------------------------------------
# Encoding state: JSON for structure, safetensors for tensors
# ---------------------------------------------------------------------------------------------
#   dict, str keys only   -> JSON object (unless a key is "__type__")
#   other dict            -> {"__type__": "dict", "items": [[key, value], ...]}, keeping int keys
#   tuple                 -> {"__type__": "tuple", "items": [...]}
#   nan / inf / -inf      -> {"__type__": "float", "value": "nan"}; JSON has no literal for them
#   torch.Tensor          -> {"__type__": "tensor", "key": path}
#   numpy array / scalar  -> {"__type__": "ndarray" | "numpy_scalar", "key": path, "dtype": "<u4"}
# The path, e.g. "state['optimizer']['state'][0]['exp_avg']", names the tensor in
# state.safetensors; repr() keeps it unambiguous whatever characters the keys contain.


def _encode(value: Any, path: str, tensors: dict[str, Tensor], storages: set[int]) -> Any:
    """Turn `value` into JSON-able data, moving tensors and arrays into `tensors`."""
    # Arrays before scalars: np.float64 subclasses float and would come back as a plain float.
    if isinstance(value, Tensor):
        tensors[path] = _tensor_for_saving(value, path, storages)
        return {_MARK: "tensor", "key": path}
    if isinstance(value, np.ndarray | np.generic):
        tensors[path] = _numpy_for_saving(value, path)
        kind = "ndarray" if isinstance(value, np.ndarray) else "numpy_scalar"
        return {_MARK: kind, "key": path, "dtype": value.dtype.str}
    # Exact types: an IntEnum or namedtuple would come back as a plain int or tuple.
    if value is None or type(value) in (bool, int, str):
        return value
    if type(value) is float:
        return value if math.isfinite(value) else {_MARK: "float", "value": repr(value)}
    if type(value) is list:
        return [_encode(v, f"{path}[{i}]", tensors, storages) for i, v in enumerate(value)]
    if type(value) is tuple:
        items = [_encode(v, f"{path}[{i}]", tensors, storages) for i, v in enumerate(value)]
        return {_MARK: "tuple", "items": items}
    if isinstance(value, dict):
        for key in value:
            if type(key) not in (str, int):
                raise TypeError(
                    f"{path} has a key {key!r} of unsupported type {type(key).__name__}; "
                    "checkpoint dict keys must be str or int."
                )
        pairs = [(k, _encode(v, f"{path}[{k!r}]", tensors, storages)) for k, v in value.items()]
        if all(type(k) is str for k in value) and _MARK not in value:
            return dict(pairs)
        return {_MARK: "dict", "items": [list(pair) for pair in pairs]}
    raise TypeError(
        f"{path} has unsupported type {type(value).__name__}; checkpoint state may hold only "
        "dict, list, tuple, int, float, str, bool, None, torch.Tensor and numpy arrays or "
        "scalars, so convert it (e.g. a set to a sorted list)."
    )


def _decode(node: Any, tensors: dict[str, Tensor]) -> Any:
    """Invert `_encode`; raises KeyError/TypeError/ValueError on a malformed tree."""
    if isinstance(node, list):
        return [_decode(v, tensors) for v in node]
    if not isinstance(node, dict):
        return node  # None, bool, int, float, str
    if _MARK not in node:
        return {k: _decode(v, tensors) for k, v in node.items()}
    kind = node[_MARK]
    if kind == "tuple":
        return tuple(_decode(v, tensors) for v in node["items"])
    if kind == "dict":
        return {_check_key(k): _decode(v, tensors) for k, v in node["items"]}
    if kind == "float":
        return float(node["value"])
    if kind == "tensor":
        return tensors[node["key"]]
    if kind in ("ndarray", "numpy_scalar"):
        # Copy out of torch's memory, restoring the byte order if it was not native.
        array = np.array(tensors[node["key"]].numpy(), dtype=np.dtype(node["dtype"]))
        return array if kind == "ndarray" else array[()]
    raise ValueError(f"unknown marker {kind!r}")


def _check_key(key: Any) -> str | int:
    if type(key) not in (str, int):
        raise TypeError(f"dict key {key!r} is neither str nor int")
    return key


def _tensor_for_saving(tensor: Tensor, path: str, storages: set[int]) -> Tensor:
    """Return a CPU, contiguous tensor safetensors accepts, or raise naming `path`."""
    if tensor.layout != torch.strided or tensor.is_meta:
        where = "a meta tensor" if tensor.is_meta else f"layout {tensor.layout}"
        raise TypeError(
            f"{path} is {where}, which a checkpoint cannot store; convert it to a dense "
            "tensor with data first (e.g. .to_dense())."
        )
    if tensor.dtype not in _SAVABLE_DTYPES:
        raise TypeError(
            f"{path} has dtype {tensor.dtype}, which safetensors cannot store; cast it to a "
            "supported dtype (e.g. complex128 to complex64) before saving."
        )
    tensor = tensor.detach().cpu().resolve_conj().resolve_neg().contiguous()
    # safetensors refuses tensors sharing memory (tied weights), so later aliases are copied.
    pointer = tensor.untyped_storage().data_ptr()
    if pointer in storages:
        tensor = tensor.clone()
    elif pointer:
        storages.add(pointer)
    return tensor


def _numpy_for_saving(value: np.ndarray | np.generic, path: str) -> Tensor:
    """Store an array as a native-byte-order tensor; `dtype` in the marker restores it."""
    dtype = value.dtype
    if dtype.kind not in "biufc":
        raise TypeError(
            f"{path} is a numpy value of dtype {dtype}, which a checkpoint cannot store; "
            "only bool, integer, float and complex64 arrays are supported."
        )
    array = np.array(value, dtype=dtype.newbyteorder("="), order="C", copy=True)
    try:
        tensor = torch.from_numpy(array)
    except TypeError as err:  # float128 and other dtypes torch lacks
        raise TypeError(
            f"{path} is a numpy value of dtype {dtype}, which torch cannot hold; "
            "cast it to a standard dtype before saving."
        ) from err
    if tensor.dtype not in _SAVABLE_DTYPES:
        raise TypeError(
            f"{path} is a numpy value of dtype {dtype}, which safetensors cannot store; "
            "cast it (e.g. complex128 to complex64) before saving."
        )
    return tensor


def _weights_for_saving(weights: Any) -> dict[str, Tensor]:
    if not isinstance(weights, dict):
        raise TypeError(
            f"save_checkpoint expected weights to be a dict of str to torch.Tensor, but got "
            f"{type(weights).__name__}; pass model.state_dict()."
        )
    storages: set[int] = set()
    prepared = {}
    for key, tensor in weights.items():
        if type(key) is not str or not isinstance(tensor, Tensor):
            raise TypeError(
                f"save_checkpoint expected weights to be a dict of str to torch.Tensor, but "
                f"weights[{key!r}] is a {type(tensor).__name__} under a "
                f"{type(key).__name__} key; pass model.state_dict()."
            )
        prepared[key] = _tensor_for_saving(tensor, f"weights[{key!r}]", storages)
    return prepared


# ---------------------------------------------------------------------------------------------
# Durable writes
# ---------------------------------------------------------------------------------------------


def _write_bytes(path: Path, data: bytes) -> None:
    with open(path, "wb") as file:
        file.write(data)
        file.flush()
        os.fsync(file.fileno())


def _write_safetensors(path: Path, tensors: dict[str, Tensor], metadata: dict | None) -> None:
    safetensors.torch.save_file(tensors, path, metadata=metadata)
    # save_file does not fsync; "r+b" because Windows refuses fsync on read-only handles.
    with open(path, "r+b") as file:
        os.fsync(file.fileno())


def fsync_directory(path: Path) -> None:
    """Make renames and new entries in `path` durable (POSIX only; Windows has no such call)."""
    if os.name == "nt":
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError as err:  # some network filesystems refuse fsync on folders
        if err.errno not in (errno.EINVAL, errno.ENOTSUP):
            raise
    finally:
        os.close(fd)


def _make_directory(directory: Path) -> None:
    if directory.exists() and not directory.is_dir():
        raise ValueError(
            f"save_checkpoint expected directory to be a folder, but {directory} is a file; "
            "pass a folder path."
        )
    if not directory.exists():
        directory.mkdir(parents=True, exist_ok=True)
        fsync_directory(directory.parent)  # so the new folder itself survives a crash


def _write_latest(directory: Path, name: str) -> None:
    """Atomically point LATEST at `name`: write a temp file, fsync, replace, fsync folder."""
    tmp = directory / f"{_TMP_PREFIX}{LATEST_FILE}-{os.getpid()}"
    _write_bytes(tmp, (name + "\n").encode("ascii"))
    os.replace(tmp, directory / LATEST_FILE)
    fsync_directory(directory)


def _prune(directory: Path, keep: int, committed: str) -> None:
    """Delete step folders beyond `keep` and debris from writers that are gone."""
    pid = os.getpid()
    others = sorted(item for item in _step_folders(directory) if item[1].name != committed)
    doomed = others[: max(0, len(others) - (keep - 1))]
    try:
        for _, folder in doomed:
            # Rename first so a crash mid-delete leaves hidden debris, not a torn step folder.
            trash = directory / f"{_TMP_PREFIX}delete-{folder.name}-{pid}"
            os.rename(folder, trash)
            _discard(trash)
        for entry in directory.iterdir():
            match = _TMP_RE.fullmatch(entry.name)
            if match and _writer_is_gone(int(match.group(1))):
                _discard(entry)
    except OSError as err:
        # The checkpoint is already committed; failing the save now would mislead the caller.
        warnings.warn(f"Could not clean up old checkpoints in {directory}: {err}", stacklevel=3)


def _discard(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def _writer_is_gone(pid: int) -> bool:
    """Whether the process that owned a `.tmp-*-<pid>` entry has stopped."""
    # Our own pid: we are the only writer and hold nothing in flight here, so the entry is
    # from an earlier failed save, or from a dead writer whose pid a restarted container reused.
    if pid == os.getpid():
        return True
    if pid <= 0 or os.name == "nt":  # os.kill(pid, 0) would terminate the process on Windows
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:  # PermissionError: alive, owned by someone else
        return False
    return False


# ---------------------------------------------------------------------------------------------
# Reading and validating
# ---------------------------------------------------------------------------------------------


def _step_name(step: int) -> str:
    return f"step-{step:08d}"


def _step_folders(directory: Path) -> list[tuple[int, Path]]:
    folders = []
    for entry in os.scandir(directory):
        match = _STEP_RE.fullmatch(entry.name)
        if match and entry.is_dir():
            folders.append((int(match.group(1)), Path(entry.path)))
    return folders


def _read_latest(directory: Path) -> str | None:
    try:
        name = (directory / LATEST_FILE).read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        return None
    # Only a bare step name: LATEST must never lead outside the directory.
    return name if _STEP_RE.fullmatch(name) else None


class _Problem(ValueError):
    """Why a folder is not a usable checkpoint.

    Its message is the full sentence `load_checkpoint` raises; `reason` is the short form that
    `latest_checkpoint` prints when it skips the folder, and `kind` is "incomplete" (never
    finished: no meta.json), "unreadable" (a format this fieldguide does not read) or
    "damaged" (committed, but its files no longer match what was written).
    """

    def __init__(self, message: str, reason: str, kind: str = "damaged") -> None:
        super().__init__(message)
        self.reason = reason
        self.kind = kind


def _problem_with(folder: Path) -> _Problem | None:
    """Why `folder` is not an intact checkpoint, or None when it is."""
    try:
        _validate_folder(folder)
        _parse_json(folder / STATE_FILE, None)
    except _Problem as problem:
        return problem
    return None


def _listing(skipped: list[tuple[str, _Problem]]) -> str:
    return ", ".join(f"{name} is {problem.kind} ({problem.reason})" for name, problem in skipped)


_reported: set[str] = set()  # lines already printed by _report_skipped in this process


def _report_skipped(directory: Path, skipped: list[tuple[str, _Problem]], used: str | None) -> None:
    """Print one plain line on stderr naming the checkpoints skipped, and the one used."""
    if not skipped:
        return
    outcome = f"using {used}" if used else "no complete checkpoint is left"
    if len(skipped) == 1:
        name, problem = skipped[0]
        line = f"checkpoint {name} in {directory} is {problem.kind} ({problem.reason}); {outcome}."
    else:
        line = f"checkpoints in {directory}: {_listing(skipped)}; {outcome}."
    if line not in _reported:
        _reported.add(line)
        print(line, file=sys.stderr, flush=True)


def _read_folder(folder: Path) -> dict[str, bytes]:
    """The bytes of every checkpoint file in `folder`; files that do not exist are left out."""
    contents = {}
    for name in (*_HASHED_FILES, MANIFEST_FILE):
        try:
            contents[name] = (folder / name).read_bytes()
        except FileNotFoundError:
            continue
        except OSError as err:
            raise _Problem(
                f"checkpoint file {folder / name} could not be read ({err}).",
                f"{name} could not be read",
                "unreadable",
            ) from err
    return contents


def _sha256_of(path: Path, data: bytes | None = None) -> str:
    """Hex sha256 of `data`, or of the file at `path` read in chunks when `data` is None."""
    if data is not None:
        return hashlib.sha256(data).hexdigest()
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as file:
            while chunk := file.read(_HASH_CHUNK):
                digest.update(chunk)
    except OSError as err:
        raise _Problem(
            f"checkpoint file {path} could not be read ({err}).",
            f"{path.name} could not be read",
            "unreadable",
        ) from err
    return digest.hexdigest()


def _validate_folder(folder: Path, contents: dict[str, bytes] | None = None) -> dict[str, Any]:
    """Check hashes, meta.json, sizes and safetensors headers; raise _Problem naming the file.

    Args:
        folder: The checkpoint folder.
        contents: Its files as `_read_folder` returned them. When given, these bytes are
            checked instead of the files on disk, so the caller parses what was verified.

    Returns:
        The parsed meta.json.
    """

    def exists(name: str) -> bool:
        return name in contents if contents is not None else (folder / name).is_file()

    def data(name: str) -> bytes | None:  # None: read it from disk
        return contents[name] if contents is not None else None

    def missing(name: str, kind: str = "damaged") -> _Problem:
        return _Problem(
            f"checkpoint file {folder / name} is missing; the checkpoint is incomplete.",
            f"{name} is missing",
            kind,
        )

    if not exists(META_FILE):  # meta.json comes after the data: the save never finished
        raise missing(META_FILE, "incomplete")
    manifest = None
    if exists(MANIFEST_FILE):
        manifest = _parse_json(folder / MANIFEST_FILE, data(MANIFEST_FILE))
        if not (
            isinstance(manifest, dict)
            and all(isinstance(manifest.get(name), str) for name in _HASHED_FILES)
        ):
            raise _Problem(
                f"checkpoint file {folder / MANIFEST_FILE} does not list the sha256 of "
                f"{', '.join(_HASHED_FILES)}; it is corrupt, so load an older checkpoint.",
                f"{MANIFEST_FILE} is malformed",
            )
        # meta.json first: a flipped digit in a size it records would otherwise be blamed on
        # the data file.
        for name in _HASHED_FILES:
            if not exists(name):
                raise missing(name)
            if _sha256_of(folder / name, data(name)) != manifest[name]:
                raise _Problem(
                    f"checkpoint file {folder / name} is damaged: its sha256 does not match "
                    f"the one {MANIFEST_FILE} records, so load an older checkpoint.",
                    f"sha256 mismatch in {name}",
                )
    meta = _parse_json(folder / META_FILE, data(META_FILE))
    if not (
        isinstance(meta, dict)
        and meta.get("format") == FORMAT_NAME
        and type(meta.get("step")) is int
        and isinstance(meta.get("files"), dict)
    ):
        raise _Problem(
            f"checkpoint file {folder / META_FILE} is not a {FORMAT_NAME} meta file; "
            "the folder is not a checkpoint or is corrupt.",
            f"{META_FILE} is not a checkpoint meta file",
        )
    version = meta.get("version")
    if version not in _READABLE_VERSIONS:
        raise _Problem(
            f"checkpoint file {folder / META_FILE} has format version {version!r}, "
            f"but this fieldguide reads versions {_READABLE_VERSIONS}; upgrade fieldguide.",
            f"format version {version!r}",
            "unreadable",
        )
    if manifest is None and version >= 2:
        raise missing(MANIFEST_FILE)
    for name in _DATA_FILES:
        if not exists(name):
            raise missing(name)
        path = folder / name
        size = len(contents[name]) if contents is not None else path.stat().st_size
        expected = meta["files"].get(name)
        if size != expected:
            raise _Problem(
                f"checkpoint file {path} is {size} bytes but {META_FILE} records {expected}; "
                "it is truncated or was modified, so load an older checkpoint.",
                f"{name} is {size} bytes, not {expected}",
            )
    if contents is None:  # with contents, the caller's full parse checks the headers
        for name in (WEIGHTS_FILE, STATE_TENSORS_FILE):
            try:  # reads only the header, which safetensors checks against the file length
                with safetensors.safe_open(folder / name, framework="pt"):
                    pass
            except Exception as err:  # SafetensorError and friends: the message is what matters
                raise _Problem(
                    f"checkpoint file {folder / name} is not a valid safetensors file ({err}); "
                    "load an older checkpoint.",
                    f"{name} is not a valid safetensors file",
                ) from err
    return meta


def _parse_json(path: Path, data: bytes | None) -> Any:
    """Parse the JSON file at `path`, or `data` when given; raise _Problem naming the file."""
    try:
        text = (path.read_bytes() if data is None else data).decode("utf-8")
    except FileNotFoundError as err:
        raise _Problem(
            f"checkpoint file {path} is missing; the checkpoint is incomplete.",
            f"{path.name} is missing",
        ) from err
    except (OSError, UnicodeDecodeError) as err:
        raise _Problem(
            f"checkpoint file {path} could not be read ({err}).", f"{path.name} is unreadable"
        ) from err
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise _Problem(
            f"checkpoint file {path} is not valid JSON ({err}); it is corrupt, so load an "
            "older checkpoint.",
            f"{path.name} is not valid JSON",
        ) from err


def _load_safetensors(path: Path, data: bytes) -> dict[str, Tensor]:
    try:
        # safetensors.torch.load parses safetensors bytes (a JSON header and raw tensor data);
        # it never unpickles. The bytes are the ones just hashed, so no second read can differ.
        return safetensors.torch.load(data)
    except Exception as err:  # SafetensorError and friends: report the file either way
        raise _Problem(
            f"checkpoint file {path} is not a valid safetensors file ({err}); it is corrupt, "
            "so load an older checkpoint.",
            f"{path.name} is not a valid safetensors file",
        ) from err


# ---------------------------------------------------------------------------------------------
# Small helpers
# ---------------------------------------------------------------------------------------------


def _check_int(name: str, value: Any, *, minimum: int) -> None:
    if type(value) is not int:
        raise TypeError(
            f"save_checkpoint expected {name} to be an int, but got {type(value).__name__} "
            f"{value!r}; pass e.g. {name}={minimum + 1}."
        )
    if value < minimum:
        raise ValueError(f"save_checkpoint expected {name} >= {minimum}, but got {value}.")


def _restore_cuda_rng(states: Any) -> None:
    if not isinstance(states, list | tuple):
        raise ValueError(
            f"restore_rng_state expected state['cuda'] to be a list of tensors, but got "
            f"{type(states).__name__}; pass the dict from capture_rng_state."
        )
    if not torch.cuda.is_available():
        warnings.warn(
            "restore_rng_state got CUDA generator states but CUDA is not available; "
            "they are ignored, so GPU draws will differ from the original run.",
            stacklevel=3,
        )
        return
    count = torch.cuda.device_count()
    if len(states) != count:
        warnings.warn(
            f"restore_rng_state got {len(states)} CUDA generator states for {count} visible "
            "devices; restoring the first ones only.",
            stacklevel=3,
        )
    for index, device_state in enumerate(states[:count]):
        torch.cuda.set_rng_state(device_state, index)
