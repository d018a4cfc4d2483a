"""UI test fixtures: isolated user folders in UTC, the anyio backend, a fixture runs root."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from tests.ui.fakes import make_runs


@pytest.fixture
def anyio_backend() -> str:
    """Async tests run on asyncio through anyio's pytest plugin: mark them (or the module) `anyio`."""
    return "asyncio"


@pytest.fixture(autouse=True)
def _isolated_ui(tmp_path, monkeypatch):
    """Settings, themes and runs in tmp; UTC so dates in snapshots do not depend on the machine."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    monkeypatch.setenv("TUITUNE_RUNS", str(tmp_path / "runs"))
    monkeypatch.delenv("TUITUNE_FAKE_GPU", raising=False)
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    os.environ.pop("TZ", None)
    time.tzset()


@pytest.fixture
def runs_root(tmp_path) -> Path:
    root = tmp_path / "fixture-runs"
    root.mkdir()
    make_runs(root)
    return root
