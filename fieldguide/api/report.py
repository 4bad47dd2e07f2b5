"""What a run folder tells a reader: learning curves and a one-page report."""

from __future__ import annotations

import dataclasses
import json
import platform
from pathlib import Path
from typing import Any

import torch


def plot_curves(history: list[dict[str, Any]], path: Path) -> None:
    """Training and validation loss, and every other validation metric, by epoch."""
    import matplotlib

    matplotlib.use("Agg")  # no display on servers
    import matplotlib.pyplot as plt

    fig, (ax_loss, ax_metric) = plt.subplots(1, 2, figsize=(10, 4))
    epochs = [r["epoch"] for r in history]
    for key in ("train/loss", "val/loss"):
        if any(key in r for r in history):
            ax_loss.plot(epochs, [r.get(key, float("nan")) for r in history], marker=".", label=key)
    metric_keys = sorted(
        {k for r in history for k in r if k.startswith("val/") and k != "val/loss"}
    )
    for key in metric_keys:
        ax_metric.plot(epochs, [r.get(key, float("nan")) for r in history], marker=".", label=key)
    for ax, title in ((ax_loss, "loss"), (ax_metric, "validation metrics")):
        ax.set_xlabel("epoch")
        ax.set_title(title)
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend()
    save_png(fig, path)


def save_png(fig: Any, path: Path) -> None:
    """Write a matplotlib figure to `path` as a PNG atomically (a temporary file, then rename)."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    tmp.replace(path)


# What each reported metric means, for the reader of report.md.
METRIC_NOTES = {
    "loss": "the task's loss on this split (cross-entropy, or MSE of z-scored values)",
    "accuracy": "fraction of examples whose most likely class is right",
    "macro_f1": "F1 averaged over classes with equal weight",
    "auroc": "macro one-vs-rest area under the ROC curve",
    "ece": "expected calibration error, 15 equal-width confidence bins (lower is better)",
    "mae": "mean absolute error, original units",
    "r2": "coefficient of determination: 1 - SSE / SST around the split's mean (1 is perfect)",
    "rmse": "root mean squared error, original units",
    "smape": "symmetric mean absolute percentage error, %",
    "mase": "MAE over the in-sample seasonal-naive MAE of the training part (Hyndman & Koehler)",
    "snaive_ratio": "MAE over the seasonal-naive forecast's MAE on the same windows (< 1 beats it)",
    "perplexity": "exp of the mean next-token cross-entropy (lower is better)",
    "bpb": "bits per byte: the cross-entropy in bits, per byte of text (lower is better)",
    "exact_match": "fraction of outputs equal to the reference, character for character",
    "chrf": "character n-gram F-score (n = 1..6, beta 2), 0 to 1",
}


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{name} {n:,}" for name, n in counts.items())


def data_notes(data: Any) -> list[str]:
    """What loading did to the data that a reader should know: cells filled in, per column."""
    done = getattr(data, "preprocessing", None) or {}
    notes = []
    interpolated = done.get("filled_by_interpolation") or {}
    if interpolated:
        notes.append(
            f"filled {sum(interpolated.values()):,} missing value(s) by linear interpolation "
            f"between their neighbours in time: {_counts(interpolated)}."
        )
    if done.get("gaps"):
        notes.append(
            f"{done['gaps']} gap(s) longer than 1.5 steps in '{done.get('time_column')}'; rows "
            f"are read as consecutive steps, so a gap is not filled."
        )
    if "time_column" in done:
        notes.append(
            f"time column '{done['time_column']}', step {done['step']}, season {done['season']}."
        )
    decided = done.get("task")
    if decided:  # a CSV file: classification or regression, and why
        other = {"regression": "classification", "classification": "regression"}
        hint = f" (--task {other[decided['kind']]} to override)" if decided["kind"] in other else ""
        notes.append(
            f"target '{done.get('target')}': {decided['kind']}, since {decided['reason']}{hint}."
        )
    filled = done.get("filled_with_median") or {}
    if filled:
        notes.append(
            f"filled {sum(filled.values()):,} missing cell(s) of numeric columns with the "
            f"column's train median: {_counts(filled)}."
        )
    blank = done.get("missing_categorical") or {}
    if blank:
        notes.append(
            f"{sum(blank.values()):,} missing cell(s) of categorical columns encode as all "
            f"zeros (no category): {_counts(blank)}."
        )
    return notes


def render_report(
    run: Any, data: Any, task: Any, net: Any, result: Any, test: dict[str, float], run_dir: Path
) -> str:
    """report.md: what was trained, on what, how well and how fast."""
    best = result.best_metrics
    rows = "\n".join(
        f"| {k.split('/', 1)[1]} | {v:.4f} | {METRIC_NOTES.get(k.split('/', 1)[1], '')} |"
        for k, v in test.items()
    )
    t = run.train
    sizes = " / ".join(f"{n} {split}" for split, n in task.split_sizes().items())
    machine = (
        f"{torch.get_num_threads()} CPU thread(s), torch {torch.__version__}, {platform.machine()}"
    )
    recipe = (
        f"{t.optimizer} lr {t.lr:g}, weight decay {t.weight_decay:g}, "
        f"batch {t.batch_size}x{t.accumulate}, "
        f"warmup {t.warmup_fraction:g} + cosine, clip {t.grad_clip:g}, seed {t.seed}"
    )
    best_line = (
        f"{result.monitor} = {best.get(result.monitor, float('nan')):.4f} "
        f"at epoch {best.get('epoch', '-')}"
    )
    status = f"{result.status} after {result.epoch} epoch(s), {result.step} optimizer steps"
    size = f"{net.num_parameters():,} parameters"
    if getattr(net, "fits_directly", False):  # a classical baseline: one fit, no loop
        fitted = ", ".join(f"{k} {v}" for k, v in dataclasses.asdict(net.config).items())
        recipe = f"fitted in one pass by scikit-learn (seed {t.seed}): {fitted}"
        status = f"{result.status}: fitted in one pass, choices made on the validation split"
        size = f"{net.num_parameters():,} fitted numbers (buffers; no gradient-trained weights)"
        best_line = f"{result.monitor} = {best.get(result.monitor, float('nan')):.4f}"
    baselines = task.baselines("test")
    baseline_section = ""
    if baselines:
        names = list(next(iter(baselines.values())))
        baseline_section = (
            "\n## Baselines on the same test rows\n\n"
            + f"| model | {' | '.join(names)} |\n| --- |{' --- |' * len(names)}\n"
            + f"| `{run.model}` (this run) | "
            + " | ".join(f"{test.get(f'test/{n}', float('nan')):.4f}" for n in names)
            + " |\n"
            + "".join(
                f"| {name} | {' | '.join(f'{m[n]:.4f}' for n in names)} |\n"
                for name, m in baselines.items()
            )
        )
    notes = list(getattr(result, "notes", []))
    notes += [note for note in data_notes(data) if note not in notes]
    notes_section = "".join(f"- {note}\n" for note in notes)
    from fieldguide.api.config import write_atomic
    from fieldguide.api.costs import checklist

    measures: dict[str, Any] = {"task": task.name, "monitor": getattr(task, "monitor", "")}
    # never raises; reasons go in the text
    checks = checklist(run, task, net, result, run_dir, measures)
    measures["baselines"] = baselines
    # The numbers behind this page, for `compare` and `tour` to read instead of measuring again.
    write_atomic(run_dir / "measures.json", json.dumps(measures, indent=1) + "\n")
    if notes_section:
        notes_section = f"\n## Notes\n\n{notes_section}"
    return f"""# {run.model} on {data.name}

| | |
| --- | --- |
| task | {task.name} |
| model | `{run.model}` ({type(net).__name__}), {size} |
| data | {data.description}; {sizes} |
| status | {status} |
| training time | {result.train_seconds:.1f} s ({result.samples_per_second:,.0f} samples/s) |
| device | {result.device}, {result.precision}, {machine} |
| recipe | {recipe} |
| best validation | {best_line} (these weights are saved; val/loss breaks ties) |

## Test metrics

| metric | value | meaning |
| --- | --- | --- |
{rows}
{baseline_section}{checks}{notes_section}
Repeat this run: `fieldguide train --config {run_dir / "config.toml"}`
"""
