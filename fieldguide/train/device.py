"""Device and precision choice: the device that exists, and bf16 only where it is fast."""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext

import torch


def pick_device(requested: str = "auto") -> str:
    """Return "cuda", "mps" or "cpu" for "auto"; check that a named device exists."""
    if requested == "auto":
        if torch.cuda.is_available():
            return "cuda"
        mps = getattr(torch.backends, "mps", None)
        return "mps" if mps is not None and mps.is_available() else "cpu"
    if requested.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(
            f"device '{requested}' was requested but CUDA is not available here; use --device cpu."
        )
    if requested == "mps" and not (
        getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()
    ):
        raise ValueError(
            "device 'mps' was requested but MPS is not available here; use --device cpu."
        )
    if requested not in ("cpu", "mps") and not requested.startswith("cuda"):
        raise ValueError(f"device must be auto, cpu, cuda[:N] or mps; got '{requested}'.")
    return requested


def resolve_precision(precision: str, device: str) -> str:
    """Return "bf16" for "auto" on a CUDA device with bf16 support and fp32 elsewhere.

    On CPUs without bf16 units (such as the 2-core machines this project is built on) a bf16
    matmul is about 50x slower than fp32, so CPU runs stay fp32 unless bf16 is asked for.
    """
    if precision == "auto":
        return "bf16" if device.startswith("cuda") and torch.cuda.is_bf16_supported() else "fp32"
    if precision not in ("fp32", "bf16"):
        raise ValueError(f"precision must be auto, fp32 or bf16; got '{precision}'.")
    return precision


def autocast(device: str, precision: str) -> AbstractContextManager:
    """The autocast context for a resolved precision: bf16 autocast, or nothing for fp32."""
    if precision == "bf16":
        return torch.autocast(device_type=device.split(":")[0], dtype=torch.bfloat16)
    return nullcontext()
