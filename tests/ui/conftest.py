"""UI test fixtures: isolated user folders in UTC, the anyio backend, a fixture runs root, snapshots taken
once the screen has settled."""

from __future__ import annotations

import inspect
import os
import time
from pathlib import Path

import pytest
from pytest_textual_snapshot import node_to_report_path

from tests.ui.fakes import make_runs
from tests.ui.pilot import settled
from tests.ui.snapshot_text import snapshot_difference


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


@pytest.fixture
def snap_compare(snap_compare, request):
    """pytest-textual-snapshot's snap_compare, shooting only once the screen has done its pending layout
    and painting (tests.ui.pilot.settled), whatever the test's own run_before waited for. A mismatch prints
    what changed as text, for the CI log."""
    def compare(app, press=(), terminal_size=(80, 24), run_before=None):
        async def before(pilot):
            if run_before is not None:
                result = run_before(pilot)
                if inspect.isawaitable(result):
                    await result
            await settled(pilot)
        matched = snap_compare(app, press=press, terminal_size=terminal_size, run_before=before)
        if not matched:
            print(snapshot_difference(node_to_report_path(request.node)))
        return matched
    return compare
