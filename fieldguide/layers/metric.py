"""Metric-learning losses: embeddings whose distances mean something (docs/guide/contrastive.md).

Letters: N batch (embeddings), E embedding width, C classes (ArcFace centres).

- InfoNCE / NT-Xent (van den Oord et al., 2018; Chen et al., "SimCLR", 2020): two views of N
  examples, each view must pick out its partner among the N candidates of the other view.
- Triplet loss with batch-hard mining (Hermans et al., "In Defense of the Triplet Loss", 2017)
  and semi-hard mining (Schroff et al., "FaceNet", 2015).
- ArcFace (Deng et al., 2019): an additive angular margin on the target class's logit.
- Contrastive loss (Hadsell, Chopra and LeCun, 2006): pull same pairs together, push
  different pairs beyond a margin.

Every loss takes floating embeddings, computes in float32 (float64 stays float64, so a half
precision batch under autocast still sums its softmax in float32) and returns the mean over
the batch as a scalar. Embeddings are expected L2-normalised by the caller, as the task does
for its class-balanced batches of P classes x K examples: the losses never renormalise, so
what they see is what the retrieval metrics of `fieldguide.tasks.retrieval_metrics` score.

The guide's InfoNCE sketch takes the cross-entropy over the rows of the logits only, so view 2
is never asked to find its partner in view 1; `info_nce` here is symmetric, the mean of both.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

MINING = ("batch-hard", "semi-hard")

# Squared distances below this are clamped before the square root: d/dx sqrt(x) = 1/(2 sqrt x)
# is infinite at 0, which two identical embeddings (or a row with itself) would otherwise hit.
DISTANCE_EPS = 1e-12

# ArcFace clamps cos(theta) into [-1 + eps, 1 - eps] before acos, whose derivative
# -1/sqrt(1 - x^2) is infinite at +-1. In float32, 1 - 1e-8 rounds to 1 exactly, and 1e-7 leaves
# 1 - x^2 at 2.4e-7 (one ulp of headroom); 1e-6 keeps a margin for the rounding of z @ c.
ARCFACE_EPS = 1e-6


def _work_dtype(x: Tensor) -> torch.dtype:
    """float32, or float64 when x already is: the precision every loss here computes in."""
    return torch.promote_types(x.dtype, torch.float32)


def _check_embeddings(z: object, name: str, owner: str, rows: int | None = None) -> None:
    """Raise one sentence unless z is a floating tensor (N, E), with N == rows when given."""
    n = "N" if rows is None else str(rows)
    if not isinstance(z, Tensor) or not torch.is_floating_point(z):
        given = f"dtype {z.dtype}" if isinstance(z, Tensor) else type(z).__name__
        raise ValueError(f"{owner} expects {name} as a floating tensor ({n}, E); got {given}.")
    if z.ndim != 2 or (rows is not None and z.shape[0] != rows):
        raise ValueError(
            f"{owner} expects {name} as a floating tensor ({n}, E); got shape {tuple(z.shape)}."
        )


def _check_labels(labels: object, rows: int, owner: str, name: str = "labels") -> None:
    """Raise one sentence unless labels is an integer tensor of shape (rows,)."""
    if not isinstance(labels, Tensor) or labels.dtype.is_floating_point or labels.is_complex():
        given = f"dtype {labels.dtype}" if isinstance(labels, Tensor) else type(labels).__name__
        raise ValueError(
            f"{owner} expects {name} as an integer tensor of shape ({rows},); got {given}."
        )
    if tuple(labels.shape) != (rows,):
        raise ValueError(
            f"{owner} expects {name} as an integer tensor of shape ({rows},), one class per "
            f"embedding; got shape {tuple(labels.shape)}."
        )


# ---------------------------------------------------------------------------------------------
# InfoNCE and a learnable temperature
# ---------------------------------------------------------------------------------------------


def info_nce(
    z1: Tensor, z2: Tensor, temperature: float | Tensor, labels: Tensor | None = None
) -> Tensor:
    """Symmetric InfoNCE (NT-Xent) between two views of a batch.

    With logits s_ij = <z1_i, z2_j> / temperature, view 1 classifies its partner among the rows
    of view 2 and view 2 among the rows of view 1:

        loss = (CE(s, arange(N)) + CE(s^T, arange(N))) / 2.

    Args:
        z1: the first view's embeddings (N, E), L2-normalised by the caller (not renormalised
            here: the logits are cosines only if the rows have unit norm).
        z2: the second view's embeddings (N, E), row i the partner of z1's row i.
        temperature: a positive float, or a 0-dim tensor (such as `bounded_temperature` of a
            parameter) through which the loss backpropagates to a learnable temperature.
        labels: optional classes (N,). Pairs (i, j), i != j, of one class are false negatives:
            they are masked to -inf in both softmaxes, so neither direction pushes them apart.
            The partner (the diagonal) always stays.

    Returns:
        The scalar loss, the mean over the N examples and both directions.
    """
    _check_embeddings(z1, "z1", "info_nce")
    n, e = z1.shape
    if not isinstance(z2, Tensor) or tuple(z2.shape) != (n, e):
        given = tuple(z2.shape) if isinstance(z2, Tensor) else type(z2).__name__
        raise ValueError(f"info_nce expects z2 of the same shape as z1, ({n}, {e}); got {given}.")
    _check_embeddings(z2, "z2", "info_nce", rows=n)
    if isinstance(temperature, Tensor):
        if temperature.ndim != 0:
            raise ValueError(
                f"info_nce expects temperature as a float or a 0-dim tensor; got a tensor of "
                f"shape {tuple(temperature.shape)}."
            )
        # Reading a value off an accelerator waits for it, on every training step; there the
        # caller's bounded temperature (models/contrastive.py) is trusted.
        value = float(temperature.detach()) if temperature.device.type == "cpu" else 1.0
    else:
        value = float(temperature)
    if not value > 0:  # also refuses NaN
        raise ValueError(f"info_nce expects temperature > 0; got {value}.")
    if labels is not None:
        _check_labels(labels, n, "info_nce")

    work = _work_dtype(z1)
    logits = z1.to(work) @ z2.to(work).T / temperature  # (N, N), row i: z1_i against all of z2
    if labels is not None:
        same = labels[:, None] == labels[None, :]  # (N, N), symmetric
        same.fill_diagonal_(False)  # the partner is the positive, never masked
        logits = logits.masked_fill(same, float("-inf"))
    target = torch.arange(n, device=logits.device)
    return (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2


def bounded_temperature(log_t: Tensor, low: float = 0.01, high: float = 1.0) -> Tensor:
    """A temperature in [low, high] from an unconstrained learnable parameter.

    t = low + (high - low) * sigmoid(log_t): smooth, monotone, and it can neither reach 0 (where
    the logits blow up) nor grow so large that every logit is equal. CLIP learns log(1/t) and
    clips it; the sigmoid keeps a gradient everywhere instead. Start the parameter at
    `temperature_parameter(t0, low, high)` to begin at temperature t0.

    Args:
        log_t: the raw parameter, any shape (usually a 0-dim nn.Parameter).
        low: the smallest temperature, > 0.
        high: the largest temperature, > low.

    Returns:
        The temperature, of log_t's shape, inside [low, high] for any finite or infinite log_t.
    """
    _check_bounds(low, high, "bounded_temperature")
    if not isinstance(log_t, Tensor) or not torch.is_floating_point(log_t):
        given = f"dtype {log_t.dtype}" if isinstance(log_t, Tensor) else type(log_t).__name__
        raise ValueError(f"bounded_temperature expects log_t as a floating tensor; got {given}.")
    # The clamp only trims the last ulp that rounding of low + (high - low) * 1 may add.
    return (low + (high - low) * torch.sigmoid(log_t)).clamp(low, high)


def temperature_parameter(t: float, low: float = 0.01, high: float = 1.0) -> float:
    """The value of log_t at which `bounded_temperature(log_t, low, high)` equals t.

    The inverse of the sigmoid map: log_t = logit((t - low) / (high - low)), so t must lie
    strictly between low and high (the bounds themselves sit at -inf and +inf).
    """
    _check_bounds(low, high, "temperature_parameter")
    if not low < t < high:
        raise ValueError(
            f"temperature_parameter expects t strictly between low={low} and high={high}; got {t}."
        )
    p = (t - low) / (high - low)
    return math.log(p / (1 - p))


def _check_bounds(low: float, high: float, owner: str) -> None:
    if not 0 < low < high:
        raise ValueError(f"{owner} expects 0 < low < high; got low={low}, high={high}.")


# ---------------------------------------------------------------------------------------------
# Triplet loss: batch-hard and semi-hard mining
# ---------------------------------------------------------------------------------------------


def pairwise_distance(z: Tensor) -> Tensor:
    """Euclidean distances (N, N) between the rows of z (N, E), with finite gradients.

    ||a - b||^2 = ||a||^2 + ||b||^2 - 2<a, b> costs one matrix product; rounding can make it
    slightly negative, and sqrt has an infinite slope at 0, so the square is clamped to at
    least DISTANCE_EPS first. The diagonal (and any pair of identical rows) is then about
    1e-6, not 0, with a zero gradient.
    """
    _check_embeddings(z, "z", "pairwise_distance")
    z = z.to(_work_dtype(z))
    sq_norm = (z * z).sum(1)  # (N,)
    sq = sq_norm[:, None] + sq_norm[None, :] - 2 * z @ z.T  # (N, N)
    return sq.clamp_min(DISTANCE_EPS).sqrt()


def _pair_masks(labels: Tensor) -> tuple[Tensor, Tensor]:
    """(positive, negative) bool masks (N, N): same class but not itself, and other class."""
    same = labels[:, None] == labels[None, :]
    positive = same & ~torch.eye(len(labels), dtype=torch.bool, device=labels.device)
    return positive, ~same


def _check_distance(dist: object, labels: object, owner: str) -> None:
    if not isinstance(dist, Tensor) or dist.ndim != 2 or dist.shape[0] != dist.shape[1]:
        given = tuple(dist.shape) if isinstance(dist, Tensor) else type(dist).__name__
        raise ValueError(f"{owner} expects dist as a square tensor (N, N); got {given}.")
    _check_labels(labels, dist.shape[0], owner)


def hardest_pairs(dist: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
    """Batch-hard mining: each anchor's farthest positive and nearest negative.

    Args:
        dist: distances (N, N), e.g. `pairwise_distance(z)`.
        labels: classes (N,).

    Returns:
        (pos_index, neg_index), int64 (N,) each: the index of the farthest example of the
        anchor's class other than itself, and of the nearest example of another class; -1 where
        the anchor has none. Ties go to the lower index.
    """
    _check_distance(dist, labels, "hardest_pairs")
    positive, negative = _pair_masks(labels)
    d = dist.detach()
    # argmax / argmin return the first extreme, hence the lower index on ties.
    pos = d.masked_fill(~positive, float("-inf")).argmax(1)
    neg = d.masked_fill(~negative, float("inf")).argmin(1)
    none = torch.full_like(pos, -1)
    return torch.where(positive.any(1), pos, none), torch.where(negative.any(1), neg, none)


def semi_hard_negatives(dist: Tensor, labels: Tensor) -> Tensor:
    """Semi-hard mining (FaceNet): a negative for every anchor-positive pair.

    For anchor a and positive p, the nearest negative n with d(a, n) > d(a, p): the hardest
    one that is still farther than the positive, so the loss pulls without collapsing. When no
    negative is farther than the positive (the pair is already violated by all of them), the
    nearest negative overall is used instead: the hardest, as in batch-hard mining. (The
    TensorFlow Addons loss falls back to the farthest negative; the hardest keeps a gradient.)

    Args:
        dist: distances (N, N), e.g. `pairwise_distance(z)`.
        labels: classes (N,).

    Returns:
        int64 (N, N): at [a, p] the index of the chosen negative; -1 where p is not a positive
        of a (itself, another class) or a has no negative at all. Ties go to the lower index.
    """
    _check_distance(dist, labels, "semi_hard_negatives")
    positive, negative = _pair_masks(labels)
    d = dist.detach()
    # Per anchor, its negatives' distances in increasing order (non-negatives last, at +inf);
    # the stable sort keeps equal distances in index order.
    sorted_d, order = d.masked_fill(~negative, float("inf")).sort(dim=1, stable=True)  # (N, N) each
    # First rank whose distance is > d(a, p): every rank before it is at most d(a, p).
    rank = torch.searchsorted(sorted_d, d.contiguous(), right=True)  # (N, N) over (a, p)
    count = negative.sum(1, keepdim=True)  # (N, 1), the anchor's negatives
    rank = torch.where(rank < count, rank, torch.zeros_like(rank))  # none beyond: the nearest
    chosen = order.gather(1, rank)  # (N, N): negative index for each (a, p)
    valid = positive & (count > 0)
    return torch.where(valid, chosen, torch.full_like(chosen, -1))


def triplet_loss(
    z: Tensor, labels: Tensor, margin: float = 0.2, mining: str = "batch-hard"
) -> Tensor:
    """Triplet loss relu(d(a, p) - d(a, n) + margin) on Euclidean distances, mined in-batch.

    Args:
        z: embeddings (N, E), usually L2-normalised (the margin is then on the unit sphere,
            where distances lie in [0, 2]).
        labels: classes (N,); a P x K batch gives every anchor K - 1 positives.
        margin: how much farther than the positive the negative must be, >= 0.
        mining: "batch-hard" (Hermans et al., 2017): one triplet per anchor, its farthest
            positive and nearest negative (`hardest_pairs`), averaged over the anchors that have
            both. "semi-hard" (Schroff et al., 2015): one triplet per anchor-positive pair, with
            the negative of `semi_hard_negatives`, averaged over all such pairs (those already
            satisfied count as zeros).

    Returns:
        The scalar loss.
    """
    _check_embeddings(z, "z", "triplet_loss")
    _check_labels(labels, z.shape[0], "triplet_loss")
    if mining not in MINING:
        raise ValueError(
            f"triplet_loss expects mining as one of {', '.join(MINING)}; got {mining!r}."
        )
    if not margin >= 0:
        raise ValueError(f"triplet_loss expects margin >= 0; got {margin}.")
    positive, negative = _pair_masks(labels)
    anchors = positive.any(1) & negative.any(1)  # (N,)
    if not bool(anchors.any()):
        raise ValueError(
            "triplet_loss needs a batch with at least two classes and two examples of one; got "
            f"labels with {labels.unique().numel()} classes over {len(labels)} examples."
        )
    dist = pairwise_distance(z)  # (N, N)
    if mining == "batch-hard":
        pos, neg = hardest_pairs(dist, labels)
        rows = anchors.nonzero().squeeze(1)  # (A,) anchors with a positive and a negative
        d_ap, d_an = dist[rows, pos[rows]], dist[rows, neg[rows]]  # (A,) each
    else:
        neg = semi_hard_negatives(dist, labels)  # (N, N) over (a, p)
        a, p = (neg >= 0).nonzero().unbind(1)  # (T,) each, the valid anchor-positive pairs
        d_ap, d_an = dist[a, p], dist[a, neg[a, p]]  # (T,) each
    return F.relu(d_ap - d_an + margin).mean()


# ---------------------------------------------------------------------------------------------
# ArcFace
# ---------------------------------------------------------------------------------------------


def arcface_logits(
    z: Tensor, centres: Tensor, labels: Tensor, margin: float = 0.5, scale: float = 30.0
) -> Tensor:
    """ArcFace logits (Deng et al., 2019): the target class's angle is widened by `margin`.

    cos_ic = <z_i, centres_c / ||centres_c||>; for the target c = labels[i], with
    theta = acos(cos_ic), the logit is scale * cos(theta + margin), otherwise scale * cos_ic.

    Past theta = pi - margin, cos(theta + margin) would turn back up (theta + margin > pi), so
    a worse angle would earn a larger logit. There the target logit is instead
    scale * (cos(theta) - margin * sin(margin)), the "easy margin off" branch of the authors'
    code: monotone in theta, with a small downward step at the switch (from -1 to
    -cos(margin) - margin * sin(margin)), which only ever penalises more.

    cos is clamped to [-1 + ARCFACE_EPS, 1 - ARCFACE_EPS] before acos, so the loss and its
    gradients stay finite at cosines of exactly +1 and -1.

    Args:
        z: embeddings (N, E), L2-normalised by the caller.
        centres: one learnable centre per class (C, E), any norm (normalised here).
        labels: target classes (N,) in [0, C).
        margin: the additive angle in radians, in [0, pi/2].
        scale: the factor s on every logit (the radius of the hypersphere), > 0.

    Returns:
        Logits (N, C) for cross-entropy; see `arcface_loss`.
    """
    _check_embeddings(z, "z", "arcface_logits")
    n, e = z.shape
    if not isinstance(centres, Tensor) or centres.ndim != 2 or centres.shape[1] != e:
        given = tuple(centres.shape) if isinstance(centres, Tensor) else type(centres).__name__
        raise ValueError(
            f"arcface_logits expects centres as a floating tensor (C, {e}), one row per class "
            f"in z's width; got {given}."
        )
    _check_embeddings(centres, "centres", "arcface_logits")
    _check_labels(labels, n, "arcface_logits")
    c = centres.shape[0]
    if n and not (0 <= int(labels.min()) and int(labels.max()) < c):
        raise ValueError(
            f"arcface_logits expects labels in [0, {c}) for {c} centres; got values from "
            f"{int(labels.min())} to {int(labels.max())}."
        )
    if not 0 <= margin <= math.pi / 2:
        raise ValueError(f"arcface_logits expects margin in [0, pi/2] radians; got {margin}.")
    if not scale > 0:
        raise ValueError(f"arcface_logits expects scale > 0; got {scale}.")

    work = _work_dtype(z)
    cos = z.to(work) @ F.normalize(centres.to(work), dim=1).T  # (N, C)
    target = F.one_hot(labels.long(), c).bool()  # (N, C)
    cos_t = cos[target]  # (N,), the target cosines in row order
    theta = torch.acos(cos_t.clamp(-1 + ARCFACE_EPS, 1 - ARCFACE_EPS))
    # Both branches are evaluated; the clamp keeps the unused one's gradient finite too, so
    # torch.where never multiplies an infinity by its zero.
    widened = torch.where(
        theta <= math.pi - margin, torch.cos(theta + margin), cos_t - margin * math.sin(margin)
    )
    return scale * cos.masked_scatter(target, widened)


def arcface_loss(
    z: Tensor, centres: Tensor, labels: Tensor, margin: float = 0.5, scale: float = 30.0
) -> Tensor:
    """Cross-entropy of `arcface_logits` against labels: the scalar ArcFace loss."""
    return F.cross_entropy(arcface_logits(z, centres, labels, margin, scale), labels.long())


# ---------------------------------------------------------------------------------------------
# Contrastive (pairwise margin) loss
# ---------------------------------------------------------------------------------------------


def contrastive_loss(z1: Tensor, z2: Tensor, same: Tensor, margin: float = 0.5) -> Tensor:
    """Pairwise margin loss (Hadsell et al., 2006) on the distance d_i = ||z1_i - z2_i||.

    A same pair costs d^2 (pulled together); a different pair costs relu(margin - d)^2 (pushed
    apart until it is `margin` away, then left alone). Hadsell et al. halve both terms, which
    only rescales the gradient; here they are not halved.

    Args:
        z1: the pairs' first embeddings (N, E).
        z2: the pairs' second embeddings (N, E).
        same: bool (N,), True where pair i is of one class (0/1 integers are accepted).
        margin: the distance beyond which different pairs cost nothing, > 0.

    Returns:
        The scalar mean over the N pairs.
    """
    _check_embeddings(z1, "z1", "contrastive_loss")
    n, e = z1.shape
    if not isinstance(z2, Tensor) or tuple(z2.shape) != (n, e):
        given = tuple(z2.shape) if isinstance(z2, Tensor) else type(z2).__name__
        raise ValueError(
            f"contrastive_loss expects z2 of the same shape as z1, ({n}, {e}); got {given}."
        )
    _check_embeddings(z2, "z2", "contrastive_loss", rows=n)
    if not isinstance(same, Tensor) or tuple(same.shape) != (n,):
        given = tuple(same.shape) if isinstance(same, Tensor) else type(same).__name__
        raise ValueError(
            f"contrastive_loss expects same as a bool tensor of shape ({n},), one per pair; "
            f"got {given}."
        )
    if same.dtype != torch.bool and not bool(((same == 0) | (same == 1)).all()):
        raise ValueError("contrastive_loss expects same as bool or 0/1 values; got other values.")
    if not margin > 0:
        raise ValueError(f"contrastive_loss expects margin > 0; got {margin}.")
    work = _work_dtype(z1)
    sq = (z1.to(work) - z2.to(work)).pow(2).sum(1)  # (N,), d^2: finite gradient at 0
    d = sq.clamp_min(DISTANCE_EPS).sqrt()
    return torch.where(same.bool(), sq, F.relu(margin - d).pow(2)).mean()


def pairs_from_batch(z: Tensor, labels: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """All N(N-1)/2 pairs i < j of a batch, for `contrastive_loss` on a P x K batch.

    Returns:
        (z1, z2, same): z[i] and z[j] stacked (M, E) each, and bool (M,) True where
        labels[i] == labels[j], pairs in row-major order (0, 1), (0, 2), ..., (N-2, N-1).
    """
    _check_embeddings(z, "z", "pairs_from_batch")
    _check_labels(labels, z.shape[0], "pairs_from_batch")
    if z.shape[0] < 2:
        raise ValueError(f"pairs_from_batch expects z with at least 2 rows; got {z.shape[0]}.")
    i, j = torch.triu_indices(z.shape[0], z.shape[0], offset=1, device=z.device)  # (M,) each
    return z[i], z[j], labels[i] == labels[j]
