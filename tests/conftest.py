"""Shared test set-up: offline, a private cache root, deterministic threads."""
import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("YOLO_OFFLINE", "1")

# pyproject runs the suite on two pytest-xdist workers (`-n 2`, one per core of the CI machine). Each
# worker, and every process it starts, uses one torch/OpenMP thread: two workers of two threads each
# oversubscribe two cores (measured: 18 CPU-minutes instead of 11 for the same suite). Thread count
# changes float summation order only; results/reference/tolerances.yaml bands absorb 1 vs 2 threads.
if os.environ.get("PYTEST_XDIST_WORKER"):
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = "1"
    import torch

    torch.set_num_threads(1)

#: the longest test first, so that one worker runs it while the other runs the rest
FIRST = "test_regress.py::test_the_smoke_grid_reproduces_its_reference"


def pytest_collection_modifyitems(config, items):
    items.sort(key=lambda item: not item.nodeid.endswith(FIRST))


@pytest.fixture
def home(tmp_path, monkeypatch):
    """A private g2d-bench cache root for one test."""
    root = tmp_path / "cache"
    monkeypatch.setenv("G2D_BENCH_CACHE", str(root))
    return root
