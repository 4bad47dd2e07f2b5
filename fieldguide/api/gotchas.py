"""The guide's common gotchas (§16), each run as a small measured experiment.

Every gotcha is one function that trains the advised setting and its contrast on the same
splits and seeds, with the project's own trainer and models, and returns a `Result`: the
question, the numbers per seed, and a verdict computed from those numbers (never written in
advance). A verdict names a winner only when every seed agrees on the sign of the paired
difference and its mean exceeds twice its standard error; otherwise it says the difference is
within the noise. `fieldguide gotchas` prints them; `--quick` shrinks each to a few seconds.

| name            | advice tested                          | data                           |
| --------------- | -------------------------------------- | ------------------------------ |
| trees-vs-mlp    | trees first on small tables            | breast cancer; adult (wine)    |
| tiny-batch-norm | GroupNorm rather than BatchNorm at B=2 | digits (8x8 scans)             |
| norm-decay      | no weight decay on norms and biases    | digits as vectors              |
| class-imbalance | class weights or focal loss            | digits, classes 5-9 thinned    |
| padding-masks   | mask padding in attention and pooling  | letter strings (synthetic)     |

The data is real (scikit-learn's bundled sets and fieldguide starters) except for the padding
experiment, whose texts are generated so that a tiny model learns them within seconds. Quick
mode reads wine instead of adult (whose file takes seconds to read) and trains less.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import math
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

# Headline difference below this is never called a win, whatever the noise (metrics in [0, 1]).
MIN_EFFECT = 0.005


@dataclass(frozen=True)
class Measurement:
    """One metric of one arm, one value per seed."""

    metric: str  # "test accuracy", "macro-F1", ...
    arm: str  # "gbdt", "mlp", "BatchNorm", ...
    values: tuple[float, ...]

    @property
    def mean(self) -> float:
        """Mean over seeds."""
        return statistics.fmean(self.values)

    @property
    def spread(self) -> float:
        """Sample standard deviation over seeds (0 for one seed)."""
        return statistics.stdev(self.values) if len(self.values) > 1 else 0.0

    def text(self) -> str:
        """'0.912 ± 0.013' (the ± part only with several seeds)."""
        if len(self.values) > 1:
            return f"{self.mean:.3f} ± {self.spread:.3f}"
        return f"{self.mean:.3f}"


@dataclass(frozen=True)
class Result:
    """One gotcha, measured: what was asked, what was run, what came out."""

    name: str
    question: str  # one line, in our words
    metric: str  # the headline metric, higher is better
    comparisons: tuple[tuple[str, str], ...]  # (advised arm, contrast arm) pairs
    measurements: tuple[Measurement, ...]
    verdict: str  # computed from the headline measurements
    winners: tuple[str | None, ...]  # per comparison: the arm that won, or None (no call)
    data: str  # what was trained on, and whether it is real or synthetic
    seeds: tuple[int, ...]
    seconds: float
    notes: tuple[str, ...] = ()

    def get(self, metric: str, arm: str) -> Measurement:
        """The measurement of `metric` for `arm`."""
        for m in self.measurements:
            if m.metric == metric and m.arm == arm:
                return m
        raise KeyError(f"{self.name} has no measurement of {metric!r} for {arm!r}.")


def compare(advised: Measurement, contrast: Measurement) -> str | None:
    """The arm that wins by the module's rule (paired by seed, higher is better), or None."""
    diffs = [a - c for a, c in zip(advised.values, contrast.values, strict=True)]
    if len(diffs) < 2:
        return None
    mean = statistics.fmean(diffs)
    stderr = statistics.stdev(diffs) / math.sqrt(len(diffs))
    same_sign = all(d > 0 for d in diffs) or all(d < 0 for d in diffs)
    if not same_sign or abs(mean) < max(2 * stderr, MIN_EFFECT):
        return None
    return advised.arm if mean > 0 else contrast.arm


def _verdict(metric: str, advised: Measurement, contrast: Measurement, winner: str | None) -> str:
    """One sentence saying what the numbers of one comparison show."""
    diff = advised.mean - contrast.mean
    n = len(advised.values)
    if n < 2:
        return (
            f"{advised.arm} {advised.mean:.3f} vs {contrast.arm} {contrast.mean:.3f} {metric} "
            "on one seed: too few seeds to call a direction."
        )
    if winner is None:
        return (
            f"{advised.arm} vs {contrast.arm}: {diff:+.3f} {metric} on average over {n} seeds, "
            "within the noise (seeds disagree or the gap is under twice its standard error)."
        )
    loser = contrast.arm if winner == advised.arm else advised.arm
    return f"{winner} beats {loser} by {abs(diff):.3f} {metric} on average, in each of {n} seeds."


def _result(
    name: str,
    question: str,
    metric: str,
    comparisons: Sequence[tuple[str, str]],
    measurements: Sequence[Measurement],
    data: str,
    seeds: Sequence[int],
    start: float,
    notes: Sequence[str] = (),
) -> Result:
    """Pack a result, computing its winners and verdict from the headline measurements."""
    by_arm = {m.arm: m for m in measurements if m.metric == metric}
    pairs = [(by_arm[a], by_arm[c]) for a, c in comparisons]
    winners = tuple(compare(a, c) for a, c in pairs)
    verdict = " ".join(_verdict(metric, a, c, w) for (a, c), w in zip(pairs, winners, strict=True))
    return Result(
        name=name,
        question=question,
        metric=metric,
        comparisons=tuple(tuple(c) for c in comparisons),
        measurements=tuple(measurements),
        verdict=verdict,
        winners=winners,
        data=data,
        seeds=tuple(seeds),
        seconds=time.perf_counter() - start,
        notes=tuple(notes),
    )


# -- shared pieces --------------------------------------------------------------------------


def _fit(model: Any, task: Any, seed: int, trainer_cls: type | None = None, **recipe: Any) -> Any:
    """Train `model` on `task` quietly with the project's Trainer and the recipe's overrides."""
    from fieldguide.train.config import TrainConfig
    from fieldguide.train.loop import Trainer

    config = TrainConfig(seed=seed, device="cpu", precision="fp32", **recipe)
    (trainer_cls or Trainer)(model, task, config, progress="quiet").fit()
    return model.eval()


def _table_data(x: np.ndarray, y: np.ndarray, name: str, seed: int, **split: float) -> Any:
    """ClassificationData of a table: a stratified split by seed, standardized on train."""
    from fieldguide.data.base import ClassificationData, stratified_split, tensor_splits

    splits = stratified_split(y, seed, split.get("val", 0.15), split.get("test", 0.15))
    mean, std = x[splits[0]].mean(0), x[splits[0]].std(0) + 1e-6
    x = ((x - mean) / std).astype(np.float32)
    classes = [str(c) for c in range(int(y.max()) + 1)]
    return ClassificationData(
        name=name,
        modality="tabular",
        **tensor_splits(x, y, splits),
        classes=classes,
        input_shape=(x.shape[1],),
        description=name,
    )


def _seeds(seeds: Sequence[int] | None, quick: bool, full: int = 3) -> tuple[int, ...]:
    """The seeds to run: those given, else 0, 1 when quick and 0 .. full-1 otherwise."""
    if seeds is None:
        return (0, 1) if quick else tuple(range(full))
    if isinstance(seeds, str) or not all(
        isinstance(s, int) and not isinstance(s, bool) and 0 <= s < 2**32 for s in seeds
    ):
        raise ValueError(f"seeds must be integers in [0, 2**32); got {seeds!r}.")
    if not seeds:
        raise ValueError("seeds must hold at least one seed; got none.")
    return tuple(seeds)


def _build(task: Any, name: str, seed: int, **overrides: Any) -> Any:
    """Registered model `name` sized for `task`, its initial weights drawn from `seed`."""
    import torch

    torch.manual_seed(seed)
    return task.build_model(name, **overrides)


# -- 1. trees vs MLP on small tables -----------------------------------------------------------


@functools.cache
def _adult_rows() -> tuple[np.ndarray, np.ndarray]:
    """Every row of the adult census starter: dense values then one-hot fields, and labels."""
    from fieldguide.data import load_data

    data = load_data("adult", seed=0)
    splits = [getattr(data, s) for s in ("train", "val", "test")]
    dense = np.concatenate([s.dense.numpy() for s in splits])  # (N, D)
    ids = np.concatenate([s.ids[:, :, 0].numpy() for s in splits])  # (N, F): one id per field
    onehot = [np.eye(int(col.max()) + 1, dtype=np.float32)[col] for col in ids.T]  # (N, V_f)
    return np.concatenate([dense, *onehot], axis=1), np.concatenate([s.y.numpy() for s in splits])


def _adult_table(rows: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """`rows` rows of the adult census starter, drawn by seed."""
    x, y = _adult_rows()
    pick = np.random.default_rng(seed).choice(len(y), size=min(rows, len(y)), replace=False)
    return x[pick], y[pick]


def trees_vs_mlp(quick: bool = False, seeds: Sequence[int] | None = None) -> Result:
    """Gradient-boosted trees vs an MLP on two small real tables, test accuracy."""
    import torch
    from sklearn.datasets import load_breast_cancer, load_wine
    from sklearn.ensemble import HistGradientBoostingClassifier
    from threadpoolctl import threadpool_limits

    from fieldguide.tasks import make_task

    start = time.perf_counter()
    seeds = _seeds(seeds, quick)
    rows, epochs = 2000, 10 if quick else 20
    cancer, wine = load_breast_cancer(), load_wine()
    tables = {"breast-cancer": lambda s: (cancer.data.astype(np.float32), cancer.target)}
    if quick:  # adult takes seconds to read; wine is bundled with scikit-learn
        tables["wine"] = lambda s: (wine.data.astype(np.float32), wine.target)
    else:
        tables[f"adult ({rows:,} rows)"] = lambda s: _adult_table(rows, s)
    second = "scikit-learn wine (178 rows)" if quick else f"adult census ({rows:,} random rows)"
    acc: dict[str, list[float]] = {}
    for label, load in tables.items():
        for seed in seeds:
            x, y = load(seed)
            data = _table_data(x, y, label, seed)
            trees = HistGradientBoostingClassifier(random_state=seed, max_iter=50 if quick else 100)
            with threadpool_limits(1):  # one thread, like the MLP (OpenMP would take every core)
                trees.fit(data.train.x.numpy(), data.train.y.numpy())
            pred = trees.predict(data.test.x.numpy())
            acc.setdefault(f"gbdt · {label}", []).append(
                float((pred == data.test.y.numpy()).mean())
            )
            task = make_task(data)
            model = _fit(_build(task, "mlp", seed), task, seed, epochs=epochs, batch_size=64)
            with torch.no_grad():
                metrics = task.evaluate(model, "test")
            acc.setdefault(f"mlp · {label}", []).append(float(metrics["test/accuracy"]))
    # Headline: both tables pooled, paired by (table, seed).
    pooled = {
        arm: tuple(v for key, vals in acc.items() if key.startswith(arm) for v in vals)
        for arm in ("gbdt", "mlp")
    }
    measurements = [Measurement("test accuracy", arm, vals) for arm, vals in pooled.items()]
    measurements += [Measurement("test accuracy", key, tuple(v)) for key, v in acc.items()]
    return _result(
        "trees-vs-mlp",
        "On a small table, do gradient-boosted trees beat a neural network (MLP)?",
        "test accuracy",
        [("gbdt", "mlp")],
        measurements,
        f"real: scikit-learn breast cancer (569 rows) and {second}; 70/15/15 stratified "
        "splits; the MLP is the registry's `mlp` under the "
        f"default recipe for {epochs} epochs, the trees scikit-learn's HistGradientBoosting",
        seeds,
        start,
        ["headline pools both tables, paired by table and seed"],
    )


# -- 2. BatchNorm vs GroupNorm at batch size 2 ---------------------------------------------


def _mode_gap(model: Any, task: Any, batch_size: int) -> float:
    """Share of test predictions that change between train mode (batch stats) and eval mode."""
    import copy

    import torch

    x, _ = task.batch("test", torch.arange(task.split_size("test")))
    probe = copy.deepcopy(model)  # train mode updates running stats; keep the model's own
    with torch.no_grad():
        probe.eval()
        eval_pred = probe(x).argmax(-1)
        probe.train()
        train_pred = torch.cat([probe(chunk).argmax(-1) for chunk in x.split(batch_size)])
    return float((eval_pred != train_pred).float().mean())


def tiny_batch_norm(quick: bool = False, seeds: Sequence[int] | None = None) -> Result:
    """ResNet-tiny with BatchNorm vs GroupNorm, trained with batches of 2 on digits."""
    import torch

    from fieldguide.data import load_data
    from fieldguide.tasks import make_task

    start = time.perf_counter()
    seeds = _seeds(seeds, quick)
    steps, batch = (40, 2) if quick else (200, 2)
    accuracy: dict[str, list[float]] = {"GroupNorm": [], "BatchNorm": []}
    gap: dict[str, list[float]] = {"GroupNorm": [], "BatchNorm": []}
    for seed in seeds:
        data = load_data("digits", seed=seed)
        task = make_task(data)
        for arm, norm in (("GroupNorm", "group"), ("BatchNorm", "batch")):
            model = _build(task, "resnet-tiny", seed, norm=norm, widths=(16, 32, 64), stem_width=16)
            model = _fit(model, task, seed, max_steps=steps, epochs=1000, batch_size=batch)
            with torch.no_grad():
                accuracy[arm].append(float(task.evaluate(model, "test")["test/accuracy"]))
            gap[arm].append(_mode_gap(model, task, batch))
    measurements = [Measurement("test accuracy", a, tuple(v)) for a, v in accuracy.items()]
    measurements += [
        Measurement("predictions changed, train vs eval mode", a, tuple(v)) for a, v in gap.items()
    ]
    return _result(
        "tiny-batch-norm",
        "When batches hold 2 examples, does GroupNorm train a better CNN than BatchNorm?",
        "test accuracy",
        [("GroupNorm", "BatchNorm")],
        measurements,
        "real: scikit-learn digits starter (1,797 8x8 scans); resnet-tiny at widths 16/32/64, "
        f"{steps} steps of batch {batch}, default recipe otherwise",
        seeds,
        start,
        [
            "the mode gap counts test predictions that differ between batch-of-2 statistics "
            "and running statistics; GroupNorm has no running statistics, so its gap is 0"
        ],
    )


# -- 3. weight decay on norms and biases ---------------------------------------------------


def _decay_everything_trainer() -> type:
    """A Trainer whose AdamW decays every parameter, norms and biases included (the contrast)."""
    import torch

    from fieldguide.train.loop import Trainer

    class DecayEverything(Trainer):
        def _build_optimizer(self) -> Any:
            names, params = zip(*self.model.named_parameters(), strict=True)
            group = {"names": list(names), "params": list(params)}
            group["weight_decay"] = self.config.weight_decay
            return torch.optim.AdamW([group], lr=self.config.lr, betas=(0.9, 0.999))

    return DecayEverything


def _norm_gain(model: Any) -> float:
    """Mean absolute gain of the model's norm layers."""
    import torch

    gains = [
        m.weight.detach().abs().flatten()
        for m in model.modules()
        if isinstance(m, torch.nn.LayerNorm | torch.nn.modules.batchnorm._NormBase)
        and m.weight is not None
    ]
    return float(torch.cat(gains).mean())


def norm_decay(quick: bool = False, seeds: Sequence[int] | None = None) -> Result:
    """An MLP with LayerNorm trained with weight decay on weights only vs on everything."""
    import torch

    from fieldguide.data import load_data
    from fieldguide.tasks import make_task

    start = time.perf_counter()
    seeds = _seeds(seeds, quick)
    epochs, wd = (4, 0.1) if quick else (12, 0.1)
    arms = {"weights only": None, "everything": _decay_everything_trainer()}
    accuracy: dict[str, list[float]] = {a: [] for a in arms}
    gain: dict[str, list[float]] = {a: [] for a in arms}
    for seed in seeds:
        task = make_task(load_data("digits", seed=seed))
        for arm, trainer_cls in arms.items():
            model = _build(task, "mlp", seed, norm="layer", num_layers=3, hidden_dim=128)
            model = _fit(
                model, task, seed, trainer_cls, epochs=epochs, weight_decay=wd, batch_size=64
            )
            with torch.no_grad():
                accuracy[arm].append(float(task.evaluate(model, "test")["test/accuracy"]))
            gain[arm].append(_norm_gain(model))
    measurements = [Measurement("test accuracy", a, tuple(v)) for a, v in accuracy.items()]
    measurements += [Measurement("mean |norm gain|", a, tuple(v)) for a, v in gain.items()]
    return _result(
        "norm-decay",
        "Does leaving norm gains and biases out of weight decay train a better model?",
        "test accuracy",
        [("weights only", "everything")],
        measurements,
        "real: scikit-learn digits starter as 64-value vectors; the registry's `mlp` with "
        f"LayerNorm (3 layers of 128), AdamW, weight decay {wd}, {epochs} epochs",
        seeds,
        start,
        ["'weights only' is fieldguide's optimizer (train/params.py); 'everything' is plain AdamW"],
    )


# -- 4. class imbalance -------------------------------------------------------------------


def _focal_task(task_cls: type, gamma: float) -> type:
    """`task_cls` with focal loss (Lin et al., 2017): mean of -(1 - p_t)^gamma log p_t."""
    import torch.nn.functional as F

    class FocalTask(task_cls):
        def loss(self, model: Any, batch: Any) -> Any:
            log_p = F.log_softmax(self.logits(model, batch[:-1]).float(), -1)
            log_pt = log_p.gather(1, batch[-1][:, None])[:, 0]  # (B,) log-prob of the truth
            return (-((1 - log_pt.exp()) ** gamma) * log_pt).mean()

    return FocalTask


def _thinned_digits(seed: int, keep: float) -> tuple[np.ndarray, np.ndarray]:
    """Digits as 64-value rows, with classes 5-9 thinned to `keep` of their rows, by seed."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    rng = np.random.default_rng(seed)
    rare = bunch.target >= 5
    kept = ~rare | (rng.random(len(rare)) < keep)
    return bunch.data[kept].astype(np.float32) / 16.0, bunch.target[kept]


def class_imbalance(quick: bool = False, seeds: Sequence[int] | None = None) -> Result:
    """An MLP on imbalanced digits: plain cross-entropy vs balanced weights vs focal loss."""
    import torch

    from fieldguide.tasks import make_task, task_for

    start = time.perf_counter()
    seeds = _seeds(seeds, quick, full=4)
    keep, epochs = (0.08, 6) if quick else (0.08, 20)
    f1: dict[str, list[float]] = {"balanced weights": [], "focal loss": [], "plain": []}
    rare_recall: dict[str, list[float]] = {a: [] for a in f1}
    for seed in seeds:
        x, y = _thinned_digits(seed, keep)
        data = _table_data(x, y, "digits-thinned", seed, test=0.3)
        tasks = {
            "plain": make_task(data),
            "balanced weights": make_task(data, class_weights="balanced"),
            "focal loss": _focal_task(task_for(data), 2.0)(data),
        }
        for arm, task in tasks.items():
            model = _build(task, "mlp-small", seed)
            model = _fit(model, task, seed, epochs=epochs, batch_size=32, monitor="val/loss")
            with torch.no_grad():
                probs = task.predict(model, "test")
                f1[arm].append(float(task.evaluate(model, "test")["test/macro_f1"]))
            truth = task.labels("test")
            rare = truth >= 5
            rare_recall[arm].append(float((probs.argmax(-1)[rare] == truth[rare]).float().mean()))
    measurements = [Measurement("macro-F1", a, tuple(v)) for a, v in f1.items()]
    measurements += [
        Measurement("recall of rare classes", a, tuple(v)) for a, v in rare_recall.items()
    ]
    return _result(
        "class-imbalance",
        "With rare classes, do class weights or focal loss lift macro-F1 over plain cross-entropy?",
        "macro-F1",
        [("balanced weights", "plain"), ("focal loss", "plain")],
        measurements,
        f"real: scikit-learn digits as 64-value rows, classes 5-9 thinned to {keep:.0%} of their "
        f"rows (about 1:12); 55/15/30 stratified splits; `mlp-small`, {epochs} epochs, the "
        "weights kept at the best validation loss",
        seeds,
        start,
        [
            "focal loss (gamma 2) is written inside this experiment: the classification task "
            "offers cross-entropy with optional class weights only",
        ],
    )


# -- 5. padding masks ---------------------------------------------------------------------


def _unmasked_task(task_cls: type) -> type:
    """`task_cls` whose model sees an all-True padding mask: padding is attended and pooled."""
    import torch

    class Unmasked(task_cls):
        def logits(self, model: Any, inputs: Any) -> Any:
            x, mask = inputs
            return model(x, padding_mask=torch.ones_like(mask))

    return Unmasked


def padding_shift(model: Any, x: Any, lengths: Any, masked: bool) -> tuple[float, float]:
    """How padding moves predictions: each text alone vs padded to x's full width T.

    Returns the share of texts whose predicted class changes and the mean absolute change of
    their class probabilities.
    """
    import torch

    full_mask = torch.arange(x.shape[1])[None, :] < lengths[:, None]  # (N, T)
    if not masked:
        full_mask = torch.ones_like(full_mask)
    with torch.no_grad():
        padded = model(x, padding_mask=full_mask).softmax(-1)
        alone = torch.empty_like(padded)
        for n in lengths.unique().tolist():
            rows = (lengths == n).nonzero()[:, 0]
            mask = torch.ones(len(rows), n, dtype=torch.bool)
            alone[rows] = model(x[rows, :n], padding_mask=mask).softmax(-1)
    changed = float((padded.argmax(-1) != alone.argmax(-1)).float().mean())
    return changed, float((padded - alone).abs().sum(-1).mean() / 2)


def _letter_texts(seed: int, n: int, width: int) -> Any:
    """A synthetic text Split: n strings of a, b, c, d of 4..width letters, right-padded.

    The label is 1 when a text holds more a's than b's: it reads the whole text, so a model
    must pool every real token, and nothing about it depends on the padding.
    """
    import torch

    from fieldguide.data.base import Split
    from fieldguide.data.tokenizer import PAD

    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(4, width + 1, (n,), generator=g)
    letters = torch.tensor([ord(c) for c in "abcd"])  # byte ids, as the byte tokenizer gives
    x = letters[torch.randint(0, 4, (n, width), generator=g)]  # (N, T)
    real = torch.arange(width)[None, :] < lengths[:, None]  # (N, T)
    x = x.masked_fill(~real, PAD)
    y = ((x == ord("a")) & real).sum(1) > ((x == ord("b")) & real).sum(1)
    return Split(x, y.long(), lengths)


def padding_masks(quick: bool = False, seeds: Sequence[int] | None = None) -> Result:
    """bert-tiny on texts of varied length, with padding masks vs with an all-True mask."""
    import torch

    from fieldguide.data.base import ClassificationData
    from fieldguide.tasks import task_for

    start = time.perf_counter()
    seeds = _seeds(seeds, quick)
    # One epoch holds more batches than the steps: no text is seen twice, validation runs once.
    steps, test_rows, width = (60, 300, 64) if quick else (120, 500, 64)
    train_rows = 32 * steps + 1
    arms = ("masks", "no masks")
    numbers: dict[str, dict[str, list[float]]] = {
        metric: {a: [] for a in arms}
        for metric in (
            "test accuracy, padded to the longest",
            "test accuracy, batched by length",
            "predictions changed by padding",
        )
    }
    for seed in seeds:
        # Split seeds 3 apart per seed: train, val and test never share a draw.
        train, val, test = (
            _letter_texts(3 * seed + k, n, width)
            for k, n in enumerate((train_rows, 200, test_rows))
        )
        data = ClassificationData(
            "letters",
            "text",
            train,
            val,
            test,
            ["no", "yes"],
            (width,),
            "synthetic",
            synthetic=True,
        )
        cls = task_for(data)
        for arm, task_cls in zip(arms, (cls, _unmasked_task(cls)), strict=True):
            task = task_cls(data)
            model = _build(task, "bert-tiny", seed)
            model = _fit(model, task, seed, max_steps=steps, epochs=1000, batch_size=32)
            mask = torch.arange(width)[None, :] < test.lengths[:, None]  # (N, T)
            if arm == "no masks":
                mask = torch.ones_like(mask)
            with torch.no_grad():
                padded = (model(test.x, padding_mask=mask).argmax(-1) == test.y).float().mean()
                batched = task.evaluate(model, "test")["test/accuracy"]
            changed, _ = padding_shift(model, test.x, test.lengths, masked=arm == "masks")
            numbers["test accuracy, padded to the longest"][arm].append(float(padded))
            numbers["test accuracy, batched by length"][arm].append(float(batched))
            numbers["predictions changed by padding"][arm].append(changed)
    measurements = [
        Measurement(metric, arm, tuple(values))
        for metric, by_arm in numbers.items()
        for arm, values in by_arm.items()
    ]
    return _result(
        "padding-masks",
        "Do texts of varied length need a padding mask, or can the model learn to ignore padding?",
        "test accuracy, padded to the longest",
        [("masks", "no masks")],
        measurements,
        f"synthetic: texts of 4 to {width} letters a-d, label 'more a than b'; `bert-tiny`, "
        f"{steps} steps of batch 32, each training text seen once; 'no masks' passes an all-True "
        "mask, so padding is attended to and averaged into the pooled vector",
        seeds,
        start,
        [
            "training batches group texts of similar length (little padding); the headline pads "
            f"every test text to {width} tokens, as a batch holding one long text would",
            "on Rotten Tomatoes bert-tiny learned nothing within this budget (test accuracy "
            "0.58, the majority class, with or without masks), hence the synthetic texts",
        ],
    )


def _subset(split: Any, index: Any) -> Any:
    """The rows `index` of a data Split (lengths included)."""
    lengths = None if split.lengths is None else split.lengths[index]
    return dataclasses.replace(split, x=split.x[index], y=split.y[index], lengths=lengths)


# -- running and printing ---------------------------------------------------------------------

GOTCHAS: dict[str, Callable[..., Result]] = {
    "trees-vs-mlp": trees_vs_mlp,
    "tiny-batch-norm": tiny_batch_norm,
    "norm-decay": norm_decay,
    "class-imbalance": class_imbalance,
    "padding-masks": padding_masks,
}


def check_names(names: Sequence[str] | None) -> list[str]:
    """The gotcha names to run (all by default); an unknown one fails with close matches."""
    from fieldguide.suggest import unknown

    if names is None:
        return list(GOTCHAS)
    if isinstance(names, str) or not all(isinstance(n, str) for n in names):
        raise TypeError(f"names must be a list of gotcha names; got {names!r}.")
    for name in names:
        if name not in GOTCHAS:
            raise ValueError(unknown("gotcha", name, GOTCHAS))
    if not names:
        raise ValueError(f"names must hold at least one gotcha ({', '.join(GOTCHAS)}); got none.")
    return list(dict.fromkeys(names))


def run_gotchas(names: Sequence[str] | None = None, quick: bool = False) -> list[Result]:
    """Run the named gotchas (all by default) on one CPU thread; `quick` shrinks each run."""
    import torch

    selected = check_names(names)
    if not isinstance(quick, bool):
        raise TypeError(f"quick must be True or False; got {quick!r}.")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the budgets above are for one thread
    try:
        return [GOTCHAS[name](quick=quick) for name in selected]
    finally:
        torch.set_num_threads(threads)


def format_results(results: Sequence[Result]) -> str:
    """One block per gotcha: question, data, numbers per arm and metric, verdict."""
    blocks = []
    for r in results:
        lines = [f"{r.name}: {r.question}", f"  data: {r.data}"]
        seeds = ", ".join(str(s) for s in r.seeds)
        lines.append(f"  seeds: {seeds}; {r.seconds:.1f} s")
        width = max(len(m.arm) for m in r.measurements)
        metric = None
        for m in r.measurements:
            if m.metric != metric:
                metric = m.metric
                lines.append(f"  {metric} (mean ± sd over seeds):")
            lines.append(f"    {m.arm:<{width}}  {m.text()}")
        lines.extend(f"  note: {n}" for n in r.notes)
        lines.append(f"  verdict: {r.verdict}")
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of `fieldguide gotchas`."""
    parser.add_argument(
        "--only",
        default="",
        metavar="NAME,...",
        help=f"run only these gotchas, comma-separated: {', '.join(GOTCHAS)}",
    )
    parser.add_argument(
        "--quick", action="store_true", help="smaller runs and fewer seeds (seconds each)"
    )


def main(args: argparse.Namespace) -> int:
    """Run `fieldguide gotchas` and print the results; a bad --only is one line, exit 2."""
    import sys

    names = [n.strip() for n in args.only.split(",") if n.strip()] if args.only else None
    try:
        check_names(names)
    except (ValueError, TypeError) as error:
        print(f"fieldguide gotchas: --only: {error}", file=sys.stderr)
        return 2
    for i, name in enumerate(check_names(names)):  # each block as soon as it is measured
        print(
            ("\n" if i else "") + format_results(run_gotchas([name], quick=args.quick)), flush=True
        )
    return 0


__all__ = [
    "GOTCHAS",
    "Measurement",
    "Result",
    "add_arguments",
    "compare",
    "format_results",
    "main",
    "run_gotchas",
]
