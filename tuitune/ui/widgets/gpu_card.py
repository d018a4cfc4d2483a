"""One GPU's live figures (GpuCard) and the host's CPU/RAM/disk (HostPanel), from a HardwareSnapshot."""

from __future__ import annotations

from typing import Any

from rich.table import Table
from rich.text import Text
from textual.widgets import Static

NA = "n/a"
BAR_WIDTH = 12


def num(value: float | None, fmt: str = "{:.1f}", unit: str = "") -> str:
    """A figure, or "n/a" when the driver does not report it."""
    if value is None:
        return NA
    return fmt.format(value) + unit


DEFAULT_COLORS = {"fits": "green", "tight": "yellow", "no_fit": "red", "muted": "grey50", "loss": "cyan"}


def bar(fraction: float | None, width: int = BAR_WIDTH, colors: dict[str, str] | None = None, *,
        load: bool = False) -> Text:
    """A gauge. Capacity (memory, disk) turns from the theme's success colour to warning above 70 % and
    error above 90 %; a load gauge (utilisation) is always the primary colour: busy is good."""
    colors = colors or DEFAULT_COLORS
    if fraction is None:
        return Text("·" * width, style=colors["muted"])
    fraction = min(1.0, max(0.0, fraction))
    filled = round(fraction * width)
    role = "loss" if load else "no_fit" if fraction > 0.9 else "tight" if fraction > 0.7 else "fits"
    return Text("█" * filled, style=colors[role]) + Text("░" * (width - filled), style=colors["muted"])


def _colors(widget: Static) -> dict[str, str]:
    from tuitune.ui.widgets.theme_colors import theme_colors

    try:
        return theme_colors(widget.app)
    except Exception:  # not attached to a running app (e.g. rendered on its own)
        return DEFAULT_COLORS


def _grid() -> Table:
    grid = Table.grid(padding=(0, 1))
    grid.add_column(style="bold", no_wrap=True)
    grid.add_column()
    return grid


def _ratio(used: float | None, total: float | None) -> float | None:
    if used is None or not total:
        return None
    return used / total


class GpuCard(Static):
    """Name, memory used/free/total, utilisation, temperature, power, compute capability, processes."""

    def __init__(self, gpu: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.add_class("card")
        self.show(gpu)

    def show(self, gpu: Any) -> None:
        self.border_title = f"GPU {gpu.index} · {gpu.name or 'unknown'}"
        colors = _colors(self)
        grid = _grid()
        memory = Text.assemble(bar(_ratio(gpu.memory_used_gb, gpu.memory_total_gb), colors=colors), " ",
                               f"{num(gpu.memory_used_gb)} / {num(gpu.memory_total_gb)} GiB")
        grid.add_row("Memory", memory)
        grid.add_row("", f"used {num(gpu.memory_used_gb)} · free {num(gpu.memory_free_gb)} GiB")
        util = gpu.utilization_pct
        grid.add_row("Util", Text.assemble(bar(None if util is None else util / 100, colors=colors, load=True), " ", num(util, "{:.0f}", " %")))
        grid.add_row("Temp", num(gpu.temperature_c, "{:.0f}", " °C"))
        grid.add_row("Power", f"{num(gpu.power_w, '{:.0f}')} / {num(gpu.power_limit_w, '{:.0f}')} W")
        grid.add_row("Compute", str(gpu.compute_capability or NA))
        processes = list(gpu.processes or [])
        if not processes:
            grid.add_row("Procs", Text("none", style="dim"))
        for i, proc in enumerate(processes[:8]):
            grid.add_row("Procs" if i == 0 else "",
                         f"{proc.pid} {proc.name or '?'} ({num(proc.used_gb)} GiB)")
        if len(processes) > 8:
            grid.add_row("", f"… {len(processes) - 8} more")
        self.update(grid)


class HostPanel(Static):
    """CPU, RAM and disk of the machine, and which training path tuitune will take."""

    def show(self, host: Any, has_gpu: bool) -> None:
        self.add_class("card")
        self.border_title = "Host"
        colors = _colors(self)
        grid = _grid()
        if host is None:
            grid.add_row("Host", NA)
        else:
            grid.add_row("CPU", Text(str(host.cpu_name or NA), overflow="ellipsis", no_wrap=True))
            grid.add_row("Cores", num(host.cpu_count, "{:.0f}"))
            cpu = host.cpu_percent
            grid.add_row("Load", Text.assemble(bar(None if cpu is None else cpu / 100, 8, colors, load=True), " ",
                                               num(cpu, "{:.0f}", " %")))
            grid.add_row("RAM", Text.assemble(bar(_ratio(host.ram_used_gb, host.ram_total_gb), 8, colors), " ",
                                              f"{num(host.ram_used_gb)}/{num(host.ram_total_gb)} GiB"))
            disk_used = (None if host.disk_total_gb is None or host.disk_free_gb is None
                         else host.disk_total_gb - host.disk_free_gb)
            grid.add_row("Disk", Text.assemble(bar(_ratio(disk_used, host.disk_total_gb), 8, colors), " ",
                                               f"{num(host.disk_free_gb, '{:.0f}')} GiB free"))
        grid.add_row("Path", "CUDA: QLoRA, LoRA" if has_gpu else "CPU: LoRA in fp32")
        self.update(grid)
