"""Fine-tuning a pretrained model: start from other weights, then train all, the head, or adapters.

The recipe's fields (train/config.py) that act here, before the first step:

- `init_from` RUN: the run's model.safetensors fills this model (hash-checked; every weight
  outside the head must fit by name and shape, and the head too when the classes match).
- `freeze="body"`: a linear probe. Only the head (the model's `head_prefix` module: `head`,
  or MobileNetV2's `classifier`) trains; the body's weights are frozen and the body stays in
  inference mode (dropout off, batch-norm statistics fixed), so its features do not drift.
- `lora=r`: LoRA adapters (fieldguide/lora.py) of rank r on every linear layer and 1x1
  convolution of the body; the head trains in full, as it is new for the task.
- `body_lr=f`: the body trains at f times the learning rate (a full fine-tune with f ~ 0.1
  keeps the pretrained features while the fresh head catches up). It acts in the optimizer's
  groups (train/optim.py).

Resume rebuilds the model and calls `prepare` again, so the checkpoint finds the same modules.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import nn

from fieldguide.train.config import OptionError


def recipe_for(model: str, given: dict[str, Any]) -> dict[str, Any]:
    """The preset's own recipe (a pretrained model's `recipe`), less what the user `given`.

    A pretrained model trains badly with a from-scratch recipe (lr 3e-3 for 30 epochs wipes
    out what it learnt), so its class names better defaults; a field the user set wins. Its
    `body_lr` is for a full fine-tune, so a linear probe or LoRA run leaves it out.
    """
    from fieldguide.models.registry import get_entry, list_models

    if model not in list_models():
        return {}
    recipe = dict(getattr(get_entry(model).cls, "recipe", {}))
    if given.get("freeze", "none") != "none" or given.get("lora", 0):
        recipe.pop("body_lr", None)
    return {k: v for k, v in recipe.items() if k not in given}


def head_prefix(model: nn.Module) -> str:
    """The top-level module that is the model's output layer ("head" unless it says otherwise)."""
    return getattr(model, "head_prefix", "head")


def is_head(name: str, prefix: str) -> bool:
    """Whether parameter or module `name` belongs to the head `prefix`."""
    return name == prefix or name.startswith(prefix + ".")


def body_names(model: nn.Module) -> list[str]:
    """Names of the parameters outside the head."""
    prefix = head_prefix(model)
    return [n for n, _ in model.named_parameters() if not is_head(n, prefix)]


def check(cfg: Any, model: nn.Module) -> None:
    """Refuse combinations that cannot mean anything, naming the options."""
    if cfg.freeze == "body" and cfg.lora:
        raise OptionError(
            "{freeze} body trains the head alone and {lora} adds adapters to the body; pass one.",
            "freeze",
            "lora",
            owner="TrainConfig",
        )
    if cfg.freeze == "body" and cfg.body_lr != 1.0:
        raise OptionError(
            "{body_lr} scales the body's learning rate, but {freeze} body does not train the "
            "body; leave one out.",
            "body_lr",
            "freeze",
            owner="TrainConfig",
        )
    prefix = head_prefix(model)
    has_head = any(is_head(n, prefix) for n, _ in model.named_parameters())
    if (cfg.freeze == "body" or cfg.lora) and not has_head:
        raise OptionError(
            f"{{freeze}} and {{lora}} keep a head trainable, but {type(model).__name__} has "
            f"no '{prefix}' module; train it in full.",
            "freeze",
            "lora",
            owner="TrainConfig",
        )


def load_from_run(model: nn.Module, run_dir: str | Path) -> list[str]:
    """Fill `model` from an earlier run's weights; returns the head tensors left as they were.

    Every tensor outside the head must be in the run with this shape; head tensors of another
    shape (other classes) are skipped, so the new head starts fresh.
    """
    from fieldguide.train.weights import load_weights

    path = Path(run_dir) / "model.safetensors"
    if not Path(run_dir).is_dir():
        raise OptionError(
            f"{{init_from}} expects a finished run folder with a model.safetensors; {run_dir} is "
            "not a folder.",
            "init_from",
            owner="TrainConfig",
        )
    if not path.is_file():
        raise OptionError(
            f"{{init_from}} expects a finished run folder; {run_dir} has no model.safetensors "
            "(an unfinished run can be resumed instead).",
            "init_from",
            owner="TrainConfig",
        )
    tensors = load_weights(path)
    own = model.state_dict()
    prefix = head_prefix(model)
    skipped, wrong = [], []
    for name, value in own.items():
        found = tensors.get(name)
        if found is not None and found.shape == value.shape:
            continue
        (skipped if is_head(name, prefix) else wrong).append(name)
    if wrong:
        name = wrong[0]
        got = "missing" if name not in tensors else f"shape {tuple(tensors[name].shape)}"
        raise OptionError(
            f"{{init_from}} {run_dir} holds another architecture: {name} is {got} there, "
            f"{tuple(own[name].shape)} here ({len(wrong)} such tensors); start from a run of "
            "the same model and sizes.",
            "init_from",
            owner="TrainConfig",
        )
    model.load_state_dict({k: v for k, v in tensors.items() if k in own and k not in skipped})
    return skipped


def _keep_in_eval(module: nn.Module) -> None:
    """Make `module` and its children ignore train(): dropout off, batch norms' statistics fixed."""
    for m in module.modules():
        m.train = _eval_only(m)  # type: ignore[method-assign]
    nn.Module.train(module, False)


def _eval_only(module: nn.Module) -> Any:
    """A `train` method for `module` that puts it (and its children) in inference mode."""

    def train(mode: bool = True) -> nn.Module:
        return nn.Module.train(module, False)

    return train


def prepare(model: nn.Module, cfg: Any) -> list[str]:
    """Apply the recipe's init_from, freeze and lora to `model`, in place; notes for the run."""
    check(cfg, model)
    notes = []
    if cfg.init_from:
        skipped = load_from_run(model, cfg.init_from)
        fresh = (
            f"; the head starts fresh ({len(skipped)} tensors of another shape)" if skipped else ""
        )
        notes.append(f"weights from {cfg.init_from}{fresh}")
    prefix = head_prefix(model)
    if cfg.freeze == "body":
        for name, p in model.named_parameters():
            p.requires_grad_(is_head(name, prefix))
        for name, child in model.named_children():
            if name != prefix:
                _keep_in_eval(child)
        notes.append(f"linear probe: only {prefix} trains; the body is frozen in inference mode")
    if cfg.lora:
        from fieldguide.lora import lora, trainable_share

        layers = [
            name
            for name, m in model.named_modules()
            if name and not is_head(name, prefix) and isinstance(m, nn.Linear | nn.Conv2d)
        ]
        lora(model, rank=cfg.lora, alpha=cfg.lora_alpha, targets=_eligible(model, layers))
        for name, p in model.named_parameters():
            if is_head(name, prefix):
                p.requires_grad_(True)
        notes.append(
            f"LoRA rank {cfg.lora} on the body, {prefix} in full: "
            f"{100 * trainable_share(model):.1f}% of the weights train"
        )
    return notes


def _eligible(model: nn.Module, names: list[str]) -> tuple[str, ...]:
    """The names among `names` that LoRA can wrap, as exact patterns."""
    from fieldguide.lora import eligible

    chosen = tuple(n for n in names if eligible(model.get_submodule(n)))
    if not chosen:
        raise OptionError(
            f"{{lora}} found no linear layer or 1x1 convolution outside the head of "
            f"{type(model).__name__}; train it in full or with {{freeze}} body.",
            "lora",
            "freeze",
            owner="TrainConfig",
        )
    return chosen
