"""The user's own time series: a CSV file with a time column and one or more value columns.

Layout: a header row; one column of time stamps (named date, time, timestamp, datetime, ds,
year, month, week, day or period, or the first column when all of it parses as ISO dates), as
ISO dates/times (2024-01-31, 2024-01-31T08:00) or plain numbers (1990, 1991, ...); every other
column numeric. Rows must be in strictly increasing time (checked, one sentence naming the first
row out of order). The time step is the median gap between rows; gaps longer than 1.5 steps are
counted and reported, not filled. Empty or non-numeric cells (NA, nan, ...) of a value column are
filled by linear interpolation between their nearest known neighbours, counted per column.

The season is guessed from the step (hours 24, days 7, weeks 52, months 12, quarters 4; plain
numbers and years 1, which makes seasonal-naive the last value) and can be set with `season`.
Defaults: horizon = one season (or 1, and at most the validation and test parts' steps),
context = 4 horizons, fitted to the training part.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import numpy as np
import torch

from fieldguide.data.base import SeriesData, chronological_bounds, safe_name
from fieldguide.data.csv_read import (
    MISSING,
    find_time_column,
    parse_number,
    read_csv_rows,
    timestamp,
)
from fieldguide.data.series import interpolate_missing

# Step lengths (in days) and the season each suggests, tried in order; within 10 %.
SEASONS = ((1 / 24, 24, "1 hour"), (1, 7, "1 day"), (7, 52, "1 week"), (30.44, 12, "1 month"))
SEASONS += ((91.3, 4, "1 quarter"), (365.25, 1, "1 year"))


def _times(values: list[str], name: str, lines: list[int], path: Path) -> np.ndarray:
    """Time stamps as days (ISO dates) or plain numbers, float64, checked increasing."""
    dates = [timestamp(v) for v in values]
    if all(d is not None for d in dates):
        origin = dates[0]
        times = np.array([(d - origin) / timedelta(days=1) for d in dates], dtype=np.float64)
    else:
        numbers = [parse_number(v) for v in values]
        bad = next((i for i, n in enumerate(numbers) if n is None), None)
        if bad is not None:
            raise ValueError(
                f"CSV file {path} row {lines[bad]} has {values[bad]!r} in time column "
                f"'{name}'; expected an ISO date (2024-01-31) or a number in every row."
            )
        times = np.array(numbers, dtype=np.float64)
    steps = np.diff(times)
    if len(steps) and (steps <= 0).any():
        i = int(np.argmax(steps <= 0)) + 1
        raise ValueError(
            f"CSV file {path} row {lines[i]} has time {values[i]!r}, not after row "
            f"{lines[i - 1]}'s {values[i - 1]!r}; sort the rows by '{name}' (one row per time)."
        )
    return times


def guess_season(step_days: float | None) -> tuple[int, str]:
    """(season, the step in words) for a step in days; (1, "1 step") when it is no calendar unit."""
    if step_days is not None:
        for days, season, words in SEASONS:
            if abs(step_days - days) <= 0.1 * days:
                return season, words
    return 1, "1 step"


@dataclass
class SeriesRead:
    """A series CSV read and checked, before any cut: what training and predict share."""

    header: list[str]
    rows: list[list[str]]
    time_index: int
    times: np.ndarray  # days since the first row (ISO dates) or the numbers themselves
    columns: list[str]
    blocks: list[np.ndarray]  # one filled value column each, float64 (T,)
    filled: dict[str, int]  # cells filled by interpolation, per column


def read_series(path: str | os.PathLike[str], target: str | None = None) -> SeriesRead:
    """Read a series CSV: the time column checked increasing, value cells filled, no cut."""
    path = Path(path)
    header, rows, lines = read_csv_rows(path)
    t = find_time_column(header, rows)
    if t is None:
        raise ValueError(
            f"CSV file {path} has no time column; name one date, time, timestamp, ds or year, "
            f"or put ISO dates in the first column."
        )
    time_name = header[t]
    times = _times([row[t] for row in rows], time_name, lines, path)
    if target is not None and target not in header:
        raise ValueError(f"CSV file {path} has no column '{target}' to forecast.")
    columns = [target] if target is not None else [n for j, n in enumerate(header) if j != t]
    if time_name in columns:
        raise ValueError(f"'{time_name}' is the time column of CSV file {path}; forecast another.")

    # 1. Values: numbers, with empty or missing cells filled by linear interpolation.
    blocks, filled = [], {}
    for name in columns:
        j = header.index(name)
        raw = []
        for row, line in zip(rows, lines, strict=True):
            number = parse_number(row[j])
            if number is None and row[j].lower() not in MISSING:
                raise ValueError(
                    f"CSV file {path} row {line} has {row[j]!r} in value column '{name}'; "
                    f"expected a number (or an empty cell to fill)."
                )
            raw.append(math.nan if number is None else number)
        if all(math.isnan(v) for v in raw):
            raise ValueError(f"column '{name}' of CSV file {path} holds no number.")
        values, n = interpolate_missing(np.array(raw))
        blocks.append(values)
        if n:
            filled[name] = n

    return SeriesRead(header, rows, t, times, columns, blocks, filled)


def load_series_csv(
    path: str | os.PathLike[str],
    *,
    target: str | None = None,
    seed: int = 0,
    val_fraction: float = 0.15,
    test_fraction: float = 0.15,
    season: int | None = None,
) -> SeriesData:
    """Read the user's time series CSV, cut chronologically into train, validation and test.

    Args:
        path: The .csv file (see the module docstring for its layout).
        target: The column to forecast; by default every value column.
        seed: Not used: a chronological cut has nothing random.
        val_fraction: Share of the steps, just before the test steps, for validation.
        test_fraction: Share of the steps, at the end, for test.
        season: Seasonal period in steps; by default guessed from the time step.
    """
    del seed
    path = Path(path)
    read = read_series(path, target)
    header, rows, t, times, columns, blocks, filled = (
        read.header,
        read.rows,
        read.time_index,
        read.times,
        read.columns,
        read.blocks,
        read.filled,
    )
    time_name = header[t]

    # 2. The step, gaps and season.
    step = float(np.median(np.diff(times))) if len(times) > 1 else 1.0
    dated = timestamp(rows[0][t]) is not None
    guessed, step_words = guess_season(step if dated else None)
    season = season or guessed
    gaps = int((np.diff(times) > 1.5 * step).sum())

    # 3. The chronological cut and window sizes that fit the training part.
    values = np.stack(blocks, axis=1)  # (T, C)
    train_end, val_end = chronological_bounds(len(values), val_fraction, test_fraction)
    # One season ahead, but no more than the validation and test parts can hold.
    horizon = max(1, min(season, val_end - train_end, len(values) - val_end))
    context = max(4 * horizon, season, 8)
    context = max(season, min(context, train_end - horizon - 1))
    if train_end <= season or context + horizon > train_end:
        raise ValueError(
            f"the training part of '{path.name}' has {train_end} steps, too few for season "
            f"{season}, a context of {context} and a horizon of {horizon}; give more rows, a "
            f"smaller --season, or lower --val-fraction and --test-fraction."
        )
    first, last = rows[0][t], rows[-1][t]
    notes = {
        "reader": "csv-series",
        "columns": columns,
        "dated": dated,  # ISO dates (step in days) or plain numbers
        "step_value": step,
        "time_column": time_name,
        "first_step": first,
        "step": step_words if dated else f"{step:g}",
        "season": f"{season} ({'given' if season != guessed else 'guessed from the step'})",
        "gaps": gaps,
        "filled_by_interpolation": filled,
    }
    return SeriesData(
        name=safe_name(path.stem),
        values=torch.from_numpy(values.astype(np.float32)),
        columns=columns,
        train_end=train_end,
        val_end=val_end,
        season=season,
        context=context,
        horizon=horizon,
        description=(
            f"CSV '{path.name}': {len(values):,} steps from {first} to {last}, "
            f"{len(columns)} column(s) ({', '.join(columns)}), step {notes['step']}, "
            f"season {season}, {gaps} gap(s)"
        ),
        preprocessing=notes,
    )
