"""Click prediction: temperature scaling, binary metrics, the multi-hot view, training, refusals."""

import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from fieldguide.api import train
from fieldguide.api.config import DataConfig
from fieldguide.cli.main import main
from fieldguide.data import load_data
from fieldguide.data.fields import ADULT_FILE, load_adult
from fieldguide.tasks import ctr
from fieldguide.tasks.ctr import CTRTask, binary_metrics, fit_temperature, multi_hot
from fieldguide.train.config import TrainConfig
from fieldguide.train.loop import Trainer
from tests.data.helpers import write_rows
from tests.widedeep import require_widedeep

COLOURS = ("red", "green", "blue", "grey")
TAGS = ("news", "sport", "tech")


def click_csv(path, n=600, seed=0):
    """A synthetic click log with a learnable rule from a category, a tag and a number.

    Columns: a (colour; a few rare one-off values, which hash, and a few empty cells), b (a
    multi-hot bag of tags such as "news|sport", sometimes empty), x (numeric, a few empty
    cells), z (numeric noise) and click = [2 [a is red or green] + 1.5 [sport in b] + 1.5 x
    > 1.75], so about half the rows click.
    """
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        a = COLOURS[rng.integers(4)] if rng.random() > 0.03 else f"rare{i}"
        bag = [t for t in TAGS if rng.random() < 0.4]
        x, z = rng.normal(), rng.normal()
        click = int(2.0 * (a in ("red", "green")) + 1.5 * ("sport" in bag) + 1.5 * x > 1.75)
        shown_a = "" if rng.random() < 0.03 else a
        shown_x = "" if rng.random() < 0.03 else round(x, 4)
        rows.append([shown_a, "|".join(bag), shown_x, round(z, 4), click])
    return write_rows(path, ["a", "b", "x", "z", "click"], rows)


@pytest.fixture(scope="module")
def clicks(tmp_path_factory):
    return click_csv(tmp_path_factory.mktemp("clicks") / "clicks.csv")


@pytest.fixture(scope="module")
def task(clicks):
    return CTRTask(load_data(str(clicks), categorical=["a", "b"], dense=["x", "z"]))


# --- temperature and metrics ----------------------------------------------------------------


def test_fit_temperature_recovers_a_known_temperature_and_calibration_lowers_ece():
    g = torch.Generator().manual_seed(0)
    z = torch.randn(200_000, generator=g, dtype=torch.float64) * 4
    y = torch.bernoulli(torch.sigmoid(z / 2.5), generator=g).long()  # true logits are z / 2.5
    t = fit_temperature(z, y)
    assert t == pytest.approx(2.5, rel=0.1)
    # The fitted T is the log-loss minimiser: nearby temperatures do worse.
    nll = [F.binary_cross_entropy_with_logits(z / s, y.double()).item() for s in (t, 2, 3.2)]
    assert nll[0] < nll[1] and nll[0] < nll[2]
    metrics = binary_metrics(z, y, float(y.double().mean()), t)
    assert metrics["ece"] > 0.05  # raw logits are overconfident
    assert metrics["ece_calibrated"] < 0.5 * metrics["ece"]
    # Logits that are already calibrated keep T near 1.
    y1 = torch.bernoulli(torch.sigmoid(z), generator=g).long()
    assert fit_temperature(z, y1) == pytest.approx(1.0, rel=0.1)


def test_binary_metrics_by_hand():
    # p = 0.5, 0.75, 0.25 for labels 1, 1, 0: losses ln 2, ln 4/3, ln 4/3.
    logits = torch.tensor([0.0, math.log(3), -math.log(3)], dtype=torch.float64)
    y = torch.tensor([1, 1, 0])
    m = binary_metrics(logits, y, 0.5, 1.0)
    assert m["loss"] == pytest.approx((math.log(2) + 2 * math.log(4 / 3)) / 3, rel=1e-12)
    assert m["normalized_entropy"] == pytest.approx(m["loss"] / math.log(2), rel=1e-12)
    assert m["accuracy"] == pytest.approx(2 / 3)  # p = 0.5 is not above 0.5: predicted 0
    assert m["auroc"] == pytest.approx(1.0)  # every positive scores above the negative
    # The base-rate predictor has normalised entropy 1 on the rows whose rate it is.
    y = torch.tensor([1, 0, 0, 0, 1, 0, 0, 0, 0, 0])
    rate = float(y.double().mean())
    constant = torch.full((10,), rate).logit()
    m = binary_metrics(constant, y, rate, 1.0)
    assert m["normalized_entropy"] == pytest.approx(1.0, abs=1e-6)
    assert m["auroc"] == pytest.approx(0.5) and m["ece"] == pytest.approx(0.0, abs=1e-6)
    # Perfectly separated logits give AUROC 1, reversed ones 0; one class alone gives NaN.
    scores = torch.linspace(-3, 3, 10)
    y = (scores > 0).long()
    assert binary_metrics(scores, y, 0.5, 1.0)["auroc"] == pytest.approx(1.0)
    assert binary_metrics(-scores, y, 0.5, 1.0)["auroc"] == pytest.approx(0.0)
    assert math.isnan(binary_metrics(scores, torch.ones(10, dtype=torch.long), 0.5, 1.0)["auroc"])
    # ECE of a constant p = 0.9 on labels all 1 is 0.1.
    ones = torch.ones(20, dtype=torch.long)
    assert binary_metrics(torch.full((20,), 0.9).logit(), ones, 0.5, 1.0)["ece"] == pytest.approx(
        0.1, abs=1e-6
    )


# --- the multi-hot view ---------------------------------------------------------------------


def test_multi_hot_sets_one_column_per_real_id_and_none_for_padding():
    cardinalities = (3, 4)  # columns 0..2 for field 0, 3..6 for field 1
    dense = torch.tensor([[0.5], [-1.0]])
    ids = torch.tensor([[[2, 0], [1, 3]], [[0, 0], [3, 0]]])  # row 1's field 0: all padding
    hot = multi_hot(dense, ids, None, cardinalities)
    expected = torch.zeros(2, 1 + 7)
    expected[:, 0] = dense[:, 0]
    expected[0, 1 + 2] = expected[0, 1 + 3 + 1] = expected[0, 1 + 3 + 3] = 1
    expected[1, 1 + 3 + 3] = 1
    assert torch.equal(hot, expected)
    assert torch.equal(hot[:, 1:].sum(1), (ids > 0).sum((1, 2)).float())  # one per real id
    # Weights scale their id's column; a weight at a padded position is ignored.
    weights = torch.tensor([[[0.5, 9.0], [2.0, 3.0]], [[9.0, 9.0], [0.25, 9.0]]])
    weighted = multi_hot(dense, ids, weights, cardinalities)
    expected[0, 1 + 2], expected[0, 1 + 3 + 1], expected[0, 1 + 3 + 3] = 0.5, 2.0, 3.0
    expected[1, 1 + 3 + 3] = 0.25
    assert torch.equal(weighted, expected)


def test_an_mlp_trains_on_the_multi_hot_view_of_a_fields_csv(task):
    data = task.data
    torch.manual_seed(0)
    model = task.build_model("mlp-small")
    assert model.config.in_channels == len(data.dense_names) + sum(data.cardinalities)
    from fieldguide.models.mlp import MLP

    assert task.spec_for(MLP).fields == ()  # the vector model sees no fields
    assert task.spec().fields == tuple(data.cardinalities)  # models that read fields do
    batch = task.batch("val", torch.arange(8))
    model.eval()  # no dropout while comparing
    with torch.no_grad():
        expected = model(multi_hot(batch[0], batch[1], None, data.cardinalities))[:, 0]
        assert torch.equal(task.logits(model, batch[:-1]), expected)
    model.train()
    cfg = TrainConfig(epochs=8, batch_size=64, lr=1e-2, seed=0)
    result = Trainer(model, task, cfg, progress="quiet").fit()
    assert result.best_metrics["val/auroc"] > 0.9
    assert result.best_metrics["val/normalized_entropy"] < 0.7
    # A fields model built afterwards sees the fields again.
    assert task.build_model("dlrm-tiny").config.fields == tuple(data.cardinalities)


def test_a_multi_hot_view_too_wide_is_refused_naming_the_fields_models(task, monkeypatch):
    monkeypatch.setattr(ctr, "MAX_MULTI_HOT", 10)
    with pytest.raises(ValueError, match="'mlp-small' reads vectors.*use wide-deep or dlrm"):
        task.build_model("mlp-small")


# --- fields models, baselines, report ---------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize(
    "name, data_config",
    [
        ("wide-deep-tiny", DataConfig(categorical="a,b", dense="x,z")),
        ("dlrm-tiny", DataConfig()),  # a fields model reads any CSV as fields rows
    ],
)
def test_fields_models_learn_the_rule_and_the_report_shows_the_trees(
    clicks, tmp_path, name, data_config
):
    result = train(
        name,
        str(clicks),
        data_config=data_config,
        progress="quiet",
        runs_dir=tmp_path,
        epochs=10,
        batch_size=64,
        lr=1e-2,
    )
    lines = (result.run_dir / "metrics.jsonl").read_text().splitlines()
    history = [json.loads(line) for line in lines]
    assert max(r["val/auroc"] for r in history) > 0.9  # chance is 0.5
    assert result.test_metrics["test/auroc"] > 0.85
    assert result.test_metrics["test/normalized_entropy"] < 0.7  # well below the base rate's 1
    report = (result.run_dir / "report.md").read_text()
    assert "gradient-boosted trees" in report and "logistic regression" in report


def test_baselines_are_finite_aurocs_and_the_base_rate_is_chance(task):
    for split in ("val", "test"):
        baselines = task.baselines(split)
        assert list(baselines) == [
            "training base rate",
            "logistic regression (same encoding)",
            "gradient-boosted trees (HistGradientBoosting)",
        ]
        for metrics in baselines.values():
            assert set(metrics) == set(CTRTask.metric_names)
            assert 0.0 <= metrics["auroc"] <= 1.0
        assert baselines["training base rate"]["auroc"] == pytest.approx(0.5)
        assert baselines["training base rate"]["normalized_entropy"] == pytest.approx(1, abs=0.02)
        # The rule is learnable from this encoding: both fitted baselines see it.
        assert baselines["logistic regression (same encoding)"]["auroc"] > 0.9
        assert baselines["gradient-boosted trees (HistGradientBoosting)"]["auroc"] > 0.9
    on_train = task.baselines("train")["training base rate"]
    assert on_train["normalized_entropy"] == pytest.approx(1.0, abs=1e-9)


def test_a_sparse_dlrm_learns_adult_in_a_few_steps():
    require_widedeep(ADULT_FILE)
    task = CTRTask(load_adult())
    torch.manual_seed(0)
    model = task.build_model("dlrm-tiny", sparse=True)
    before = task.evaluate(model, "val")
    cfg = TrainConfig(epochs=1, max_steps=60, batch_size=256, lr=3e-3, seed=0)
    result = Trainer(model, task, cfg, progress="quiet").fit()
    after = result.history[-1]
    assert after["val/auroc"] > 0.8 and after["val/loss"] < before["val/loss"]
    assert after["val/normalized_entropy"] < 0.9
    assert after["val/ece_calibrated"] < 0.1


# --- refusals through the CLI ---------------------------------------------------------------


def test_a_three_class_target_and_categorical_on_a_starter_are_one_sentence(tmp_path, capsys):
    rows = [[["u", "v", "w"][i % 3], i % 3] for i in range(60)]
    three = write_rows(tmp_path / "three.csv", ["a", "click"], rows)
    runs = tmp_path / "runs"
    args = ["--runs-dir", str(runs), "--quiet", "--epochs", "1"]
    code = main(["train", "wide-deep-tiny", "--data", str(three), "--categorical", "a", *args])
    assert code == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1
    assert "has 3 classes ('0', '1', '2')" in err and "takes exactly 2" in err
    code = main(["train", "--data", "digits", "--categorical", "a", *args])
    assert code == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "--categorical" in err and ".csv" in err
    assert not runs.exists() or not any(runs.iterdir())  # nothing half-written
