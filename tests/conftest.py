import os

import pytest

import transfer_lib  # noqa: F401  (pins the CPU kernels before torch loads)

import torch  # noqa: E402  isort: skip

# Two cores: keep intra-op threads modest so tests run predictably.
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield
