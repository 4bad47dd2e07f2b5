"""Exported models against eager PyTorch: inference latency at batch 1, one process.

Each model is built from seed 0 and exported with `fieldguide.api.export.export_model` (ONNX
through torch's TorchScript-based exporter, TorchScript by tracing; both checked against eager
before the file appears), then run at batch 1 on the card's example input (gpt-mini: 64 token
ids) by eager PyTorch under `torch.inference_mode`, by the TorchScript file (`torch.jit.load`)
and by ONNX Runtime (CPUExecutionProvider, graph optimisations on, intra- and inter-op threads
1). torch runs on `--threads` threads too. Each repeat times `--calls` calls per runtime after
three warm-up calls (TorchScript optimises its graph after profiling its first runs), the
runtimes interleaved in an order that alternates per repeat, so a busy neighbour hits all
alike; the table gives medians over repeats and each runtime's time over eager's. Run:

    OMP_WAIT_POLICY=PASSIVE .venv/bin/python benchmarks/export.py [--threads 1] [--repeats 9]

Measured on the 2-core dev machine (shared with other jobs, so absolute times moved up to 2x
between two runs; the ratios less), torch 2.13 CPU, onnxruntime 1.32, 1 thread,
OMP_WAIT_POLICY=PASSIVE, 9 repeats of 20 calls:

    | model               | params     | eager ms | ts ms  | ort ms | ts/eager | ort/eager |
    |---------------------|------------|----------|--------|--------|----------|-----------|
    | mlp                 | 85,002     |    0.184 |  0.101 |  0.037 |    0.55x |     0.20x |
    | mobilenetv2-scratch | 3,504,872  |   18.944 | 13.746 |  4.661 |    0.73x |     0.25x |
    | gpt-mini            | 10,845,312 |   53.844 | 32.907 | 35.289 |    0.61x |     0.66x |

(ts: the TorchScript file; ort: the ONNX file in ONNX Runtime; inputs (1, 64), (1, 3, 64, 64)
and 64 token ids.) A second run gave ort/eager 0.15x, 0.19x and 0.84x (ts/eager 0.24x, 0.70x,
0.90x). At batch 1 the eager call pays Python for each module it runs and for fieldguide's
input checks (measured on the mlp: the checks are a quarter of its eager time, module calls
most of the rest); the files carry neither. ONNX Runtime's lead is largest on MobileNetV2
(4-5x), whose batch norms the exporter folds into the convolutions and whose activations
ONNX Runtime fuses into them; on gpt-mini the matmuls dominate and the runtimes converge
(0.66-0.84x). Numbers are for these sizes on one core, not a claim for batched or
multi-threaded serving.
"""

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch

from fieldguide import create_model
from fieldguide.api.export import export_model, load_exported

# name -> sequence length of its token input, or None for the card's example input
MODELS = {"mlp": None, "mobilenetv2-scratch": None, "gpt-mini": 64}
RUNTIMES = ("eager", "torchscript", "onnxruntime")


def example(model: torch.nn.Module, length: int | None) -> torch.Tensor:
    """One input at batch 1: the card's example, or `length` token ids."""
    torch.manual_seed(1)
    if length is None:
        return model.example_input(1)
    return torch.randint(0, model.config.vocab_size, (1, length))


def runners(name: str, folder: Path, threads: int) -> tuple[torch.nn.Module, dict]:
    """The model (eval mode) and a callable per runtime."""
    torch.manual_seed(0)
    model = create_model(name).eval()
    ts = export_model(model, folder / f"{name}.ts", "torchscript")
    onnx = export_model(model, folder / f"{name}.onnx", "onnx")
    scripted = load_exported(ts)
    session = load_exported(onnx, threads=threads)

    def eager(x: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return model(x)

    def torchscript(x: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return scripted(x)

    return model, {
        "eager": eager,
        "torchscript": torchscript,
        "onnxruntime": session,
    }


def main() -> None:
    """Time each runtime on each model and print a markdown table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--calls", type=int, default=20, help="calls per timed repeat")
    parser.add_argument("--models", default=",".join(MODELS))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    import onnxruntime

    print(
        f"threads={args.threads} (torch and ONNX Runtime) "
        f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'unset')} repeats={args.repeats} "
        f"calls/repeat={args.calls} torch={torch.__version__} "
        f"onnxruntime={onnxruntime.__version__}\n"
    )
    print("| model | params | eager ms | ts ms | ort ms | ts/eager | ort/eager |")
    print("|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as folder:
        for name in args.models.split(","):
            model, runs = runners(name, Path(folder), args.threads)
            x = example(model, MODELS[name])
            times: dict[str, list[float]] = {r: [] for r in RUNTIMES}
            for run in runs.values():
                for _ in range(3):  # warm-up: TorchScript's profiling executor optimises
                    run(x)  # after its first calls
            for repeat in range(args.repeats):
                order = RUNTIMES if repeat % 2 == 0 else RUNTIMES[::-1]
                for runtime in order:
                    start = time.perf_counter()
                    for _ in range(args.calls):
                        runs[runtime](x)
                    times[runtime].append((time.perf_counter() - start) / args.calls)
            ms = {r: statistics.median(t) * 1e3 for r, t in times.items()}
            print(
                f"| {name} | {model.num_parameters():,} | {ms['eager']:.3f} | "
                f"{ms['torchscript']:.3f} | {ms['onnxruntime']:.3f} | "
                f"{ms['torchscript'] / ms['eager']:.2f}x | {ms['onnxruntime'] / ms['eager']:.2f}x |"
            )


if __name__ == "__main__":
    main()
