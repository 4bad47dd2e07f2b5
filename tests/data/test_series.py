import csv
import dataclasses

import numpy as np
import pytest
import torch

from fieldguide.data import SeriesData, load_data, starters
from fieldguide.data.base import chronological_bounds
from fieldguide.data.series import interpolate_missing, starter_file
from tests.data.helpers import load_starter


def _series(**changes) -> SeriesData:
    fields = {
        "name": "toy",
        "values": torch.arange(20, dtype=torch.float32)[:, None],
        "columns": ["v"],
        "train_end": 12,
        "val_end": 16,
        "season": 2,
        "context": 4,
        "horizon": 2,
        "description": "synthetic ramp",
        "synthetic": True,
    }
    return SeriesData(**{**fields, **changes})


def test_sunspots_is_the_yearly_series_cut_in_time():
    data = load_starter("sunspots")
    assert isinstance(data, SeriesData) and data.modality == "time-series"
    assert data.values.shape == (309, 1) and data.values.dtype == torch.float32
    assert data.columns == ["sunactivity"] and not data.synthetic
    assert data.values[0, 0].item() == 5.0 and data.values[-1, 0].item() == pytest.approx(2.9)
    assert (data.season, data.context, data.horizon) == (11, 44, 11)
    # 15 % of 309 is 46.35 -> 46 test years, 46 validation years before them.
    assert (data.train_end, data.val_end) == (309 - 92, 309 - 46)
    assert data.bounds("val") == (217, 263)
    assert "1700-2008" in data.description and data.input_shape == (44, 1)


def test_co2_fills_its_59_missing_weeks_by_linear_interpolation():
    data = load_starter("co2")
    assert data.values.shape == (2284, 1) and bool(torch.isfinite(data.values).all())
    assert (data.season, data.context, data.horizon) == (52, 156, 52)
    assert "59 missing weeks filled by linear interpolation" in data.description
    with open(starter_file("co2"), newline="") as f:
        raw = [row[1] for row in list(csv.reader(f))[1:]]
    missing = [i for i, v in enumerate(raw) if not v.strip()]
    assert len(missing) == 59
    known = [i for i, v in enumerate(raw) if v.strip()]
    assert torch.equal(data.values[known, 0], torch.tensor([float(raw[i]) for i in known]))
    # The first gap is a single week: the fill is the mean of its two neighbours.
    gap = missing[0]
    assert gap - 1 in known and gap + 1 in known
    expected = (float(raw[gap - 1]) + float(raw[gap + 1])) / 2
    assert data.values[gap, 0].item() == pytest.approx(expected, abs=1e-4)


def test_forecasting_starters_take_the_fractions_and_ignore_the_seed():
    data = load_starter("sunspots", val_fraction=0.1, test_fraction=0.2)
    assert (data.train_end, data.val_end) == (309 - 31 - 62, 309 - 62)
    again = load_data("sunspots", seed=5, val_fraction=0.1, test_fraction=0.2)
    assert (again.train_end, again.val_end) == (data.train_end, data.val_end)


def test_missing_statsmodels_names_the_install_command(monkeypatch):
    absent = dataclasses.replace(starters.STARTERS["sunspots"], modules=("fieldguide_no_pkg",))
    monkeypatch.setitem(starters.STARTERS, "sunspots", absent)
    with pytest.raises(ValueError, match="install it with: pip install --no-deps statsmodels"):
        load_data("sunspots")


def test_interpolate_missing_draws_straight_lines():
    filled, count = interpolate_missing(np.array([np.nan, 1.0, np.nan, 3.0, np.nan, np.nan, 6.0]))
    assert count == 4
    assert filled.tolist() == [1.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0]  # an edge takes its neighbour
    with pytest.raises(ValueError, match="no known value"):
        interpolate_missing(np.array([np.nan, np.nan]))


def test_chronological_bounds():
    assert chronological_bounds(100, 0.15, 0.15) == (70, 85)
    assert chronological_bounds(10, 0.1, 0.2) == (7, 8)
    with pytest.raises(ValueError, match="every split needs at least one step"):
        chronological_bounds(3, 0.1, 0.1)


def test_series_data_bounds_and_shapes():
    data = _series()
    assert [data.bounds(s) for s in ("train", "val", "test")] == [(0, 12), (12, 16), (16, 20)]
    assert (data.num_steps, data.num_columns, data.input_shape) == (20, 1, (4, 1))
    with pytest.raises(ValueError, match="split must be"):
        data.bounds("dev")


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"values": torch.zeros(20)}, r"values as a tensor of shape \(T, C\)"),
        ({"columns": ["a", "b"]}, "one name in columns per column"),
        ({"values": torch.full((20, 1), float("nan"))}, "expects finite values; got 20 NaN"),
        ({"train_end": 16}, "0 < train_end < val_end < T=20"),
        ({"val_end": 20}, "0 < train_end < val_end < T=20"),
        ({"season": 0}, "season of at least 1"),
        ({"horizon": 0}, "horizon of at least 1"),
    ],
)
def test_series_data_rejects_bad_fields(changes, match):
    with pytest.raises(ValueError, match=match):
        _series(**changes)
