import sys
from pathlib import Path

import pytest
import torch

# the plain reference implementation lives with the benchmarks
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
