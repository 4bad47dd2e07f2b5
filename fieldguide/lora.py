"""Low-rank adapters (LoRA, Hu et al., 2021) for any family: train r(m + n) weights, not mn.

A frozen pretrained layer W (out x in) gets a trainable low-rank update, a small share of
the training a full fine-tune costs (docs/guide/README.md#training-habits)::

    y = W x + b + (alpha / r) * B A dropout(x)        A: (r, in), B: (out, r)

A starts Kaiming-uniform, as nn.Linear's own weight, and B at zero, so the adapted model
computes exactly what the base model did until the first optimizer step. Every base
parameter is frozen (requires_grad False), so the trainer, which optimizes only parameters
that require grad (train/params.py), updates A and B alone; AdamW's state shrinks with them.

Which layers: `lora(model, targets=...)` wraps each nn.Linear, and each 1x1 nn.Conv2d with
groups=1 (a ResNet's downsampling shortcut: a Linear over channels), whose qualified name
matches a target. A target `p` matches the name `n` when `fnmatch(n, p)` or
`fnmatch(n, "*." + p)`, case-sensitive: "qkv" matches every `blocks.3.attn.qkv`, "mlp.*"
every layer under an `mlp`, "blocks.0.*" everything in the first block. `targets=None`
wraps every such layer except those under the model's top-level `head`, the library's name
for its output layer (STYLE.md), which is usually re-initialised for a new task rather than
adapted; pass the names explicitly to adapt the head too.

`merge(model)` folds (alpha / r) B A into each W and puts the plain layer back, so the model
has its original parameter names and costs nothing extra at inference; `merged(model)` does
the same for the length of a `with` block and then subtracts the update again.
`save_lora` / `load_lora` keep only A and B in a small safetensors file (hash-checked, as
train/weights.py writes it) whose metadata names the base model it belongs to.

Letters: B batch, C channels, H x W spatial, r rank.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from fnmatch import fnmatchcase
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors import safe_open
from torch import Tensor, nn

from fieldguide.train.weights import load_weights, save_weights

__all__ = [
    "LoRAConv1x1",
    "LoRALinear",
    "load_lora",
    "lora",
    "lora_state_dict",
    "merge",
    "merged",
    "save_lora",
    "trainable_share",
]

FORMAT = "fieldguide-lora/1"  # metadata["format"] of an adapter file
_SHOWN = 8  # names listed in an error message before "..."


# ---------------------------------------------------------------------------------------------
# The wrappers
# ---------------------------------------------------------------------------------------------


class _LoRA(nn.Module):
    """A frozen base layer plus a trainable rank-r update; subclasses apply A and B."""

    def __init__(
        self, base: nn.Module, in_dim: int, out_dim: int, rank: int, alpha: float, dropout: float
    ) -> None:
        super().__init__()
        self.base = base
        self.rank = rank
        self.alpha = alpha
        self.scale = alpha / rank
        weight = base.weight
        self.lora_A = nn.Parameter(
            torch.empty(rank, in_dim, device=weight.device, dtype=weight.dtype)
        )
        self.lora_B = nn.Parameter(
            torch.zeros(out_dim, rank, device=weight.device, dtype=weight.dtype)
        )
        # nn.Linear's own init for A; B = 0 makes the update exactly zero at the start.
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.merged = False  # True while (alpha / r) B A is folded into base.weight

    def delta_weight(self) -> Tensor:
        """The update (alpha / r) B A, shaped like the base weight."""
        return (self.lora_B @ self.lora_A * self.scale).view_as(self.base.weight)

    @torch.no_grad()
    def fold(self, sign: int) -> None:
        """Add (sign = 1) or subtract (sign = -1) the update to the base weight in place."""
        self.base.weight.add_(self.delta_weight(), alpha=sign)
        self.merged = sign > 0

    def forward(self, x: Tensor) -> Tensor:
        """The base layer's output plus the scaled low-rank update; input shape as the base's."""
        if self.merged:
            return self.base(x)
        return self.base(x) + self.update(self.dropout(x)) * self.scale

    def update(self, x: Tensor) -> Tensor:
        """B A x, without the scale."""
        raise NotImplementedError

    def extra_repr(self) -> str:
        return f"rank={self.rank}, alpha={self.alpha}, merged={self.merged}"


class LoRALinear(_LoRA):
    """An nn.Linear with a LoRA update (Hu et al., 2021): x (..., in) -> (..., out)."""

    def __init__(self, base: nn.Linear, rank: int, alpha: float, dropout: float = 0.0) -> None:
        super().__init__(base, base.in_features, base.out_features, rank, alpha, dropout)

    def update(self, x: Tensor) -> Tensor:
        """B A x of x (..., in): (..., out)."""
        return F.linear(F.linear(x, self.lora_A), self.lora_B)


class LoRAConv1x1(_LoRA):
    """A 1x1 nn.Conv2d with a LoRA update: x (B, C_in, H, W) -> (B, C_out, H', W').

    A runs with the base conv's stride and padding, so the update lands on the same output
    grid; zero padding maps to zero through B, which keeps the merge exact.
    """

    def __init__(self, base: nn.Conv2d, rank: int, alpha: float, dropout: float = 0.0) -> None:
        super().__init__(base, base.in_channels, base.out_channels, rank, alpha, dropout)

    def update(self, x: Tensor) -> Tensor:
        """B A x as two 1x1 convs: (B, C_in, H, W) -> (B, r, H', W') -> (B, C_out, H', W')."""
        conv = self.base
        h = F.conv2d(
            x, self.lora_A[:, :, None, None], None, conv.stride, conv.padding, conv.dilation
        )
        return F.conv2d(h, self.lora_B[:, :, None, None])  # (B, C_out, H', W')


def eligible(module: nn.Module) -> bool:
    """Whether LoRA can wrap `module`: an nn.Linear, or a 1x1 ungrouped zero-padded Conv2d."""
    if type(module) is nn.Linear:  # subclasses (NonDynamicallyQuantizableLinear) may be fused
        return True
    return (
        type(module) is nn.Conv2d
        and module.kernel_size == (1, 1)
        and module.groups == 1
        and module.padding_mode == "zeros"
    )


def _layers(model: nn.Module) -> dict[str, _LoRA]:
    return {name: m for name, m in model.named_modules() if isinstance(m, _LoRA)}


def _listed(names: Sequence[str]) -> str:
    shown = ", ".join(names[:_SHOWN])
    return shown + (f", ... ({len(names)} in all)" if len(names) > _SHOWN else "")


def _matches(name: str, patterns: Sequence[str]) -> bool:
    return any(fnmatchcase(name, p) or fnmatchcase(name, "*." + p) for p in patterns)


def _set_module(model: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, module)


# ---------------------------------------------------------------------------------------------
# Adapting, merging, counting
# ---------------------------------------------------------------------------------------------


def lora(
    model: nn.Module,
    rank: int = 8,
    alpha: float = 16,
    targets: Sequence[str] | None = None,
    dropout: float = 0.0,
) -> nn.Module:
    """Wrap the matching layers of `model` in LoRA adapters, in place, and freeze the rest.

    Args:
        model: Any module; its nn.Linear layers and 1x1 nn.Conv2d layers are candidates.
        rank: r, the rank of each update B A; at least 1.
        alpha: The update is scaled by alpha / rank, so changing the rank keeps its size.
        targets: Name patterns such as ("qkv", "output", "mlp.*"); see the module docstring.
            None wraps every candidate outside the top-level `head`.
        dropout: Dropout on the adapter's input during training, in [0, 1).

    Returns:
        `model` itself, with only the A and B matrices requiring grad.

    Raises:
        TypeError: If `targets` is a single string rather than a sequence of them.
        ValueError: If rank < 1, alpha <= 0, dropout is outside [0, 1), `model` already holds
            LoRA layers, or no candidate layer matches `targets`.
    """
    _check_settings(rank, alpha, dropout)
    if isinstance(targets, str):
        raise TypeError(
            f"lora expected targets as a tuple of name patterns, got the string {targets!r}; "
            f"pass ({targets!r},)."
        )
    _refuse_adapted(model, "lora")
    candidates = [name for name, m in model.named_modules() if name and eligible(m)]
    if targets is None:
        chosen = [n for n in candidates if n != "head" and not n.startswith("head.")]
    else:
        chosen = [n for n in candidates if _matches(n, tuple(targets))]
    if not chosen:
        raise ValueError(
            f"lora found no nn.Linear or 1x1 nn.Conv2d matching targets={targets!r}; the model "
            f"has {_listed(candidates) or 'none'}."
        )
    _wrap(model, chosen, rank, alpha, dropout)
    return model


def _check_settings(rank: int, alpha: float, dropout: float) -> None:
    if isinstance(rank, bool) or not isinstance(rank, int) or rank < 1:
        raise ValueError(f"lora expected rank as an int >= 1, such as 8, but got {rank!r}.")
    if not alpha > 0:
        raise ValueError(
            f"lora expected alpha > 0 (the update is scaled by alpha / rank), got {alpha!r}."
        )
    if not 0 <= dropout < 1:
        raise ValueError(f"lora expected dropout in [0, 1), got {dropout!r}.")


def _refuse_adapted(model: nn.Module, caller: str) -> None:
    existing = list(_layers(model))
    if existing:
        raise ValueError(
            f"{caller} expected a model without LoRA layers, but model already has "
            f"{len(existing)} ({_listed(existing)}); call merge(model) first or build a fresh one."
        )


def _wrap(model: nn.Module, names: Sequence[str], rank: int, alpha: float, dropout: float) -> None:
    """Freeze `model` and replace each named layer by its LoRA wrapper."""
    model.requires_grad_(False)  # before wrapping, so only the new A and B stay trainable
    for name in names:
        base = model.get_submodule(name)
        wrapper = LoRALinear if isinstance(base, nn.Linear) else LoRAConv1x1
        _set_module(model, name, wrapper(base, rank, alpha, dropout))


def merge(model: nn.Module) -> nn.Module:
    """Fold each adapter into its base weight and put the plain layer back, in place.

    W <- W + (alpha / r) B A; the model then has its original modules and parameter names
    (a plain model for save_weights), and the base parameters stay frozen.

    Returns:
        `model` itself, without LoRA layers.

    Raises:
        ValueError: If `model` holds no LoRA layers.
    """
    layers = _layers(model)
    if not layers:
        raise ValueError(
            "merge expected a model with LoRA layers, but model has none; call lora(model) first."
        )
    for name, layer in layers.items():
        if not layer.merged:
            layer.fold(+1)
        _set_module(model, name, layer.base)
        layer.merged = False  # detached: a surrounding `merged` block must not subtract it
    return model


@contextmanager
def merged(model: nn.Module) -> Iterator[nn.Module]:
    """Within the block, run `model` with its adapters folded into the base weights.

    Inference then costs what the base model costs; on leaving, the update is subtracted
    again (equal to the original weights up to float rounding, about 1e-7 relative).
    Do not train inside the block: A and B get no gradient while merged.
    """
    layers = [layer for layer in _layers(model).values() if not layer.merged]
    for layer in layers:
        layer.fold(+1)
    try:
        yield model
    finally:
        for layer in layers:
            if layer.merged:  # False once merge(model) made the update permanent
                layer.fold(-1)


def trainable_share(model: nn.Module) -> float:
    """The fraction of `model`'s parameters that require grad (shared ones counted once)."""
    params = list(model.parameters())
    total = sum(p.numel() for p in params)
    return sum(p.numel() for p in params if p.requires_grad) / total if total else 0.0


# ---------------------------------------------------------------------------------------------
# Adapter files: A and B only, with the settings and the base model they belong to
# ---------------------------------------------------------------------------------------------


def lora_state_dict(model: nn.Module) -> dict[str, Tensor]:
    """The adapter tensors only, keyed like "blocks.0.attn.qkv.lora_A" (detached, shared)."""
    tensors = {}
    for name, layer in _layers(model).items():
        tensors[f"{name}.lora_A"] = layer.lora_A.detach()
        tensors[f"{name}.lora_B"] = layer.lora_B.detach()
    return tensors


def _tree(tensors: dict[str, Tensor]) -> nn.Module:
    """A module whose state_dict is exactly `tensors` (dotted names become submodules)."""
    root = nn.Module()
    for key, tensor in tensors.items():
        *path, leaf = key.split(".")
        node = root
        for part in path:
            if not hasattr(node, part):
                node.add_module(part, nn.Module())
            node = getattr(node, part)
        node.register_buffer(leaf, tensor.contiguous())
    return root


def save_lora(
    model: nn.Module, path: str | Path, base_name: str | None = None, base_sha256: str = ""
) -> Path:
    """Write `model`'s adapters and settings to a small safetensors file, never a pickle.

    Args:
        model: A model adapted by `lora` (and not merged).
        path: The file to write, e.g. "adapter.safetensors"; its folder must exist.
        base_name: The registry name of the base model; None takes `model.name`, which
            `create_model` sets.
        base_sha256: The base weights file's hash (its metadata "sha256"), if known.

    Returns:
        The path written.

    Raises:
        ValueError: If `model` holds no LoRA layers or no base name is known.
    """
    layers = _layers(model)
    if not layers:
        raise ValueError(
            "save_lora expected a model with LoRA layers, but model has none; "
            "call lora(model) first."
        )
    base_name = base_name if base_name is not None else getattr(model, "name", "")
    if not base_name:
        raise ValueError(
            "save_lora expected base_name, the base model's registry name, but got none."
        )
    first = next(iter(layers.values()))
    dropout = first.dropout.p if isinstance(first.dropout, nn.Dropout) else 0.0
    metadata = {
        "format": FORMAT,
        "rank": str(first.rank),
        "alpha": repr(float(first.alpha)),
        "dropout": repr(float(dropout)),
        "targets": json.dumps(list(layers)),  # the wrapped names themselves, not the patterns
        "base_model": base_name,
        "base_sha256": base_sha256,
    }
    # Merged layers would store an update that is already inside the base weight.
    if any(layer.merged for layer in layers.values()):
        raise ValueError(
            "save_lora expected unmerged adapters; save outside a `with merged(model)` block."
        )
    return save_weights(_tree(lora_state_dict(model)), path, metadata)


def load_lora(
    model: nn.Module, path: str | Path, base_name: str | None = None, base_sha256: str = ""
) -> nn.Module:
    """Adapt a fresh base `model` with the settings saved in `path` and load its A and B.

    Args:
        model: The base model the file was trained on, without LoRA layers.
        path: A file written by `save_lora`; its hash is checked.
        base_name: The base model's registry name; None takes `model.name`.
        base_sha256: When given and the file names a base hash too, they must agree.

    Returns:
        `model` itself, adapted, with the loaded adapters trainable as after `lora`.

    Raises:
        ValueError: If the file is damaged or not an adapter file, was saved for another base
            model, or its tensors do not fit the model's layers.
    """
    path = Path(path)
    tensors = load_weights(path)  # checks the hash first
    with safe_open(str(path), framework="pt") as file:
        meta = file.metadata() or {}
    if meta.get("format") != FORMAT:
        raise ValueError(
            f"{path} is not a LoRA adapter file (no format {FORMAT!r} in its metadata)."
        )
    base_name = base_name if base_name is not None else getattr(model, "name", "")
    if meta["base_model"] != base_name:
        raise ValueError(
            f"{path} holds adapters for base model {meta['base_model']!r}, but model is "
            f"{base_name!r}; load it into a {meta['base_model']!r} model."
        )
    if base_sha256 and meta["base_sha256"] and base_sha256 != meta["base_sha256"]:
        raise ValueError(
            f"{path} was trained on base weights with sha256 {meta['base_sha256'][:12]}..., but "
            f"base_sha256 is {base_sha256[:12]}...; load the same base weights."
        )
    _refuse_adapted(model, "load_lora")
    rank, alpha, dropout = int(meta["rank"]), float(meta["alpha"]), float(meta["dropout"])
    _check_settings(rank, alpha, dropout)
    names = json.loads(meta["targets"])
    expected = {f"{n}.{ab}" for n in names for ab in ("lora_A", "lora_B")}
    missing, unexpected = sorted(expected - set(tensors)), sorted(set(tensors) - expected)
    candidates = {name: m for name, m in model.named_modules() if name and eligible(m)}
    absent = [n for n in names if n not in candidates]
    if missing or unexpected or absent:
        raise ValueError(
            f"{path} does not fit model: missing tensors {missing}, unexpected tensors "
            f"{unexpected}, layers not in model {absent}; save and load with the same base."
        )
    for name in names:  # check every shape before the model changes
        base = candidates[name]
        dims = (
            (base.in_features, base.out_features)
            if isinstance(base, nn.Linear)
            else (base.in_channels, base.out_channels)
        )
        for ab, shape in (("lora_A", (rank, dims[0])), ("lora_B", (dims[1], rank))):
            saved = tuple(tensors[f"{name}.{ab}"].shape)
            if saved != shape:
                raise ValueError(
                    f"{path} does not fit model: {name}.{ab} has shape {saved} but the model "
                    f"needs {shape}; use the same base config."
                )
    _wrap(model, names, rank, alpha, dropout)
    with torch.no_grad():
        for name, layer in _layers(model).items():
            layer.lora_A.copy_(tensors[f"{name}.lora_A"])
            layer.lora_B.copy_(tensors[f"{name}.lora_B"])
    return model
