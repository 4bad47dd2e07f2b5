"""Semantic segmentation: one class per pixel, trained on random crops, scored on whole images.

Batch (train): (x (B, C, S, S), y (B, S, S)): random S x S crops of the training images with a
random flip and quarter turn, applied alike to image and mask and drawn from torch's global
generator, which checkpoints save and restore, so a resumed run draws the same crops. An
epoch is `crops_per_epoch` crops: by default one per crop-sized area of the training pixels,
but at least 1,024 (at most 16 per area), so that one large image still makes an epoch.

Model: per-pixel logits (B, K, H, W) for any H and W; K = 1 for two classes (the logit of the
second, "foreground"), else K = the number of classes.

Losses (`loss`): "ce" (cross-entropy; binary cross-entropy for K = 1), "dice" (soft Dice,
averaged over the foreground classes, 1 - Dice), "focal" (cross-entropy scaled by (1 - p)^2 to
weigh hard pixels), and "ce+dice" (the sum, the default). `class_weights="balanced"` weighs
each class by its inverse pixel frequency in the training masks (for K = 1, the positive
weight n_background / n_foreground), for rare classes.

Metrics, on whole validation or test images, from one confusion matrix over all their pixels:
pixel_accuracy; iou per class (Jaccard: TP / (TP + FP + FN)), miou their mean over the classes
present in the truth or the prediction; dice (2 TP / (2 TP + FP + FN)) and fg_iou averaged
over the foreground classes (every class but the first).
"""

from __future__ import annotations

import math
from contextlib import nullcontext
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fieldguide.data.segmentation import SegmentationData
from fieldguide.models.base import DataSpec
from fieldguide.tasks.base import Task, evaluating, named

LOSSES = ("ce", "dice", "focal", "ce+dice")
DEFAULT_CROP = 128
CROPS_PER_AREA = 16  # most crops per epoch of each crop-sized area of training pixels
MIN_CROPS = 1024  # crops per epoch at least, where that many views exist
FOCAL_GAMMA = 2.0
DICE_SMOOTH = 1.0  # keeps soft Dice defined where a crop holds no pixel of a class


def confusion(pred: Tensor, truth: Tensor, k: int) -> Tensor:
    """(k, k) int64 counts: row = true class, column = predicted class."""
    return torch.bincount(truth.flatten() * k + pred.flatten(), minlength=k * k).view(k, k)


def scores(matrix: Tensor) -> dict[str, float]:
    """Pixel accuracy, mean IoU, foreground Dice and IoU, and per-class IoU from a confusion."""
    m = matrix.double()
    tp = m.diag()
    fp, fn = m.sum(0) - tp, m.sum(1) - tp
    present = (tp + fp + fn) > 0
    iou = torch.where(present, tp / (tp + fp + fn).clamp_min(1), torch.nan)
    dice = torch.where(present, 2 * tp / (2 * tp + fp + fn).clamp_min(1), torch.nan)
    fg = slice(1, None)
    out = {
        "pixel_accuracy": float(tp.sum() / m.sum().clamp_min(1)),
        "miou": float(iou[present].mean()) if present.any() else math.nan,
        "dice": float(dice[fg].nanmean()),
        "fg_iou": float(iou[fg].nanmean()),
    }
    for c, value in enumerate(iou.tolist()):
        out[f"iou_{c}"] = value
    return out


def otsu_threshold(values: Tensor, bins: int = 256) -> float:
    """The threshold that maximises the between-class variance of `values` (Otsu, 1979)."""
    v = values.double().flatten()
    lo, hi = float(v.min()), float(v.max())
    if hi <= lo:
        return lo
    hist = torch.histc(v, bins=bins, min=lo, max=hi)
    centres = lo + (torch.arange(bins, dtype=torch.float64) + 0.5) * (hi - lo) / bins
    weight = hist.cumsum(0)  # pixels at or below each bin
    total = weight[-1]
    mass = (hist * centres).cumsum(0)
    w0, w1 = weight, total - weight
    mean0 = mass / w0.clamp_min(1)
    mean1 = (mass[-1] - mass) / w1.clamp_min(1)
    between = w0 * w1 * (mean0 - mean1) ** 2
    between[(w0 == 0) | (w1 == 0)] = -1
    i = int(between.argmax())
    return float(lo + (i + 1) * (hi - lo) / bins)  # the upper edge of the last background bin


class SegmentationTask(Task):
    """Per-pixel classification of `SegmentationData`, on random crops, scored on whole images."""

    name = "segmentation"
    accepts: ClassVar[frozenset[str]] = frozenset({"images"})
    output = "per-pixel"
    monitor = "val/miou"
    metric_names = ("loss", "pixel_accuracy", "miou", "dice", "fg_iou")
    options = ("class_weights", "loss", "crop")

    @classmethod
    def fits(cls, data: Any) -> bool:
        """Images with masks (`SegmentationData`)."""
        return isinstance(data, SegmentationData)

    def __init__(
        self,
        data: SegmentationData,
        *,
        loss: str = "ce+dice",
        class_weights: str = "none",
        crop: int = 0,
        crops_per_epoch: int = 0,
    ) -> None:
        super().__init__(data)
        if loss not in LOSSES:
            raise ValueError(f"segmentation expects loss in {', '.join(LOSSES)}; got {loss!r}.")
        if class_weights not in ("none", "balanced"):
            raise ValueError(
                f"segmentation expects class_weights 'none' or 'balanced'; got {class_weights!r}."
            )
        _, min_h, min_w = data.input_shape
        if crop < 0 or crop > min(min_h, min_w):
            raise ValueError(
                f"segmentation expects crop between 1 and {min(min_h, min_w)} (the smallest "
                f"training image is {min_h}x{min_w}), or 0 for the default; got {crop}."
            )
        self.crop = crop or min(DEFAULT_CROP, min_h, min_w)
        self.loss_name = loss
        self.num_classes = len(data.classes)
        self.k = 1 if self.num_classes == 2 else self.num_classes  # logits per pixel
        # An epoch covers every training pixel about once, and at least MIN_CROPS crops (up to
        # CROPS_PER_AREA views of each crop-sized area), so a few large images still make steps.
        area = math.ceil(data.train.pixels / self.crop**2)
        self.crops_per_epoch = crops_per_epoch or max(area, min(CROPS_PER_AREA * area, MIN_CROPS))
        counts = torch.zeros(self.num_classes, dtype=torch.float64)
        for mask in data.train.masks:
            counts += torch.bincount(mask.flatten(), minlength=self.num_classes).double()
        self.class_counts = counts
        self.class_weights: Tensor | None = None
        if class_weights == "balanced":
            weights = counts.sum() / (self.num_classes * counts.clamp_min(1))
            self.class_weights = (weights / weights.mean()).float()

    # -- the contract ----------------------------------------------------------------------
    def spec(self) -> DataSpec:
        """(C, crop, crop) images in, K logits per pixel out."""
        c = self.data.input_shape[0]
        return DataSpec(
            (c, self.crop, self.crop),
            self.k,
            output="per-pixel",
            description=f"{self.num_classes} classes",
        )

    def split_size(self, split: str) -> int:
        """Crops per epoch for train; whole images for val and test."""
        return self.crops_per_epoch if split == "train" else len(getattr(self.data, split))

    def batch(self, split: str, index: Tensor) -> tuple[Tensor, ...]:
        """Random augmented crops for train (image index % n); whole images otherwise."""
        part = getattr(self.data, split)
        if split != "train":
            if len(index) != 1 and len({tuple(part.images[i].shape) for i in index}) > 1:
                raise ValueError(
                    "segmentation batches whole validation and test images one at a time; "
                    "images of different sizes cannot share a batch."
                )
            return (
                torch.stack([part.images[i] for i in index]),
                torch.stack([part.masks[i] for i in index]),
            )
        s, xs, ys = self.crop, [], []
        for i in index.tolist():
            image, mask = part.images[i % len(part)], part.masks[i % len(part)]
            h, w = mask.shape
            top = int(torch.randint(0, h - s + 1, ()))
            left = int(torch.randint(0, w - s + 1, ()))
            x = image[:, top : top + s, left : left + s]
            y = mask[top : top + s, left : left + s]
            flip, turns = torch.randint(0, 2, (2,)).tolist(), int(torch.randint(0, 4, ()))
            if flip[0]:
                x, y = x.flip(-1), y.flip(-1)
            if flip[1]:
                x, y = x.flip(-2), y.flip(-2)
            x, y = torch.rot90(x, turns, (-2, -1)), torch.rot90(y, turns, (-2, -1))
            xs.append(x)
            ys.append(y)
        return torch.stack(xs).contiguous(), torch.stack(ys).contiguous()

    def loss(self, model: nn.Module, batch: tuple[Tensor, ...]) -> Tensor:
        """The configured loss of the batch's logits (B, K, H, W) against masks (B, H, W)."""
        x, y = batch
        return self.pixel_loss(model(x), y)

    def pixel_loss(self, logits: Tensor, y: Tensor) -> Tensor:
        """`loss` for given logits: mean over pixels (CE, focal), over classes (Dice)."""
        logits = logits.float()
        total = logits.new_zeros(())
        if self.loss_name in ("ce", "ce+dice"):
            total = total + self._cross_entropy(logits, y, gamma=0.0)
        if self.loss_name == "focal":
            total = total + self._cross_entropy(logits, y, gamma=FOCAL_GAMMA)
        if self.loss_name in ("dice", "ce+dice"):
            total = total + 1 - self._soft_dice(logits, y)
        return total

    def _cross_entropy(self, logits: Tensor, y: Tensor, gamma: float) -> Tensor:
        """Per-pixel (binary) cross-entropy, class weighted, scaled by (1 - p_true)^gamma."""
        w = self.class_weights.to(logits.device) if self.class_weights is not None else None
        if self.k == 1:
            z, target = logits[:, 0], y.float()
            nll = F.binary_cross_entropy_with_logits(z, target, reduction="none")
            if w is not None:
                nll = nll * torch.where(y.bool(), w[1], w[0])
            log_p_true = -F.binary_cross_entropy_with_logits(z, target, reduction="none")
        else:
            log_probs = logits.log_softmax(1)
            log_p_true = log_probs.gather(1, y[:, None]).squeeze(1)
            nll = -log_p_true
            if w is not None:
                nll = nll * w[y]
        if gamma:
            nll = nll * (1 - log_p_true.exp()).pow(gamma)
        return nll.mean()

    def _soft_dice(self, logits: Tensor, y: Tensor) -> Tensor:
        """Soft Dice over the batch, averaged over the foreground classes."""
        if self.k == 1:
            probs = logits[:, 0].sigmoid()[:, None]
            truth = y.float()[:, None]
        else:
            probs = logits.softmax(1)[:, 1:]
            truth = F.one_hot(y, self.num_classes).permute(0, 3, 1, 2).float()[:, 1:]
        inter = (probs * truth).sum((0, 2, 3))
        sizes = probs.sum((0, 2, 3)) + truth.sum((0, 2, 3))
        return ((2 * inter + DICE_SMOOTH) / (sizes + DICE_SMOOTH)).mean()

    def classes_of(self, logits: Tensor) -> Tensor:
        """Predicted class ids (B, H, W) from logits (B, K, H, W)."""
        if self.k == 1:
            return (logits[:, 0] > 0).long()
        return logits.argmax(1)

    def outputs(self, model: nn.Module, batch: tuple[Tensor, ...]) -> Tensor:
        """Class probabilities (B, num_classes, H, W) of one batch."""
        logits = model(batch[0]).float()
        if self.k == 1:
            p = logits.sigmoid()
            return torch.cat([1 - p, p], 1)
        return logits.softmax(1)

    def evaluate(self, model: nn.Module, split: str, **eval_options: Any) -> dict[str, float]:
        """Loss and pixel metrics of `split`'s whole images, image by image."""
        device = eval_options.get("device", "cpu")
        autocast = eval_options.get("autocast")
        part = getattr(self.data, split)
        matrix = torch.zeros(self.num_classes, self.num_classes, dtype=torch.int64)
        loss_sum, pixels = 0.0, 0
        with evaluating(model):
            for image, mask in zip(part.images, part.masks, strict=True):
                x, y = image[None].to(device), mask[None].to(device)
                with autocast or nullcontext():
                    logits = model(x)
                loss_sum += float(self.pixel_loss(logits, y)) * y.numel()
                pixels += y.numel()
                pred = self.classes_of(logits.float()).cpu()
                matrix += confusion(pred, mask[None], self.num_classes)
        metrics = {"loss": loss_sum / max(pixels, 1), **scores(matrix)}
        return named(split, metrics)

    def baselines(self, split: str) -> dict[str, dict[str, float]]:
        """Every pixel the training majority class; and, with one channel and two classes, Otsu.

        Otsu's threshold is fitted on the training pixels and applied to `split` (foreground
        above it when the training foreground is brighter on average, else below).
        """
        part = getattr(self.data, split)
        k = self.num_classes
        majority = int(self.class_counts.argmax())
        matrix = sum(confusion(torch.full_like(m, majority), m, k) for m in part.masks)
        out = {"majority class of train": _summary(scores(matrix))}
        if k == 2 and self.data.input_shape[0] == 1:
            train_pixels = torch.cat([i.flatten() for i in self.data.train.images])
            train_masks = torch.cat([m.flatten() for m in self.data.train.masks])
            t = otsu_threshold(train_pixels)
            bright = bool(
                train_pixels[train_masks == 1].mean() > train_pixels[train_masks == 0].mean()
            )
            matrix = sum(
                confusion(((i[0] > t) if bright else (i[0] <= t)).long(), m, 2)
                for i, m in zip(part.images, part.masks, strict=True)
            )
            out["Otsu threshold of train"] = _summary(scores(matrix))
        return out

    def state(self) -> dict[str, Any]:
        """The crop size and logits per pixel, for applying the run to new images."""
        return {"crop": self.crop, "logits": self.k}


def _summary(metrics: dict[str, float]) -> dict[str, float]:
    return {k: metrics[k] for k in ("pixel_accuracy", "miou", "dice", "fg_iou")}
