"""Chat screen: talk to a run's adapter, an adapter folder, a model or a .gguf file, streamed token by token.

The engine (tuitune.chat) loads in a thread worker and generates in another; text reaches the screen
as messages in small batches, so the UI never waits on the model. Compare mode streams the base
model's answer (adapter off) and the tuned model's side by side from one model in memory.
"""

from __future__ import annotations

import queue
import threading
import time
from typing import Any

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Button, Footer, Header, Input, Static, Switch
from textual.worker import get_current_worker

from tuitune.chat import BASE, TUNED, Conversation, Finished, TextDelta
from tuitune.errors import TuituneError
from tuitune.ui.widgets.chat_view import ChatView, MessageBox
from tuitune.ui.widgets.generation_panel import GenerationPanel

BATCH_SECONDS = 0.05  # streamed text is posted at most this often (20 redraws a second)


class ChatScreen(Screen):
    """Pick what to talk to, then chat; settings on the right, the conversation in the middle."""

    TITLE = "Chat"
    BINDINGS = [
        Binding("ctrl+r", "regenerate", "Regenerate", id="chat.regenerate", tooltip="Answer the last message again"),
        Binding("ctrl+n", "clear", "New chat", id="chat.clear", tooltip="Forget the conversation"),
        Binding("ctrl+y", "copy", "Copy", id="chat.copy", tooltip="Copy the conversation to the clipboard (OSC 52)"),
        Binding("ctrl+t", "toggle_compare", "Compare", id="chat.compare",
                tooltip="Stream the base model's answer beside the tuned one"),
        Binding("escape", "stop", "Stop", id="chat.stop", tooltip="Stop the answer being generated"),
    ]

    class Loaded(Message):
        def __init__(self, generation: int, engine: Any, seconds: float) -> None:
            super().__init__()
            self.generation, self.engine, self.seconds = generation, engine, seconds

    class LoadFailed(Message):
        def __init__(self, generation: int, error: BaseException) -> None:
            super().__init__()
            self.generation, self.error = generation, error

    class Streamed(Message):
        """Text and finished answers gathered by the generation worker for one redraw."""

        def __init__(self, events: list[Any], error: BaseException | None = None, done: bool = False) -> None:
            super().__init__()
            self.events, self.error, self.done = events, error, done

    def __init__(self) -> None:
        super().__init__(id="chat-screen")
        self.conversation = Conversation()
        self.engine: Any = None
        self.target: Any = None
        self.boxes: dict[str, MessageBox] = {}
        self.stop_event: threading.Event | None = None
        self.last_stats: str = ""
        self._generation = 0
        self._pending: str | None = None

    def compose(self) -> ComposeResult:
        yield Header(icon="▣")
        with Horizontal(id="chat-target-row"):
            yield Input(placeholder="run name or folder, adapter folder, model, or a .gguf file", id="chat-target")
            yield Button("Load", id="chat-load", variant="primary", tooltip="Load it (Enter in the field)")
        yield Static("Nothing loaded. Type a run, a folder, a model or a .gguf file above, or press t on the "
                     "Runs or Monitor screen.", id="chat-status", markup=False)
        with Horizontal(id="chat-body"):
            yield ChatView(id="chat-view")
            yield GenerationPanel(id="chat-settings")
        yield Input(placeholder="Message (Enter sends; Esc stops an answer)", id="chat-input")
        yield Footer()

    # widgets
    @property
    def status(self) -> Static:
        return self.query_one("#chat-status", Static)

    @property
    def view(self) -> ChatView:
        return self.query_one(ChatView)

    @property
    def panel(self) -> GenerationPanel:
        return self.query_one(GenerationPanel)

    @property
    def target_input(self) -> Input:
        return self.query_one("#chat-target", Input)

    @property
    def message_input(self) -> Input:
        return self.query_one("#chat-input", Input)

    @property
    def generating(self) -> bool:
        return self.stop_event is not None

    def on_mount(self) -> None:
        self.view.border_title = "Conversation"
        self.panel.border_title = "Generation"
        if self._pending is not None:
            pending, self._pending = self._pending, None
            self.open_target(pending)
        else:
            self.target_input.focus()

    # ------------------------------------------------------------------ loading
    def open_target(self, ref: str) -> None:
        """Load a run, adapter folder, model or .gguf file (app.open_chat calls this)."""
        if not self.is_mounted:
            self._pending = str(ref)
            return
        from tuitune.chat import resolve_target

        ref = str(ref).strip()
        self.target_input.value = ref
        if not ref:
            self.notify("Type what to chat with first: a run, an adapter folder, a model or a .gguf file.",
                        severity="warning")
            return
        if self.generating:
            self.action_stop()
        try:
            target = resolve_target(ref, self.app.runs_root)
        except TuituneError as exc:
            self.app.report(exc, "Cannot chat with that")
            return
        self._generation += 1
        self.engine, self.target = None, target
        self.conversation.clear()
        self.view.clear()
        self.status.update(f"Loading {target.label}{f' (base {target.base})' if target.has_adapter else ''}…")
        self._load(target, self._generation)
        self.message_input.focus()

    @work(thread=True, exclusive=True, group="chat-load", name="chat model loading", exit_on_error=False)
    def _load(self, target: Any, generation: int) -> None:
        started = time.perf_counter()
        try:
            engine = self.app.open_chat_engine(target)
        except BaseException as exc:  # shown on the screen, never a traceback
            self.post_message(self.LoadFailed(generation, exc))
            return
        self.post_message(self.Loaded(generation, engine, time.perf_counter() - started))

    def on_chat_screen_loaded(self, message: Loaded) -> None:
        if message.generation != self._generation:
            return
        self.engine = message.engine
        compare = "" if self.engine.has_adapter else "  ·  no adapter: compare mode unavailable"
        self.status.update(f"Chatting with {self.engine.description}  ·  loaded in {message.seconds:.1f} s{compare}")

    def on_chat_screen_load_failed(self, message: LoadFailed) -> None:
        if message.generation != self._generation:
            return
        self.target = None
        self.status.update(f"Could not load: {message.error}")
        self.app.report(message.error, "Chat model not loaded")

    # ------------------------------------------------------------------ sending
    @on(Input.Submitted, "#chat-target")
    @on(Button.Pressed, "#chat-load")
    def _load_pressed(self, event: Input.Submitted | Button.Pressed) -> None:
        event.stop()
        self.open_target(self.target_input.value)

    @on(Input.Submitted, "#chat-input")
    def _send(self, event: Input.Submitted) -> None:
        event.stop()
        text = event.value
        if not text.strip():
            return
        if self._ready() and self._respond(lambda: self.conversation.ask(text), user=text):
            self.message_input.value = ""

    @on(Input.Changed, "#gen-system")
    def _system_changed(self, event: Input.Changed) -> None:
        self.conversation.system_prompt = event.value

    def _ready(self) -> bool:
        if self.engine is None:
            self.notify("Load a model first (the field at the top)." if self.target is None
                        else "The model is still loading.", severity="warning")
            return False
        if self.generating:
            self.notify("An answer is still being generated: wait, or press Esc to stop it.", severity="warning")
            return False
        return True

    def _respond(self, messages_of, *, user: str | None = None) -> bool:
        """Start an answer to the messages `messages_of()` returns; False (with a toast) when it cannot."""
        try:
            settings = self.panel.settings()
            compare = self.panel.compare_switch.value
            if compare and not self.engine.has_adapter:
                raise TuituneError(f"Compare mode needs an adapter, and {self.engine.description} has none. "
                                   "Turn compare off, or load a run or an adapter folder.")
            messages = messages_of()
        except TuituneError as exc:
            self.app.report(exc, "Not sent")
            return False
        if user is not None:
            self.view.add_user(user)
        self.boxes = self.view.add_answer((BASE, TUNED) if compare else (TUNED,))
        self.stop_event = threading.Event()
        self._stream(self.engine, messages, settings, compare, self.stop_event)
        return True

    @work(thread=True, exclusive=True, group="chat-generate", name="chat generation", exit_on_error=False)
    def _stream(self, engine: Any, messages: list[dict], settings: Any, compare: bool, stop: threading.Event) -> None:
        """Relay the engine's stream: whatever arrived in the last BATCH_SECONDS is posted as one batch,
        so a token shows at once when tokens are slow and redraws stay few when they are fast."""
        worker = get_current_worker()
        arrived: queue.Queue = queue.Queue()
        end = object()

        def pump() -> None:
            try:
                events = engine.compare(messages, settings, stop_event=stop) if compare else \
                    engine.stream(messages, settings, stop_event=stop)
                for event in events:
                    arrived.put(event)
            except BaseException as exc:  # shown as a toast; what streamed so far stays on the screen
                arrived.put(exc)
            arrived.put(end)

        threading.Thread(target=pump, name="tuitune-chat-pump", daemon=True).start()
        finished = False
        while not finished:
            batch: list[Any] = []
            error: BaseException | None = None
            deadline = time.monotonic() + BATCH_SECONDS
            while not finished and (not batch or time.monotonic() < deadline):
                try:
                    item = arrived.get(timeout=BATCH_SECONDS)
                except queue.Empty:
                    if worker.is_cancelled:
                        stop.set()
                    continue
                if item is end:
                    finished = True
                elif isinstance(item, BaseException):
                    error = item
                else:
                    batch.append(item)
            self.post_message(self.Streamed(batch, error=error, done=finished))

    def on_chat_screen_streamed(self, message: Streamed) -> None:
        for event in message.events:
            box = self.boxes.get(event.side)
            if box is None:
                continue
            if isinstance(event, TextDelta):
                box.append(event.text)
            elif isinstance(event, Finished):
                box.finish(event.text or "(empty answer)", event.stats.describe())
                if event.side == TUNED:
                    self.conversation.answer(event.text, event.stats.to_dict())
                    self.last_stats = event.stats.describe()
                    self.status.update(f"Chatting with {self.engine.description}  ·  last answer: {self.last_stats}")
        self.view.follow()
        if message.done:
            self._answer_ended(message.error)

    def _answer_ended(self, error: BaseException | None) -> None:
        tuned = self.boxes.get(TUNED)
        if self.conversation.turns and self.conversation.turns[-1].role == "user":
            # stopped before the tuned answer finished, or failed: keep what came, so regenerate replaces it
            partial = tuned.text.strip() if tuned is not None else ""
            self.conversation.answer(partial, {"stop_reason": "stopped"})
            for box in self.boxes.values():
                if box.has_class("-streaming"):
                    box.finish(None, "failed" if error else "stopped by you")
        self.stop_event = None
        if error is not None:
            self.app.report(error, "Generation failed")

    # ------------------------------------------------------------------ actions
    def action_stop(self) -> None:
        if self.stop_event is not None:
            self.stop_event.set()

    def action_regenerate(self) -> None:
        if not self._ready():
            return
        if not self.conversation.turns:
            self.notify("Nothing to regenerate: send a message first.", severity="warning")
            return
        if self.conversation.turns[-1].role == "assistant":
            self.view.drop_last_answer()
        self._respond(self.conversation.regenerate)

    def action_clear(self) -> None:
        self.action_stop()
        self.conversation.clear()
        self.view.clear()
        self.notify("Conversation cleared", title="Chat")

    def action_copy(self) -> None:
        text = self.conversation.transcript()
        if not text:
            self.notify("Nothing to copy yet.", severity="warning")
            return
        self.app.copy_to_clipboard(text)
        self.notify(f"Copied {len(self.conversation.turns)} messages (where the terminal allows OSC 52).",
                    title="Chat")

    def action_toggle_compare(self) -> None:
        switch = self.panel.compare_switch
        switch.value = not switch.value

    @on(Switch.Changed, "#gen-compare")
    def _compare_changed(self, event: Switch.Changed) -> None:
        if event.value and self.engine is not None and not self.engine.has_adapter:
            self.notify("Compare mode needs an adapter (a run or an adapter folder); this model has none.",
                        severity="warning")
