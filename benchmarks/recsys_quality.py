"""Recommenders against honest baselines: Adult click-style prediction and MovieLens ranking.

Adult (48,842 census rows, income > 50K as the "click"): Wide & Deep, DLRM and the plain MLP
(which reads the same rows one-hot) trained by `fieldguide train` on one split (seed 0), beside
what the CTR task fits on the same training rows: the base rate, logistic regression on the
one-hot encoding and gradient-boosted trees (scikit-learn's HistGradientBoostingClassifier,
fields as categorical features) — the guide's "trees often beat MLPs on tables", measured.

MovieLens-100k (ratings >= 4 as positives, each user's last positive held out among 100
sampled negatives, the NCF protocol): the two-tower model beside popularity and PureSVD
(its rank chosen on validation).

Run: `OMP_WAIT_POLICY=PASSIVE .venv/bin/python benchmarks/recsys_quality.py [adult|movielens]`
(two torch threads; about 8 minutes for both).
"""

from __future__ import annotations

import sys
import tempfile
import time

import torch

from fieldguide.api import train

ADULT = (  # model, recipe
    ("wide-deep", {"epochs": 10, "batch_size": 256, "lr": 3e-3}),
    ("dlrm", {"epochs": 10, "batch_size": 256, "lr": 3e-3}),
    ("mlp", {"epochs": 10, "batch_size": 256, "lr": 1e-3}),
)
MOVIELENS = (("two-tower", {"epochs": 10, "batch_size": 256, "lr": 3e-3}),)
COLUMNS = {
    "adult": ("auroc", "accuracy", "loss", "ece_calibrated"),
    "movielens": ("hr@10", "ndcg@10"),
}


def run(data: str, models: tuple, root: str) -> None:
    from fieldguide.data import load_data
    from fieldguide.tasks import make_task

    keys = COLUMNS[data]
    print(f"\n### {data}\n")
    print("| model | " + " | ".join(keys) + " | train s |")
    print("| --- |" + " --- |" * (len(keys) + 1))
    for model, recipe in models:
        start = time.perf_counter()
        result = train(model, data, runs_dir=root, progress="quiet", **recipe)
        took = time.perf_counter() - start
        cells = " | ".join(f"{result.test_metrics[f'test/{k}']:.4f}" for k in keys)
        print(f"| {model} ({result.parameters:,} parameters) | {cells} | {took:.0f} |", flush=True)
    task = make_task(load_data(data))
    for name, metrics in task.baselines("test").items():
        cells = " | ".join(f"{metrics[k]:.4f}" for k in keys)
        print(f"| {name} | {cells} | |", flush=True)


def main() -> None:
    torch.set_num_threads(2)
    print(f"torch threads: {torch.get_num_threads()}")
    chosen = sys.argv[1:] or ["adult", "movielens"]
    with tempfile.TemporaryDirectory() as root:
        if "adult" in chosen:
            run("adult", ADULT, root)
        if "movielens" in chosen:
            run("movielens", MOVIELENS, root)


if __name__ == "__main__":
    main()
