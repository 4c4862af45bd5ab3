"""Shared fixtures: tiny checkpoints in the published layouts, and a search path cut off from this machine.

Every test runs with ``AXS_WEIGHTS_DIR`` unset, the project's ``weights/hf`` and the Hugging Face cache
pointed at empty folders, and the Hub offline, so only the files a test puts in place can be found.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest
import torch

COMPILE_CACHE = Path(tempfile.mkdtemp(prefix="axs-tests-compile-cache-"))
"""torch.compile's caches (TorchInductor's, Triton's) for this session and the processes its tests start,
removed at the end. Set here, before anything imports ``torch._dynamo`` (``tiny_weights`` does), which
creates the cache folder on import (``torchinductor_<user>/`` in the system's temp folder otherwise).
Inductor's precompiled C++ headers (150 MB) always go to that system folder, whatever the cache folder, so
tests compile without them."""
os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(COMPILE_CACHE / "inductor")
os.environ["TRITON_CACHE_DIR"] = str(COMPILE_CACHE / "triton")
os.environ["TORCHINDUCTOR_CPP_CACHE_PRECOMPILE_HEADERS"] = "0"


def pytest_unconfigure(config) -> None:
    shutil.rmtree(COMPILE_CACHE, ignore_errors=True)


@pytest.fixture(scope="session")
def tiny_weights(tmp_path_factory) -> Path:
    """A weights folder holding every known model, tiny, in the plain layout. Treat it as read-only."""
    from axs_lib.demo.tiny_weights import write_tiny_weights

    root = tmp_path_factory.mktemp("weights")
    write_tiny_weights(root)
    return root


@pytest.fixture
def weights_copy(tiny_weights, tmp_path) -> Path:
    """A private, writable copy of :func:`tiny_weights` for tests that change files."""
    return Path(shutil.copytree(tiny_weights, tmp_path / "weights"))


@pytest.fixture(autouse=True)
def isolated_search(tmp_path, monkeypatch):
    """Search only places the test sets up; no network."""
    from axs_lib.weights import discovery

    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.delenv("AXS_WEIGHTS_DIR", raising=False)
    monkeypatch.setenv("HF_HUB_CACHE", str(empty / "hf-cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(discovery, "DEFAULT_WEIGHTS_DIR", empty / "weights-hf")
    return empty


@pytest.fixture
def work(tmp_path) -> Path:
    """An empty folder for one test's files."""
    folder = tmp_path / "work"
    folder.mkdir()
    return folder


@pytest.fixture
def use_weights(monkeypatch):
    """Point ``AXS_WEIGHTS_DIR`` at a folder: ``use_weights(path)``."""

    def point_at(root: Path) -> Path:
        monkeypatch.setenv("AXS_WEIGHTS_DIR", str(root))
        return root

    return point_at


@pytest.fixture(autouse=True)
def seeded():
    torch.manual_seed(0)
