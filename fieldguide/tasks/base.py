"""The task contract: where data meets a model and the trainer.

A task owns its data's splits and answers the trainer's questions: how many training examples
there are (`split_size`), the tensors of some examples (`batch`), the loss of a batch (`loss`)
and the metrics of a split (`evaluate`). Forecasting, language modelling or node classification
fit the same loop by answering the same questions.

A task also builds its model, through one template (`Task.build_model`):

1. look up the registry entry;
2. check that the model class `reads` what the task `accepts` (vectors, images, sequences,
   tokens, token pairs, graph), or say in one sentence what would fit;
3. apply the user's overrides (typed, unknown fields refused with close matches);
4. `cls.config_for_data(config, task.spec())` sets the fields the data decides: input width,
   outputs, vocabulary, the pool or readout the task needs;
5. an override that the data contradicts is an error of one sentence naming both values; every
   field the data does not decide stays the user's.

Adding a task: subclass `Task` in its own module, declare `name`, `accepts`, `monitor` and
`metric_names`, implement `spec`, `split_size`, `batch`, `loss` and `evaluate`, and add one line
to `fieldguide.tasks.TASKS`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from fieldguide.models.base import DataSpec
from fieldguide.models.registry import get_entry
from fieldguide.typed import replace_config

SPLITS = ("train", "val", "test")


@contextmanager
def evaluating(model: nn.Module) -> Iterator[None]:
    """Eval mode without gradients inside the block; the model's own mode comes back after it.

    A task evaluates in the middle of training, so it must hand the model back in train mode
    (dropout on) if that is how it found it, even when evaluation raises.
    """
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        model.train(was_training)


def reads(model: nn.Module) -> str:
    """What `model` reads (its class's `reads`), or "" for a module outside the registry."""
    return getattr(type(model), "reads", "")


class Task:
    """Base of every task: splits, the model template, the batched eval loop, `predict`.

    Subclasses declare the class variables and implement `spec`, `split_size`, `batch`,
    `loss` and `evaluate`; most also override `outputs` (what `predict` gathers per batch).
    """

    name: ClassVar[str] = ""
    # What models this task can train, by their class's `reads`, on some data; `accepted` may
    # narrow it for the data at hand (a table trains no image model).
    accepts: ClassVar[frozenset[str]] = frozenset()
    monitor: ClassVar[str] = "val/loss"  # the default metric for early stopping and selection
    metric_names: ClassVar[tuple[str, ...]] = ("loss",)  # evaluate gives "<split>/<metric>"
    output: ClassVar[str] = "per-example"  # what it needs from a model: one of OUTPUTS
    # Invariants a model must declare one of to be trained here (language modelling: causal).
    needs_any: ClassVar[frozenset[str]] = frozenset()
    # Options of DataConfig/TrainConfig this task takes (from `fieldguide.tasks.make_task`).
    options: ClassVar[tuple[str, ...]] = ()

    def __init__(self, data: Any) -> None:
        self.data = data

    @classmethod
    def fits(cls, data: Any) -> bool:
        """Whether this task takes `data` (used by `fieldguide.tasks.task_for`)."""
        return False

    # -- what the data asks of a model -----------------------------------------------------
    def spec(self) -> DataSpec:
        """What one example looks like and the outputs this task needs from the model."""
        raise NotImplementedError

    def spec_for(self, model_cls: type) -> DataSpec:
        """The spec a model of `model_cls` is sized by: `spec()` by default.

        A task that shows its data differently to some models overrides it (click prediction
        gives a model that reads vectors the rows one-hot).
        """
        return self.spec()

    def accepted(self) -> frozenset[str]:
        """What models this task can train on its data (by `reads`); `accepts` by default."""
        return self.accepts

    @classmethod
    def refusal(cls, model_cls: type) -> str:
        """Why this task can never train models of `model_cls` ("" when it can, on some data).

        It reads something the task does not accept, cannot give the output the task needs, or
        lacks an invariant the task relies on. Used before building and by the catalogue.
        """
        reads = getattr(model_cls, "reads", "") or "nothing declared"
        if reads not in cls.accepts:
            return f"trains models that read {' or '.join(sorted(cls.accepts))}; it reads {reads}"
        outputs = getattr(model_cls, "outputs", ())
        if cls.output not in outputs:
            gives = " or ".join(o.removeprefix("per-") for o in outputs)
            return f"needs one output {cls.output.replace('-', ' ')}; it gives one per {gives}"
        only = getattr(model_cls, "fits_tasks", None)  # a classical model's own tasks
        if only is not None and cls.name not in only:
            return f"is not a task it is fitted for; it fits {', '.join(only)} only"
        if cls.needs_any and not cls.needs_any & set(getattr(model_cls, "invariants", ())):
            return f"needs a model that is {' or '.join(sorted(cls.needs_any))}; it is not"
        return ""

    def check_model(self, name: str, cls: type, config: Any) -> None:
        """Refuse, in one sentence, a sized model this task cannot train (none by default)."""

    def build_model(self, name: str, **overrides: Any) -> nn.Module:
        """Create registered model `name` sized for this task's data, with `overrides`.

        Raises:
            ValueError: when the model reads something else, an override is unknown or ill-typed,
                or an override contradicts what the data decides (naming both values).
        """
        entry = get_entry(name)
        cls, accepted = entry.cls, self.accepted()
        if getattr(cls, "reads", "") not in accepted:
            raise ValueError(
                f"{self.name} on '{self.data.name}' trains models that read "
                f"{' or '.join(sorted(accepted))}; '{name}' reads {cls.reads or 'nothing declared'}"
                f"; see `fieldguide list` for models that fit."
            )
        refusal = self.refusal(cls)
        if refusal:
            raise ValueError(
                f"{self.name} {refusal.replace('; it ', f'; {name!r} ', 1)}; see `fieldguide list`."
            )
        asked = replace_config(entry.config, name, **overrides)
        config = cls.config_for_data(asked, self.spec_for(cls))
        for key in overrides:
            given, needed = getattr(asked, key), getattr(config, key)
            if given != needed:
                raise ValueError(
                    f"'{name}' got {key}={given!r} but {self.name} on '{self.data.name}' needs "
                    f"{key}={needed!r}; leave {key} out, the data decides it."
                )
        self.check_model(name, cls, config)
        model = cls(config)
        model.name = name  # used in errors and run folders
        return model

    # -- sizes -----------------------------------------------------------------------------
    def split_size(self, split: str) -> int:
        """Examples (rows, windows, nodes, graphs) of `split`."""
        raise NotImplementedError

    def split_sizes(self) -> dict[str, int]:
        """Examples per split, for reports."""
        return {split: self.split_size(split) for split in SPLITS}

    @property
    def train_size(self) -> int:
        """Number of training examples the trainer shuffles and batches."""
        return self.split_size("train")

    def eval_size(self, split: str) -> int:
        """Examples `evaluate` reads from `split`: all of them unless a task caps it."""
        return self.split_size(split)

    # -- batches, loss, evaluation ----------------------------------------------------------
    def batch(self, split: str, index: Tensor) -> tuple[Tensor, ...]:
        """Tensors of the examples `index` of `split`, on the CPU."""
        raise NotImplementedError

    def loss(self, model: nn.Module, batch: tuple[Tensor, ...]) -> Tensor:
        """Scalar training loss of one batch (already on the model's device)."""
        raise NotImplementedError

    def outputs(self, model: nn.Module, batch: tuple[Tensor, ...]) -> Tensor:
        """What `predict` gathers for one batch (probabilities, forecasts, ...), on its device."""
        raise NotImplementedError

    def eval_batches(
        self,
        model: nn.Module,
        split: str,
        *,
        device: str = "cpu",
        batch_size: int = 256,
        autocast: AbstractContextManager | None = None,
        order: Tensor | None = None,
    ) -> Iterator[tuple[Tensor, tuple[Tensor, ...]]]:
        """(index, batch on `device`) over the examples `evaluate` reads, in order.

        The loop body runs in eval mode, without gradients and under `autocast`; the model's
        own mode comes back afterwards, even on error or an early break. `order` (a
        permutation of the examples) visits them in that order instead.
        """
        order = torch.arange(self.eval_size(split)) if order is None else order
        with evaluating(model):
            for index in order.split(batch_size):
                batch = tuple(t.to(device) for t in self.batch(split, index))
                with autocast or nullcontext():
                    yield index, batch

    def predict(self, model: nn.Module, split: str, **eval_options: Any) -> Tensor:
        """`outputs` of every example `evaluate` reads from `split`, in order, float32, CPU.

        Args:
            model: The model, as `build_model` made it.
            split: "train", "val" or "test".
            **eval_options: `device` ("cpu"), `batch_size` (256) and `autocast` (None), as for
                `eval_batches`.
        """
        order = self.eval_order(split)
        batches = self.eval_batches(model, split, order=order, **eval_options)
        out = torch.cat([self.outputs(model, batch).float().cpu() for _, batch in batches])
        return out if order is None else torch.empty_like(out).index_copy_(0, order, out)

    def eval_order(self, split: str) -> Tensor | None:
        """The order `predict` computes `split` in (its result stays in split order); None: as is.

        A task whose batch cost depends on which examples share it (padding) may group them.
        """
        return None

    def evaluate(self, model: nn.Module, split: str, **eval_options: Any) -> dict[str, float]:
        """Metrics of `split`, named "<split>/<metric>" for each of `metric_names`."""
        raise NotImplementedError

    def state(self) -> dict[str, Any]:
        """What the task fitted on the training data (target scaling, ...), JSON-friendly.

        Saved in the run's preprocessing.json so that `predict` treats new inputs the same way.
        """
        return {}

    def baselines(self, split: str) -> dict[str, dict[str, float]]:
        """Metrics of `split` for simple models fitted on the same training rows, by name.

        What a report puts beside the network's numbers (the training mean and least squares
        for regression); none by default.
        """
        return {}


def named(split: str, metrics: dict[str, float]) -> dict[str, float]:
    """`metrics` with their names prefixed by the split: "val/accuracy"."""
    return {f"{split}/{name}": value for name, value in metrics.items()}
