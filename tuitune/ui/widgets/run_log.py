"""The Monitor's log: one line per notable trainer event (stamped with the time since the start),
then the new lines of train.log, under a line cap."""

from __future__ import annotations

from typing import Any

from textual.widgets import Log

from tuitune import events as ev
from tuitune.run_state import RunState
from tuitune.ui.widgets.loss_chart import format_value
from tuitune.ui.widgets.run_stats import clock_text

LOG_LINES = 1000  # the line cap


def elapsed_stamp(event: dict[str, Any], started_at: float | None) -> str:
    ts = event.get("ts")
    if ts is None or started_at is None:
        return "+--:--:--"
    return "+" + clock_text(ts - started_at)


def event_lines(event: dict[str, Any], state: RunState) -> list[str]:
    """The log lines of one event, given the state with that event already applied."""
    kind = event.get("type")
    stamp = elapsed_stamp(event, state.started_at)
    if kind == ev.STARTED:
        params = event.get("trainable_params")
        extra = f", {params:,} trainable parameters" if isinstance(params, int) else ""
        rows = event.get("rows")
        extra += f", {rows:,} training rows" if isinstance(rows, int) else ""
        lines = [f"{stamp} started {state.model} on {state.device}{extra}"]
        if event.get("kernels"):
            lines.append(f"{stamp} kernels: {event['kernels']}")
        return lines
    if kind == ev.EVAL and event.get("eval_loss") is not None:
        return [f"{stamp} eval at step {event.get('step')}: loss {format_value(float(event['eval_loss']))}"]
    if kind == ev.CHECKPOINT:
        return [f"{stamp} checkpoint at step {event.get('step')}: {event.get('path')}"]
    if kind == ev.LOG:
        return [f"{stamp} {event.get('level', 'info')}: {event.get('text', '')}"]
    if kind == ev.WARNING:
        return [f"{stamp} WARNING: {event.get('text', '')}"]
    if kind in (ev.PAUSED, ev.RESUMED):
        return [f"{stamp} {kind} at step {event.get('step')}"]
    if kind == ev.FINISHED:
        summary = event.get("summary") or {}
        loss = summary.get("final_loss")
        return [f"{stamp} {state.status} after {summary.get('steps', '?')} steps"
                + (f", final loss {format_value(float(loss))}" if loss is not None else "")
                + (f"; adapter in {summary['adapter_path']}" if summary.get("adapter_path") else "")]
    if kind == ev.FAILED:
        lines = [f"{stamp} FAILED ({event.get('kind', 'error')}): {event.get('message', '')}"]
        if event.get("advice"):
            lines.append(f"{stamp} advice: {event['advice']}")
        return lines
    return []


class RunLog(Log):
    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(max_lines=LOG_LINES, id=id)
