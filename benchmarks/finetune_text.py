"""Pretrained text encoder on Rotten Tomatoes: linear probe, full fine-tune and LoRA vs TF-IDF.

Each mode is one `fieldguide.train("minilm", "rotten-tomatoes", ...)` run with minilm's own
recipe (train/finetune.py `recipe_for`: AdamW, head lr 1e-3, 1 epoch unless --epochs, batch
32, warm-up 10 %, length-bucketed batches) and the same split (seed 0: 8,966 train, 1,921
validation, 1,921 test snippets):

- probe: `--freeze body`: the pretrained encoder frozen in inference mode, the head alone;
- full:  every weight, the body at 0.05 x lr (`--body-lr`, in the recipe);
- lora:  `--lora 8`: rank-8 adapters on every linear layer of the body, the head in full.

Beside them, on the same test split: the majority class and TF-IDF (word 1-2-grams) + logistic
regression, whose C is chosen on validation (the baselines every text run reports).

Run: `OMP_WAIT_POLICY=PASSIVE .venv/bin/python benchmarks/finetune_text.py [--modes
probe,full,lora] [--epochs N]` (torch's default threads: 2 here).

Measured on the quiet 2-core machine with the recipe (1 epoch), two torch threads; wall time
includes reading and tokenizing the data, validation, the test split and the baselines:

| model | test accuracy | macro-F1 | train s | wall s |
| --- | --- | --- | --- | --- |
| minilm probe (`--freeze body`) | 0.744 | 0.726 | 63 | 112 |
| minilm full fine-tune (the recipe) | 0.826 | 0.822 | 255 | 306 |
| minilm LoRA rank 8 (1.3 % of weights train) | 0.826 | 0.822 | 259 | 295 |
| TF-IDF 1-2-grams + logistic regression | 0.776 | 0.766 | | |
| majority class of train | 0.578 | 0.366 | | |

With `--epochs 2` (cores shared with other jobs, so no times): full 0.841, LoRA 0.839, probe
0.768. A fine-tune passes TF-IDF by 5 points in one epoch; the probe does not reach it, since
frozen sentence embeddings lose word-level sentiment cues that n-grams keep.
"""

from __future__ import annotations

import argparse
import tempfile
import time

from fieldguide.api import train

MODES = {
    "probe": {"freeze": "body"},
    "full": {},
    "lora": {"lora": 8},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--modes", default="probe,full,lora")
    parser.add_argument("--epochs", type=int, default=0, help="0: the recipe's (1)")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as runs:
        for mode in args.modes.split(","):
            recipe = dict(MODES[mode])
            if args.epochs:
                recipe["epochs"] = args.epochs
            start = time.perf_counter()
            result = train("minilm", "rotten-tomatoes", runs_dir=runs, progress="plain", **recipe)
            wall = time.perf_counter() - start
            m = result.test_metrics
            rows.append(
                f"| minilm {mode} | {m['test/accuracy']:.3f} | {m['test/macro_f1']:.3f} | "
                f"{result.train_seconds:.0f} | {wall:.0f} |"
            )
            print(rows[-1], flush=True)
    print("| model | test accuracy | macro-F1 | train s | wall s |")
    print("| --- | --- | --- | --- | --- |")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
