"""Regression: one numeric target per row of a table.

Letters: B batch, D features.

Batch: (x (B, D), y (B,)), y z-scored with the mean and standard deviation of the training
target alone, so the loss has the same scale whatever the target's units. Head: a model that
reads vectors with one output, read as (B,). Loss: mean squared error on the z-scored target,
or Huber (delta 1, i.e. one training standard deviation) with `loss="huber"`, which weighs
outliers linearly.

Metrics, in the target's own units: MAE; RMSE; R² = 1 - sum (y - ŷ)² / sum (y - ȳ)², with ȳ the
mean of the split itself (scikit-learn's convention: 0 for predicting that split's mean, below
0 for worse). `baselines` scores the two an honest report puts beside a network: the training
mean for every row, and ordinary least squares on the same features.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchmetrics.functional import mean_absolute_error, mean_squared_error, r2_score

from fieldguide.data.base import RegressionData
from fieldguide.models.base import DataSpec
from fieldguide.tasks.base import SPLITS, Task, named

LOSSES = ("mse", "huber")


def regression_metrics(truth: Tensor, prediction: Tensor) -> dict[str, float]:
    """MAE, RMSE and R² of predictions against the truth, both (N,) in the target's units."""
    truth, prediction = truth.double(), prediction.double()
    return {
        "mae": mean_absolute_error(prediction, truth).item(),
        "rmse": mean_squared_error(prediction, truth, squared=False).item(),
        "r2": r2_score(prediction, truth).item() if len(truth) > 1 else float("nan"),
    }


class RegressionTask(Task):
    """Regression of one numeric target from table rows, on a z-scored target."""

    name = "regression"
    accepts: ClassVar[frozenset[str]] = frozenset({"vectors"})
    monitor = "val/rmse"
    metric_names = ("loss", "mae", "rmse", "r2")
    options = ("loss",)

    @classmethod
    def fits(cls, data: Any) -> bool:
        """Rows with a numeric target (`RegressionData`)."""
        return isinstance(data, RegressionData)

    def __init__(self, data: RegressionData, *, loss: str = "mse") -> None:
        if not isinstance(data, RegressionData):
            raise TypeError(
                f"RegressionTask expects data as RegressionData; got {type(data).__name__}."
            )
        if loss not in LOSSES:
            raise ValueError(f"RegressionTask expects loss in {LOSSES}; got {loss!r}.")
        super().__init__(data)
        self.loss_name = loss
        train = data.train.y.double()
        self.mean = train.mean()
        self.std = train.std(correction=0)
        if not bool(self.std > 1e-12 * max(1.0, float(self.mean.abs()))):
            raise ValueError(
                f"target '{data.target}' of '{data.name}' takes one value ({float(self.mean):g}) "
                f"on every training row; there is nothing to regress."
            )
        self._x = {s: getattr(data, s).x for s in SPLITS}
        self._z = {
            s: ((getattr(data, s).y.double() - self.mean) / self.std).float() for s in SPLITS
        }

    def spec(self) -> DataSpec:
        """One row of D features in, one output (the z-scored target) out."""
        return DataSpec(
            tuple(self.data.input_shape), 1, description=f"1 target, '{self.data.target}'"
        )

    def split_size(self, split: str) -> int:
        """Rows of `split`."""
        return len(self._z[split])

    def batch(self, split: str, index: Tensor) -> tuple[Tensor, Tensor]:
        """(x (B, D), z-scored y (B,)) of the rows `index` of `split`."""
        return self._x[split][index], self._z[split][index]

    def outputs(self, model: nn.Module, batch: tuple[Tensor, ...]) -> Tensor:
        """The model's z-scored predictions (B,) of one batch."""
        out = model(batch[0])
        if out.ndim != 2 or out.shape[1] != 1:
            raise ValueError(
                f"RegressionTask expects the model to give (B, 1) outputs; got "
                f"{tuple(out.shape)}; build it with task.build_model or set out_dim=1."
            )
        return out[:, 0]

    def loss(self, model: nn.Module, batch: tuple[Tensor, ...]) -> Tensor:
        """MSE (or Huber) of the z-scored prediction."""
        prediction = self.outputs(model, batch).float()
        if self.loss_name == "huber":
            return F.huber_loss(prediction, batch[1], delta=1.0)
        return F.mse_loss(prediction, batch[1])

    def state(self) -> dict[str, Any]:
        """The training target's mean and standard deviation, which undo the z-scoring."""
        return {"target_mean": float(self.mean), "target_std": float(self.std)}

    def to_units(self, z: Tensor) -> Tensor:
        """Z-scored values back in the target's units, float64."""
        return z.double() * self.std + self.mean

    def truth(self, split: str) -> Tensor:
        """The target of `split` in its own units, float64 (N,)."""
        return getattr(self.data, split).y.double()

    def evaluate(self, model: nn.Module, split: str, **eval_options: Any) -> dict[str, float]:
        """Loss (MSE of the z-scored target), MAE, RMSE and R² in the target's units."""
        z = self.predict(model, split, **eval_options)
        metrics = {"loss": F.mse_loss(z, self._z[split]).item()}
        metrics.update(regression_metrics(self.truth(split), self.to_units(z)))
        return named(split, metrics)

    def baselines(self, split: str) -> dict[str, dict[str, float]]:
        """Metrics of `split` for the training mean, least squares and gradient-boosted trees.

        Least squares: w = argmin ||[X 1] w - y||² over the training rows, in float64 (the
        minimum-norm solution when features are collinear, as one-hot columns can be).
        """
        truth = self.truth(split)
        x_train = self._x["train"].double().flatten(1)
        ones = torch.ones(len(x_train), 1, dtype=torch.float64)
        w = torch.linalg.lstsq(
            torch.cat([x_train, ones], 1), self.truth("train")[:, None], driver="gelsd"
        ).solution  # (D + 1, 1)
        x = self._x[split].double().flatten(1)
        linear = torch.cat([x, torch.ones(len(x), 1, dtype=torch.float64)], 1) @ w
        out = {
            "training mean": regression_metrics(truth, torch.full_like(truth, float(self.mean))),
            "linear regression (least squares)": regression_metrics(truth, linear[:, 0]),
        }
        if getattr(self, "_gbdt", None) is None:  # trees, fitted once on the same split
            self._gbdt = self.build_model("gbdt")
            self._gbdt.fit(self, seed=0)
            self._gbdt.eval()
        trees = self.to_units(self.predict(self._gbdt, split))
        out["gradient-boosted trees (gbdt)"] = regression_metrics(truth, trees)
        return out
