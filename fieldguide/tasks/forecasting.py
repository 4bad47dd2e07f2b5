"""Forecasting: the next `horizon` values of every column from the `context` values before them.

Letters: B batch (windows), L context length, H horizon, C columns of the series.

Windows: a window whose targets start at step t reads inputs y[t-L : t] and predicts y[t : t+H],
with stride 1. A window belongs to the split that holds all its targets: its inputs may reach
back into an earlier split (as when forecasting live), but no split's inputs or targets ever
reach into a later split. Each column is z-scored with the mean and std of the training part
alone. Batch: (x (B, L, C), y (B, H, C)), both z-scored.
Head: a sequence model with pool="last" and out_dim = H * C; its output (B, H * C) is read as
(B, H, C), step-major. Loss: MSE on z-scored values.
Anchoring (on by default): the model reads each window relative to its last value and predicts
the change from it, ŷ = y[t-1] + f(x - y[t-1]). A trending series (CO2) leaves the training
range within years; relative windows keep what the model sees in the range it was trained on,
the way "last value" normalisation does in NLinear (Zeng et al., 2023) and RevIN-style models.
Metrics, in the series' own units, over all windows of a split and all H steps and C columns:
MAE; RMSE; sMAPE = 100 * mean(2 |y - ŷ| / (|y| + |ŷ|)) in %; MASE (Hyndman & Koehler, 2006) =
MAE / (in-sample MAE of the seasonal-naive forecast on the training part), per column then
averaged; and snaive_ratio = MAE / MAE of the seasonal-naive forecast of the same windows, below
1 when the model beats seasonal-naive out of sample.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fieldguide.data.base import SeriesData
from fieldguide.models.base import DataSpec
from fieldguide.tasks.base import SPLITS, Task, named, reads


def seasonal_naive(context_window: Tensor, horizon: int, season: int) -> Tensor:
    """The seasonal-naive forecast: repeat the last `season` values of the context.

    ŷ[t + h] = y[t + h - season * (h // season + 1)] for h = 0..horizon-1, where t is the first
    step after the context: step h of the forecast copies step h % season of the last season.

    Args:
        context_window: Past values (..., L, C) with L >= season.
        horizon: Steps to forecast, H.
        season: Seasonal period in steps.

    Returns:
        The forecast (..., H, C).
    """
    if season < 1 or horizon < 1:
        raise ValueError(
            f"seasonal_naive expects season and horizon of at least 1; got season={season} "
            f"and horizon={horizon}."
        )
    if context_window.ndim < 2 or context_window.shape[-2] < season:
        raise ValueError(
            f"seasonal_naive expects context_window of shape (..., L, C) with L >= "
            f"season={season}; got {tuple(context_window.shape)}."
        )
    last_season = context_window[..., -season:, :]  # (..., season, C)
    index = torch.arange(horizon, device=context_window.device) % season  # (H,)
    return last_season.index_select(-2, index)  # (..., H, C)


def seasonal_naive_scale(train: Tensor, season: int) -> Tensor:
    """In-sample MAE of the seasonal-naive forecast per column: mean |y[t] - y[t - season]|.

    Args:
        train: The training part of the series, (T, C) with T > season.
        season: Seasonal period in steps.

    Returns:
        The MASE denominator of each column, (C,).
    """
    return (train[season:] - train[:-season]).abs().mean(0)  # (C,)


def forecast_metrics(
    truth: Tensor, forecast: Tensor, *, scale: Tensor, baseline: Tensor | None = None
) -> dict[str, float]:
    """MAE, RMSE, sMAPE (%), MASE and, given a baseline, snaive_ratio of forecasts (N, H, C).

    Args:
        truth: True future values (N, H, C), in the series' units.
        forecast: Forecasts of the same shape.
        scale: MASE denominator per column (C,), see `seasonal_naive_scale`.
        baseline: Seasonal-naive forecasts of the same windows (N, H, C), for snaive_ratio.
    """
    error = (truth - forecast).abs()
    mae = error.mean().item()
    # sMAPE's terms where truth and forecast are both 0 are 0 (a perfect forecast), not 0/0.
    denominator = truth.abs() + forecast.abs()
    ratio = torch.where(denominator > 0, 2 * error / denominator.clamp_min(1e-300), 0.0)
    metrics = {
        "mae": mae,
        "rmse": error.square().mean().sqrt().item(),
        "smape": 100 * ratio.mean().item(),
        "mase": (error.mean(dim=(0, 1)) / scale).mean().item(),  # per column, then averaged
    }
    if baseline is not None:
        baseline_mae = (truth - baseline).abs().mean().item()
        # A perfect baseline leaves the ratio undefined unless the model is perfect too.
        metrics["snaive_ratio"] = (
            mae / baseline_mae if baseline_mae > 0 else (1.0 if mae == 0 else math.inf)
        )
    return metrics


class ForecastingTask(Task):
    """Multi-step forecasting of a `SeriesData` by sliding windows, z-scored by its train part.

    Sequence models read each window (L, C) and pool it to one output; a model that reads
    vectors (an MLP) sees the window flattened, a linear-in-the-past baseline.
    """

    name = "forecasting"
    accepts: ClassVar[frozenset[str]] = frozenset({"sequences", "vectors"})
    monitor = "val/mase"
    metric_names = ("loss", "mae", "rmse", "smape", "mase", "snaive_ratio")
    options = ("context", "horizon")

    @classmethod
    def fits(cls, data: Any) -> bool:
        """A time series (`SeriesData`)."""
        return getattr(data, "modality", "") == "time-series"

    def __init__(
        self,
        data: SeriesData,
        context: int | None = None,
        horizon: int | None = None,
        *,
        anchor: bool = True,
    ) -> None:
        context = data.context if context is None else context
        horizon = data.horizon if horizon is None else horizon
        for arg, value in (("context", context), ("horizon", horizon)):
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(
                    f"ForecastingTask expects {arg} as an int; got {type(value).__name__}."
                )
            if value < 1:
                raise ValueError(
                    f"ForecastingTask expects {arg} of at least 1 step; got {arg}={value}."
                )
        if context < data.season:
            raise ValueError(
                f"ForecastingTask needs context >= season={data.season} so the seasonal-naive "
                f"baseline can repeat the last season; got context={context}."
            )
        if data.train_end <= data.season:
            raise ValueError(
                f"ForecastingTask needs a training part longer than season={data.season} for "
                f"the MASE scale; '{data.name}' has train_end={data.train_end}."
            )
        super().__init__(data)
        self.context, self.horizon, self.anchor = context, horizon, anchor
        self.season, self.num_columns = data.season, data.num_columns

        # 1. z-score every column with the training part's statistics only
        raw = data.values.double()  # (T, C)
        train = raw[: data.train_end]
        self.mean = train.mean(0)  # (C,)
        self.std = train.std(0, correction=0)
        self.std[self.std < 1e-8] = 1.0  # a constant column stays at zero
        self.series = ((raw - self.mean) / self.std).float()  # (T, C)
        self.scale = seasonal_naive_scale(train, data.season)  # (C,)
        if bool((self.scale == 0).any()):
            raise ValueError(
                f"ForecastingTask cannot scale MASE: column "
                f"'{data.columns[int((self.scale == 0).nonzero()[0])]}' of '{data.name}' repeats "
                f"itself exactly every season={data.season} steps in the training part."
            )

        # 2. windows, by the first target step t of each: inputs [t-L, t), targets [t, t+H).
        # They are gathered per batch rather than stored: L * C values per window add up.
        self._raw = raw
        self.target_steps = {split: self._target_steps(split) for split in SPLITS}

    def _target_steps(self, split: str) -> Tensor:
        """First target step of every window of `split`, or one sentence on why it has none."""
        start, end = self.data.bounds(split)
        # Training windows read their inputs inside the training part; later splits read back
        # into the split before them, so only their targets must fit.
        first = start + self.context if split == "train" else start
        if end - self.horizon < first:
            needed, parts = (
                (self.context + self.horizon, f"context={self.context} inputs, then ")
                if split == "train"
                else (self.horizon, "")
            )
            raise ValueError(
                f"the {split} part of '{self.data.name}' has {end - start} steps but needs at "
                f"least {needed} to hold one window ({parts}horizon={self.horizon} targets); "
                f"lower {'context or ' * (split == 'train')}horizon, or enlarge the {split} part."
            )
        return torch.arange(first, end - self.horizon + 1)

    def spec(self) -> DataSpec:
        """Windows (context, C) in, horizon * C outputs per window (read step-major)."""
        outputs = self.horizon * self.num_columns
        return DataSpec(
            (self.context, self.num_columns),
            outputs,
            description=f"horizon {self.horizon} x {self.num_columns} column(s)",
        )

    def split_size(self, split: str) -> int:
        """Windows of `split`."""
        return len(self.target_steps[split])

    def batch(self, split: str, index: Tensor) -> tuple[Tensor, Tensor]:
        """(x (B, L, C), y (B, H, C)), z-scored, for the windows `index` of `split`."""
        steps = self.target_steps[split][index][:, None]  # (B, 1)
        x = self.series[steps + torch.arange(-self.context, 0)]  # (B, L, C)
        y = self.series[steps + torch.arange(self.horizon)]  # (B, H, C)
        return x, y

    def truth(self, split: str) -> Tensor:
        """The true future (N, H, C) of every window of `split`, in the series' units, float64."""
        steps = self.target_steps[split][:, None]  # (N, 1)
        return self._raw[steps + torch.arange(self.horizon)]  # (N, H, C)

    def forecast(self, model: nn.Module, x: Tensor) -> Tensor:
        """The model's z-scored forecast (B, H, C) of the windows x (B, L, C)."""
        anchor = x[:, -1:, :] if self.anchor else torch.zeros_like(x[:, -1:, :])  # (B, 1, C)
        relative = x - anchor
        out = model(relative.flatten(1) if reads(model) == "vectors" else relative)
        expected = self.horizon * self.num_columns
        if out.ndim != 2 or out.shape != (x.shape[0], expected):
            raise ValueError(
                f"ForecastingTask expects the model to give (B, horizon * C) = ({x.shape[0]}, "
                f"{expected}) outputs; got {tuple(out.shape)}; build it with task.build_model, "
                f"or set out_dim={expected} and pool='last'."
            )
        return out.view(x.shape[0], self.horizon, self.num_columns) + anchor  # (B, H, C)

    def loss(self, model: nn.Module, batch: tuple[Tensor, ...]) -> Tensor:
        """MSE of the z-scored forecast."""
        x, y = batch
        return F.mse_loss(self.forecast(model, x).float(), y)

    def outputs(self, model: nn.Module, batch: tuple[Tensor, ...]) -> Tensor:
        """The z-scored forecasts (B, H, C) of one batch of windows."""
        return self.forecast(model, batch[0])

    def state(self) -> dict[str, Any]:
        """The training scaling per column and the window sizes, for forecasting new series."""
        return {
            "mean": self.mean.tolist(),
            "std": self.std.tolist(),
            "context": self.context,
            "horizon": self.horizon,
            "anchor": self.anchor,
        }

    def to_units(self, z: Tensor) -> Tensor:
        """Z-scored values (..., C) back in the series' units, float64."""
        return z.double() * self.std + self.mean

    def baselines(self, split: str) -> dict[str, dict[str, float]]:
        """The seasonal-naive forecast of the same windows, scored like a model (in units)."""
        x, _ = self.batch(split, torch.arange(self.split_size(split)))
        naive = self.to_units(seasonal_naive(x, self.horizon, self.season))
        metrics = forecast_metrics(self.truth(split), naive, scale=self.scale, baseline=naive)
        return {f"seasonal naive (season {self.season})": metrics}

    def evaluate(self, model: nn.Module, split: str, **eval_options: Any) -> dict[str, float]:
        """Loss, MAE, RMSE, sMAPE, MASE and snaive_ratio of `split`, the last four in units."""
        z = self.predict(model, split, **eval_options)
        # The baseline takes the model's path back to units, so a model that returns the
        # seasonal-naive forecast scores snaive_ratio exactly 1.
        x, y = self.batch(split, torch.arange(len(z)))
        baseline = seasonal_naive(x, self.horizon, self.season)  # (N, H, C)
        metrics = {"loss": F.mse_loss(z, y).item()}
        metrics.update(
            forecast_metrics(
                self.truth(split),
                self.to_units(z),
                scale=self.scale,
                baseline=self.to_units(baseline),
            )
        )
        return named(split, metrics)
