"""Runs screen: the list from disk, open on the monitor, resume through the factory, delete with a modal."""

from __future__ import annotations

import pytest
from textual.widgets import DataTable

from tuitune.ui.widgets.confirm import ConfirmModal

pytestmark = pytest.mark.anyio
SIZE = (120, 40)


async def open_runs(pilot, app, count: int) -> DataTable:
    await pilot.press("f7")
    table = app.screen.query_one("#runs-table", DataTable)
    for _ in range(100):
        await pilot.pause(0.02)
        if table.row_count == count:
            return table
    raise AssertionError(f"the runs table has {table.row_count} rows, expected {count}")


def row_of(table: DataTable, name: str) -> list[str]:
    return [str(cell) for cell in table.get_row(name)]


async def test_lists_runs_with_status_duration_and_loss(make_app, runs_root):
    app = make_app(runs_root=runs_root)
    async with app.run_test(size=SIZE) as pilot:
        table = await open_runs(pilot, app, 3)
        finished = row_of(table, "20251129-100000-smollm2-sample")
        assert finished[1:6] == ["finished", "1.9234", "4m05s", "60/60", "smollm2-135m-instruct"]
        assert row_of(table, "20251129-110000-llama-bad-data")[1] == "failed"
        assert row_of(table, "20251129-120000-qwen-chat")[1:6] == ["interrupted", "2.6012", "1m20s", "20/60",
                                                                   "qwen2.5-0.5b"]
        assert table.get_row_at(0)[0] == "20251129-120000-qwen-chat"  # newest first


async def test_open_shows_the_run_on_the_monitor(make_app, runs_root):
    app = make_app(runs_root=runs_root)
    async with app.run_test(size=SIZE) as pilot:
        table = await open_runs(pilot, app, 3)
        table.move_cursor(row=2)
        await pilot.press("o")
        for _ in range(50):
            await pilot.pause(0.02)
            if app.current_mode == "monitor" and getattr(app.screen, "run_path", None):
                break
        assert app.current_mode == "monitor"
        assert app.screen.run_path == runs_root / "20251129-100000-smollm2-sample"


async def test_resume_starts_a_trainer_from_the_last_checkpoint(make_app, runs_root, trainer_factory):
    app = make_app(runs_root=runs_root)
    async with app.run_test(size=SIZE) as pilot:
        table = await open_runs(pilot, app, 3)
        table.move_cursor(row=0)  # the interrupted run with checkpoint step-20
        await pilot.press("r")
        await pilot.pause(0.2)
        call = trainer_factory.calls[0]
        run = runs_root / "20251129-120000-qwen-chat"
        assert call["run_dir"].path == run
        assert call["resume_from"] == str(run / "checkpoints" / "step-20")
        assert call["config"].model.name == "qwen2.5-0.5b"
        assert app.live_handle is trainer_factory.handles[0]
        assert app.current_mode == "monitor"


async def test_resume_without_checkpoint_is_refused_with_the_reason(make_app, runs_root, trainer_factory):
    app = make_app(runs_root=runs_root)
    async with app.run_test(size=SIZE) as pilot:
        table = await open_runs(pilot, app, 3)
        table.move_cursor(row=1)  # the failed run: no checkpoint
        await pilot.press("r")
        await pilot.pause(0.1)
        assert trainer_factory.calls == []
        assert any("no complete checkpoint" in n.message for n in app._notifications)


@pytest.mark.parametrize("answer, deleted", [("y", True), ("escape", False)])
async def test_delete_asks_first(make_app, runs_root, answer, deleted):
    app = make_app(runs_root=runs_root)
    target = runs_root / "20251129-110000-llama-bad-data"
    async with app.run_test(size=SIZE) as pilot:
        table = await open_runs(pilot, app, 3)
        table.move_cursor(row=1)
        await pilot.press("d")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmModal)
        assert target.name in app.screen.question
        await pilot.press(answer)
        await pilot.pause(0.1)
        assert target.exists() is not deleted
        table = app.screen.query_one("#runs-table", DataTable)
        for _ in range(50):
            await pilot.pause(0.02)
            if table.row_count == (2 if deleted else 3):
                break
        assert table.row_count == (2 if deleted else 3)


async def test_new_runs_appear_without_a_keypress(make_app, runs_root, monkeypatch):
    import tuitune.ui.screens.runs as runs_screen
    from uifakes import write_run

    monkeypatch.setattr(runs_screen, "REFRESH_S", 0.2)
    app = make_app(runs_root=runs_root)
    async with app.run_test(size=SIZE) as pilot:
        table = await open_runs(pilot, app, 3)
        write_run(runs_root, "20251129-130000-new", [])
        for _ in range(100):
            await pilot.pause(0.05)
            if table.row_count == 4:
                break
        assert table.row_count == 4
        assert row_of(table, "20251129-130000-new")[1] == "created"


async def test_an_unreadable_runs_root_is_explained_on_the_screen(make_app, tmp_path, monkeypatch):
    import tuitune.runs

    def unreadable(root=None):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(tuitune.runs, "list_runs", unreadable)
    app = make_app(runs_root=tmp_path / "locked")
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("f7")
        label = app.screen.query_one("#runs-root")
        for _ in range(100):
            await pilot.pause(0.02)
            if "Cannot read" in str(label.content):
                break
        assert "Permission denied" in str(label.content) and "--output" in str(label.content)
        assert app.is_running
