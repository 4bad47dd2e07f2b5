"""Time and memory of one sequence-mixing layer, forward + backward, as the sequence grows.

One layer of each kind at width d = 64, batch 4, T = 1k, 4k, 16k: the S4D layer (FFT
convolution, its GELU and output projection) and the Hyena operator from fieldguide's `ssm`
family, one causal TCN residual block, one GRU layer, causal SDPA self-attention (q/k/v and
output projections, 4 heads, `is_causal=True`), and the guide's §12 long depthwise convolution
(kernel T, cut back to T steps so the residual add works) where it fits in time. Norms, MLPs
and dropout around the mixers are left out: they cost the same per step whichever mixer sits
between them. Reported per layer: median seconds over repeats, the memory autograd keeps for
backward (bytes of saved tensors, each storage counted once), and growth from the smallest T.
Run:

    .venv/bin/python benchmarks/sequence_scaling.py [--threads 2] [--repeats 3] [--naive-max 4096]
"""

import argparse
import os
import statistics
import time

import torch
import torch.nn.functional as F
from torch import nn

from fieldguide import create_model

D, BATCH, HEADS = 64, 4, 4


class Attention(nn.Module):
    """Causal multi-head self-attention on SDPA, as in a transformer block."""

    def __init__(self, d: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.qkv, self.proj = nn.Linear(d, 3 * d), nn.Linear(d, d)

    def forward(self, x):
        b, t, d = x.shape
        q, k, v = self.qkv(x).view(b, t, 3, self.heads, d // self.heads).unbind(2)
        q, k, v = (z.transpose(1, 2) for z in (q, k, v))  # (B, h, T, d/h): 4-D for the fast kernel
        a = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.proj(a.transpose(1, 2).reshape(b, t, d))


class GuideLongConv(nn.Module):
    """The guide's §12 stand-in: depthwise conv with a kernel as long as the sequence."""

    def __init__(self, d: int, kernel: int) -> None:
        super().__init__()
        self.dw = nn.Conv1d(d, d, kernel, groups=d, padding=kernel - 1)
        self.norm = nn.LayerNorm(d)

    def forward(self, x):
        t = x.shape[1]
        y = self.dw(x.transpose(1, 2))[..., :t].transpose(1, 2)  # the guide returns T+k-1 steps
        return self.norm(x + y)


def build(name: str, t: int) -> nn.Module:
    seq = {"in_channels": D, "hidden_dim": D, "out_dim": D, "num_layers": 1, "dropout": 0.0}
    if name == "s4d":
        return create_model("s4d", **seq).blocks[0].mixer
    if name == "hyena":
        return create_model("hyena", max_len=max(t, 16), **seq).blocks[0].mixer
    if name == "tcn":
        return create_model("tcn", **seq).blocks[0]
    if name == "gru":
        return create_model("gru", **seq).recurrent
    if name == "attention":
        return Attention(D, HEADS)
    if name == "guide-longconv":
        return GuideLongConv(D, t)
    raise ValueError(name)


def output(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The layer's output as (B, T, D): TCN blocks read channels first, GRUs return a pair."""
    if isinstance(model, nn.GRU):
        return model(x)[0]
    if type(model).__module__.endswith(".tcn"):
        return model(x.transpose(1, 2)).transpose(1, 2)
    return model(x)


def saved_bytes(model: nn.Module, x: torch.Tensor) -> int:
    """Bytes autograd keeps for backward in one forward pass."""
    seen, total = set(), 0

    def pack(tensor):
        nonlocal total
        key = (tensor.untyped_storage().data_ptr(), tensor.untyped_storage().nbytes())
        if key not in seen:
            seen.add(key)
            total += key[1]
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        output(model, x)
    return total


def time_fwd_bwd(model: nn.Module, x: torch.Tensor, repeats: int) -> float:
    times = []
    for i in range(repeats + 1):
        x.grad = None
        start = time.perf_counter()
        output(model, x).sum().backward()
        if i:  # the first run warms up allocators and kernels
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--lengths", default="1024,4096,16384")
    parser.add_argument(
        "--naive-max", type=int, default=4096, help="largest T for the guide's conv"
    )
    parser.add_argument("--models", default="s4d,hyena,tcn,gru,attention,guide-longconv")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    lengths = [int(t) for t in args.lengths.split(",")]
    policy = os.environ.get("OMP_WAIT_POLICY", "default")
    print(
        f"fwd+bwd of one block, d={D}, batch {BATCH}, fp32, torch {torch.__version__}, "
        f"{args.threads} thread(s), OMP_WAIT_POLICY={policy}, median of {args.repeats}"
    )
    results: dict[str, dict[int, tuple[float, int]]] = {}
    for name in args.models.split(","):
        results[name] = {}
        for t in lengths:
            if name == "guide-longconv" and t > args.naive_max:
                continue
            torch.manual_seed(0)
            model = build(name, t)
            x = torch.randn(BATCH, t, D, requires_grad=True)
            results[name][t] = (time_fwd_bwd(model, x, args.repeats), saved_bytes(model, x))
            print(f"  {name:<15} T={t:<6} {results[name][t][0]:8.3f} s", flush=True)
    header = f"{'layer':<15}" + "".join(f"{'T=' + str(t) + ' s':>12}{'MiB':>8}" for t in lengths)
    print("\n" + header + f"{'growth':>9}")
    for name, row in results.items():
        cells = "".join(
            f"{row[t][0]:>12.3f}{row[t][1] / 2**20:>8.1f}" if t in row else f"{'-':>12}{'-':>8}"
            for t in lengths
        )
        ts = sorted(row)
        growth = f"{row[ts[-1]][0] / row[ts[0]][0]:>8.1f}x" if len(ts) > 1 else f"{'-':>9}"
        print(f"{name:<15}{cells}{growth}")
    longest = lengths[-1]
    if "s4d" in results and "attention" in results and longest in results["s4d"]:
        s4d, attn = results["s4d"], results["attention"]
        print(
            f"\nS4D growth {lengths[0]}->{longest}: {s4d[longest][0] / s4d[lengths[0]][0]:.1f}x "
            f"(goal <= 45x); SDPA attention / S4D at T={longest}: "
            f"{attn[longest][0] / s4d[longest][0]:.1f}x time, "
            f"{attn[longest][1] / s4d[longest][1]:.1f}x memory (goal >= 10x time)"
        )


if __name__ == "__main__":
    main()
