"""Seconds to 97 % test accuracy and training images/s on the starter digits, side by side.

Trains each model with the library's own trainer and recipe (TrainConfig defaults), evaluates
the test split after every epoch (evaluation time is not counted), and reports the training
seconds until test accuracy first reaches the target. Medians over seeds; ratios against the
MLP. Run:  .venv/bin/python benchmarks/train_digits.py [--threads 2] [--repeats 3]
"""

import argparse
import os
import statistics
import time

import torch

from fieldguide.data import load_data
from fieldguide.tasks.classification import ClassificationTask
from fieldguide.train.config import TrainConfig
from fieldguide.train.loop import Trainer, seed_everything


def one_run(model_name: str, seed: int, epochs: int, target: float) -> dict:
    data = load_data("digits", seed=0)
    task = ClassificationTask(data)
    seed_everything(seed)
    model = task.build_model(model_name)
    reached = {}

    def watch(trainer, record):
        if "seconds" in reached:
            return
        acc = task.evaluate(trainer.model, "test", device=trainer.device, batch_size=512)[
            "test/accuracy"
        ]
        if acc >= target:
            reached.update(seconds=trainer.state.train_seconds, epoch=record["epoch"], accuracy=acc)

    cfg = TrainConfig(epochs=epochs, seed=seed)
    trainer = Trainer(model, task, cfg, epoch_callbacks=[watch], progress="quiet")
    start = time.perf_counter()
    result = trainer.fit()
    final = task.evaluate(model, "test", device=trainer.device, batch_size=512)["test/accuracy"]
    return {
        "seconds_to_target": reached.get("seconds", float("nan")),
        "epoch_to_target": reached.get("epoch"),
        "images_per_s": result.samples_per_second,
        "final_accuracy": final,
        "train_seconds": result.train_seconds,
        "wall": time.perf_counter() - start,
        "parameters": model.num_parameters(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="mlp,resnet-tiny")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--target", type=float, default=0.97)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(
        f"digits, torch {torch.__version__}, {args.threads} thread(s), "
        f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'default')}, "
        f"{args.epochs} epochs max, target test accuracy {args.target}, "
        f"medians over {args.repeats} seeds"
    )
    rows = {}
    for name in args.models.split(","):
        runs = [one_run(name, seed, args.epochs, args.target) for seed in range(args.repeats)]
        hit = [
            r["seconds_to_target"] for r in runs if r["seconds_to_target"] == r["seconds_to_target"]
        ]
        rows[name] = {
            "parameters": runs[0]["parameters"],
            "reached": f"{len(hit)}/{len(runs)}",
            "seconds_to_target": statistics.median(hit) if hit else float("nan"),
            "epochs_to_target": statistics.median(
                [r["epoch_to_target"] for r in runs if r["epoch_to_target"]] or [0]
            ),
            "images_per_s": statistics.median(r["images_per_s"] for r in runs),
            "final_accuracy": statistics.median(r["final_accuracy"] for r in runs),
            "train_seconds": statistics.median(r["train_seconds"] for r in runs),
        }
    base = rows[args.models.split(",")[0]]
    header = (
        f"{'model':<12} {'params':>9} {'reached':>7} {'s to target':>11} {'epochs':>6} "
        f"{'img/s':>8} {'img/s ratio':>11} {'final acc':>9} {'train s':>8}"
    )
    print(header)
    for name, r in rows.items():
        print(
            f"{name:<12} {r['parameters']:>9,} {r['reached']:>7} {r['seconds_to_target']:>11.2f} "
            f"{r['epochs_to_target']:>6.0f} {r['images_per_s']:>8,.0f} "
            f"{r['images_per_s'] / base['images_per_s']:>11.2f} {r['final_accuracy']:>9.4f} "
            f"{r['train_seconds']:>8.1f}"
        )


if __name__ == "__main__":
    main()
