"""Data-parallel training on one machine: 2 gloo ranks against 1 process, training examples/s.

Each row trains the same model with the library's trainer for the same optimizer steps at the
same global batch, and reports training examples per second (rank 0's count of all ranks'
examples over its training time; evaluation, start-up and the launch are not counted). The
2-rank run splits each batch between two processes of 1 torch thread each (`--nproc 2` gives
each rank cores / nproc threads); one process runs with 1 thread and with 2. Medians over
repeats; ratio is against one process with both threads.

Run:  .venv/bin/python benchmarks/ddp.py [--repeats 3] [--steps 150]

Measured on the project's 2-core machine (Intel Xeon, no GPU) while other jobs shared it (load
average 3.5 to 5.5 on 2 cores), so the numbers are noisy; two runs of the command, medians of 3:

    model        data           batch  setup                    examples/s  ratio
    mlp          fashion-mnist    256  1 process x 1 thread         23,918  1.21
    mlp          fashion-mnist    256  1 process x 2 threads        19,690  1.00
    mlp          fashion-mnist    256  2 ranks x 1 thread           10,634  0.54
    resnet-tiny  digits            64  1 process x 1 thread          1,107  1.43
    resnet-tiny  digits            64  1 process x 2 threads           773  1.00
    resnet-tiny  digits            64  2 ranks x 1 thread              819  1.06

    mlp          fashion-mnist    256  1 process x 1 thread         11,126  0.95
    mlp          fashion-mnist    256  1 process x 2 threads        11,705  1.00
    mlp          fashion-mnist    256  2 ranks x 1 thread            7,665  0.65
    resnet-tiny  digits            64  1 process x 1 thread          1,051  1.36
    resnet-tiny  digits            64  1 process x 2 threads           775  1.00
    resnet-tiny  digits            64  2 ranks x 1 thread              668  0.86

What it says: on these 2 busy cores two ranks are no faster than one process, 0.5-0.65x on the
MLP and 0.85-1.05x on the small ResNet. Timed once around `reduce_gradients`, the MLP's ranks
spent 43% of their training time in the gradient all-reduce (1 MB: 16 ms a step, where a lone
1 MB all-reduce between two waiting ranks takes 3 ms), nearly all of it one rank waiting for the
other to be scheduled; one process with one thread often beats two threads here, since the
second core is rarely free. Data parallelism pays with cores (or GPUs, one per rank) to spare,
which this machine does not have; starting the ranks also costs a few seconds per run (each
imports torch and loads the data), not counted above.
"""

import argparse
import os
import statistics
import sys
import time

import torch

from fieldguide.train import distributed

ROWS = [("mlp", "fashion-mnist", 256), ("resnet-tiny", "digits", 64)]


def one_run(model_name: str, data_name: str, batch: int, steps: int, seed: int, threads: int):
    """Examples/s of one training run in this process (a rank, or the only process)."""
    from fieldguide.data import load_data
    from fieldguide.tasks.classification import ClassificationTask
    from fieldguide.train.config import TrainConfig
    from fieldguide.train.loop import Trainer, seed_everything

    torch.set_num_threads(threads)
    distributed.join(int(os.environ.get("WORLD_SIZE", "1")), "cpu")
    task = ClassificationTask(load_data(data_name, seed=0))
    seed_everything(seed)
    model = task.build_model(model_name)
    cfg = TrainConfig(epochs=100, max_steps=steps, batch_size=batch, seed=seed, device="cpu")
    result = Trainer(model, task, cfg, progress="quiet").fit()
    return result.samples_per_second


def main() -> None:
    """Print the table (and the command's options) to stdout."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--steps", type=int, default=150)
    args = parser.parse_args()
    target = f"{os.path.splitext(os.path.basename(__file__))[0]}:one_run"
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # the ranks import this file
    print(f"{'model':12} {'data':14} {'batch':>5}  {'setup':24} {'examples/s':>10}  ratio")
    for model, data, batch in ROWS:
        speeds = {}
        for setup, nproc, threads in (
            ("1 process x 1 thread", 1, 1),
            ("1 process x 2 threads", 1, 2),
            ("2 ranks x 1 thread", 2, 1),
        ):
            runs = []
            for seed in range(args.repeats):
                call = (model, data, batch, args.steps, seed, threads)
                start = time.perf_counter()
                if nproc == 1:
                    runs.append(one_run(*call))
                else:
                    kwargs = dict(zip(ARGS, call, strict=True))
                    runs.append(distributed.launch(nproc, target, kwargs))
                took = time.perf_counter() - start  # with data loading and the launch
                print(f"  ({setup}, seed {seed}: {took:.1f} s in all)", file=sys.stderr)
            speeds[setup] = statistics.median(runs)
        base = speeds["1 process x 2 threads"]
        for setup, speed in speeds.items():
            print(
                f"{model:12} {data:14} {batch:>5}  {setup:24} {speed:>10,.0f}  {speed / base:.2f}"
            )


ARGS = ("model_name", "data_name", "batch", "steps", "seed", "threads")

if __name__ == "__main__":
    main()
