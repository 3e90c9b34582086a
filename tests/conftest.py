import atexit
import importlib.util
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch

# The suite asserts fp32 results (same seed, same embedding; resumed runs and torchrun runs
# equal to one uninterrupted process): keep precision="auto" at fp32 on CPUs with native bf16
# too, in this process and in the subprocesses the tests start. Tests of the detection
# itself clear it.
os.environ["SIMCNE_CPU_BF16"] = "0"

# The decode-once cache (simcne.data.cache) of every read in the suite, and of the
# subprocesses it starts, goes to a folder of its own, removed at the end
_CACHE = tempfile.mkdtemp(prefix="simcne-test-cache-")
os.environ["SIMCNE_CACHE"] = _CACHE
atexit.register(shutil.rmtree, _CACHE, True)


ROOT = Path(__file__).resolve().parents[1]


def load_script(path: str):
    """The module of a script that is not in the package (``benchmarks/...``, ``docs/...``),
    ``path`` relative to the repository root, imported from its file."""
    spec = importlib.util.spec_from_file_location(Path(path).stem, ROOT / path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(autouse=True)
def _few_threads():
    # the suite runs on 2-core machines; keep each test's torch to the cores there are
    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="session")
def digits():
    """scikit-learn's digits as uint8 (N, 8, 8) images in 0-255 and their labels."""
    from sklearn.datasets import load_digits

    d = load_digits()
    return np.rint(d.images * (255.0 / 16.0)).astype(np.uint8), d.target


@pytest.fixture(scope="session")
def tiny(digits):
    """120 digits, 12 of each class."""
    X, y = digits
    idx = np.concatenate([np.flatnonzero(y == c)[:12] for c in range(10)])
    return X[idx], y[idx]


@pytest.fixture(scope="session")
def rgb():
    """64 random RGB images, (N, H, W, C) uint8, 12x12."""
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, size=(64, 12, 12, 3), dtype=np.uint8)


def quick(**kw):
    """A TSimCNE that trains in a second on tiny data, on the CPU.

    The device is pinned: the tests built on it compare fp32 results exactly (same seed,
    same embedding; resumed equal to uninterrupted), which a GPU in bf16 would not give.
    The GPU's own tests are in test_cuda.py.
    """
    from simcne import TSimCNE

    params = dict(backbone="resnet_small", total_epochs=[2, 1, 1], batch_size=32,
                  random_state=0, device="cpu")
    params.update(kw)
    return TSimCNE(**params)
