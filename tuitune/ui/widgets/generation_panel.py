"""The Chat screen's settings: a preset picker, the editable sampling fields and max new tokens, the
system prompt and the compare switch. Fields come from tuitune.chat.presets (their help and ranges)."""

from __future__ import annotations

import dataclasses

from textual.app import ComposeResult
from textual.containers import Horizontal, VerticalScroll
from textual.widgets import Input, Label, Select, Switch

from tuitune.chat.presets import DEFAULT_PRESET, EDITABLE_FIELDS, PRESETS, GenerationSettings, parse_setting
from tuitune.errors import TuituneError

LABELS = {"temperature": "temperature", "top_p": "top_p", "top_k": "top_k",
          "repetition_penalty": "repetition penalty", "max_new_tokens": "max new tokens"}
CUSTOM = "custom"


def _help(name: str) -> str:
    field = next(f for f in dataclasses.fields(GenerationSettings) if f.name == name)
    return f"{field.metadata['help']} ({field.metadata['min']}..{field.metadata['max']})"


class GenerationPanel(VerticalScroll):
    """Edits a GenerationSettings; `settings()` checks every field (a TuituneError names the bad ones)."""

    DEFAULT_CSS = """
    GenerationPanel { width: 36; height: 1fr; padding: 0 1; }
    GenerationPanel .gen-row { height: 1; margin: 0 0 1 0; }
    GenerationPanel .gen-label { width: 20; color: $foreground-muted; }
    GenerationPanel .gen-row Input { width: 1fr; }
    GenerationPanel Select { margin: 0 0 1 0; }
    GenerationPanel #gen-system { margin: 0 0 1 0; }
    GenerationPanel #gen-compare-row { height: 3; }
    GenerationPanel #gen-compare-row .gen-label { padding: 1 0 0 0; }
    """

    def compose(self) -> ComposeResult:
        yield Label("Preset")
        yield Select([(name, name) for name in PRESETS] + [(CUSTOM, CUSTOM)], value=DEFAULT_PRESET,
                     allow_blank=False, id="gen-preset", compact=True,
                     tooltip="factual: likeliest tokens; balanced: general chat; creative: wider choice; "
                             "greedy: always the likeliest token (repeatable)")
        for name in EDITABLE_FIELDS:
            with Horizontal(classes="gen-row"):
                yield Label(LABELS[name], classes="gen-label")
                yield Input(id=f"gen-{name}", tooltip=_help(name), compact=True)
        yield Label("System prompt")
        yield Input(id="gen-system", placeholder="(empty: the template's default)", compact=True)
        with Horizontal(id="gen-compare-row"):
            yield Label("compare with base", classes="gen-label")
            yield Switch(id="gen-compare", tooltip="Answer twice: base model (adapter off), then tuned (ctrl+t)")

    def on_mount(self) -> None:
        self.show(PRESETS[DEFAULT_PRESET])

    # what the screen reads
    @property
    def preset_select(self) -> Select:
        return self.query_one("#gen-preset", Select)

    @property
    def system_prompt(self) -> str:
        return self.query_one("#gen-system", Input).value

    @property
    def compare_switch(self) -> Switch:
        return self.query_one("#gen-compare", Switch)

    def field(self, name: str) -> Input:
        return self.query_one(f"#gen-{name}", Input)

    def show(self, settings: GenerationSettings) -> None:
        """Put a settings object's values into the fields (a preset choice does this)."""
        for name in EDITABLE_FIELDS:
            self.field(name).value = str(getattr(settings, name))

    def settings(self) -> GenerationSettings:
        """The fields as checked settings; raises TuituneError naming every bad field."""
        values: dict = {}
        problems = []
        for name in EDITABLE_FIELDS:
            field = self.field(name)
            try:
                key, value = parse_setting(name, field.value.strip())
                GenerationSettings(**{key: value}).check()  # its range, alone
                values[key] = value
                field.remove_class("-invalid")
            except TuituneError as exc:
                field.add_class("-invalid")
                problems.append(str(exc).removeprefix("Bad generation setting: ").rstrip("."))
        if problems:
            raise TuituneError("Bad generation setting: " + "; ".join(problems) + ".")
        return GenerationSettings(**values).replace()

    def choose_preset(self, name: str) -> None:
        self.preset_select.value = name

    def on_select_changed(self, event: Select.Changed) -> None:
        if event.select.id == "gen-preset" and event.value in PRESETS:
            event.stop()
            keep = self.field("max_new_tokens").value  # the answer length is not part of a preset's character
            self.show(PRESETS[str(event.value)])
            self.field("max_new_tokens").value = keep or str(PRESETS[str(event.value)].max_new_tokens)

    def on_input_changed(self, event: Input.Changed) -> None:
        """Editing a sampling field away from the chosen preset's value turns the preset into "custom"."""
        name = (event.input.id or "").removeprefix("gen-")
        if name not in EDITABLE_FIELDS or name == "max_new_tokens":
            return
        current = self.preset_select.value
        if current in PRESETS and str(getattr(PRESETS[str(current)], name)) != event.value:
            self.preset_select.value = CUSTOM
