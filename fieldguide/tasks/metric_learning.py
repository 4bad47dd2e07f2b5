"""Metric learning: embeddings where examples of one class lie close (docs/guide/contrastive.md).

Data: any labelled images, vectors, sequences or texts (the same readers as classification).
The real test of a metric space is on classes it never saw, so by default the last half of the
classes (when there are 4 or more) are held out: training and validation use the test-free
splits of the other classes, and the test split holds only the held-out classes, where every
example is a query against all the others (leave-one-out retrieval).

Batches are class-balanced: P classes x K examples each (P = min(classes, B // 4), K = B // P),
drawn from a generator seeded by (seed, epoch), so a resumed run sees the same batches.

Losses (`--loss`):

- infonce (default): symmetric InfoNCE between two examples of the same class (the pairs of a
  batch), other pairs' examples of the same class left out of the denominators; the
  temperature is the model's, learnable within [0.01, 1].
- triplet / triplet-semihard: margin 0.2 on Euclidean distance with batch-hard or semi-hard
  mining.
- arcface: additive angular margin 0.5, scale 30, over one learnt centre per training class.
- contrastive: pairwise margin loss (margin 0.5) over every pair of the batch.

Metrics (leave-one-out on the split): recall@1/5/10, MAP@R, and verification ROC-AUC and EER
over pairs scored by cosine similarity. Baseline: the same retrieval on the inputs themselves
(standardised pixels, features or padded sequences, by cosine), the bar a learnt space must
clear.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from fieldguide.data.base import ClassificationData
from fieldguide.models.base import DataSpec
from fieldguide.tasks.base import Task, named

LOSSES = ("infonce", "triplet", "triplet-semihard", "arcface", "contrastive")
TRIPLET_MARGIN = 0.2
ARCFACE_MARGIN, ARCFACE_SCALE = 0.5, 30.0
CONTRASTIVE_MARGIN = 0.5
MIN_SPLIT = 11  # examples a split needs: a query and the 10 others recall@10 ranks
METRICS = ("recall@1", "recall@5", "recall@10", "map@r", "roc_auc", "eer")


@contextmanager
def embedding_view(
    model: nn.Module, tower: int | None = None, head: bool | None = None
) -> Iterator[None]:
    """Inside the block, `model` embeds through `tower` and its projection head or not.

    `tower` 0 is the queries', 1 the gallery's; None leaves either choice as it was.
    """
    before = (getattr(model, "default_tower", 0), getattr(model, "default_head", False))
    if tower is not None:
        model.default_tower = tower
    if head is not None:
        model.default_head = head
    try:
        yield
    finally:
        model.default_tower, model.default_head = before


class MetricLearningTask(Task):
    """Embeddings trained on class-balanced batches, tested on classes held out of training."""

    name = "metric-learning"
    accepts: ClassVar[frozenset[str]] = frozenset({"images", "vectors", "sequences", "tokens"})
    output = "embedding"
    monitor = "val/recall@1"
    metric_names = METRICS  # no validation loss: a batch loss needs class-balanced batches
    options = ("loss", "held_out_classes")

    @classmethod
    def fits(cls, data: Any) -> bool:
        """Never chosen by the data alone: an embedding model asks for it (`trains_for`)."""
        return False

    def __init__(
        self, data: ClassificationData, *, loss: str = "infonce", held_out_classes: int = -1
    ) -> None:
        from fieldguide.tasks import task_for

        if not isinstance(data, ClassificationData):
            raise ValueError(
                f"metric learning needs labelled examples (images, vectors, sequences or texts); "
                f"'{getattr(data, 'name', data)}' is {getattr(data, 'modality', '?')} data."
            )
        if loss not in LOSSES:
            raise ValueError(
                f"loss for metric learning must be one of {', '.join(LOSSES)}; got {loss!r}."
            )
        super().__init__(data)
        self.loss_name = loss
        self.inner = task_for(data)(data)  # how a batch of this modality reaches a model
        k = len(data.classes)
        held = (k // 2 if k >= 4 else 0) if held_out_classes < 0 else held_out_classes
        if not 0 <= held <= k - 2:
            raise ValueError(
                f"held_out_classes must leave at least 2 of the {k} classes of '{data.name}' for "
                f"training; got {held}."
            )
        self.train_classes = list(data.classes[: k - held])
        self.held_out = list(data.classes[k - held :])
        seen = k - held
        self._rows: dict[str, tuple[str, Tensor]] = {}
        for split in ("train", "val"):
            y = getattr(data, split).y
            self._rows[split] = (split, (y < seen).nonzero().flatten())
        y = data.test.y
        self._rows["test"] = (
            "test",
            (y >= seen).nonzero().flatten() if held else torch.arange(len(y)),
        )
        for split, (_, rows) in self._rows.items():
            if len(rows) < MIN_SPLIT:  # recall@10 needs 10 others to rank
                raise ValueError(
                    f"metric learning on '{data.name}' has {len(rows)} {split} example(s) of "
                    f"its {'held-out' if split == 'test' and held else 'training'} classes; "
                    f"retrieval@10 needs at least {MIN_SPLIT}, so add examples, raise the "
                    f"split's fraction or change held_out_classes."
                )

    # -- what the data asks of a model -----------------------------------------------------
    def spec(self) -> DataSpec:
        """The examples' shape in, a unit-norm embedding out; one ArcFace centre per class."""
        inner = self.inner.spec()
        p = len(self.train_classes)
        return replace(
            inner,
            num_outputs=p,
            output="embedding",
            description=f"embeddings of {p} training classes",
        )

    def accepted(self) -> frozenset[str]:
        """What the data's own classification task accepts (images train image or MLP towers)."""
        return self.inner.accepted() & self.accepts

    def check_model(self, name: str, cls: type, config: Any) -> None:
        """Separate towers are trained on pairs: only the pair losses train both."""
        if not getattr(config, "shared", True) and self.loss_name not in ("infonce", "contrastive"):
            raise ValueError(
                f"'{name}' with shared=False has a query and a gallery tower, trained on pairs; "
                f"loss {self.loss_name!r} trains one tower, so use --loss infonce or contrastive."
            )

    # -- sizes and batches -------------------------------------------------------------------
    def split_size(self, split: str) -> int:
        """Examples of `split` (test: of the held-out classes)."""
        return len(self._rows[split][1])

    def labels(self, split: str) -> Tensor:
        """Class indices (N,) of `split`'s examples, in the data's class numbering."""
        source, rows = self._rows[split]
        return getattr(self.data, source).y[rows]

    def batch(self, split: str, index: Tensor) -> tuple[Tensor, ...]:
        """The data's own batch for these examples: inputs (and lengths or a mask), labels."""
        source, rows = self._rows[split]
        return self.inner.batch(source, rows[index])

    def epoch_batches(self, generator: torch.Generator, batch_size: int) -> list[Tensor]:
        """Class-balanced batches for one epoch: P classes x K examples, seeded by `generator`.

        Each class's examples are visited in a shuffled order that starts again when used up, so
        every example appears about once per epoch; ceil(N / batch_size) batches are drawn.
        """
        labels = self.labels("train")
        classes = labels.unique()
        p = max(1, min(len(classes), batch_size // 4))
        k = max(1, batch_size // p)
        members = [(labels == c).nonzero().flatten() for c in classes]
        queues = [m[torch.randperm(len(m), generator=generator)] for m in members]
        cursor = [0] * len(members)
        batches = []
        for _ in range(math.ceil(len(labels) / batch_size)):
            chosen = torch.randperm(len(classes), generator=generator)[:p].tolist()
            parts = []
            for c in chosen:
                take, got = [], 0
                while got < k:
                    if cursor[c] == len(queues[c]):
                        m = members[c]
                        queues[c] = m[torch.randperm(len(m), generator=generator)]
                        cursor[c] = 0
                    step = min(k - got, len(queues[c]) - cursor[c])
                    take.append(queues[c][cursor[c] : cursor[c] + step])
                    cursor[c] += step
                    got += step
                parts.append(torch.cat(take))
            batches.append(torch.cat(parts))
        return batches

    # -- loss and embeddings ----------------------------------------------------------------
    def embed(
        self,
        model: nn.Module,
        inputs: tuple[Tensor, ...],
        tower: int | None = None,
        head: bool | None = None,
    ) -> Tensor:
        """Unit-norm embeddings (B, E) of a batch's inputs (see `embedding_view`)."""
        with embedding_view(model, tower, head):
            return self.inner.logits(model, inputs).float()

    def loss(self, model: nn.Module, batch: tuple[Tensor, ...]) -> Tensor:
        """The chosen loss of a class-balanced batch."""
        from fieldguide.layers import metric

        inputs, y = batch[:-1], batch[-1]
        name = self.loss_name
        if name in ("infonce", "contrastive") and not model.config.shared:
            a, b = same_class_pairs(y)
            z1 = self.embed(model, tuple(t[a] for t in inputs), tower=0, head=True)
            z2 = self.embed(model, tuple(t[b] for t in inputs), tower=1, head=True)
            if name == "infonce":
                return metric.info_nce(z1, z2, model.temperature(), labels=y[a])
            z_all = torch.cat([z1, z2])
            return self._contrastive(z_all, torch.cat([y[a], y[b]]))
        z = self.embed(model, inputs, head=True)  # the losses see the projection head
        if name == "infonce":
            a, b = same_class_pairs(y)
            return metric.info_nce(z[a], z[b], model.temperature(), labels=y[a])
        if name in ("triplet", "triplet-semihard"):
            mining = "semi-hard" if name == "triplet-semihard" else "batch-hard"
            return metric.triplet_loss(z, y, margin=TRIPLET_MARGIN, mining=mining)
        if name == "arcface":
            return metric.arcface_loss(
                z, model.class_centres, y, margin=ARCFACE_MARGIN, scale=ARCFACE_SCALE
            )
        return self._contrastive(z, y)

    @staticmethod
    def _contrastive(z: Tensor, y: Tensor) -> Tensor:
        from fieldguide.layers import metric

        z1, z2, same = metric.pairs_from_batch(z, y)
        return metric.contrastive_loss(z1, z2, same, margin=CONTRASTIVE_MARGIN)

    def outputs(self, model: nn.Module, batch: tuple[Tensor, ...]) -> Tensor:
        """Embeddings (B, E) of one batch (the query tower)."""
        return self.embed(model, batch[:-1])

    def embeddings(self, model: nn.Module, split: str, tower: int = 0, **options: Any) -> Tensor:
        """Embeddings (N, E) of every example of `split` through `tower`."""
        with embedding_view(model, tower):
            return self.predict(model, split, **options)

    def evaluate(self, model: nn.Module, split: str, **eval_options: Any) -> dict[str, float]:
        """Leave-one-out retrieval and verification metrics on `split`."""
        queries = self.embeddings(model, split, 0, **eval_options)
        gallery = (
            queries if model.config.shared else self.embeddings(model, split, 1, **eval_options)
        )
        metrics = space_metrics(queries, self.labels(split), gallery)
        return named(split, metrics)

    def baselines(self, split: str) -> dict[str, dict[str, float]]:
        """The same retrieval on the inputs themselves (not for token ids, which have no space)."""
        if self.inner.accepted() == frozenset({"tokens"}):
            return {}
        source, rows = self._rows[split]
        x = getattr(self.data, source).x[rows].flatten(1).float()
        x = nn.functional.normalize(x - x.mean(0), dim=1)
        metrics = space_metrics(x, self.labels(split), x)
        return {"input space (cosine)": metrics}

    def state(self) -> dict[str, Any]:
        """The classes trained on, those held out, and the loss."""
        return {
            "train_classes": self.train_classes,
            "held_out_classes": self.held_out,
            "loss": self.loss_name,
        }

    def write_artifacts(self, model: nn.Module, run_dir: Path, **eval_options: Any) -> None:
        """index.safetensors: the gallery embeddings of the training examples and their labels.

        `fieldguide search` ranks them against a query; each row's source (a file of an image
        folder, or "train #i") is kept in the file's metadata.
        """
        import json

        from safetensors.torch import save_file

        gallery = 1 if not model.config.shared else 0
        z = self.embeddings(model, "train", gallery, **eval_options)
        source, rows = self._rows["train"]
        names = getattr(self.data, "sources", None) or {}
        listed = names.get(source)
        sources = [listed[int(r)] if listed else f"{source} #{int(r)}" for r in rows]
        meta = {
            "format": "fieldguide-index-1",
            "classes": json.dumps(list(self.data.classes)),
            "sources": json.dumps(sources),
        }
        save_file(
            {"embeddings": z.contiguous(), "labels": self.labels("train").contiguous()},
            str(run_dir / "index.safetensors"),
            metadata=meta,
        )


def same_class_pairs(y: Tensor) -> tuple[Tensor, Tensor]:
    """Indices (a, b) pairing up examples of the same class, two by two, in batch order.

    A class with an odd count leaves its last example out. Raises when no class has two.
    """
    order = torch.sort(y, stable=True).indices
    first, second = [], []
    start = 0
    sorted_y = y[order]
    while start < len(order):
        end = start
        while end < len(order) and sorted_y[end] == sorted_y[start]:
            end += 1
        run = order[start:end]
        pairs = len(run) // 2
        first.append(run[: 2 * pairs : 2])
        second.append(run[1 : 2 * pairs : 2])
        start = end
    a, b = torch.cat(first), torch.cat(second)
    if len(a) == 0:
        raise ValueError("a metric-learning batch needs two examples of some class; it has none.")
    return a, b


def space_metrics(queries: Tensor, labels: Tensor, gallery: Tensor) -> dict[str, float]:
    """Recall@1/5/10, MAP@R, ROC-AUC and EER of leave-one-out retrieval in one split.

    With `gallery` the same tensor as `queries` (a shared tower) this is the usual
    leave-one-out; otherwise queries are ranked against the gallery tower's embeddings of the
    same examples, each query's own row left out.
    """
    from fieldguide.tasks import retrieval_metrics as rm

    if gallery is queries:
        metrics = rm.retrieval_metrics(queries, labels)
        metrics |= rm.verification_metrics(queries, labels)
    else:
        metrics = rm.retrieval_metrics(queries, labels, gallery=gallery)
        metrics |= rm.verification_metrics(queries, labels, gallery=gallery)
    return {k: float(v) for k, v in metrics.items()}
