"""Snapshots of the Chat screen (a compare exchange, side by side) and the Export screen (a verified
export's path, size and checks) at 120x40, with fake engines and fixed numbers.

Update after an intended change with `pytest tests/ui/test_chat_export_snapshots.py --snapshot-update`
and look at the SVGs in tests/ui/__snapshots__/ before committing them.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest

from tests.ui.fakes import FakeExports, export_result, make_runs
from tests.ui.pilot import SIZE, make_app, wait_until

RUNS = Path(tempfile.gettempdir()) / "tuitune-snapshot-chat-runs"  # printed on screen: a fixed folder
FINISHED = "20251129-100000-smollm2-sample"


@pytest.fixture
def runs() -> Path:
    shutil.rmtree(RUNS, ignore_errors=True)
    RUNS.mkdir(parents=True)
    make_runs(RUNS)
    adapter = RUNS / FINISHED / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text('{"base_model_name_or_path": "smollm2-135m-instruct"}')
    yield RUNS
    shutil.rmtree(RUNS, ignore_errors=True)


@pytest.fixture(autouse=True)
def no_llamacpp(monkeypatch):
    from tuitune.export import extras

    monkeypatch.setattr(extras, "available", lambda name: False)


def test_chat_compare(snap_compare, tmp_path, runs):
    app = make_app(tmp_path, runs_root=runs)

    async def ready(pilot):
        app.open_chat(runs / FINISHED)
        await wait_until(pilot, lambda: app.current_mode == "chat" and app.screen.engine is not None, 5)
        screen = app.screen
        screen.status.update(f"Chatting with run {FINISHED} (fake engine)  ·  loaded in 2.0 s")  # no timing noise
        await pilot.press("ctrl+t")
        screen.message_input.value = "What is the capital of France?"
        screen.message_input.focus()
        await pilot.press("enter")
        await wait_until(pilot, lambda: not screen.generating and screen.conversation.turns, 5, "the answers")
        await pilot.pause(0.05)

    assert snap_compare(app, terminal_size=SIZE, run_before=ready)


def test_export_done(snap_compare, tmp_path, runs):
    exports = FakeExports()
    app = make_app(tmp_path, runs_root=runs, start_export=exports)

    async def ready(pilot):
        app.open_export(runs / FINISHED)
        await wait_until(pilot, lambda: app.current_mode == "export" and app.screen.query("#export-target")
                         and app.screen.value("target"), 5)
        await pilot.press("ctrl+r")
        await wait_until(pilot, lambda: exports.handles, 5)
        folder = runs / FINISHED / "exports" / "gguf-q8_0"
        exports.handles[0].feed({"kind": "progress", "fraction": 0.7, "message": "verifying"},
                                {"kind": "done", "result": export_result(folder)})
        await wait_until(pilot, lambda: app.screen.result is not None, 5)
        await pilot.pause(0.05)

    assert snap_compare(app, terminal_size=SIZE, run_before=ready)
