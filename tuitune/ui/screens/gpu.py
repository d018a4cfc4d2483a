"""GPU screen: every GPU's memory, load, temperature, power and processes, and the host, every 2 s."""

from __future__ import annotations

from typing import Any

from textual import work
from textual.app import ComposeResult
from textual.containers import Horizontal, VerticalScroll
from textual.markup import escape
from textual.screen import Screen
from textual.widgets import Footer, Header, Static

from tuitune.hardware import HardwareSnapshot
from tuitune.ui.widgets.gpu_card import GpuCard, HostPanel

REFRESH_S = 2.0


def no_gpu_text(reason: str | None) -> str:
    why = f"\n[dim]NVML says: {escape(str(reason))}[/]" if reason else ""
    return ("[b]No NVIDIA GPU found.[/b]" + why + "\n\n"
            "tuitune trains on the CPU instead: LoRA in float32 (QLoRA needs a CUDA GPU), "
            "best with small models — the embedded SmolLM2-135M takes a few seconds a step. "
            "To plan a run for a GPU machine, type its memory into the VRAM field of the "
            "Models screen (F3).")


class GpuScreen(Screen):
    """Live hardware view; the NVML query runs in a thread, never on the UI thread."""

    TITLE = "GPU"

    def __init__(self) -> None:
        super().__init__(id="gpu-screen")
        self.snapshot: HardwareSnapshot | None = None
        self._failed = False
        self._suspended = False  # away on another screen (the refresh timer paused)

    def compose(self) -> ComposeResult:
        yield Header(icon="▣")
        with Horizontal(id="gpu-body"):
            with VerticalScroll(id="gpu-list"):
                yield Static("Reading the GPUs…", id="gpu-summary")
            yield HostPanel(id="host-panel")
        yield Footer()

    # widgets
    @property
    def summary(self) -> Static:
        return self.query_one("#gpu-summary", Static)

    @property
    def gpu_list(self) -> VerticalScroll:
        return self.query_one("#gpu-list", VerticalScroll)

    @property
    def cards(self) -> list[GpuCard]:
        return list(self.gpu_list.query(GpuCard))

    @property
    def host_panel(self) -> HostPanel:
        return self.query_one(HostPanel)

    def on_mount(self) -> None:
        self.app.theme_changed_signal.subscribe(self, self._recolour)
        self.refresh_snapshot()
        self._timer = self.set_interval(REFRESH_S, self.refresh_snapshot)

    def _recolour(self, _theme: Any) -> None:
        if self.snapshot is not None:
            self.show_snapshot(self.snapshot)

    def on_screen_suspend(self) -> None:
        self._timer.pause()
        self._suspended = True

    def on_screen_resume(self) -> None:
        if self._suspended:  # back from another screen: fresh figures at once
            self._suspended = False
            self._timer.resume()
            self.refresh_snapshot()

    @work(thread=True, exclusive=True, group="gpu-refresh", name="GPU refresh", exit_on_error=False)
    def refresh_snapshot(self) -> None:
        try:
            snapshot = self.app.gpu_source.snapshot()
        except Exception as exc:  # the source should report errors itself; never let one kill the screen
            self.app.call_from_thread(self.show_error, exc)
            return
        self.app.call_from_thread(self.show_snapshot, snapshot)

    def show_error(self, exc: Exception) -> None:
        self.summary.update(f"[b red]Cannot read the hardware:[/] {escape(str(exc))}")
        if not self._failed:
            self._failed = True
            self.app.notify(f"Cannot read the hardware: {exc}", severity="error")

    def show_snapshot(self, snapshot: HardwareSnapshot) -> None:
        self.snapshot = snapshot
        self._failed = False
        gpus = list(snapshot.gpus or [])
        summary = self.summary
        box = self.gpu_list
        if gpus:
            summary.update(f"[b]{len(gpus)} GPU{'s' if len(gpus) != 1 else ''}[/b]   driver "
                           f"{snapshot.driver_version or 'n/a'}   CUDA {snapshot.cuda_version or 'n/a'}")
            summary.remove_class("no-gpu")
        else:
            summary.update(no_gpu_text(snapshot.nvml_error))
            summary.add_class("no-gpu")
        cards = self.cards
        if len(cards) != len(gpus):
            for card in cards:
                card.remove()
            box.mount_all([GpuCard(gpu) for gpu in gpus])
        else:
            for card, gpu in zip(cards, gpus):
                card.show(gpu)
        self.host_panel.show(snapshot.host, bool(gpus))
