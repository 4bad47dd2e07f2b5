"""Text classification: a text, as right-padded token ids, to one of K classes.

Letters: B batch, T tokens (the longest text of the batch), V vocabulary size, K classes.

Batch: (x (B, T), padding_mask (B, T), y (B,)): x int64 ids right-padded with PAD and trimmed to
the batch's longest text, padding_mask True at real tokens (the convention of
layers/attention.py) and False at padding, y class indices.
Head: a token encoder pooled to K logits, `model(x, padding_mask=mask)` -> (B, K); a config
with a `head` field is given head="sequence". Loss and metrics: those of `ClassificationTask`
(cross-entropy; accuracy, macro-F1, AUROC, ECE).
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from fieldguide.data.base import ClassificationData
from fieldguide.data.tokenizer import PAD, VOCAB_SIZE
from fieldguide.models.base import DataSpec
from fieldguide.tasks.base import SPLITS
from fieldguide.tasks.classification import ClassificationTask
from fieldguide.tasks.sequence_classification import split_lengths


class TextClassificationTask(ClassificationTask):
    """Classification of texts given as right-padded token ids (N, T) with their lengths."""

    name = "text-classification"
    modalities = ("text",)
    sample_shape = (1, "(T,) of token ids")
    accepts: ClassVar[frozenset[str]] = frozenset({"tokens"})

    def __init__(
        self,
        data: ClassificationData,
        *,
        label_smoothing: float = 0.0,
        class_weights: str = "none",
        vocab_size: int | None = None,
    ) -> None:
        if data.modality == "text" and data.train.x.dtype != torch.int64:
            raise ValueError(
                f"TextClassificationTask expects x as int64 token ids; got {data.train.x.dtype}."
            )
        super().__init__(data, label_smoothing=label_smoothing, class_weights=class_weights)
        self._tfidf: Any = None  # the TF-IDF baseline, fitted on first use
        # The byte tokenizer's unless the data was encoded with a model's own vocabulary.
        self.vocab_size = vocab_size or int(data.preprocessing.get("vocab_size", VOCAB_SIZE))
        steps = int(data.input_shape[0])
        # Without Split.lengths, a text ends where its PAD begins.
        self._lengths = {
            s: split_lengths(getattr(data, s), steps)
            if getattr(data, s).lengths is not None
            else (self._inputs[s] != PAD).sum(1)
            for s in SPLITS
        }

    # Batches are drawn from pools of this many batches' worth of texts, sorted by length.
    BUCKET_POOL = 50

    def epoch_batches(self, generator: torch.Generator, batch_size: int) -> list[Tensor]:
        """One epoch's batches of texts of similar length, in a random order, seeded.

        A shuffled epoch is cut into pools of 50 batches; each pool is sorted by length and
        split into batches, and the batches are shuffled. Every text appears once, batches
        stay random in content and order, and a batch pads to a length close to its texts'
        own: on Rotten Tomatoes' WordPiece tokens that is about half the padding of a plain
        shuffle, so an epoch takes markedly less compute.
        """
        perm = torch.randperm(self.train_size, generator=generator)
        lengths = self._lengths["train"][perm]
        pool = batch_size * self.BUCKET_POOL
        batches: list[Tensor] = []
        for start in range(0, len(perm), pool):
            order = lengths[start : start + pool].argsort(stable=True)
            batches.extend(perm[start : start + pool][order].split(batch_size))
        return [batches[i] for i in torch.randperm(len(batches), generator=generator).tolist()]

    def spec(self) -> DataSpec:
        """Up to T token ids in, one logit per class out, for the whole text."""
        k = self.num_classes
        return DataSpec(
            tuple(self.data.input_shape), k, vocab_size=self.vocab_size, description=f"{k} classes"
        )

    def eval_order(self, split: str) -> Tensor:
        """Shortest texts first: batches of similar length pad little.

        A text's output does not depend on its batch's padding, so this changes the cost of
        evaluation, not its result.
        """
        return self._lengths[split].argsort(stable=True)

    def baselines(self, split: str) -> dict[str, dict[str, float]]:
        """The majority class, and TF-IDF + logistic regression on the raw texts when known.

        TF-IDF of word 1- and 2-grams (sublinear tf, words seen at least twice in train) with
        an L2 logistic regression whose C (1, 3 or 10) is chosen on validation accuracy: the
        classic strong baseline for short texts, fitted on the same train split.
        """
        out = super().baselines(split)
        texts = getattr(self.data, "texts", None)
        if not texts:
            return out
        if self._tfidf is None:
            self._tfidf = self._fit_tfidf(texts)
        from sklearn.metrics import accuracy_score, f1_score

        y = self.labels(split).numpy()
        guess = self._tfidf.predict(texts[split])
        out["TF-IDF + logistic regression"] = {
            "accuracy": float(accuracy_score(y, guess)),
            "macro_f1": float(f1_score(y, guess, average="macro")),
        }
        return out

    def _fit_tfidf(self, texts: dict[str, list[str]]) -> Any:
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline

        best, best_acc = None, -1.0
        for c in (1.0, 3.0, 10.0):
            model = make_pipeline(
                TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True),
                LogisticRegression(C=c, solver="liblinear"),
            ).fit(texts["train"], self.labels("train").numpy())
            acc = float((model.predict(texts["val"]) == self.labels("val").numpy()).mean())
            if acc > best_acc:
                best, best_acc = model, acc
        return best

    def _trimmed(self, split: str, index: Tensor) -> tuple[Tensor, Tensor]:
        """Ids of `index`, cut to their longest text, and the padding mask (True at real ids)."""
        lengths = self._lengths[split][index]
        x = self._inputs[split][index][:, : int(lengths.max())]  # (B, T)
        mask = torch.arange(x.shape[1])[None, :] < lengths[:, None]  # (B, T)
        return x, mask

    def batch(self, split: str, index: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(x, padding_mask, y) of the texts `index` of `split`."""
        x, mask = self._trimmed(split, index)
        return x, mask, self._targets[split][index]

    def logits(self, model: nn.Module, inputs: tuple[Tensor, ...]) -> Tensor:
        """Logits (B, K) of token ids x (B, T) with their padding mask (True = real token)."""
        x, mask = inputs
        return model(x, padding_mask=mask)
