import math

import pytest
import torch
from torch import nn

from fieldguide.data.base import SeriesData
from fieldguide.tasks import base as task_base
from fieldguide.tasks.forecasting import (
    ForecastingTask,
    forecast_metrics,
    seasonal_naive,
    seasonal_naive_scale,
)
from fieldguide.train.config import TrainConfig
from fieldguide.train.loop import Trainer
from tests.data.helpers import load_starter
from tests.tasks.helpers import StandIn, stand_in_entry

SPLITS = ("train", "val", "test")
METRICS = {"loss", "mae", "rmse", "smape", "mase", "snaive_ratio"}


def toy_series(steps: int = 60, train_end: int = 36, val_end: int = 48, **changes) -> SeriesData:
    """Synthetic two-column series: a trend plus a season of 4 steps, and a seasonal level."""
    t = torch.arange(steps, dtype=torch.float32)
    season = torch.tensor([0.0, 3.0, -1.0, 2.0])[torch.arange(steps) % 4]
    values = torch.stack([0.5 * t + season, 100 + 2 * season + 0.1 * t], dim=1)  # (T, 2)
    fields = {
        "name": "toy",
        "values": values,
        "columns": ["a", "b"],
        "train_end": train_end,
        "val_end": val_end,
        "season": 4,
        "context": 8,
        "horizon": 3,
        "description": "synthetic trend and season",
        "synthetic": True,
    }
    return SeriesData(**{**fields, **changes})


class SeasonalNaive(nn.Module):
    """The seasonal-naive forecast as a model: (B, L, C) -> (B, H * C)."""

    def __init__(self, horizon: int, season: int) -> None:
        super().__init__()
        self.horizon, self.season = horizon, season

    def forward(self, x):
        return seasonal_naive(x, self.horizon, self.season).flatten(1)


class Oracle(nn.Module):
    """Finds each window in the (z-scored) series and returns its true future."""

    def __init__(self, series: torch.Tensor, context: int, horizon: int) -> None:
        super().__init__()
        self.series, self.context, self.horizon = series, context, horizon
        self.windows = series.unfold(0, context, 1).transpose(1, 2)  # (T-L+1, L, C)

    def forward(self, x):
        distance = (self.windows[None] - x[:, None]).square().sum((2, 3))  # (B, T-L+1)
        steps = distance.argmin(1) + self.context  # first target step of each window
        future = torch.stack([self.series[t : t + self.horizon] for t in steps.tolist()])
        return future.flatten(1)  # (B, H * C)


# -- the seasonal-naive forecast and the metrics, by hand --------------------------------------
def test_seasonal_naive_repeats_the_last_season():
    context = torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0, 6.0])[:, None]  # (L=6, C=1)
    assert seasonal_naive(context, 5, 3)[:, 0].tolist() == [4, 5, 6, 4, 5]
    assert seasonal_naive(context, 2, 1)[:, 0].tolist() == [6, 6]
    assert seasonal_naive(context, 2, 6)[:, 0].tolist() == [1, 2]
    batched = torch.stack([context, 10 * context])  # (2, 6, 1)
    assert seasonal_naive(batched, 4, 2)[:, :, 0].tolist() == [[5, 6, 5, 6], [50, 60, 50, 60]]
    with pytest.raises(ValueError, match="L >= season=7"):
        seasonal_naive(context, 2, 7)
    with pytest.raises(ValueError, match="horizon of at least 1"):
        seasonal_naive(context, 0, 2)


def test_seasonal_naive_scale_by_hand():
    train = torch.tensor([[1.0, 0.0], [3.0, 0.0], [2.0, 1.0], [4.0, 3.0], [3.0, 6.0]])
    # season 2: column 0 |2-1|, |4-3|, |3-2| -> 1; column 1 |1-0|, |3-0|, |6-1| -> 3
    assert seasonal_naive_scale(train, 2).tolist() == [1.0, 3.0]


def test_forecast_metrics_by_hand():
    truth = torch.tensor([2.0, 4.0, 0.0, -2.0]).view(1, 4, 1)
    forecast = torch.tensor([3.0, 2.0, 0.0, -2.0]).view(1, 4, 1)
    baseline = torch.tensor([2.0, 4.0, 0.0, 0.0]).view(1, 4, 1)
    m = forecast_metrics(truth, forecast, scale=torch.tensor([0.5]), baseline=baseline)
    assert m["mae"] == pytest.approx(0.75)  # errors 1, 2, 0, 0
    assert m["rmse"] == pytest.approx(math.sqrt(5 / 4))
    # sMAPE terms 2*1/5, 2*2/6, 0 (0 vs 0: the guard), 0/4 -> mean 0.2667 -> 26.67 %
    assert m["smape"] == pytest.approx(100 * (0.4 + 4 / 6) / 4)
    assert m["mase"] == pytest.approx(0.75 / 0.5)
    assert m["snaive_ratio"] == pytest.approx(0.75 / 0.5)  # baseline errors 0, 0, 0, 2
    assert "snaive_ratio" not in forecast_metrics(truth, forecast, scale=torch.tensor([1.0]))


def test_mase_scales_each_column_by_its_own_scale():
    truth = torch.zeros(2, 1, 2)
    forecast = torch.tensor([[[1.0, 2.0]], [[1.0, 2.0]]])  # column MAEs 1 and 2
    m = forecast_metrics(truth, forecast, scale=torch.tensor([1.0, 4.0]))
    assert m["mase"] == pytest.approx((1 / 1 + 2 / 4) / 2)  # not the pooled 1.5 / 2.5
    assert m["smape"] == pytest.approx(200.0)  # the maximum when the truth is 0


def test_perfect_baseline_makes_a_defined_ratio():
    truth = torch.ones(1, 2, 1)
    assert forecast_metrics(truth, truth, scale=torch.ones(1), baseline=truth)["snaive_ratio"] == 1
    assert math.isinf(
        forecast_metrics(truth, 2 * truth, scale=torch.ones(1), baseline=truth)["snaive_ratio"]
    )


# -- windows ------------------------------------------------------------------------------------
def test_windows_are_chronological_and_read_the_series():
    data = toy_series()
    task = ForecastingTask(data)
    L, H = task.context, task.horizon
    counts = {s: len(task.target_steps[s]) for s in SPLITS}
    assert counts == {"train": 36 - L - H + 1, "val": 12 - H + 1, "test": 12 - H + 1}
    assert task.train_size == counts["train"] and task.split_sizes() == counts
    for split in SPLITS:
        start, end = data.bounds(split)
        steps = task.target_steps[split]
        # Every target lies in its own split; every input before it, never in a later split.
        assert int(steps.min()) >= start and int(steps.max()) + H <= end
        assert int(steps.min()) - L >= 0
        x, y = task.batch(split, torch.arange(len(steps)))
        assert x.shape == (len(steps), L, 2) and y.shape == (len(steps), H, 2)
        for i, t in enumerate(steps.tolist()):
            assert torch.equal(x[i], task.series[t - L : t]) and torch.equal(
                y[i], task.series[t : t + H]
            )
    # Validation starts right at the cut: its first window's inputs are the last train steps.
    assert int(task.target_steps["val"][0]) == 36


def test_no_later_value_reaches_an_earlier_split():
    data = toy_series()
    marked = data.values.clone()
    marked[data.val_end :] += 1000.0  # test values stand out
    marked[data.train_end : data.val_end] -= 1000.0  # and so do validation values
    task = ForecastingTask(toy_series(values=marked))
    for split, allowed in (("train", (-100, 500)), ("val", (-1100, 500))):
        x, y = task.batch(split, torch.arange(len(task.target_steps[split])))
        units = task.to_units(torch.cat([x, y], dim=1))
        assert allowed[0] < units.min() and units.max() < allowed[1], split


def test_z_scores_use_the_training_part_only():
    data = toy_series()
    task = ForecastingTask(data)
    train = task.series[: data.train_end]
    assert train.mean(0).abs().max() < 1e-5
    assert (train.std(0, correction=0) - 1).abs().max() < 1e-5
    assert task.series.mean(0).abs().min() > 0.1  # the trend lifts the later parts
    assert torch.allclose(task.mean, data.values[: data.train_end].double().mean(0))


def test_output_is_read_step_major():
    task = ForecastingTask(toy_series(), anchor=False)

    class Counting(nn.Module):
        def forward(self, x):
            return torch.arange(6.0).repeat(len(x), 1)  # out[b, h * C + c] = 2h + c

    out = task.forecast(Counting(), torch.zeros(2, 8, 2))
    assert out.shape == (2, 3, 2)
    assert out[1].tolist() == [[0, 1], [2, 3], [4, 5]]


# -- metrics through the task -------------------------------------------------------------------
def test_a_perfect_model_scores_zero():
    task = ForecastingTask(toy_series(), anchor=False)  # the oracle looks windows up by value
    oracle = Oracle(task.series, task.context, task.horizon)
    for split in SPLITS:
        m = task.evaluate(oracle, split, device="cpu", batch_size=5)
        assert set(m) == {f"{split}/{k}" for k in METRICS}
        assert m[f"{split}/mae"] < 1e-4 and m[f"{split}/mase"] < 1e-4
        assert m[f"{split}/snaive_ratio"] < 1e-3 and m[f"{split}/loss"] < 1e-10


@pytest.mark.parametrize("anchor", [False, True])
def test_the_seasonal_naive_model_scores_a_ratio_of_exactly_one(anchor):
    data = toy_series()
    task = ForecastingTask(data, anchor=anchor)
    m = task.evaluate(SeasonalNaive(task.horizon, data.season), "test", device="cpu", batch_size=4)
    # Exactly 1 unanchored; anchoring adds and removes the last value in float32 (~1e-9).
    assert m["test/snaive_ratio"] == (pytest.approx(1.0, abs=1e-6) if anchor else 1.0)
    # The trend moves 0.5 and 0.1 a step: a season later each column is off by 4x that.
    assert m["test/mae"] == pytest.approx((2.0 + 0.4) / 2, abs=1e-4)


def test_trains_with_the_real_trainer(monkeypatch):
    monkeypatch.setattr(task_base, "get_entry", lambda name: stand_in_entry())
    task = ForecastingTask(toy_series())
    torch.manual_seed(0)
    model = task.build_model("stand-in")
    config = TrainConfig(epochs=2, batch_size=8, lr=0.01, seed=0, device="cpu")
    result = Trainer(model, task, config, progress="quiet").fit()
    assert result.monitor == "val/mase" and len(result.history) == 2
    assert {f"val/{k}" for k in METRICS} <= set(result.best_metrics)
    assert all(math.isfinite(result.best_metrics[f"val/{k}"]) for k in METRICS)


def test_build_model_sizes_the_head(monkeypatch):
    monkeypatch.setattr(task_base, "get_entry", lambda name: stand_in_entry(causal=False))
    task = ForecastingTask(toy_series(), context=12, horizon=5)
    model = task.build_model("gru")
    assert isinstance(model, StandIn) and model.name == "gru"
    # Not causal: its last step is no summary of the window, so it pools the mean.
    assert (model.config.in_channels, model.config.out_dim, model.config.pool) == (2, 10, "mean")
    assert task.forecast(model, task.batch("val", torch.arange(3))[0]).shape == (3, 5, 2)
    assert task.build_model("gru", pool="last").config.pool == "last"  # the user's choice
    with pytest.raises(ValueError, match="got pool='none' but forecasting .* needs pool='mean'"):
        task.build_model("gru", pool="none")


# -- real data ----------------------------------------------------------------------------------
def test_real_series_windows():
    sunspots = ForecastingTask(load_starter("sunspots"))
    assert {s: len(sunspots.target_steps[s]) for s in SPLITS} == {
        "train": 217 - 44 - 11 + 1,
        "val": 46 - 11 + 1,
        "test": 46 - 11 + 1,
    }
    naive = SeasonalNaive(11, 11)
    ratio = sunspots.evaluate(naive, "val", device="cpu", batch_size=64)["val/snaive_ratio"]
    assert ratio == pytest.approx(1.0, abs=1e-6)
    co2 = ForecastingTask(load_starter("co2"), horizon=13)
    assert co2.train_size == 1598 - 156 - 13 + 1
    assert co2.series[:1598].mean().abs() < 1e-5


# -- errors -------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"context": 0}, "context of at least 1 step; got context=0"),
        ({"horizon": 0}, "horizon of at least 1 step; got horizon=0"),
        ({"context": 3}, "context >= season=4 so the seasonal-naive baseline"),
        ({"horizon": 13}, "the val part of 'toy' has 12 steps but needs at least 13"),
        ({"context": 34}, "the train part of 'toy' has 36 steps but needs at least 37"),
    ],
)
def test_bad_windows_are_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ForecastingTask(toy_series(), **kwargs)


def test_short_test_part_and_early_cut_are_named():
    with pytest.raises(ValueError, match="the test part of 'toy' has 2 steps but needs at least 3"):
        ForecastingTask(toy_series(val_end=58))
    with pytest.raises(ValueError, match=r"needs at least 11 to hold one window \(context=8 inp"):
        ForecastingTask(toy_series(train_end=10, val_end=30), context=8, horizon=3)


def test_context_must_be_an_int():
    with pytest.raises(TypeError, match="context as an int"):
        ForecastingTask(toy_series(), context=8.0)


def test_wrong_feature_count_is_named():
    task = ForecastingTask(toy_series())

    class TooNarrow(nn.Module):
        def forward(self, x):
            return x[:, -1, :1].repeat(1, 5)  # 5 outputs, the task needs horizon * C = 6

    with pytest.raises(ValueError, match=r"\(B, horizon \* C\) = \(4, 6\) outputs; got \(4, 5\)"):
        task.loss(TooNarrow(), task.batch("train", torch.arange(4)))


def test_a_series_without_seasonal_change_cannot_scale_mase():
    periodic = torch.tensor([1.0, 2.0, 3.0, 4.0])[torch.arange(60) % 4][:, None]  # (60, 1)
    with pytest.raises(ValueError, match="column 'a' of 'toy' repeats itself exactly"):
        ForecastingTask(toy_series(values=periodic, columns=["a"]))


def test_anchoring_reads_windows_relative_to_their_last_value():
    task = ForecastingTask(toy_series())
    seen = []

    class Zero(nn.Module):
        def forward(self, x):
            seen.append(x)
            return torch.zeros(len(x), task.horizon * task.num_columns)

    x, _ = task.batch("test", torch.arange(4))
    out = task.forecast(Zero(), x)
    # A model that predicts no change gives the last value again: the persistence forecast.
    assert torch.equal(out, x[:, -1:, :].expand(-1, task.horizon, -1))
    assert torch.equal(seen[0][:, -1], torch.zeros_like(seen[0][:, -1]))
    assert torch.allclose(seen[0] + x[:, -1:, :], x)
