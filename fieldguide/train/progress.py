"""Progress output: a rich bar on a terminal, one plain line per epoch otherwise, or nothing."""

from __future__ import annotations

import sys
from typing import Any


def _fmt(metrics: dict[str, float]) -> str:
    return "  ".join(f"{k} {v:.4f}" for k, v in metrics.items())


class Progress:
    """Reports epochs and steps; `mode` is "auto" (rich on a terminal), "plain" or "quiet"."""

    def __init__(self, mode: str = "auto", stream: Any = None) -> None:
        if mode not in ("auto", "plain", "quiet", "rich"):
            raise ValueError(f"progress must be auto, rich, plain or quiet; got '{mode}'.")
        self.stream = stream or sys.stdout
        if mode == "auto":
            mode = "rich" if getattr(self.stream, "isatty", lambda: False)() else "plain"
        self.mode = mode
        self._bar = None
        self._task = None

    def start(self, total_steps: int, done_steps: int) -> None:
        """Begin showing progress of `total_steps` optimizer steps, `done_steps` already done."""
        if self.mode != "rich":
            return
        from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeRemainingColumn
        from rich.progress import Progress as RichProgress

        self._bar = RichProgress(
            TextColumn("epoch {task.fields[epoch]}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn(
                "loss {task.fields[loss]}  lr {task.fields[lr]}  {task.fields[speed]} samples/s"
            ),
            TimeRemainingColumn(),
            transient=False,
        )
        self._bar.start()
        self._task = self._bar.add_task(
            "train", total=total_steps, completed=done_steps, epoch="-", loss="-", lr="-", speed="-"
        )

    def step(self, step: int, epoch: int, loss: float | None, lr: float, speed: float) -> None:
        """Update the live bar (rich mode only)."""
        if self._bar is not None:
            self._bar.update(
                self._task,
                completed=step,
                epoch=epoch + 1,
                loss="-" if loss is None else f"{loss:.4f}",
                lr=f"{lr:.2e}",
                speed=f"{speed:,.0f}",
            )

    def epoch(
        self, epoch: int, epochs: int, step: int, lr: float, speed: float, metrics: dict[str, float]
    ) -> None:
        """One line per finished epoch (plain mode), printed above the bar in rich mode."""
        line = f"epoch {epoch + 1}/{epochs}  step {step}  {_fmt(metrics)}  "
        line += f"lr {lr:.2e}  {speed:,.0f} samples/s"
        if self.mode == "plain":
            print(line, file=self.stream, flush=True)
        elif self._bar is not None:
            self._bar.console.print(line)

    def message(self, text: str) -> None:
        """A line of its own, unless quiet."""
        if self.mode == "plain":
            print(text, file=self.stream, flush=True)
        elif self.mode == "rich":
            (self._bar.console.print if self._bar else print)(text)

    def stop(self) -> None:
        """Close the live bar."""
        if self._bar is not None:
            self._bar.stop()
            self._bar = None
