"""Snapshots of screens A owns at 120×40, with fixed data (fake GPU, fixture runs, UTC, isolated folders).

Update after an intended change with `pytest tests/ui/test_snapshots.py --snapshot-update` and look at
the SVGs in tests/ui/__snapshots__/ before committing them.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest

from tests.ui.fakes import make_runs
from tests.ui.pilot import SIZE, make_app, wait_until

# A fixed folder: the runs root is printed on the Runs screen, so it must not vary between runs.
SNAPSHOT_RUNS = Path(tempfile.gettempdir()) / "tuitune-snapshot-runs"


def fixed_hardware(with_gpu: bool):
    """A GPU source spelled out here, so changes to the hardware module's fakes do not move the pixels."""
    from tuitune.hardware import FakeGpuSource, GpuInfo, GpuProcess, HardwareSnapshot, HostInfo

    host = HostInfo(cpu_name="AMD EPYC 9654 96-Core", cpu_count=16, cpu_percent=23.0, ram_total_gb=125.7,
                    ram_used_gb=40.2, disk_total_gb=458.0, disk_free_gb=211.3)
    if not with_gpu:
        return FakeGpuSource(HardwareSnapshot(gpus=[], host=host, driver_version=None, cuda_version=None,
                                              nvml_error="No NVIDIA driver found (NVML library not found)"))
    gpu = GpuInfo(index=0, name="NVIDIA H200", uuid="GPU-0", memory_total_gb=140.4, memory_used_gb=38.6,
                  memory_free_gb=101.8, utilization_pct=93.0, temperature_c=61.0, power_w=512.0,
                  power_limit_w=700.0, compute_capability="9.0",
                  processes=[GpuProcess(pid=4242, name="python", used_gb=38.1)])
    return FakeGpuSource(HardwareSnapshot(gpus=[gpu], host=host, driver_version="580.159.04",
                                          cuda_version="13.0", nvml_error=None))


def fixed_fits(spec, query):
    """Fit cells from a fixed rule, so the snapshots show the layout, not the estimator's calibration
    (test_models.py checks the cells against the real estimator)."""
    from tuitune.ui.screens.models import FitCell

    cells = {}
    for method, per_b in (("qlora", 0.7), ("lora", 2.1), ("full", 16.0)):
        total = round(spec.params_b * per_b + 0.5, 1)
        status = "does not fit" if total > query.free_gb else "tight" if total > 0.9 * query.free_gb else "fits"
        largest = (2, min(4096, spec.context)) if status == "fits" else None
        cells[method] = FitCell(status, total, largest, {"weights": round(total * 0.6, 1),
                                                         "activations": round(total * 0.3, 1),
                                                         "overhead": round(total * 0.1, 1)})
    return cells


@pytest.fixture
def stable_fit(monkeypatch):
    import tuitune.ui.screens.models as models_screen

    monkeypatch.setattr(models_screen, "compute_fits", fixed_fits)


def gpu_shown(app):
    """Before the shot: the GPU screen holds its snapshot."""
    async def ready(pilot):
        await wait_until(pilot, lambda: app.screen.snapshot is not None, 5, "the GPU snapshot")
        await pilot.pause(0.05)

    return ready


def models_shown(app):
    """Before the shot: the Models screen (f3) shows the fit table for the fixed GPU's free memory."""
    async def ready(pilot):
        await pilot.press("f3")
        await wait_until(pilot, lambda: app.screen.fits and app.screen.query_values is not None
                         and app.screen.query_values.free_gb == 101.8
                         and not any(w.is_running for w in app.screen.workers), 5, "the fit table")
        await pilot.pause(0.05)

    return ready


@pytest.fixture
def snapshot_runs() -> Path:
    shutil.rmtree(SNAPSHOT_RUNS, ignore_errors=True)
    SNAPSHOT_RUNS.mkdir(parents=True)
    make_runs(SNAPSHOT_RUNS)
    yield SNAPSHOT_RUNS
    shutil.rmtree(SNAPSHOT_RUNS, ignore_errors=True)


def test_gpu_h200(snap_compare, tmp_path):
    app = make_app(tmp_path, gpu_source=fixed_hardware(True))

    assert snap_compare(app, terminal_size=SIZE, run_before=gpu_shown(app))


def test_gpu_none(snap_compare, tmp_path):
    app = make_app(tmp_path, gpu_source=fixed_hardware(False))

    assert snap_compare(app, terminal_size=SIZE, run_before=gpu_shown(app))


def test_models(snap_compare, tmp_path, stable_fit):
    app = make_app(tmp_path, gpu_source=fixed_hardware(True))

    assert snap_compare(app, terminal_size=SIZE, run_before=models_shown(app))


def test_runs(snap_compare, tmp_path, snapshot_runs):
    app = make_app(tmp_path, runs_root=snapshot_runs)

    async def ready(pilot):
        await pilot.press("f7")
        await wait_until(pilot, lambda: app.screen.table.row_count == 3, 5, "the runs")
        await pilot.pause(0.05)

    assert snap_compare(app, terminal_size=SIZE, run_before=ready)


def test_help(snap_compare, tmp_path):
    app = make_app(tmp_path)

    async def ready(pilot):
        await pilot.press("f1")
        await pilot.pause()

    assert snap_compare(app, terminal_size=SIZE, run_before=ready)


def test_light_theme_models(snap_compare, tmp_path, stable_fit):
    app = make_app(tmp_path, gpu_source=fixed_hardware(True), theme="tuitune-light", remember_theme=False)

    assert snap_compare(app, terminal_size=SIZE, run_before=models_shown(app))
