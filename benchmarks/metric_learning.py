"""Retrieval of classes never trained on: InfoNCE vs triplet vs ArcFace on Fashion-MNIST.

The metric-learning task trains on the first five Fashion-MNIST classes (T-shirt/top,
Trouser, Pullover, Dress, Coat) and tests on the other five (Sandal, Shirt, Sneaker, Bag,
Ankle boot), which the network never saw: every test image queries all the other test images
(leave-one-out), so recall@1 asks whether its nearest neighbour is of its class. Beside the
three losses: the same retrieval on the standardised pixels (cosine), and on the embeddings of
the untrained network. Each trained model is read twice: through its backbone's features (what
`fieldguide embed` and `search` use) and through the projection head the loss was computed on.

Run: `OMP_WAIT_POLICY=PASSIVE .venv/bin/python benchmarks/metric_learning.py [--steps N]
[--data fashion-mnist|digits]` (two torch threads; about 15 minutes at the default budget).
"""

from __future__ import annotations

import argparse
import tempfile
import time

import torch

from fieldguide.api import train

LOSSES = ("infonce", "triplet", "arcface")
KEYS = ("recall@1", "recall@5", "map@r", "roc_auc", "eer")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", default="fashion-mnist")
    parser.add_argument("--model", default="siamese-resnet-tiny")
    parser.add_argument("--steps", type=int, default=1200)
    parser.add_argument("--losses", default=",".join(LOSSES))
    args = parser.parse_args()
    torch.set_num_threads(2)
    print(
        f"torch threads: {torch.get_num_threads()}; {args.model} on {args.data}, "
        f"{args.steps} steps of batch 64 per loss\n"
    )
    print("| embedding | " + " | ".join(KEYS) + " | train s |")
    print("| --- |" + " --- |" * (len(KEYS) + 1))
    from fieldguide.api.predict import load_run
    from fieldguide.data import load_data
    from fieldguide.tasks import make_task
    from fieldguide.tasks.metric_learning import embedding_view

    task = make_task(load_data(args.data), "metric-learning")
    torch.manual_seed(0)
    untrained = task.build_model(args.model)
    metrics = task.evaluate(untrained, "test")
    print(
        "| untrained network | " + " | ".join(f"{metrics[f'test/{k}']:.4f}" for k in KEYS) + " | |",
        flush=True,
    )
    for name, values in task.baselines("test").items():
        print(f"| {name} | " + " | ".join(f"{values[k]:.4f}" for k in KEYS) + " | |", flush=True)
    with tempfile.TemporaryDirectory() as root:
        for loss in args.losses.split(","):
            start = time.perf_counter()
            result = train(
                args.model,
                args.data,
                runs_dir=root,
                progress="quiet",
                loss=loss,
                max_steps=args.steps,
                epochs=1000,
                batch_size=64,
            )
            took = time.perf_counter() - start
            cells = " | ".join(f"{result.test_metrics[f'test/{k}']:.4f}" for k in KEYS)
            print(f"| {loss} (backbone features) | {cells} | {took:.0f} |", flush=True)
            # The same weights read through the projection head, the space the loss shaped.
            trained = load_run(result.run_dir).model
            with embedding_view(trained, head=True):
                head = task.evaluate(trained, "test")
            cells = " | ".join(f"{head[f'test/{k}']:.4f}" for k in KEYS)
            print(f"| {loss} (projection head) | {cells} | |", flush=True)


if __name__ == "__main__":
    main()
