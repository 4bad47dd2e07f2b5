"""The default `fieldguide train --data FILE` (model auto) against the best baseline of its report.

Writes scikit-learn's wine (178 rows, 3 classes), iris (150 rows, 3 classes) and diabetes with
a binarised target (442 rows, target > median) as CSV tables, and Rotten Tomatoes (10,662
critic snippets) as a text CSV, into a temporary folder. For each file and split seed it runs
`fieldguide.api.train(data=FILE)` exactly as `fieldguide train --data FILE --split-seed S`
does, and reads the test accuracy of the run and of every baseline in its report.md (the
baselines are fitted on the same training rows and scored on the same test rows: majority
class, gradient-boosted trees and logistic regression for tables; TF-IDF + logistic regression
for texts). The table gives the means over seeds, the best baseline by mean, and the gap
auto - best baseline in accuracy points.

Measured (3 split seeds, 2 torch threads, OMP_WAIT_POLICY=PASSIVE; see the closing note of
issue 16 for the table this printed).

Run:  OMP_WAIT_POLICY=PASSIVE .venv/bin/python benchmarks/auto_vs_baselines.py [--seeds 0,1,2]
      [--files wine,iris,...] [--threads 2]
"""

from __future__ import annotations

import argparse
import csv
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from small_tables import write_tables  # noqa: E402

TABLES = ("wine", "iris", "diabetes")
SHORT = re.compile(r" \(.*\)")  # "gradient-boosted trees (gbdt)" -> "gradient-boosted trees"


def write_text_csv(folder: Path) -> Path:
    """Rotten Tomatoes (the starter's own file) as texts.csv with text and label columns."""
    from fieldguide.data.text import read_rotten_tomatoes

    texts, labels = read_rotten_tomatoes()
    path = folder / "rotten-tomatoes.csv"
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["text", "label"])
        writer.writerows(zip(texts, labels, strict=True))
    return path


def report_accuracies(report: str) -> dict[str, float]:
    """Test accuracy of the run and each baseline, from report.md's baselines table."""
    section = report.split("## Baselines on the same test rows", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| ")]
    header = [cell.strip() for cell in rows[0].strip("|").split("|")]
    column = header.index("accuracy")
    out = {}
    for line in rows[1:]:
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        if set(cells[0]) <= {"-", " "}:
            continue
        name = "auto" if cells[0].endswith("(this run)") else cells[0]
        out[name] = float(cells[column])
    return out


def main() -> None:
    """Run auto on each file and seed; print the side-by-side table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--files", default="wine,iris,diabetes,rotten-tomatoes")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from fieldguide.api import train
    from fieldguide.api.config import DataConfig

    seeds = [int(s) for s in args.seeds.split(",")]
    names = args.files.split(",")
    print(f"torch threads {torch.get_num_threads()}; seeds {seeds}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        paths = write_tables(folder, [n for n in names if n in TABLES])
        if "rotten-tomatoes" in names:
            paths["rotten-tomatoes"] = write_text_csv(folder)
        lines = [
            "| data | auto's pick per seed | auto | best baseline | its accuracy | gap (points) "
            "| other baselines |",
            "| --- | --- | --- | --- | --- | --- | --- |",
        ]
        for name in names:
            per_seed: list[dict[str, float]] = []
            picks = []
            for seed in seeds:
                tick = time.perf_counter()
                result = train(
                    data=str(paths[name]),
                    data_config=DataConfig(split_seed=seed),
                    runs_dir=folder / "runs",
                    progress="quiet",
                )
                scores = report_accuracies((result.run_dir / "report.md").read_text())
                per_seed.append(scores)
                picks.append(result.model)
                print(
                    f"{name} seed {seed}: {result.model} "
                    + "  ".join(f"{k} {v:.4f}" for k, v in scores.items())
                    + f"  ({time.perf_counter() - tick:.0f} s)",
                    flush=True,
                )
            means = {k: statistics.mean(s[k] for s in per_seed) for k in per_seed[0]}
            baselines = {k: v for k, v in means.items() if k != "auto"}
            best = max(baselines, key=baselines.get)
            others = ", ".join(
                f"{SHORT.sub('', k)} {v:.3f}" for k, v in baselines.items() if k != best
            )
            lines.append(
                f"| {name} | {', '.join(picks)} | {means['auto']:.3f} | {best} | "
                f"{baselines[best]:.3f} | {100 * (means['auto'] - baselines[best]):+.1f} | "
                f"{others} |"
            )
        print("\n".join(lines))


if __name__ == "__main__":
    main()
