"""Snapshots of screens A owns at 120×40, with fixed data (fake GPU, fixture runs, UTC, isolated folders).

Update after an intended change with `pytest tests/ui/test_snapshots.py --snapshot-update` and look at
the SVGs in tests/ui/__snapshots__/ before committing them.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest
from textual.widgets import DataTable

from uifakes import make_runs

SIZE = (120, 40)
# A fixed folder: the runs root is printed on the Runs screen, so it must not vary between runs.
SNAPSHOT_RUNS = Path(tempfile.gettempdir()) / "tuitune-snapshot-runs"


async def until(pilot, predicate, what: str) -> None:
    for _ in range(200):
        await pilot.pause(0.02)
        if predicate():
            await pilot.pause(0.05)
            return
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def snapshot_runs() -> Path:
    shutil.rmtree(SNAPSHOT_RUNS, ignore_errors=True)
    SNAPSHOT_RUNS.mkdir(parents=True)
    make_runs(SNAPSHOT_RUNS)
    yield SNAPSHOT_RUNS
    shutil.rmtree(SNAPSHOT_RUNS, ignore_errors=True)


def test_gpu_h200(snap_compare, make_app):
    app = make_app()

    async def ready(pilot):
        await until(pilot, lambda: app.screen.snapshot is not None, "the GPU snapshot")

    assert snap_compare(app, terminal_size=SIZE, run_before=ready)


def test_gpu_none(snap_compare, make_app, no_gpu):
    app = make_app(gpu_source=no_gpu)

    async def ready(pilot):
        await until(pilot, lambda: app.screen.snapshot is not None, "the GPU snapshot")

    assert snap_compare(app, terminal_size=SIZE, run_before=ready)


def test_models(snap_compare, make_app):
    app = make_app()

    async def ready(pilot):
        await pilot.press("f3")
        await until(pilot, lambda: app.screen.fits and app.screen.query_values is not None
                    and app.screen.query_values.free_gb > 100
                    and not any(w.is_running for w in app.screen.workers), "the fit table")

    assert snap_compare(app, terminal_size=SIZE, run_before=ready)


def test_runs(snap_compare, make_app, snapshot_runs):
    app = make_app(runs_root=snapshot_runs)

    async def ready(pilot):
        await pilot.press("f7")
        await until(pilot, lambda: app.screen.query_one("#runs-table", DataTable).row_count == 3, "the runs")

    assert snap_compare(app, terminal_size=SIZE, run_before=ready)


def test_help(snap_compare, make_app):
    app = make_app()

    async def ready(pilot):
        await pilot.press("f1")
        await pilot.pause()

    assert snap_compare(app, terminal_size=SIZE, run_before=ready)


def test_light_theme_models(snap_compare, make_app):
    app = make_app(theme="tuitune-light", remember_theme=False)

    async def ready(pilot):
        await pilot.press("f3")
        await until(pilot, lambda: app.screen.fits and app.screen.query_values is not None
                    and app.screen.query_values.free_gb > 100
                    and not any(w.is_running for w in app.screen.workers), "the fit table")

    assert snap_compare(app, terminal_size=SIZE, run_before=ready)
