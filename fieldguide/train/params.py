"""Optimizer parameter groups: weight decay on weights, never on norms, biases or embeddings.

Decay shrinks a weight toward zero. That regularises matrices and kernels, but on a norm's
gain or a bias it only fights the scale the network needs, and on an embedding it punishes
rare ids most (docs/guide/README.md#training-habits). A model can name more parameters
through `no_weight_decay()`.
"""

from __future__ import annotations

from typing import Any

from torch import nn

# Modules whose parameters are never decayed, whatever their rank.
_NO_DECAY_MODULES = (
    nn.Embedding,
    nn.EmbeddingBag,
    nn.modules.batchnorm._NormBase,
    nn.GroupNorm,
    nn.LayerNorm,
    nn.LocalResponseNorm,
)


def split_decay(model: nn.Module) -> tuple[list[str], list[str]]:
    """Names of trainable parameters with and without weight decay, in model order."""
    skip = set(model.no_weight_decay()) if hasattr(model, "no_weight_decay") else set()
    owner_is_exempt = {}
    for module_name, module in model.named_modules():
        for param_name, _ in module.named_parameters(recurse=False):
            full = f"{module_name}.{param_name}" if module_name else param_name
            owner_is_exempt[full] = isinstance(module, _NO_DECAY_MODULES)
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        if p.ndim >= 2 and not owner_is_exempt.get(name, False) and name not in skip:
            decay.append(name)
        else:
            no_decay.append(name)
    return decay, no_decay


def param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Optimizer groups: weights with `weight_decay`, the rest with none, plus hinted groups.

    A model may return `optimizer_hints()`: parameter name -> {"lr": ..., "weight_decay": ...}.
    Hinted parameters (a state-space layer's A and step size, say) get a group of their own;
    a hinted "lr" becomes the group's `base_lr`, which the schedule scales like the global one.
    Each group carries `names` beside `params` so that the grouping can be printed and tested.
    """
    if weight_decay < 0:
        raise ValueError(f"weight_decay must be >= 0, got {weight_decay}.")
    params = dict(model.named_parameters())
    hints = model.optimizer_hints() if hasattr(model, "optimizer_hints") else {}
    unknown = sorted(set(hints) - set(params))
    if unknown:
        raise ValueError(
            f"{type(model).__name__}.optimizer_hints names unknown parameters {unknown}."
        )
    decay, no_decay = split_decay(model)
    groups: dict[tuple, dict[str, Any]] = {}

    def add(name: str, default_decay: float) -> None:
        hint = hints.get(name, {})
        wd = hint.get("weight_decay", default_decay)
        lr = hint.get("lr")
        group = groups.setdefault((wd, lr), {"names": [], "params": [], "weight_decay": wd})
        if lr is not None:
            group["base_lr"] = lr
        group["names"].append(name)
        group["params"].append(params[name])

    for name in decay:
        add(name, weight_decay)
    for name in no_decay:
        add(name, 0.0)
    return list(groups.values())


def describe_param_groups(model: nn.Module, weight_decay: float) -> str:
    """A few lines that show which parameters are decayed and which are not."""
    lines = []
    for group in param_groups(model, weight_decay):
        count = sum(p.numel() for p in group["params"])
        lr = f", lr={group['base_lr']:g}" if "base_lr" in group else ""
        lines.append(
            f"weight_decay={group['weight_decay']:g}{lr}: "
            f"{len(group['params'])} tensors, {count:,} values"
        )
        lines.extend(f"  {name}" for name in group["names"])
    return "\n".join(lines)
