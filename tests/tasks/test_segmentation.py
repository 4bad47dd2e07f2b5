"""SegmentationTask: metrics and losses against hand computations, aligned augmented crops,
whole-image evaluation at odd sizes, GroupNorm vs BatchNorm in train mode, and end to end."""

import math
import re
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from fieldguide.api.run import train
from fieldguide.cli.main import main
from fieldguide.data import load_data
from fieldguide.data.segmentation import SegmentationData, SegmentationSplit
from fieldguide.models.registry import create_model
from fieldguide.tasks import make_task
from fieldguide.tasks.segmentation import SegmentationTask, confusion, otsu_threshold, scores

# ---------------------------------------------------------------------------------------------
# Synthetic data: the mask is a fixed function of the image's first channel
# ---------------------------------------------------------------------------------------------


def label_of(x: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Class ids from the first channel: x > 0 for two classes, else cut at -0.5 and 0.5."""
    if num_classes == 2:
        return (x[..., 0, :, :] > 0).long()
    return torch.bucketize(x[..., 0, :, :], torch.tensor([-0.5, 0.5]))


def split(sizes, channels, num_classes, seed):
    g = torch.Generator().manual_seed(seed)
    images = [torch.randn(channels, h, w, generator=g) for h, w in sizes]
    masks = [label_of(x, num_classes) for x in images]
    return SegmentationSplit(images, masks, [f"img{i}" for i in range(len(images))])


def synthetic(num_classes=2, channels=1, train_sizes=((20, 24), (17, 29)), eval_sizes=None):
    """Synthetic: random images whose masks follow `label_of`; whole val/test images."""
    eval_sizes = eval_sizes or ((37, 53), (29, 41))
    classes = ["background", "foreground"] if num_classes == 2 else list("abcdefg"[:num_classes])
    return SegmentationData(
        name="synthetic-masks",
        train=split(train_sizes, channels, num_classes, 0),
        val=split(eval_sizes, channels, num_classes, 1),
        test=split(eval_sizes[::-1], channels, num_classes, 2),
        classes=classes,
        description="synthetic: mask = a threshold of channel 0",
        synthetic=True,
    )


class Oracle(nn.Module):
    """Logits that give the true mask (via `label_of`); records the mode it was called in."""

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.modes: list[bool] = []

    def forward(self, x):
        self.modes.append(self.training)
        y = label_of(x, self.num_classes)
        if self.num_classes == 2:
            return (y[:, None].float() * 2 - 1) * 20  # (B, 1, H, W)
        return F.one_hot(y, self.num_classes).permute(0, 3, 1, 2).float() * 20  # (B, K, H, W)


# ---------------------------------------------------------------------------------------------
# confusion and scores
# ---------------------------------------------------------------------------------------------


def grid(text: str) -> torch.Tensor:
    return torch.tensor([[int(c) for c in row.split()] for row in text.strip().split("\n")])


def test_binary_scores_equal_hand_counts():
    truth = grid("1 1 0 0\n1 1 0 0\n0 0 0 0\n0 0 0 0")
    pred = grid("1 1 1 0\n1 0 0 0\n0 0 0 0\n0 0 0 0")
    # foreground: TP 3, FP 1 at (0, 2), FN 1 at (1, 1); background: TP 11, FP 1, FN 1
    m = confusion(pred, truth, 2)
    assert m.tolist() == [[11, 1], [1, 3]]  # row = truth, column = prediction
    s = scores(m)
    assert s["iou_1"] == pytest.approx(3 / 5)
    assert s["iou_0"] == pytest.approx(11 / 13)
    assert s["miou"] == pytest.approx((3 / 5 + 11 / 13) / 2)
    assert s["fg_iou"] == pytest.approx(3 / 5)
    assert s["dice"] == pytest.approx(2 * 3 / (2 * 3 + 1 + 1))
    assert s["pixel_accuracy"] == pytest.approx(14 / 16)


def test_multiclass_scores_leave_an_absent_class_out_of_miou():
    truth = grid("0 0 1 1\n0 0 1 1\n2 2 2 2\n2 2 2 2")
    pred = grid("0 1 1 1\n0 0 1 0\n2 2 2 1\n2 2 2 2")
    # class 0: TP 3, FP 1, FN 1; class 1: TP 3, FP 2, FN 1; class 2: TP 7, FP 0, FN 1;
    # class 3 appears in neither
    s = scores(confusion(pred, truth, 4))
    iou = [3 / 5, 3 / 6, 7 / 8]
    for c, value in enumerate(iou):
        assert s[f"iou_{c}"] == pytest.approx(value)
    assert math.isnan(s["iou_3"])
    assert s["miou"] == pytest.approx(sum(iou) / 3)
    assert s["fg_iou"] == pytest.approx((3 / 6 + 7 / 8) / 2)
    assert s["dice"] == pytest.approx((6 / 9 + 14 / 15) / 2)
    assert s["pixel_accuracy"] == pytest.approx(13 / 16)


@pytest.mark.parametrize("k", [2, 3, 5])
def test_a_perfect_prediction_scores_one(k):
    truth = torch.randint(0, k, (2, 9, 7))
    s = scores(confusion(truth, truth, k))
    for key in ("miou", "dice", "fg_iou", "pixel_accuracy"):
        assert s[key] == 1.0, key


# ---------------------------------------------------------------------------------------------
# Otsu
# ---------------------------------------------------------------------------------------------


def between_class_variance(v: torch.Tensor, t: float) -> float:
    low, high = v[v <= t], v[v > t]
    if len(low) == 0 or len(high) == 0:
        return 0.0
    w0, w1 = len(low) / len(v), len(high) / len(v)
    return float(w0 * w1 * (low.mean() - high.mean()) ** 2)


def test_otsu_splits_two_modes_as_well_as_a_brute_force_search():
    g = torch.Generator().manual_seed(0)
    v = torch.cat([torch.randn(3000, generator=g), 6 + torch.randn(1000, generator=g)]).double()
    t = otsu_threshold(v)
    assert 2.0 < t < 4.0
    # brute force: every gap between sorted values, between-class variance by prefix sums
    s = v.sort().values
    n = len(s)
    k = torch.arange(1, n, dtype=torch.float64)  # values in the low class
    m0 = s.cumsum(0)[:-1] / k
    m1 = (s.sum() - s.cumsum(0)[:-1]) / (n - k)
    between = (k / n) * (1 - k / n) * (m0 - m1) ** 2
    best = int(between.argmax())
    t_best = float((s[best] + s[best + 1]) / 2)
    assert between_class_variance(v, t) >= 0.999 * float(between[best])
    assert abs(t - t_best) < 0.25
    # the bright mode is above, the dark below
    assert (v[3000:] > t).float().mean() > 0.97 and (v[:3000] <= t).float().mean() > 0.97


def test_otsu_of_constant_values_is_that_value():
    assert otsu_threshold(torch.full((10,), 0.25)) == 0.25


# ---------------------------------------------------------------------------------------------
# Losses
# ---------------------------------------------------------------------------------------------


def test_soft_dice_of_a_perfect_confident_prediction_is_near_zero():
    for k in (2, 3):
        task = SegmentationTask(synthetic(k), loss="dice")
        x = torch.randn(2, 1, 9, 11)
        y = label_of(x, k)
        assert float(task.pixel_loss(Oracle(k)(x), y)) < 1e-6
        # confidently wrong everywhere (a negated image flips every class but a middle one)
        if k == 2:
            assert float(task.pixel_loss(Oracle(k)(-x), y)) > 0.9


def test_soft_dice_equals_its_formula_for_two_classes():
    task = SegmentationTask(synthetic(2), loss="dice")
    z = torch.tensor([[[[2.0, -1.0], [0.5, -3.0]]]])
    y = torch.tensor([[[1, 0], [0, 1]]])
    p = torch.sigmoid(z[0, 0])
    t = y[0].float()
    expected = 1 - (2 * (p * t).sum() + 1) / (p.sum() + t.sum() + 1)
    assert float(task.pixel_loss(z, y)) == pytest.approx(float(expected), rel=1e-6)


def test_binary_ce_equals_torch_bce_with_logits():
    task = SegmentationTask(synthetic(2), loss="ce")
    assert task.k == 1 and task.spec().num_outputs == 1
    g = torch.Generator().manual_seed(1)
    z = torch.randn(3, 1, 8, 5, generator=g) * 3
    y = torch.randint(0, 2, (3, 8, 5), generator=g)
    expected = F.binary_cross_entropy_with_logits(z[:, 0], y.float())
    assert float(task.pixel_loss(z, y)) == pytest.approx(float(expected), rel=1e-6)


def test_focal_equals_its_formula_and_never_exceeds_ce():
    z = torch.tensor([[[[2.0, -1.0], [0.5, -3.0]]]])
    y = torch.tensor([[[1, 0], [0, 1]]])
    by_hand = []
    for zi, yi in zip(z.flatten().tolist(), y.flatten().tolist(), strict=True):
        p = 1 / (1 + math.exp(-zi))
        p_true = p if yi == 1 else 1 - p
        by_hand.append(-((1 - p_true) ** 2) * math.log(p_true))
    focal = SegmentationTask(synthetic(2), loss="focal")
    ce = SegmentationTask(synthetic(2), loss="ce")
    assert float(focal.pixel_loss(z, y)) == pytest.approx(sum(by_hand) / 4, rel=1e-6)
    g = torch.Generator().manual_seed(2)
    for k, z, y in (
        (2, torch.randn(2, 1, 6, 6, generator=g) * 4, torch.randint(0, 2, (2, 6, 6), generator=g)),
        (3, torch.randn(2, 3, 6, 6, generator=g) * 4, torch.randint(0, 3, (2, 6, 6), generator=g)),
    ):
        focal = SegmentationTask(synthetic(k), loss="focal")
        ce = SegmentationTask(synthetic(k), loss="ce")
        assert float(focal.pixel_loss(z, y)) < float(ce.pixel_loss(z, y))


def test_multiclass_losses_match_torch_and_hand_formulas():
    data = synthetic(3)
    g = torch.Generator().manual_seed(3)
    z = torch.randn(2, 3, 7, 6, generator=g)
    y = torch.randint(0, 3, (2, 7, 6), generator=g)
    ce = SegmentationTask(data, loss="ce")
    assert ce.k == 3 and ce.spec().num_outputs == 3
    assert float(ce.pixel_loss(z, y)) == pytest.approx(float(F.cross_entropy(z, y)), rel=1e-6)
    log_p = z.log_softmax(1).gather(1, y[:, None])[:, 0]
    focal = -((1 - log_p.exp()) ** 2 * log_p).mean()
    got = SegmentationTask(data, loss="focal").pixel_loss(z, y)
    assert float(got) == pytest.approx(float(focal), rel=1e-6)
    # soft Dice over the foreground classes 1 and 2 only, then averaged
    p, t = z.softmax(1), F.one_hot(y, 3).permute(0, 3, 1, 2).float()
    dice = [
        (2 * (p[:, c] * t[:, c]).sum() + 1) / (p[:, c].sum() + t[:, c].sum() + 1) for c in (1, 2)
    ]
    expected = F.cross_entropy(z, y) + 1 - (dice[0] + dice[1]) / 2
    task = SegmentationTask(data, loss="ce+dice")
    assert float(task.pixel_loss(z, y)) == pytest.approx(float(expected), rel=1e-6)
    z.requires_grad_(True)
    task.pixel_loss(z, y).backward()
    assert torch.isfinite(z.grad).all() and z.grad.abs().sum() > 0


def test_balanced_class_weights_are_inverse_frequencies_with_mean_one():
    data = synthetic(3)
    counts = torch.bincount(torch.cat([m.flatten() for m in data.train.masks]), minlength=3)
    inverse = 1 / counts.double()
    expected = inverse / inverse.mean()
    task = SegmentationTask(data, loss="ce", class_weights="balanced")
    torch.testing.assert_close(task.class_weights.double(), expected, rtol=1e-6, atol=0)
    assert float(task.class_weights.mean()) == pytest.approx(1.0)
    # the rarest class weighs most
    assert int(task.class_weights.argmax()) == int(counts.argmin())
    # weighted CE: each pixel's negative log-likelihood times its true class's weight
    g = torch.Generator().manual_seed(4)
    z = torch.randn(2, 3, 5, 5, generator=g)
    y = torch.randint(0, 3, (2, 5, 5), generator=g)
    nll = F.cross_entropy(z, y, reduction="none")
    by_hand = (nll * task.class_weights[y]).mean()
    assert float(task.pixel_loss(z, y)) == pytest.approx(float(by_hand), rel=1e-6)


def test_binary_balanced_weights_give_the_foreground_n_background_over_n_foreground():
    data = synthetic(2)
    task = SegmentationTask(data, loss="ce", class_weights="balanced")
    n_bg, n_fg = task.class_counts.tolist()
    w = task.class_weights
    assert float(w[1] / w[0]) == pytest.approx(n_bg / n_fg, rel=1e-5)
    z = torch.randn(1, 1, 4, 4)
    y = torch.randint(0, 2, (1, 4, 4))
    nll = F.binary_cross_entropy_with_logits(z[:, 0], y.float(), reduction="none")
    by_hand = (nll * torch.where(y.bool(), w[1], w[0])).mean()
    assert float(task.pixel_loss(z, y)) == pytest.approx(float(by_hand), rel=1e-6)


def test_bad_options_are_refused_in_one_sentence():
    data = synthetic(2)
    with pytest.raises(ValueError, match="loss") as info:
        SegmentationTask(data, loss="huber")
    assert one_sentence(str(info.value))
    with pytest.raises(ValueError, match="class_weights"):
        SegmentationTask(data, class_weights="inverse")
    with pytest.raises(ValueError, match="crop between 1 and 17"):
        SegmentationTask(data, crop=18)


# ---------------------------------------------------------------------------------------------
# Augmented crops
# ---------------------------------------------------------------------------------------------


def dihedral(x: torch.Tensor) -> list[torch.Tensor]:
    """The 8 flips and quarter turns of x (..., S, S)."""
    return [torch.rot90(f, r, (-2, -1)) for f in (x, x.flip(-1)) for r in range(4)]


@pytest.mark.parametrize("channels", [1, 2])
def test_crops_keep_image_and_mask_aligned(channels):
    data = synthetic(2, channels=channels)
    task = SegmentationTask(data, crop=8)
    torch.manual_seed(5)
    x, y = task.batch("train", torch.arange(64))
    assert x.shape == (64, channels, 8, 8) and y.shape == (64, 8, 8)
    # the mask relation holds pixel for pixel on every crop, after any flip or turn
    assert y.equal(label_of(x, 2))
    # each crop is one of the 8 flips/turns of a window of its source image, and all 8 occur
    seen = set()
    for i in range(64):
        source = data.train.images[i % 2]
        windows = source.unfold(1, 8, 1).unfold(2, 8, 1)  # (C, nh, nw, 8, 8)
        found = [
            j
            for j, t in enumerate(dihedral(x[i]))
            if (windows == t[:, None, None]).all(-1).all(-1).all(0).any()
        ]
        assert found, f"crop {i} is no window of its image"
        seen.update(found)
    assert seen == set(range(8))


def test_crops_repeat_with_the_torch_seed_and_change_with_it():
    task = SegmentationTask(synthetic(3, channels=2), crop=8)
    index = torch.arange(6)
    torch.manual_seed(11)
    a = task.batch("train", index)
    torch.manual_seed(11)
    b = task.batch("train", index)
    torch.manual_seed(12)
    c = task.batch("train", index)
    assert a[0].equal(b[0]) and a[1].equal(b[1])
    assert not a[0].equal(c[0])


# ---------------------------------------------------------------------------------------------
# Evaluation on whole images
# ---------------------------------------------------------------------------------------------


def test_whole_images_of_odd_sizes_evaluate_with_a_unet():
    data = synthetic(2, eval_sizes=((37, 53), (31, 19)))
    task = SegmentationTask(data)
    torch.manual_seed(0)
    model = task.build_model("unet-tiny")
    for split in ("val", "test"):
        metrics = task.evaluate(model, split)
        assert set(metrics) >= {f"{split}/{k}" for k in task.metric_names}
        assert all(math.isfinite(metrics[f"{split}/{k}"]) for k in ("loss", "miou"))
        assert 0 <= metrics[f"{split}/pixel_accuracy"] <= 1


@pytest.mark.parametrize("k", [2, 3])
def test_a_model_that_outputs_the_true_mask_scores_one_and_keeps_its_mode(k):
    task = SegmentationTask(synthetic(k))
    oracle = Oracle(k)
    oracle.train()
    metrics = task.evaluate(oracle, "val")
    assert metrics["val/miou"] == 1.0
    assert metrics["val/pixel_accuracy"] == 1.0
    assert metrics["val/dice"] == 1.0
    assert metrics["val/loss"] < 1e-3
    assert oracle.training and oracle.modes == [False, False]  # eval inside, train after
    oracle.eval()
    task.evaluate(oracle, "test")
    assert not oracle.training


# ---------------------------------------------------------------------------------------------
# GroupNorm vs BatchNorm at batch 2, train mode
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("norm, independent", [("group", True), ("batch", False)])
def test_train_mode_output_depends_on_the_other_sample_only_with_batchnorm(norm, independent):
    torch.manual_seed(0)
    model = create_model("unet-tiny", norm=norm, dropout=0.0)
    model.train()
    g = torch.Generator().manual_seed(6)
    a, b, c = (torch.randn(1, 1, 16, 16, generator=g) for _ in range(3))
    with torch.no_grad():
        with_b = model(torch.cat([a, b]))[0]
        with_c = model(torch.cat([a, c]))[0]
    assert torch.allclose(with_b, with_c, atol=1e-5) is independent


# ---------------------------------------------------------------------------------------------
# End to end
# ---------------------------------------------------------------------------------------------


def one_sentence(message: str) -> bool:
    return "\n" not in message and re.search(r"[.;]\s+[A-Z]", message) is None


def write_mask_folder(root: Path, n: int = 4) -> Path:
    rng = np.random.default_rng(0)
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for i in range(n):
        image = rng.integers(0, 256, (24, 20), dtype=np.uint8)
        Image.fromarray(image).save(root / "images" / f"im{i}.png")
        Image.fromarray(((image > 128) * 255).astype(np.uint8)).save(root / "masks" / f"im{i}.png")
    return root


def test_train_on_a_mask_folder_writes_a_run(tmp_path):
    folder = write_mask_folder(tmp_path / "cells")
    result = train(
        "unet-tiny",
        str(folder),
        runs_dir=tmp_path / "runs",
        progress="quiet",
        max_steps=2,
        batch_size=2,
    )
    assert result.status == "finished"
    assert (result.run_dir / "config.toml").is_file()
    assert (result.run_dir / "metrics.jsonl").is_file()
    assert 0 <= result.test_metrics["test/miou"] <= 1


def test_loss_flag_reaches_the_task(tmp_path, capsys):
    folder = write_mask_folder(tmp_path / "cells")
    assert make_task(load_data(str(folder)), loss="dice").loss_name == "dice"
    runs = tmp_path / "runs"
    argv = ["train", "--model", "unet-tiny", "--data", str(folder), "--loss", "dice"]
    argv += ["--max-steps", "1", "--batch-size", "2", "--runs-dir", str(runs), "--quiet"]
    assert main(argv) == 0
    (run,) = runs.iterdir()
    assert re.search(r'^loss = "dice"$', (run / "config.toml").read_text(), re.M)


def test_a_regression_loss_on_segmentation_data_is_refused_in_one_sentence(tmp_path):
    folder = write_mask_folder(tmp_path / "cells")
    runs = tmp_path / "runs"
    with pytest.raises(ValueError, match="huber") as info:
        train("unet-tiny", str(folder), runs_dir=runs, progress="quiet", loss="huber")
    assert one_sentence(str(info.value))
    assert not runs.exists() or not any(runs.iterdir())
