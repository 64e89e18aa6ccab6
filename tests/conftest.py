import os

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)
    yield


# Tests measure afresh unless they test the result cache itself (they name their own folder).
os.environ["ZOO_CACHE"] = "off"
