import pytest
import torch


@pytest.fixture(autouse=True)
def _single_thread():
    # One intra-op thread keeps CPU tests fast on shared runners and float reductions repeatable.
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
