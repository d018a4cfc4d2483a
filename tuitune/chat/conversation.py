"""A chat history: the system prompt and the turns, with clear, regenerate and a copyable transcript.

Pure Python: the Chat screen and `tuitune chat` keep one of these and hand `messages()` to an engine.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from tuitune.errors import TuituneError


@dataclass
class Turn:
    role: str  # user | assistant
    content: str
    stats: dict = field(default_factory=dict)  # tokens, tokens/s, stop reason (assistant turns)


@dataclass
class Conversation:
    system_prompt: str = ""  # empty: the chat template's own default (if it has one)
    turns: list[Turn] = field(default_factory=list)

    def messages(self) -> list[dict[str, str]]:
        """The chat-template input: an optional system message, then the turns in order."""
        messages = [{"role": "system", "content": self.system_prompt}] if self.system_prompt.strip() else []
        return messages + [{"role": t.role, "content": t.content} for t in self.turns]

    def ask(self, text: str) -> list[dict[str, str]]:
        """Add a user turn; the messages to generate the answer from."""
        if not text.strip():
            raise TuituneError("The message is empty: type something to send.")
        if self.turns and self.turns[-1].role == "user":
            raise TuituneError("The last message has no answer yet; wait for it or regenerate.")
        self.turns.append(Turn("user", text))
        return self.messages()

    def answer(self, text: str, stats: dict | None = None) -> None:
        """Record the assistant's reply to the last user turn."""
        self.turns.append(Turn("assistant", text, dict(stats or {})))

    def regenerate(self) -> list[dict[str, str]]:
        """Drop the last answer; the messages to generate a new one from."""
        if self.turns and self.turns[-1].role == "assistant":
            self.turns.pop()
        if not self.turns:
            raise TuituneError("Nothing to regenerate: send a message first.")
        return self.messages()

    def clear(self) -> None:
        self.turns.clear()

    def last_answer(self) -> str | None:
        for turn in reversed(self.turns):
            if turn.role == "assistant":
                return turn.content
        return None

    def transcript(self) -> str:
        """Plain text for the clipboard: the system prompt (if set) and each turn."""
        lines = [f"system: {self.system_prompt}"] if self.system_prompt.strip() else []
        lines += [f"{t.role}: {t.content}" for t in self.turns]
        return "\n\n".join(lines)
