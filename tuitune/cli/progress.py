"""The headless commands' progress output: one line per trainer event, a redrawn bar on a terminal."""

from __future__ import annotations

import shutil
import time

from tuitune import events as ev


class ProgressLine:
    def __init__(self, stream):
        self.stream = stream
        self.tty = stream.isatty()
        self.first_loss: float | None = None
        self._last_plain = 0.0
        self._open = False

    def show(self, event: dict) -> None:
        kind = event["type"]
        if kind == ev.STEP:
            if self.first_loss is None:
                self.first_loss = event.get("loss")
            self._step(event)
        elif kind == ev.STARTED:
            self.message(f"{event.get('model')} · {event.get('method', '').upper()} · {event.get('device')} · "
                         f"{event.get('trainable_params', 0):,} trainable of {event.get('total_params', 0):,} · "
                         f"{event.get('rows')} rows · kernels {event.get('kernels')}")
        elif kind in (ev.LOG, ev.WARNING):
            level = "warning" if kind == ev.WARNING else event.get("level", "info")
            if level in ("info", "warning", "error"):
                self.message(f"{level}: {event.get('text')}" if level != "info" else event.get("text", ""))
        elif kind == ev.CHECKPOINT:
            self.message(f"checkpoint: {event.get('path')}")
        elif kind == ev.EVAL:
            self.message(f"eval loss at step {event.get('step')}: {event.get('eval_loss'):.4f}")
        elif kind in (ev.PAUSED, ev.RESUMED):
            self.message(f"{kind} at step {event.get('step')}")

    def _step(self, e: dict) -> None:
        step, total = e.get("step", 0), max(1, e.get("max_steps") or 1)
        width = 24
        filled = int(width * min(step, total) / total)
        parts = [f"step {step}/{total}", "[" + "#" * filled + "." * (width - filled) + "]",
                 f"loss {e['loss']:.4f}"]
        if e.get("reward_margin") is not None:  # DPO / ORPO
            parts.append(f"margin {e['reward_margin']:.3f}")
            if e.get("reward_accuracy") is not None:
                parts.append(f"acc {e['reward_accuracy']:.0%}")
        if e.get("lr") is not None:
            parts.append(f"lr {e['lr']:.2e}")
        if e.get("tokens_per_s"):
            parts.append(f"{e['tokens_per_s']:,.0f} tok/s")
        if e.get("eta_s") is not None:
            parts.append(f"ETA {duration_text(e['eta_s'])}")
        line = "  ".join(parts)
        if self.tty:
            columns = shutil.get_terminal_size((100, 20)).columns
            self.stream.write("\r" + line[: columns - 1].ljust(min(columns - 1, len(line) + 2)))
            self._open = True
        elif time.monotonic() - self._last_plain >= 2 or step == total:
            self.stream.write(line + "\n")
            self._last_plain = time.monotonic()
        self.stream.flush()

    def message(self, text: str) -> None:
        self.end()
        self.stream.write(text + "\n")
        self.stream.flush()

    def end(self) -> None:
        if self._open:
            self.stream.write("\n")
            self._open = False


def duration_text(seconds: float | None) -> str:
    """45s, 4m05s or 1h02m ("?" when unknown)."""
    if seconds is None:
        return "?"
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
