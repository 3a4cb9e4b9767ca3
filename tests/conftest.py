"""Shared test set-up: offline, a private cache root, deterministic threads."""
import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("YOLO_OFFLINE", "1")


@pytest.fixture
def home(tmp_path, monkeypatch):
    """A private g2d-bench cache root for one test."""
    root = tmp_path / "cache"
    monkeypatch.setenv("G2D_BENCH_CACHE", str(root))
    return root
