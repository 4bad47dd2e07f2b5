"""Retrieval and verification metrics on embeddings by cosine (docs/guide/contrastive.md).

Letters: N examples, Q queries, G gallery, E embedding width, k neighbours.

- `knn`: exact k nearest neighbours, queries taken in chunks against the whole gallery so
  memory stays at chunk x G scores (no approximate index, no faiss).
- `retrieval_metrics`: leave-one-out Recall@K and MAP@R (Musgrave, Belongie and Lim, "A Metric
  Learning Reality Check", 2020) within one labelled set.
- `verification_metrics`: "are these two of one class?" scored by cosine similarity over
  pairs: ROC AUC and the equal error rate.

Inputs are numpy arrays or torch tensors; embeddings are meant L2-normalised (as the losses of
`fieldguide.layers.metric` see them) and are normalised again here, defensively, which leaves
unit rows unchanged up to rounding. Metrics come back as plain Python floats.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.metrics import roc_auc_score, roc_curve
from torch import Tensor


def _embeddings(x: object, name: str, owner: str) -> Tensor:
    """The embeddings x as a floating tensor (N, E) of unit rows, float32 or float64."""
    if isinstance(x, np.ndarray) and x.dtype.kind in "iuf":
        x = torch.from_numpy(np.ascontiguousarray(x))
    if not isinstance(x, Tensor):
        raise ValueError(
            f"{owner} expects {name} as a real numpy array or tensor (N, E); got "
            f"{type(x).__name__}{f' of dtype {x.dtype}' if hasattr(x, 'dtype') else ''}."
        )
    if x.ndim != 2 or x.shape[0] == 0 or x.dtype == torch.bool or x.is_complex():
        raise ValueError(
            f"{owner} expects {name} as a non-empty real array (N, E); got shape "
            f"{tuple(x.shape)} of dtype {x.dtype}."
        )
    x = x.to(torch.promote_types(x.dtype, torch.float32))
    return F.normalize(x, dim=1)


def _gallery(x: Tensor, gallery: object, owner: str) -> Tensor:
    """`gallery` checked to be the same examples as queries `x`, or `x` itself when None."""
    if gallery is None:
        return x
    g = _embeddings(gallery, "gallery", owner)
    if g.shape != x.shape:
        raise ValueError(
            f"{owner} expects gallery of the queries' shape {tuple(x.shape)} (the same "
            f"examples); got {tuple(g.shape)}."
        )
    return g.to(x.device, x.dtype)


def _labels(y: object, n: int, owner: str) -> Tensor:
    """The labels y as an int64 tensor (n,)."""
    if isinstance(y, np.ndarray):
        y = torch.from_numpy(np.ascontiguousarray(y)) if y.dtype.kind in "iu" else y
    if not isinstance(y, Tensor) or y.dtype.is_floating_point or y.is_complex():
        given = f"dtype {y.dtype}" if hasattr(y, "dtype") else type(y).__name__
        raise ValueError(f"{owner} expects labels as integers of shape ({n},); got {given}.")
    if tuple(y.shape) != (n,):
        raise ValueError(
            f"{owner} expects labels of shape ({n},), one per embedding; got {tuple(y.shape)}."
        )
    return y.long()


# ---------------------------------------------------------------------------------------------
# Exact k nearest neighbours
# ---------------------------------------------------------------------------------------------


def knn(
    queries: np.ndarray | Tensor,
    gallery: np.ndarray | Tensor,
    k: int,
    exclude_self: bool = False,
    chunk: int = 1024,
) -> tuple[Tensor, Tensor]:
    """The k gallery rows most cosine-similar to each query, exactly, chunk queries at a time.

    Ties are broken by the lower gallery index, so the answer is deterministic and does not
    depend on `chunk` (torch.topk alone leaves the order of equal scores unspecified).

    Args:
        queries: embeddings (Q, E), numpy or torch, normalised here again (see the module).
        gallery: embeddings (G, E) on the same device as queries.
        k: neighbours per query, 1 <= k <= G (G - 1 with exclude_self).
        exclude_self: leave-one-out, for when queries ARE the gallery (Q == G, row i the same
            example): query i never gets gallery index i back.
        chunk: queries scored at once; memory is chunk x G scores.

    Returns:
        (scores, indices), (Q, k) each, as torch tensors on the inputs' device: cosine
        similarities in decreasing order (float32, or float64 for float64 inputs), and the
        int64 gallery indices they belong to.
    """
    q = _embeddings(queries, "queries", "knn")
    g = _embeddings(gallery, "gallery", "knn")
    if g.shape[1] != q.shape[1]:
        raise ValueError(
            f"knn expects gallery of width {q.shape[1]} like queries; got shape {tuple(g.shape)}."
        )
    if exclude_self and g.shape[0] != q.shape[0]:
        raise ValueError(
            "knn with exclude_self=True expects queries to be the gallery itself; got "
            f"{q.shape[0]} queries for {g.shape[0]} gallery rows."
        )
    most = g.shape[0] - int(exclude_self)
    if not isinstance(k, int) or not 1 <= k <= most:
        what = " other" if exclude_self else ""
        raise ValueError(
            f"knn expects k between 1 and {most}, the number of{what} gallery rows; got {k}."
        )
    if not isinstance(chunk, int) or chunk < 1:
        raise ValueError(f"knn expects chunk as a positive integer; got {chunk}.")
    g = g.to(q.dtype)
    found = [
        _top_k(q[start : start + chunk], g, k, start if exclude_self else None)
        for start in range(0, q.shape[0], chunk)
    ]
    return torch.cat([s for s, _ in found]), torch.cat([i for _, i in found])


def _top_k(q: Tensor, g: Tensor, k: int, self_start: int | None) -> tuple[Tensor, Tensor]:
    """Top k of g for each query row of q (c, E): decreasing scores, ties by increasing index.

    With `self_start`, query row i is gallery row self_start + i and never its own neighbour.
    """
    sims = q @ g.T  # (c, G)
    if self_start is not None:
        rows = torch.arange(sims.shape[0], device=sims.device)
        sims[rows, self_start + rows] = float("-inf")
    kth = sims.topk(k, dim=1).values[:, -1:]  # (c, 1): the k-th largest, whatever the ties
    above = sims > kth  # (c, G): certainly in
    room = k - above.sum(1, keepdim=True)  # (c, 1): places left for scores equal to kth
    at = sims == kth
    chosen = above | (at & (at.cumsum(1) <= room))  # (c, G), exactly k per row, lowest first
    index = chosen.nonzero()[:, 1].view(-1, k)  # (c, k), increasing index within a row
    value = sims.gather(1, index)
    value, order = value.sort(dim=1, descending=True, stable=True)  # equal ones keep index order
    return value, index.gather(1, order)


# ---------------------------------------------------------------------------------------------
# Retrieval: Recall@K and MAP@R, leave-one-out
# ---------------------------------------------------------------------------------------------


def retrieval_metrics(
    embeddings: np.ndarray | Tensor,
    labels: np.ndarray | Tensor,
    ks: Sequence[int] = (1, 5, 10),
    gallery: np.ndarray | Tensor | None = None,
) -> dict[str, float]:
    """Leave-one-out retrieval: every example queries all the others.

    - "recall@k": the fraction of queries with at least one example of their class among
      their k nearest neighbours (the Recall@K of the metric-learning literature, not the
      recall of information retrieval).
    - "map@r": MAP@R (Musgrave et al., 2020). For a query with R other examples of its class,
      AP@R = (1/R) sum_{i <= R, neighbour i relevant} precision@i, where precision@i is the
      fraction of relevant neighbours among the first i; MAP@R is its mean over queries. It
      rewards ranking all R relevant examples first, not only one.

    Queries with no other example of their class (R = 0) can find nothing and are skipped by
    both metrics. Neighbours are exact, as in `knn`, on a fixed (seeded) shuffle of the set, so
    equal similarities are ordered at random rather than by the data's order: a collapsed
    embedding (every row equal) scores chance, not whatever its sort order would give. Memory
    is 1024 queries x max(N, R) at a time.

    Args:
        embeddings: (N, E), numpy or torch, meant L2-normalised.
        labels: integer classes (N,).
        ks: the k of each "recall@k", each between 1 and N - 1.
        gallery: the same N examples embedded another way (a two-tower model's gallery
            tower), (N, E); queries (`embeddings`) are ranked against it, each query's own
            row left out. None: the embeddings themselves.

    Returns:
        {"recall@k" for k in ks, "map@r"} as floats.
    """
    x = _embeddings(embeddings, "embeddings", "retrieval_metrics")
    g = _gallery(x, gallery, "retrieval_metrics")
    n = x.shape[0]
    y = _labels(labels, n, "retrieval_metrics").to(x.device)
    ks = tuple(ks)
    if not ks or not all(isinstance(k, int) and 1 <= k <= n - 1 for k in ks):
        raise ValueError(
            f"retrieval_metrics expects ks as integers between 1 and {n - 1} (the other "
            f"examples); got {ks}."
        )
    _, klass, counts = y.unique(return_inverse=True, return_counts=True)
    r = counts[klass] - 1  # (N,), R: the other examples of one's class
    if not bool((r >= 1).any()):
        raise ValueError(
            "retrieval_metrics expects labels with at least two examples of one class; got "
            f"{n} examples of {n} classes."
        )
    # 1. A seeded shuffle, so tied neighbours fall in random order (the metrics are means
    # over queries, so the order of the queries does not matter).
    shuffle = torch.randperm(n, generator=torch.Generator().manual_seed(0)).to(x.device)
    x, g, y, r = x[shuffle], g[shuffle], y[shuffle], r[shuffle]
    queried = r >= 1  # (N,), queries with something to find
    depth = max(max(ks), int(r.max()))  # ranks either metric reads
    rank = torch.arange(1, depth + 1, device=x.device)  # (depth,)
    hits = {k: 0 for k in ks}
    ap_sum = 0.0
    # 2. Query chunks of 1024, so memory stays at 1024 x max(N, depth)
    for start in range(0, n, 1024):
        rows = slice(start, start + 1024)
        _, index = _top_k(x[rows], g, depth, start)  # (c, depth)
        relevant = (y[index] == y[rows, None]) & queried[rows, None]  # (c, depth)
        # Recall@K: a hit anywhere in the first k
        for k in ks:
            hits[k] += int(relevant[:, :k].any(1).sum())
        # MAP@R: precision@i at the relevant ranks i <= R, summed, over R
        precision = relevant.cumsum(1) / rank  # (c, depth)
        counted = relevant & (rank[None, :] <= r[rows, None])  # (c, depth)
        ap_sum += float(((precision * counted).sum(1) / r[rows].clamp_min(1)).double().sum())
    queries = int(queried.sum())
    out = {f"recall@{k}": hits[k] / queries for k in ks}
    out["map@r"] = ap_sum / queries
    return out


# ---------------------------------------------------------------------------------------------
# Verification: ROC AUC and equal error rate over pairs
# ---------------------------------------------------------------------------------------------


def equal_error_rate(same: np.ndarray, scores: np.ndarray) -> float:
    """The equal error rate of binary labels `same` (1 = positive) ranked by `scores`.

    The ROC curve (sklearn's `roc_curve`) is a sequence of (FPR, TPR) points joined by straight
    lines; along it FPR - FNR (FNR = 1 - TPR) rises from -1 to 1. The EER is the FPR where that
    difference crosses 0, interpolated linearly between the two curve points that bracket it
    (so ties, which make one long segment, give the EER at that segment's crossing).
    """
    fpr, tpr, _ = roc_curve(same, scores)
    gap = fpr - (1 - tpr)  # nondecreasing along the curve, from -1 to 1
    i = int(np.argmax(gap >= 0))  # the first point at or past the crossing
    if gap[i] == 0 or i == 0:
        return float(fpr[i])
    t = -gap[i - 1] / (gap[i] - gap[i - 1])  # fraction of the segment from point i-1 to i
    return float(fpr[i - 1] + t * (fpr[i] - fpr[i - 1]))


def verification_metrics(
    embeddings: np.ndarray | Tensor,
    labels: np.ndarray | Tensor,
    max_pairs: int = 200_000,
    seed: int = 0,
    gallery: np.ndarray | Tensor | None = None,
) -> dict[str, float]:
    """Pair verification by cosine similarity: ROC AUC and equal error rate.

    Every pair i < j is scored when there are at most `max_pairs` of them. Otherwise
    `max_pairs` pairs are drawn with a seeded generator: half uniformly among the same-class
    pairs, half among the different-class pairs, with replacement and without forming the
    N x N matrix. The balance changes nothing in expectation, since ROC AUC and EER are rates
    within each kind of pair, and gives the rarer same-class pairs as many draws as the others.

    Args:
        embeddings: (N, E), numpy or torch, meant L2-normalised.
        labels: integer classes (N,); there must be both same- and different-class pairs.
        max_pairs: the most pairs scored, >= 2.
        seed: seeds the sample of pairs (unused when every pair is scored).
        gallery: the same N examples embedded another way (a two-tower model's gallery
            tower): pair (i, j) is scored as query i against gallery j. None: the embeddings.

    Returns:
        {"roc_auc", "eer"} as floats; see `equal_error_rate`.
    """
    x = _embeddings(embeddings, "embeddings", "verification_metrics")
    g = _gallery(x, gallery, "verification_metrics")
    n = x.shape[0]
    y = _labels(labels, n, "verification_metrics").cpu()
    if not isinstance(max_pairs, int) or max_pairs < 2:
        raise ValueError(f"verification_metrics expects max_pairs >= 2; got {max_pairs}.")
    _, counts = y.unique(return_counts=True)
    same_pairs = int((counts * (counts - 1) // 2).sum())
    total = n * (n - 1) // 2
    if same_pairs == 0 or same_pairs == total:
        raise ValueError(
            "verification_metrics expects labels with at least two classes and two examples of "
            f"one, so both kinds of pair exist; got {len(counts)} classes over {n} examples."
        )
    if total <= max_pairs:
        i, j = torch.triu_indices(n, n, offset=1)  # (M,) each, every pair once
    else:
        i, j = _sample_pairs(y, counts, max_pairs, seed)
    same = (y[i] == y[j]).numpy()
    scores = np.concatenate(
        [
            (x[i[s : s + 65536].to(x.device)] * g[j[s : s + 65536].to(x.device)]).sum(1).cpu()
            for s in range(0, len(i), 65536)  # chunks of pairs bound the (chunk, E) gathers
        ]
    ).astype(np.float64)
    return {"roc_auc": float(roc_auc_score(same, scores)), "eer": equal_error_rate(same, scores)}


def _sample_pairs(y: Tensor, counts: Tensor, m: int, seed: int) -> tuple[Tensor, Tensor]:
    """Indices (i, j) of m // 2 uniform same-class pairs, then m - m // 2 different-class ones."""
    gen = torch.Generator().manual_seed(seed)
    order = y.argsort(stable=True)  # examples grouped by class; class c at start[c] ... + n_c
    start = torch.cumsum(counts, 0) - counts  # (C,)
    n = len(y)

    # Same: a class with probability proportional to its n_c (n_c - 1) ordered pairs, then two
    # distinct members a != b uniformly: uniform over same-class pairs.
    half = m // 2
    c = torch.multinomial((counts * (counts - 1)).double(), half, replacement=True, generator=gen)
    a = (torch.rand(half, generator=gen, dtype=torch.float64) * counts[c]).long()
    b = (torch.rand(half, generator=gen, dtype=torch.float64) * (counts[c] - 1)).long()
    b = b + (b >= a).long()  # skip a itself
    same_i, same_j = order[start[c] + a], order[start[c] + b]

    # Different: i with probability proportional to its N - n_c partners, then j uniformly
    # among the examples outside i's class (positions before its block, or after it).
    rest = m - half
    rank = torch.empty_like(order)
    rank[order] = torch.arange(n)  # position of each example in the grouped order
    klass = torch.searchsorted(start, rank, right=True) - 1  # (N,), class number per example
    i = torch.multinomial((n - counts[klass]).double(), rest, replacement=True, generator=gen)
    u = (torch.rand(rest, generator=gen, dtype=torch.float64) * (n - counts[klass[i]])).long()
    position = u + counts[klass[i]] * (u >= start[klass[i]]).long()  # jump over i's block
    diff_i, diff_j = i, order[position]
    return torch.cat([same_i, diff_i]), torch.cat([same_j, diff_j])
