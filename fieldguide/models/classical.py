"""Classical baselines as registered models: fitted in one pass, saved and applied like networks.

The guide's own advice is that on small tables trees often beat networks, and an honest report
puts the strong classical method beside every network. These models make that a run of its
own: `fieldguide train gbdt --data table.csv` writes the same run folder as a network
(config.toml, model.safetensors, report.md, preprocessing.json), and `predict` applies it.

Each model is an `nn.Module` whose fitted numbers are buffers, so it is saved as safetensors
(never a pickle) and evaluated by the same task code as any network: the forward pass
re-implements the fitted predictor in torch operators and gives what scikit-learn's own
`predict_proba` / `predict` gives on the same rows (tests/models/test_classical.py). Its
config records the fitted sizes (trees, nodes, rows, features), so `create_model` rebuilds
empty buffers of the right shape for the weights file to fill.

`fit(task, seed)` replaces the training loop: scikit-learn fits on the task's training split,
and the validation split picks what needs picking (the number of boosting rounds, the
regularisation C, the neighbours k). The recipe options of the loop (epochs, lr, ...) do not
apply and are refused by name (fieldguide/api/run.py).

| name           | reads              | fits                                                 |
| -------------- | ------------------ | ---------------------------------------------------- |
| gbdt           | vectors (tables)   | HistGradientBoosting, rounds early-stopped on val    |
| linear         | vectors (tables)   | logistic (classes) or ridge (regression), C on val   |
| knn            | vectors (images)   | k nearest training rows (Euclidean), k on val        |
| tfidf-logreg   | tokens (texts)     | TF-IDF of token n-grams + logistic, C on val         |
| seasonal-naive | sequences (series) | repeats the last season of the context window        |
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor

from fieldguide.models.base import DataSpec, Model
from fieldguide.models.registry import register

# The logit of a class the training split never showed: far below any fitted logit, so its
# probability is ~0, yet finite so the loss and calibration stay finite.
ABSENT_LOGIT = -30.0
# Regularisation strengths tried on the validation split (inverse, as scikit-learn's C).
C_GRID = (0.01, 0.1, 1.0, 10.0, 100.0)


class ClassicalModel(Model):
    """A model fitted by a closed-form or classical algorithm instead of gradient steps.

    Subclasses implement `fit(task, seed) -> list[str]` (notes for the run) and keep every
    fitted number in a buffer; `num_parameters` counts those fitted numbers.
    """

    fits_directly: ClassVar[bool] = True
    fits_tasks: ClassVar[tuple[str, ...]] = ("classification", "regression")  # tasks it fits

    def num_parameters(self) -> int:
        """Fitted numbers (buffer elements): what the model learnt from the data."""
        return sum(b.numel() for b in self.buffers())

    def fit(self, task: Any, seed: int = 0) -> list[str]:
        """Fit on `task`'s training split (choices on its validation split); the run's notes."""
        raise NotImplementedError

    def _resize(self, **fitted: Any) -> None:
        """Record fitted sizes in the config, so `create_model(name, **config)` rebuilds it."""
        self.config = replace(self.config, **fitted)


def _split_arrays(task: Any, split: str) -> tuple[np.ndarray, np.ndarray]:
    """The whole `split` of a vector task as (X (N, D) float64, y (N,)) numpy arrays."""
    index = torch.arange(task.split_size(split))
    x, y = task.batch(split, index)[:2]
    return x.flatten(1).double().numpy(), y.numpy()


def _is_classification(task: Any) -> bool:
    return hasattr(task, "num_classes")


def _class_table(classes: np.ndarray, k: int) -> Tensor:
    """(K,) index of each of the task's K classes among the fitted `classes`, -1 if absent."""
    table = torch.full((k,), -1, dtype=torch.long)
    table[torch.as_tensor(classes, dtype=torch.long)] = torch.arange(len(classes))
    return table


def _binary_or_multi_logits(raw: Tensor, table: Tensor) -> Tensor:
    """Logits (B, K) from a fitted model's raw scores over the classes it saw.

    raw is (B, 1) for two seen classes (the log-odds of the second) or (B, S) for S > 2; a
    class the fit never saw gets ABSENT_LOGIT.
    """
    if raw.shape[1] == 1:  # binary: logits (0, z) give softmax = (1 - sigmoid z, sigmoid z)
        raw = torch.cat([torch.zeros_like(raw), raw], 1)
    seen = table >= 0
    out = torch.full((raw.shape[0], len(table)), ABSENT_LOGIT, dtype=raw.dtype)
    out[:, seen] = raw[:, table[seen]]
    return out


def fit_logistic(
    x: Any, y: np.ndarray, x_val: Any, y_val: np.ndarray, c: float, grid: tuple, seed: int = 0
) -> tuple[Any, float]:
    """Logistic regression at C=c, or (c == 0) the grid's best on validation accuracy.

    Returns (the fitted estimator, its C); ties keep the first (the strongest regulariser).
    """
    from sklearn.linear_model import LogisticRegression

    best, best_score, best_c = None, -math.inf, 0.0
    for value in (c,) if c > 0 else grid:
        est = LogisticRegression(C=value, max_iter=2000, random_state=seed).fit(x, y)
        score = float((est.predict(x_val) == y_val).mean())
        if score > best_score:
            best, best_score, best_c = est, score, value
    return best, best_c


def logistic_rows(est: Any, k: int) -> tuple[Tensor, Tensor]:
    """(weight (K, D), bias (K,)) in float64: logits of the task's K classes from `est`.

    scikit-learn fits one log-odds row for two classes, kept as logits (0, z); a class the fit
    never saw gets a zero row and ABSENT_LOGIT.
    """
    coef = torch.as_tensor(np.atleast_2d(est.coef_), dtype=torch.float64)
    intercept = torch.as_tensor(np.atleast_1d(est.intercept_), dtype=torch.float64)
    if len(est.classes_) == 2:
        coef = torch.cat([torch.zeros_like(coef), coef])
        intercept = torch.cat([torch.zeros_like(intercept), intercept])
    table = _class_table(est.classes_, k)
    seen = table >= 0
    weight = torch.zeros(k, coef.shape[1], dtype=torch.float64)
    bias = torch.full((k,), ABSENT_LOGIT, dtype=torch.float64)
    weight[seen], bias[seen] = coef[table[seen]], intercept[table[seen]]
    return weight, bias


def _vector_spec(cls: type, config: Any, spec: DataSpec) -> Any:
    cls.refuse_output(spec)
    if len(spec.shape) < 1:
        raise ValueError(f"{cls.__name__} reads vectors; the data gives examples of shape ().")
    width = math.prod(spec.shape)
    return replace(config, in_channels=width, out_dim=spec.num_outputs)


class VectorModel(ClassicalModel):
    """A classical model of flat vectors (table rows, or images' pixels)."""

    reads: ClassVar[str] = "vectors"
    invariants: ClassVar[frozenset[str]] = frozenset({"batch_independent"})

    @property
    def input_description(self) -> str:
        """What forward expects, in words and shape letters."""
        return f"vectors (B, {self.config.in_channels or 'D'})"

    def example_input(self, batch_size: int = 2) -> Tensor:
        """A small random input that forward accepts."""
        return torch.randn(batch_size, max(self.config.in_channels, 1))

    @classmethod
    def config_for_data(cls, config: Any, spec: DataSpec) -> Any:
        """The config with in_channels and out_dim set from `spec`."""
        return _vector_spec(cls, config, spec)


# -- gradient-boosted trees ------------------------------------------------------------------


@dataclass(frozen=True)
class GBDTConfig:
    """HistGradientBoosting's main knobs, and the sizes of the fitted forest."""

    in_channels: int = 0  # features, from the data
    out_dim: int = 0  # classes, or 1 for regression, from the data
    max_iter: int = 500  # boosting rounds at most; validation loss stops them earlier
    learning_rate: float = 0.1  # shrinkage of each tree
    max_leaf_nodes: int = 31  # leaves per tree
    min_samples_leaf: int = 20  # rows per leaf at least
    l2_regularization: float = 0.0  # on leaf values
    patience: int = 20  # rounds without a better validation loss before stopping
    # Fitted sizes (set by fit, recorded in config.toml so the weights can be loaded again).
    trees: int = 0
    nodes: int = 0
    depth: int = 0
    scores: int = 0  # raw scores per row: 1 (regression, two classes) or the classes seen


class GBDT(VectorModel):
    """Gradient-boosted trees (scikit-learn HistGradientBoosting): the first pick on small tables.

    Fitted on the training split with early stopping on the validation split's loss. The
    forest is kept as padded node arrays (T trees x N nodes) and walked in torch: every row
    descends every tree at once, `depth` steps, going left when x <= threshold (or when x is
    missing and the split sends missing values left), and the leaf values are summed per
    class onto the fitted baseline score.
    """

    def __init__(self, config: GBDTConfig) -> None:
        super().__init__(config)
        t, n = config.trees, max(config.nodes, 1)
        self.register_buffer("feature", torch.zeros(t, n, dtype=torch.long))
        self.register_buffer("threshold", torch.zeros(t, n, dtype=torch.float64))
        self.register_buffer("left", torch.zeros(t, n, dtype=torch.long))
        self.register_buffer("right", torch.zeros(t, n, dtype=torch.long))
        self.register_buffer("is_leaf", torch.ones(t, n, dtype=torch.bool))
        self.register_buffer("missing_left", torch.zeros(t, n, dtype=torch.bool))
        self.register_buffer("value", torch.zeros(t, n, dtype=torch.float64))
        self.register_buffer("tree_score", torch.zeros(t, dtype=torch.long))  # score of each tree
        self.register_buffer("baseline", torch.zeros(max(config.scores, 1), dtype=torch.float64))
        self.register_buffer("classes", torch.arange(max(config.out_dim, 1)))  # task class -> score

    def fit(self, task: Any, seed: int = 0) -> list[str]:
        """Fit on the task's training split (choices on validation); the run's notes."""
        from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

        c = self.config
        x, y = _split_arrays(task, "train")
        x_val, y_val = _split_arrays(task, "val")
        classify = _is_classification(task)
        kind = HistGradientBoostingClassifier if classify else HistGradientBoostingRegressor
        if classify:  # early stopping scores validation rows of the classes it was fitted on
            seen = np.isin(y_val, y)
            x_val, y_val = x_val[seen], y_val[seen]
        est = kind(
            max_iter=c.max_iter,
            learning_rate=c.learning_rate,
            max_leaf_nodes=c.max_leaf_nodes,
            min_samples_leaf=c.min_samples_leaf,
            l2_regularization=c.l2_regularization,
            early_stopping=True,
            n_iter_no_change=c.patience,
            scoring="loss",
            random_state=seed,
        )
        est.fit(x, y, X_val=x_val, y_val=y_val)
        self.load_estimator(est, task)
        return [
            f"gbdt fitted {est.n_iter_} boosting rounds of at most {c.max_iter} (validation "
            f"loss stopped it after {c.patience} rounds without improving), "
            f"{self.config.trees} trees"
        ]

    def load_estimator(self, est: Any, task: Any) -> None:
        """Copy a fitted HistGradientBoosting estimator's trees into the buffers."""
        predictors = [tree for round_ in est._predictors for tree in round_]
        per_round = len(est._predictors[0])
        if any(tree.nodes["is_categorical"].any() for tree in predictors):
            raise ValueError("gbdt stores numeric splits only; the data has categorical splits.")
        t, n = len(predictors), max(len(tree.nodes) for tree in predictors)
        depth = int(max(tree.nodes["depth"].max() for tree in predictors))
        seen = getattr(est, "classes_", None)
        k = task.num_classes if _is_classification(task) else 1
        self._resize(trees=t, nodes=n, depth=depth, scores=per_round)
        fresh = GBDT(self.config)
        for i, tree in enumerate(predictors):
            nodes, m = tree.nodes, len(tree.nodes)
            fresh.feature[i, :m] = torch.as_tensor(nodes["feature_idx"].astype(np.int64))
            fresh.threshold[i, :m] = torch.as_tensor(nodes["num_threshold"])
            fresh.left[i, :m] = torch.as_tensor(nodes["left"].astype(np.int64))
            fresh.right[i, :m] = torch.as_tensor(nodes["right"].astype(np.int64))
            fresh.is_leaf[i, :m] = torch.as_tensor(nodes["is_leaf"].astype(bool))
            fresh.missing_left[i, :m] = torch.as_tensor(nodes["missing_go_to_left"].astype(bool))
            fresh.value[i, :m] = torch.as_tensor(nodes["value"])
            fresh.tree_score[i] = i % per_round
        fresh.baseline.copy_(torch.as_tensor(np.ravel(est._baseline_prediction)))
        if seen is not None:
            fresh.classes.copy_(_class_table(seen, k))
        for name, buffer in fresh.named_buffers():
            setattr(self, name, buffer)

    def raw_scores(self, x: Tensor) -> Tensor:
        """The forest's raw scores (B, scores) in float64: baseline + the leaves reached."""
        c = self.config
        x = x.flatten(1).double()
        b, t, n = x.shape[0], c.trees, max(c.nodes, 1)
        offset = torch.arange(t, device=x.device) * n  # flat index of each tree's root
        node = offset.expand(b, t)  # (B, T) flat node index per row and tree
        feature, threshold = self.feature.flatten(), self.threshold.flatten()
        left, right = self.left.flatten() + offset.repeat_interleave(n), self.right.flatten()
        right = right + offset.repeat_interleave(n)
        leaf, missing_left = self.is_leaf.flatten(), self.missing_left.flatten()
        for _ in range(c.depth):
            xv = x.gather(1, feature[node])  # (B, T) the feature each row's node splits on
            go_left = torch.where(xv.isnan(), missing_left[node], xv <= threshold[node])
            node = torch.where(leaf[node], node, torch.where(go_left, left[node], right[node]))
        values = self.value.flatten()[node]  # (B, T) the leaf each row reached in each tree
        scores = torch.zeros(b, max(c.scores, 1), dtype=torch.float64, device=x.device)
        scores.index_add_(1, self.tree_score, values)
        return scores + self.baseline

    def forward(self, x: Tensor) -> Tensor:
        """Logits (B, K), or the regression value (B, 1), of rows x (B, D)."""
        raw = self.raw_scores(x)
        if self.config.out_dim > 1:  # classes; regression has one output
            return _binary_or_multi_logits(raw, self.classes).float()
        return raw.float()


# -- linear models ---------------------------------------------------------------------------


@dataclass(frozen=True)
class LinearConfig:
    """A linear model on the features; C picked on validation unless given."""

    in_channels: int = 0  # features, from the data
    out_dim: int = 0  # classes, or 1 for regression, from the data
    C: float = 0.0  # inverse L2 strength; 0 tries 0.01 .. 100 and keeps the best on validation
    max_iter: int = 2000  # solver iterations at most


class Linear(VectorModel):
    """Logistic regression (classification) or ridge regression, fitted by scikit-learn.

    The fitted map is logits = x W^T + b; for two classes scikit-learn fits one log-odds row,
    kept as logits (0, z).
    """

    def __init__(self, config: LinearConfig) -> None:
        super().__init__(config)
        k, d = max(config.out_dim, 1), max(config.in_channels, 1)
        self.register_buffer("weight", torch.zeros(k, d, dtype=torch.float64))
        self.register_buffer("bias", torch.zeros(k, dtype=torch.float64))

    def fit(self, task: Any, seed: int = 0) -> list[str]:
        """Fit on the task's training split (choices on validation); the run's notes."""
        from sklearn.linear_model import Ridge

        x, y = _split_arrays(task, "train")
        x_val, y_val = _split_arrays(task, "val")
        if _is_classification(task):
            est, best_c = fit_logistic(x, y, x_val, y_val, self.config.C, C_GRID, seed)
            self.weight, self.bias = logistic_rows(est, task.num_classes)
            what = "logistic regression"
        else:
            best, best_c = None, self.config.C
            for c in (self.config.C,) if self.config.C > 0 else C_GRID:
                est = Ridge(alpha=1.0 / c).fit(x, y)
                score = -float(((est.predict(x_val) - y_val) ** 2).mean())
                if best is None or score > best[0]:
                    best, best_c = (score, est), c
            self.weight = torch.as_tensor(np.atleast_2d(best[1].coef_), dtype=torch.float64)
            self.bias = torch.as_tensor(np.atleast_1d(best[1].intercept_), dtype=torch.float64)
            what = "ridge regression"
        chosen = "given" if self.config.C > 0 else "chosen on validation"
        return [f"linear: {what} with C={best_c:g} ({chosen})"]

    def forward(self, x: Tensor) -> Tensor:
        """Logits (B, K), or the regression value (B, 1), of rows x (B, D)."""
        return (x.flatten(1).double() @ self.weight.T + self.bias).float()


# -- k nearest neighbours --------------------------------------------------------------------


@dataclass(frozen=True)
class KNNConfig:
    """k-NN on the flattened examples; k picked on validation unless given."""

    in_channels: int = 0  # features (pixels), from the data
    out_dim: int = 0  # classes, from the data
    k: int = 0  # neighbours; 0 tries 1, 3, 5, 9, 15 and keeps the best on validation
    max_rows: int = 20000  # training rows kept at most (a seeded sample beyond that)
    rows: int = 0  # fitted: training rows kept


class KNN(VectorModel):
    """k nearest neighbours by Euclidean distance: the classic baseline for small images.

    The probabilities are the neighbours' class votes (with a 1e-6 floor so the log-loss stays
    finite); ties in distance go to the earlier training row.
    """

    fits_tasks: ClassVar[tuple[str, ...]] = ("classification",)

    reads: ClassVar[str] = "vectors"
    invariants: ClassVar[frozenset[str]] = frozenset({"batch_independent"})

    def __init__(self, config: KNNConfig) -> None:
        super().__init__(config)
        self.register_buffer("train_x", torch.zeros(config.rows, max(config.in_channels, 1)))
        self.register_buffer("train_y", torch.zeros(config.rows, dtype=torch.long))
        self.register_buffer("neighbours", torch.tensor(max(config.k, 1)))

    @classmethod
    def config_for_data(cls, config: KNNConfig, spec: DataSpec) -> KNNConfig:
        """The config with the fields the data decides set from `spec`."""
        if spec.output != "per-example" or spec.num_outputs < 2 or spec.vocab_size:
            raise ValueError("KNN classifies examples; this task needs another output.")
        return super().config_for_data(config, spec)

    def fit(self, task: Any, seed: int = 0) -> list[str]:
        """Fit on the task's training split (choices on validation); the run's notes."""
        if not _is_classification(task):
            raise ValueError("knn classifies; this task is not a classification.")
        x, y = _split_arrays(task, "train")
        notes = []
        if len(x) > self.config.max_rows:
            keep = np.random.default_rng(seed).permutation(len(x))[: self.config.max_rows]
            keep.sort()
            notes.append(f"knn kept a seeded sample of {len(keep)} of {len(x)} training rows")
            x, y = x[keep], y[keep]
        self._resize(rows=len(x))
        self.train_x = torch.as_tensor(x, dtype=torch.float32)
        self.train_y = torch.as_tensor(y, dtype=torch.long)
        grid = (self.config.k,) if self.config.k else (1, 3, 5, 9, 15)
        x_val, y_val = _split_arrays(task, "val")
        scores = {}
        for k in grid:
            self.neighbours = torch.tensor(min(k, len(x)))
            guess = self(torch.as_tensor(x_val, dtype=torch.float32)).argmax(1).numpy()
            scores[k] = float((guess == y_val).mean())
        best = max(grid, key=lambda k: (scores[k], -k))  # ties: the fewest neighbours
        self.neighbours = torch.tensor(min(best, len(x)))
        chosen = "given" if self.config.k else "chosen on validation"
        return [*notes, f"knn: k={best} ({chosen}) over {len(x)} training rows"]

    def forward(self, x: Tensor) -> Tensor:
        """Log of the neighbours' vote shares (B, K) for examples x (B, D)."""
        x = x.flatten(1).float()
        distance = torch.cdist(x, self.train_x)  # (B, N)
        k = int(self.neighbours)
        nearest = distance.topk(k, dim=1, largest=False, sorted=True).indices  # (B, k)
        votes = torch.zeros(x.shape[0], self.config.out_dim, device=x.device)
        votes.scatter_add_(1, self.train_y[nearest], torch.ones_like(nearest, dtype=votes.dtype))
        return (votes / k).clamp_min(1e-6).log()


# -- TF-IDF + logistic regression on token n-grams ------------------------------------------------


@dataclass(frozen=True)
class TfidfConfig:
    """TF-IDF of token n-grams with a logistic regression on top."""

    vocab_size: int = 0  # token ids, from the data
    out_dim: int = 0  # classes, from the data
    ngram_max: int = 5  # n-grams of 1 .. ngram_max tokens (bytes: characters)
    min_df: int = 2  # n-grams in fewer training texts are dropped
    max_features: int = 300000  # the most frequent n-grams kept at most
    C: float = 0.0  # inverse L2 strength; 0 tries 1, 3, 10, 30 and keeps the best on validation
    features: int = 0  # fitted: n-grams in the vocabulary


def _longest_ngram(vocab: int) -> int:
    n = 1
    while vocab ** (n + 1) * 8 < 1 << 50:
        n += 1
    return n


def ngram_keys(ids: Tensor, mask: Tensor, vocab: int, n_max: int) -> tuple[Tensor, Tensor]:
    """Every n-gram (1 <= n <= n_max) of real tokens as one int64 key, with its row.

    A key packs the n ids base `vocab` and then n itself (key * 8 + n), so n-grams of
    different lengths never collide. Returns (rows (M,), keys (M,)).
    """
    b, t = ids.shape
    rows, keys = [], []
    for n in range(1, n_max + 1):
        if t < n:
            break
        key = torch.zeros(b, t - n + 1, dtype=torch.long, device=ids.device)
        real = torch.ones_like(key, dtype=torch.bool)
        for j in range(n):
            key = key * vocab + ids[:, j : t - n + 1 + j].long()
            real &= mask[:, j : t - n + 1 + j]
        row = torch.arange(b, device=ids.device)[:, None].expand_as(key)
        rows.append(row[real])
        keys.append(key[real] * 8 + n)
    return torch.cat(rows), torch.cat(keys)


class TfidfLogReg(ClassicalModel):
    """TF-IDF of token n-grams + logistic regression: the classic strong text baseline.

    On byte tokens the n-grams are character n-grams (1-5 by default). Term counts are
    sublinear (1 + log tf), idf = log((1 + N) / (1 + df)) + 1 over the training texts, each
    text's vector is L2-normalised, and the vocabulary keeps n-grams seen in at least min_df
    training texts. The forward pass computes the same sparse features in torch and applies
    the fitted weights, so predict works on new texts.
    """

    reads: ClassVar[str] = "tokens"
    fits_tasks: ClassVar[tuple[str, ...]] = ("text-classification",)
    invariants: ClassVar[frozenset[str]] = frozenset({"batch_independent"})

    def __init__(self, config: TfidfConfig) -> None:
        super().__init__(config)
        f, k = config.features, max(config.out_dim, 1)
        self.register_buffer("keys", torch.zeros(f, dtype=torch.long))
        self.register_buffer("idf", torch.zeros(f, dtype=torch.float64))
        self.register_buffer("weight", torch.zeros(f, k, dtype=torch.float64))
        self.register_buffer("bias", torch.zeros(k, dtype=torch.float64))

    @property
    def input_description(self) -> str:
        """What forward expects, in words and shape letters."""
        vocab = self.config.vocab_size or "V"
        return f"token ids (B, T) in [0, {vocab}), optional padding_mask (B, T)"

    def example_input(self, batch_size: int = 2) -> Tensor:
        """A small random input that forward accepts."""
        return torch.randint(1, max(self.config.vocab_size, 2), (batch_size, 8))

    @classmethod
    def config_for_data(cls, config: TfidfConfig, spec: DataSpec) -> TfidfConfig:
        """The config with the fields the data decides set from `spec`."""
        cls.refuse_output(spec)
        if not spec.vocab_size:
            raise ValueError("TfidfLogReg reads token ids; the data gives no vocabulary.")
        if spec.vocab_size**config.ngram_max * 8 >= 1 << 50:  # n-gram keys must fit 50 bits
            raise ValueError(
                f"tfidf-logreg packs n-grams of a {spec.vocab_size}-token vocabulary into 50 "
                f"bits, which holds at most {_longest_ngram(spec.vocab_size)} tokens; got "
                f"ngram_max={config.ngram_max}."
            )
        return replace(config, vocab_size=spec.vocab_size, out_dim=spec.num_outputs)

    def _features(self, ids: Tensor, mask: Tensor, keys: Tensor, idf: Tensor) -> tuple:
        """(rows, columns, values) of the L2-normalised TF-IDF matrix of a batch."""
        rows, grams = ngram_keys(ids, mask, self.config.vocab_size, self.config.ngram_max)
        col = torch.searchsorted(keys, grams).clamp_max(max(len(keys) - 1, 0))
        known = keys[col] == grams if len(keys) else torch.zeros_like(grams, dtype=torch.bool)
        pair = rows[known] * max(len(keys), 1) + col[known]
        pair, count = torch.unique(pair, return_counts=True)
        rows, col = pair // max(len(keys), 1), pair % max(len(keys), 1)
        value = (1 + count.double().log()) * idf[col]
        norm = torch.zeros(ids.shape[0], dtype=torch.float64).index_add_(0, rows, value**2)
        return rows, col, value / norm.sqrt().clamp_min(1e-12)[rows]

    def forward(self, x: Tensor, padding_mask: Tensor | None = None) -> Tensor:
        """Logits (B, K) of token ids x (B, T); padding_mask True at real tokens."""
        mask = torch.ones_like(x, dtype=torch.bool) if padding_mask is None else padding_mask
        rows, col, value = self._features(x, mask, self.keys, self.idf)
        logits = self.bias.expand(x.shape[0], -1).clone()
        logits.index_add_(0, rows, value[:, None] * self.weight[col])
        return logits.float()

    def _csr(self, task: Any, split: str, keys: Tensor, idf: Tensor) -> Any:
        from scipy.sparse import csr_matrix

        parts, n = [], task.split_size(split)
        for start in range(0, n, 512):
            index = torch.arange(start, min(start + 512, n))
            ids, mask = task.batch(split, index)[:2]
            rows, col, value = self._features(ids, mask, keys, idf)
            parts.append((rows + start, col, value))
        rows, col, value = (torch.cat(p).numpy() for p in zip(*parts, strict=True))
        return csr_matrix((value, (rows, col)), shape=(n, max(len(keys), 1)))

    def fit(self, task: Any, seed: int = 0) -> list[str]:
        """Fit on the task's training split (choices on validation); the run's notes."""
        c, n = self.config, task.split_size("train")
        grams_all = []
        for start in range(0, n, 512):  # document frequency of every n-gram
            ids, mask = task.batch("train", torch.arange(start, min(start + 512, n)))[:2]
            rows, grams = ngram_keys(ids, mask, c.vocab_size, c.ngram_max)
            pair = torch.unique(rows * (1 << 50) + grams)  # one count per text
            grams_all.append(pair % (1 << 50))
        keys, counts = torch.unique(torch.cat(grams_all), return_counts=True)
        keep = counts >= c.min_df
        keys, counts = keys[keep], counts[keep]
        if len(keys) > c.max_features:  # the most frequent, ties by key
            top = torch.argsort(counts, descending=True, stable=True)[: c.max_features]
            keys, counts = keys[top.sort().values], counts[top.sort().values]
        if not len(keys):
            raise ValueError(f"no n-gram occurs in {c.min_df} training texts; lower min_df.")
        idf = ((1 + n) / (1 + counts.double())).log() + 1
        x, y = self._csr(task, "train", keys, idf), task.labels("train").numpy()
        x_val, y_val = self._csr(task, "val", keys, idf), task.labels("val").numpy()
        best, best_c = fit_logistic(x, y, x_val, y_val, c.C, (1.0, 3.0, 10.0, 30.0), seed)
        self._resize(features=len(keys))
        self.keys, self.idf = keys, idf
        weight, self.bias = logistic_rows(best, task.num_classes)
        self.weight = weight.T.contiguous()  # (features, K): rows gathered by n-gram
        chosen = "given" if c.C > 0 else "chosen on validation"
        return [
            f"tfidf-logreg: {len(keys):,} n-grams of 1-{c.ngram_max} tokens seen in at least "
            f"{c.min_df} training texts, C={best_c:g} ({chosen})"
        ]


# -- seasonal naive ----------------------------------------------------------------------------


@dataclass(frozen=True)
class SeasonalNaiveConfig:
    """The seasonal-naive forecast: nothing to learn but the season."""

    in_channels: int = 0  # columns of the series, from the data
    out_dim: int = 0  # horizon x columns, from the data
    season: int = 0  # fitted: the data's seasonal period in steps


class SeasonalNaive(ClassicalModel):
    """Seasonal naive: each future step repeats the same step of the context's last season.

    The forecast every forecasting report scores against (MASE divides by its in-sample error);
    as a model of its own it is the floor any learnt forecaster must clear.
    """

    reads: ClassVar[str] = "sequences"
    fits_tasks: ClassVar[tuple[str, ...]] = ("forecasting",)
    invariants: ClassVar[frozenset[str]] = frozenset({"batch_independent"})

    def __init__(self, config: SeasonalNaiveConfig) -> None:
        super().__init__(config)
        self.register_buffer("period", torch.tensor(max(config.season, 1)))

    @property
    def input_description(self) -> str:
        """What forward expects, in words and shape letters."""
        return f"windows (B, L, {self.config.in_channels or 'C'}) with L >= season"

    def example_input(self, batch_size: int = 2) -> Tensor:
        """A small random input that forward accepts."""
        return torch.randn(batch_size, max(self.config.season, 1), max(self.config.in_channels, 1))

    @classmethod
    def config_for_data(cls, config: SeasonalNaiveConfig, spec: DataSpec) -> SeasonalNaiveConfig:
        """The config with the fields the data decides set from `spec`."""
        cls.refuse_output(spec)
        cls.refuse_shape(spec, "T C")
        return replace(config, in_channels=spec.shape[1], out_dim=spec.num_outputs)

    def fit(self, task: Any, seed: int = 0) -> list[str]:
        """Fit on the task's training split (choices on validation); the run's notes."""
        season = getattr(task, "season", 0)
        if not season:
            raise ValueError("seasonal-naive forecasts series; this task has no season.")
        self._resize(season=season)
        self.period = torch.tensor(season)
        return [f"seasonal-naive repeats the last season of {season} steps"]

    def forward(self, x: Tensor) -> Tensor:
        """The forecast (B, horizon * C), step-major, of windows x (B, L, C)."""
        from fieldguide.tasks.forecasting import seasonal_naive

        horizon = self.config.out_dim // self.config.in_channels
        return seasonal_naive(x, horizon, int(self.period)).flatten(1)


# -- spectral embedding + logistic regression -----------------------------------------------


@dataclass(frozen=True)
class SpectralConfig:
    """Node features beside the graph's leading eigenvectors, into a logistic regression."""

    in_channels: int = 0  # node features, from the data
    out_dim: int = 0  # classes, from the data
    dim: int = 32  # eigenvectors of the normalised adjacency kept
    C: float = 0.0  # inverse L2 strength; 0 tries 0.01 .. 100 and keeps the best on validation
    max_nodes: int = 10000  # the eigendecomposition is dense: larger graphs are refused


def spectral_embedding(
    num_nodes: int, edge_index: Tensor, edge_weight: Tensor | None, dim: int
) -> Tensor:
    """The `dim` leading eigenvectors (N, dim) of D^-1/2 (A + I) D^-1/2, A made symmetric.

    Leading eigenvectors of the normalised adjacency are the trailing ones of the normalised
    Laplacian: smooth over the edges, so nodes joined by many paths get close rows. Signs are
    fixed (each column's largest entry positive) and the decomposition runs in float64, so the
    same graph gives the same embedding at fit and at predict time.
    """
    weight = torch.ones(edge_index.shape[1], dtype=torch.float64)
    if edge_weight is not None:
        weight = edge_weight.double().cpu()
    a = torch.zeros(num_nodes, num_nodes, dtype=torch.float64)
    src, dst = edge_index.cpu()
    a.index_put_((src, dst), weight, accumulate=True)
    a = a + a.T + torch.eye(num_nodes, dtype=torch.float64)  # both directions, self-loops
    d = a.sum(1).rsqrt()
    values, vectors = torch.linalg.eigh(d[:, None] * a * d[None, :])  # ascending
    top = vectors[:, -min(dim, num_nodes) :].flip(1)  # (N, dim), largest eigenvalue first
    sign = top.gather(0, top.abs().argmax(0, keepdim=True)).sign()
    return top * torch.where(sign == 0, 1.0, sign)


class SpectralLogReg(ClassicalModel):
    """Spectral embedding + logistic regression: the classical baseline for node labels.

    Each node's features are standardised and put beside its row of the graph's leading
    eigenvectors (scaled by sqrt(N) to unit variance), and a logistic regression fitted on
    the training nodes (C on the validation nodes) maps them to classes. It is transductive:
    the embedding belongs to the graph it was fitted on, so predict on the same graph.
    """

    reads: ClassVar[str] = "graph"
    outputs: ClassVar[tuple[str, ...]] = ("per-node",)
    fits_tasks: ClassVar[tuple[str, ...]] = ("node-classification",)

    def __init__(self, config: SpectralConfig) -> None:
        super().__init__(config)
        d, k = max(config.in_channels, 1) + config.dim, max(config.out_dim, 1)
        self.register_buffer("mean", torch.zeros(max(config.in_channels, 1), dtype=torch.float64))
        self.register_buffer("scale", torch.ones(max(config.in_channels, 1), dtype=torch.float64))
        self.register_buffer("weight", torch.zeros(k, d, dtype=torch.float64))
        self.register_buffer("bias", torch.zeros(k, dtype=torch.float64))

    @property
    def input_description(self) -> str:
        """What forward expects, in words and shape letters."""
        return (
            f"node features (N, {self.config.in_channels or 'D'}), edge_index (2, E), "
            "optional edge_weight (E,)"
        )

    def example_input(self, batch_size: int = 2) -> tuple[Tensor, ...]:
        """A random ring graph of `batch_size` nodes: (node features, edge_index)."""
        n = max(batch_size, 2)
        ring = torch.stack([torch.arange(n), torch.arange(1, n + 1) % n])
        return torch.randn(n, max(self.config.in_channels, 1)), ring

    @classmethod
    def config_for_data(cls, config: SpectralConfig, spec: DataSpec) -> SpectralConfig:
        """The config with the fields the data decides set from `spec`."""
        cls.refuse_output(spec)
        return replace(config, in_channels=spec.shape[0], out_dim=spec.num_outputs)

    def features(self, x: Tensor, edge_index: Tensor, edge_weight: Tensor | None = None) -> Tensor:
        """[standardised features, sqrt(N) x leading eigenvectors] per node (N, D + dim)."""
        n = x.shape[0]
        if n > self.config.max_nodes:
            raise ValueError(
                f"spectral-logreg decomposes the whole {n}-node graph densely; it takes at most "
                f"max_nodes={self.config.max_nodes} (--set max_nodes=N to raise it)."
            )
        key = (n, edge_index.data_ptr(), edge_index._version, tuple(edge_index.shape))
        key += (None,) if edge_weight is None else (edge_weight.data_ptr(), edge_weight._version)
        if getattr(self, "_cached", (None,))[0] != key:  # one decomposition per graph tensor
            embedding = spectral_embedding(n, edge_index, edge_weight, self.config.dim)
            self._cached = (key, embedding * math.sqrt(n))
        u = self._cached[1]
        z = (x.double().cpu() - self.mean) / self.scale
        if u.shape[1] < self.config.dim:  # a graph smaller than dim: zero columns
            u = torch.cat([u, u.new_zeros(n, self.config.dim - u.shape[1])], 1)
        return torch.cat([z, u], 1)

    def forward(self, x: Tensor, edge_index: Tensor, edge_weight: Tensor | None = None) -> Tensor:
        """Logits (N, K) of every node of the graph."""
        out = self.features(x, edge_index, edge_weight) @ self.weight.T + self.bias
        return out.float().to(x.device)

    def fit(self, task: Any, seed: int = 0) -> list[str]:
        """Fit on the task's training nodes (C on its validation nodes); the run's notes."""
        g = task.graph
        x = g.x.double()
        self.mean = x.mean(0)
        self.scale = x.std(0, correction=0).clamp_min(1e-12)
        weight = task.edge_weight if task.edge_weight.numel() else None
        feats = self.features(g.x, g.edge_index, weight).numpy()
        train, val = task.nodes["train"].numpy(), task.nodes["val"].numpy()
        y = g.y.numpy()
        best, best_c = fit_logistic(
            feats[train], y[train], feats[val], y[val], self.config.C, C_GRID, seed
        )
        self.weight, self.bias = logistic_rows(best, task.num_classes)
        chosen = "given" if self.config.C > 0 else "chosen on validation"
        return [
            f"spectral-logreg: {self.config.dim} leading eigenvectors of the {g.num_nodes}-node "
            f"graph beside its {x.shape[1]} node features, C={best_c:g} ({chosen})"
        ]


register("gbdt", GBDTConfig(), GBDT)
register("linear", LinearConfig(), Linear)
register("knn", KNNConfig(), KNN)
register("tfidf-logreg", TfidfConfig(), TfidfLogReg)
register("seasonal-naive", SeasonalNaiveConfig(), SeasonalNaive)
register("spectral-logreg", SpectralConfig(), SpectralLogReg)


def cross_validated_pick(
    task: Any, candidates: tuple[str, ...] = ("gbdt", "linear"), folds: int = 5, seed: int = 0
) -> tuple[str, dict[str, float]]:
    """The candidate with the best k-fold cross-validated score on train + validation rows.

    On a small table one validation split is a few dozen rows, too few to tell trees from a
    linear model; k folds over train + validation use every row for both fitting and scoring.
    Scores: accuracy for classification, negative mean squared error (z-scored target) for
    regression. Each candidate is its scikit-learn estimator at default strength: trees with
    scikit-learn's default rounds, a logistic (C=1) or ridge (alpha=1) model. Ties go to the
    first candidate. Returns (name, {name: score}).
    """
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.model_selection import KFold, StratifiedKFold, cross_val_score

    parts = [_split_arrays(task, split) for split in ("train", "val")]
    x = np.concatenate([p[0] for p in parts])
    y = np.concatenate([p[1] for p in parts])
    classify = _is_classification(task)
    smallest = int(np.bincount(y).min(initial=folds)) if classify else folds
    k = max(2, min(folds, smallest if classify else len(y)))
    if classify and np.bincount(y).min() < 2:  # a class with one row cannot be stratified
        splitter: Any = KFold(k, shuffle=True, random_state=seed)
    elif classify:
        splitter = StratifiedKFold(k, shuffle=True, random_state=seed)
    else:
        splitter = KFold(k, shuffle=True, random_state=seed)
    estimators = {
        "gbdt": (HistGradientBoostingClassifier if classify else HistGradientBoostingRegressor)(
            random_state=seed
        ),
        "linear": LogisticRegression(max_iter=2000) if classify else Ridge(alpha=1.0),
    }
    scoring = "accuracy" if classify else "neg_mean_squared_error"
    scores = {}
    for name in candidates:
        if name not in estimators:
            raise ValueError(
                f"cross_validated_pick compares {', '.join(estimators)}; got candidate '{name}'."
            )
        values = cross_val_score(estimators[name], x, y, cv=splitter, scoring=scoring)
        scores[name] = float(values.mean())
    best = max(candidates, key=lambda name: scores[name])  # max keeps the first of ties
    return best, scores
