"""The Monitor survives what goes wrong under it and says so, in a toast and in its log: a trainer
that dies without a final event, damaged and torn lines in events.jsonl, the run folder deleted
while the run goes on, and a full disk."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

from tests.ui.fakes import FakeHandle
from tests.ui.pilot import SIZE, make_app, wait_until
from tests.ui.test_monitor import log_lines, make_run, opened, started, status_text, step
from tuitune import events as ev

pytestmark = pytest.mark.anyio


def toasts(app) -> list[str]:
    shown: list[str] = []
    app.notify = lambda message, **kwargs: shown.append(message)
    return shown


def notices(screen) -> str:
    return "\n".join(line for line in log_lines(screen) if line.startswith("NOTICE: "))


def sleeper() -> subprocess.Popen:
    """A live process whose pid stands for a background trainer's."""
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])


def checkpoint(run, n: int) -> None:
    folder = run.checkpoints_dir / f"step-{n}"
    folder.mkdir()
    (folder / "COMPLETE").write_text("")


async def test_a_trainer_that_dies_without_a_word_shows_as_failed_with_its_last_checkpoint(tmp_path):
    run = make_run(tmp_path / "runs")
    checkpoint(run, 2)
    handle = FakeHandle(run)
    handle.feed(started(), step(1), step(2), step(3))
    process = sleeper()
    run.pid_path.write_text(str(process.pid))  # a SIGKILL leaves the pid file behind
    app = make_app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        app.live_handle = handle
        app.open_run(run.path)
        await wait_until(pilot, lambda: opened(app) and "running" in status_text(app.screen))
        shown = toasts(app)
        process.kill()
        process.wait()
        handle.alive = False
        screen = app.screen
        await wait_until(pilot, lambda: "failed" in status_text(screen))
        said = notices(screen)
        assert "ended without a final event at step 3" in said
        assert "Last checkpoint: step-2" in said and f"--resume {run.name}" in said
        assert any("ended without a final event" in text for text in shown)


async def test_damaged_and_torn_lines_of_a_background_run_are_skipped_and_said(tmp_path):
    run = make_run(tmp_path / "runs")
    process = sleeper()
    run.pid_path.write_text(str(process.pid))
    for event in (started(), step(1)):
        run.append_event(event)
    app = make_app(tmp_path)
    try:
        async with app.run_test(size=SIZE) as pilot:
            app.open_run(run.path)
            await wait_until(pilot, lambda: opened(app) and app.screen.state.step == 1)
            screen = app.screen
            shown = toasts(app)
            with open(run.events_path, "a", encoding="utf-8") as handle:
                handle.write("{this is not json\n")
                handle.write(ev.to_line(step(2)) + "\n")
                handle.write('{"type": "step", "ts": 1767225606.0, "step": 3, "lo')  # killed mid-write
            await wait_until(pilot, lambda: "not events" in notices(screen))
            assert screen.state.step == 2
            process.kill()
            process.wait()
            await wait_until(pilot, lambda: "failed" in status_text(screen))
            said = notices(screen)
            assert "1 line(s) of" in said and "were skipped" in said
            assert "The last line of" in said and "is cut off" in said
            assert "ended without a final event at step 2" in said and "saved no checkpoint" in said
            assert len(shown) == 3, shown
    finally:
        process.kill()


async def test_the_run_folder_deleted_under_a_live_run(tmp_path):
    run = make_run(tmp_path / "runs")
    handle = FakeHandle(run)
    handle.feed(started(), step(1))
    app = make_app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        app.live_handle = handle
        app.open_run(run.path)
        await wait_until(pilot, lambda: opened(app) and app.screen.state.step == 1)
        screen = app.screen
        shown = toasts(app)
        shutil.rmtree(run.path)
        handle.events.put(step(2))  # the trainer goes on; its events still come over the queue
        await wait_until(pilot, lambda: "was deleted" in notices(screen) and screen.state.step == 2)
        assert "The trainer still runs" in notices(screen)
        assert any("was deleted" in text for text in shown)
        assert "running" in status_text(screen)


async def test_a_full_disk_is_said_while_training_goes_on_then_when_it_stops_the_run(tmp_path):
    run = make_run(tmp_path / "runs")
    handle = FakeHandle(run)
    handle.feed(started(), step(1))
    app = make_app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        app.live_handle = handle
        app.open_run(run.path)
        await wait_until(pilot, lambda: opened(app) and app.screen.state.step == 1)
        screen = app.screen
        shown = toasts(app)
        # What EventSink sends when events.jsonl cannot be written, then the checkpoint fault.
        handle.events.put(ev.make(ev.WARNING, notify=True, text="Cannot write events.jsonl (No space "
                                  "left on device): training goes on"))
        handle.events.put(step(2))
        handle.events.put(ev.make(ev.FAILED, kind="disk_full", message="The disk filled up while writing "
                                  "the run at step 4. The previous checkpoint step-2 is intact.",
                                  advice="Free space, then resume."))
        handle.alive = False
        await wait_until(pilot, lambda: "failed" in status_text(screen))
        assert any("No space left on device" in text for text in shown)
        assert any("The disk filled up" in text for text in shown)
        lines = "\n".join(log_lines(screen))
        assert "WARNING: Cannot write events.jsonl" in lines and "FAILED (disk_full)" in lines
        assert "advice: Free space, then resume." in lines
