"""Click-through-rate prediction: a binary label from dense features and categorical fields.

Data: a `FieldData` (fieldguide/data/fields.py): dense features (N, D) and F categorical fields
as bags of ids (N, F, L), 0 the padding. Models that read "fields" (Wide & Deep, DLRM) take
them as they are; a model that reads vectors (the plain MLP) sees the dense features beside a
multi-hot encoding of every id (what a one-hot table would give it).

Head: one logit. Loss: binary cross-entropy. Metrics: log-loss, AUROC, accuracy at 0.5,
normalised entropy (log-loss divided by the entropy of the training click rate: below 1 means
better than always predicting the base rate; He et al., 2014), the expected calibration error
(15 bins), and the ECE after temperature scaling, its temperature fitted on the validation
split (Guo et al., 2017). Baselines on the same rows: the training base rate, logistic
regression on the same encoding, and gradient-boosted trees (scikit-learn's
HistGradientBoosting, fields as categorical features).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchmetrics.classification import BinaryAUROC, BinaryCalibrationError

from fieldguide.models.base import DataSpec
from fieldguide.tasks.base import SPLITS, Task, named, reads

# A model that reads vectors sees one input per table row; beyond this, it is refused.
MAX_MULTI_HOT = 100_000


class CTRTask(Task):
    """Binary click prediction on fields rows, calibrated and compared with trees."""

    name = "ctr"
    accepts: ClassVar[frozenset[str]] = frozenset({"fields", "vectors"})
    monitor = "val/auroc"
    metric_names = ("loss", "auroc", "accuracy", "normalized_entropy", "ece", "ece_calibrated")

    @classmethod
    def fits(cls, data: Any) -> bool:
        """Fields data: dense features and categorical bags."""
        return getattr(data, "modality", "") == "fields"

    def __init__(self, data: Any) -> None:
        if not self.fits(data):
            raise ValueError(
                f"CTRTask expects fields data (dense features and categorical ids); got "
                f"modality '{getattr(data, 'modality', '?')}'."
            )
        if len(data.classes) != 2:
            raise ValueError(
                f"click prediction needs a binary target; '{data.name}' has "
                f"{len(data.classes)} classes ({', '.join(map(str, data.classes))})."
            )
        super().__init__(data)
        self.base_rate = float(data.train.y.double().mean())
        self.multi_hot_width = int(sum(data.cardinalities))
        self._baselines: dict[str, dict[str, dict[str, float]]] = {}
        self._temperature_cache: tuple[int, float] | None = None

    # -- what the data asks of a model -----------------------------------------------------
    def spec(self) -> DataSpec:
        """Dense width and table rows per field in, one logit out."""
        d = len(self.data.dense_names)
        return DataSpec((d,), 1, fields=tuple(self.data.cardinalities), description="one logit")

    def spec_for(self, model_cls: type) -> DataSpec:
        """`spec()`; a model that reads vectors is sized for the multi-hot view instead."""
        if getattr(model_cls, "reads", "") != "vectors":
            return self.spec()
        d = len(self.data.dense_names)
        return DataSpec((d + self.multi_hot_width,), 1, description="one logit")

    def check_model(self, name: str, cls: type, config: Any) -> None:
        """Refuse a vector model when the multi-hot view would be too wide."""
        if getattr(cls, "reads", "") == "vectors" and self.multi_hot_width > MAX_MULTI_HOT:
            raise ValueError(
                f"'{name}' reads vectors, which would be {self.multi_hot_width:,} multi-hot "
                f"columns here (over {MAX_MULTI_HOT:,}); use wide-deep or dlrm, which embed ids."
            )

    # -- sizes and batches -------------------------------------------------------------------
    def split_size(self, split: str) -> int:
        """Rows of `split`."""
        return len(getattr(self.data, split))

    def batch(self, split: str, index: Tensor) -> tuple[Tensor, ...]:
        """(dense, ids, y), or (dense, ids, weights, y) when the data has per-id weights."""
        part = getattr(self.data, split)
        if part.weights is None:
            return part.dense[index], part.ids[index], part.y[index]
        return part.dense[index], part.ids[index], part.weights[index], part.y[index]

    def multi_hot(self, dense: Tensor, ids: Tensor, weights: Tensor | None) -> Tensor:
        """The multi-hot view of a batch (see `multi_hot`)."""
        return multi_hot(dense, ids, weights, self.data.cardinalities)

    def logits(self, model: nn.Module, inputs: tuple[Tensor, ...]) -> Tensor:
        """One logit (B,) per row."""
        dense, ids, *rest = inputs
        weights = rest[0] if rest else None
        if reads(model) == "vectors":
            out = model(self.multi_hot(dense, ids, weights))
        else:
            out = model(dense, ids, weights)
        return out.float().reshape(len(ids))

    def loss(self, model: nn.Module, batch: tuple[Tensor, ...]) -> Tensor:
        """Binary cross-entropy of the logits."""
        return F.binary_cross_entropy_with_logits(self.logits(model, batch[:-1]), batch[-1].float())

    def outputs(self, model: nn.Module, batch: tuple[Tensor, ...]) -> Tensor:
        """Logits (B,) of one batch (`predict` gathers them; sigmoid gives probabilities)."""
        return self.logits(model, batch[:-1])

    # -- metrics ------------------------------------------------------------------------------
    def evaluate(self, model: nn.Module, split: str, **eval_options: Any) -> dict[str, float]:
        """Log-loss, AUROC, accuracy, normalised entropy, ECE before and after calibration."""
        logits = self.predict(model, split, **eval_options)
        val_logits = logits if split == "val" else self.predict(model, "val", **eval_options)
        t = fit_temperature(val_logits, self.data.val.y)
        return named(split, binary_metrics(logits, self.data_labels(split), self.base_rate, t))

    def data_labels(self, split: str) -> Tensor:
        """Labels (N,) of `split`."""
        return getattr(self.data, split).y

    def baselines(self, split: str) -> dict[str, dict[str, float]]:
        """Base rate, logistic regression and gradient-boosted trees on the same rows.

        Fitted once per task; a second call for the same split gives the same numbers.
        """
        if split not in self._baselines:
            self._baselines[split] = self._fit_baselines(split)
        return self._baselines[split]

    def _fit_baselines(self, split: str) -> dict[str, dict[str, float]]:
        from sklearn.ensemble import HistGradientBoostingClassifier
        from sklearn.linear_model import LogisticRegression

        y = self.data_labels(split)
        rate = torch.full((len(y),), self.base_rate).logit()
        out = {"training base rate": binary_metrics(rate, y, self.base_rate, 1.0)}
        parts = {s: getattr(self.data, s) for s in SPLITS}
        hot = {s: self.multi_hot(p.dense, p.ids, p.weights).numpy() for s, p in parts.items()}
        ys = {s: p.y.numpy() for s, p in parts.items()}
        linear = LogisticRegression(max_iter=2000).fit(hot["train"], ys["train"])
        out["logistic regression (same encoding)"] = self._sklearn(linear, hot, split)
        # Trees read each field's first id as one categorical feature (up to 255 values).
        tables = {s: trees_view(p.dense, p.ids, self.data.cardinalities) for s, p in parts.items()}
        categorical = [
            len(self.data.dense_names) + f
            for f, rows in enumerate(self.data.cardinalities)
            if rows <= 255
        ]
        trees = HistGradientBoostingClassifier(
            categorical_features=categorical or None, random_state=0
        ).fit(tables["train"], ys["train"])
        out["gradient-boosted trees (HistGradientBoosting)"] = self._sklearn(trees, tables, split)
        return out

    def _sklearn(self, fitted: Any, inputs: dict[str, Any], split: str) -> dict[str, float]:
        """Metrics of a fitted scikit-learn classifier, calibrated on validation like ours."""

        def logit_of(s: str) -> Tensor:
            p = torch.from_numpy(fitted.predict_proba(inputs[s])[:, 1]).double()
            return p.clamp(1e-7, 1 - 1e-7).logit().float()

        t = fit_temperature(logit_of("val"), self.data.val.y)
        return binary_metrics(logit_of(split), self.data_labels(split), self.base_rate, t)

    def state(self) -> dict[str, Any]:
        """The training click rate (normalised entropy's reference)."""
        return {"base_rate": self.base_rate}


def multi_hot(
    dense: Tensor, ids: Tensor, weights: Tensor | None, cardinalities: Sequence[int]
) -> Tensor:
    """Dense features beside one column per table row: the id's weight where it occurs.

    Field f's ids occupy columns offset_f .. offset_f + cardinalities[f] - 1 of the multi-hot
    part; padding (id 0) adds nothing.
    """
    offsets = torch.tensor([0, *cardinalities[:-1]], device=ids.device).cumsum(0)
    rows = ids + offsets[None, :, None]  # (B, F, L) global rows
    values = torch.ones_like(ids, dtype=dense.dtype) if weights is None else weights
    values = values * (ids > 0)
    hot = torch.zeros(len(ids), int(sum(cardinalities)), dtype=dense.dtype, device=dense.device)
    hot.scatter_add_(1, rows.flatten(1), values.flatten(1).to(dense.dtype))
    return torch.cat([dense, hot], dim=1)


def trees_view(dense: Tensor, ids: Tensor, cardinalities: Any) -> Any:
    """Dense features beside each field's first id, as one float matrix for trees."""
    return torch.cat([dense.double(), ids[:, :, 0].double()], dim=1).numpy()


def fit_temperature(logits: Tensor, y: Tensor) -> float:
    """The temperature T > 0 minimising the log-loss of logits / T on (logits, y) (Guo, 2017).

    A one-dimensional search: golden section over log T in [log 0.05, log 20].
    """
    z, target = logits.double(), y.double()

    def nll(log_t: float) -> float:
        return F.binary_cross_entropy_with_logits(z / math.exp(log_t), target).item()

    low, high = math.log(0.05), math.log(20.0)
    ratio = (math.sqrt(5) - 1) / 2
    a, b = high - ratio * (high - low), low + ratio * (high - low)
    fa, fb = nll(a), nll(b)
    for _ in range(60):
        if fa < fb:
            high, b, fb = b, a, fa
            a = high - ratio * (high - low)
            fa = nll(a)
        else:
            low, a, fa = a, b, fb
            b = low + ratio * (high - low)
            fb = nll(b)
    return math.exp((low + high) / 2)


def binary_metrics(
    logits: Tensor, y: Tensor, base_rate: float, temperature: float
) -> dict[str, float]:
    """Log-loss, AUROC, accuracy, normalised entropy and ECE (raw and temperature-scaled)."""
    z, target = logits.double(), y.long()
    p = torch.sigmoid(z)
    loss = F.binary_cross_entropy_with_logits(z, target.double()).item()
    rate = min(max(base_rate, 1e-7), 1 - 1e-7)
    entropy = -(rate * math.log(rate) + (1 - rate) * math.log(1 - rate))
    both = bool((target == 0).any() and (target == 1).any())
    calibrated = torch.sigmoid(z / temperature)
    return {
        "loss": loss,
        "auroc": BinaryAUROC()(p.float(), target).item() if both else math.nan,
        "accuracy": ((p > 0.5).long() == target).double().mean().item(),
        "normalized_entropy": loss / entropy,
        "ece": BinaryCalibrationError(n_bins=15, norm="l1")(p.float(), target).item(),
        "ece_calibrated": BinaryCalibrationError(n_bins=15, norm="l1")(
            calibrated.float(), target
        ).item(),
    }
