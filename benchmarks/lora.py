"""Full fine-tuning against LoRA rank 8 (fieldguide.lora): trainable weights, step time, state.

For each model, two copies built from the same seed: "full" trains every parameter; "lora"
is `lora(model, rank=8, alpha=16)` with the default targets (every nn.Linear outside the
top-level `head`: attention qkv and output, MLP up and down), so only A and B train. One
training step is forward + backward + `AdamW.step()` + `zero_grad(set_to_none=True)` on the
model's example input (batch 32; gpt-mini batch 8 of 64 tokens), with the loss the mean
square of the output (the task's loss does not change what is compared). Per model: the
trainable parameters and their share of the model, the median step time over repeats (one
warm-up step each, excluded; the two variants run interleaved in alternating order each
repeat so a busy neighbour hits both alike), and AdamW's state after a step, measured as the
bytes of its exp_avg and exp_avg_sq tensors (2 x trainable floats x 4 bytes). Run:

    OMP_WAIT_POLICY=PASSIVE .venv/bin/python benchmarks/lora.py [--threads 1] [--repeats 7]

Measured on the 2-core dev machine (shared), torch 2.13 CPU, 1 thread, OMP_WAIT_POLICY=PASSIVE,
7 repeats of 5 steps (a second run gave 1.13x, 1.17x and 0.80x):

    | model     | variant | trainable  | share  | step ms | lora/full | AdamW state |
    |-----------|---------|------------|--------|---------|-----------|-------------|
    | bert-tiny | full    | 35,874     | 100.0% |   11.67 |           |   280.3 KiB |
    | bert-tiny | lora    | 8,192      |  18.6% |   14.12 |     1.21x |    64.0 KiB |
    | vit-tiny  | full    | 202,186    | 100.0% |   31.84 |           |     1.5 MiB |
    | vit-tiny  | lora    | 32,768     |  13.9% |   39.47 |     1.24x |   256.0 KiB |
    | gpt-mini  | full    | 10,845,312 | 100.0% |  540.41 |           |    82.7 MiB |
    | gpt-mini  | lora    | 294,912    |   2.6% |  432.88 |     0.80x |     2.2 MiB |

On the tiny models LoRA is slower (1.1-1.25x): the step is dominated by the forward and the
activation gradients, which LoRA still computes, and it adds two thin matmuls per layer plus
their kernel launches, while the weight gradients and AdamW work it removes are small. Once
the weights dominate, as in gpt-mini (D = 384), the step is 0.80x the full one and AdamW's
state 37x smaller. The share falls with width: r(m + n) / mn is ~19% at D = 32 and 2.6% at
D = 384. (bert-tiny's and vit-tiny's heads stay frozen here; a new task would unfreeze them.)
"""

import argparse
import os
import statistics
import time

import torch
from torch import nn

from fieldguide import create_model
from fieldguide.lora import lora, trainable_share

# name -> (batch, sequence length or None for the card's example input)
MODELS = {"bert-tiny": (32, None), "vit-tiny": (32, None), "gpt-mini": (8, 64)}
VARIANTS = ("full", "lora")


def build(name: str, variant: str) -> nn.Module:
    """The model `name` from seed 0, adapted with LoRA rank 8 when variant is "lora"."""
    torch.manual_seed(0)
    model = create_model(name, dropout=0.0)
    if variant == "lora":
        lora(model, rank=8, alpha=16)
    return model.train()


def example(model: nn.Module, batch: int, length: int | None) -> torch.Tensor:
    """The card's example input, or token ids of the given length for language models."""
    torch.manual_seed(1)
    if length is None:
        return model.example_input(batch)
    return torch.randint(0, model.config.vocab_size, (batch, length))


def step(model: nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor) -> None:
    """One training step: forward, backward, AdamW update."""
    model(x).float().square().mean().backward()
    opt.step()
    opt.zero_grad(set_to_none=True)


def state_bytes(opt: torch.optim.Optimizer) -> int:
    """Bytes held by AdamW's exp_avg and exp_avg_sq tensors."""
    return sum(
        t.numel() * t.element_size()
        for state in opt.state.values()
        for key, t in state.items()
        if key in ("exp_avg", "exp_avg_sq")
    )


def human(n: float) -> str:
    """Bytes as KiB or MiB."""
    return f"{n / 2**20:.1f} MiB" if n >= 2**20 else f"{n / 2**10:.1f} KiB"


def main() -> None:
    """Time both variants of each model and print a markdown table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--steps", type=int, default=5, help="steps per timed repeat")
    parser.add_argument("--models", default=",".join(MODELS))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(
        f"threads={args.threads} OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'unset')} "
        f"repeats={args.repeats} steps/repeat={args.steps} torch={torch.__version__}\n"
    )
    print("| model | variant | trainable | share | step ms | lora/full | AdamW state |")
    print("|---|---|---|---|---|---|---|")
    for name in args.models.split(","):
        batch, length = MODELS[name]
        runs = {}
        for variant in VARIANTS:
            model = build(name, variant)
            params = [p for p in model.parameters() if p.requires_grad]
            opt = torch.optim.AdamW(params, lr=1e-4)
            x = example(model, batch, length)
            step(model, opt, x)  # warm-up; also fills the optimizer state
            runs[variant] = (model, opt, x, [])
        for repeat in range(args.repeats):
            order = VARIANTS if repeat % 2 == 0 else VARIANTS[::-1]
            for variant in order:
                model, opt, x, times = runs[variant]
                start = time.perf_counter()
                for _ in range(args.steps):
                    step(model, opt, x)
                times.append((time.perf_counter() - start) / args.steps)
        full_ms = statistics.median(runs["full"][3]) * 1e3
        for variant in VARIANTS:
            model, opt, _, times = runs[variant]
            ms = statistics.median(times) * 1e3
            trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
            ratio = f"{ms / full_ms:.2f}x" if variant == "lora" else ""
            print(
                f"| {name} | {variant} | {trainable:,} | {trainable_share(model):.1%} | "
                f"{ms:.2f} | {ratio} | {human(state_bytes(opt))} |"
            )


if __name__ == "__main__":
    main()
