"""The evaluation checklist of report.md: what a model costs, and where a classifier errs.

Every measurement here is best-effort: a model that a counter or a timer cannot handle gets
"not measured (reason)" in the report, never a failed run. The sections are plain markdown.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

LATENCY_WARMUP = 3
LATENCY_CALLS = 20
LATENCY_SECONDS = 1.5  # stop timing batch-1 calls after this long
THROUGHPUT_SECONDS = 0.4  # and training-size batches after this long
RELIABILITY_BINS = 10
MAX_TABLE_CLASSES = 20  # per-class table and confusion matrix up to this many classes
IMBALANCE_RATIO = 3.0  # largest / smallest training class above this earns a warning


def failure_reason(error: BaseException) -> str:
    """One line saying why a measurement failed."""
    text = " ".join(str(error).split())
    return f"{type(error).__name__}: {text[:160]}" if text else type(error).__name__


def _device_of(net: nn.Module) -> torch.device:
    param = next(net.parameters(), None)
    return param.device if param is not None else torch.device("cpu")


def parameter_counts(net: nn.Module) -> tuple[int, int]:
    """(total, trainable) parameters; a tied tensor counts once, as `parameters()` yields it."""
    params = list(net.parameters())
    return sum(p.numel() for p in params), sum(p.numel() for p in params if p.requires_grad)


def tensor_bytes(net: nn.Module) -> int:
    """Bytes of the state dict's tensors, each storage once (tied weights are saved once)."""
    seen, total = set(), 0
    for t in net.state_dict().values():
        key = (t.untyped_storage().data_ptr(), t.storage_offset(), t.numel())
        if key not in seen:
            seen.add(key)
            total += t.numel() * t.element_size()
    return total


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _forward(task: Any, net: nn.Module, batch: tuple[Tensor, ...]) -> Any:
    """The model's forward on a batch: logits for label tasks, else what `predict` gathers.

    A task without `outputs` (generation, seq2seq) is measured through its training loss: the
    teacher-forced forward pass.
    """
    logits = getattr(task, "logits", None)
    if callable(logits) and hasattr(task, "num_classes"):
        return logits(net, batch[:-1])  # the labels are the batch's last tensor
    try:
        return task.outputs(net, batch)
    except NotImplementedError:
        return task.loss(net, batch)


def _test_batch(task: Any, size: int, device: torch.device) -> tuple[int, tuple[Tensor, ...]]:
    """(n, the first n test examples' batch on `device`), n = min(size, test examples).

    n counts examples, not rows of the inputs: a node's batch holds its whole graph.
    """
    n = min(size, task.eval_size("test"))
    if n < 1:
        raise ValueError("the test split is empty")
    return n, tuple(t.to(device) for t in task.batch("test", torch.arange(n)))


def _shapes(batch: tuple[Tensor, ...]) -> str:
    return ", ".join(str(tuple(t.shape)) for t in batch if isinstance(t, Tensor))


def flops_per_example(task: Any, net: nn.Module) -> tuple[int, str]:
    """FLOPs of the forward pass that predicts the first test example, and its input shapes.

    `FlopCounterMode` counts matrix multiplications, convolutions and attention (2 FLOPs per
    multiply-add); elementwise ops, norms and activations are not counted.
    """
    from torch.utils.flop_counter import FlopCounterMode

    from fieldguide.tasks.base import evaluating

    _, batch = _test_batch(task, 1, _device_of(net))
    with evaluating(net), FlopCounterMode(display=False) as counter:
        _forward(task, net, batch)
    return counter.get_total_flops(), _shapes(batch)


def _timed_calls(
    call: Callable[[], Any], device: torch.device, warmup: int, calls: int, seconds: float
) -> list[float]:
    """Seconds of each of up to `calls` calls after `warmup`, stopping once `seconds` pass."""
    for _ in range(warmup):
        call()
    _sync(device)
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < calls and time.perf_counter() - start < seconds:
        t0 = time.perf_counter()
        call()
        _sync(device)
        times.append(time.perf_counter() - t0)
    return times


def latency(task: Any, net: nn.Module) -> dict[str, float]:
    """p50 and p95 seconds of a batch-1 forward pass, in eval mode without gradients."""
    from fieldguide.tasks.base import evaluating

    device = _device_of(net)
    _, batch = _test_batch(task, 1, device)
    with evaluating(net):
        times = _timed_calls(
            lambda: _forward(task, net, batch),
            device,
            LATENCY_WARMUP,
            LATENCY_CALLS,
            LATENCY_SECONDS,
        )
    q = torch.tensor(times, dtype=torch.float64)
    return {"p50": q.quantile(0.5).item(), "p95": q.quantile(0.95).item(), "calls": len(times)}


def throughput(task: Any, net: nn.Module, batch_size: int) -> tuple[float, int]:
    """(examples per second, batch size used) of forward passes at the training batch size."""
    from fieldguide.tasks.base import evaluating

    device = _device_of(net)
    n, batch = _test_batch(task, batch_size, device)
    with evaluating(net):
        times = _timed_calls(lambda: _forward(task, net, batch), device, 1, 10, THROUGHPUT_SECONDS)
    return n * len(times) / sum(times), n


def _measure(lines: list[str], label: str, measure: Callable[[], str]) -> None:
    try:
        lines.append(f"| {label} | {measure()} |")
    except Exception as error:  # noqa: BLE001 - a report line, never a failed run
        lines.append(f"| {label} | not measured ({failure_reason(error)}) |")


def cost_section(
    task: Any, net: nn.Module, batch_size: int, run_dir: Path, record: dict | None = None
) -> str:
    """## Cost: parameters, size on disk, FLOPs per example, latency and throughput.

    `record`, when given, receives the numbers: parameters, latency_ms (p50 at batch 1) and
    throughput (examples/s), each only once measured.
    """
    lines = ["| | |", "| --- | --- |"]
    record = {} if record is None else record

    def params() -> str:
        total, trainable = parameter_counts(net)
        record["parameters"] = total
        if getattr(net, "fits_directly", False):
            return f"{net.num_parameters():,} fitted numbers (a classical model; no parameters)"
        return f"{total:,} total, {trainable:,} trainable"

    def size() -> str:
        path = run_dir / "model.safetensors"
        if path.exists():
            return f"{path.stat().st_size:,} bytes (model.safetensors)"
        return f"{tensor_bytes(net):,} bytes (tensor bytes; model.safetensors not written yet)"

    def flops() -> str:
        count, shapes = flops_per_example(task, net)
        if count == 0:
            return "0 counted (no matmul or convolution seen by FlopCounterMode)"
        return (
            f"{count:,} (FlopCounterMode: matmuls and convolutions of the forward pass that "
            f"predicts one test example, inputs {shapes})"
        )

    def lat() -> str:
        q = latency(task, net)
        record["latency_ms"] = q["p50"] * 1e3
        return (
            f"p50 {q['p50'] * 1e3:.3f} ms, p95 {q['p95'] * 1e3:.3f} ms at batch 1 "
            f"({q['calls']} timed calls after {LATENCY_WARMUP} warm-up)"
        )

    def speed() -> str:
        rate, n = throughput(task, net, batch_size)
        record["throughput"] = rate
        return f"{rate:,.0f} examples/s at batch {n}"

    _measure(lines, "parameters", params)
    _measure(lines, "size on disk", size)
    _measure(lines, "FLOPs per example", flops)
    device = _device_of(net)
    threads = f"{torch.get_num_threads()} CPU thread(s)" if device.type == "cpu" else str(device)
    _measure(lines, f"inference latency ({threads}, eval, no_grad)", lat)
    _measure(lines, "inference throughput", speed)
    return "\n## Cost\n\n" + "\n".join(lines) + "\n"


# -- classification ----------------------------------------------------------------------------
def confusion_matrix(pred: Tensor, y: Tensor, k: int) -> Tensor:
    """Counts (k, k): row = true class, column = predicted class."""
    return torch.bincount(y.long() * k + pred.long(), minlength=k * k).view(k, k)


def per_class(confusion: Tensor) -> dict[str, Tensor]:
    """Precision, recall and F1 per class (precision NaN where a class is never predicted)."""
    c = confusion.double()
    tp = c.diag()
    precision = tp / c.sum(0)
    recall = tp / c.sum(1)
    f1 = 2 * tp / (c.sum(0) + c.sum(1))  # 2TP / (2TP + FP + FN): 0, not NaN, if never right
    return {"precision": precision, "recall": recall, "f1": f1, "support": c.sum(1)}


def reliability_bins(probs: Tensor, y: Tensor, bins: int = RELIABILITY_BINS) -> list[dict]:
    """Per equal-width confidence bin: examples, mean confidence and accuracy (None if empty)."""
    conf, pred = probs.max(-1)
    correct = (pred == y).double()
    which = (conf.double() * bins).ceil().long().clamp(1, bins) - 1  # bin b holds (b/n, (b+1)/n]
    out = []
    for b in range(bins):
        mask = which == b
        n = int(mask.sum())
        out.append(
            {
                "low": b / bins,
                "high": (b + 1) / bins,
                "count": n,
                "confidence": conf.double()[mask].mean().item() if n else None,
                "accuracy": correct[mask].mean().item() if n else None,
            }
        )
    return out


def plot_reliability(bins: list[dict], path: Path) -> None:
    """Accuracy against confidence per bin, beside the diagonal of perfect calibration."""
    import matplotlib

    matplotlib.use("Agg")  # no display on servers
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 5))
    width = bins[0]["high"] - bins[0]["low"]
    full = [b for b in bins if b["count"]]
    ax.bar(
        [b["low"] for b in full],
        [b["accuracy"] for b in full],
        width=width,
        align="edge",
        edgecolor="black",
        alpha=0.7,
        label="accuracy",
    )
    ax.plot([0, 1], [0, 1], "--", color="gray", label="perfect calibration")
    ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="confidence (top probability)", ylabel="accuracy")
    ax.set_title(f"reliability, {len(bins)} bins")
    ax.legend(loc="upper left")
    from fieldguide.api.report import save_png

    save_png(fig, path)


def _name(name: Any) -> str:
    return str(name).replace("|", "\\|")


def _f(x: float) -> str:
    return "-" if math.isnan(x) else f"{x:.4f}"


def _imbalance(task: Any, k: int, class_weights: str) -> str:
    counts = torch.bincount(task.labels("train").long(), minlength=k)
    largest, smallest = int(counts.max()), int(counts.min())
    ratio = math.inf if smallest == 0 else largest / smallest
    if ratio <= IMBALANCE_RATIO:
        return ""
    shown = "inf (a class has no training example)" if math.isinf(ratio) else f"{ratio:.1f}"
    advice = (
        "this run already used `--class-weights balanced`."
        if class_weights == "balanced"
        else "consider `--class-weights balanced`."
    )
    return (
        f"\n> **Class imbalance**: the training split's largest / smallest class ratio is "
        f"{shown} ({largest:,} / {smallest:,} examples); {advice}\n"
    )


def classification_section(
    task: Any, net: nn.Module, device: str, precision: str, class_weights: str, run_dir: Path
) -> str:
    """## Classes: per-class scores, confusion matrix, imbalance warning, reliability diagram."""
    from fieldguide.train.device import autocast

    k = task.num_classes
    probs = task.predict(
        net, "test", device=device, batch_size=256, autocast=autocast(device, precision)
    )
    y = task.labels("test")
    if len(y) != len(probs):
        raise ValueError(f"{len(probs)} test predictions for {len(y)} test labels")
    pred = probs.argmax(-1)
    confusion = confusion_matrix(pred, y, k)
    accuracy = confusion.diag().sum().item() / max(1, len(y))
    names = list(getattr(task.data, "classes", None) or range(k))
    parts = [
        "\n## Classes\n",
        f"\n{len(y):,} test examples, accuracy {accuracy:.4f} (confusion diagonal / total).\n",
    ]
    parts.append(_imbalance(task, k, class_weights))
    if k <= MAX_TABLE_CLASSES:
        scores = per_class(confusion)
        rows = "".join(
            f"| {_name(names[c])} | {_f(scores['precision'][c].item())} | "
            f"{_f(scores['recall'][c].item())} | {_f(scores['f1'][c].item())} | "
            f"{int(scores['support'][c])} |\n"
            for c in range(k)
        )
        parts.append(
            "\n| class | precision | recall | F1 | support |\n| --- | --- | --- | --- | --- |\n"
            + rows
        )
        header = " | ".join(_name(n) for n in names)
        matrix = "".join(
            f"| **{_name(names[i])}** | "
            + " | ".join(str(int(v)) for v in confusion[i].tolist())
            + " |\n"
            for i in range(k)
        )
        parts.append(
            "\nConfusion matrix (rows: true class, columns: predicted class):\n\n"
            f"| true \\ predicted | {header} |\n| --- |{' --- |' * k}\n{matrix}"
        )
    else:
        parts.append(
            f"\n{k} classes: the per-class table and confusion matrix are shown up to "
            f"{MAX_TABLE_CLASSES} classes.\n"
        )
    try:
        bins = reliability_bins(probs, y)
        plot_reliability(bins, run_dir / "reliability.png")
        full = [b for b in bins if b["count"]]
        rows = "".join(
            f"| ({b['low']:.1f}, {b['high']:.1f}] | {b['count']} | {b['confidence']:.4f} | "
            f"{b['accuracy']:.4f} |\n"
            for b in full
        )
        parts.append(
            f"\n![reliability diagram](reliability.png)\n\nReliability, {RELIABILITY_BINS} "
            "equal-width bins of the top probability (empty bins left out):\n\n"
            "| confidence bin | examples | mean confidence | accuracy |\n"
            f"| --- | --- | --- | --- |\n{rows}"
        )
    except Exception as error:  # noqa: BLE001 - a report line, never a failed run
        parts.append(f"\nReliability diagram: not drawn ({failure_reason(error)}).\n")
    return "".join(parts)


def checklist(
    run: Any, task: Any, net: nn.Module, result: Any, run_dir: Path, record: dict | None = None
) -> str:
    """The cost section for every run, and the class section for classification tasks.

    `record` receives the cost numbers (see `cost_section`).
    """
    out = ""
    try:
        out += cost_section(task, net, run.train.batch_size, run_dir, record)
    except Exception as error:  # noqa: BLE001 - a report line, never a failed run
        out += f"\n## Cost\n\nnot measured ({failure_reason(error)})\n"
    if hasattr(task, "num_classes") and hasattr(task, "labels"):
        try:
            out += classification_section(
                task,
                net,
                str(result.device),
                str(result.precision),
                run.train.class_weights,
                run_dir,
            )
        except Exception as error:  # noqa: BLE001 - a report line, never a failed run
            out += f"\n## Classes\n\nnot measured ({failure_reason(error)})\n"
    return out
