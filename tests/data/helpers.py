"""Shared by data and task tests: real starter data, skipped only outside CI when missing."""

import os

import pytest

from fieldguide.data import load_data
from fieldguide.data.starters import STARTERS, is_present


def require_starter(name: str) -> None:
    """Skip the test when starter `name` is not installed here; in CI, fail instead."""
    if is_present(STARTERS[name]):
        return
    hint = f"starter '{name}' is not installed; {STARTERS[name].install}"
    if os.environ.get("CI") == "true":
        pytest.fail(f"{hint} (scripts/starter-data.sh installs it in CI)")
    pytest.skip(hint)


def load_starter(name: str, **kwargs):
    """`load_data(name)` after `require_starter(name)`."""
    require_starter(name)
    return load_data(name, **kwargs)


def write_rows(path, header, rows):
    """Write `rows` under `header` as a CSV file at `path`, and return the path."""
    import csv

    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    return path
