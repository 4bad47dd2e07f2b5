"""Pretrained transfer: MobileNetV2's ImageNet weights, probed and fine-tuned, against scratch.

Fashion-MNIST subsets written as image folders (28x28 grey PNGs, a stratified draw of the
official training images, `--sizes`), each read by `fieldguide train --data FOLDER` (70/15/15
split of the folder) and trained with one recipe (AdamW lr 3e-3, batch 64, `--epochs`):
`mobilenetv2-probe` (torchvision's ImageNet weights frozen, `--freeze body`: the new 10-class
head alone), `mobilenetv2` (the same weights, everything fine-tuned), `mobilenetv2-scratch`
(the same network, random weights) and `resnet-tiny` (this library's small-image ResNet, from
scratch). Pretrained runs standardise pixels with ImageNet's statistics (grey: the channels'
mean, the first filters summed over RGB, which equals feeding the grey image as 3 equal
channels); runs from scratch use the folder's own. Test accuracy on the folder's test split.

Run: `OMP_WAIT_POLICY=PASSIVE .venv/bin/python benchmarks/transfer.py [--sizes 1000,10000]
[--epochs 10] [--models mobilenetv2-probe,mobilenetv2,...]` (two torch threads).

Measured on the quiet 2-core machine (`--sizes 1000 --epochs 10`, then `--sizes 10000
--epochs 5`; test splits of 150 and 1,500 images). The 10,000-image rows marked * are from
the previous stop's run of the same command (their code path is unchanged):

| images | model | test accuracy | macro-F1 | train s |
| --- | --- | --- | --- | --- |
| 1,000 | mobilenetv2-probe (frozen ImageNet features) | 0.740 | 0.738 | 37 |
| 1,000 | mobilenetv2 (ImageNet weights, fine-tuned) | 0.867 | 0.868 | 145 |
| 1,000 | mobilenetv2-scratch | 0.667 | 0.667 | 151 |
| 1,000 | resnet-tiny (scratch) | 0.813 | 0.809 | 71 |
| 10,000 | mobilenetv2-probe (frozen ImageNet features) | 0.785 | 0.781 | 122 |
| 10,000 | mobilenetv2 (ImageNet weights, fine-tuned) | 0.880 | 0.882 | 523 |
| 10,000 | mobilenetv2-scratch * | 0.850 | 0.853 | 344 |
| 10,000 | resnet-tiny (scratch) * | 0.874 | 0.874 | 265 |

Fine-tuning the ImageNet weights is worth 20 points at 1,000 images and 3 at 10,000 over the
same network from scratch, and 5 and 0.6 over the small-image ResNet. ImageNet's statistics
took the 1,000-image fine-tune from 0.833 (the folder's own statistics, the previous stop) to
0.867. The frozen features alone (a linear probe) trail everything trained end to end: 28x28
grey clothing is far from ImageNet's photos, so the features must move.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from fieldguide.api import train
from fieldguide.data.fashion_mnist import read_idx
from fieldguide.data.starters import FASHION_MNIST_FILES

# name -> (model, recipe): the probe trains the head alone on the frozen ImageNet features.
MODELS = {
    "mobilenetv2-probe": ("mobilenetv2", {"freeze": "body"}),
    "mobilenetv2": ("mobilenetv2", {}),
    "mobilenetv2-scratch": ("mobilenetv2-scratch", {}),
    "resnet-tiny": ("resnet-tiny", {}),
}


def write_subset(root: Path, size: int, seed: int = 0) -> Path:
    """`size` training images, the same share of each class, as root/CLASS/NNNNN.png."""
    images, labels = read_idx(FASHION_MNIST_FILES[0]), read_idx(FASHION_MNIST_FILES[1])
    rng = np.random.default_rng(seed)
    folder = root / f"fashion-{size}"
    for c in range(10):
        members = np.flatnonzero(labels == c)
        for i in rng.choice(members, size // 10, replace=False):
            (folder / str(c)).mkdir(parents=True, exist_ok=True)
            Image.fromarray(images[i]).save(folder / str(c) / f"{i:05d}.png")
    return folder


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="1000,10000")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--models", default=",".join(MODELS))
    args = parser.parse_args()
    torch.set_num_threads(2)
    print(f"torch threads: {torch.get_num_threads()}; {args.epochs} epochs, batch 64, lr 3e-3")
    print("\n| images | model | test accuracy | macro-F1 | train s |")
    print("| --- | --- | --- | --- | --- |")
    with tempfile.TemporaryDirectory() as tmp:
        for size in (int(s) for s in args.sizes.split(",")):
            folder = write_subset(Path(tmp), size)
            for model in args.models.split(","):
                name, recipe = MODELS[model]
                start = time.perf_counter()
                result = train(
                    name,
                    str(folder),
                    runs_dir=Path(tmp) / "runs",
                    progress="quiet",
                    epochs=args.epochs,
                    **recipe,
                )
                took = time.perf_counter() - start
                m = result.test_metrics
                print(
                    f"| {size:,} | {model} | {m['test/accuracy']:.4f} | {m['test/macro_f1']:.4f} "
                    f"| {took:.0f} |",
                    flush=True,
                )


if __name__ == "__main__":
    main()
