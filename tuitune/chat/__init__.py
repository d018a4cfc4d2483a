"""Chat with a run, an adapter, a model or a .gguf file: targets, presets, history and streaming engines.

Importing the package loads no ML library: the engines (torch, transformers, llama.cpp) load when
`open_engine` (or `Chatter`) is called, so the UI can import this at start-up.
"""

from __future__ import annotations

from tuitune.chat.conversation import Conversation, Turn
from tuitune.chat.events import BASE, TUNED, Finished, GenerationStats, TextDelta
from tuitune.chat.presets import DEFAULT_PRESET, PRESETS, GenerationSettings, preset
from tuitune.chat.targets import ChatTarget, resolve_target

__all__ = ["BASE", "TUNED", "ChatTarget", "Chatter", "Conversation", "DEFAULT_PRESET", "Finished",
           "GenerationSettings", "GenerationStats", "PRESETS", "TextDelta", "Turn", "open_engine", "preset",
           "resolve_target"]


def open_engine(target: ChatTarget, engine: str = "auto"):
    from tuitune.chat.engines import open_engine as _open

    return _open(target, engine)


def Chatter(target: ChatTarget):  # noqa: N802 - the name the training demo has always used
    """The transformers engine for a target (greedy `answer()`, base and adapter in one model)."""
    from tuitune.chat.hf_engine import TransformersEngine

    return TransformersEngine(target)
