"""The training loop: any model, any task, resumable to the bit.

One optimizer step = `accumulate` micro-batches. The order of examples in epoch e is a
permutation drawn from a generator seeded by (seed, e), so the position inside an epoch is
just the index of the next step. A checkpoint holds the weights, the optimizer, the step, the
epoch, that position, the python/numpy/torch RNG states (dropout draws from torch's), the early
stopping state and the history, so a resumed run ends bitwise equal to one never interrupted.

Inside an initialised process group (torchrun, or `fieldguide train --nproc N`) the same loop
trains data-parallel: `batch_size` stays the global micro-batch, each rank runs its part of it,
the ranks sum their gradients once per optimizer step, rank 0 evaluates and writes, and the
checkpoint holds every rank's generators (fieldguide.train.distributed says how and why).
"""

from __future__ import annotations

import json
import math
import random
import signal
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from fieldguide.train import distributed
from fieldguide.train.checkpoint import (
    capture_rng_state,
    latest_checkpoint,
    load_checkpoint,
    restore_rng_state,
    save_checkpoint,
)
from fieldguide.train.config import OptionError, TrainConfig
from fieldguide.train.device import autocast, pick_device, resolve_precision
from fieldguide.train.optim import build_optimizer, clip_grad_norm, sparse_names
from fieldguide.train.progress import Progress
from fieldguide.train.schedule import warmup_cosine

# Metrics where lower is better; every other monitored metric is maximised.
LOWER_IS_BETTER = {
    "loss",
    "ece",
    "mae",
    "rmse",
    "smape",
    "mase",
    "snaive_ratio",
    "perplexity",
    "bpb",
    "bits_per_dim",
    "nll",
    "error",
}
# Steps between checks of the loss for NaN/inf: each check syncs with the device once.
CHECK_EVERY = 16


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or infinite."""


@dataclass
class TrainResult:
    """What a finished (or stopped) fit returns."""

    status: str  # "finished", "early_stopped" or "interrupted"
    step: int
    epoch: int
    monitor: str  # the metric that chose the best weights
    best_metrics: dict[str, float]  # the evaluation at the best monitored value
    history: list[dict[str, Any]]
    train_seconds: float
    samples_per_second: float
    device: str
    precision: str
    notes: list[str] = field(default_factory=list)  # what the reader of the run should know


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def monitor_mode(metric: str) -> str:
    """Return "min" for losses and errors, "max" for everything else."""
    return "min" if metric.rsplit("/", 1)[-1] in LOWER_IS_BETTER else "max"


def _check_monitor(monitor: str, metric_names: Sequence[str] | None) -> None:
    """Refuse a monitored metric the task does not evaluate (when the task names its metrics)."""
    if metric_names is None:
        return
    # Names may come bare ("accuracy") or keyed ("val/accuracy"); the trainer monitors val/.
    known = ["train/loss", *(f"val/{name.rsplit('/', 1)[-1]}" for name in metric_names)]
    if monitor not in known:
        raise OptionError(
            f"{{monitor}} must be one of the metrics this task evaluates, {', '.join(known)}; "
            f"got {monitor!r}.",
            "monitor",
            owner="TrainConfig",
        )


@dataclass
class _State:
    """Everything that changes while training and must survive a resume."""

    step: int = 0  # optimizer steps done
    epoch: int = 0  # current epoch
    position: int = 0  # optimizer steps done inside the current epoch
    train_seconds: float = 0.0
    samples: int = 0  # training examples seen
    epoch_loss_sum: float = 0.0
    epoch_loss_count: int = 0
    best_value: float | None = None
    best_tie: float | None = None  # the tie-break metric (TIE_BREAK) at the best evaluation
    best_step: int = -1
    bad_evals: int = 0
    stopped_early: bool = False
    history: list[dict[str, Any]] = field(default_factory=list)


# Breaks ties of the monitored metric (lower is better). On a few dozen validation rows
# accuracy moves in steps of 1/N and ties often: on iris (22 rows) it reaches its best by epoch
# 4-6 and holds it to epoch 30, and keeping the first tied epoch scored 89% on test against
# 98.5% for the lowest loss among the tied ones (benchmarks/small_tables.py). A strictly better
# monitored value still wins, so where ties are rare (large data) the monitor alone decides.
TIE_BREAK = "val/loss"


def is_improvement(
    value: float,
    tie: float | None,
    best_value: float | None,
    best_tie: float | None,
    mode: str,
) -> bool:
    """Whether an evaluation beats the best so far: by the monitored value, then the tie-break.

    A strictly better `value` ("max" or "min" `mode`) wins; an equal one wins only with a
    strictly lower tie-break value, when both are known. Of exact ties the first stays.
    """
    if best_value is None:
        return True
    if value != best_value:
        return value > best_value if mode == "max" else value < best_value
    return tie is not None and best_tie is not None and tie < best_tie


class Trainer:
    """Trains `model` on `task` with the recipe `config`.

    Args:
        model: any nn.Module the task can compute a loss for.
        task: the contract of fieldguide.tasks.base.Task.
        config: the recipe.
        checkpoint_dir: where checkpoints go; None trains without them (and cannot resume).
        metrics_path: a metrics.jsonl file that receives one line per evaluation.
        callbacks: functions called as `callback(trainer)` after every optimizer step.
        epoch_callbacks: functions called as `callback(trainer, record)` after each epoch's
            evaluation and checkpoint, with that evaluation's record.
        progress: "auto", "rich", "plain" or "quiet"; ranks other than 0 are always quiet.

    Inside an initialised process group the trainer is one rank of a data-parallel run (see
    fieldguide.train.distributed): every rank calls `fit` with the same model, task and config,
    and only rank 0 writes checkpoints, metrics and progress.
    """

    def __init__(
        self,
        model: nn.Module,
        task: Any,
        config: TrainConfig,
        *,
        checkpoint_dir: str | Path | None = None,
        metrics_path: str | Path | None = None,
        callbacks: Sequence[Callable[[Trainer], None]] = (),
        epoch_callbacks: Sequence[Callable[[Trainer, dict[str, Any]], None]] = (),
        progress: str | Progress = "auto",
    ) -> None:
        if not isinstance(config, TrainConfig):
            raise TypeError(
                f"Trainer expects config as a TrainConfig; got {type(config).__name__}."
            )
        self.model = model
        self.task = task
        self.config = config
        self.checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir is not None else None
        self.metrics_path = Path(metrics_path) if metrics_path is not None else None
        self.callbacks = list(callbacks)
        self.epoch_callbacks = list(epoch_callbacks)
        self.progress = progress if isinstance(progress, Progress) else Progress(progress)
        self.world = distributed.current()
        if self.world.rank > 0:  # rank 0 alone speaks and writes
            self.progress = Progress("quiet")
            self.metrics_path = None
        if config.batch_size < self.world.size:
            raise OptionError(
                f"{{batch_size}} {config.batch_size} is the global micro-batch, shared by "
                f"{self.world.size} processes, so it must be at least {self.world.size}.",
                "batch_size",
                owner="TrainConfig",
            )
        if config.time_limit and self.world.size > 1:
            raise OptionError(
                "{time_limit} is measured by each process's own clock, so ranks would stop at "
                "different steps; use --max-steps as the budget with several processes.",
                "time_limit",
                owner="TrainConfig",
            )
        self.device = pick_device(config.device)
        if self.world.size > 1 and self.device == "cuda":
            self.device = f"cuda:{self.world.local_rank}"  # one device per rank
        self.precision = resolve_precision(config.precision, self.device)
        # "auto" monitors the task's own headline metric (accuracy, MASE, perplexity, ...).
        self.monitor = (
            getattr(task, "monitor", "val/loss") if config.monitor == "auto" else config.monitor
        )
        _check_monitor(self.monitor, getattr(task, "metric_names", None))
        self.mode = monitor_mode(self.monitor)
        self.notes: list[str] = []  # said once at the start and kept for the run's report
        self.state = _State()
        self.best_weights: dict[str, Tensor] | None = None
        self.last_checkpoint: Path | None = None
        self._stop_requested = False
        self._out_of_time = False  # the time limit ended training inside an epoch
        self._tick = time.perf_counter()  # start of the current stretch of timed training
        self._stop_agreed = False  # with several ranks: some rank asked before the last reduce
        self._sparse: set[str] = set()  # parameters with sparse gradients (several ranks only)
        self._pending: list[Tensor] = []  # losses not yet checked for NaN, with their steps
        self._pending_steps: list[int] = []

    # -- public controls ------------------------------------------------------------------
    def request_stop(self) -> None:
        """Stop after the current optimizer step, saving a checkpoint to resume from.

        With several ranks, a request on any rank stops them all after the same step: the first
        whose gradient reduce carries it (for a request made between steps, as by a callback,
        the next one).
        """
        self._stop_requested = True

    @property
    def lr(self) -> float:
        """Learning rate of the current step."""
        return self.optimizer.param_groups[0]["lr"]

    # -- set-up ---------------------------------------------------------------------------
    def _build_optimizer(self) -> Any:
        return build_optimizer(self.model, self.config)

    def _plan(self) -> None:
        """Micro-batches per epoch, optimizer steps per epoch, total and warmup steps."""
        cfg = self.config
        n = self.task.train_size
        if n < 2:
            raise ValueError(f"the training split has {n} example(s); at least 2 are needed.")
        self.micro_per_epoch = math.ceil(n / cfg.batch_size)
        # A last micro-batch of one example breaks batch norm; it is dropped (it rotates by epoch).
        if n % cfg.batch_size == 1 and self.micro_per_epoch > 1:
            self.micro_per_epoch -= 1
        self.steps_per_epoch = math.ceil(self.micro_per_epoch / cfg.accumulate)
        self.total_steps = cfg.epochs * self.steps_per_epoch
        if cfg.max_steps:  # a step budget ends training early, inside an epoch if need be
            self.total_steps = min(self.total_steps, cfg.max_steps)
        self.warmup_steps = round(cfg.warmup_fraction * self.total_steps)

    def _epoch_micro_batches(self, epoch: int) -> list[Tensor]:
        """Example indices of each micro-batch of `epoch`, a pure function of (seed, epoch)."""
        g = torch.Generator().manual_seed(self.config.seed * 1_000_003 + epoch)
        order = getattr(self.task, "epoch_batches", None)
        if callable(order):  # a task that composes its batches (classes x examples per class)
            return list(order(g, self.config.batch_size))[: self.micro_per_epoch]
        perm = torch.randperm(self.task.train_size, generator=g)
        return list(perm.split(self.config.batch_size))[: self.micro_per_epoch]

    # -- checkpoints ----------------------------------------------------------------------
    def _snapshot(self, rank_rngs: list[Any] | None = None) -> dict[str, Any]:
        snapshot = {
            "format": 1,
            "trainer": asdict(self.state),
            "optimizer": self.optimizer.state_dict(),
            "rng": capture_rng_state(),
            "best_weights": self.best_weights,
            "config": asdict(self.config),
            "world_size": self.world.size,
        }
        if rank_rngs is not None:  # everything else is equal on every rank; the generators differ
            snapshot["rank_rng"] = rank_rngs
        return snapshot

    def save(self) -> Path | None:
        """Commit a checkpoint of the current state (after checking pending losses).

        With several ranks every rank must call it (it gathers their generators); rank 0 writes.
        """
        if self.checkpoint_dir is None:
            return None
        self._check_losses()
        rank_rngs = None
        if self.world.size > 1:
            rank_rngs = distributed.all_gather_object(capture_rng_state())
            if self.world.rank > 0:
                return None
        weights = {k: v.detach().cpu() for k, v in self.model.state_dict().items()}
        self.last_checkpoint = save_checkpoint(
            self.checkpoint_dir, self.state.step, weights=weights, state=self._snapshot(rank_rngs)
        )
        return self.last_checkpoint

    def _restore(self) -> None:
        if self.checkpoint_dir is None or latest_checkpoint(self.checkpoint_dir) is None:
            raise ValueError(
                f"resume needs a checkpoint, but none was found in {self.checkpoint_dir}."
            )
        path = latest_checkpoint(self.checkpoint_dir)
        weights, saved = load_checkpoint(path)
        # Checkpoints written before the world size was recorded came from one process.
        distributed.check_world_size(saved.get("world_size", 1), self.world.size, path)
        # A field added to TrainConfig after the checkpoint was written held its default then.
        old = saved.get("config", {})
        defaults = {k: v for k, v in asdict(TrainConfig()).items() if k not in old}
        saved_config = {**defaults, **old}
        if saved_config != asdict(self.config):
            changed = sorted(k for k, v in asdict(self.config).items() if saved_config.get(k) != v)
            raise ValueError(
                f"cannot resume from {path}: the training config differs in {', '.join(changed)}."
            )
        self.model.load_state_dict(weights)
        self.optimizer.load_state_dict(saved["optimizer"])
        self.state = _State(**saved["trainer"])
        self.best_weights = saved["best_weights"]
        rank = self.world.rank
        restore_rng_state(saved["rank_rng"][rank] if self.world.size > 1 else saved["rng"])
        self.last_checkpoint = path
        if self.metrics_path is not None:  # drop lines written after the checkpoint
            self.metrics_path.write_text("".join(json.dumps(r) + "\n" for r in self.state.history))

    # -- the loop -------------------------------------------------------------------------
    def _check_losses(self) -> None:
        """Raise NonFiniteLossError naming the first step whose loss was NaN or infinite."""
        if not self._pending:
            return
        losses = torch.stack(self._pending)
        if self.world.size > 1:  # each rank holds its part's share of each step's mean loss
            losses = distributed.all_sum(losses)
        losses = losses.float().cpu()
        steps = self._pending_steps
        self._pending, self._pending_steps = [], []
        bad = (~torch.isfinite(losses)).nonzero()
        if len(bad):
            i = int(bad[0])
            where = self.last_checkpoint or "none was saved"
            raise NonFiniteLossError(
                f"the training loss became {losses[i].item()} at step {steps[i]} "
                f"(epoch {self.state.epoch + 1}); "
                f"training stopped (last checkpoint written: {where}). "
                "Try a lower --lr or gradient clipping."
            )
        # One step at a time, in order, in float64: the sum does not depend on how steps were
        # grouped between checks, so a resumed run writes the same train/loss to the last bit.
        for value in losses.double().tolist():
            self.state.epoch_loss_sum += value
        self.state.epoch_loss_count += len(losses)

    def _set_lr(self) -> None:
        step = self.state.step
        if self.config.time_limit:  # the schedule runs on the clock: warm up, then decay in time
            spent = self.state.train_seconds + time.perf_counter() - self._tick
            step = max(step, int(self.total_steps * min(spent / self.config.time_limit, 1.0)))
        factor = warmup_cosine(step, self.warmup_steps, self.total_steps, self.config.min_lr_ratio)
        for group in self.optimizer.param_groups:
            group["lr"] = group.get("base_lr", self.config.lr) * factor

    def _train_step(self, micro_batches: list[Tensor]) -> None:
        """One optimizer step over a window of micro-batches; the loss is the window's mean."""
        cfg = self.config
        self._set_lr()
        window = sum(len(idx) for idx in micro_batches)  # examples of the step, on all ranks
        total = torch.zeros((), device=self.device)
        for idx in micro_batches:
            count = len(idx)
            if self.world.size > 1:  # this rank's part, weighted by the examples it stands for
                idx, count = distributed.shard(idx, self.world)
            batch = tuple(
                t.to(self.device, non_blocking=True) for t in self.task.batch("train", idx)
            )
            with self.autocast:
                loss = self.task.loss(self.model, batch)
            (loss * (count / window)).backward()
            total += loss.detach() * (count / window)
        if self.world.size > 1:  # g = sum over ranks; one collective, which also agrees on stop
            self._stop_agreed = distributed.reduce_gradients(
                self.model, self._stop_requested, self._sparse
            )
        if cfg.grad_clip > 0:
            clip_grad_norm(self.model.parameters(), cfg.grad_clip)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        after = getattr(self.model, "after_optimizer_step", None)
        if callable(after):  # a model that keeps state of its weights (an EMA copy) updates it
            after()
        self.state.step += 1
        self.state.position += 1
        self.state.samples += window
        self._pending.append(total)
        self._pending_steps.append(self.state.step)

    def _evaluate(self) -> dict[str, Any]:
        self._check_losses()
        metrics = None
        if self.world.rank == 0:  # the whole split, alone: not every metric is a sum over shards
            metrics = self.task.evaluate(
                self.model,
                "val",
                device=self.device,
                batch_size=max(256, self.config.batch_size),
                autocast=self.autocast,
            )
        metrics = distributed.broadcast_object(metrics)  # the others wait for rank 0's metrics
        s = self.state
        record = {"epoch": s.epoch + 1, "step": s.step, "lr": self.lr}
        if s.epoch_loss_count:
            record["train/loss"] = s.epoch_loss_sum / s.epoch_loss_count
        record.update(metrics)
        s.history.append(record)
        if self.metrics_path is not None:
            with self.metrics_path.open("a") as f:
                f.write(json.dumps(record) + "\n")
        if self.monitor not in record:
            raise ValueError(
                f"monitor '{self.monitor}' is not among the metrics ({', '.join(sorted(metrics))})."
            )
        value = record[self.monitor]
        tie = record.get(TIE_BREAK) if self.monitor != TIE_BREAK else None
        if is_improvement(value, tie, s.best_value, s.best_tie, self.mode):
            s.best_value, s.best_tie, s.best_step, s.bad_evals = value, tie, s.step, 0
            self.best_weights = {
                k: v.detach().cpu().clone() for k, v in self.model.state_dict().items()
            }
        else:
            s.bad_evals += 1
            s.stopped_early = 0 < self.config.patience <= s.bad_evals
        return record

    def fit(self, resume: bool = False) -> TrainResult:
        """Train to the end (or early stop, or a requested stop); return what happened."""
        cfg = self.config
        self.model.to(self.device)
        if self.world.size > 1:
            distributed.broadcast_module(self.model)  # every rank starts from rank 0's weights
            self._sparse = sparse_names(self.model)
            if self._sparse and self.device.startswith("cuda"):
                raise ValueError(
                    f"{type(self.model).__name__} has sparse embedding tables, which NCCL cannot "
                    "sum across processes; train it with --nproc 1, or on CPU ranks (--device cpu)."
                )
        self.optimizer = self._build_optimizer()
        self.autocast = autocast(self.device, self.precision)
        self._plan()
        if resume:
            self._restore()
        else:
            # Rank 0 draws as one process does; the others draw their own dropout masks.
            seed_everything(distributed.rank_seed(cfg.seed, self.world.rank))
            if (
                self.checkpoint_dir is not None
                and latest_checkpoint(self.checkpoint_dir) is not None
            ):
                raise ValueError(
                    f"{self.checkpoint_dir} already holds checkpoints; "
                    "resume the run or use a new folder."
                )
        if self.total_steps < 100 and not cfg.max_steps:
            # Tiny training sets (GunPoint: 42 series) give one step per epoch; say so up front.
            # A step budget (max_steps) was chosen on purpose, so it goes without comment.
            self.notes.append(
                f"only {self.total_steps} optimizer steps ({self.steps_per_epoch} per epoch); "
                "small data usually wants more --epochs or a smaller --batch-size."
            )
            if not resume:
                self.progress.message(f"note: {self.notes[-1]}")
        previous_handler = self._install_sigint()
        try:
            status = self._run()
        finally:
            self.progress.stop()
            if previous_handler is not None:
                signal.signal(signal.SIGINT, previous_handler)
        if status != "interrupted" and self.best_weights is not None:
            self.model.load_state_dict(self.best_weights)  # the final model is the best one seen
        s = self.state
        best = next(
            (r for r in s.history if r["step"] == s.best_step), s.history[-1] if s.history else {}
        )
        return TrainResult(
            status=status,
            monitor=self.monitor,
            step=s.step,
            epoch=s.epoch,
            best_metrics=best,
            history=list(s.history),
            train_seconds=s.train_seconds,
            samples_per_second=s.samples / max(s.train_seconds, 1e-9),
            device=self.device,
            precision=self.precision,
            notes=list(self.notes),
        )

    def _run(self) -> str:
        cfg, s = self.config, self.state
        self.progress.start(self.total_steps, s.step)
        self.model.train()
        while (
            s.epoch < cfg.epochs
            and not s.stopped_early
            and s.step < self.total_steps
            and not self._out_of_time
        ):
            windows = self._epoch_micro_batches(s.epoch)
            windows = [
                windows[i : i + cfg.accumulate] for i in range(0, len(windows), cfg.accumulate)
            ]
            tick = self._tick = time.perf_counter()
            while s.position < len(windows) and s.step < self.total_steps and not self._out_of_time:
                self._train_step(windows[s.position])
                spent = s.train_seconds + time.perf_counter() - tick
                if cfg.time_limit and spent >= cfg.time_limit:
                    self._out_of_time = True
                if len(self._pending) >= CHECK_EVERY:
                    self._check_losses()
                for callback in self.callbacks:
                    callback(self)
                if self._stopping():
                    s.train_seconds += time.perf_counter() - tick
                    self.save()
                    return self._stopped()
                if cfg.checkpoint_every and s.step % cfg.checkpoint_every == 0:
                    s.train_seconds += time.perf_counter() - tick
                    self.save()
                    tick = self._tick = time.perf_counter()
                loss = s.epoch_loss_sum / s.epoch_loss_count if s.epoch_loss_count else None
                self.progress.step(
                    s.step,
                    s.epoch,
                    loss,
                    self.lr,
                    s.samples / max(s.train_seconds + time.perf_counter() - tick, 1e-9),
                )
            s.train_seconds += time.perf_counter() - tick
            with self.progress.phase("validating"):
                record = self._evaluate()
            self.progress.epoch(
                s.epoch,
                cfg.epochs,
                s.step,
                self.lr,
                s.samples / max(s.train_seconds, 1e-9),
                {k: v for k, v in record.items() if "/" in k},
            )
            s.epoch += 1
            s.position = 0
            s.epoch_loss_sum, s.epoch_loss_count = 0.0, 0
            self.save()
            for callback in self.epoch_callbacks:
                callback(self, record)
            if self._stopping(at_epoch_end=True):  # Ctrl-C or an epoch callback; saved
                return self._stopped()
        if self._out_of_time:
            self.notes.append(
                f"the time limit ({cfg.time_limit:g} s) ended training after step {s.step} of "
                f"{self.total_steps}; the learning-rate schedule followed the clock"
            )
        return "early_stopped" if s.stopped_early else "finished"

    def _stopping(self, at_epoch_end: bool = False) -> bool:
        """Whether to stop now; with several ranks, whether they all agree to.

        Inside an epoch the ranks agreed in the last step's gradient reduce (a request made
        after it counts at the next step); at an epoch's end they agree in a collective of
        their own, since no step follows.
        """
        if self.world.size == 1:
            return self._stop_requested
        if at_epoch_end:
            return distributed.any_rank(self._stop_requested, self.device)
        return self._stop_agreed

    def _stopped(self) -> str:
        """Say where the checkpoint of a requested stop went; the status of such a run."""
        self.progress.message(
            f"stopped at step {self.state.step}; checkpoint saved at {self.last_checkpoint}"
        )
        return "interrupted"

    def _install_sigint(self) -> Any:
        """First Ctrl-C: stop cleanly after this step with a checkpoint; second: abort."""
        if threading.current_thread() is not threading.main_thread():
            return None

        def handler(signum: int, frame: Any) -> None:
            if self._stop_requested:
                raise KeyboardInterrupt
            self._stop_requested = True

        return signal.signal(signal.SIGINT, handler)
