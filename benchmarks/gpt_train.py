"""gpt-mini training throughput and model FLOP utilisation (MFU) against a same-run GEMM peak.

MFU = achieved model FLOP/s / peak FLOP/s, with
    model FLOPs per token = 6 N + 12 L D T   (PaLM, Chowdhery et al. 2022, appendix B)
where N counts the weights of every matmul (the tied output embedding included, the input
embedding lookup and positions not), L layers, D width, T context. The attention term counts the
full T x T score matrix although the causal half is skipped, as PaLM does. The peak is a
2048^3 fp32 GEMM timed in this process with the same threads, right before and after training
(the median of both), because a busy neighbour on these 2-core machines moves it by 2x.

Throughput is fieldguide's own training loop (`Trainer`: batching, AdamW, warmup + cosine,
clipping) on the King James Bible when the Debian package is installed, else on random bytes
(synthetic, said so in the output): the speed does not depend on the text. Run:

    .venv/bin/python benchmarks/gpt_train.py [--threads 2] [--steps 30] [--batch-size 16]
    On a GPU: add --device cuda --precision bf16; the GEMM peak is then measured in bf16.
"""

import argparse
import math
import os
import statistics
import time

import torch
from torch import nn

from fieldguide.data.base import TextData
from fieldguide.tasks.language_modeling import LanguageModelingTask
from fieldguide.train.config import TrainConfig
from fieldguide.train.loop import Trainer, seed_everything


def gemm_peak(device: str, dtype: torch.dtype, size: int = 2048, repeats: int = 5) -> float:
    """FLOP/s of a size^3 matrix product, the median of `repeats`."""
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    times = []
    for i in range(repeats + 1):
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        start = time.perf_counter()
        a @ b
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        if i:
            times.append(time.perf_counter() - start)
    return 2 * size**3 / statistics.median(times)


def flops_per_token(model: nn.Module, context: int) -> float:
    """6 N + 12 L D T for training (forward + backward)."""
    cfg = model.config
    matmul = sum(m.weight.numel() for m in model.modules() if isinstance(m, nn.Linear))
    if not any(
        isinstance(m, nn.Linear) and m.out_features == cfg.vocab_size for m in model.modules()
    ):
        matmul += cfg.vocab_size * cfg.hidden_dim  # the tied output projection reuses the embedding
    return 6 * matmul + 12 * cfg.num_layers * cfg.hidden_dim * context


def corpus(context: int) -> TextData:
    try:
        from fieldguide.data import load_data

        return load_data("kjv")
    except (ValueError, ModuleNotFoundError, FileNotFoundError):
        g = torch.Generator().manual_seed(0)
        ids = torch.randint(0, 256, (2_000_000,), generator=g)
        return TextData(
            name="random-bytes",
            train=ids[:1_800_000],
            val=ids[1_800_000:1_900_000],
            test=ids[1_900_000:],
            vocab_size=259,
            description="synthetic random bytes",
            synthetic=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="gpt-mini")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=30, help="timed steps after 5 warm-up steps")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", default="fp32", choices=("fp32", "bf16"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    data = corpus(256)
    task = LanguageModelingTask(data, context=256, max_eval_tokens=256)
    seed_everything(0)
    model = task.build_model(args.model)
    context = task.context
    warmup = 5
    marks: list[float] = []

    def clock(trainer):
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        marks.append(time.perf_counter())
        if trainer.state.step >= warmup + args.steps:
            trainer.request_stop()

    cfg = TrainConfig(
        epochs=1, batch_size=args.batch_size, lr=6e-4, device=args.device, precision=args.precision
    )
    dtype = torch.bfloat16 if args.precision == "bf16" else torch.float32
    peak_before = gemm_peak(args.device, dtype)
    Trainer(model, task, cfg, callbacks=[clock], progress="quiet").fit()
    peak_after = gemm_peak(args.device, dtype)
    peak = statistics.median([peak_before, peak_after])
    seconds = marks[warmup + args.steps - 1] - marks[warmup - 1]
    tokens = args.steps * args.batch_size * context
    achieved = tokens * flops_per_token(model, context) / seconds
    print(
        f"{args.model}: {model.num_parameters():,} parameters, context {context}, batch "
        f"{args.batch_size}, {args.precision} on {args.device}, {args.threads} thread(s), "
        f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'default')}, data: {data.description}"
    )
    print(
        f"tokens/s {tokens / seconds:,.0f}   model TFLOP/s {achieved / 1e12:.3f}   "
        f"GEMM peak TFLOP/s {peak / 1e12:.3f} (before {peak_before / 1e12:.3f}, after "
        f"{peak_after / 1e12:.3f})   MFU {achieved / peak:.1%}"
    )
    if not math.isfinite(achieved):
        raise SystemExit("timing failed")


if __name__ == "__main__":
    main()
