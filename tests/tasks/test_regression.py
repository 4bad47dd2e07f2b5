"""Regression on CSV tables: the task decision, z-scored training, metrics in units, baselines."""

import numpy as np
import pytest
import torch
from sklearn.datasets import load_diabetes
from sklearn.linear_model import LinearRegression
from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score

from fieldguide.api import train
from fieldguide.data import load_data
from fieldguide.data.base import ClassificationData, RegressionData
from fieldguide.data.tabular import decide_task, load_csv
from fieldguide.tasks import make_task
from fieldguide.tasks.regression import RegressionTask, regression_metrics
from tests.data.helpers import write_rows


@pytest.fixture(scope="module")
def diabetes_csv(tmp_path_factory):
    """scikit-learn's bundled diabetes table (442 rows, 10 features), written as a CSV."""
    d = load_diabetes()
    rows = [[*x, y] for x, y in zip(d.data.tolist(), d.target.tolist(), strict=True)]
    return write_rows(
        tmp_path_factory.mktemp("diabetes") / "diabetes.csv", [*d.feature_names, "target"], rows
    )


def test_the_task_follows_the_target():
    assert decide_task(["cat", "dog", "cat"])[0] == "classification"
    assert decide_task([str(i % 5) for i in range(100)])[0] == "classification"  # 5 codes
    kind, reason = decide_task([str(i) for i in range(100)])
    assert kind == "regression" and "100 distinct integers" in reason
    assert decide_task(["1.5", "2.0", "2.5"])[0] == "regression"
    assert decide_task(["1.5", "2.0"], "classification") == (
        "classification",
        "asked for classification",
    )


def test_a_numeric_csv_target_loads_as_regression(diabetes_csv):
    data = load_data(str(diabetes_csv))
    assert isinstance(data, RegressionData) and data.input_shape == (10,)
    assert data.train.y.dtype == torch.float64
    assert sum(len(getattr(data, s)) for s in ("train", "val", "test")) == 442
    assert data.preprocessing["task"]["kind"] == "regression"
    y = np.sort(np.concatenate([getattr(data, s).y.numpy() for s in ("train", "val", "test")]))
    assert np.array_equal(y, np.sort(load_diabetes().target))  # the target in its own units


def test_task_overrides_the_decision_and_bad_targets_are_one_sentence(tmp_path):
    rows = [[i, i % 3] for i in range(60)]
    path = write_rows(tmp_path / "codes.csv", ["x", "target"], rows)
    assert isinstance(load_csv(path), ClassificationData)
    assert isinstance(load_csv(path, task="regression"), RegressionData)
    labels = write_rows(
        tmp_path / "labels.csv", ["x", "target"], [[i, "ab"[i % 2]] for i in range(40)]
    )
    with pytest.raises(ValueError, match="row 2 has 'a' in target column 'target'; regression"):
        load_csv(labels, task="regression")
    with pytest.raises(ValueError, match="task applies to .csv files only"):
        load_data("digits", task="regression")


def test_metrics_match_scikit_learn():
    g = torch.Generator().manual_seed(0)
    truth = torch.randn(50, generator=g, dtype=torch.float64) * 3 + 1
    prediction = torch.randn(50, generator=g, dtype=torch.float64)
    ours = regression_metrics(truth, prediction)
    assert ours["mae"] == pytest.approx(mean_absolute_error(truth, prediction), rel=1e-12)
    assert ours["rmse"] == pytest.approx(mean_squared_error(truth, prediction) ** 0.5, rel=1e-12)
    assert ours["r2"] == pytest.approx(r2_score(truth, prediction), rel=1e-12)
    assert regression_metrics(truth, truth)["r2"] == 1.0


def test_the_model_is_sized_by_the_data_and_predict_is_the_model(diabetes_csv):
    task = make_task(load_data(str(diabetes_csv)))
    assert isinstance(task, RegressionTask)
    torch.manual_seed(0)
    model = task.build_model("mlp-small")
    assert (model.config.in_channels, model.config.out_dim) == (10, 1)
    with pytest.raises(
        ValueError, match="got out_dim=3 but regression on 'diabetes' needs out_dim=1"
    ):
        task.build_model("mlp", out_dim=3)
    with pytest.raises(ValueError, match="label_smoothing applies to .*'diabetes' is regression"):
        make_task(task.data, label_smoothing=0.1)
    z = task.predict(model, "test", batch_size=17)
    model.eval()
    with torch.no_grad():  # the task's predict is the model on the preprocessed rows
        assert torch.allclose(z, model(task.data.test.x)[:, 0], atol=1e-6)
    metrics = task.evaluate(model, "test")
    units = z.double() * task.data.train.y.std(correction=0) + task.data.train.y.mean()
    assert metrics["test/mae"] == pytest.approx((units - task.data.test.y).abs().mean().item())


def test_baselines_are_the_training_mean_and_least_squares(diabetes_csv):
    task = make_task(load_data(str(diabetes_csv)))
    on_train = task.baselines("train")
    assert on_train["training mean"]["r2"] == pytest.approx(0.0, abs=1e-12)
    data = task.data
    fitted = LinearRegression().fit(data.train.x.double().numpy(), data.train.y.numpy())
    expected = fitted.predict(data.test.x.double().numpy())
    ours = task.baselines("test")["linear regression (least squares)"]
    assert ours["rmse"] == pytest.approx(mean_squared_error(data.test.y, expected) ** 0.5, rel=1e-9)


def test_a_constant_target_is_refused(tmp_path):
    rows = [[i, 7.5] for i in range(40)]
    data = load_csv(write_rows(tmp_path / "flat.csv", ["x", "target"], rows), task="regression")
    with pytest.raises(ValueError, match="takes one value \\(7.5\\) on every training row"):
        RegressionTask(data)


@pytest.mark.slow
def test_training_beats_the_mean_and_the_report_shows_the_baselines(diabetes_csv, tmp_path):
    result = train("mlp", str(diabetes_csv), runs_dir=tmp_path, progress="quiet", epochs=30)
    task = make_task(load_data(str(diabetes_csv)))
    mean_rmse = task.baselines("test")["training mean"]["rmse"]
    assert result.test_metrics["test/rmse"] < mean_rmse
    assert result.test_metrics["test/r2"] > 0.1
    report = (result.run_dir / "report.md").read_text()
    assert "## Baselines on the same test rows" in report and "least squares" in report
    assert "target 'target': regression, since the target holds 214 distinct" in report
