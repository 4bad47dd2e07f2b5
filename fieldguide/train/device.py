"""Device and precision choice: the device that exists, and bf16 only where it is fast."""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext

import torch

from fieldguide.train.config import OptionError


def pick_device(requested: str = "auto") -> str:
    """Return "cuda", "mps" or "cpu" for "auto"; check that a named device exists here.

    Raises:
        ValueError: for a device kind other than cpu, cuda[:N] and mps.
        OptionError: naming `device` when the device does not exist on this machine.
    """
    mps = getattr(torch.backends, "mps", None)
    has_mps = mps is not None and mps.is_available()
    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "mps" if has_mps else "cpu"
    kind, _, index = requested.partition(":")
    if kind not in ("cpu", "cuda", "mps") or (index and not (kind == "cuda" and index.isdigit())):
        raise ValueError(f"device must be auto, cpu, cuda[:N] or mps; got '{requested}'.")
    if kind == "cuda" and not torch.cuda.is_available():
        raise _missing(requested, "CUDA is not available here; use --device cpu")
    count = torch.cuda.device_count() if kind == "cuda" else 0
    if index and int(index) >= count:
        raise _missing(
            requested, f"this machine has {count} CUDA device(s), cuda:0 to cuda:{count - 1}"
        )
    if kind == "mps" and not has_mps:
        raise _missing(requested, "MPS is not available here; use --device cpu")
    return requested


def _missing(requested: str, why: str) -> OptionError:
    """One sentence naming the `device` option: the device asked for does not exist here."""
    return OptionError(
        f"{{device}} asks for {requested!r} but {why}.", "device", owner="TrainConfig"
    )


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
