"""Dataset screen: open a data file or folder, see how tuitune reads it, pick it for the run.

Loading runs in a thread worker: the reader reports bytes scanned, the worker turns that into at
most ten progress messages a second, and the screen keeps answering keys while a file of hundreds
of megabytes is indexed. Once the rows are read the table shows the first raw records; then the
worker loads the model's tokenizer (transformers, imported only there) and measures token lengths,
which fill the statistics, the histogram and the recommended max length.
"""

from __future__ import annotations

import dataclasses
import os
import time
from pathlib import Path
from typing import Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.message import Message
from textual.screen import Screen
from textual.suggester import Suggester
from textual.widget import Widget
from textual.widgets import Button, DataTable, Footer, Header, Input, Label, ProgressBar, Static
from textual.worker import get_current_worker

from tuitune.config import FIELDS
from tuitune.errors import TuituneError

TABLE_ROWS = 500          # raw rows shown in the table (the file may hold millions)
CELL_CHARS = 40           # a table cell shows at most this many characters
PROGRESS_INTERVAL = 0.1   # seconds between progress messages from the loader
HISTOGRAM_BLOCKS = " ▁▂▃▄▅▆▇█"
TOKEN_SAMPLE_ROWS = 20_000  # larger datasets get their token lengths measured on an even sample

# Usable row counts of the datasets inspected in this session, by resolved path; the
# hyperparameters screen turns them into total steps.
_ROW_COUNTS: dict[str, int] = {}


def _path_key(path: str) -> str:
    if not path:
        return ""
    try:
        return str(Path(path).expanduser().resolve())
    except OSError:
        return path


def remember_row_count(path: str, rows: int) -> None:
    _ROW_COUNTS[_path_key(path)] = rows


def known_row_count(path: str) -> int | None:
    """Usable rows of the dataset at `path` if this session inspected it, else None."""
    return _ROW_COUNTS.get(_path_key(path))


class PathSuggester(Suggester):
    """Completes the last path component from the file system (folders get a trailing slash)."""

    def __init__(self) -> None:
        super().__init__(use_cache=False, case_sensitive=True)

    async def get_suggestion(self, value: str) -> str | None:
        if not value:
            return None
        expanded = os.path.expanduser(value)
        folder, prefix = os.path.split(expanded)
        try:
            names = sorted(os.listdir(folder or "."))
        except OSError:
            return None
        for name in names:
            if name.startswith(prefix) and name != prefix and (prefix.startswith(".") or not name.startswith(".")):
                full = os.path.join(folder, name)
                completed = value[: len(value) - len(prefix)] + name
                return completed + ("/" if os.path.isdir(full) else "")
        return None


class TokenHistogram(Widget):
    """Token lengths as vertical bars of block characters, with the max length marked."""

    DEFAULT_CSS = """
    TokenHistogram { height: 8; border: round $primary 50%; padding: 0 1; }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.lengths: list[int] = []
        self.limit: int | None = None
        self.border_title = "Token lengths"

    def set_lengths(self, lengths: list[int], limit: int | None) -> None:
        self.lengths = list(lengths)
        self.limit = limit
        self.refresh()

    def render(self) -> Text:
        from tuitune.ui.widgets.theme_colors import theme_colors

        colors = theme_colors(self.app)
        width, height = max(self.size.width, 8), max(self.size.height, 2)
        if not self.lengths:
            return Text("no token counts yet", style=colors["muted"])
        bars_height = height - 1
        top = max(self.lengths)
        bins = max(min(width, top), 1)
        counts = [0] * bins
        for length in self.lengths:
            counts[min(length * bins // (top + 1), bins - 1)] += 1
        peak = max(counts)
        limit_bin = None if self.limit is None else min(self.limit * bins // (top + 1), bins)
        text = Text(no_wrap=True, overflow="crop")
        for row in range(bars_height):
            level_floor = (bars_height - 1 - row) * 8
            for index, count in enumerate(counts):
                eighths = round(count / peak * bars_height * 8) if peak else 0
                if count and eighths == 0:
                    eighths = 1
                fill = min(max(eighths - level_floor, 0), 8)
                over = limit_bin is not None and index >= limit_bin
                text.append(HISTOGRAM_BLOCKS[fill], style=colors["no_fit"] if over else colors["loss"])
            text.append("\n")
        left, right = "0", f"{top} tokens"
        text.append(left + " " * max(bins - len(left) - len(right), 1) + right, style=colors["muted"])
        return text


def cell_text(value: Any) -> str:
    if isinstance(value, str):
        text = value
    else:
        import json

        text = json.dumps(value, ensure_ascii=False, default=str)
    text = text.replace("\n", "⏎ ")
    return text if len(text) <= CELL_CHARS else text[: CELL_CHARS - 1] + "…"


def plain_rendering(row: Any) -> str:
    """A row's content without a tokenizer (shown until the tokenizer is loaded)."""
    if row.text is not None:
        return row.text
    parts = [f"<{m['role']}>\n{m['content']}" for m in (row.messages or [])]
    if row.chosen is not None:
        parts += [f"<chosen>\n{m['content']}" for m in row.chosen]
        parts += [f"<rejected>\n{m['content']}" for m in row.rejected or []]
    return "\n\n".join(parts)


class DatasetScreen(Screen):
    """Inspect a dataset file and select it for the current run config."""

    TITLE = "Dataset"

    BINDINGS = [
        Binding("ctrl+o", "open", "Open", tooltip="Open the path in the input", id="dataset.open"),
        Binding("ctrl+t", "use", "Use dataset", tooltip="Use this dataset for the run", id="dataset.use"),
    ]

    DEFAULT_CSS = """
    DatasetScreen #ds-path-row { height: auto; padding: 0 1; }
    DatasetScreen #ds-path { width: 1fr; }
    DatasetScreen #ds-progress-row { height: 1; padding: 0 1; }
    DatasetScreen #ds-progress { width: 1fr; }
    DatasetScreen #ds-phase { width: auto; padding-left: 1; color: $text-muted; }
    DatasetScreen #ds-main { height: 1fr; }
    DatasetScreen #ds-left { width: 3fr; }
    DatasetScreen #ds-right { width: 2fr; }
    DatasetScreen #ds-summary { height: auto; padding: 0 1; border: round $primary 50%; }
    DatasetScreen #ds-table { height: 1fr; border: round $primary 50%; }
    DatasetScreen #ds-formatted { height: 1fr; border: round $primary 50%; }
    DatasetScreen #ds-formatted-text { padding: 0 1; }
    DatasetScreen #ds-problems { height: 8; border: round $warning 50%; }
    DatasetScreen #ds-problems-text { padding: 0 1; }
    DatasetScreen #ds-use-row { height: auto; }
    DatasetScreen #ds-use-row Button { width: 1fr; }
    """

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
        def __init__(self, generation: int, stage: str, error: str) -> None:
            super().__init__()
            self.generation, self.stage, self.error = generation, stage, error

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._generation = 0
        self.data: Any = None
        self.report: Any = None
        self.tokenizer: Any = None
        self.loading = False
        self._rows_by_number: dict[int, Any] = {}

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
                yield DataTable(id="ds-table", cursor_type="row", zebra_stripes=True)
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

    def on_mount(self) -> None:
        self.query_one("#ds-table", DataTable).border_title = "Raw rows"
        self.query_one("#ds-formatted", VerticalScroll).border_title = "Training text (selected row)"
        self.query_one("#ds-problems", VerticalScroll).border_title = "Problems"
        self.query_one("#ds-summary", Static).border_title = "Dataset"
        path = self.app.config.data.path
        if path:
            self.query_one("#ds-path", Input).value = path

    def on_screen_resume(self) -> None:
        # A config loaded elsewhere may name a dataset: offer it when nothing was typed here.
        path_input = self.query_one("#ds-path", Input)
        if not path_input.value and self.app.config.data.path:
            path_input.value = self.app.config.data.path

    # opening
    def action_open(self) -> None:
        self.open_path(self.query_one("#ds-path", Input).value.strip())

    @on(Input.Submitted, "#ds-path")
    def _submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.action_open()

    def open_path(self, text: str) -> None:
        """Start loading `text` (empty: the bundled sample) in the background."""
        path = text or str(sample_path())
        self._generation += 1
        self.workers.cancel_group(self, "dataset-load")
        self.data = self.report = None
        self._rows_by_number = {}
        self.loading = True
        table = self.query_one("#ds-table", DataTable)
        table.clear(columns=True)
        self.query_one("#ds-formatted-text", Static).update("")
        self.query_one("#ds-problems-text", Static).update("")
        self.query_one(TokenHistogram).set_lengths([], None)
        self.query_one("#ds-summary", Static).update(f"Reading {path}…")
        self.query_one("#ds-use", Button).disabled = True
        self.query_one("#ds-use-length", Button).disabled = True
        self.query_one("#ds-progress", ProgressBar).update(total=100, progress=0)
        self.query_one("#ds-phase", Label).update("reading")
        config = self.app.config
        self._load(path, config.data.format, config.model.name, config.model.max_seq_length,
                   config.data.system_prompt, self._generation)

    @work(thread=True, exclusive=True, group="dataset-load", exit_on_error=False)
    def _load(self, path: str, fmt: str, model: str, max_seq_length: int, system_prompt: str,
              generation: int) -> None:
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
            data = load_rows(path, format=None if fmt == "auto" else fmt, progress=progress)
        except _Cancelled:
            return
        except TuituneError as exc:
            self.post_message(self.LoadFailed(generation, "read", str(exc)))
            return
        except OSError as exc:
            self.post_message(self.LoadFailed(generation, "read", f"Cannot read {path}: {exc.strerror or exc}."))
            return
        if worker.is_cancelled:
            return
        self.post_message(self.Loaded(generation, data))
        try:
            tokenizer = load_tokenizer_for(model)
            if worker.is_cancelled:
                return
            measured = data
            if data.usable_rows > TOKEN_SAMPLE_ROWS:
                # Every n-th row: the statistics of a large file without tokenizing all of it.
                stride = -(-data.usable_rows // TOKEN_SAMPLE_ROWS)
                measured = dataclasses.replace(data, rows=data.rows[::stride])
            report = inspect_data(measured, tokenizer=tokenizer, max_seq_length=max_seq_length,
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
            self.query_one("#ds-progress", ProgressBar).update(total=max(message.total, 1), progress=message.done)

    def on_dataset_screen_load_failed(self, message: LoadFailed) -> None:
        if message.generation != self._generation:
            return
        self.loading = False
        self.query_one("#ds-phase", Label).update("failed" if message.stage == "read" else "no token counts")
        if message.stage == "read":
            self.query_one("#ds-summary", Static).update(message.error)
        else:
            self.query_one("#ds-progress", ProgressBar).update(total=100, progress=100)
            self._show_summary()
        self.notify(message.error, title="Dataset", severity="error", timeout=10)

    def on_dataset_screen_loaded(self, message: Loaded) -> None:
        if message.generation != self._generation:
            return
        data = message.data
        self.data = data
        self._rows_by_number = {row.number: row for row in data.rows}
        remember_row_count(data.path, data.usable_rows)
        self.query_one("#ds-progress", ProgressBar).update(total=100, progress=100)
        self.query_one("#ds-phase", Label).update("measuring tokens")
        self._fill_table(data)
        self._show_problems(data.problems)
        self._show_summary()
        self.query_one("#ds-use", Button).disabled = False

    def on_dataset_screen_inspected(self, message: Inspected) -> None:
        if message.generation != self._generation:
            return
        self.loading = False
        self.report = message.report
        self.tokenizer = message.tokenizer
        self.query_one("#ds-phase", Label).update("done")
        report = message.report
        self.query_one(TokenHistogram).set_lengths(list(getattr(report, "lengths", []) or []),
                                                   self.app.config.model.max_seq_length)
        self._show_problems(report.problems)
        self._show_summary()
        use_length = self.query_one("#ds-use-length", Button)
        use_length.disabled = not report.recommended_max_seq_length
        if report.recommended_max_seq_length:
            use_length.label = f"Use max length {report.recommended_max_seq_length}"
        table = self.query_one("#ds-table", DataTable)
        if table.row_count:
            self._show_formatted(table.cursor_row)

    # display
    def _fill_table(self, data: Any) -> None:
        table = self.query_one("#ds-table", DataTable)
        table.clear(columns=True)
        columns = list(data.columns)
        table.add_column("#", key="#")
        for column in columns:
            table.add_column(column, key=column)
        shown = min(data.row_count, TABLE_ROWS)
        for number in range(1, shown + 1):
            try:
                record = data.raw_row(number)
            except Exception as exc:  # an unreadable line shows as such
                table.add_row(str(number), cell_text(f"unreadable: {exc}"), *[""] * (len(columns) - 1),
                              key=str(number))
                continue
            table.add_row(str(number), *[cell_text(record.get(c, "")) for c in columns], key=str(number))
        table.border_subtitle = (f"first {shown} of {data.row_count:,}" if shown < data.row_count
                                 else f"{data.row_count:,} rows")
        if shown:
            table.move_cursor(row=0)
            self._show_formatted(0)

    def _show_summary(self) -> None:
        data, report = self.data, self.report
        if data is None:
            return
        lines = [
            f"file       {Path(str(data.path)).name}",
            f"format     {data.format} ({data.format_reason})",
            f"rows       {data.row_count:,} ({data.usable_rows:,} usable)",
        ]
        if report is not None:
            measured = len(report.lengths)
            if measured < data.usable_rows:
                lines.append(f"tokens     measured on an even sample of {measured:,} rows")
            lines += [
                f"tokens     mean {report.mean_tokens:,.0f}  median {report.median_tokens:,.0f}  "
                f"p95 {report.p95_tokens:,}  p99 {report.p99_tokens:,}  max {report.max_tokens:,}",
                f"max length {report.recommended_max_seq_length or '-'} recommended "
                f"(config: {self.app.config.model.max_seq_length:,})",
            ]
        else:
            lines.append("tokens     measuring…" if self.loading else "tokens     not measured")
        self.query_one("#ds-summary", Static).update("\n".join(lines))

    def _show_problems(self, problems: list[Any]) -> None:
        from tuitune.data.problems import format_problems

        text = "\n".join(format_problems(problems)) if problems else "no problems found"
        self.query_one("#ds-problems-text", Static).update(text)
        self.query_one("#ds-problems", VerticalScroll).border_title = f"Problems ({len(problems)})"

    @on(DataTable.RowHighlighted, "#ds-table")
    def _row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        self._show_formatted(event.cursor_row)

    def _show_formatted(self, index: int) -> None:
        target = self.query_one("#ds-formatted-text", Static)
        number = index + 1
        row = self._rows_by_number.get(number)
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
            histogram = self.query_one(TokenHistogram)
            histogram.set_lengths(histogram.lengths, value)
            self._show_summary()
            self.notify(f"max_seq_length set to {value}.", title="Dataset")
        else:
            return
        event.stop()


class _Cancelled(Exception):
    """Raised inside the loader's progress callback when a newer load replaced this one."""


def load_tokenizer_for(model: str) -> Any:
    """The tokenizer of the run's model (imports transformers: call it from a worker thread only)."""
    from tuitune.trainer.model_loading import load_tokenizer

    return load_tokenizer(model)


def sample_path() -> Path:
    """The bundled sample dataset."""
    from tuitune.data import sample_dataset_path

    return Path(sample_dataset_path())
