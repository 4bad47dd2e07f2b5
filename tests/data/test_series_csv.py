"""The user's own time series CSV: detection, the time column, filling, gaps, the season."""

import numpy as np
import pytest
import torch

from fieldguide.api import train
from fieldguide.data import SeriesData, load_data
from fieldguide.data.base import ClassificationData
from fieldguide.data.csv_read import is_series_csv
from fieldguide.data.series import read_csv_columns, starter_file
from fieldguide.data.series_csv import guess_season, load_series_csv
from tests.data.helpers import load_starter, require_starter


def write(path, text):
    path.write_text(text)
    return path


@pytest.fixture
def co2_csv(tmp_path):
    """statsmodels' weekly Mauna Loa CO2 as a user would have it: ISO dates, empty cells."""
    require_starter("co2")
    table = read_csv_columns(starter_file("co2"))
    lines = [
        f"{d[:4]}-{d[4:6]}-{d[6:]},{v}" for d, v in zip(table["date"], table["co2"], strict=True)
    ]
    return write(tmp_path / "co2.csv", "date,co2\n" + "\n".join(lines) + "\n")


@pytest.fixture
def sunspots_csv(tmp_path):
    require_starter("sunspots")
    table = read_csv_columns(starter_file("sunspots"))
    rows = [
        f"{int(float(y))},{v}" for y, v in zip(table["YEAR"], table["SUNACTIVITY"], strict=True)
    ]
    return write(tmp_path / "sunspots.csv", "year,sunspots\n" + "\n".join(rows) + "\n")


def test_a_dated_csv_is_the_same_series_as_the_starter(co2_csv):
    data = load_data(str(co2_csv))
    starter = load_starter("co2")
    assert isinstance(data, SeriesData) and data.columns == ["co2"]
    assert torch.equal(data.values, starter.values)  # same interpolation of the 59 empty weeks
    assert (data.train_end, data.val_end) == (starter.train_end, starter.val_end)
    assert data.season == 52 and data.preprocessing["step"] == "1 week"
    assert data.preprocessing["filled_by_interpolation"] == {"co2": 59}
    assert data.preprocessing["gaps"] == 0 and (data.horizon, data.context) == (52, 208)


def test_numbered_steps_take_season_one_unless_given(sunspots_csv):
    data = load_data(str(sunspots_csv))
    assert (data.season, data.horizon) == (1, 1) and data.preprocessing["time_column"] == "year"
    given = load_data(str(sunspots_csv), season=11)
    assert (given.season, given.horizon, given.context) == (11, 11, 44)
    starter = load_starter("sunspots")
    assert torch.equal(given.values, starter.values)


def test_season_follows_the_step():
    assert guess_season(1 / 24) == (24, "1 hour")
    assert guess_season(1.0) == (7, "1 day")
    assert guess_season(31.0) == (12, "1 month")
    assert guess_season(365.0) == (1, "1 year")
    assert guess_season(3.0) == (1, "1 step") and guess_season(None) == (1, "1 step")


def test_a_table_with_a_label_or_text_is_not_a_series(tmp_path):
    rows = "\n".join(f"2024-01-{d:02d},{d % 2},{d * 1.5}" for d in range(1, 29))
    labelled = write(tmp_path / "labelled.csv", "date,label,x\n" + rows + "\n")
    assert not is_series_csv(labelled)
    assert isinstance(load_data(str(labelled)), ClassificationData)
    texts = write(tmp_path / "texts.csv", "date,v,w\n2024-01-01,1,a\n2024-01-02,2,b\n")
    assert not is_series_csv(texts)
    plain = write(tmp_path / "plain.csv", "a,b\n1,2\n3,4\n")
    with pytest.raises(ValueError, match="has no time column; name one date"):
        load_series_csv(plain)


def test_order_gaps_and_cells_are_checked(tmp_path):
    days = [f"2024-01-{d:02d}" for d in range(1, 31)]
    swapped = days[:5] + [days[6], days[5]] + days[7:]
    bad = write(
        tmp_path / "order.csv",
        "date,v\n" + "\n".join(f"{d},{i}" for i, d in enumerate(swapped)) + "\n",
    )
    with pytest.raises(ValueError, match="row 8 has time '2024-01-06', not after row 7's"):
        load_data(str(bad))
    gappy = days[:10] + days[13:]  # three days missing once
    data = load_data(
        str(
            write(
                tmp_path / "gaps.csv",
                "date,v\n" + "\n".join(f"{d},{np.sin(i)}" for i, d in enumerate(gappy)) + "\n",
            )
        ),
        task="forecasting",
    )
    assert data.preprocessing["gaps"] == 1
    text = write(
        tmp_path / "cell.csv",
        "date,v\n" + "\n".join(f"{d},{'x' if i == 3 else i}" for i, d in enumerate(days)) + "\n",
    )
    with pytest.raises(ValueError, match="row 5 has 'x' in value column 'v'; expected a number"):
        load_data(str(text), task="forecasting")
    with pytest.raises(ValueError, match="season applies to .csv files only"):
        load_data("digits", season=12)


def test_training_on_the_csv_reports_the_time_column(co2_csv, tmp_path):
    result = train("tcn", str(co2_csv), runs_dir=tmp_path, progress="quiet", max_steps=3)
    assert result.status == "finished" and "test/snaive_ratio" in result.test_metrics
    report = (result.run_dir / "report.md").read_text()
    assert "time column 'date', step 1 week, season 52" in report
    assert "filled 59 missing value(s) by linear interpolation" in report
