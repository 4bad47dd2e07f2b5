"""Reading and sniffing CSV files without torch: rows, numbers, the target, time and text.

`fieldguide data inspect` and every CSV reader share these, so what inspect reports is what
training does: which column is the target, whether it is a class label or a quantity
(`decide_task`), whether the file is a time series (`find_time_column`, `is_series_csv`) or a
column of free text beside a label (`text_column`).
"""

from __future__ import annotations

import csv
import difflib
import math
import os
from datetime import datetime
from pathlib import Path

from fieldguide.train.config import OptionError

# Column names taken as the target when `target` is not given (compared case-insensitively).
TARGET_NAMES = ("target", "label", "class")
# Cells that mean "no value" in a numeric column; in a categorical one only "" does, since
# "none" or "?" may well be a category there.
MISSING = frozenset({"", "na", "n/a", "nan", "null", "none", "?"})
# A column whose values are at least this share numbers, but not all, is a numeric column with
# a typo rather than a categorical one.
NUMERIC_SHARE = 0.9
# A categorical column with more distinct train values than this, and than half the train rows,
# is an identifier or free text: one-hot encoding it would add a feature per row.
MAX_CATEGORIES = 100
# A numeric target with more distinct values than this (or any non-integer value) is a quantity
# to regress on; fewer integer values are class labels (ratings 1-5, digit codes).
MAX_INTEGER_CLASSES = 20
TASKS = ("auto", "classification", "regression")


def decide_task(values: list[str], task: str = "auto") -> tuple[str, str]:
    """("classification" or "regression", the reason in words) for target `values`.

    Args:
        values: The target column's cells, all non-empty.
        task: "auto" decides from the values; "classification" or "regression" is kept.
    """
    if task not in TASKS:
        raise ValueError(f"task must be one of {', '.join(TASKS)}; got {task!r}.")
    numbers = [parse_number(v) for v in values]
    distinct = len(set(values))
    if task != "auto":
        return task, f"asked for {task}"
    if any(n is None for n in numbers):
        return "classification", f"the target holds labels ({distinct} distinct values)"
    integers = all(float(n).is_integer() for n in numbers)
    # Class labels repeat: integers that are mostly distinct (linnerud's 20 weights, 17 of them
    # different) are a quantity even when there are few of them.
    if integers and distinct <= MAX_INTEGER_CLASSES and 2 * distinct <= len(values):
        return "classification", (
            f"the target holds {distinct} distinct integers, read as class labels"
        )
    kind = "integers" if integers else "numbers"
    return "regression", f"the target holds {distinct} distinct {kind}, a quantity"


def parse_number(value: str) -> float | None:
    """The finite float in `value`, or None when it holds no such number."""
    try:
        number = float(value)
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def read_csv_rows(path: Path) -> tuple[list[str], list[list[str]], list[int]]:
    """Header, data rows (stripped strings) and each row's line number in the file.

    Blank lines, and lines whose cells are all empty, are skipped.
    """
    try:
        with open(path, encoding="utf-8-sig", newline="") as f:  # -sig drops Excel's BOM
            reader = csv.reader(f)
            header, rows, lines = None, [], []
            for fields in reader:
                fields = [value.strip() for value in fields]
                if not any(fields):
                    continue
                if header is None:
                    header = fields
                    continue
                if len(fields) != len(header):
                    raise ValueError(
                        f"CSV file {path} row {reader.line_num} has {len(fields)} fields but the "
                        f"header has {len(header)}; every row needs one value per column."
                    )
                rows.append(fields)
                lines.append(reader.line_num)
    except UnicodeDecodeError:
        raise ValueError(_not_utf8(path)) from None
    except csv.Error as error:
        raise ValueError(f"CSV file {path} could not be parsed: {error}.") from error
    if header is None:
        raise ValueError(f"CSV file {path} is empty; expected a header row and data rows.")
    if len(header) == 1 and (sep := next((c for c in ";\t|" if c in header[0]), None)):
        # A single column is no layout any reader takes; a ';' in it is Excel's European CSV.
        raise ValueError(
            f"CSV file {path} line 1 has one column {header[0]!r}, which looks separated by "
            f"{sep!r}; expected comma-separated values, so save the file with ',' between cells."
        )
    if not rows:
        raise ValueError(f"CSV file {path} has a header but no data rows.")
    header = [name or f"column_{i + 1}" for i, name in enumerate(header)]
    duplicated = sorted({name for name in header if header.count(name) > 1})
    if duplicated:
        raise ValueError(
            f"CSV file {path} has duplicated column names {duplicated}; give each column "
            f"its own name."
        )
    return header, rows, lines


def _not_utf8(path: Path) -> str:
    """One sentence on the first byte of `path` that is not UTF-8: its line and offset."""
    data = path.read_bytes()
    try:
        data.decode("utf-8")  # the csv module decodes in chunks: offsets there are not the file's
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        return (
            f"CSV file {path} line {line} is not UTF-8: byte 0x{data[error.start]:02x} at byte "
            f"offset {error.start} ({error.reason}); save the file as UTF-8, for example "
            f"with `iconv -f latin1 -t utf-8`."
        )
    return f"CSV file {path} is not UTF-8 text; save it as UTF-8."


def find_target(header: list[str], target: str | None, path: Path) -> int:
    """Index of the target column: `target` if given, else the one named target/label/class."""
    columns = ", ".join(f"'{name}'" for name in header)
    if target is not None:
        if target in header:
            return header.index(target)
        close = difflib.get_close_matches(target, header, n=1, cutoff=0.6)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise OptionError(
            f"{{target}} expects a column of CSV file {path}, one of {columns}; "
            f"got '{target}'{hint}.",
            "target",
        )
    candidates = [i for i, name in enumerate(header) if name.lower() in TARGET_NAMES]
    if len(candidates) == 1:
        return candidates[0]
    found = "no column" if not candidates else "several columns"
    raise OptionError(
        f"CSV file {path} has {found} named target, label or class; name the target with "
        f"{{target}}, one of its columns: {columns}.",
        "target",
    )


TIME_NAMES = ("date", "time", "timestamp", "datetime", "ds", "year", "month", "week", "day")
TIME_NAMES += ("period",)


def timestamp(value: str) -> datetime | None:
    """The ISO date or date-time in `value`, or None."""
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None


def find_time_column(header: list[str], rows: list[list[str]]) -> int | None:
    """The index of the time column: by name, else a first column of ISO dates; else None."""
    for i, name in enumerate(header):
        if name.strip().lower() in TIME_NAMES:
            return i
    if rows and all(timestamp(row[0]) is not None for row in rows):
        return 0
    return None


def is_series_csv(path: str | os.PathLike[str], target: str | None = None) -> bool:
    """Whether the CSV reads as a time series: a time column, other columns numeric, no label.

    A column named target, label or class, or a `target` that is not numeric, makes it a table.
    """
    header, rows, _ = read_csv_rows(Path(path))
    t = find_time_column(header, rows)
    if t is None or len(header) < 2:
        return False
    names = [name.lower() for name in header]
    if target is None and any(name in TARGET_NAMES for name in names):
        return False
    for j in range(len(header)):
        if j == t:
            continue
        known = [v for v in (row[j] for row in rows) if v.lower() not in MISSING]
        numbers = sum(parse_number(v) is not None for v in known)
        # A few typos leave it a series, so that its reader names the bad cell.
        if not known or numbers < NUMERIC_SHARE * len(known):
            return False
    return target is None or target in header


def text_column(header: list[str], rows: list[list[str]], t: int) -> int | None:
    """The one feature column when it holds free text (mostly distinct, several words), else None.

    A CSV of a text and its label is text classification; a table whose columns happen to
    include text stays a table (and refuses the text column as too many categories).
    """
    columns = [j for j in range(len(header)) if j != t and any(row[j] for row in rows)]
    if len(columns) != 1:
        return None
    values = [row[columns[0]] for row in rows]
    if any(parse_number(v) is not None for v in values if v):
        return None
    words = sum(len(v.split()) for v in values) / len(values)
    return columns[0] if len(set(values)) > len(values) / 2 and words >= 3 else None
