"""fieldguide's TransformerBlock against nn.TransformerEncoderLayer and the guide's naive block.

Forward + backward of one pre-LN block (LayerNorm, 4-head self-attention, residual, LayerNorm,
GELU MLP of width 4d, residual), batch 8, d = 256, fp32, at T = 128, 512, 2048 and under four
masks: none, causal, padding (the last quarter of every row's keys padded) and causal+padding.

- ours: `fieldguide.layers.attention.TransformerBlock(256, 4)`, SDPA with `is_causal` or a
  boolean mask (True = real key).
- torch: `nn.TransformerEncoderLayer(..., batch_first=True, norm_first=True, activation="gelu")`,
  the same block shape, with `src_mask` (bool, True = masked), `is_causal` and
  `src_key_padding_mask` (True = pad, the opposite of ours) as torch documents them. In training
  mode it cannot take its fused fast path.
- naive: the guide's §6 MHSA re-implemented here (explicit T x T scores, `masked_fill(mask == 0,
  -1e9)` with a float 0/1 mask, softmax, weights @ v) inside the same pre-LN GELU block.

The three share one set of weights, and their outputs are checked to agree before timing. Per
cell: median seconds over repeats (one warm-up run per model excluded), the models run
interleaved in a rotating order each repeat so that a busy neighbour hits all alike; the memory
autograd keeps for backward (bytes of saved tensors, each storage once); and the ratios
ours/torch (below 1: ours is faster or smaller) and naive/ours (above 1: ours is). Masks and
inputs are built once per cell, outside the timing, as a training loop would cache them.
Goals: ours >= 1.0x torch's speed in every cell; at the longest T, ours >= 2x faster and >= 5x
less memory than naive; causal-only, ours calls SDPA with is_causal=True and no mask (checked
by a spy). Run:

    .venv/bin/python benchmarks/attention.py [--threads 2] [--repeats 5] [--lengths 128,512,2048]

On a machine shared with other processes, OMP_WAIT_POLICY=PASSIVE in front keeps libgomp's
spin-wait from multiplying times (perf-notes.md); the policy in force is printed.
"""

import argparse
import os
import statistics
import time
from collections.abc import Callable

import torch
from torch import nn

import fieldguide.layers.attention as attention_module
from fieldguide.layers.attention import TransformerBlock

BATCH, DIM, HEADS, HIDDEN = 8, 256, 4, 1024
MASKS = ("none", "causal", "padding", "causal+padding")
PADDED = 0.25  # fraction of each row's tail that is padding
MODELS = ("ours", "torch", "naive")


class NaiveMHSA(nn.Module):
    """The guide's §6 multi-head self-attention: explicit T x T scores and softmax."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads, self.head_dim = heads, dim // heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x, mask=None):
        b, t, d = x.shape
        q, k, v = self.qkv(x).chunk(3, dim=-1)  # (B, T, D) each
        q, k, v = (z.view(b, t, self.heads, self.head_dim).transpose(1, 2) for z in (q, k, v))
        scores = (q @ k.transpose(-2, -1)) / self.head_dim**0.5  # (B, h, T, T)
        if mask is not None:
            scores = scores.masked_fill(mask == 0, -1e9)  # float 0/1 mask, 0 = hidden
        attn = scores.softmax(dim=-1) @ v  # (B, h, T, D/h)
        return self.proj(attn.transpose(1, 2).contiguous().view(b, t, d))


class NaiveBlock(nn.Module):
    """The guide's block with its naive MHSA, made pre-LN with a GELU MLP like the other two."""

    def __init__(self, dim: int, heads: int, hidden: int) -> None:
        super().__init__()
        self.ln1, self.attn = nn.LayerNorm(dim), NaiveMHSA(dim, heads)
        self.ln2 = nn.LayerNorm(dim)
        self.ff = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))

    def forward(self, x, mask=None):
        x = x + self.attn(self.ln1(x), mask)
        return x + self.ff(self.ln2(x))


def build() -> dict[str, nn.Module]:
    """The three blocks in training mode, all holding the weights of ours."""
    torch.manual_seed(0)
    ours = TransformerBlock(DIM, HEADS)
    theirs = nn.TransformerEncoderLayer(
        DIM,
        HEADS,
        dim_feedforward=HIDDEN,
        dropout=0.0,
        batch_first=True,
        norm_first=True,
        activation="gelu",
    )
    naive = NaiveBlock(DIM, HEADS, HIDDEN)
    pairs = {
        ours.attn_norm: (theirs.norm1, naive.ln1),
        ours.mlp_norm: (theirs.norm2, naive.ln2),
        ours.mlp.up: (theirs.linear1, naive.ff[0]),
        ours.mlp.down: (theirs.linear2, naive.ff[2]),
        ours.attn.output: (theirs.self_attn.out_proj, naive.attn.proj),
    }
    with torch.no_grad():
        for source, targets in pairs.items():
            for target in targets:
                target.weight.copy_(source.weight)
                target.bias.copy_(source.bias)
        # Both fuse q, k, v into one (3D, D) matrix in the same order.
        theirs.self_attn.in_proj_weight.copy_(ours.attn.qkv.weight)
        theirs.self_attn.in_proj_bias.copy_(ours.attn.qkv.bias)
        naive.attn.qkv.load_state_dict(ours.attn.qkv.state_dict())
    return {"ours": ours.train(), "torch": theirs.train(), "naive": naive.train()}


def callers(
    models: dict[str, nn.Module], x: torch.Tensor, mask: str, sublayer: bool = False
) -> dict[str, Callable[[], torch.Tensor]]:
    """One zero-argument forward per model, with its masks in its own convention.

    With `sublayer`, only ours and naive, and only their attention (no norms, no MLP).
    """
    b, t, _ = x.shape
    causal, padded = "causal" in mask, "padding" in mask
    real = torch.ones(b, t, dtype=torch.bool)  # ours: True = real token
    real[:, t - int(PADDED * t) :] = False
    # torch: a bool src_mask is True where attention is *not* allowed; key padding True = pad.
    src_mask = torch.ones(t, t, dtype=torch.bool).triu(1) if causal else None
    pad = ~real if padded else None
    # naive: float 0/1, 0 = hidden, broadcast to (B, h, T, T).
    keep = torch.ones(1, 1, t, t)
    if causal:
        keep = keep.tril()
    if padded:
        keep = keep * real[:, None, None, :].float()  # (B, 1, T, T)
    keep = keep if (causal or padded) else None
    ours, theirs, naive = models["ours"], models["torch"], models["naive"]
    if sublayer:  # the attention alone, without the norms and MLP the blocks share
        return {
            "ours": lambda: ours.attn(x, padding_mask=real if padded else None, causal=causal)[0],
            "naive": lambda: naive.attn(x, keep),
        }
    return {
        "ours": lambda: ours(x, padding_mask=real if padded else None, causal=causal)[0],
        "torch": lambda: theirs(x, src_mask=src_mask, src_key_padding_mask=pad, is_causal=causal),
        "naive": lambda: naive(x, keep),
    }


def saved_bytes(forward: Callable[[], torch.Tensor]) -> int:
    """Bytes autograd keeps for backward in one forward pass, each storage counted once."""
    seen, total = set(), 0

    def pack(tensor):
        nonlocal total
        key = (tensor.untyped_storage().data_ptr(), tensor.untyped_storage().nbytes())
        if key not in seen:
            seen.add(key)
            total += key[1]
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        forward()
    return total


def fwd_bwd(model: nn.Module, x: torch.Tensor, forward: Callable[[], torch.Tensor]) -> float:
    """Seconds of one forward + backward; gradients are cleared before the clock starts."""
    model.zero_grad(set_to_none=True)
    x.grad = None
    start = time.perf_counter()
    forward().sum().backward()
    return time.perf_counter() - start


def causal_sdpa_calls(model: nn.Module, x: torch.Tensor) -> list[tuple[bool, bool]]:
    """(attn_mask is None, is_causal) of every SDPA call our block makes when only causal."""
    calls, sdpa = [], attention_module.F.scaled_dot_product_attention

    def spy(q, k, v, attn_mask=None, dropout_p=0.0, is_causal=False, **kwargs):
        calls.append((attn_mask is None, is_causal))
        return sdpa(
            q, k, v, attn_mask=attn_mask, dropout_p=dropout_p, is_causal=is_causal, **kwargs
        )

    attention_module.F.scaled_dot_product_attention = spy
    try:
        with torch.no_grad():
            model(x, causal=True)
    finally:
        attention_module.F.scaled_dot_product_attention = sdpa
    return calls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--lengths", default="128,512,2048")
    parser.add_argument("--masks", default=",".join(MASKS))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    lengths = [int(t) for t in args.lengths.split(",")]
    masks = args.masks.split(",")
    policy = os.environ.get("OMP_WAIT_POLICY", "default (libgomp spin-wait)")
    print(
        f"fwd+bwd of one pre-LN block, B={BATCH}, d={DIM}, {HEADS} heads, MLP {HIDDEN}, fp32, "
        f"torch {torch.__version__}, {args.threads} thread(s), OMP_WAIT_POLICY={policy}, "
        f"median of {args.repeats} interleaved repeats after 1 warm-up"
    )
    models = build()
    results: dict[tuple[int, str], dict[str, tuple[float, int]]] = {}
    attention_memory: dict[str, dict[str, int]] = {}
    spy_ok, worst_gap = True, 0.0
    for t in lengths:
        torch.manual_seed(t)
        x = torch.randn(BATCH, t, DIM, requires_grad=True)
        if "causal" in masks:
            calls = causal_sdpa_calls(models["ours"], x)
            spy_ok &= calls == [(True, True)]
        for mask in masks:
            run = callers(models, x, mask)
            with torch.no_grad():
                outs = {name: run[name]() for name in MODELS}
            gap = max((outs[name] - outs["ours"]).abs().max().item() for name in MODELS)
            worst_gap = max(worst_gap, gap)
            del outs
            memory = {name: saved_bytes(run[name]) for name in MODELS}
            if t == max(lengths):
                alone = callers(models, x, mask, sublayer=True)
                attention_memory[mask] = {name: saved_bytes(f) for name, f in alone.items()}
            times: dict[str, list[float]] = {name: [] for name in MODELS}
            for name in MODELS:
                fwd_bwd(models[name], x, run[name])  # warm-up: allocator, kernels, thread pool
            for r in range(args.repeats):
                for name in MODELS[r % 3 :] + MODELS[: r % 3]:  # rotate who goes first
                    times[name].append(fwd_bwd(models[name], x, run[name]))
            results[t, mask] = {n: (statistics.median(times[n]), memory[n]) for n in MODELS}
            cell = results[t, mask]
            print(
                f"  T={t:<5} {mask:<15}"
                + "".join(f" {n} {cell[n][0]:7.3f} s" for n in MODELS)
                + f"  (outputs agree to {gap:.1e})",
                flush=True,
            )

    header = (
        f"{'T':>5} {'mask':<15}{'ours s':>9}{'torch s':>9}{'naive s':>9}"
        f"{'ours MiB':>10}{'torch MiB':>10}{'naive MiB':>10}"
        f"{'ours/torch t':>13}{'ours/torch m':>13}{'naive/ours t':>13}{'naive/ours m':>13}"
    )
    print("\n" + header)
    for (t, mask), cell in results.items():
        (ot, om), (tt, tm), (nt, nm) = (cell[n] for n in MODELS)
        print(
            f"{t:>5} {mask:<15}{ot:>9.3f}{tt:>9.3f}{nt:>9.3f}"
            f"{om / 2**20:>10.1f}{tm / 2**20:>10.1f}{nm / 2**20:>10.1f}"
            f"{ot / tt:>12.2f}x{om / tm:>12.2f}x{nt / ot:>12.2f}x{nm / om:>12.2f}x"
        )

    def verdict(ok: bool) -> str:
        return "PASS" if ok else "FAIL"

    speed = {key: cell["torch"][0] / cell["ours"][0] for key, cell in results.items()}
    slowest = min(speed, key=speed.get)
    print("\ngoals:")
    print(
        f"  [{verdict(min(speed.values()) >= 1.0)}] ours >= 1.0x nn.TransformerEncoderLayer's "
        f"speed in every cell (worst torch/ours {speed[slowest]:.2f}x at T={slowest[0]} "
        f"{slowest[1]})"
    )
    longest = max(lengths)
    last = {mask: results[longest, mask] for mask in masks}
    faster = min(c["naive"][0] / c["ours"][0] for c in last.values())
    smaller = min(c["naive"][1] / c["ours"][1] for c in last.values())
    print(
        f"  [{verdict(faster >= 2.0)}] ours >= 2x faster than the naive block at T={longest} "
        f"(worst mask {faster:.2f}x)"
    )
    print(
        f"  [{verdict(smaller >= 5.0)}] ours keeps >= 5x less memory than the naive block at "
        f"T={longest} (worst mask {smaller:.2f}x)"
    )
    alone = {mask: m["naive"] / m["ours"] for mask, m in attention_memory.items()}
    print(
        f"         (attention sublayer alone, without the shared norms and MLP, at T={longest}: "
        + ", ".join(f"{mask} {ratio:.1f}x" for mask, ratio in alone.items())
        + " less memory)"
    )
    if "causal" in masks:
        print(
            f"  [{verdict(spy_ok)}] causal-only: our block calls SDPA once per T with "
            "is_causal=True, attn_mask=None (no mask materialised)"
        )
    print(f"  outputs of the three blocks agree to {worst_gap:.1e} (max abs difference)")


if __name__ == "__main__":
    main()
