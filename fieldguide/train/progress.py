"""Progress output: a rich bar on a terminal, plain lines otherwise, or nothing.

Nothing goes quiet for long: the rich bar names the pass it is in ("validating", "testing")
and keeps its clock moving, and plain output, which may go to a log file, prints a line at
least every `heartbeat` seconds, inside long epochs and long evaluations alike.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

# Seconds plain output may stay silent while training or evaluating.
HEARTBEAT = 30.0


def _fmt(metrics: dict[str, float]) -> str:
    return "  ".join(f"{k} {v:.4f}" for k, v in metrics.items())


class Progress:
    """Reports epochs, steps and evaluation passes.

    Args:
        mode: "auto" (rich on a terminal, else plain), "rich", "plain" or "quiet".
        stream: where plain lines go; standard output by default.
        heartbeat: longest silence of plain output, in seconds.
    """

    def __init__(
        self, mode: str = "auto", stream: Any = None, heartbeat: float = HEARTBEAT
    ) -> None:
        if mode not in ("auto", "plain", "quiet", "rich"):
            raise ValueError(f"progress must be auto, rich, plain or quiet; got '{mode}'.")
        if not heartbeat > 0:
            raise ValueError(
                f"progress heartbeat must be a positive number of seconds; got {heartbeat}."
            )
        self.stream = stream or sys.stdout
        if mode == "auto":
            mode = "rich" if getattr(self.stream, "isatty", lambda: False)() else "plain"
        self.mode = mode
        self.heartbeat = heartbeat
        self._bar = None
        self._task = None
        self._total = 0
        self._last_line = time.monotonic()  # when plain output last printed a line
        self._lock = threading.Lock()

    def start(self, total_steps: int, done_steps: int) -> None:
        """Begin showing progress of `total_steps` optimizer steps, `done_steps` already done."""
        self._total = total_steps
        self._last_line = time.monotonic()
        if self.mode != "rich":
            return
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            SpinnerColumn,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )
        from rich.progress import Progress as RichProgress

        self._bar = RichProgress(
            SpinnerColumn(),
            TextColumn("epoch {task.fields[epoch]} {task.fields[phase]}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn(
                "loss {task.fields[loss]}  lr {task.fields[lr]}  {task.fields[speed]} samples/s"
            ),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            transient=False,
        )
        self._bar.start()
        self._task = self._bar.add_task(
            "train",
            total=total_steps,
            completed=done_steps,
            epoch="-",
            phase="",
            loss="-",
            lr="-",
            speed="-",
        )

    def step(self, step: int, epoch: int, loss: float | None, lr: float, speed: float) -> None:
        """Update the live bar; in plain mode, a line when `heartbeat` seconds passed silently."""
        shown = "-" if loss is None else f"{loss:.4f}"
        if self._bar is not None:
            self._bar.update(
                self._task,
                completed=step,
                epoch=epoch + 1,
                loss=shown,
                lr=f"{lr:.2e}",
                speed=f"{speed:,.0f}",
            )
        elif self.mode == "plain" and time.monotonic() - self._last_line >= self.heartbeat:
            total = f"/{self._total}" if self._total else ""
            self._print(
                f"  epoch {epoch + 1}  step {step}{total}  train/loss {shown}  lr {lr:.2e}  "
                f"{speed:,.0f} samples/s"
            )

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        """Show that a pass such as "validating" or "testing" is running, for its duration.

        The rich bar names the pass (its spinner and clock keep moving); without a live bar a
        rich status line does. Plain output prints "<name>: N s so far" every `heartbeat`
        seconds of a long pass.
        """
        if self._bar is not None:
            self._bar.update(self._task, phase=name)
            try:
                yield
            finally:
                self._bar.update(self._task, phase="")
            return
        if self.mode == "rich":
            from rich.console import Console

            with Console(file=self.stream).status(f"{name}..."):
                yield
            return
        if self.mode != "plain":
            yield
            return
        done = threading.Event()
        began = time.monotonic()

        def beat() -> None:
            while not done.wait(max(0.0, self._last_line + self.heartbeat - time.monotonic())):
                if time.monotonic() - self._last_line >= self.heartbeat:
                    self._print(f"  {name}: {time.monotonic() - began:.0f} s so far")

        thread = threading.Thread(target=beat, name=f"progress-{name}", daemon=True)
        thread.start()
        try:
            yield
        finally:
            done.set()
            thread.join()

    def epoch(
        self, epoch: int, epochs: int, step: int, lr: float, speed: float, metrics: dict[str, float]
    ) -> None:
        """One line per finished epoch (plain mode), printed above the bar in rich mode."""
        line = f"epoch {epoch + 1}/{epochs}  step {step}  {_fmt(metrics)}  "
        line += f"lr {lr:.2e}  {speed:,.0f} samples/s"
        if self.mode == "plain":
            self._print(line)
        elif self._bar is not None:
            self._bar.console.print(line)

    def message(self, text: str) -> None:
        """A line of its own, unless quiet."""
        if self.mode == "plain":
            self._print(text)
        elif self.mode == "rich":
            (self._bar.console.print if self._bar else print)(text)

    def stop(self) -> None:
        """Close the live bar."""
        if self._bar is not None:
            self._bar.stop()
            self._bar = None

    def _print(self, line: str) -> None:
        with self._lock:  # the heartbeat thread prints too
            print(line, file=self.stream, flush=True)
            self._last_line = time.monotonic()
