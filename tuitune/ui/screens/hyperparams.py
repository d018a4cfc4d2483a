"""Hyperparameters screen: a validated form over every field of tuitune.config.FIELDS.

Each valid edit goes straight into `app.config`; an invalid one stays in its field with the reason
under it and never reaches the config. Presets overwrite a handful of fields at once. The side panel
shows the effective batch size, the total steps (from the dataset's row count when the dataset
screen has counted it) and whether the run fits the GPU; starting is refused, with the reasons, when
a field is invalid or the run does not fit.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.screen import Screen
from textual.widgets import Button, Footer, Header, Input, Label, Static
from textual.worker import get_current_worker

from tuitune.config import FIELDS, SECTION_HELP, Config, cross_field_problems
from tuitune.preflight import FitCheck, check_fit, data_path_problems
from tuitune.presets import PRESETS
from tuitune.steps import effective_batch, total_steps
from tuitune.ui.widgets.form_field import FormField
from tuitune.ui.widgets.path_suggester import PathSuggester

class HyperparamsScreen(Screen):
    """Edit every config field, apply presets, save/load TOML, start training."""

    TITLE = "Hyperparameters"

    BINDINGS = [
        Binding("ctrl+r", "start", "Start training", tooltip="Validate the form and start the run",
                id="hyperparams.start"),
    ]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.problems: dict[str, str] = {}
        self.fit = FitCheck("fit: checking…", None)

    # layout
    def compose(self) -> ComposeResult:
        config: Config = self.app.config
        yield Header()
        with Horizontal():
            with VerticalScroll(id="hp-form"):
                for section, help_text in SECTION_HELP.items():
                    yield Label(f"[{section}]", classes="section-title", markup=False)
                    yield Label(help_text, classes="section-help", markup=False)
                    for spec in FIELDS.values():
                        if spec.section == section:
                            yield FormField(spec, config.get(spec.key))
            with VerticalScroll(id="hp-side"):
                yield Label("Presets", classes="side-title")
                with Horizontal(id="hp-presets"):
                    for preset in PRESETS.values():
                        yield Button(preset.label, id=f"preset-{preset.key}")
                yield Label("Run", classes="side-title")
                yield Static("", id="hp-summary", markup=False)
                yield Label("Config file (TOML)", classes="side-title")
                yield Input(placeholder="path/to/run.toml", id="hp-toml-path", suggester=PathSuggester())
                with Horizontal(id="hp-file-row"):
                    yield Button("Save", id="hp-save")
                    yield Button("Load", id="hp-load")
                yield Button("Start training", variant="success", id="hp-start",
                             tooltip="Validate every field and the GPU fit, then start (ctrl+r)")
                yield Static("", id="hp-message", markup=False)
        yield Footer()

    # widgets
    @property
    def summary(self) -> Static:
        return self.query_one("#hp-summary", Static)

    @property
    def message(self) -> Static:
        return self.query_one("#hp-message", Static)

    @property
    def toml_path(self) -> Input:
        return self.query_one("#hp-toml-path", Input)

    @property
    def start_button(self) -> Button:
        return self.query_one("#hp-start", Button)

    @property
    def save_button(self) -> Button:
        return self.query_one("#hp-save", Button)

    @property
    def load_button(self) -> Button:
        return self.query_one("#hp-load", Button)

    def preset_button(self, key: str) -> Button:
        return self.query_one(f"#preset-{key}", Button)

    def field(self, key: str) -> FormField:
        """The editor row of a config field, by its dotted name."""
        return self.query_one(f"#{FormField.id_for(key)}", FormField)

    def on_mount(self) -> None:
        self.app.config_changed_signal.subscribe(self, self._config_replaced)
        if self.app.config_path is not None:
            self.toml_path.value = str(self.app.config_path)
        self._update_summary()

    def on_screen_resume(self) -> None:
        # Other screens edit app.config too (the dataset, the model picked): show what it holds now.
        self._show_config(self.app.config)

    def _config_replaced(self, config: Config) -> None:
        self._show_config(config)
        if self.app.config_path is not None:
            self.toml_path.value = str(self.app.config_path)

    def _show_config(self, config: Config) -> None:
        """Put the config's values into the editors (fields holding invalid text keep it)."""
        for field in self.query(FormField):
            value, problem = field.current()
            if problem is None and value != config.get(field.spec.key):
                field.set_value(config.get(field.spec.key))
        self._update_summary()

    # edits
    def on_form_field_changed(self, event: FormField.Changed) -> None:
        key = event.field.spec.key
        if event.problem is None:
            self.problems.pop(key, None)
            section, name = key.split(".")
            setattr(getattr(self.app.config, section), name, event.value)
        else:
            self.problems[key] = event.problem
        self._update_summary()

    def apply_preset(self, key: str) -> None:
        preset = PRESETS[key]
        preset.apply(self.app.config)
        for field in self.query(FormField):
            if field.spec.key in preset.values:
                self.problems.pop(field.spec.key, None)
                field.set_value(preset.values[field.spec.key])
        self._set_message(f"Preset {preset.label} applied ({len(preset.values)} fields).", ok=True)
        self._update_summary()

    # summary
    def _update_summary(self) -> None:
        config: Config = self.app.config
        rows = self.app.known_rows(config.data.path)
        steps = total_steps(config, rows)
        if steps is None:
            steps_text = f"by epochs ({config.training.num_epochs:g}; inspect the dataset to count rows)"
        elif config.training.max_steps > 0:
            steps_text = f"{steps} (max_steps)"
        else:
            steps_text = f"{steps} ({rows} rows × {config.training.num_epochs:g} epochs)"
        lines = [
            f"batch   {effective_batch(config.training)} effective "
            f"({config.training.batch_size} × {config.training.gradient_accumulation_steps} accumulation)",
            f"steps   {steps_text}",
            f"model   {config.model.name}",
            f"data    {config.data.path or 'bundled sample'}",
            f"GPU     {self.fit.summary}",
        ]
        if self.problems:
            lines.append(f"invalid {len(self.problems)}: {', '.join(sorted(self.problems))}")
        self.summary.update("\n".join(lines))
        self._refresh_fit()

    def _fit_now(self) -> FitCheck:
        """The run's GPU fit as the trainer would plan it (tuitune.preflight), from a fresh snapshot."""
        try:
            return check_fit(self.app.config, self.app.gpu_source.snapshot())
        except Exception as exc:  # a GPU query or an unknown shape must not break the form
            return FitCheck(f"fit unknown ({exc})", None)

    @work(thread=True, exclusive=True, group="hp-fit")
    def _refresh_fit(self) -> None:
        result = self._fit_now()
        if not get_current_worker().is_cancelled:  # a newer edit started a newer check
            self.app.call_from_thread(self._fit_ready, result)

    def _fit_ready(self, result: FitCheck) -> None:
        changed = result != self.fit
        self.fit = result
        if changed:
            self._update_summary()

    # file and start actions
    def _set_message(self, text: str, *, ok: bool = False) -> None:
        message = self.message
        message.update(text)
        message.set_class(ok, "-ok")

    def _path(self) -> Path | None:
        text = self.toml_path.value.strip()
        if not text:
            self._set_message("Type the config file's path first (for example run.toml).")
            self.notify("Type the config file's path first.", severity="warning")
            return None
        return Path(text).expanduser()

    def save(self) -> None:
        path = self._path()
        if path is None:
            return
        if self.problems:
            reason = "; ".join(self.problems[k] for k in sorted(self.problems))
            self._set_message(f"Not saved: fix the invalid fields first. {reason}")
            self.notify(f"Not saved: {len(self.problems)} invalid field(s).", severity="error")
            return
        if self.app.save_config_file(path):
            self._set_message(f"Saved {path}", ok=True)
        else:
            self._set_message(f"Could not save {path}; see the notification.")

    def load(self) -> None:
        path = self._path()
        if path is None:
            return
        if self.app.load_config_file(path):
            self.problems.clear()
            self._show_config(self.app.config)
            for field in self.query(FormField):
                field.set_value(self.app.config.get(field.spec.key))
            self._set_message(f"Loaded {path}", ok=True)
        else:
            self._set_message(f"Could not load {path}; see the notification.")

    def refusal_reasons(self) -> list[str]:
        """Why the run may not start (empty: it may)."""
        reasons = [self.problems[k] for k in sorted(self.problems)]
        reasons += cross_field_problems(self.app.config)
        reasons += data_path_problems(self.app.config)
        if not reasons:
            self.fit = self._fit_now()
            if self.fit.refusal:
                reasons.append(self.fit.refusal)
        return reasons

    def action_start(self) -> None:
        reasons = self.refusal_reasons()
        if reasons:
            self._set_message("Not started:\n" + "\n".join(f"• {r}" for r in reasons))
            self.notify(reasons[0] + (f" (and {len(reasons) - 1} more)" if len(reasons) > 1 else ""),
                        title="Training not started", severity="error", timeout=8)
            self._update_summary()
            return
        self._set_message("Starting…", ok=True)
        handle = self.app.start_training()
        if handle is None:
            self._set_message("Not started; see the notification.")
        else:
            self._set_message("Started; the monitor follows it.", ok=True)

    def on_button_pressed(self, event: Button.Pressed) -> None:
        button = event.button.id or ""
        if button.startswith("preset-"):
            self.apply_preset(button.removeprefix("preset-"))
        elif button == "hp-save":
            self.save()
        elif button == "hp-load":
            self.load()
        elif button == "hp-start":
            self.action_start()
        else:
            return
        event.stop()
