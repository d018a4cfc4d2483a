"""Runs screen: the list from disk, open on the monitor, resume through the factory, delete with a modal."""

from __future__ import annotations

import pytest
from textual.widgets import DataTable

from tests.ui.fakes import write_run
from tests.ui.pilot import SIZE, make_app, text_of, wait_until
from tuitune.run_state import ACTIVE, ENDED
from tuitune.ui.screens.runs import STATUS_ROLE
from tuitune.ui.widgets.confirm import ConfirmModal

pytestmark = pytest.mark.anyio


async def open_runs(pilot, app, count: int) -> DataTable:
    await pilot.press("f7")
    table = app.screen.table
    await wait_until(pilot, lambda: table.row_count == count, timeout=5, what=f"{count} rows in the runs table")
    return table


def row_of(table: DataTable, name: str) -> list[str]:
    return [str(cell) for cell in table.get_row(name)]


def test_every_run_status_has_a_colour_and_no_other():
    assert set(STATUS_ROLE) == {"created", *ACTIVE, *ENDED}


async def test_lists_runs_with_status_duration_and_loss(tmp_path, runs_root):
    app = make_app(tmp_path, runs_root=runs_root)
    async with app.run_test(size=SIZE) as pilot:
        table = await open_runs(pilot, app, 3)
        finished = row_of(table, "20251129-100000-smollm2-sample")
        assert finished[1:6] == ["finished", "1.9234", "4m05s", "60/60", "smollm2-135m-instruct"]
        assert row_of(table, "20251129-110000-llama-bad-data")[1] == "failed"
        # A trainer gone without a final event (killed): failed, its last checkpoint named.
        assert row_of(table, "20251129-120000-qwen-chat")[1:6] == ["failed", "2.6012", "1m20s", "20/60",
                                                                   "qwen2.5-0.5b"]
        assert str(table.get_row_at(0)[0]) == "20251129-120000-qwen-chat"  # newest first
        table.move_cursor(row=0)
        await pilot.pause(0.1)
        detail = text_of(app.screen.detail)
        assert "ended without a final event at step 20" in detail
        assert "Last checkpoint: step-20" in detail and "--resume 20251129-120000-qwen-chat" in detail


async def test_open_shows_the_run_on_the_monitor(tmp_path, runs_root):
    app = make_app(tmp_path, runs_root=runs_root)
    async with app.run_test(size=SIZE) as pilot:
        table = await open_runs(pilot, app, 3)
        table.move_cursor(row=2)
        await pilot.press("o")
        await wait_until(pilot, lambda: app.current_mode == "monitor" and app.screen.run_path is not None, timeout=2)
        assert app.screen.run_path == runs_root / "20251129-100000-smollm2-sample"


async def test_resume_starts_a_trainer_from_the_last_checkpoint(tmp_path, runs_root):
    app = make_app(tmp_path, runs_root=runs_root)
    trainer = app.spawn_trainer
    async with app.run_test(size=SIZE) as pilot:
        table = await open_runs(pilot, app, 3)
        table.move_cursor(row=0)  # the killed run with checkpoint step-20
        await pilot.press("r")
        await wait_until(pilot, lambda: app.current_mode == "monitor", timeout=2)
        call = trainer.calls[0]
        run = runs_root / "20251129-120000-qwen-chat"
        assert call.run_dir.path == run
        assert call.resume_from == str(run / "checkpoints" / "step-20")
        assert call.config.model.name == "qwen2.5-0.5b"
        assert app.live_handle is trainer.handles[0]


async def test_resume_without_checkpoint_is_refused_with_the_reason(tmp_path, runs_root):
    app = make_app(tmp_path, runs_root=runs_root)
    async with app.run_test(size=SIZE) as pilot:
        table = await open_runs(pilot, app, 3)
        table.move_cursor(row=1)  # the failed run: no checkpoint
        await pilot.press("r")
        await pilot.pause(0.1)
        assert app.spawn_trainer.calls == []
        assert any("no complete checkpoint" in n.message for n in app._notifications)


@pytest.mark.parametrize("answer, deleted", [("y", True), ("escape", False)])
async def test_delete_asks_first(tmp_path, runs_root, answer, deleted):
    app = make_app(tmp_path, runs_root=runs_root)
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
        table = app.screen.table
        await wait_until(pilot, lambda: table.row_count == (2 if deleted else 3), timeout=2)


async def test_new_runs_appear_without_a_keypress(tmp_path, runs_root, monkeypatch):
    import tuitune.ui.screens.runs as runs_screen

    monkeypatch.setattr(runs_screen, "REFRESH_S", 0.2)
    app = make_app(tmp_path, runs_root=runs_root)
    async with app.run_test(size=SIZE) as pilot:
        table = await open_runs(pilot, app, 3)
        write_run(runs_root, "20251129-130000-new", [])
        await wait_until(pilot, lambda: table.row_count == 4, timeout=5, what="the new run listed")
        assert row_of(table, "20251129-130000-new")[1] == "created"


async def test_an_unreadable_runs_root_is_explained_on_the_screen(tmp_path, monkeypatch):
    import tuitune.runs

    def unreadable(root=None):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(tuitune.runs, "list_runs", unreadable)
    app = make_app(tmp_path, runs_root=tmp_path / "locked")
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("f7")
        label = app.screen.root_label
        await wait_until(pilot, lambda: "Cannot read" in text_of(label), timeout=2)
        assert "Permission denied" in text_of(label) and "--output" in text_of(label)
        assert app.is_running


async def test_best_checkpoint_and_evaluation_show_and_evaluate_runs_tuitune_eval(tmp_path, runs_root, monkeypatch):
    import json
    import sys

    from tuitune.evaluation.results import save_results
    from tuitune.ui.widgets.path_prompt import PathPrompt

    name = "20251129-100000-smollm2-sample"
    run = runs_root / name
    (run / "best.json").write_text(json.dumps({"step": 40, "eval_loss": 1.2345,
                                               "path": str(run / "checkpoints" / "step-40")}))
    save_results(run, {"ts": 1_767_225_600.0, "metrics": {"perplexity": {"base": 12.5, "tuned": 6.25}}})
    app = make_app(tmp_path, runs_root=runs_root)
    async with app.run_test(size=SIZE) as pilot:
        table = await open_runs(pilot, app, 3)
        screen = app.screen
        table.move_cursor(row=2)
        await pilot.pause(0.1)
        detail = text_of(screen.detail)
        assert "Best: step-40 (step 40, eval loss 1.2345)" in detail
        assert "Eval (base → tuned): perplexity 12.5 → 6.25" in detail
        held_out = tmp_path / "held_out.jsonl"
        held_out.write_text('{"instruction": "q", "output": "a"}\n')
        seen = []

        def fake_eval(run_path, data):  # what `tuitune eval` leaves behind, without loading a model
            seen.append((run_path, data))
            code = ("import sys; from tuitune.evaluation.results import save_results; "
                    "save_results(sys.argv[1], {'metrics': {'perplexity': {'base': 12.5, 'tuned': 3.5}}})")
            return [sys.executable, "-c", code, str(run_path)]

        monkeypatch.setattr(screen, "eval_command", fake_eval)
        await pilot.press("v")
        await wait_until(pilot, lambda: isinstance(app.screen, PathPrompt), timeout=5, what="the file prompt")
        app.screen.path_input.value = str(held_out)
        await pilot.press("enter")
        await wait_until(pilot, lambda: "perplexity 12.5 → 3.5" in text_of(screen.detail), timeout=30,
                         what="the new evaluation in the detail panel")
        assert seen == [(run, str(held_out))]


async def test_names_and_model_paths_with_square_brackets_show_as_written(tmp_path):
    """A run's name and model path are the user's text: `[old]` is not a style and `[/x]` closes nothing."""
    from tests.ui.fakes import T0
    from tuitune import events as ev

    write_run(tmp_path / "runs", "20251129-100000-exp[old]", [
        {"type": ev.STARTED, "ts": T0, "model": "/models/[/x][old]/llama", "max_steps": 4}],
        model="/models/[/x][old]/llama")
    app = make_app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        table = await open_runs(pilot, app, 1)
        await pilot.pause(0.1)
        row = row_of(table, "20251129-100000-exp[old]")
        assert row[0] == "20251129-100000-exp[old]" and row[5] == "/models/[/x][old]/llama"
        assert "exp[old]" in app.export_screenshot().replace("&#160;", " ")
