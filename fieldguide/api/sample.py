"""`fieldguide sample`: draw from a trained generative run, as a PNG grid (and tensors).

Seeded and repeatable: the same run, options and seed give the same samples. Options a model's
sampler does not take (guidance for a flow, steps for a VAE) are refused in one sentence, and
so is a class for a model trained without classes.
"""

from __future__ import annotations

import inspect
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

MAX_SAMPLES = 4096
CELL = 64  # pixels per grid cell at least: an 8x8 digit is drawn 8x larger


@dataclass
class Samples:
    """What `sample` drew.

    Attributes:
        x: Samples in model space, (n, C, H, W) images in [-1, 1] or (n, D) vectors.
        pixels: Images as pixels in [0, 1] (n, C, H, W); for a model trained on dequantised
            pixels, (k + u) / L, the level k of the bin each value falls in, as k / (L - 1).
            None for vectors.
        labels: The class of each sample, or None when unconditioned.
    """

    x: Tensor
    pixels: Tensor | None
    labels: Tensor | None


def _label(value: str | int | None, classes: list[str], conditional: bool, run: str) -> int | None:
    """The class index of `value` (a name or an index), or None; one sentence when it is wrong."""
    if value is None:
        return None
    if not conditional:
        raise ValueError(
            f"sample got --class {value} but run {run} was trained without classes; leave "
            f"--class out, or train a class-conditional preset."
        )
    if str(value) in classes:
        return classes.index(str(value))
    try:
        index = int(value)
    except ValueError:
        index = -1
    if not 0 <= index < len(classes):
        raise ValueError(
            f"sample expects --class as one of {classes} or an index 0-{len(classes) - 1}; "
            f"got {value!r}."
        )
    return index


def sample(
    run_dir: str | os.PathLike[str],
    *,
    n: int = 64,
    label: str | int | None = None,
    guidance: float | None = None,
    steps: int | None = None,
    seed: int = 0,
    progress: Any = None,
) -> Samples:
    """Draw `n` samples from the generative run in `run_dir`.

    Args:
        run_dir: A finished run of a generative model (`fieldguide list`: diffusion, flows, VAEs).
        n: How many, 1 to 4096.
        label: A class name or index for a class-conditional model; None draws every class in
            turn (0, 1, ..., 0, 1, ...) for a conditional model, or unconditioned samples.
        guidance: Classifier-free guidance scale (diffusion models that take it).
        steps: Sampling steps (diffusion models).
        seed: Seed of the draw.
        progress: A callable(done, total) the sampler calls per step, where it takes one.
    """
    from fieldguide.api.predict import load_run

    if not isinstance(n, int) or not 1 <= n <= MAX_SAMPLES:
        raise ValueError(f"sample expects --n between 1 and {MAX_SAMPLES}; got {n!r}.")
    run = load_run(run_dir)
    name = run.run_dir.name
    if run.task != "generation":
        raise ValueError(
            f"sample draws from generative runs (diffusion, flows, VAEs); {name} is a "
            f"{run.task} run (use `fieldguide predict` or `generate` for it)."
        )
    model, state = run.model, run.preprocessing["task_state"]
    classes = run.preprocessing.get("classes") or []
    conditional = int(getattr(model.config, "num_classes", 0) or 0) > 0
    index = _label(label, classes, conditional, name)
    options: dict[str, Any] = {}
    accepted = inspect.signature(model.sample).parameters
    for flag, key, value in (("--guidance", "guidance", guidance), ("--steps", "steps", steps)):
        if value is None:
            continue
        if key not in accepted:
            raise ValueError(
                f"sample got {flag} {value} but {run.config.model} samples without it; leave "
                f"{flag} out (it applies to diffusion models)."
            )
        options[key] = value
    if progress is not None and "progress" in accepted:
        options["progress"] = progress
    y = None
    if conditional:
        y = (
            torch.full((n,), index, dtype=torch.int64)
            if index is not None
            else torch.arange(n) % len(classes)
        )
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)  # for samplers that draw from the global generator as well
    model.eval()
    with torch.no_grad():
        x = model.sample(n, y, generator=generator, **options).float().cpu()
    pixels = None
    if state.get("space") == "images":
        pixels = ((x + 1) / 2).clamp(0, 1)
        if state.get("dequantize"):  # trained on (k + u) / L: level k is the bin x falls in
            levels = int(state["levels"])
            pixels = (pixels * levels).floor().clamp(0, levels - 1) / (levels - 1)
    return Samples(x, pixels, y)


def grid_png(pixels: Tensor, path: Path, columns: int | None = None) -> None:
    """Save images (n, C, H, W) in [0, 1] as one PNG grid, each cell scaled up to >= CELL px."""
    from PIL import Image

    n, c, h, w = pixels.shape
    columns = columns or math.ceil(math.sqrt(n))
    rows = math.ceil(n / columns)
    scale = max(1, math.ceil(CELL / max(h, w)))
    gap = max(1, scale // 2)
    canvas = np.ones((rows * (h * scale + gap) + gap, columns * (w * scale + gap) + gap, 3))
    images = pixels.numpy()
    for i in range(n):
        r, col = divmod(i, columns)
        cell = images[i].repeat(scale, axis=1).repeat(scale, axis=2)  # (C, hs, ws)
        cell = np.repeat(cell, 3, axis=0) if c == 1 else cell[:3]
        top, left = gap + r * (h * scale + gap), gap + col * (w * scale + gap)
        canvas[top : top + h * scale, left : left + w * scale] = cell.transpose(1, 2, 0)
    partial = path.with_name(path.name + ".partial")
    Image.fromarray((canvas * 255).round().astype(np.uint8)).save(partial, format="PNG")
    partial.replace(path)


def scatter_png(points: Tensor, path: Path) -> None:
    """Save the first two coordinates of (n, D) samples as a scatter plot PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 5), dpi=100)
    xy = points.numpy()
    ax.scatter(xy[:, 0], xy[:, 1] if xy.shape[1] > 1 else np.zeros(len(xy)), s=4, alpha=0.6)
    ax.set_title(f"{len(xy)} samples (model space)")
    ax.set_aspect("equal")
    partial = path.with_name(path.name + ".partial.png")
    fig.savefig(partial, format="png", bbox_inches="tight")
    plt.close(fig)
    partial.replace(path)


def check_outputs(output: str | os.PathLike[str], tensors: str | None) -> None:
    """One sentence, before any sampling, when -o or --tensors cannot be written."""
    target = Path(output)
    if not str(target).lower().endswith(".png"):
        raise ValueError(f"sample expects -o as a .png file; got '{output}'.")
    if not target.absolute().parent.is_dir():
        raise ValueError(f"sample -o {output}: folder {target.parent} does not exist.")
    if tensors is not None:
        if not str(tensors).lower().endswith(".safetensors"):
            raise ValueError(f"sample expects --tensors as a .safetensors file; got '{tensors}'.")
        if not Path(tensors).absolute().parent.is_dir():
            raise ValueError(f"sample --tensors {tensors}: its folder does not exist.")


def save_samples(samples: Samples, output: str | os.PathLike[str], tensors: str | None) -> None:
    """Write the PNG (grid or scatter) to `output` and, if asked, the raw tensors."""
    from safetensors.torch import save_file

    check_outputs(output, tensors)
    target = Path(output)
    if samples.pixels is not None:
        grid_png(samples.pixels, target)
    else:
        scatter_png(samples.x, target)
    if tensors is not None:
        out = {"samples": samples.x.contiguous()}
        if samples.labels is not None:
            out["labels"] = samples.labels.contiguous()
        save_file(out, str(tensors))
