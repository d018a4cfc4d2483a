"""Hyperparameters screen: a validated form over every field of tuitune.config.FIELDS.

Each valid edit goes straight into `app.config`; an invalid one stays in its field with the reason
under it and never reaches the config. Presets overwrite a handful of fields at once. The side panel
shows the effective batch size, the total steps (from the dataset's row count when the dataset
screen has counted it) and whether the run fits the GPU; starting is refused, with the reasons, when
a field is invalid or the run does not fit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import Screen
from textual.widgets import Button, Footer, Header, Input, Label, Static
from textual.worker import get_current_worker

from tuitune.config import FIELDS, SECTION_HELP, Config, cross_field_problems
from tuitune.ui.screens.dataset import PathSuggester, known_row_count
from tuitune.ui.widgets.form_field import FormField

# Presets: dotted field name -> value. Fields they do not name keep the user's values.
QUICK_TEST: dict[str, Any] = {
    "model.max_seq_length": 512,
    "data.max_rows": 200,
    "data.eval_fraction": 0.0,
    "lora.r": 8,
    "lora.alpha": 8,
    "training.max_steps": 20,
    "training.batch_size": 1,
    "training.gradient_accumulation_steps": 1,
    "training.learning_rate": 2e-4,
    "training.warmup_steps": 2,
    "training.logging_steps": 1,
    "training.save_steps": 0,
    "training.eval_steps": 0,
}
BALANCED: dict[str, Any] = {
    "model.max_seq_length": 2048,
    "data.max_rows": 0,
    "data.eval_fraction": 0.0,
    "lora.r": 16,
    "lora.alpha": 16,
    "training.max_steps": 0,
    "training.num_epochs": 1.0,
    "training.batch_size": 2,
    "training.gradient_accumulation_steps": 4,
    "training.learning_rate": 2e-4,
    "training.lr_scheduler": "cosine",
    "training.warmup_steps": 5,
    "training.eval_steps": 0,
    "training.gradient_checkpointing": "standard",
}
QUALITY: dict[str, Any] = {
    "model.max_seq_length": 4096,
    "data.max_rows": 0,
    "data.eval_fraction": 0.05,
    "lora.r": 64,
    "lora.alpha": 64,
    "training.max_steps": 0,
    "training.num_epochs": 3.0,
    "training.batch_size": 4,
    "training.gradient_accumulation_steps": 4,
    "training.learning_rate": 1e-4,
    "training.lr_scheduler": "cosine",
    "training.warmup_steps": 20,
    "training.eval_steps": 0,
    "training.gradient_checkpointing": "standard",
}
PRESETS: dict[str, tuple[str, dict[str, Any]]] = {
    "quick": ("Quick test", QUICK_TEST),
    "balanced": ("Balanced", BALANCED),
    "quality": ("Quality", QUALITY),
}


def effective_batch(config: Config) -> int:
    return config.training.batch_size * config.training.gradient_accumulation_steps


def total_steps(config: Config, rows: int | None) -> int | None:
    """Optimizer steps the run takes: max_steps, else epochs over the training rows (None: unknown)."""
    t = config.training
    if t.max_steps > 0:
        return t.max_steps
    if rows is None:
        return None
    if config.data.max_rows:
        rows = min(rows, config.data.max_rows)
    train_rows = rows - int(round(rows * config.data.eval_fraction))
    if train_rows <= 0:
        return 0
    batches = math.ceil(train_rows / t.batch_size)
    per_epoch = math.ceil(batches / t.gradient_accumulation_steps)
    return math.ceil(per_epoch * t.num_epochs)


def data_path_problems(config: Config) -> list[str]:
    """A dataset path that is neither a file or folder here nor a hub name (`owner/name`)."""
    from tuitune.data.hub import looks_like_hub_name

    path = config.data.path
    if not path or Path(path).expanduser().exists() or looks_like_hub_name(path):
        return []
    return [f"data.path {path} does not exist; pick a file on the Dataset screen or fix the path"]


@dataclass
class FitCheck:
    """Whether the config fits the best free GPU: `refusal` is None when it may start."""

    summary: str
    refusal: str | None


def check_fit(config: Config, gpu_source: Any) -> FitCheck:
    """Compare the VRAM estimate for the config with the best GPU's free memory (no limit on the CPU)."""
    from tuitune import catalog, fit, hardware

    free = None
    if config.training.device != "cpu" and gpu_source is not None:
        free = hardware.best_free_gb(gpu_source.snapshot())
    if free is None:
        return FitCheck("CPU training: no GPU memory limit", None)
    spec = catalog.get_model(config.model.name)
    if spec is None:
        return FitCheck(f"fit unknown: {config.model.name} is not in the catalog "
                        f"({free:.1f} GB free)", None)
    method = config.model.method if config.model.method != "auto" else "qlora"
    optimizer = config.training.optimizer if config.training.optimizer in fit.OPTIMIZERS else "adamw_8bit"
    estimate = fit.estimate(spec, method, batch=config.training.batch_size, seq=config.model.max_seq_length,
                            rank=config.lora.r, checkpointing=config.training.gradient_checkpointing,
                            fused_loss=config.training.use_kernels, target_modules=config.lora.target_modules,
                            optimizer=optimizer)
    status = fit.fit_status(estimate.total_gb, free)
    text = f"{method}: needs {estimate.total_gb:.1f} GB of {free:.1f} GB free ({status})"
    if status == "does not fit":
        return FitCheck(text, f"the run does not fit the GPU: {method} {spec.name} at batch "
                              f"{config.training.batch_size} x {config.model.max_seq_length} tokens needs about "
                              f"{estimate.total_gb:.1f} GB and {free:.1f} GB is free. Lower the batch size or "
                              "max_seq_length, pick qlora, or turn on gradient checkpointing.")
    return FitCheck(text, None)


class HyperparamsScreen(Screen):
    """Edit every config field, apply presets, save/load TOML, start training."""

    TITLE = "Hyperparameters"

    BINDINGS = [
        Binding("ctrl+r", "start", "Start training", tooltip="Validate the form and start the run",
                id="hyperparams.start"),
    ]

    DEFAULT_CSS = """
    HyperparamsScreen #hp-form { width: 2fr; }
    HyperparamsScreen #hp-side { width: 1fr; min-width: 36; padding: 0 1; }
    HyperparamsScreen .section-title {
        text-style: bold; color: $accent; padding: 1 1 0 1;
    }
    HyperparamsScreen .section-help { color: $text-muted; padding: 0 1; }
    HyperparamsScreen .side-title { text-style: bold; margin-top: 1; }
    HyperparamsScreen #hp-presets { height: auto; }
    HyperparamsScreen #hp-presets Button { min-width: 8; width: 1fr; }
    HyperparamsScreen #hp-summary { height: auto; border: round $primary 50%; padding: 0 1; }
    HyperparamsScreen #hp-file-row { height: auto; }
    HyperparamsScreen #hp-file-row Button { min-width: 8; width: 1fr; }
    HyperparamsScreen #hp-start { width: 100%; margin-top: 1; }
    HyperparamsScreen #hp-message { color: $error; height: auto; margin-top: 1; }
    HyperparamsScreen #hp-message.-ok { color: $success; }
    """

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
                    for key, (label, _) in PRESETS.items():
                        yield Button(label, id=f"preset-{key}")
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

    def on_mount(self) -> None:
        self.app.config_changed_signal.subscribe(self, self._config_replaced)
        if self.app.config_path is not None:
            self.query_one("#hp-toml-path", Input).value = str(self.app.config_path)
        self._update_summary()

    def on_screen_resume(self) -> None:
        # Other screens edit app.config too (the dataset, the model picked): show what it holds now.
        self._show_config(self.app.config)

    def _config_replaced(self, config: Config) -> None:
        self._show_config(config)
        if self.app.config_path is not None:
            self.query_one("#hp-toml-path", Input).value = str(self.app.config_path)

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
        label, overrides = PRESETS[key]
        config: Config = self.app.config
        for dotted, value in overrides.items():
            section, name = dotted.split(".")
            setattr(getattr(config, section), name, value)
            self.problems.pop(dotted, None)
        for field in self.query(FormField):
            if field.spec.key in overrides:
                field.set_value(overrides[field.spec.key])
        self._set_message(f"Preset {label} applied ({len(overrides)} fields).", ok=True)
        self._update_summary()

    # summary
    def _update_summary(self) -> None:
        config: Config = self.app.config
        rows = known_row_count(config.data.path)
        steps = total_steps(config, rows)
        if steps is None:
            steps_text = f"by epochs ({config.training.num_epochs:g}; inspect the dataset to count rows)"
        elif config.training.max_steps > 0:
            steps_text = f"{steps} (max_steps)"
        else:
            steps_text = f"{steps} ({rows} rows × {config.training.num_epochs:g} epochs)"
        lines = [
            f"batch   {effective_batch(config)} effective "
            f"({config.training.batch_size} × {config.training.gradient_accumulation_steps} accumulation)",
            f"steps   {steps_text}",
            f"model   {config.model.name}",
            f"data    {config.data.path or 'bundled sample'}",
            f"GPU     {self.fit.summary}",
        ]
        if self.problems:
            lines.append(f"invalid {len(self.problems)}: {', '.join(sorted(self.problems))}")
        self.query_one("#hp-summary", Static).update("\n".join(lines))
        self._refresh_fit()

    @work(thread=True, exclusive=True, group="hp-fit")
    def _refresh_fit(self) -> None:
        try:
            result = check_fit(self.app.config, getattr(self.app, "gpu_source", None))
        except Exception as exc:  # a GPU query or an unknown shape must not break the form
            result = FitCheck(f"fit unknown ({exc})", None)
        if not get_current_worker().is_cancelled:  # a newer edit started a newer check
            self.app.call_from_thread(self._fit_ready, result)

    def _fit_ready(self, result: FitCheck) -> None:
        changed = result != self.fit
        self.fit = result
        if changed:
            self._update_summary()

    # file and start actions
    def _set_message(self, text: str, *, ok: bool = False) -> None:
        message = self.query_one("#hp-message", Static)
        message.update(text)
        message.set_class(ok, "-ok")

    def _path(self) -> Path | None:
        text = self.query_one("#hp-toml-path", Input).value.strip()
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
            try:
                fit = check_fit(self.app.config, getattr(self.app, "gpu_source", None))
            except Exception as exc:
                fit = FitCheck(f"fit unknown ({exc})", None)
            self.fit = fit
            if fit.refusal:
                reasons.append(fit.refusal)
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
