"""Export screen: write a run's adapter as adapter, merged, GGUF or GPTQ, verified, with progress, then the
output's path and size; push it to the Hugging Face Hub.

The export runs in a child process (tuitune.export.process); a thread worker relays its progress.
A K-quant without llama.cpp offers to install the optional extra first.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Button, Footer, Header, Input, Label, ProgressBar, Select, Static
from textual.worker import get_current_worker

from tuitune.errors import TuituneError
from tuitune.export import extras
from tuitune.export.formats import FORMAT_HELP, FORMATS, KQUANTS, QUANT_HELP, QUANTS, ExportRequest, ExportResult
from tuitune.ui.widgets.confirm import ConfirmModal

LOG_NAME = "export.log"


class ExportScreen(Screen):
    """Pick the run, the format and quantization; export, watch it verify, push."""

    TITLE = "Export"
    BINDINGS = [
        Binding("ctrl+r", "export", "Export", id="export.run", tooltip="Export and verify with these settings"),
        Binding("ctrl+t", "push", "Push", id="export.push", tooltip="Upload the last export to the Hub repo"),
        Binding("escape", "cancel", "Cancel", id="export.cancel", tooltip="Stop the export in progress"),
    ]

    class Progressed(Message):
        def __init__(self, fraction: float, text: str) -> None:
            super().__init__()
            self.fraction, self.text = fraction, text

    class Ended(Message):
        """The export, install or push finished: a result, a pushed URL or an error message."""

        def __init__(self, kind: str, *, result: dict | None = None, url: str | None = None,
                     error: str | None = None) -> None:
            super().__init__()
            self.kind, self.result, self.url, self.error = kind, result, url, error

    def __init__(self) -> None:
        super().__init__(id="export-screen")
        self.handle: Any = None
        self.result: ExportResult | None = None
        self.busy: str | None = None  # export | install | push
        self._pending: str | None = None

    def compose(self) -> ComposeResult:
        yield Header(icon="▣")
        with Vertical(id="export-form"):
            with Horizontal(classes="export-row"):
                yield Label("Run", classes="export-label")
                yield Input(placeholder="run name or folder, or an adapter folder", id="export-target")
            with Horizontal(classes="export-row"):
                yield Label("Format", classes="export-label")
                yield Select([(f"{name}", name) for name in FORMATS], value="gguf", allow_blank=False,
                             id="export-format")
                yield Label("Quantization", classes="export-label")
                yield Select([], id="export-quant", allow_blank=True)
            with Horizontal(classes="export-row"):
                yield Label("Output", classes="export-label")
                yield Input(placeholder="folder (default: <run>/exports/<format>-<quant>)", id="export-output")
            with Horizontal(classes="export-row"):
                yield Label("Push to", classes="export-label")
                yield Input(placeholder="owner/name on the Hugging Face Hub (optional; token from HF_TOKEN or "
                                        "`hf auth login`)", id="export-repo")
            yield Static("", id="export-help", markup=False)
            with Horizontal(id="export-buttons"):
                yield Button("Export", id="export-start", variant="primary", tooltip="Export and verify (ctrl+r)")
                yield Button("Push", id="export-push", tooltip="Upload the last export (ctrl+t)")
                yield Button("Cancel", id="export-cancel", variant="error", tooltip="Stop the export (Esc)")
        with Horizontal(id="export-progress-row"):
            yield ProgressBar(total=1.0, show_eta=False, id="export-progress")
            yield Label("", id="export-phase", markup=False)  # it names folders, repos and URLs
        yield Static("No export yet.", id="export-result", markup=False)
        yield Footer()

    # widgets
    @property
    def progress(self) -> ProgressBar:
        return self.query_one(ProgressBar)

    @property
    def phase(self) -> Label:
        return self.query_one("#export-phase", Label)

    @property
    def result_panel(self) -> Static:
        return self.query_one("#export-result", Static)

    def value(self, name: str) -> str:
        return self.query_one(f"#export-{name}", Input).value.strip()

    def on_mount(self) -> None:
        self.result_panel.border_title = "Result"
        self._fill_quants("gguf")
        self.query_one("#export-start", Button).focus()  # keys (digits too) reach the app until a field is picked
        if self._pending is not None:
            pending, self._pending = self._pending, None
            self.set_target(pending)

    def set_target(self, ref: str) -> None:
        """What to export (app.open_export calls this)."""
        if not self.is_mounted:
            self._pending = ref
            return
        self.query_one("#export-target", Input).value = ref
        self.query_one("#export-start", Button).focus()

    # ------------------------------------------------------------------ the form
    @on(Select.Changed, "#export-format")
    def _format_changed(self, event: Select.Changed) -> None:
        self._fill_quants(str(event.value))

    @on(Select.Changed, "#export-quant")
    def _quant_changed(self, _event: Select.Changed) -> None:
        self._show_help()

    def _fill_quants(self, fmt: str) -> None:
        quant = self.query_one("#export-quant", Select)
        choices = QUANTS.get(fmt, ())
        quant.set_options([(q, q) for q in choices])
        quant.disabled = not choices
        if choices:
            quant.value = choices[0]
        self._show_help()

    def _show_help(self) -> None:
        fmt = str(self.query_one("#export-format", Select).value)
        quant = self.query_one("#export-quant", Select).value
        text = f"{fmt}: {FORMAT_HELP.get(fmt, '')}." + (f" {quant}: {QUANT_HELP[quant]}." if quant in QUANT_HELP else "")
        if fmt == "gguf" and quant in KQUANTS and not extras.available("llamacpp"):
            text += f" {quant} needs llama.cpp, which is not installed: Export offers to install it."
        if fmt == "gptq":
            text += " Without a CUDA GPU the export says so before doing anything."
        self.query_one("#export-help", Static).update(text)

    def request(self) -> ExportRequest:
        quant = self.query_one("#export-quant", Select).value
        request = ExportRequest(target=self.value("target"), format=str(self.query_one("#export-format", Select).value),
                                quant=quant if isinstance(quant, str) else None, output=self.value("output") or None,
                                push=self.value("repo") or None,
                                runs_root=str(self.app.runs_root) if self.app.runs_root else None)
        if not request.target:
            raise TuituneError("Type the run to export first (a run name or folder, or an adapter folder).")
        request.check()
        return request

    # ------------------------------------------------------------------ export
    @on(Button.Pressed, "#export-start")
    def action_export(self) -> None:
        if self.busy:
            self.notify(f"The {self.busy} is still running; wait for it or cancel it (Esc).", severity="warning")
            return
        try:
            request = self.request()
        except TuituneError as exc:
            self.app.report(exc, "Not exported")
            return
        if request.format == "gguf" and request.resolved_quant in KQUANTS and not extras.available("llamacpp"):
            self._offer_install(request)
            return
        self._start(request)

    def _start(self, request: ExportRequest) -> None:
        from tuitune.chat.targets import resolve_target
        from tuitune.export.runner import output_folder

        try:
            target = resolve_target(request.target, request.runs_root)
            home = output_folder(request, target).parent if target.adapter is not None else Path.cwd()
            self.handle = self.app.start_export(request, home / LOG_NAME)
        except (TuituneError, OSError) as exc:
            self.app.report(exc, "Not exported")
            return
        self.busy, self.result = "export", None
        self.progress.update(total=1.0, progress=0.0)
        self.phase.update("starting the export process")
        self.result_panel.update(f"Exporting {target.label} as {request.folder_name()}…")
        self._follow(self.handle)

    @work(thread=True, exclusive=True, group="export-follow", name="export progress", exit_on_error=False)
    def _follow(self, handle: Any) -> None:
        from tuitune.export.process import DONE, FAILED, PROGRESS

        worker = get_current_worker()
        while not worker.is_cancelled:
            for message in handle.poll(timeout=0.2):
                if message["kind"] == PROGRESS:
                    self.post_message(self.Progressed(message["fraction"], message["message"]))
                elif message["kind"] == DONE:
                    self.post_message(self.Ended("export", result=message["result"]))
                    return
                elif message["kind"] == FAILED:
                    self.post_message(self.Ended("export", error=message["message"]))
                    return

    def on_export_screen_progressed(self, message: Progressed) -> None:
        self.progress.update(progress=min(max(message.fraction, 0.0), 1.0))
        self.phase.update(message.text)

    def on_export_screen_ended(self, message: Ended) -> None:
        kind, self.busy = message.kind, None
        if message.error is not None:
            self.phase.update(f"{kind} failed")
            self.result_panel.update(message.error)
            self.app.report(TuituneError(message.error), f"{kind.capitalize()} failed")
            return
        if kind == "export" and message.result is not None:
            self.result = ExportResult.from_dict(message.result)
            self.progress.update(progress=1.0)
            self.phase.update("done: verified")
            self.result_panel.update(self.result.report())
            self.notify(f"{self.result.main_file}", title="Export verified")
        elif kind == "push":
            if self.result is not None:
                self.result.pushed_url = message.url
                self.result_panel.update(self.result.report())
            self.phase.update(f"pushed to {message.url}")
            self.notify(str(message.url), title="Pushed")
        elif kind == "install":
            self.phase.update("llama.cpp installed")
            self.notify("llama-cpp-python installed; exporting now.", title="Installed")
            self.action_export()

    def action_cancel(self) -> None:
        if self.busy == "export" and self.handle is not None:
            self.workers.cancel_group(self, "export-follow")
            self.handle.cancel()
            self.busy = None
            self.phase.update("cancelled")
            self.result_panel.update("Export cancelled; nothing was kept.")

    @on(Button.Pressed, "#export-cancel")
    def _cancel_pressed(self) -> None:
        self.action_cancel()

    # ------------------------------------------------------------------ the llama.cpp extra
    def _offer_install(self, request: ExportRequest) -> None:
        extra = extras.EXTRAS["llamacpp"]
        question = (f"GGUF {request.resolved_quant} needs llama.cpp's quantizer, which is not installed.\n\n"
                    f"Install {extra.requirement} now? It {extra.note}.\n\nOr pick q8_0, f16 or bf16, which "
                    "need nothing more.")

        def answered(yes: bool | None) -> None:
            if yes:
                self._install(request)

        self.app.push_screen(ConfirmModal(question, confirm_label="Install (y)", danger=False), answered)

    def _install(self, request: ExportRequest) -> None:
        from tuitune.chat.targets import resolve_target
        from tuitune.export.runner import output_folder
        from tuitune.paths import cache_dir

        try:
            log = output_folder(request, resolve_target(request.target, request.runs_root)).parent / "install.log"
        except TuituneError:
            log = cache_dir() / "install-llamacpp.log"
        self.busy = "install"
        self.progress.update(total=None)
        self.phase.update(f"installing llama-cpp-python (output in {log})")
        self._run_install(log)

    @work(thread=True, exclusive=True, group="export-install", name="llama.cpp install", exit_on_error=False)
    def _run_install(self, log: Path) -> None:
        try:
            extras.install("llamacpp", log)
        except TuituneError as exc:
            self.post_message(self.Ended("install", error=str(exc)))
            return
        self.post_message(self.Ended("install"))

    # ------------------------------------------------------------------ push
    @on(Button.Pressed, "#export-push")
    def action_push(self) -> None:
        if self.busy:
            self.notify(f"The {self.busy} is still running; wait for it.", severity="warning")
            return
        repo = self.value("repo")
        if not repo:
            self.notify("Type the Hub repo to push to (owner/name) in the Push to field.", severity="warning")
            return
        folder = Path(self.result.path) if self.result is not None else self._existing_export()
        if folder is None:
            self.notify("Nothing to push yet: export first (the folder must hold a verified export).",
                        severity="warning")
            return
        self.busy = "push"
        self.progress.update(total=None)
        self.phase.update(f"uploading {folder} to {repo}")
        self._push(folder, repo)

    def _existing_export(self) -> Path | None:
        """The verified export folder the current settings point at, if one is on disk."""
        from tuitune.chat.targets import resolve_target
        from tuitune.export.runner import MANIFEST, output_folder

        try:
            request = self.request()
            folder = output_folder(request, resolve_target(request.target, request.runs_root))
        except (TuituneError, AttributeError):
            return None
        return folder if (folder / MANIFEST).exists() else None

    @work(thread=True, exclusive=True, group="export-push", name="hub push", exit_on_error=False)
    def _push(self, folder: Path, repo: str) -> None:
        from tuitune.export.push import check_push, push_folder

        try:
            token = check_push(repo)
            url = push_folder(folder, repo, token, message=f"tuitune export: {folder.name}")
        except TuituneError as exc:
            self.post_message(self.Ended("push", error=str(exc)))
            return
        self.post_message(self.Ended("push", url=url))
