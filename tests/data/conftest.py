"""Fixtures shared by the data tests."""

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread():
    # Several test processes may share the 2 cores; one thread each avoids spin-wait slowdowns.
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
