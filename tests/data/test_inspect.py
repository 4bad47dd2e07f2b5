"""`fieldguide data inspect`: what a path holds, decided as training decides, without torch."""

import subprocess
import sys

import numpy as np
import pytest
from PIL import Image
from sklearn.datasets import load_diabetes, load_iris

from fieldguide.data import load_data
from fieldguide.data.inspect import inspect_data
from fieldguide.data.text import make_date_pairs
from fieldguide.tasks import make_task
from tests.data.helpers import write_rows


@pytest.fixture
def tables(tmp_path):
    d = load_diabetes()
    rows = [[*x, y] for x, y in zip(d.data.tolist(), d.target.tolist(), strict=True)]
    diabetes = write_rows(tmp_path / "diabetes.csv", [*d.feature_names, "target"], rows)
    iris = load_iris()
    rows = [
        [*x, iris.target_names[y]] for x, y in zip(iris.data.tolist(), iris.target, strict=True)
    ]
    rows[3][0] = ""  # one missing cell
    flowers = write_rows(tmp_path / "iris.csv", ["a", "b", "c", "d", "label"], rows)
    days = [f"2024-01-{d:02d}" for d in range(1, 31)]
    series = write_rows(
        tmp_path / "daily.csv", ["date", "v"], [[d, i % 7 + i * 0.1] for i, d in enumerate(days)]
    )
    # synthetic date-rewriting pairs, as the dates starter makes them
    pairs = write_rows(tmp_path / "pairs.csv", ["source", "target"], make_date_pairs(120))
    return diabetes, flowers, series, pairs


def test_inspect_says_what_training_does(tables):
    for path in tables:
        found = inspect_data(str(path))
        task = make_task(load_data(str(path)))  # the reader and the task registry agree
        assert found.task == task.name, path
    diabetes, flowers, series, pairs = (inspect_data(str(p)) for p in tables)
    assert pairs.kind == "CSV of text pairs" and pairs.model[0] == "t5-tiny"
    facts = dict(diabetes.facts)
    assert diabetes.kind == "CSV table" and facts["size"] == "442 rows, 11 columns"
    assert "from 25 to 346: the target holds 214 distinct integers" in facts["target"]
    assert dict(flowers.facts)["missing"] == "a 1"
    assert "setosa 50, versicolor 50, virginica 50 (3 classes)" in dict(flowers.facts)["target"]
    assert series.kind == "CSV time series" and "date (time)" in dict(series.facts)["columns"]
    assert diabetes.model[0] == "gbdt" and series.model[0] == "tcn"  # trees first: 442 rows


def test_folders_and_files(tmp_path):
    for name, level in (("dark", 30), ("light", 220)):
        (tmp_path / "img" / name).mkdir(parents=True)
        for i in range(3):
            Image.fromarray(np.full((12, 10), level, np.uint8)).save(
                tmp_path / "img" / name / f"{i}.png"
            )
    found = inspect_data(str(tmp_path / "img"))
    assert found.kind == "image folder" and found.task == "classification"
    assert "dark 3, light 3 (2 classes)" in dict(found.facts)["classes"]
    assert "10x12, 1 channel(s)" in dict(found.facts)["images"] and found.model[0] == "resnet-tiny"
    (tmp_path / "book.txt").write_text("In the beginning " * 40)
    assert inspect_data(str(tmp_path / "book.txt")).task == "language-modelling"
    np.savez(tmp_path / "seq.npz", x=np.zeros((4, 5, 2)), y=np.arange(4))
    assert "x (4, 5, 2)" in dict(inspect_data(str(tmp_path / "seq.npz")).facts)["arrays"]
    with pytest.raises(ValueError, match="data path .* does not exist"):
        inspect_data(str(tmp_path / "missing.csv"))
    with pytest.raises(ValueError, match="did you mean 'digits'"):
        inspect_data("digitz")


def test_the_cli_prints_it_without_importing_torch(tables):
    code = (
        "import sys; from fieldguide.cli.main import main; "
        f"rc = main(['data', 'inspect', {str(tables[0])!r}]); "
        "print('torch' in sys.modules, rc)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert lines[-1] == "False 0" and any(
        line.startswith("task") and "regression" in line for line in lines
    )


def test_a_mask_folder_reads_as_segmentation_without_importing_torch(tmp_path):
    root = tmp_path / "seg"
    for sub in ("images", "masks"):
        (root / sub).mkdir(parents=True)
    for i in range(3):
        Image.fromarray(np.zeros((20, 30), np.uint8)).save(root / "images" / f"{i}.png")
        Image.fromarray(np.zeros((20, 30), np.uint8)).save(root / "masks" / f"{i}.png")
    Image.fromarray(np.zeros((20, 30), np.uint8)).save(root / "images" / "extra.png")
    (root / "classes.txt").write_text("sky\nroad\n")
    code = (
        "import sys; from fieldguide.data.inspect import inspect_data; "
        f"found = inspect_data({str(root)!r}); "
        "print('torch' in sys.modules); print(found.kind, found.task, found.model[0]); "
        "print(dict(found.facts))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    imported, summary, facts = done.stdout.strip().splitlines()
    assert imported == "False" and summary == "mask folder segmentation unet-small"
    assert "3 image and mask pairs" in facts and "1 file(s) without a partner" in facts
    assert "2 from classes.txt: sky, road" in facts and "30x20, 1 channel(s)" in facts
