"""The llama.cpp chat engine for .gguf files (through the optional `llama-cpp-python` package).

The chat template and stop tokens come from the file itself, as every llama.cpp runtime reads them.
Without the package, `.gguf` files chat through transformers instead (engines.open_engine decides).
"""

from __future__ import annotations

import functools
import os
import threading
import time
from pathlib import Path
from typing import Iterator

from tuitune.chat.events import STOP_EOS, STOP_LENGTH, STOP_STOPPED, TUNED, Finished, GenerationStats, TextDelta
from tuitune.chat.presets import GenerationSettings, preset
from tuitune.chat.targets import ChatTarget
from tuitune.errors import TuituneError

INSTALL_HINT = "pip install 'tuitune[llamacpp]'  (builds llama-cpp-python from source: about 5 minutes on 2 cores)"


def llamacpp_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("llama_cpp") is not None


PROBE = ("import sys\nfrom llama_cpp import Llama\n"
         "Llama(model_path=sys.argv[1], n_ctx=256, n_threads=1, verbose=False).create_completion('Hello there, how', "
         "max_tokens=2)\n")


@functools.lru_cache(maxsize=32)
def llamacpp_works(gguf: str) -> bool:
    """Whether llama.cpp is installed and generates from `gguf` without crashing, tried in a child process.

    A llama.cpp build can fail in native code (llama-cpp-python 0.3.36 built on the 2-core machine
    segfaults decoding any prompt of two tokens or more), which would take the whole app down; the
    automatic choices (chat engine, GGUF reload) fall back to transformers when this says no."""
    import subprocess
    import sys

    if not llamacpp_available():
        return False
    try:
        done = subprocess.run([sys.executable, "-c", PROBE, gguf], stdin=subprocess.DEVNULL, capture_output=True,
                              timeout=180, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


class LlamaCppEngine:
    name = "llama.cpp"
    has_adapter = False

    def __init__(self, target: ChatTarget, *, n_ctx: int = 4096, threads: int | None = None):
        if target.gguf is None:
            raise TuituneError(f"llama.cpp chats with .gguf files only; {target.label} is not one.")
        try:
            from llama_cpp import Llama
        except ImportError:
            raise TuituneError(f"llama.cpp is not installed. Install it with: {INSTALL_HINT}") from None
        self.target = target
        self.path = Path(target.gguf)
        try:
            self.llm = Llama(model_path=str(self.path), n_ctx=n_ctx, n_threads=threads or os.cpu_count() or 1,
                             verbose=False)
        except (ValueError, RuntimeError) as exc:
            raise TuituneError(f"llama.cpp cannot load {self.path}: {exc}. Re-export it, or chat with the run "
                               "through transformers instead.") from None
        self._lock = threading.Lock()

    @property
    def description(self) -> str:
        return f"{self.target.label} on cpu (llama.cpp)"

    def stream(self, messages: list[dict[str, str]], settings: GenerationSettings, *, use_adapter: bool = True,
               stop_event: threading.Event | None = None, side: str = TUNED) -> Iterator[TextDelta | Finished]:
        settings.check()
        stop_event = stop_event or threading.Event()
        with self._lock:
            started = time.perf_counter()
            first = None
            pieces: list[str] = []
            tokens = 0
            finish = None
            chunks = self.llm.create_chat_completion(
                messages=messages, stream=True, max_tokens=settings.max_new_tokens,
                temperature=settings.temperature, top_p=settings.top_p, top_k=settings.top_k,
                repeat_penalty=settings.repetition_penalty,
                **({"seed": settings.seed} if settings.seed is not None else {}))
            try:
                for chunk in chunks:
                    choice = chunk["choices"][0]
                    text = choice.get("delta", {}).get("content")
                    if text:
                        tokens += 1
                        first = first if first is not None else time.perf_counter() - started
                        pieces.append(text)
                        yield TextDelta(text, side)
                    finish = choice.get("finish_reason") or finish
                    if stop_event.is_set():
                        break
            finally:
                chunks.close()
            seconds = time.perf_counter() - started
        reason = STOP_STOPPED if stop_event.is_set() else STOP_LENGTH if finish == "length" else STOP_EOS
        stats = GenerationStats(new_tokens=tokens, seconds=seconds, first_token_s=first, stop_reason=reason,
                                engine=self.name)
        yield Finished("".join(pieces).strip(), stats, side)

    def compare(self, messages, settings, *, stop_event=None):
        raise TuituneError(f"Compare mode needs an adapter; {self.target.label} is a single exported model. "
                           "Open the run itself to compare the tuned model with its base.")

    def generate(self, messages, settings, *, use_adapter: bool = True) -> Finished:
        finished = None
        for event in self.stream(messages, settings):
            if isinstance(event, Finished):
                finished = event
        assert finished is not None
        return finished

    def answer(self, prompt: str, *, max_new_tokens: int = 96, use_adapter: bool = True) -> str:
        settings = preset("greedy", max_new_tokens=max_new_tokens)
        return self.generate([{"role": "user", "content": prompt}], settings).text
