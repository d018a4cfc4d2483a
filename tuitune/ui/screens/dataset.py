"""Dataset screen: open a data file or folder, see how tuitune reads it, pick it for the run.

Loading runs in a thread worker: the reader reports bytes scanned, the worker turns that into at
most ten progress messages a second, and the screen keeps answering keys while a file of a GB is
indexed (a large file keeps row numbers, not rows: nothing here walks every row on the UI thread).
Once the rows are read the table shows the first raw records; then the worker loads the model's
tokenizer (transformers, imported only there) and measures token lengths (an even sample of a large
file), which fill the statistics, the histogram and the recommended max length. A JSON file that
breaks off part-way, or columns no format fits, get an offer (DataRepair): salvage the complete
records, or map the columns; the choice goes into the config with the dataset.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Button, DataTable, Footer, Header, Input, Label, ProgressBar, Static
from textual.worker import get_current_worker

from tuitune import model_source
from tuitune.config import FIELDS
from tuitune.data.bundled import sample_dataset_path
from tuitune.errors import TuituneError
from tuitune.ui.widgets.data_repair import DataRepair
from tuitune.ui.widgets.dataset_text import plain_rendering, summary_text
from tuitune.ui.widgets.path_suggester import PathSuggester
from tuitune.ui.widgets.raw_rows import RawRowsTable
from tuitune.ui.widgets.token_histogram import TokenHistogram

PROGRESS_INTERVAL = 0.1   # seconds between progress messages from the loader


class DatasetScreen(Screen):
    """Inspect a dataset file and select it for the current run config."""

    TITLE = "Dataset"

    BINDINGS = [
        Binding("ctrl+o", "open", "Open", tooltip="Open the path in the input", id="dataset.open"),
        Binding("ctrl+t", "use", "Use dataset", tooltip="Use this dataset for the run", id="dataset.use"),
    ]

    class LoadProgress(Message):
        def __init__(self, generation: int, done: int, total: int) -> None:
            super().__init__()
            self.generation, self.done, self.total = generation, done, total

    class Loaded(Message):
        def __init__(self, generation: int, data: Any) -> None:
            super().__init__()
            self.generation, self.data = generation, data

    class Inspected(Message):
        def __init__(self, generation: int, report: Any, tokenizer: Any) -> None:
            super().__init__()
            self.generation, self.report, self.tokenizer = generation, report, tokenizer

    class LoadFailed(Message):
        def __init__(self, generation: int, stage: str, error: str, exc: Exception | None = None) -> None:
            super().__init__()
            self.generation, self.stage, self.error, self.exc = generation, stage, error, exc

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._generation = 0
        self.data: Any = None
        self.report: Any = None
        self.tokenizer: Any = None
        self.reading = False
        self.columns = ""         # the column mapping the open dataset is read with
        self.salvaged = False     # whether it is the salvaged start of a broken file
        self._broken: Any = None  # the BrokenFileError of the last read, for Salvage

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal(id="ds-path-row"):
            yield Input(placeholder="dataset file or folder (→ accepts the completion; empty: the bundled sample)",
                        suggester=PathSuggester(), id="ds-path")
            yield Button("Open", id="ds-open", variant="primary")
        with Horizontal(id="ds-progress-row"):
            yield ProgressBar(total=100, show_eta=False, id="ds-progress")
            yield Label("idle", id="ds-phase")
        with Horizontal(id="ds-main"):
            with Vertical(id="ds-left"):
                yield DataRepair(id="ds-repair")
                yield RawRowsTable(id="ds-table")
                with VerticalScroll(id="ds-problems"):
                    yield Static("no dataset open", id="ds-problems-text", markup=False)
            with Vertical(id="ds-right"):
                yield Static("Open a dataset to see its format, rows and token lengths.",
                             id="ds-summary", markup=False)
                yield TokenHistogram(id="ds-histogram")
                with VerticalScroll(id="ds-formatted"):
                    yield Static("", id="ds-formatted-text", markup=False)
                with Horizontal(id="ds-use-row"):
                    yield Button("Use this dataset", id="ds-use", variant="success", disabled=True)
                    yield Button("Use max length", id="ds-use-length", disabled=True,
                                 tooltip="Set model.max_seq_length to the recommended length")
        yield Footer()

    # widgets
    @property
    def path_input(self) -> Input:
        return self.query_one("#ds-path", Input)

    @property
    def progress(self) -> ProgressBar:
        return self.query_one("#ds-progress", ProgressBar)

    @property
    def phase(self) -> Label:
        return self.query_one("#ds-phase", Label)

    @property
    def table(self) -> RawRowsTable:
        return self.query_one(RawRowsTable)

    @property
    def repair(self) -> DataRepair:
        return self.query_one(DataRepair)

    @property
    def problems_box(self) -> VerticalScroll:
        return self.query_one("#ds-problems", VerticalScroll)

    @property
    def problems_text(self) -> Static:
        return self.query_one("#ds-problems-text", Static)

    @property
    def summary(self) -> Static:
        return self.query_one("#ds-summary", Static)

    @property
    def histogram(self) -> TokenHistogram:
        return self.query_one(TokenHistogram)

    @property
    def formatted_box(self) -> VerticalScroll:
        return self.query_one("#ds-formatted", VerticalScroll)

    @property
    def formatted(self) -> Static:
        return self.query_one("#ds-formatted-text", Static)

    @property
    def use_button(self) -> Button:
        return self.query_one("#ds-use", Button)

    @property
    def use_length_button(self) -> Button:
        return self.query_one("#ds-use-length", Button)

    def on_mount(self) -> None:
        self.table.border_title = "Raw rows"
        self.formatted_box.border_title = "Training text (selected row)"
        self.problems_box.border_title = "Problems"
        self.summary.border_title = "Dataset"
        path = self.app.config.data.path
        if path:
            self.path_input.value = path

    def on_screen_resume(self) -> None:
        # A config loaded elsewhere may name a dataset: offer it when nothing was typed here.
        path_input = self.path_input
        if not path_input.value and self.app.config.data.path:
            path_input.value = self.app.config.data.path

    # opening
    def action_open(self) -> None:
        self.open_path(self.path_input.value.strip())

    @on(Input.Submitted, "#ds-path")
    def _submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.action_open()

    def open_path(self, text: str, *, columns: str | None = None, salvage: bool | None = None,
                  source: Any = None) -> None:
        """Start loading `text` (empty: the bundled sample) in the background, with a column mapping
        and salvage (None: the config's when `text` is the config's dataset, else none). `source`
        is an already opened RecordSource of it (the salvaged records of a broken file)."""
        path = text or str(sample_dataset_path())
        data_config = self.app.config.data
        same = bool(data_config.path) and _same_file(path, data_config.path)
        self.columns = data_config.columns if columns is None and same else (columns or "")
        self.salvaged = data_config.salvage if salvage is None and same else bool(salvage)
        self._broken = None
        self._generation += 1
        self.workers.cancel_group(self, "dataset-load")
        self.data = self.report = None
        self.repair.hide()
        self.reading = True
        table = self.table
        table.clear(columns=True)
        self.formatted.update("")
        self.problems_text.update("")
        self.histogram.set_lengths([], None)
        self.summary.update(f"Reading {path}…")
        self.use_button.disabled = True
        self.use_length_button.disabled = True
        self.progress.update(total=100, progress=0)
        self.phase.update("reading")
        config = self.app.config
        self._load(source if source is not None else path, config.data.format, config.model.name,
                   config.model.max_seq_length, config.data.system_prompt, self._generation,
                   self.columns, self.salvaged)

    @work(thread=True, exclusive=True, group="dataset-load", exit_on_error=False)
    def _load(self, path: Any, fmt: str, model: str, max_seq_length: int, system_prompt: str,
              generation: int, columns: str, salvage: bool) -> None:
        from tuitune.data import inspect_data, load_rows

        worker = get_current_worker()
        last = [0.0]

        def progress(done: int, total: int) -> None:
            if worker.is_cancelled:
                raise _Cancelled()
            now = time.monotonic()
            if now - last[0] >= PROGRESS_INTERVAL or done >= total:
                last[0] = now
                self.post_message(self.LoadProgress(generation, done, total))

        try:
            data = load_rows(path, format=None if fmt == "auto" else fmt, progress=progress,
                             columns=columns or None, salvage=salvage)
        except _Cancelled:
            return
        except TuituneError as exc:
            self.post_message(self.LoadFailed(generation, "read", str(exc), exc))
            return
        except OSError as exc:
            self.post_message(self.LoadFailed(generation, "read", f"Cannot read {path}: {exc.strerror or exc}."))
            return
        if worker.is_cancelled:
            return
        self.post_message(self.Loaded(generation, data))
        try:
            tokenizer = model_source.load_tokenizer(model)  # imports transformers: a worker thread only
            if worker.is_cancelled:
                return
            # A large file's token lengths come from an even sample (inspect_data's sample_rows).
            report = inspect_data(data, tokenizer=tokenizer, max_seq_length=max_seq_length,
                                  system_prompt=system_prompt or None)
        except TuituneError as exc:
            self.post_message(self.LoadFailed(generation, "tokens", str(exc)))
            return
        except Exception as exc:  # a tokenizer that cannot load must not lose the rows already shown
            self.post_message(self.LoadFailed(generation, "tokens",
                                              f"Token lengths not measured: the tokenizer of {model} "
                                              f"could not be used ({type(exc).__name__}: {exc})."))
            return
        if not worker.is_cancelled:
            self.post_message(self.Inspected(generation, report, tokenizer))

    # worker messages
    def on_dataset_screen_load_progress(self, message: LoadProgress) -> None:
        if message.generation == self._generation:
            self.progress.update(total=max(message.total, 1), progress=message.done)

    def on_dataset_screen_load_failed(self, message: LoadFailed) -> None:
        if message.generation != self._generation:
            return
        self.reading = False
        self.phase.update("failed" if message.stage == "read" else "no token counts")
        if message.stage == "read":
            self.summary.update(message.error)
            self._offer_repair(message.exc)
        else:
            self.progress.update(total=100, progress=100)
            self._show_summary()
        self.notify(message.error, title="Dataset", severity="error", timeout=10)

    def on_dataset_screen_loaded(self, message: Loaded) -> None:
        if message.generation != self._generation:
            return
        data = message.data
        self.data = data
        self.app.remember_rows(data.path, data.usable_rows)
        self.progress.update(total=100, progress=100)
        self.phase.update("measuring tokens")
        self._fill_table(data)
        self._show_problems(data.problems)
        self._show_summary()
        self.use_button.disabled = False

    def on_dataset_screen_inspected(self, message: Inspected) -> None:
        if message.generation != self._generation:
            return
        self.reading = False
        self.report = message.report
        self.tokenizer = message.tokenizer
        self.phase.update("done")
        report = message.report
        self.histogram.set_lengths(list(getattr(report, "lengths", []) or []),
                                                   self.app.config.model.max_seq_length)
        self._show_problems(report.problems)
        self._show_summary()
        use_length = self.use_length_button
        use_length.disabled = not report.recommended_max_seq_length
        if report.recommended_max_seq_length:
            use_length.label = f"Use max length {report.recommended_max_seq_length}"
        table = self.table
        if table.row_count:
            self._show_formatted(table.cursor_row)

    # reading it anyway
    def _offer_repair(self, exc: Exception | None) -> None:
        from tuitune.data.columns import MissingColumnError
        from tuitune.data.loading import UnknownFormatError
        from tuitune.data.readers import BrokenFileError

        if isinstance(exc, BrokenFileError) and exc.records:
            self._broken = exc
            self.repair.offer_salvage(exc.records)
        elif isinstance(exc, UnknownFormatError):
            suggestion = exc.suggestion.text() if exc.suggestion else self.columns
            self.repair.offer_mapping(list(exc.columns), suggestion)
        elif isinstance(exc, MissingColumnError):  # a mapping that names a missing column: fix it
            self.repair.offer_mapping(list(exc.columns), self.columns)

    def on_data_repair_salvage(self, event: DataRepair.Salvage) -> None:
        event.stop()
        broken = self._broken
        if broken is not None:  # the records before the break were kept: no second read
            self.open_path(self.path_input.value.strip(), columns=self.columns, salvage=True,
                           source=broken.salvaged())

    def on_data_repair_map(self, event: DataRepair.Map) -> None:
        event.stop()
        from tuitune.data.columns import parse_mapping

        try:
            mapping = parse_mapping(event.text, "The column mapping")
        except TuituneError as exc:
            self.notify(str(exc), title="Columns not mapped", severity="error", timeout=10)
            return
        if not mapping:
            self.notify("Name at least one column, e.g. instruction=question,output=answer.",
                        title="Columns not mapped", severity="warning")
            return
        self.open_path(self.path_input.value.strip(), columns=mapping.text(), salvage=self.salvaged)

    # display
    def _fill_table(self, data: Any) -> None:
        if self.table.show(data):
            self.table.move_cursor(row=0)
            self._show_formatted(0)

    def _show_summary(self) -> None:
        if self.data is not None:
            self.summary.update(summary_text(self.data, self.report, reading=self.reading,
                                             max_seq_length=self.app.config.model.max_seq_length))

    def _show_problems(self, problems: list[Any]) -> None:
        from tuitune.data.problems import format_problems

        text = "\n".join(format_problems(problems)) if problems else "no problems found"
        self.problems_text.update(text)
        self.problems_box.border_title = f"Problems ({len(problems)})"

    @on(DataTable.RowHighlighted, "#ds-table")
    def _row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        self._show_formatted(event.cursor_row)

    def _show_formatted(self, index: int) -> None:
        target = self.formatted
        number = index + 1
        row = self.data.usable_row(number) if self.data is not None else None
        if row is None:
            problems = [str(p) for p in (self.data.problems if self.data else []) if p.row == number]
            target.update(f"Row {number} is not used for training:\n" + "\n".join(problems))
            return
        if self.tokenizer is None:
            target.update(plain_rendering(row))
            return
        from tuitune.data.rendering import render_row

        try:
            rendered = render_row(row, self.tokenizer, system_prompt=self.app.config.data.system_prompt or None)
        except Exception as exc:  # the template refusing one row is shown, not raised
            target.update(f"Row {number} cannot be rendered: {exc}")
            return
        target.update(rendered.text)

    # choosing
    def action_use(self) -> None:
        if self.data is None:
            self.notify("Open a dataset first.", severity="warning")
            return
        from tuitune.data import FORMATS
        from tuitune.data.rendering import preference_refusal

        if not FORMATS[self.data.format].trainable:
            self.notify(preference_refusal(), title="Dataset not used", severity="error", timeout=10)
            return
        config = self.app.config
        choices = FIELDS["data.format"].choices or []
        local = Path(str(self.data.path)).expanduser()
        config.data.path = str(local.resolve()) if local.exists() else str(self.data.path)
        config.data.format = self.data.format if self.data.format in choices else "auto"
        config.data.columns = self.columns
        config.data.salvage = self.salvaged
        self.app.config_edited()
        self.notify(f"The run uses {config.data.path} ({self.data.format}, {self.data.usable_rows:,} rows).",
                    title="Dataset")

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "ds-open":
            self.action_open()
        elif event.button.id == "ds-use":
            self.action_use()
        elif event.button.id == "ds-use-length" and self.report is not None:
            value = int(self.report.recommended_max_seq_length)
            self.app.config.model.max_seq_length = value
            self.app.config_edited()
            histogram = self.histogram
            histogram.set_lengths(histogram.lengths, value)
            self._show_summary()
            self.notify(f"max_seq_length set to {value}.", title="Dataset")
        else:
            return
        event.stop()


def _same_file(a: str, b: str) -> bool:
    try:
        return Path(a).expanduser().resolve() == Path(b).expanduser().resolve()
    except (OSError, RuntimeError):
        return a == b


class _Cancelled(Exception):
    """Raised inside the loader's progress callback when a newer load replaced this one."""
