"""`fieldguide predict` / `load_run(...).predict`: new rows, the run's own preprocessing."""

import subprocess
import sys

import numpy as np
import pytest
import torch
from sklearn.datasets import load_diabetes, load_iris

import fieldguide
from fieldguide.api import train
from fieldguide.data import load_data
from fieldguide.data.base import stratified_split
from tests.data.helpers import write_rows


@pytest.fixture(scope="module")
def diabetes_run(tmp_path_factory):
    """A regression run on scikit-learn's bundled diabetes table (a few epochs)."""
    root = tmp_path_factory.mktemp("diabetes")
    d = load_diabetes()
    rows = [[*x, y] for x, y in zip(d.data.tolist(), d.target.tolist(), strict=True)]
    path = write_rows(root / "diabetes.csv", [*d.feature_names, "target"], rows)
    result = train("mlp-small", str(path), runs_dir=root / "runs", progress="quiet", epochs=3)
    return path, result.run_dir


@pytest.fixture(scope="module")
def iris_run(tmp_path_factory):
    """A classification run on iris, with a categorical column added (synthetic: the site)."""
    root = tmp_path_factory.mktemp("iris")
    d = load_iris()
    names = [n.replace(" (cm)", "").replace(" ", "_") for n in d.feature_names]
    rows = [
        [*x, "north" if i % 2 else "south", d.target_names[y]]
        for i, (x, y) in enumerate(zip(d.data.tolist(), d.target.tolist(), strict=True))
    ]
    path = write_rows(root / "iris.csv", [*names, "site", "label"], rows)
    result = train("mlp-small", str(path), runs_dir=root / "runs", progress="quiet", epochs=3)
    return path, names, result.run_dir


def test_predict_is_the_model_on_the_training_preprocessing(diabetes_run):
    path, run_dir = diabetes_run
    run = fieldguide.load_run(run_dir)
    predictions = run.predict(path)
    assert predictions.columns == ["prediction"] and predictions.ids[:2] == [2, 3]
    # The same rows through the training reader: the split's rows, the model, the scaling.
    data = load_data(str(path))
    train_rows = stratified_split(442, 0, 0.15, 0.15)[0]
    with torch.no_grad():
        z = run.model(data.train.x)[:, 0].double()
    y = data.train.y
    expected = z * y.std(correction=0) + y.mean()
    got = torch.tensor([predictions.rows[i][0] for i in train_rows], dtype=torch.float64)
    assert torch.allclose(got, expected, rtol=1e-5)


def test_new_rows_with_gaps_and_unseen_categories_are_handled(iris_run, tmp_path):
    _, names, run_dir = iris_run
    rows = [[5.1, 3.5, 1.4, 0.2, "south"], ["", 3.0, 5.0, 1.8, "east"], [6.3, 2.9, 5.6, 1.8, ""]]
    new = write_rows(tmp_path / "new.csv", [*names, "site"], rows)  # no target column
    run = fieldguide.load_run(run_dir)
    predictions = run.predict(new)
    assert predictions.columns == ["prediction", "p(setosa)", "p(versicolor)", "p(virginica)"]
    assert predictions.ids == [2, 3, 4]
    for row in predictions.rows:
        assert sum(row[1:]) == pytest.approx(1.0, abs=1e-5)
        assert row[0] == ["setosa", "versicolor", "virginica"][int(np.argmax(row[1:]))]
    assert any("training median: {'sepal_length': 1}" in n for n in predictions.notes)
    assert any("encoded as none: {'site': 1}" in n for n in predictions.notes)
    # Unseen "east" encodes as no site at all, as a missing site does.
    x = run.prepare(new).inputs["x"]
    site = x[:, -2:]
    assert site[1].tolist() == [0.0, 0.0] and site[2].tolist() == [0.0, 0.0]


def test_the_cli_writes_predictions_and_refuses_other_columns(iris_run, tmp_path):
    path, _, run_dir = iris_run
    out = tmp_path / "predictions.csv"
    cmd = [sys.executable, "-m", "fieldguide.cli.main", "predict", str(run_dir), "--data"]
    done = subprocess.run([*cmd, str(path), "-o", str(out)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    lines = out.read_text().splitlines()
    assert lines[0].startswith("row,prediction,p(setosa)") and len(lines) == 151
    bad = write_rows(tmp_path / "bad.csv", ["petal_length", "colour"], [[1.0, "red"]])
    out.unlink()
    done = subprocess.run([*cmd, str(bad), "-o", str(out)], capture_output=True, text=True)
    assert done.returncode == 2 and not out.exists()
    assert "does not match the run's columns (missing" in done.stderr
    assert "unknown ['colour']" in done.stderr and len(done.stderr.strip().splitlines()) == 1
    done = subprocess.run([*cmd, str(tmp_path / "nowhere.csv")], capture_output=True, text=True)
    assert done.returncode == 2 and "nowhere.csv' does not exist" in done.stderr


def test_runs_of_other_kinds_and_damaged_files_are_one_sentence(iris_run, tmp_path):
    _, _, run_dir = iris_run
    run = fieldguide.load_run(run_dir)
    run.preprocessing = {**run.preprocessing, "task": "node-classification", "data": {}}
    with pytest.raises(ValueError, match="predict applies runs trained on the user.s own files"):
        run.predict(tmp_path / "x.csv")
    copy = tmp_path / "copy"
    copy.mkdir()
    for name in ("config.toml", "model.safetensors"):
        (copy / name).write_bytes((run_dir / name).read_bytes())
    (copy / "preprocessing.json").write_text("{not json")
    with pytest.raises(ValueError, match="preprocessing.json is damaged: it is not JSON"):
        fieldguide.load_run(copy)


def test_image_folder_runs_predict_new_images_with_the_training_statistics(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    for name, level in (("dark", 60), ("light", 190)):
        (tmp_path / "img" / name).mkdir(parents=True)
        for i in range(12):  # synthetic 8x8 grey squares, noisy
            pixels = np.clip(rng.normal(level, 25, (8, 8)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(tmp_path / "img" / name / f"{i:02d}.png")
    folder = str(tmp_path / "img")
    result = train("mlp-small", folder, runs_dir=tmp_path / "runs", progress="quiet", epochs=2)
    run = fieldguide.load_run(result.run_dir)
    prepared = run.prepare(folder)
    inputs, ids = prepared.inputs, prepared.ids
    assert ids[0] == "dark/00.png" and len(ids) == 24
    data = load_data(folder)  # the training reader: same files, same order, same statistics
    train_rows = stratified_split(np.repeat([0, 1], 12), 0, 0.15, 0.15)[0]
    assert torch.allclose(inputs["x"][train_rows], data.train.x, atol=1e-6)
    predictions = run.predict(tmp_path / "img" / "light" / "03.png")
    with torch.no_grad():
        index = ids.index("light/03.png")
        probs = run.model(inputs["x"][index : index + 1].flatten(1)).softmax(-1)[0]
    assert predictions.ids == ["03.png"]
    assert predictions.rows[0][1:] == pytest.approx(probs.tolist(), abs=1e-6)


def test_text_runs_predict_new_texts(tmp_path):
    good = ["a warm and funny film", "sharp, moving and well acted"]
    bad = ["a dull and tired mess", "slow, flat and far too long"]
    rows = [
        [f"{(good if i % 2 else bad)[i % 2]} take {i}", "good" if i % 2 else "bad"]
        for i in range(40)
    ]
    path = write_rows(tmp_path / "reviews.csv", ["text", "label"], rows)
    result = train(
        "bert-tiny", str(path), runs_dir=tmp_path / "runs", progress="quiet", max_steps=2
    )
    run = fieldguide.load_run(result.run_dir)
    new = write_rows(tmp_path / "new.csv", ["text"], [["a warm and funny film, truly"], ["flat"]])
    predictions = run.predict(new)
    assert predictions.ids == [2, 3] and predictions.columns[0] == "prediction"
    inputs = run.prepare(path).inputs
    data = load_data(str(path))
    train_rows = stratified_split(
        np.array([r[1] == "good" for r in rows], dtype=np.int64), 0, 0.15, 0.15
    )[0]
    width = data.train.x.shape[1]
    assert torch.equal(inputs["x"][train_rows][:, :width], data.train.x)
    missing = write_rows(tmp_path / "other.csv", ["review"], [["some text here"]])
    with pytest.raises(ValueError, match="has no column 'text', the text the run was trained on"):
        run.predict(missing)


def test_series_runs_forecast_the_steps_after_the_last_row(tmp_path):
    from fieldguide.tasks.forecasting import ForecastingTask

    days = np.arange(120)
    values = 10 + np.sin(2 * np.pi * days / 7) + 0.05 * days  # synthetic: weekly cycle + trend
    dates = [f"{np.datetime64('2024-01-01') + int(d)}" for d in days]
    path = write_rows(
        tmp_path / "daily.csv", ["date", "sales"], list(zip(dates, values.tolist(), strict=True))
    )
    result = train("tcn-small", str(path), runs_dir=tmp_path / "runs", progress="quiet", epochs=2)
    run = fieldguide.load_run(result.run_dir)
    predictions = run.predict(path)
    horizon = run.preprocessing["task_state"]["horizon"]
    assert predictions.id_name == "date" and predictions.columns == ["sales"]
    assert predictions.ids[0] == "2024-04-30" and len(predictions.ids) == horizon == 7
    # The task's own forecast of the last window, in units: what training would have said.
    task = ForecastingTask(load_data(str(path)))
    last = task.series[-task.context :][None]  # (1, L, 1), scaled with the training statistics
    with torch.no_grad():
        expected = task.to_units(task.forecast(run.model.eval(), last))[0, :, 0]
    got = torch.tensor([row[0] for row in predictions.rows], dtype=torch.float64)
    assert torch.allclose(got, expected, rtol=1e-5)
    assert predictions.to_csv().splitlines()[0] == "date,sales"
    short = write_rows(
        tmp_path / "short.csv", ["date", "sales"], [[dates[0], 1.0], [dates[1], 2.0]]
    )
    with pytest.raises(ValueError, match="has 2 steps; the run reads the last 28"):
        run.predict(short)


def test_sequence_folder_runs_predict_new_sequence_files(tmp_path):
    rng = np.random.default_rng(0)
    for label, freq in (("slow", 1.0), ("fast", 3.0)):
        (tmp_path / "seq" / label).mkdir(parents=True)
        for i in range(12):  # synthetic: noisy sines of two frequencies, ragged lengths
            steps = np.arange(10 + i % 4)
            values = np.stack([np.sin(freq * steps / 3), rng.normal(size=len(steps))], axis=1)
            write_rows(
                tmp_path / "seq" / label / f"{i:02d}.csv", ["wave", "noise"], values.tolist()
            )
    folder = tmp_path / "seq"
    result = train("gru", str(folder), runs_dir=tmp_path / "runs", progress="quiet", max_steps=3)
    run = fieldguide.load_run(result.run_dir)
    prepared = run.prepare(folder)
    inputs, ids = prepared.inputs, prepared.ids
    assert ids[0] == "fast/00.csv" and len(ids) == 24
    data = load_data(str(folder))  # the training reader: same files, same scaling
    train_rows = stratified_split(np.repeat([0, 1], 12), 0, 0.15, 0.15)[0]
    assert torch.equal(inputs["lengths"][train_rows], data.train.lengths)
    width = data.train.x.shape[1]
    assert torch.allclose(inputs["x"][train_rows][:, :width], data.train.x, atol=1e-6)
    one = run.predict(folder / "slow" / "05.csv")
    index = ids.index("slow/05.csv")
    with torch.no_grad():
        length = inputs["lengths"][index : index + 1]
        x = inputs["x"][index : index + 1, : int(length)]
        probs = run.model(x, lengths=length).softmax(-1)[0]
    assert one.id_name == "file" and one.rows[0][1:] == pytest.approx(probs.tolist(), abs=1e-6)
    bad = write_rows(tmp_path / "bad.csv", ["noise", "wave"], [[0.0, 1.0]])
    with pytest.raises(
        ValueError, match="has channels \\['noise', 'wave'\\]; the run was trained on"
    ):
        run.predict(bad)
