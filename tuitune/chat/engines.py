"""Pick and load the chat engine for a target: llama.cpp for .gguf files when installed, else transformers.

The `ChatEngine` protocol is what the Chat screen's worker and `tuitune chat` drive.
"""

from __future__ import annotations

import threading
from typing import Iterator, Protocol

from tuitune.chat.events import Finished, TextDelta
from tuitune.chat.presets import GenerationSettings
from tuitune.chat.targets import ChatTarget

ENGINES = ("auto", "transformers", "llama.cpp")


class ChatEngine(Protocol):
    name: str
    has_adapter: bool
    description: str

    def stream(self, messages: list[dict[str, str]], settings: GenerationSettings, *, use_adapter: bool = True,
               stop_event: threading.Event | None = None, side: str = ...) -> Iterator[TextDelta | Finished]: ...

    def compare(self, messages: list[dict[str, str]], settings: GenerationSettings, *,
                stop_event: threading.Event | None = None) -> Iterator[TextDelta | Finished]: ...

    def generate(self, messages: list[dict[str, str]], settings: GenerationSettings, *,
                 use_adapter: bool = True) -> Finished: ...

    def answer(self, prompt: str, *, max_new_tokens: int = 96, use_adapter: bool = True) -> str: ...


def open_engine(target: ChatTarget, engine: str = "auto") -> ChatEngine:
    """Load the target into an engine (seconds to minutes: call it from a worker, never the UI loop)."""
    from tuitune.errors import TuituneError

    if engine not in ENGINES:
        raise TuituneError(f"Unknown chat engine {engine!r}; choose one of {', '.join(ENGINES)}.")
    if engine == "llama.cpp" or (engine == "auto" and target.kind == "gguf" and _llamacpp(str(target.gguf))):
        from tuitune.chat.llamacpp_engine import LlamaCppEngine

        return LlamaCppEngine(target)
    from tuitune.chat.hf_engine import TransformersEngine

    return TransformersEngine(target)


def _llamacpp(gguf: str) -> bool:
    from tuitune.chat.llamacpp_engine import llamacpp_works

    return llamacpp_works(gguf)
