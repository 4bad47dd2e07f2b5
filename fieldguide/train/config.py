"""The training recipe: every knob of the trainer, with its default, in one frozen dataclass.

CLI flags are generated from these fields and a run's config.toml dumps them, so each default
lives here and nowhere else.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class TrainConfig:
    """How to train: optimisation, schedule, precision, regularisation, stopping and checkpoints."""

    epochs: int = 30  # passes over the training split
    max_steps: int = 0  # stop after this many optimizer steps (the schedule fits them); 0: no cap
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
    monitor: str = "auto"  # metric for early stopping and the best weights; auto: the task's
    patience: int = 0  # evaluations without improvement before stopping; 0 never stops early
    checkpoint_every: int = 0  # optimizer steps between checkpoints; 0: at the end of each epoch
    seed: int = 0  # initial weights, example order, dropout
    device: str = "auto"  # auto picks cuda, then mps, then cpu

    def __post_init__(self) -> None:
        positive = ("epochs", "batch_size", "accumulate")
        for field in positive:
            if getattr(self, field) < 1:
                raise ValueError(
                    f"TrainConfig.{field} must be at least 1, got {getattr(self, field)}."
                )
        for field in (
            "lr",
            "weight_decay",
            "grad_clip",
            "label_smoothing",
            "patience",
            "checkpoint_every",
            "max_steps",
        ):
            if getattr(self, field) < 0:
                raise ValueError(f"TrainConfig.{field} must be >= 0, got {getattr(self, field)}.")
        if self.lr == 0:
            raise ValueError("TrainConfig.lr must be positive, got 0.")
        for field in ("warmup_fraction", "min_lr_ratio"):
            if not 0.0 <= getattr(self, field) <= 1.0:
                raise ValueError(
                    f"TrainConfig.{field} must be in [0, 1], got {getattr(self, field)}."
                )
        if self.label_smoothing >= 1:
            raise ValueError(
                f"TrainConfig.label_smoothing must be in [0, 1), got {self.label_smoothing}."
            )
        if self.device not in ("auto", "cpu", "mps") and not self.device.startswith("cuda"):
            raise ValueError(
                f"TrainConfig.device must be auto, cpu, cuda[:N] or mps, got '{self.device}'."
            )
