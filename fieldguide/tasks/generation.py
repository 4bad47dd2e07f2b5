"""Generation: learn the data's distribution, then sample from it (diffusion, flows, VAEs).

The model is chosen first here: a generative model (`trains_for = "generation"`, see
models/base.py) trains on any image or vector data, whatever its labels would train otherwise.

Model space: images as pixels in [0, 1] mapped to [-1, 1]; vectors as the reader standardised
them. Batch: (x, y) with y the class labels (used by class-conditional models). The loss is the
model's own (`model.loss(x, y)`): noise prediction for diffusion, negative ELBO per dimension
for a VAE, negative log-likelihood per dimension for a flow.

Density models (those with `log_prob` or `elbo`) see dequantised images: a pixel of level k of
L levels becomes (k + u) / L with u ~ U[0, 1) drawn anew for every batch, so a continuous
density cannot pile up on the discrete values. Their bits per dimension are an upper bound on
the discrete data's:

    bits/dim = (-log p(x) - D log 2 + D log L) / (D ln 2)

with log p(x) in model space (the D log 2 undoes the map of [0, 1] onto [-1, 1]); for a VAE,
-log p(x) <= -ELBO makes it a looser bound. A class-conditional model is scored given each
image's class, log p(x | y), which is lower than an unconditional model's bits/dim would be:
compare conditional numbers with conditional ones. Vectors get the negative log-likelihood in nats
per example ("nll"). Every evaluation draws its noise (diffusion time steps, VAE latents,
dequantisation) from a generator forked from a fixed seed, so it repeats exactly and leaves
the training stream untouched (a resumed run stays bitwise equal).
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from fieldguide.data.base import ClassificationData
from fieldguide.models.base import DataSpec
from fieldguide.tasks.base import Task, evaluating, named

EVAL_SEED = 20_240_601  # the fixed seed of every evaluation's noise


def is_density(model: nn.Module | type) -> bool:
    """Whether `model` (or its class) gives a log-likelihood (flows) or a bound on it (VAEs)."""
    return callable(getattr(model, "log_prob", None)) or callable(getattr(model, "elbo", None))


def log_likelihood(model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
    """The log-likelihood (flows) or its ELBO (VAEs) of each example, nats, in model space."""
    if callable(getattr(model, "log_prob", None)):
        return model.log_prob(x, y)
    return model.elbo(x, y)


class GenerationTask(Task):
    """Train a generative model on images (C, H, W) or vectors (D,), with their labels."""

    name = "generation"
    accepts: ClassVar[frozenset[str]] = frozenset({"images", "vectors"})
    output = "generative"
    monitor = "val/loss"
    metric_names = ("loss", "bits_per_dim", "nll")

    @classmethod
    def fits(cls, data: Any) -> bool:
        """Never chosen by the data alone: the model asks for it (`trains_for`)."""
        return False

    @classmethod
    def takes(cls, data: Any) -> bool:
        """Whether this task can train a generative model on `data`: labelled images or rows."""
        return isinstance(data, ClassificationData) and data.modality in ("images", "tabular")

    def __init__(self, data: ClassificationData) -> None:
        if not self.takes(data):
            raise ValueError(
                f"generation trains on images or table rows; '{data.name}' holds "
                f"{getattr(data, 'modality', type(data).__name__)}, so pick a model for it "
                f"with `fieldguide list`."
            )
        super().__init__(data)
        self.images = data.modality == "images"
        prep = data.preprocessing
        if self.images:
            self.mean = torch.tensor(prep["mean"], dtype=torch.float32)[:, None, None]
            self.std = torch.tensor(prep["std"], dtype=torch.float32)[:, None, None]
            self.levels = int(prep.get("levels", 256))
        self.num_classes = len(data.classes)
        self.dequantize = False  # set from the model class by `check_model`
        self.density = True  # whether the model gives a likelihood: baselines compare with it

    def accepted(self) -> frozenset[str]:
        """Image models for images, vector models for rows."""
        return frozenset({"images" if self.images else "vectors"})

    def spec(self) -> DataSpec:
        """One example's shape in, the data's class count for conditioning."""
        return DataSpec(
            tuple(self.data.input_shape),
            self.num_classes,
            output="generative",
            description=f"{self.num_classes} classes to condition on",
        )

    def check_model(self, name: str, cls: type, config: Any) -> None:
        """Note whether the model is a density model: those get dequantised images."""
        self.density = is_density(cls)
        self.dequantize = self.images and self.density

    # -- model space ---------------------------------------------------------------------------
    def to_model_space(self, x: Tensor, noise: Tensor | None = None) -> Tensor:
        """Standardised images to [-1, 1]: (k + noise) / L for density models, else k / (L - 1)."""
        if not self.images:
            return x
        pixels = x * self.std + self.mean  # [0, 1], on the grid k / (L - 1)
        if noise is None:
            return pixels * 2 - 1
        k = (pixels * (self.levels - 1)).round()
        return (k + noise) / self.levels * 2 - 1

    def split_size(self, split: str) -> int:
        """Examples of `split`."""
        return len(getattr(self.data, split))

    def batch(self, split: str, index: Tensor) -> tuple[Tensor, ...]:
        """(x in model space, y); dequantisation noise from torch's global generator."""
        part = getattr(self.data, split)
        x = part.x[index]
        noise = torch.rand(x.shape) if self.dequantize else None
        return self.to_model_space(x, noise), part.y[index]

    def loss(self, model: nn.Module, batch: tuple[Tensor, ...]) -> Tensor:
        """The model's own training loss."""
        x, y = batch
        return model.loss(x, y)

    def evaluate(self, model: nn.Module, split: str, **eval_options: Any) -> dict[str, float]:
        """Mean loss, and bits/dim (images) or nll (vectors) of density models, on `split`."""
        device = eval_options.get("device", "cpu")
        batch_size = eval_options.get("batch_size", 256)
        total = self.split_size(split)
        sums: dict[str, float] = {"loss": 0.0}
        dims = math.prod(self.data.input_shape)
        density = is_density(model)
        devices = [torch.device(device)] if torch.device(device).type == "cuda" else []
        with torch.random.fork_rng(devices=devices), evaluating(model):
            torch.manual_seed(EVAL_SEED)
            for index in torch.arange(total).split(batch_size):
                x, y = (t.to(device) for t in self.batch(split, index))
                sums["loss"] += float(model.loss(x, y)) * len(index)
                if density:
                    nll = -log_likelihood(model, x, y).double().sum().item()
                    sums.setdefault("nll", 0.0)
                    sums["nll"] += nll
        metrics = {k: v / total for k, v in sums.items()}
        if density and self.images:
            nll = metrics.pop("nll")
            metrics["bits_per_dim"] = (nll - dims * math.log(2) + dims * math.log(self.levels)) / (
                dims * math.log(2)
            )
        return named(split, metrics)

    def baselines(self, split: str) -> dict[str, dict[str, float]]:
        """What a density model should beat: independent pixels, or one Gaussian for vectors.

        Images: each pixel an independent categorical over its L levels, fitted on the training
        images with add-one smoothing: bits/dim of `split`. Vectors: one full-covariance
        Gaussian fitted on the training rows: nll of `split` in nats per example. None for
        a model without a likelihood (diffusion), whose loss they could not be set beside.
        """
        if not self.density:
            return {}
        train, part = self.data.train.x, getattr(self.data, split).x
        if self.images:
            k_train = ((train * self.std + self.mean) * (self.levels - 1)).round().long()
            k_part = ((part * self.std + self.mean) * (self.levels - 1)).round().long()
            k_train = k_train.clamp(0, self.levels - 1).flatten(1)  # (N, D)
            k_part = k_part.clamp(0, self.levels - 1).flatten(1)
            counts = torch.ones(k_train.shape[1], self.levels, dtype=torch.float64)
            counts.scatter_add_(1, k_train.T, torch.ones(k_train.T.shape, dtype=torch.float64))
            log_p = (counts / counts.sum(1, keepdim=True)).log()  # (D, L)
            picked = log_p.gather(1, k_part.T)  # (D, N)
            bpd = float(-picked.mean() / math.log(2))
            return {"independent pixels (histogram per pixel)": {"bits_per_dim": bpd}}
        mean = train.double().mean(0)
        cov = torch.cov(train.double().T) + 1e-6 * torch.eye(train.shape[1], dtype=torch.float64)
        gauss = torch.distributions.MultivariateNormal(mean, covariance_matrix=cov)
        return {"one Gaussian of train": {"nll": float(-gauss.log_prob(part.double()).mean())}}

    def state(self) -> dict[str, Any]:
        """How model space maps to pixels, for `fieldguide sample`."""
        if not self.images:
            return {"space": "vectors", "shape": list(self.data.input_shape)}
        return {
            "space": "images",
            "shape": list(self.data.input_shape),
            "levels": self.levels,
            "dequantize": self.dequantize,
        }
