import json
import os
import re
import struct
import subprocess
import sys
from pathlib import Path

import pytest
import safetensors
import safetensors.torch
import torch
from torch import nn

from fieldguide.api.config import DataConfig, RunConfig
from fieldguide.cli.main import main
from fieldguide.train import weights as weights_module
from fieldguide.train.weights import load_weights, save_weights

ROOT = Path(weights_module.__file__).resolve().parents[2]


class Tied(nn.Module):
    """A tiny language-model shape: the head shares the embedding's weight, plus a buffer."""

    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(7, 4)
        self.mix = nn.Linear(4, 4)
        self.head = nn.Linear(4, 7, bias=False)
        self.head.weight = self.embed.weight
        self.register_buffer("scale", torch.tensor([0.5, 2.0]))


def _bits(tensor):
    return tensor.detach().contiguous().reshape(-1).view(torch.uint8)


def _assert_same_state(a, b):
    a, b = a.state_dict(), b.state_dict()
    assert a.keys() == b.keys()
    for key in a:
        assert a[key].dtype == b[key].dtype and a[key].shape == b[key].shape, key
        assert torch.equal(_bits(a[key]), _bits(b[key])), key


def _header(path):
    raw = path.read_bytes()
    (length,) = struct.unpack("<Q", raw[:8])
    return json.loads(raw[8 : 8 + length]), 8 + length


def _flip(path, offset):
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


def _damaged(path):
    return re.escape(
        f"{path} is damaged: its sha256 does not match the hash written with it; "
        "retrain or restore the file."
    )


@pytest.fixture
def saved(tmp_path):
    torch.manual_seed(1)
    model = Tied()
    path = save_weights(model, tmp_path / "model.safetensors", {"model": "tied", "note": "α"})
    return model, path


# ---------------------------------------------------------------------------------------------
# round trips
# ---------------------------------------------------------------------------------------------


def test_round_trip_gives_identical_tensors_and_keeps_ties(saved):
    model, path = saved
    assert [p.name for p in path.parent.iterdir()] == ["model.safetensors"]  # no temp debris
    fresh = Tied()
    assert not torch.equal(fresh.mix.weight, model.mix.weight)
    tensors = load_weights(path, fresh)
    _assert_same_state(fresh, model)
    assert fresh.head.weight is fresh.embed.weight  # still one parameter
    # The tied weight is stored once, the buffer too, and the returned dict is the file.
    assert len(tensors) == 4 and "scale" in tensors
    assert tensors.keys() == safetensors.torch.load_file(path).keys()
    assert torch.equal(load_weights(path)["scale"], torch.tensor([0.5, 2.0]))


def test_metadata_is_kept_and_the_hash_is_written_with_it(saved):
    model, path = saved
    with safetensors.safe_open(path, framework="pt") as file:
        metadata = file.metadata()
    assert metadata["model"] == "tied" and metadata["note"] == "α"
    assert re.fullmatch(r"[0-9a-f]{64}", metadata["sha256"])
    # The data stays 8-byte aligned, as safetensors writes it.
    assert _header(path)[1] % 8 == 0
    # The hash depends on the content: other weights, another hash.
    with torch.no_grad():
        model.mix.bias.add_(1.0)
    other = save_weights(model, path.with_name("other.safetensors"), {"model": "tied", "note": "α"})
    with safetensors.safe_open(other, framework="pt") as file:
        assert file.metadata()["sha256"] != metadata["sha256"]


def test_saving_again_replaces_the_file_atomically(saved, monkeypatch):
    model, path = saved
    before = path.read_bytes()

    def dying_save_model(model, filename, metadata=None):
        Path(filename).write_bytes(b"half a file")
        raise KeyboardInterrupt

    monkeypatch.setattr(safetensors.torch, "save_model", dying_save_model)
    with pytest.raises(KeyboardInterrupt):
        save_weights(model, path, {"model": "tied"})
    assert path.read_bytes() == before  # the old file, untouched
    assert [p.name for p in path.parent.iterdir()] == ["model.safetensors"]


def test_files_without_a_hash_still_load(tmp_path):
    torch.manual_seed(2)
    model = Tied()
    plain = tmp_path / "plain.safetensors"  # as tests and older runs wrote: every name
    safetensors.torch.save_file({k: v.clone() for k, v in model.state_dict().items()}, plain)
    older = tmp_path / "older.safetensors"  # as fieldguide's runs wrote before the hash
    safetensors.torch.save_model(model, str(older), metadata={"format": "fieldguide-1"})
    for path in (plain, older):
        fresh = Tied()
        load_weights(path, fresh)
        _assert_same_state(fresh, model)


# ---------------------------------------------------------------------------------------------
# damage
# ---------------------------------------------------------------------------------------------


def _offset_of(path, needle):
    raw = path.read_bytes()
    assert raw.count(needle) == 1, needle
    return raw.index(needle)


@pytest.mark.parametrize(
    "where",
    ["last data byte", "first data byte", "tensor name", "shape", "metadata value", "hash key"],
)
def test_same_size_flip_anywhere_is_damage(saved, where):
    _, path = saved
    size = path.stat().st_size
    header_end = _header(path)[1]
    offset = {
        "last data byte": size - 1,
        "first data byte": header_end,
        "tensor name": _offset_of(path, b'"mix.weight"') + 1,  # -> "lix.weight"
        "shape": _offset_of(path, b'"shape":[2]') + 9,  # scale: [2] -> [3]
        "metadata value": _offset_of(path, b'"tied"') + 1,
        "hash key": _offset_of(path, b'"sha256"') + 6,  # "sha256" -> "sha257"
    }[where]
    _flip(path, offset)
    assert path.stat().st_size == size
    with pytest.raises(ValueError, match=_damaged(path)):
        load_weights(path)
    with pytest.raises(ValueError, match=_damaged(path)):
        load_weights(path, Tied())


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        (lambda raw: raw[:-5], "but the file holds"),
        (lambda raw: raw[:5], "too short for a header"),
        (lambda raw: b"", "too short for a header"),
        (lambda raw: b"\xff" * len(raw), "not a readable safetensors file"),
        (lambda raw: raw[:8] + b"[" + raw[9:], "the header is not JSON"),
    ],
    ids=["truncated", "stub", "empty", "garbled", "broken-header"],
)
def test_unreadable_files_are_one_sentence(saved, damage, reason):
    _, path = saved
    path.write_bytes(damage(path.read_bytes()))
    with pytest.raises(ValueError, match=re.escape(f"{path} is damaged: ")) as info:
        load_weights(path)
    message = str(info.value)
    assert reason in message and message.endswith("; retrain or restore the file.")
    assert "\n" not in message


def test_missing_file_and_misfit_model_are_one_sentence(saved, tmp_path):
    _, path = saved
    with pytest.raises(ValueError, match=re.escape(f"{tmp_path / 'nope'} does not exist; ")):
        load_weights(tmp_path / "nope")
    wrong = nn.Sequential(nn.Linear(4, 3))
    with pytest.raises(ValueError, match=r"does not fit the Sequential built from its config: "):
        load_weights(path, wrong)
    bigger = Tied()
    bigger.mix = nn.Linear(4, 5)
    with pytest.raises(ValueError, match=re.escape("mix.weight is (4, 4) in the file but (5, 4)")):
        load_weights(path, bigger)


def test_save_rejects_bad_metadata_before_writing(tmp_path):
    with pytest.raises(ValueError, match="without the key 'sha256'"):
        save_weights(Tied(), tmp_path / "m.safetensors", {"sha256": "x"})
    with pytest.raises(TypeError, match=r"metadata\['epochs'\] is int"):
        save_weights(Tied(), tmp_path / "m.safetensors", {"epochs": 3})
    with pytest.raises(TypeError, match="nn.Module"):
        save_weights({"w": torch.ones(1)}, tmp_path / "m.safetensors")
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------------------------------------
# the commands that load a run's weights
# ---------------------------------------------------------------------------------------------


def _lm_run(path):
    """A finished language-model run folder, as `fieldguide train` writes it."""
    from fieldguide import create_model

    path.mkdir()
    run = RunConfig(model="gpt-tiny", model_config={}, data=DataConfig(name="kjv"))
    (path / "config.toml").write_text(run.to_toml())
    torch.manual_seed(0)
    save_weights(create_model("gpt-tiny"), path / "model.safetensors", {"model": "gpt-tiny"})
    return path


def test_generate_refuses_a_damaged_run_with_one_line_and_exit_code_2(tmp_path, capsys):
    from fieldguide.api.generate import load_run_model

    run = _lm_run(tmp_path / "run")
    from fieldguide import create_model

    assert main(["generate", str(run), "--prompt", "ab", "--max-new-tokens", "2"]) == 0
    capsys.readouterr()
    torch.manual_seed(0)
    expected = create_model("gpt-tiny")
    torch.manual_seed(1)  # the loaded weights must come from the file, not the seed
    _assert_same_state(load_run_model(run), expected)

    weights = run / "model.safetensors"
    _flip(weights, weights.stat().st_size // 2)
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }
    result = subprocess.run(
        [sys.executable, "-m", "fieldguide.cli.main", "generate", str(run), "--prompt", "ab"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr == (
        f"error: {weights} is damaged: its sha256 does not match the hash written with it; "
        "retrain or restore the file.\n"
    )


def test_a_trained_run_writes_a_hashed_model_file(tmp_path, capsys):
    runs = tmp_path / "runs"
    args = ["train", "mlp-small", "--runs-dir", str(runs), "--epochs", "1", "--quiet"]
    assert main(args) == 0
    (run,) = runs.iterdir()
    weights = run / "model.safetensors"
    with safetensors.safe_open(weights, framework="pt") as file:
        metadata = file.metadata()
    assert metadata["model"] == "mlp-small" and re.fullmatch(r"[0-9a-f]{64}", metadata["sha256"])
    assert load_weights(weights).keys() == safetensors.torch.load_file(weights).keys()
    _flip(weights, weights.stat().st_size - 1)
    # generate loads the weights before it asks whether the model writes text.
    capsys.readouterr()
    assert main(["generate", str(run), "--prompt", "ab"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{weights} is damaged: its sha256 does not match" in err
