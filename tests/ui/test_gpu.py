"""GPU screen: figures of each GPU, the host, "n/a" for unsupported values, no-GPU text, live refresh."""

from __future__ import annotations

import pytest

from tests.ui.pilot import SIZE, make_app, text_of, wait_until
from tuitune import hardware
from tuitune.hardware import FakeGpuSource, GpuProcess

pytestmark = pytest.mark.anyio


async def wait_for_cards(pilot, screen, count: int) -> None:
    await wait_until(pilot, lambda: len(screen.cards) == count and screen.snapshot is not None, timeout=5,
                     what="the GPU snapshot")


async def test_h200s_show_every_figure_and_their_processes(tmp_path):
    source = FakeGpuSource.h200(count=2, used_gb=12.5, utilization_pct=87.0,
                                processes=[GpuProcess(4242, "python", 11.9)])
    snapshot = source.snapshot()
    app = make_app(tmp_path, gpu_source=source)
    async with app.run_test(size=SIZE) as pilot:
        screen = app.screen
        await wait_for_cards(pilot, screen, 2)
        for card, gpu in zip(screen.cards, snapshot.gpus):
            shown = text_of(card)
            assert f"GPU {gpu.index}" in card.border_title and gpu.name in card.border_title
            for figure in ("12.5 / 140.4 GiB", "free 127.9 GiB", "87 %", "35 °C", "78 / 700 W", "Compute 9.0",
                           "4242 python (11.9 GiB)"):
                assert figure in shown, figure
        summary = text_of(screen.summary)
        assert "2 GPUs" in summary and snapshot.driver_version in summary and snapshot.cuda_version in summary
        host = text_of(screen.host_panel)
        for figure in ("Fake CPU @ 3.0GHz", "16", "12 %", "31.4/125.7 GiB", "211 GiB free", "CUDA: QLoRA, LoRA"):
            assert figure in host, figure


async def test_no_gpu_says_so_and_shows_the_cpu_path(tmp_path):
    app = make_app(tmp_path, gpu_source=FakeGpuSource.none())
    async with app.run_test(size=SIZE) as pilot:
        screen = app.screen
        await wait_for_cards(pilot, screen, 0)
        summary = text_of(screen.summary)
        assert "No NVIDIA GPU found" in summary and "CPU" in summary
        assert "CPU: LoRA" in text_of(screen.host_panel)


class SparseSource:
    """A GPU whose driver reports almost nothing; each snapshot uses a bit more memory."""

    def __init__(self) -> None:
        self.calls = 0

    def snapshot(self) -> hardware.HardwareSnapshot:
        self.calls += 1
        gpu = hardware.GpuInfo(index=0, name="Odd GPU", uuid="GPU-odd", memory_total_gb=16.0,
                               memory_used_gb=float(self.calls), memory_free_gb=16.0 - self.calls,
                               utilization_pct=None, temperature_c=None, power_w=None, power_limit_w=None,
                               compute_capability=None, processes=[])
        host = hardware.HostInfo(cpu_name=None, cpu_count=None, cpu_percent=None, ram_total_gb=None,
                                 ram_used_gb=None, disk_total_gb=None, disk_free_gb=None)
        return hardware.HardwareSnapshot(gpus=[gpu], host=host, driver_version=None, cuda_version=None,
                                         nvml_error=None)


async def test_unsupported_values_show_na_and_the_screen_refreshes(tmp_path, monkeypatch):
    import tuitune.ui.screens.gpu as gpu_screen

    monkeypatch.setattr(gpu_screen, "REFRESH_S", 0.2)
    source = SparseSource()
    app = make_app(tmp_path, gpu_source=source)
    async with app.run_test(size=SIZE) as pilot:
        screen = app.screen
        await wait_for_cards(pilot, screen, 1)
        first = text_of(screen.cards[0])
        assert first.count("n/a") >= 4  # utilisation, temperature, power, compute
        seen = source.calls
        await wait_until(pilot, lambda: source.calls >= seen + 2, timeout=5,
                         what="two refreshes by the timer, off the UI thread")
        await pilot.pause(0.1)
        assert text_of(screen.cards[0]) != first  # the memory figures moved
        assert "n/a" in text_of(screen.summary)


async def test_a_failing_source_is_reported_not_fatal(tmp_path):
    class Broken:
        def snapshot(self):
            raise OSError("NVML went away")

    app = make_app(tmp_path, gpu_source=Broken())
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: "NVML went away" in text_of(app.screen.summary), timeout=2)
        assert app.is_running
