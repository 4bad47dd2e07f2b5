"""Ranking: which items a user will like next, from implicit feedback (docs/guide/recsys.md).

Data: an `InteractionData` (fieldguide/data/movielens.py): training (user, item) positives,
and per evaluated user one held-out positive with sampled negatives, the protocol of neural
collaborative filtering (He et al., 2017): the user's last positive is the test item, the one
before it the validation item, each ranked among 100 items the user never rated.

Model: a two-tower network (models/recsys.py `TwoTower`): user features -> a vector, item
features -> a vector, score = their dot product, so every item's vector can be computed once
and searched. Loss: softmax over the batch's items (each user's positive against the other
examples' items, the same item elsewhere in the batch never counted as a negative), with the
log of each item's training frequency subtracted from its logit (the sampling correction of
Yi et al., 2019), since popular items turn up as in-batch negatives more often.

Metrics: HR@10 (the held-out item among the top 10 of its 101 candidates) and NDCG@10
(1 / log2(rank + 2) when it is; ties count against it). Baselines on the same candidates:
popularity (training positives per item) and matrix factorisation (PureSVD: the truncated SVD
of the training matrix, Cremonesi et al., 2010, its rank chosen on validation).
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fieldguide.models.base import DataSpec
from fieldguide.tasks.base import Task, evaluating, named

TOP_K = 10
SVD_RANKS = (8, 16, 32, 64, 128)  # PureSVD ranks tried on validation


class RankingTask(Task):
    """Two-tower ranking of held-out items among sampled negatives (HR@10, NDCG@10)."""

    name = "ranking"
    accepts: ClassVar[frozenset[str]] = frozenset({"interactions"})
    output = "score"
    monitor = "val/ndcg@10"
    metric_names = ("hr@10", "ndcg@10")  # no validation loss: it needs training batches

    @classmethod
    def fits(cls, data: Any) -> bool:
        """Interaction data: users, items and their positives."""
        return getattr(data, "modality", "") == "interactions"

    def __init__(self, data: Any) -> None:
        if not self.fits(data):
            raise ValueError(
                f"RankingTask expects interaction data (users, items, positives); got modality "
                f"'{getattr(data, 'modality', '?')}'."
            )
        super().__init__(data)
        counts = torch.bincount(data.train_pairs[:, 1], minlength=data.num_items).double()
        self.item_counts = counts
        self.log_q = (counts.clamp(min=1) / counts.sum()).log().float()  # (items,)
        self._svd_rank: int | None = None

    def spec(self) -> DataSpec:
        """User and item fields (table rows each) in, one score per pair out."""
        d = self.data
        return DataSpec(
            (len(d.user_fields), len(d.item_fields)),
            1,
            output="score",
            fields=(*d.user_fields, *d.item_fields),
            description="one score per (user, item)",
        )

    def split_size(self, split: str) -> int:
        """Training positives, or the users evaluated on `split`."""
        if split == "train":
            return len(self.data.train_pairs)
        return len(getattr(self.data, f"{split}_users"))

    def batch(self, split: str, index: Tensor) -> tuple[Tensor, ...]:
        """Train: (user bags, item bags, item ids); val/test: (user bags, candidate item ids)."""
        d = self.data
        if split == "train":
            pairs = d.train_pairs[index]
            return d.user_ids[pairs[:, 0]], d.item_ids[pairs[:, 1]], pairs[:, 1]
        users = getattr(d, f"{split}_users")[index]
        return d.user_ids[users], getattr(d, f"{split}_candidates")[index]

    def loss(self, model: nn.Module, batch: tuple[Tensor, ...]) -> Tensor:
        """In-batch softmax with the log-frequency correction; repeated items are masked."""
        users, items, item = batch
        u = model.user_vectors(users).float()
        v = model.item_vectors(items).float()
        logits = u @ v.T - self.log_q.to(u.device)[item][None, :]
        same = item[:, None] == item[None, :]
        eye = torch.eye(len(item), dtype=torch.bool, device=u.device)
        logits = logits.masked_fill(same & ~eye, float("-inf"))
        return F.cross_entropy(logits, torch.arange(len(item), device=u.device))

    def scores(self, model: nn.Module, split: str, **eval_options: Any) -> Tensor:
        """Scores (U, 1 + negatives) of each evaluated user's candidates, positive first."""
        device = eval_options.get("device", "cpu")
        with evaluating(model):
            items = model.item_vectors(self.data.item_ids.to(device)).float()  # (I, E)
        out = []
        for _, (users, candidates) in self.eval_batches(model, split, **eval_options):
            u = model.user_vectors(users).float()  # (B, E)
            out.append((u[:, None, :] * items[candidates]).sum(-1).cpu())
        return torch.cat(out)

    def outputs(self, model: nn.Module, batch: tuple[Tensor, ...]) -> Tensor:
        """Scores (B, 1 + negatives) of one evaluation batch's candidates."""
        users, candidates = batch
        u = model.user_vectors(users).float()
        b, c = candidates.shape
        v = model.item_vectors(self.data.item_ids.to(u.device)[candidates.flatten()])
        return (u[:, None, :] * v.float().view(b, c, -1)).sum(-1)

    def evaluate(self, model: nn.Module, split: str, **eval_options: Any) -> dict[str, float]:
        """HR@10 and NDCG@10 of `split`'s held-out items among their candidates."""
        scores = self.scores(model, split, **eval_options)
        metrics = hit_metrics(scores)
        return named(split, metrics)

    def baselines(self, split: str) -> dict[str, dict[str, float]]:
        """Popularity and PureSVD (its rank chosen on validation) on the same candidates."""
        candidates = getattr(self.data, f"{split}_candidates")
        users = getattr(self.data, f"{split}_users")
        rank = self.svd_rank()
        return {
            "popularity": hit_metrics(self.item_counts[candidates]),
            f"matrix factorisation (PureSVD, rank {rank} chosen on val)": hit_metrics(
                pure_svd_scores(self.data, users, candidates, rank)
            ),
        }

    def svd_rank(self) -> int:
        """The PureSVD rank among `SVD_RANKS` with the best validation NDCG@10 (cached)."""
        if self._svd_rank is None:
            d = self.data
            best = max(
                SVD_RANKS,
                key=lambda r: hit_metrics(pure_svd_scores(d, d.val_users, d.val_candidates, r))[
                    "ndcg@10"
                ],
            )
            self._svd_rank = best
        return self._svd_rank


def hit_metrics(scores: Tensor) -> dict[str, float]:
    """HR@10 and NDCG@10 from scores (U, C) whose column 0 is the held-out positive.

    The positive's rank counts every candidate scored at least as high (ties against it), so a
    constant scorer earns nothing.
    """
    positive = scores[:, :1]
    rank = (scores[:, 1:] >= positive).sum(1)  # candidates ranked above or level with it
    hit = rank < TOP_K
    gain = torch.where(
        hit, 1.0 / torch.log2(rank.double() + 2), torch.zeros((), dtype=torch.double)
    )
    return {"hr@10": hit.double().mean().item(), "ndcg@10": gain.mean().item()}


def pure_svd_scores(data: Any, users: Tensor, candidates: Tensor, rank: int) -> Tensor:
    """PureSVD scores (U, C) of `users` at their `candidates`.

    Each user's row of the binary training matrix R is projected on the top `rank` item
    factors V of R's truncated SVD: R V V^T.
    """
    import numpy as np
    from scipy.sparse import csr_matrix
    from sklearn.utils.extmath import randomized_svd

    pairs = data.train_pairs.numpy()
    matrix = csr_matrix(
        (np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(data.num_users, data.num_items)
    )
    matrix.data[:] = 1.0  # a pair seen twice is still one positive
    _, _, vt = randomized_svd(matrix, n_components=min(rank, min(matrix.shape) - 1), random_state=0)
    rows = matrix[users.numpy()] @ vt.T @ vt  # (U, items)
    rows = torch.from_numpy(np.asarray(rows))
    return torch.gather(rows, 1, candidates)
