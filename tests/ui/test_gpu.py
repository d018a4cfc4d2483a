"""GPU screen: figures of each GPU, the host, "n/a" for unsupported values, no-GPU text, live refresh."""

from __future__ import annotations

import pytest
from textual.widgets import Static

from tuitune.ui.widgets.gpu_card import GpuCard, HostPanel

pytestmark = pytest.mark.anyio
SIZE = (120, 40)


def plain(widget: Static) -> str:
    """What a Static shows (markup or a Rich renderable), as plain text."""
    import io

    from rich.console import Console
    from rich.text import Text

    content = widget.content
    if isinstance(content, str):
        content = Text.from_markup(content)
    console = Console(width=100, file=io.StringIO(), record=True)
    console.print(content)
    return console.export_text()


async def wait_for_cards(pilot, screen, count: int) -> None:
    for _ in range(100):
        await pilot.pause(0.02)
        if len(screen.query(GpuCard)) == count and screen.snapshot is not None:
            return
    raise AssertionError("the GPU screen never showed the snapshot")


async def test_h200s_show_every_figure_and_their_processes(make_app):
    from tuitune.hardware import FakeGpuSource, GpuProcess

    source = FakeGpuSource.h200(count=2, used_gb=12.5, utilization_pct=87.0,
                                processes=[GpuProcess(4242, "python", 11.9)])
    snapshot = source.snapshot()
    app = make_app(gpu_source=source)
    async with app.run_test(size=SIZE) as pilot:
        screen = app.screen
        await wait_for_cards(pilot, screen, 2)
        for card, gpu in zip(screen.query(GpuCard), snapshot.gpus):
            shown = plain(card)
            assert f"GPU {gpu.index}" in card.border_title and gpu.name in card.border_title
            for figure in ("12.5 / 140.4 GiB", "free 127.9 GiB", "87 %", "35 °C", "78 / 700 W", "Compute 9.0",
                           "4242 python (11.9 GiB)"):
                assert figure in shown, figure
        summary = plain(screen.query_one("#gpu-summary", Static))
        assert "2 GPUs" in summary and snapshot.driver_version in summary and snapshot.cuda_version in summary
        host = plain(screen.query_one(HostPanel))
        for figure in ("Fake CPU @ 3.0GHz", "16", "12 %", "31.4/125.7 GiB", "211 GiB free", "CUDA: QLoRA, LoRA"):
            assert figure in host, figure


async def test_no_gpu_says_so_and_shows_the_cpu_path(make_app, no_gpu):
    app = make_app(gpu_source=no_gpu)
    async with app.run_test(size=SIZE) as pilot:
        screen = app.screen
        await wait_for_cards(pilot, screen, 0)
        summary = plain(screen.query_one("#gpu-summary", Static))
        assert "No NVIDIA GPU found" in summary and "CPU" in summary
        assert "CPU: LoRA" in plain(screen.query_one(HostPanel))


class SparseSource:
    """A GPU whose driver reports almost nothing; each snapshot uses a bit more memory."""

    def __init__(self) -> None:
        self.calls = 0

    def snapshot(self):
        from tuitune import hardware

        self.calls += 1
        gpu = hardware.GpuInfo(index=0, name="Odd GPU", uuid="GPU-odd", memory_total_gb=16.0,
                               memory_used_gb=float(self.calls), memory_free_gb=16.0 - self.calls,
                               utilization_pct=None, temperature_c=None, power_w=None, power_limit_w=None,
                               compute_capability=None, processes=[])
        host = hardware.HostInfo(cpu_name=None, cpu_count=None, cpu_percent=None, ram_total_gb=None,
                                 ram_used_gb=None, disk_total_gb=None, disk_free_gb=None)
        return hardware.HardwareSnapshot(gpus=[gpu], host=host, driver_version=None, cuda_version=None,
                                         nvml_error=None)


async def test_unsupported_values_show_na_and_the_screen_refreshes(make_app, monkeypatch):
    import tuitune.ui.screens.gpu as gpu_screen

    monkeypatch.setattr(gpu_screen, "REFRESH_S", 0.2)
    source = SparseSource()
    app = make_app(gpu_source=source)
    async with app.run_test(size=SIZE) as pilot:
        screen = app.screen
        await wait_for_cards(pilot, screen, 1)
        first = plain(screen.query(GpuCard).first())
        assert first.count("n/a") >= 4  # utilisation, temperature, power, compute
        seen = source.calls
        for _ in range(100):
            await pilot.pause(0.05)
            if source.calls >= seen + 2:
                break
        assert source.calls >= seen + 2  # refreshed by the timer, off the UI thread
        await pilot.pause(0.1)
        assert plain(screen.query(GpuCard).first()) != first  # the memory figures moved
        assert "n/a" in plain(screen.query_one("#gpu-summary", Static))


async def test_a_failing_source_is_reported_not_fatal(make_app):
    class Broken:
        def snapshot(self):
            raise OSError("NVML went away")

    app = make_app(gpu_source=Broken())
    async with app.run_test(size=SIZE) as pilot:
        for _ in range(50):
            await pilot.pause(0.02)
            if "NVML went away" in plain(app.screen.query_one("#gpu-summary", Static)):
                break
        assert "NVML went away" in plain(app.screen.query_one("#gpu-summary", Static))
        assert app.is_running
