import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread_and_seed():
    # Small models on 2 shared cores run 10-50x slower when torch threads spin.
    torch.set_num_threads(1)
    torch.manual_seed(0)
    yield
