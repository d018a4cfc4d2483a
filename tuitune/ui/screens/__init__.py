"""The app's top-level screens (Textual MODES), in footer order; the app, the command palette and
the help screen read them from here. To add a screen: write `ui/screens/<name>.py` holding one
`Screen` subclass, then append a `ScreenEntry` for it to `SCREENS` (a free digit and function key).
"""

from __future__ import annotations

from dataclasses import dataclass

from textual.screen import Screen

from tuitune.ui.screens.chat import ChatScreen
from tuitune.ui.screens.dataset import DatasetScreen
from tuitune.ui.screens.export import ExportScreen
from tuitune.ui.screens.gpu import GpuScreen
from tuitune.ui.screens.hyperparams import HyperparamsScreen
from tuitune.ui.screens.models import ModelsScreen
from tuitune.ui.screens.monitor import MonitorScreen
from tuitune.ui.screens.runs import RunsScreen


@dataclass(frozen=True)
class ScreenEntry:
    mode: str                 # the MODES name, also in binding ids: screen.<mode>, screen.<mode>.fkey
    screen: type[Screen]
    label: str                # footer, palette and help label
    key: str                  # digit alias (outside text fields)
    fkey: str                 # function key (works inside text fields, passes tmux and SSH)


SCREENS: tuple[ScreenEntry, ...] = (
    ScreenEntry("gpu", GpuScreen, "GPU", "1", "f2"),
    ScreenEntry("models", ModelsScreen, "Models", "2", "f3"),
    ScreenEntry("dataset", DatasetScreen, "Data", "3", "f4"),
    ScreenEntry("hyperparams", HyperparamsScreen, "Params", "4", "f5"),
    ScreenEntry("monitor", MonitorScreen, "Monitor", "5", "f6"),
    ScreenEntry("runs", RunsScreen, "Runs", "6", "f7"),
    ScreenEntry("chat", ChatScreen, "Chat", "7", "f8"),
    ScreenEntry("export", ExportScreen, "Export", "8", "f9"),
)
