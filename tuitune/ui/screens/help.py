"""F1 help: the key map (read from the live bindings, so it never drifts) and terminal tips."""

from __future__ import annotations

from typing import Any, Iterable

from rich.table import Table
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import Screen
from textual.widgets import Footer, Header, Static

from tuitune.ui.screens import SCREENS

TIPS = """\
[b]Over SSH and in tmux[/b]
• Colours: tmux and SSH often pass only 256 colours. For true colour set [b]COLORTERM=truecolor[/b]
  (e.g. `COLORTERM=truecolor tuitune`, and in tmux: set -as terminal-features ',*:RGB').
• Escape feels slow in tmux: add [b]set -sg escape-time 10[/b] to ~/.tmux.conf.
• tuitune binds neither ctrl+b nor ctrl+a, so both tmux prefixes stay free.
• {fkeys} switch screens everywhere; digits {digits} too, except inside a text field.
• Mouse capture gets in the way of copying text: start with [b]tuitune --no-mouse[/b].
• Box drawing needs a UTF-8 locale (LANG=C.UTF-8).  [b]--inline[/b] runs below the prompt.
• Remap a key in ~/.config/tuitune/settings.toml:  \\[keymap]  "screen.gpu" = "g,f2"
""".format(fkeys=f"{SCREENS[0].fkey.upper()}–{SCREENS[-1].fkey.upper()}",
           digits=f"{SCREENS[0].key}–{SCREENS[-1].key}")


def _key_names(binding: Binding, app: Any) -> str:
    remapped = getattr(getattr(app, "settings", None), "keymap", {})
    keys = remapped.get(binding.id, binding.key) if binding.id else binding.key
    return ", ".join(app.get_key_display(Binding(k.strip(), "")) for k in keys.split(","))


def _rows(bindings: Iterable[Any]) -> list[Binding]:
    rows = []
    for item in bindings:
        if isinstance(item, Binding):
            rows.append(item)
        else:  # tuple form
            rows.append(Binding(*item))
    return rows


def screen_bindings() -> list[tuple[str, list[Binding]]]:
    """(screen label, its own bindings) for every screen of the registry, read from their classes."""
    return [(entry.label, _rows(entry.screen.__dict__.get("BINDINGS", []))) for entry in SCREENS]


class HelpScreen(Screen):
    """The key map and terminal tips; Escape, q or F1 closes it."""

    TITLE = "Help"
    BINDINGS = [
        Binding("escape", "close", "Close", id="help.close"),
        Binding("q", "close", "Close", show=False, id="help.close_q"),
    ]

    def compose(self) -> ComposeResult:
        yield Header(icon="▣")
        with VerticalScroll(id="help-body"):
            yield Static(self.key_table(), id="help-keys")
            yield Static(TIPS, id="help-tips")
        yield Footer()

    def key_table(self) -> Table:
        app = self.app
        table = Table(title="Keys", title_justify="left", expand=False, show_edge=False, pad_edge=False)
        table.add_column("Key", style="bold", no_wrap=True)
        table.add_column("Action", no_wrap=True)
        table.add_column("Where", no_wrap=True)
        table.add_column("Binding id", style="dim", overflow="fold")
        app_bindings = _rows(type(app).BINDINGS)
        by_id = {b.id: b for b in app_bindings}
        for entry in SCREENS:
            main = by_id[f"screen.{entry.mode}"]
            alt = by_id[f"screen.{entry.mode}.fkey"]
            table.add_row(f"{_key_names(alt, app)} / {_key_names(main, app)}", f"{entry.label} screen", "anywhere",
                          f"{alt.id}, {main.id}")
        for binding in app_bindings:
            if not binding.id.startswith("screen."):
                table.add_row(_key_names(binding, app), binding.description, "anywhere", binding.id)
        table.add_row(app.get_key_display(Binding(app.COMMAND_PALETTE_BINDING, "")), "Command palette",
                      "anywhere", "")
        for label, bindings in screen_bindings():
            for binding in bindings:
                if binding.description:
                    table.add_row(_key_names(binding, app), binding.description, label, binding.id or "")
        return table

    def action_close(self) -> None:
        self.app.pop_screen()
