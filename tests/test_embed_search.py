"""`fieldguide embed`, `search` and `predict` on a metric-learning run, through the real CLI:
exit codes, the files written, and answers checked against the run's own model and index."""

import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors import safe_open
from sklearn.datasets import load_digits

from fieldguide.api.predict import load_run
from fieldguide.cli.main import main
from fieldguide.data.base import stratified_split

CLASSES, PER_CLASS, HELD_OUT = 6, 40, 2  # 40 a class: val and test keep >= 11 examples
TRAIN_CLASSES = [f"d{c}" for c in range(CLASSES - HELD_OUT)]
TINY = ["--set", "feature_dim=16", "--set", "embed_dim=8"]


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """An image folder of sklearn's 8x8 digits 0-5 as PNGs, one sub-folder per digit."""
    root = tmp_path_factory.mktemp("digits-png") / "img"
    d = load_digits()
    for c in range(CLASSES):
        (root / f"d{c}").mkdir(parents=True)
        for i, image in enumerate(d.images[d.target == c][:PER_CLASS]):
            pixels = (image * 15).astype(np.uint8)  # 0..16 -> 0..240
            Image.fromarray(pixels).save(root / f"d{c}" / f"{i:02d}.png")
    return root


FILES = [f"d{c}/{i:02d}.png" for c in range(CLASSES) for i in range(PER_CLASS)]  # sorted
LABELS = np.repeat(np.arange(CLASSES), PER_CLASS)
# The reader's split: data.train row j is file TRAIN_FILES[j].
TRAIN_FILES = [FILES[i] for i in stratified_split(LABELS, 0, 0.15, 0.15)[0]]


@pytest.fixture(scope="module")
def metric_run(folder, tmp_path_factory):
    runs = tmp_path_factory.mktemp("runs")
    args = ["train", "siamese-mlp", "--data", str(folder), "--runs-dir", str(runs), "--quiet"]
    args += ["--max-steps", "30", "--batch-size", "16", "--held-out-classes", str(HELD_OUT)]
    assert main([*args, *TINY]) == 0
    (run,) = runs.iterdir()
    return run


def read_index(run):
    with safe_open(str(run / "index.safetensors"), framework="pt") as f:
        meta = f.metadata()
        return f.get_tensor("embeddings"), f.get_tensor("labels"), json.loads(meta["sources"])


def model_embeddings(run, data):
    """The run's model on its own preparation of `data`: the ids and (N, E) embeddings."""
    loaded = load_run(run)
    prepared = loaded.prepare(data)
    loaded.model.eval()
    with torch.no_grad():
        return prepared.ids, loaded.model(prepared.inputs["x"].flatten(1))


def csv_rows(text):
    return list(csv.reader(io.StringIO(text)))


# ---------------------------------------------------------------------------------------------
# embed
# ---------------------------------------------------------------------------------------------


def test_embed_writes_the_run_models_unit_norm_embeddings_with_the_file_ids(
    metric_run, folder, tmp_path, capsys
):
    out = tmp_path / "e.safetensors"
    assert main(["embed", str(metric_run), "--data", str(folder), "-o", str(out)]) == 0
    # Retrieval reads the backbone's features: width feature_dim (16), not embed_dim (8).
    assert f"{len(FILES)} embedding(s) of width 16 written to {out}" in capsys.readouterr().err
    with safe_open(str(out), framework="pt") as f:
        meta, z = f.metadata(), f.get_tensor("embeddings")
    assert z.dtype == torch.float32 and z.shape == (len(FILES), 16)
    assert torch.allclose(z.norm(dim=1), torch.ones(len(z)), atol=1e-5)
    assert json.loads(meta["ids"]) == FILES and meta["id_name"] == "file"
    ids, expected = model_embeddings(metric_run, folder)
    assert ids == FILES and torch.allclose(z, expected, atol=1e-6)
    # A training file embeds as it did when the run indexed it: no train/embed skew.
    index, labels, sources = read_index(metric_run)
    assert set(labels.tolist()) == set(range(CLASSES - HELD_OUT))  # held-out classes left out
    for row, source in enumerate(sources):
        file = source  # an image folder's rows name their files
        assert file in TRAIN_FILES
        assert torch.allclose(z[FILES.index(file)], index[row], atol=1e-5), file
        assert file.startswith(f"d{int(labels[row])}/")


def test_embed_refuses_a_classification_run_and_other_suffixes_writing_nothing(
    metric_run, folder, tmp_path, capsys
):
    runs = tmp_path / "runs"
    args = ["train", "mlp-small", "--runs-dir", str(runs), "--quiet"]
    assert main([*args, "--max-steps", "1", "--epochs", "1"]) == 0  # on the digits starter
    (mlp_run,) = runs.iterdir()
    capsys.readouterr()
    out = tmp_path / "e.safetensors"
    assert main(["embed", str(mlp_run), "--data", str(folder), "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert "is a classification run, so use `fieldguide predict`" in err
    assert err.count("\n") == 1 and not out.exists()
    for bad in ("e.npy", "e"):
        code = main(["embed", str(metric_run), "--data", str(folder), "-o", str(tmp_path / bad)])
        assert code == 2
        assert "embed -o expects a .safetensors file" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["runs"]  # no file, no temporary


# ---------------------------------------------------------------------------------------------
# search
# ---------------------------------------------------------------------------------------------


def first_training_file(label):
    j = next(j for j, f in enumerate(TRAIN_FILES) if f.startswith(f"d{label}/"))
    return j, TRAIN_FILES[j]


def test_search_for_a_training_image_finds_that_image_first(metric_run, folder, capsys):
    j, file = first_training_file(1)
    code = main(["search", str(metric_run), "--query", str(folder / file), "--k", "3"])
    assert code == 0
    rows = csv_rows(capsys.readouterr().out)
    assert rows[0] == ["file", "rank", "similarity", "class", "source"]
    assert len(rows) == 4 and all(r[0] == Path(file).name for r in rows[1:])
    assert [r[1] for r in rows[1:]] == ["1", "2", "3"]
    similarity = [float(r[2]) for r in rows[1:]]
    assert similarity == sorted(similarity, reverse=True) and similarity[0] > 0.9999
    assert rows[1][3:] == ["d1", file]  # the index names an image folder's files
    # Every similarity is the cosine between the query and that indexed row.
    index, _, sources = read_index(metric_run)
    _, query = model_embeddings(metric_run, folder / file)
    for r in rows[1:]:
        expected = float(query[0] @ index[sources.index(r[4])])
        assert float(r[2]) == pytest.approx(expected, abs=1e-5)


def test_search_names_an_image_folders_files_as_sources(metric_run, folder, capsys):
    _, file = first_training_file(2)
    assert main(["search", str(metric_run), "--query", str(folder / file), "--k", "1"]) == 0
    (row,) = csv_rows(capsys.readouterr().out)[1:]
    assert Path(row[4]).as_posix().endswith(file)


@pytest.mark.parametrize("k", ["0", "-3"])
def test_search_refuses_a_k_below_one(metric_run, folder, capsys, k):
    query = str(folder / FILES[0])
    assert main(["search", str(metric_run), "--query", query, "--k", k]) == 2
    out = capsys.readouterr()
    assert out.out == "" and f"--k must be a positive integer; got {k}." in out.err


# ---------------------------------------------------------------------------------------------
# predict
# ---------------------------------------------------------------------------------------------


def test_predict_gives_each_input_its_nearest_training_examples_class(metric_run, folder, capsys):
    assert main(["predict", str(metric_run), "--data", str(folder)]) == 0
    rows = csv_rows(capsys.readouterr().out)
    assert rows[0] == ["file", "rank", "similarity", "class", "source"]
    rows = rows[1:]
    assert [r[0] for r in rows] == FILES and {r[1] for r in rows} == {"1"}
    # The nearest indexed row by cosine, computed here from the model and the index.
    index, labels, _ = read_index(metric_run)
    _, z = model_embeddings(metric_run, folder)
    scores = z @ index.T  # (N, G), unit rows: cosine similarity
    top = scores.topk(2, dim=1)
    clear = (top.values[:, 0] - top.values[:, 1]) > 1e-4  # no near-tie to break
    assert int(clear.sum()) > 0.8 * len(FILES)
    for i, row in enumerate(rows):
        assert row[3] in TRAIN_CLASSES  # only training classes are indexed
        assert float(row[2]) == pytest.approx(float(top.values[i, 0]), abs=1e-5)
        if clear[i]:
            assert row[3] == f"d{int(labels[top.indices[i, 0]])}", row
    # A training image is its own nearest example, so it gets its own class.
    for file in TRAIN_FILES:
        if file.split("/")[0] in TRAIN_CLASSES:
            row = rows[FILES.index(file)]
            assert row[3] == file.split("/")[0] and float(row[2]) > 0.9999, row
