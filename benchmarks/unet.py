"""fieldguide's U-Net against the guide's §3 sketch (fixed to run, same widths), and channels_last.

Forward + backward of a batch of 4 one-channel images, one logit per pixel, fp32, at 256 x 256
and 512 x 512:

- ours: `fieldguide.models.unet.UNet(UNetConfig(hidden_dim=D, depth=4))`, the paper's widths
  D·(1, 2, 4, 8, 16) with GroupNorm after every convolution (the default), transposed-conv
  upsampling, reflect padding to a multiple of 16 (a no-op at these sizes).
- ours-nonorm: the same with `norm="none"` (a bias on every conv instead), which shows what the
  GroupNorms cost.
- sketch: the guide's §3 U-Net written again here, not copied: two 3x3 conv + ReLU per level,
  no norm, 2x2 max-pooling, 2x2 transposed convs, `torch.cat` of the skip, a 1x1 head. Fixed to
  run with the same widths: four poolings instead of three (the guide's has base·1..8), and it
  is only fed sizes that are multiples of 16, the case where its `torch.cat` works
  (known-defects §3); anything else it refuses in one sentence instead of failing inside cat.

Per model and size: median seconds over interleaved repeats (one warm-up excluded, the order
rotated each repeat so a busy neighbour hits all alike), and two memory figures:

- peak MiB: the highest level of bytes held by torch's CPU allocator during one forward +
  backward, above the level before it (weights and input excluded, parameter gradients
  included), from the allocation and free events of `torch.profiler` with `profile_memory=True`
  (summed in time order). Memory that oneDNN or glibc takes outside torch's allocator is not
  seen; peak RSS was not used because it only ever grows within a process.
- saved MiB: bytes autograd keeps for backward (saved-tensor hooks, each storage once).

Then inference (eval mode, `torch.no_grad`) of ours and the sketch with the model and input in
channels_last against contiguous (NCHW), same sizes; ratio above 1: channels_last is faster.
perf-notes.md measured 1.12-1.27x for ResNet-18 inference on these CPUs; reported, not asserted.

The paper's widths (D = 64: 64..1024) are used unless one forward + backward of ours at the
largest size takes over 60 s (the first warm-up decides); then D = 16 (16..256) for every model,
and the output says so. Run:

    OMP_WAIT_POLICY=PASSIVE .venv/bin/python benchmarks/unet.py [--threads 2] [--repeats 3]
        [--sizes 256,512] [--hidden-dim auto|64|16] [--batch 4]

Times are on 2 cores shared with other engineers' processes, so absolute seconds swing (±25 %
or more, perf-notes.md); the ratios, measured interleaved, are the figures to read. Under that
load libgomp's default spin-wait made a tiny U-Net 10x slower here; PASSIVE avoids it.

Measured (OMP_WAIT_POLICY=PASSIVE, 2 threads, load average 5-6 from other engineers' runs on
the 2 cores, so every time below is inflated and noisy). The probe alone, paper widths 64..1024:
one fwd+bwd of ours took 52 s at 256^2 and 192 s at 512^2, so the run below uses hidden_dim 16
(widths 16..256) for all three models, with `--hidden-dim 16`:

    fwd+bwd, batch 4, widths 16..256 (parameters: ours 1,942,289; the other two 1,940,817)
    | size | model       | median s | peak MiB | saved MiB | s / sketch s | peak / sketch peak |
    | 256  | ours        |  4.373   |   377    |   335     |    1.55x     |       1.40x        |
    | 256  | ours-nonorm |  2.770   |   270    |   213     |    0.98x     |       1.00x        |
    | 256  | sketch      |  2.819   |   269    |   213     |    1.00x     |       1.00x        |
    | 512  | ours        | 13.057   |  1506    |  1317     |    1.00x     |       1.40x        |
    | 512  | ours-nonorm | 13.535   |  1078    |   829     |    1.04x     |       1.00x        |
    | 512  | sketch      | 13.043   |  1074    |   829     |    1.00x     |       1.00x        |

    inference (eval, no_grad), batch 4
    | size | model  | contiguous s | channels_last s | contiguous / channels_last | max diff |
    | 256  | ours   |    0.924     |     0.699       |           1.32x            |  1.5e-05 |
    | 256  | sketch |    0.986     |     0.678       |           1.45x            |  7.5e-08 |
    | 512  | ours   |    4.259     |     2.823       |           1.51x            |  8.0e-05 |
    | 512  | sketch |    4.221     |     2.571       |           1.64x            |  7.5e-08 |

Read: without norms ours costs what the sketch costs (same convolutions; padding is a no-op at
these sizes). The GroupNorms add 40 % to peak memory and to the bytes saved for backward at both
sizes (deterministic figures); their time cost measured 1.55x at 256^2 but 1.00x at 512^2 in this
one busy run, so it is not pinned down here. channels_last inference was 1.3-1.6x faster than
contiguous for both models in every cell, in line with perf-notes (1.12-1.27x for ResNet-18);
channels_last for training was not measured. Memory figures do not depend on the load.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable
from itertools import pairwise

import torch
from torch import Tensor, nn
from torch.profiler import ProfilerActivity, profile

from fieldguide.models.unet import UNet, UNetConfig

DEPTH = 4  # the paper's four poolings
SLOW_S = 60.0  # one fwd+bwd at the largest size above this: fall back to hidden_dim 16
MODELS = ("ours", "ours-nonorm", "sketch")


class SketchLevel(nn.Module):
    """Two 3x3 convolutions with ReLU, as the guide's ConvBlock (padding 1, no norm)."""

    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, padding=1)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        return torch.relu(self.conv2(torch.relu(self.conv1(x))))


class SketchUNet(nn.Module):
    """The guide's §3 U-Net, generalised to any number of levels; H, W multiples of 2^depth."""

    def __init__(self, widths: list[int], in_ch: int = 1, out_ch: int = 1) -> None:
        super().__init__()
        self.encoder = nn.ModuleList(SketchLevel(a, b) for a, b in pairwise([in_ch, *widths[:-1]]))
        self.bottleneck = SketchLevel(widths[-2], widths[-1])
        self.pool = nn.MaxPool2d(2)
        pairs = list(pairwise(widths))[::-1]  # deepest first: (w_i, w_i+1)
        self.up = nn.ModuleList(nn.ConvTranspose2d(hi, lo, 2, stride=2) for lo, hi in pairs)
        self.decoder = nn.ModuleList(SketchLevel(2 * lo, lo) for lo, _ in pairs)
        self.out = nn.Conv2d(widths[0], out_ch, 1)
        self.multiple = 2 ** (len(widths) - 1)

    def forward(self, x: Tensor) -> Tensor:
        """(B, in_ch, H, W) -> (B, out_ch, H, W) with H and W multiples of 2^depth."""
        if x.shape[-2] % self.multiple or x.shape[-1] % self.multiple:
            raise ValueError(
                f"SketchUNet expects H and W multiples of {self.multiple} (its skips are "
                f"concatenated unpadded); got {tuple(x.shape[-2:])}."
            )
        skips = []
        for level in self.encoder:
            x = level(x)
            skips.append(x)
            x = self.pool(x)  # (B, C, H/2, W/2)
        x = self.bottleneck(x)
        for up, level, skip in zip(self.up, self.decoder, reversed(skips), strict=True):
            x = level(torch.cat([up(x), skip], dim=1))  # (B, 2C, 2H, 2W)
        return self.out(x)


def build(hidden_dim: int) -> dict[str, nn.Module]:
    """The three models with widths hidden_dim·(1, 2, 4, 8, 16), seeded, in training mode."""
    torch.manual_seed(0)
    widths = [hidden_dim * 2**i for i in range(DEPTH + 1)]
    return {
        "ours": UNet(UNetConfig(hidden_dim=hidden_dim, depth=DEPTH)).train(),
        "ours-nonorm": UNet(UNetConfig(hidden_dim=hidden_dim, depth=DEPTH, norm="none")).train(),
        "sketch": SketchUNet(widths).train(),
    }


def fwd_bwd(model: nn.Module, x: Tensor) -> float:
    """Seconds of one forward + backward; gradients are cleared before the clock starts."""
    model.zero_grad(set_to_none=True)
    start = time.perf_counter()
    model(x).sum().backward()
    return time.perf_counter() - start


def infer(model: nn.Module, x: Tensor) -> float:
    """Seconds of one forward without autograd."""
    start = time.perf_counter()
    with torch.no_grad():
        model(x)
    return time.perf_counter() - start


def peak_bytes(model: nn.Module, x: Tensor) -> int:
    """Highest allocator level above the start during one forward + backward (profiler events)."""
    model.zero_grad(set_to_none=True)
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        model(x).sum().backward()
    events = [e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"]
    level = peak = 0
    for event in sorted(events, key=lambda e: e.start_ns()):
        level += event.nbytes()  # negative for a free
        peak = max(peak, level)
    model.zero_grad(set_to_none=True)
    return peak


def saved_bytes(model: nn.Module, x: Tensor) -> int:
    """Bytes autograd keeps for backward in one forward pass, each storage counted once."""
    seen, total = set(), 0

    def pack(tensor: Tensor) -> Tensor:
        nonlocal total
        key = (tensor.untyped_storage().data_ptr(), tensor.untyped_storage().nbytes())
        if key not in seen:
            seen.add(key)
            total += key[1]
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        model(x)
    return total


def interleaved(
    runs: dict[str, Callable[[], float]], repeats: int, warm: bool = True
) -> dict[str, float]:
    """Median seconds per name; names rotate who goes first each repeat."""
    if warm:
        for run in runs.values():
            run()
    names, times = list(runs), {name: [] for name in runs}
    for r in range(repeats):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            times[name].append(runs[name]())
    return {name: statistics.median(t) for name, t in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--sizes", default="256,512")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--hidden-dim", default="auto", help="auto: 64 unless too slow, then 16")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    sizes = sorted(int(s) for s in args.sizes.split(","))
    policy = os.environ.get("OMP_WAIT_POLICY", "default (libgomp spin-wait)")
    print(
        f"U-Net depth {DEPTH}, batch {args.batch}, 1 channel in, 1 logit out, fp32, "
        f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), "
        f"OMP_WAIT_POLICY={policy}, median of {args.repeats} interleaved repeats after 1 warm-up",
        flush=True,
    )

    # 1. widths: the paper's unless one fwd+bwd of ours at the largest size is too slow
    hidden_dim, probe = (64, None) if args.hidden_dim == "auto" else (int(args.hidden_dim), None)
    torch.manual_seed(1)
    inputs = {s: torch.randn(args.batch, 1, s, s) for s in sizes}
    if args.hidden_dim == "auto":
        probe = fwd_bwd(build(64)["ours"], inputs[sizes[-1]])
        if probe > SLOW_S:
            hidden_dim = 16
        print(
            f"probe: one fwd+bwd of ours (widths 64..1024) at {sizes[-1]}^2 took {probe:.1f} s; "
            + (
                f"over {SLOW_S:.0f} s, so widths 16..256 (hidden_dim 16) for every model"
                if hidden_dim == 16
                else "the paper's widths 64..1024 for every model"
            ),
            flush=True,
        )
    models = build(hidden_dim)
    widths = [hidden_dim * 2**i for i in range(DEPTH + 1)]
    params = {n: sum(p.numel() for p in m.parameters()) for n, m in models.items()}
    print(f"widths {widths}; parameters " + ", ".join(f"{n} {p:,}" for n, p in params.items()))

    # 2. training step: time, peak allocator bytes, bytes saved for backward
    train_rows = {}
    for size in sizes:
        x = inputs[size]
        with torch.no_grad():
            outs = {n: m(x) for n, m in models.items()}
        shapes = {tuple(o.shape) for o in outs.values()}
        if shapes != {(args.batch, 1, size, size)}:
            raise RuntimeError(f"output shapes differ from the input's: {shapes}")
        del outs
        peak = {n: peak_bytes(m, x) for n, m in models.items()}
        saved = {n: saved_bytes(m, x) for n, m in models.items()}
        times = interleaved(
            {n: (lambda m=m, x=x: fwd_bwd(m, x)) for n, m in models.items()}, args.repeats
        )
        train_rows[size] = {n: (times[n], peak[n], saved[n]) for n in models}
        print(
            f"  {size}^2 fwd+bwd: " + "  ".join(f"{n} {times[n]:.3f} s" for n in models),
            flush=True,
        )

    # 3. inference: channels_last against contiguous, ours and the sketch
    infer_rows = {}
    for name in ("ours", "sketch"):
        model = models[name].eval()
        for size in sizes:
            x = inputs[size]
            x_last = x.contiguous(memory_format=torch.channels_last)
            last = build(hidden_dim)[name].eval().to(memory_format=torch.channels_last)
            last.load_state_dict(model.state_dict())
            with torch.no_grad():
                gap = (model(x) - last(x_last)).abs().max().item()
            times = interleaved(
                {
                    "contiguous": lambda m=model, x=x: infer(m, x),
                    "channels_last": lambda m=last, x=x_last: infer(m, x),
                },
                args.repeats,
            )
            infer_rows[name, size] = (times["contiguous"], times["channels_last"], gap)
            print(f"  {name} {size}^2 inference: {times}", flush=True)
        model.train()

    # 4. tables
    mib = 2**20
    print(f"\nforward + backward, batch {args.batch}, widths {widths[0]}..{widths[-1]}")
    print("| size | model | median s | peak MiB | saved MiB | s / sketch s | peak / sketch peak |")
    print("| ---: | --- | ---: | ---: | ---: | ---: | ---: |")
    for size, row in train_rows.items():
        st, sp, _ = row["sketch"]
        for n, (t, p, s) in row.items():
            print(
                f"| {size} | {n} | {t:.3f} | {p / mib:.0f} | {s / mib:.0f} | {t / st:.2f}x "
                f"| {p / sp:.2f}x |"
            )
    print(f"\ninference (eval, no_grad), batch {args.batch}")
    print(
        "| size | model | contiguous s | channels_last s | contiguous / channels_last | max diff |"
    )
    print("| ---: | --- | ---: | ---: | ---: | ---: |")
    for (name, size), (tc, tl, gap) in sorted(infer_rows.items(), key=lambda kv: kv[0][1]):
        print(f"| {size} | {name} | {tc:.3f} | {tl:.3f} | {tc / tl:.2f}x | {gap:.1e} |")
    if probe is not None:
        print(f"\n(widths chosen by the probe: {probe:.1f} s for one fwd+bwd at 64..1024)")


if __name__ == "__main__":
    main()
