import copy
import hashlib
import inspect
import json
import math
import os
import pickle
import random
import re
import shutil
import struct
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import safetensors
import safetensors.torch
import torch
import torch.nn.functional as F
from torch import nn

from fieldguide.train import checkpoint as ckpt
from fieldguide.train.checkpoint import (
    capture_rng_state,
    latest_checkpoint,
    load_checkpoint,
    restore_rng_state,
    save_checkpoint,
)

# ---------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------


def _bits(tensor):
    return tensor.detach().contiguous().reshape(-1).view(torch.uint8)


def assert_same(a, b, path="x"):
    """Exact equality: same types (tuple stays tuple, int keys stay int), bitwise tensors."""
    assert type(a) is type(b), f"{path}: {type(a).__name__} != {type(b).__name__}"
    if isinstance(a, torch.Tensor):
        assert (a.dtype, a.shape) == (b.dtype, b.shape), path
        assert torch.equal(_bits(a), _bits(b)), path
    elif isinstance(a, np.ndarray | np.generic):
        assert (a.dtype, a.shape) == (b.dtype, b.shape), path
        assert a.tobytes() == b.tobytes(), path
    elif isinstance(a, float):
        same_nan = math.isnan(a) and math.isnan(b)
        assert same_nan or struct.pack("<d", a) == struct.pack("<d", b), path
    elif isinstance(a, dict):
        assert [(type(k), k) for k in a] == [(type(k), k) for k in b], path
        for key in a:
            assert_same(a[key], b[key], f"{path}[{key!r}]")
    elif isinstance(a, list | tuple):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_same(x, y, f"{path}[{i}]")
    else:
        assert a == b, path


def _payload(step, salt=0):
    g = torch.Generator().manual_seed(100 * step + salt)
    weights = {"w": torch.randn(4, 3, generator=g), "b": torch.arange(3) * (step + salt)}
    state = {
        "step": step,
        "salt": salt,
        "moments": (torch.randn(2, generator=g).bfloat16(), {0: torch.tensor(float(step))}),
    }
    return weights, state


def _save(directory, step, salt=0, **kwargs):
    weights, state = _payload(step, salt)
    return save_checkpoint(directory, step, weights=weights, state=state, **kwargs)


def _by_key(weights):
    return dict(sorted(weights.items()))  # safetensors files keep their own key order


def _assert_is_payload(loaded, step, salt=0):
    weights, state = _payload(step, salt)
    assert_same(_by_key(loaded[0]), _by_key(weights))
    assert_same(loaded[1], state)


def _names(directory, prefix):
    return sorted(p.name for p in Path(directory).iterdir() if p.name.startswith(prefix))


# ---------------------------------------------------------------------------------------------
# round trips
# ---------------------------------------------------------------------------------------------


def _rich_state():
    g = torch.Generator().manual_seed(0)
    storage = torch.arange(10.0)
    return {
        "step": 7,
        "big": 2**70,
        "neg": -3,
        "lr": 3e-4,
        "tiny": 5e-324,
        "negzero": -0.0,
        "inf": math.inf,
        "ninf": -math.inf,
        "nan": math.nan,
        "name": "run-α/β ']['",
        "flags": [True, False, None],
        "nested": {"list": [1, 2.5, "x", None, [True]], "tuple": (1, (2, 3), [], ())},
        "empties": ({}, [], ()),
        "int_keys": {0: "a", 1: {"deeper": (1,)}, -5: None},
        "mixed_keys": {"a": 1, 2: "b"},
        "looks_like_marker": {"__type__": "tensor", "key": "nope"},
        "tensors": {
            "u8": torch.arange(256, dtype=torch.uint8),
            "i64": torch.tensor([2**62, -1, 0]),
            "bool": torch.tensor([[True, False], [False, True]]),
            "bf16": torch.randn(3, 2, generator=g).bfloat16(),
            "f16_special": torch.tensor([math.nan, -0.0, math.inf], dtype=torch.float16),
            "f64": torch.randn(2, 2, generator=g, dtype=torch.float64),
            "u32": torch.tensor([2**32 - 1, 0], dtype=torch.uint32),
            "scalar": torch.tensor(3.0),
            "empty": torch.empty(0, 3),
            "transposed": torch.arange(12.0).reshape(3, 4).t(),
            "view_a": storage[:5],
            "view_b": storage[3:],
            "grad": torch.full((2,), 2.0, requires_grad=True),
        },
        "in_sequences": [torch.ones(2), (torch.zeros(1, dtype=torch.int8),)],
        "numpy": {
            "u32": np.arange(6, dtype=np.uint32).reshape(2, 3),
            "f64": np.float64(0.1),
            "f32": np.float32(1 / 3),
            "i32": np.int32(-7),
            "bool": np.bool_(True),
            "zero_dim": np.array(2.5, dtype=np.float32),
            "big_endian": np.arange(3, dtype=">i4"),
            "strided": np.arange(12.0).reshape(3, 4)[:, ::2],
        },
    }


def test_rich_state_round_trips_exactly(tmp_path):
    state = _rich_state()
    weights = {"w": torch.randn(3, 3), "tied": torch.zeros(2)}
    weights["tied_alias"] = weights["tied"]  # shared memory, as with tied embeddings
    folder = save_checkpoint(tmp_path, 7, weights=weights, state=state)
    assert folder == tmp_path / "step-00000007"
    assert sorted(p.name for p in folder.iterdir()) == [
        "manifest.json",
        "meta.json",
        "model.safetensors",
        "state.json",
        "state.safetensors",
    ]
    loaded_weights, loaded_state = load_checkpoint(folder)
    assert_same(_by_key(loaded_weights), _by_key({k: v.detach() for k, v in weights.items()}))
    expected = copy.deepcopy(state)
    expected["tensors"]["grad"] = expected["tensors"]["grad"].detach()
    expected["numpy"]["strided"] = np.ascontiguousarray(expected["numpy"]["strided"])
    assert_same(loaded_state, expected)
    # Tensors are stored under their path, so the file explains itself.
    with safetensors.safe_open(folder / "state.safetensors", framework="pt") as f:
        assert "state['tensors']['u8']" in f.keys()
        assert "state['int_keys']" not in f.keys()


def test_loading_never_unpickles(tmp_path, monkeypatch):
    save_checkpoint(tmp_path, 1, weights={"w": torch.ones(2)}, state=_rich_state())

    def forbidden(*args, **kwargs):
        raise AssertionError("pickle-based loading was used")

    for name in ("load", "loads", "Unpickler"):
        monkeypatch.setattr(pickle, name, forbidden)
    monkeypatch.setattr(torch, "load", forbidden)
    weights, state = load_checkpoint(tmp_path)
    assert state["step"] == 7 and torch.equal(weights["w"], torch.ones(2))


@pytest.mark.parametrize(
    "make_optimizer",
    [
        lambda params: torch.optim.AdamW(params, lr=1e-2, betas=(0.8, 0.99), weight_decay=0.1),
        lambda params: torch.optim.SGD(params, lr=0.1, momentum=0.9, nesterov=True),
    ],
    ids=["adamw", "sgd-momentum"],
)
def test_optimizer_resume_is_bitwise_identical(tmp_path, make_optimizer):
    torch.manual_seed(0)
    batches = [(torch.randn(8, 5), torch.randn(8, 2)) for _ in range(6)]

    def build(seed):
        torch.manual_seed(seed)
        model = nn.Sequential(nn.Linear(5, 4), nn.Tanh(), nn.Linear(4, 2))
        return model, make_optimizer(model.parameters())

    def train(model, optimizer, data):
        for x, y in data:
            optimizer.zero_grad()
            F.mse_loss(model(x), y).backward()
            optimizer.step()

    model, optimizer = build(seed=1)
    train(model, optimizer, batches[:3])
    saved = copy.deepcopy(optimizer.state_dict())  # training below mutates the live tensors
    save_checkpoint(tmp_path, 3, weights=model.state_dict(), state={"optimizer": saved})
    train(model, optimizer, batches[3:])  # the uninterrupted run

    resumed, resumed_optimizer = build(seed=2)  # different init: everything must come from disk
    weights, state = load_checkpoint(tmp_path)
    assert_same(state["optimizer"], saved)  # int param ids, tuple betas, 0-dim step tensors
    resumed.load_state_dict(weights)
    resumed_optimizer.load_state_dict(state["optimizer"])
    train(resumed, resumed_optimizer, batches[3:])

    assert_same(dict(resumed.state_dict()), dict(model.state_dict()))
    assert_same(resumed_optimizer.state_dict(), optimizer.state_dict())


def test_rng_state_round_trip_reproduces_draws(tmp_path):
    random.seed(1)
    np.random.seed(2)
    torch.manual_seed(3)
    # Leave a cached Gaussian in Python's and numpy's state, so that part must survive too.
    random.gauss(0.0, 1.0)
    np.random.standard_normal()

    def draw():
        return (
            [random.random(), random.gauss(0.0, 1.0), random.getrandbits(64)],
            np.random.standard_normal(3).tolist() + [int(np.random.randint(1 << 30))],
            torch.rand(4).tolist() + torch.randn(2).tolist(),
        )

    save_checkpoint(tmp_path, 0, weights={}, state={"rng": capture_rng_state()})
    expected = draw()
    random.seed(99)
    np.random.seed(99)
    torch.manual_seed(99)
    assert draw() != expected

    _, state = load_checkpoint(tmp_path)
    assert type(state["rng"]["python"]) is tuple
    assert state["rng"]["numpy"][1].dtype == np.uint32
    restore_rng_state(state["rng"])
    assert draw() == expected


def test_restore_rng_state_rejects_bad_input():
    with pytest.raises(TypeError, match="state"):
        restore_rng_state([1, 2])
    with pytest.raises(ValueError, match="'numpy'"):
        restore_rng_state({"python": random.getstate(), "torch": torch.get_rng_state()})
    good = capture_rng_state()
    with pytest.raises(ValueError, match=r"state\['torch'\]"):
        restore_rng_state({**good, "torch": torch.zeros(3)})


# ---------------------------------------------------------------------------------------------
# crash safety
# ---------------------------------------------------------------------------------------------

_CHILD = """
import os
import sys
from pathlib import Path

import safetensors.torch
import torch

from fieldguide.train import checkpoint as ckpt

torch.set_num_threads(1)
directory = Path(sys.argv[1])

{payload}

weights, state = _payload(1)
ckpt.save_checkpoint(directory, 1, weights=weights, state=state)

{sabotage}

weights, state = _payload(2)
ckpt.save_checkpoint(directory, 2, weights=weights, state=state)
sys.exit(0)  # reached only when the sabotage never fired
"""

_PARTIAL_WRITE = """
real_save_file = safetensors.torch.save_file

def dying_save_file(tensors, filename, metadata=None):
    if Path(filename).name == {victim!r}:
        data = safetensors.torch.save(tensors, metadata=metadata)
        with open(filename, "wb") as file:
            file.write(data[: len(data) // 2])
        os._exit(9)
    real_save_file(tensors, filename, metadata=metadata)

safetensors.torch.save_file = dying_save_file
"""

_DIE_BEFORE_LATEST = """
real_replace = os.replace

def dying_replace(src, dst):
    if Path(dst).name == "LATEST":
        os._exit(9)
    real_replace(src, dst)

os.replace = dying_replace
"""


def _run_killed_writer(directory, sabotage):
    """Save step 1, then die for real (os._exit) inside the save of step 2."""
    root = Path(ckpt.__file__).resolve().parents[2]
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(root), env.get("PYTHONPATH")) if p)
    code = _CHILD.format(payload=inspect.getsource(_payload), sabotage=sabotage)
    result = subprocess.run(
        [sys.executable, "-c", code, str(directory)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 9, result.stderr
    return result


@pytest.mark.parametrize("victim", ["model.safetensors", "state.safetensors"])
def test_writer_killed_mid_write_leaves_previous_checkpoint(tmp_path, victim):
    _run_killed_writer(tmp_path, _PARTIAL_WRITE.format(victim=victim))
    torn = _names(tmp_path, ".tmp-step-00000002-")
    assert len(torn) == 1 and (tmp_path / torn[0] / victim).exists()  # the debris is real
    assert not (tmp_path / "step-00000002").exists()

    assert latest_checkpoint(tmp_path) == tmp_path / "step-00000001"
    _assert_is_payload(load_checkpoint(tmp_path), 1)

    # The next writer succeeds and sweeps the dead writer's debris.
    _save(tmp_path, 2)
    assert _names(tmp_path, ".tmp") == []
    assert latest_checkpoint(tmp_path) == tmp_path / "step-00000002"
    _assert_is_payload(load_checkpoint(tmp_path), 2)


def test_writer_killed_between_rename_and_latest(tmp_path):
    _run_killed_writer(tmp_path, _DIE_BEFORE_LATEST)
    assert (tmp_path / "LATEST").read_text().strip() == "step-00000001"
    assert (tmp_path / "step-00000002").is_dir()
    assert _names(tmp_path, ".tmp-LATEST-")  # the pointer update never landed

    # Either answer is fine, as long as it is complete and exactly one of the saved states.
    latest = latest_checkpoint(tmp_path)
    assert latest in (tmp_path / "step-00000001", tmp_path / "step-00000002")
    _assert_is_payload(load_checkpoint(latest), int(latest.name[-8:]))
    _assert_is_payload(load_checkpoint(tmp_path / "step-00000002"), 2)

    _save(tmp_path, 3)
    assert _names(tmp_path, ".tmp") == []
    assert _names(tmp_path, "step-") == ["step-00000002", "step-00000003"]
    _assert_is_payload(load_checkpoint(tmp_path), 3)


class _Killed(BaseException):
    """Stands in for SIGKILL in-process: nothing after it runs, not even cleanup."""


class _Tripwire:
    """Lets the first `at` wrapped calls through, then "kills" the process at the next one."""

    def __init__(self, at):
        self.at = at
        self.calls = 0

    def wrap(self, real):
        def wrapper(*args, **kwargs):
            if self.calls == self.at:
                raise _Killed
            self.calls += 1
            return real(*args, **kwargs)

        return wrapper


@pytest.mark.parametrize("resave", [False, True], ids=["new-step", "same-step-again"])
def test_kill_at_every_durability_point(tmp_path, monkeypatch, capsys, resave):
    # Die just before each fsync/rename/replace of a save, in turn, until the save completes.
    killed_at = 0
    while True:
        directory = tmp_path / str(killed_at)
        _save(directory, 1)
        _save(directory, 2)
        step, salt = (2, 1) if resave else (3, 0)
        tripwire = _Tripwire(killed_at)
        with monkeypatch.context() as m:
            m.setattr(ckpt, "_discard", lambda path: None)  # a killed process cleans up nothing
            for name in ("fsync", "rename", "replace"):
                m.setattr(os, name, tripwire.wrap(getattr(os, name)))
            try:
                _save(directory, step, salt)
                completed = True
            except _Killed:
                completed = False

        with warnings.catch_warnings():
            warnings.simplefilter("error")
            latest = latest_checkpoint(directory)
        assert capsys.readouterr().err == ""  # a torn step-* folder would be reported here
        loaded = load_checkpoint(latest)
        # Whatever is latest must be exactly one of the states ever saved under that name.
        saved_under = {1: [0], 2: [0], step: [salt]} if step != 2 else {1: [0], 2: [0, salt]}
        found = (loaded[1]["step"], loaded[1]["salt"])
        assert latest.name == f"step-{found[0]:08d}" and found[1] in saved_under[found[0]]
        _assert_is_payload(loaded, *found)
        if completed:
            _assert_is_payload(load_checkpoint(directory), step, salt)
            break

        _save(directory, 4)  # recovery: a fresh save works and clears the debris
        assert _names(directory, ".tmp") == []
        _assert_is_payload(load_checkpoint(directory), 4)
        killed_at += 1
    assert killed_at >= 8  # the sweep really passed through the whole commit sequence


@pytest.mark.skipif(os.name == "nt", reason="liveness of other pids is not probed on Windows")
def test_only_debris_of_dead_writers_is_swept(tmp_path):
    finished = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    dead_pid = int(finished.stdout)
    live_pid = os.getppid()  # whoever launched the tests is still running
    (tmp_path / f".tmp-step-00000008-{dead_pid}").mkdir(parents=True)
    (tmp_path / f".tmp-step-00000009-{live_pid}").mkdir()
    (tmp_path / f".tmp-step-00000007-{os.getpid()}").mkdir()  # ours: an earlier failed save
    _save(tmp_path, 1)
    assert _names(tmp_path, ".tmp") == [f".tmp-step-00000009-{live_pid}"]


# ---------------------------------------------------------------------------------------------
# directory management
# ---------------------------------------------------------------------------------------------


def test_keep_retains_newest_steps(tmp_path):
    for step in range(1, 6):
        _save(tmp_path, step, keep=2)
    assert _names(tmp_path, "step-") == ["step-00000004", "step-00000005"]
    _save(tmp_path, 6, keep=1)
    assert _names(tmp_path, "step-") == ["step-00000006"]
    _save(tmp_path, 10, keep=3)
    # An older step written later is never the one deleted, since LATEST names it.
    _save(tmp_path, 8, keep=2)
    assert _names(tmp_path, "step-") == ["step-00000008", "step-00000010"]
    assert latest_checkpoint(tmp_path) == tmp_path / "step-00000008"
    assert _names(tmp_path, ".tmp") == []


def test_saving_same_step_twice_replaces_it(tmp_path):
    _save(tmp_path, 5, salt=0)
    _save(tmp_path, 5, salt=1)
    assert _names(tmp_path, "step-") == ["step-00000005"]
    assert _names(tmp_path, ".tmp") == []
    _assert_is_payload(load_checkpoint(tmp_path), 5, salt=1)


def test_latest_falls_back_when_pointer_is_stale_or_corrupt(tmp_path):
    assert latest_checkpoint(tmp_path / "nothing-here") is None
    _save(tmp_path, 1)
    _save(tmp_path, 2)
    shutil.rmtree(tmp_path / "step-00000002")  # LATEST now names a missing folder
    assert latest_checkpoint(tmp_path) == tmp_path / "step-00000001"
    _assert_is_payload(load_checkpoint(tmp_path), 1)

    _save(tmp_path, 3)
    (tmp_path / "LATEST").write_text("../../elsewhere/step-00000009")
    assert latest_checkpoint(tmp_path) == tmp_path / "step-00000003"
    (tmp_path / "LATEST").unlink()
    assert latest_checkpoint(tmp_path) == tmp_path / "step-00000003"
    (tmp_path / ".tmp-step-00000099-1").mkdir()  # debris is never a candidate
    assert latest_checkpoint(tmp_path) == tmp_path / "step-00000003"


def _garble(path):
    path.write_bytes(b"\xff" * path.stat().st_size)  # same size: only parsing can tell


def _truncate(path):
    path.write_bytes(path.read_bytes()[:-5])


@pytest.mark.parametrize(
    ("victim", "damage"),
    [
        ("state.json", _garble),
        ("state.json", _truncate),
        ("state.safetensors", _garble),
        ("model.safetensors", _truncate),
        ("model.safetensors", Path.unlink),
        ("meta.json", Path.unlink),
    ],
)
def test_corrupt_file_is_named_and_skipped(tmp_path, capsys, victim, damage):
    _save(tmp_path, 1)
    folder = _save(tmp_path, 2)
    damage(folder / victim)
    with pytest.raises(ValueError, match=re.escape(str(folder / victim))):
        load_checkpoint(folder)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert latest_checkpoint(tmp_path) == tmp_path / "step-00000001"
    err = capsys.readouterr().err
    assert (
        err.count("\n") == 1 and "step-00000002" in err and err.endswith("using step-00000001.\n")
    )
    assert victim in err


def _reseal(folder):
    """Rewrite meta.json sizes and manifest.json hashes to match the files as they are now."""
    meta = json.loads((folder / "meta.json").read_text())
    meta["files"] = {name: (folder / name).stat().st_size for name in meta["files"]}
    (folder / "meta.json").write_text(json.dumps(meta))
    names = ("meta.json", "model.safetensors", "state.safetensors", "state.json")
    manifest = {name: hashlib.sha256((folder / name).read_bytes()).hexdigest() for name in names}
    (folder / "manifest.json").write_text(json.dumps(manifest))


def test_marker_pointing_at_missing_tensor_is_reported(tmp_path):
    folder = save_checkpoint(tmp_path, 1, weights={}, state={"m": torch.ones(1)})
    (folder / "state.json").write_text('{"m": {"__type__": "tensor", "key": "gone"}}')
    _reseal(folder)  # consistent hashes: only decoding can tell
    with pytest.raises(ValueError, match=r"state\.json does not match state\.safetensors"):
        load_checkpoint(folder)


# ---------------------------------------------------------------------------------------------
# content hashes
# ---------------------------------------------------------------------------------------------


def _flip(path, offset=-1):
    """Change one byte in place: same size, still a well-formed file, different content."""
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x55
    path.write_bytes(bytes(data))


def test_manifest_is_written_last_and_hashes_every_file(tmp_path, monkeypatch):
    written = []
    for name in ("_write_bytes", "_write_safetensors"):
        real = getattr(ckpt, name)

        def logged(path, *args, real=real):
            written.append(Path(path).name)
            return real(path, *args)

        monkeypatch.setattr(ckpt, name, logged)
    folder = _save(tmp_path, 1)
    assert written[:5] == [
        "model.safetensors",
        "state.safetensors",
        "state.json",
        "meta.json",
        "manifest.json",  # last in the folder, then only the LATEST pointer
    ]
    assert written[5].startswith(".tmp-LATEST-") and len(written) == 6
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest == {
        name: hashlib.sha256((folder / name).read_bytes()).hexdigest()
        for name in ("meta.json", "model.safetensors", "state.safetensors", "state.json")
    }


def test_same_size_damage_to_latest_weights_falls_back_with_one_plain_line(tmp_path, capsys):
    _save(tmp_path, 1)
    folder = _save(tmp_path, 2)
    _flip(folder / "model.safetensors")
    # Still a valid safetensors file of the recorded size: only the hash can tell.
    assert set(safetensors.torch.load_file(folder / "model.safetensors")) == {"w", "b"}

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a warnings.warn would fail here
        assert latest_checkpoint(tmp_path) == tmp_path / "step-00000001"
        _assert_is_payload(load_checkpoint(tmp_path), 1)
    err = capsys.readouterr().err
    assert err == (
        f"checkpoint step-00000002 in {tmp_path} is damaged "
        "(sha256 mismatch in model.safetensors); using step-00000001.\n"
    )  # printed once, though two calls skipped it
    with pytest.raises(ValueError, match=re.escape(f"{folder / 'model.safetensors'} is damaged")):
        load_checkpoint(folder)


@pytest.mark.parametrize(
    ("victim", "edit"),
    [
        ("model.safetensors", None),
        ("state.safetensors", None),
        ("state.json", ('"salt": 0', '"salt": 5')),  # still valid JSON that decodes
        ("meta.json", ('"step": 2', '"step": 3')),
    ],
)
def test_any_changed_file_is_caught_by_its_hash(tmp_path, capsys, victim, edit):
    _save(tmp_path, 1)
    folder = _save(tmp_path, 2)
    path = folder / victim
    if edit is None:
        _flip(path)
    else:
        text = path.read_text()
        assert edit[0] in text
        path.write_text(text.replace(edit[0], edit[1]))
    with pytest.raises(ValueError, match=re.escape(f"{path} is damaged: its sha256 does not")):
        load_checkpoint(folder)
    assert latest_checkpoint(tmp_path) == tmp_path / "step-00000001"
    assert f"(sha256 mismatch in {victim}); using step-00000001." in capsys.readouterr().err


def test_every_checkpoint_damaged_is_an_error_listing_them(tmp_path, capsys):
    first = _save(tmp_path, 1)
    second = _save(tmp_path, 2)
    _flip(first / "model.safetensors")
    _truncate(second / "state.json")
    expected = (
        f"every checkpoint in {tmp_path} is damaged: "
        "step-00000002 is damaged (sha256 mismatch in state.json), "
        "step-00000001 is damaged (sha256 mismatch in model.safetensors); "
    )
    with pytest.raises(ValueError, match=re.escape(expected)):
        latest_checkpoint(tmp_path)
    with pytest.raises(ValueError, match="every checkpoint .* is damaged"):
        load_checkpoint(tmp_path)
    assert capsys.readouterr().err == ""  # the error says it all; no extra line


def test_only_unfinished_folders_still_mean_no_checkpoint(tmp_path, capsys):
    folder = _save(tmp_path, 1)
    (folder / "meta.json").unlink()  # as if the save had never finished
    assert latest_checkpoint(tmp_path) is None
    assert "step-00000001" in capsys.readouterr().err
    with pytest.raises(ValueError, match="no committed checkpoint"):
        load_checkpoint(tmp_path)


def test_version_1_folders_without_a_manifest_still_load(tmp_path):
    folder = _save(tmp_path, 3)
    (folder / "manifest.json").unlink()
    meta = json.loads((folder / "meta.json").read_text())
    (folder / "meta.json").write_text(json.dumps({**meta, "version": 1}))
    assert latest_checkpoint(tmp_path) == folder
    _assert_is_payload(load_checkpoint(tmp_path), 3)


def test_a_version_2_folder_without_its_manifest_is_damaged(tmp_path, capsys):
    _save(tmp_path, 1)
    folder = _save(tmp_path, 2)
    (folder / "manifest.json").unlink()
    with pytest.raises(ValueError, match=re.escape(f"{folder / 'manifest.json'} is missing")):
        load_checkpoint(folder)
    assert latest_checkpoint(tmp_path) == tmp_path / "step-00000001"
    assert "(manifest.json is missing)" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------
# bad arguments
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"step": -1}, ValueError, "step >= 0"),
        ({"step": 1.0}, TypeError, "step to be an int"),
        ({"step": True}, TypeError, "step to be an int"),
        ({"keep": 0}, ValueError, "keep >= 1"),
        ({"weights": [torch.ones(1)]}, TypeError, "weights to be a dict"),
        ({"weights": {"w": [1.0]}}, TypeError, re.escape("weights['w'] is a list")),
        ({"weights": {"w": torch.ones(1, dtype=torch.complex128)}}, TypeError, "complex128"),
        ({"state": [1]}, TypeError, "state to be a dict"),
        (
            {"state": {"optimizer": {"param_groups": [{"foo": {1, 2}}]}}},
            TypeError,
            re.escape("state['optimizer']['param_groups'][0]['foo'] has unsupported type set"),
        ),
        ({"state": {"a": {1.5: 0}}}, TypeError, re.escape("state['a'] has a key 1.5")),
        ({"state": {"s": torch.ones(2).to_sparse()}}, TypeError, re.escape("state['s'] is")),
        ({"state": {"o": np.array([None])}}, TypeError, re.escape("state['o']")),
        ({"state": {"c": np.ones(2, np.complex128)}}, TypeError, "complex128"),
    ],
)
def test_save_rejects_bad_arguments_before_writing(tmp_path, kwargs, error, match):
    arguments = {"step": 1, "weights": {"w": torch.ones(1)}, "state": {}, **kwargs}
    directory = tmp_path / "run"
    with pytest.raises(error, match=match):
        save_checkpoint(directory, arguments.pop("step"), **arguments)
    assert not directory.exists()


def test_load_and_latest_reject_bad_paths(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        load_checkpoint(tmp_path / "missing")
    with pytest.raises(ValueError, match="no committed checkpoint"):
        load_checkpoint(tmp_path)
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="is a file"):
        latest_checkpoint(tmp_path / "file")
    with pytest.raises(ValueError, match="is a file"):
        load_checkpoint(tmp_path / "file")
    with pytest.raises(ValueError, match="is a file"):
        save_checkpoint(tmp_path / "file", 1, weights={}, state={})
