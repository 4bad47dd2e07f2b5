"""What a run folder tells a reader: learning curves and a one-page report."""

from __future__ import annotations

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
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    tmp.replace(path)


def render_report(
    run: Any, data: Any, net: Any, result: Any, test: dict[str, float], run_dir: Path
) -> str:
    """report.md: what was trained, on what, how well and how fast."""
    best = result.best_metrics
    rows = "\n".join(f"| {k.split('/', 1)[1]} | {v:.4f} |" for k, v in test.items())
    t = run.train
    sizes = f"{len(data.train.y)} train / {len(data.val.y)} val / {len(data.test.y)} test"
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
    return f"""# {run.model} on {data.name}

| | |
| --- | --- |
| model | `{run.model}` ({type(net).__name__}), {net.num_parameters():,} parameters |
| data | {data.description}; {sizes} |
| status | {result.status} after {result.epoch} epoch(s), {result.step} optimizer steps |
| training time | {result.train_seconds:.1f} s ({result.samples_per_second:,.0f} samples/s) |
| device | {result.device}, {result.precision}, {machine} |
| recipe | {recipe} |
| best validation | {best_line} (these weights are saved) |

## Test metrics

| metric | value |
| --- | --- |
{rows}

Accuracy and macro-F1 count correct labels; AUROC is macro one-vs-rest; ECE is the expected
calibration error over 15 equal-width confidence bins (lower is better).

Repeat this run: `fieldguide train --config {run_dir / "config.toml"}`
"""
