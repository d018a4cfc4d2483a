"""The conversation pane of the Chat screen: one box per message, answers that grow as tokens stream in,
and compare rows holding the base model's and the tuned model's answers side by side."""

from __future__ import annotations

from textual.containers import Horizontal, VerticalScroll
from textual.widgets import Static

ROLE_TITLES = {"user": "you", "assistant": "model", "base": "base model (adapter off)", "tuned": "tuned model"}


class MessageBox(Static):
    """One message; `append` adds streamed text, `finish` shows how the answer ended (tokens/s)."""

    DEFAULT_CSS = """
    MessageBox { height: auto; padding: 0 1; margin: 0 0 1 0; border: round $primary 40%; }
    MessageBox.-user { border: round $accent 50%; }
    MessageBox.-streaming { border: round $primary; }
    """

    def __init__(self, role: str, text: str = "", *, title: str | None = None) -> None:
        super().__init__(text, markup=False, classes=f"-{role}")
        self.role = role
        self.text = text
        self.border_title = title or ROLE_TITLES.get(role, role)

    def append(self, text: str) -> None:
        self.text += text
        self.update(self.text)

    def start(self) -> None:
        self.add_class("-streaming")
        self.border_subtitle = "generating…"

    def finish(self, text: str | None, stats: str) -> None:
        if text is not None and text != self.text.strip():
            self.text = text
            self.update(text)
        self.remove_class("-streaming")
        self.border_subtitle = stats


class CompareRow(Horizontal):
    """Two answers to the same prompt: the base model's (left) and the tuned model's (right)."""

    DEFAULT_CSS = """
    CompareRow { height: auto; }
    CompareRow MessageBox { width: 1fr; }
    """


class ChatView(VerticalScroll):
    """The messages, oldest first; follows the newest text only while the reader is at the bottom."""

    DEFAULT_CSS = """
    ChatView { height: 1fr; padding: 0 1; }
    """

    def add_user(self, text: str) -> MessageBox:
        box = MessageBox("user", text)
        self._mount(box)
        return box

    def add_answer(self, sides: tuple[str, ...]) -> dict[str, MessageBox]:
        """Empty boxes for an answer about to stream: one ("tuned"), or two in compare mode."""
        boxes = {side: MessageBox(side if len(sides) > 1 else "assistant") for side in sides}
        for box in boxes.values():
            box.start()
        if len(sides) > 1:
            row = CompareRow(*boxes.values(), classes="answer")
            self._mount(row)
        else:
            for box in boxes.values():
                box.add_class("answer")
                self._mount(box)
        return boxes

    def drop_last_answer(self) -> None:
        answers = self.query(".answer")
        if answers:
            answers.last().remove()

    def clear(self) -> None:
        self.remove_children()

    def follow(self) -> None:
        """Keep the newest text in view, unless the reader scrolled up to read."""
        if self.max_scroll_y - self.scroll_y <= 3:
            self.scroll_end(animate=False)

    def _mount(self, widget) -> None:
        at_bottom = self.max_scroll_y - self.scroll_y <= 3
        self.mount(widget)
        if at_bottom:
            self.call_after_refresh(self.scroll_end, animate=False)
