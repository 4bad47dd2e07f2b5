"""The training recipe: every knob of the trainer, with its default, in one frozen dataclass.

CLI flags are generated from these fields and a run's config.toml dumps them, so each default
lives here and nowhere else.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import re
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal


class OptionError(ValueError):
    """A bad value of a named option, in a message that names the option as the caller spells it.

    The message is a template holding `{name}` for each option in `names`: `str(error)` spells
    it as the dataclass field (`TrainConfig.lr`), and `render(spell)` as anything else, such as
    the command line's `--lr`.

    Args:
        template: the sentence, with `{name}` where each option is named.
        *names: the options (dataclass fields or function arguments) the sentence names.
        owner: the dataclass the options are fields of; "" names them bare.
    """

    def __init__(self, template: str, *names: str, owner: str = "") -> None:
        self.template, self.names, self.owner = template, names, owner
        super().__init__(self.render(lambda name: f"{owner}.{name}" if owner else name))

    def render(self, spell: Callable[[str], str]) -> str:
        """The message with each named option spelled by `spell`, e.g. `lambda n: "--" + n`."""
        text = self.template
        for name in self.names:
            text = text.replace("{" + name + "}", spell(name))
        return text


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _bounds(
    minimum: float | None, above: float | None, maximum: float | None, below: float | None
) -> str:
    """The allowed range as text: " in [0, 1)", " >= 1", " > 0", or "" for any number."""
    low = f"[{minimum}" if minimum is not None else f"({above}" if above is not None else ""
    high = f"{maximum}]" if maximum is not None else f"{below})" if below is not None else ""
    if low and high:
        return f" in {low}, {high}"
    if low:
        return (" >= " if minimum is not None else " > ") + low[1:]
    if high:
        return (" <= " if maximum is not None else " < ") + high[:-1]
    return ""


def check_fields(config: Any, **ranges: dict[str, float]) -> None:
    """Check each field of dataclass `config` against its annotation and `ranges`.

    Raises OptionError naming the first field of the wrong type (bool is not a number here),
    outside its Literal choices, NaN or infinite, or outside its range.

    Args:
        config: a dataclass instance, checked in field order.
        **ranges: per field, bounds among minimum, above, maximum and below (inclusive ones
            and exclusive ones), such as `lr={"above": 0}`.
    """
    owner = type(config).__name__
    hints = _hints(type(config))
    for f in dataclasses.fields(config):
        value, hint = getattr(config, f.name), hints[f.name]
        name = "{" + f.name + "}"
        if typing.get_origin(hint) is Literal:
            choices = typing.get_args(hint)
            if value not in choices:
                raise OptionError(
                    f"{name} must be one of {', '.join(map(str, choices))}; got {value!r}.",
                    f.name,
                    owner=owner,
                )
            continue
        if hint not in (int, float, str):
            continue
        kind = {int: "an integer", float: "a number", str: "text"}[hint]
        wanted = (int,) if hint is int else (int, float) if hint is float else (str,)
        if isinstance(value, bool) or not isinstance(value, wanted):
            raise OptionError(
                f"{name} must be {kind}; got {value!r} ({type(value).__name__}).",
                f.name,
                owner=owner,
            )
        bounds = ranges.get(f.name, {})
        if hint is str:
            continue
        inside = (
            math.isfinite(value)
            and bounds.get("minimum", -math.inf) <= value <= bounds.get("maximum", math.inf)
            and bounds.get("above", -math.inf) < value < bounds.get("below", math.inf)
        )
        if not inside:
            finite = "a finite number" if hint is float else kind
            text = _bounds(
                bounds.get("minimum"),
                bounds.get("above"),
                bounds.get("maximum"),
                bounds.get("below"),
            )
            raise OptionError(f"{name} must be {finite}{text}; got {value!r}.", f.name, owner=owner)


# Config fields whose command-line flag is not "--" + the field name.
FLAG_OF = {"name": "--data", "init_from": "--from"}


def flag(name: str) -> str:
    """The flag of a config field: `label_smoothing` is `--label-smoothing`."""
    return FLAG_OF.get(name, "--" + name.replace("_", "-"))


# Losses a task may take by name; "auto" is the task's default (mse, ce+dice).
LossName = Literal[
    "auto",
    "mse",
    "huber",
    "ce",
    "dice",
    "focal",
    "ce+dice",
    "infonce",
    "triplet",
    "triplet-semihard",
    "arcface",
    "contrastive",
]


@dataclass(frozen=True)
class TrainConfig:
    """How to train: optimisation, schedule, precision, regularisation, stopping and checkpoints."""

    epochs: int = 30  # passes over the training split
    max_steps: int = 0  # stop after this many optimizer steps (the schedule fits them); 0: no cap
    time_limit: float = 0.0  # seconds of training, then evaluate and finish; 0: no limit
    batch_size: int = 64  # examples per micro-batch
    lr: float = 3e-3  # peak learning rate, reached at the end of warmup
    weight_decay: float = 0.05  # on weights only: never norms, biases, embeddings
    optimizer: Literal["adamw", "sgd"] = "adamw"  # sgd: Nesterov momentum 0.9
    warmup_fraction: float = 0.05  # of all optimizer steps, linear from 0
    min_lr_ratio: float = 0.01  # cosine decays to this fraction of the peak
    grad_clip: float = 1.0  # max global gradient norm; 0 turns clipping off
    accumulate: int = 1  # micro-batches per optimizer step
    precision: Literal["auto", "fp32", "bf16"] = "auto"  # auto: bf16 on CUDA with bf16, else fp32
    label_smoothing: float = 0.0
    class_weights: Literal["none", "balanced"] = "none"  # balanced: inverse class frequency
    # regression: mse, huber; segmentation: ce, dice, focal, ce+dice; metric learning: infonce,
    # triplet, triplet-semihard, arcface, contrastive
    loss: LossName = "auto"  # the task's loss; auto: the task's default (see --help of each)
    sparse_optimizer: Literal["adam", "rowwise-adagrad"] = "adam"  # of sparse=True tables
    sparse_lr: float = 0.0  # sparse tables' learning rate; 0: lr (row-wise Adagrad wants ~10x)
    # Fine-tuning (train/finetune.py): where the weights start, and which of them train.
    init_from: str = ""  # a finished run folder whose weights start this run (a new head if needed)
    freeze: Literal["none", "body"] = "none"  # body: only the head trains (a linear probe)
    body_lr: float = 1.0  # the body's learning rate as a fraction of lr; a fine-tune likes ~0.1
    lora: int = 0  # LoRA rank of adapters on the body's linear layers (head in full); 0: none
    lora_alpha: float = 16.0  # LoRA updates are scaled by lora_alpha / lora
    monitor: str = "auto"  # picks the kept weights (val/loss breaks ties); auto: the task's
    patience: int = 0  # evaluations without improvement before stopping; 0 never stops early
    checkpoint_every: int = 0  # optimizer steps between checkpoints; 0: at the end of each epoch
    seed: int = 0  # initial weights, example order, dropout
    device: str = "auto"  # auto picks cuda, then mps, then cpu

    def __post_init__(self) -> None:
        check_fields(
            self,
            epochs={"minimum": 1},
            max_steps={"minimum": 0},
            time_limit={"minimum": 0},
            batch_size={"minimum": 1},
            lr={"above": 0},
            weight_decay={"minimum": 0},
            warmup_fraction={"minimum": 0, "maximum": 1},
            min_lr_ratio={"minimum": 0, "maximum": 1},
            grad_clip={"minimum": 0},
            sparse_lr={"minimum": 0},
            accumulate={"minimum": 1},
            label_smoothing={"minimum": 0, "below": 1},
            patience={"minimum": 0},
            checkpoint_every={"minimum": 0},
            seed={"minimum": 0, "below": 2**32},
            body_lr={"above": 0},
            lora={"minimum": 0},
            lora_alpha={"above": 0},
        )
        if self.monitor not in ("auto", "train/loss") and not re.fullmatch(
            r"val/\S+", self.monitor
        ):
            raise OptionError(
                "{monitor} must be auto, train/loss or a validation metric such as val/loss or "
                f"val/accuracy; got {self.monitor!r}.",
                "monitor",
                owner="TrainConfig",
            )
        if self.device not in ("auto", "cpu", "mps") and not re.fullmatch(
            r"cuda(:\d+)?", self.device
        ):
            raise OptionError(
                f"{{device}} must be auto, cpu, cuda, cuda:N or mps; got {self.device!r}.",
                "device",
                owner="TrainConfig",
            )
