"""Sampling cost per image: diffusion with DDIM (50 steps) against DDPM (all T), a flow and a VAE.

One process, batch of 64 class-conditioned draws (classes 0..9 in turn), fp32, no_grad, eval
mode, at the digits size (1 x 8 x 8):

- ddpm-cond, `sample(..., sampler="ddim", steps=50)`, with no guidance (one network pass per
  step) and with classifier-free guidance 3 (the conditional and the unconditional pass run
  as one batch of 2 x 64, so about twice the work per step);
- ddpm-cond, `sampler="ddpm"` over all T steps (T = 500 in the preset; `--num-steps` sets it);
- realnvp-cond `sample` (one inverse pass) and vae-cond `sample` (one decoder pass).

The weights are untrained (fresh `create_model`, EMA as initialised): the cost of a draw does
not depend on the weights, but the images are noise. Per item: median seconds over repeats
(one warm-up excluded), the order rotated each repeat so a busy neighbour hits all alike,
reported as milliseconds per image and as a ratio against DDIM 50 without guidance. Run:

    OMP_WAIT_POLICY=PASSIVE .venv/bin/python benchmarks/sampling.py [--threads 2]
        [--repeats 3] [--batch 64] [--num-steps 500]

Times are on 2 cores shared with other engineers' processes (perf-notes.md: absolute times
swing by 25 % or more; the ratios, measured interleaved, are the figures to read).

Measured (2 threads, OMP_WAIT_POLICY=PASSIVE, load average 1-2 from other processes; batch 64,
1x8x8, median of 3, untrained weights):

    | sampler                       | net evals/image | s / batch | ms / image | vs DDIM 50 |
    | ddpm-cond DDIM 50 steps       |              50 |     0.930 |      14.53 |         1x |
    | ddpm-cond DDIM 50, guidance 3 |             100 |     1.401 |      21.88 |      1.51x |
    | ddpm-cond DDPM 500 steps      |             500 |    10.301 |     160.95 |      11.1x |
    | realnvp-cond                  |               1 |     0.049 |       0.76 |    0.0525x |
    | vae-cond                      |               1 |     0.006 |       0.10 |   0.00688x |

DDPM over all 500 steps costs 11x DDIM's 50, about the 10x ratio of steps: a step's cost does
not depend on T, so T = 1000 would be about 22x. Guidance doubles the batch each step but
costs 1.5x, not 2x (at 64 images of 8x8 a pass is not yet compute bound). A flow draw costs
about 1/19 of DDIM 50 and a VAE draw about 1/145; all three are under 25 ms per image here.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable

import torch

from fieldguide.models import create_model

SIZE = 8  # digits


def drawers(batch: int, num_steps: int) -> dict[str, tuple[Callable[[], object], int]]:
    """name -> (a function drawing one batch, network passes per image), all seeded alike."""
    y = torch.arange(batch) % 10
    ddpm = create_model("ddpm-cond", image_size=SIZE, num_steps=num_steps).eval()
    flow = create_model("realnvp-cond", image_size=SIZE).eval()
    vae = create_model("vae-cond", image_size=SIZE).eval()

    def seeded(fn: Callable[[torch.Generator], object]) -> Callable[[], object]:
        return lambda: fn(torch.Generator().manual_seed(0))

    with_t = f"ddpm-cond DDPM {num_steps} steps"
    return {
        "ddpm-cond DDIM 50 steps": (seeded(lambda g: ddpm.sample(batch, y, generator=g)), 50),
        "ddpm-cond DDIM 50, guidance 3": (
            seeded(lambda g: ddpm.sample(batch, y, generator=g, guidance=3.0)),
            100,
        ),
        with_t: (seeded(lambda g: ddpm.sample(batch, y, generator=g, sampler="ddpm")), num_steps),
        "realnvp-cond": (seeded(lambda g: flow.sample(batch, y, generator=g)), 1),
        "vae-cond": (seeded(lambda g: vae.sample(batch, y, generator=g)), 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--num-steps", type=int, default=500, help="T of ddpm-cond")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    items = drawers(args.batch, args.num_steps)
    names = list(items)
    times: dict[str, list[float]] = {name: [] for name in names}
    with torch.no_grad():
        for name in names:  # warm-up
            items[name][0]()
        for repeat in range(args.repeats):
            shift = repeat % len(names)
            for name in names[shift:] + names[:shift]:
                start = time.perf_counter()
                items[name][0]()
                times[name].append(time.perf_counter() - start)
    print(
        f"threads {torch.get_num_threads()}, OMP_WAIT_POLICY="
        f"{os.environ.get('OMP_WAIT_POLICY', 'unset')}, batch {args.batch}, 1x{SIZE}x{SIZE}, "
        f"median of {args.repeats} (untrained weights)"
    )
    reference = statistics.median(times[names[0]])
    print(
        "| sampler                        | net evals / image | median s / batch | ms / image "
        "| vs DDIM 50 |"
    )
    for name in names:
        median = statistics.median(times[name])
        passes = items[name][1]
        print(
            f"| {name:<30} | {passes:>16} | {median:>16.3f} | {1000 * median / args.batch:>10.2f} "
            f"| {median / reference:>9.3g}x |"
        )


if __name__ == "__main__":
    main()
