"""`predict` on fields runs (Wide & Deep, an MLP on the multi-hot view): the run's own encoding."""

import csv

import numpy as np
import pytest
import torch

import fieldguide
from fieldguide.cli.main import main
from fieldguide.data import load_data
from fieldguide.data.base import stratified_split
from fieldguide.data.fields import transform_fields
from fieldguide.tasks import make_task
from fieldguide.tasks.ctr import multi_hot
from tests.data.helpers import write_rows
from tests.tasks.test_ctr import click_csv

COLUMNS = {"categorical": ["a", "b"], "dense": ["x", "z"]}
# New rows: known values, an unseen colour and tag (hashed), empty cells, a multi-hot bag.
NEW_ROWS = [
    ["red", "news|sport", 0.5, 1.0],
    ["purple", "travel", "", -0.2],
    ["", "", 1.0, 0.0],
    ["blue", "tech|news|sport", -1.5, 0.3],
    ["green", "sport|golf", 0.1, -1.0],
]


def train_cli(root, model, data, *flags):
    runs = root / f"runs-{model}"
    args = ["--runs-dir", str(runs), "--epochs", "4", "--lr", "0.01", "--quiet"]
    assert main(["train", model, "--data", str(data), *flags, *args]) == 0
    (run,) = [p for p in runs.iterdir() if p.is_dir()]
    return run


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A wide-deep-tiny run with named columns and an mlp-small run on the same clicks CSV."""
    root = tmp_path_factory.mktemp("fields-runs")
    path = click_csv(root / "clicks.csv")
    wide = train_cli(root, "wide-deep-tiny", path, "--categorical", "a,b", "--dense", "x,z")
    mlp = train_cli(root, "mlp-small", path, "--categorical", "a,b")
    return path, wide, mlp


def read_columns(path):
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    return {name: [row[j] for row in rows[1:]] for j, name in enumerate(rows[0])}


def by_hand(run, columns):
    """p(positive) of the run's model on rows encoded with the run's preprocessing."""
    dense, ids, weights = transform_fields(columns, run.preprocessing["data"])
    run.model.eval()
    with torch.no_grad():
        return torch.sigmoid(run.model(dense, ids, weights)[:, 0]).double()


def probabilities(predictions):
    return torch.tensor([row[1] for row in predictions.rows], dtype=torch.float64)


def test_the_cli_predicts_the_model_on_the_runs_own_encoding(runs, tmp_path, capsys):
    _, run_dir, _ = runs
    new = write_rows(tmp_path / "new.csv", ["a", "b", "x", "z"], NEW_ROWS)
    out = tmp_path / "out.csv"
    assert main(["predict", str(run_dir), "--data", str(new), "-o", str(out)]) == 0
    written = read_columns(out)
    assert list(written) == ["row", "prediction", "p(1)"]
    assert written["row"] == ["2", "3", "4", "5", "6"]
    got = torch.tensor([float(p) for p in written["p(1)"]], dtype=torch.float64)
    run = fieldguide.load_run(run_dir)
    expected = by_hand(run, read_columns(new))
    assert torch.allclose(got, expected, atol=1e-6)  # written rounded to 6 decimals
    assert written["prediction"] == ["1" if p > 0.5 else "0" for p in expected.tolist()]
    assert expected.std() > 1e-3  # the rows are told apart: the model is not constant


def test_unseen_categories_hash_into_the_runs_buckets(runs, tmp_path):
    _, run_dir, _ = runs
    new = write_rows(tmp_path / "new.csv", ["a", "b", "x", "z"], NEW_ROWS)
    run = fieldguide.load_run(run_dir)
    prepared = run.prepare(new)
    fields = run.preprocessing["data"]["fields"]
    ids = prepared.inputs["ids"]
    for f, (name, value) in enumerate((("a", "purple"), ("b", "travel"))):
        spec = fields[name]
        assert value not in spec["vocabulary"]
        assert spec["first_bucket"] <= int(ids[1, f, 0]) < spec["cardinality"]
    assert int(ids[0, 1, 1]) == fields["b"]["vocabulary"]["sport"]  # "news|sport" is a bag
    assert prepared.notes["hashed_values"] == {"a": 1, "b": 2}  # travel and golf


def test_unseen_categories_are_reported_in_the_notes(runs, tmp_path):
    _, run_dir, _ = runs
    new = write_rows(tmp_path / "new.csv", ["a", "b", "x", "z"], NEW_ROWS)
    notes = fieldguide.load_run(run_dir).predict(new).notes
    assert any("'a': 1" in n and "'b': 2" in n for n in notes), notes


def test_predict_on_the_training_csv_is_the_model_on_the_training_tensors(runs):
    path, run_dir, _ = runs
    run = fieldguide.load_run(run_dir)
    predictions = run.predict(path)  # the click column is there and ignored
    task = make_task(load_data(str(path), **COLUMNS))
    y = np.array([int(v) for v in read_columns(path)["click"]])
    train_rows = stratified_split(y, 0, 0.15, 0.15, class_names=task.data.classes)[0]
    index = torch.arange(len(train_rows))
    with torch.no_grad():
        expected = torch.sigmoid(task.logits(run.model.eval(), task.batch("train", index)[:-1]))
    got = probabilities(predictions)[train_rows]
    assert torch.allclose(got, expected.double(), atol=1e-6)


def test_a_csv_without_a_field_column_exits_2_naming_it(runs, tmp_path, capsys):
    _, run_dir, _ = runs
    rows = [[r[0], r[2], r[3]] for r in NEW_ROWS]
    bad = write_rows(tmp_path / "bad.csv", ["a", "x", "z"], rows)
    out = tmp_path / "out.csv"
    assert main(["predict", str(run_dir), "--data", str(bad), "-o", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "['b']" in err and "bad.csv" in err
    assert not out.exists()


def test_rows_in_python_predict_as_the_same_rows_in_a_csv(runs, tmp_path):
    _, run_dir, _ = runs
    run = fieldguide.load_run(run_dir)
    new = write_rows(tmp_path / "new.csv", ["a", "b", "x", "z"], NEW_ROWS)
    from_csv = probabilities(run.predict(new))
    columns = {
        "a": [r[0] for r in NEW_ROWS],
        "b": [r[1].split("|") if r[1] else "" for r in NEW_ROWS],  # bags as lists
        "x": [None if r[2] == "" else r[2] for r in NEW_ROWS],  # None: missing
        "z": np.array([r[3] for r in NEW_ROWS]),
    }
    as_columns = run.predict(columns)
    assert as_columns.ids == [0, 1, 2, 3, 4] and as_columns.id_name == "index"
    assert torch.equal(probabilities(as_columns), from_csv)
    records = [dict(zip(["a", "b", "x", "z"], r, strict=True)) for r in NEW_ROWS]
    assert torch.equal(probabilities(run.predict(records)), from_csv)


def test_one_row_as_a_mapping_of_values_predicts_that_row(runs, tmp_path):
    _, run_dir, _ = runs
    run = fieldguide.load_run(run_dir)
    one = run.predict({"a": "red", "b": "news|sport", "x": 0.5, "z": 1.0})
    same = run.predict({"a": ["red"], "b": ["news|sport"], "x": [0.5], "z": [1.0]})
    assert one.rows == same.rows


def test_an_mlp_run_predicts_through_the_multi_hot_view(runs, tmp_path):
    path, _, run_dir = runs
    run = fieldguide.load_run(run_dir)
    data = run.preprocessing["data"]
    assert data["field_names"] == ["a", "b"] and data["dense_names"] == ["x", "z"]  # inferred
    cardinalities = [data["fields"][f]["cardinality"] for f in data["field_names"]]
    assert run.model.config.in_channels == 2 + sum(cardinalities)
    new = write_rows(tmp_path / "new.csv", ["a", "b", "x", "z"], NEW_ROWS)
    predictions = run.predict(new)
    dense, ids, weights = transform_fields(read_columns(new), data)
    with torch.no_grad():
        logits = run.model.eval()(multi_hot(dense, ids, weights, cardinalities))[:, 0]
    assert torch.allclose(probabilities(predictions), torch.sigmoid(logits).double(), atol=1e-6)
    # On the training CSV, the same view the task trained it on.
    task = make_task(load_data(str(path), categorical=["a", "b"]))
    task.build_model("mlp-small")  # the task gives a vector model the multi-hot view
    y = np.array([int(v) for v in read_columns(path)["click"]])
    val_rows = stratified_split(y, 0, 0.15, 0.15, class_names=task.data.classes)[1]
    index = torch.arange(len(val_rows))
    with torch.no_grad():
        expected = torch.sigmoid(task.logits(run.model, task.batch("val", index)[:-1]))
    got = probabilities(run.predict(path))[val_rows]
    assert torch.allclose(got, expected.double(), atol=1e-6)
