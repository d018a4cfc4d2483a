"""Chat screen: open a run from Runs or Monitor with one key, stream an answer without blocking the UI,
presets and editable settings, system prompt, compare side by side, regenerate, clear, copy, stop."""

from __future__ import annotations

import threading

import pytest

from tests.ui.fakes import FakeChatEngines
from tests.ui.pilot import SIZE, make_app, text_of, wait_until
from tuitune.ui.widgets.chat_view import CompareRow, MessageBox

pytestmark = pytest.mark.anyio
FINISHED = "20251129-100000-smollm2-sample"


@pytest.fixture
def runs_root(runs_root):
    """The fixture runs, the finished one with an adapter folder (never loaded: the engines are fakes)."""
    adapter = runs_root / FINISHED / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text('{"base_model_name_or_path": "smollm2-135m-instruct"}')
    return runs_root


async def open_chat(pilot, app, runs_root, row: int = 2):
    await pilot.press("f7")
    await wait_until(pilot, lambda: app.screen.table.row_count == 3, 5, "the runs")
    app.screen.table.move_cursor(row=row)
    await pilot.press("t")
    await wait_until(pilot, lambda: app.current_mode == "chat" and app.screen.engine is not None, 5, "the engine")
    return app.screen


async def send(pilot, screen, text: str) -> None:
    screen.message_input.focus()
    screen.message_input.value = text
    await pilot.press("enter")


def answers(screen) -> list[MessageBox]:
    return [box for box in screen.query(MessageBox) if box.role != "user"]


async def test_runs_key_t_opens_the_run_in_chat_and_an_answer_streams(tmp_path, runs_root):
    hold = threading.Event()
    engines = FakeChatEngines(hold=hold)
    app = make_app(tmp_path, runs_root=runs_root, open_chat_engine=engines)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_chat(pilot, app, runs_root)
        target = engines.engines[0].target
        assert target.run == runs_root / FINISHED and target.has_adapter
        assert "Chatting with run " + FINISHED in text_of(screen.status)

        await send(pilot, screen, "What is the capital of France?")
        await wait_until(pilot, lambda: answers(screen) and answers(screen)[0].text == "Ahoy!", 5, "the first token")
        # mid-answer: the worker is still generating and the UI still takes input
        assert screen.generating and answers(screen)[0].has_class("-streaming")
        screen.message_input.value = ""
        await pilot.press("h", "i")
        assert screen.message_input.value == "hi"
        hold.set()
        await wait_until(pilot, lambda: not screen.generating, 5, "the end of the answer")
        box = answers(screen)[0]
        assert box.text == "Ahoy! Paris it be." and "tokens/s" in str(box.border_subtitle)
        assert "end of turn" in str(box.border_subtitle) and "tokens/s" in text_of(screen.status)
        assert [t.role for t in screen.conversation.turns] == ["user", "assistant"]
        assert screen.conversation.turns[1].stats["stop_reason"] == "eos"


async def test_monitor_key_t_opens_the_shown_run_in_chat(tmp_path, runs_root):
    engines = FakeChatEngines()
    app = make_app(tmp_path, runs_root=runs_root, open_chat_engine=engines)
    async with app.run_test(size=SIZE) as pilot:
        app.open_run(runs_root / FINISHED)
        await wait_until(pilot, lambda: app.current_mode == "monitor" and app.screen.run_path is not None, 5)
        await pilot.press("t")
        await wait_until(pilot, lambda: app.current_mode == "chat" and app.screen.engine is not None, 5)
        assert engines.engines[0].target.run == runs_root / FINISHED


async def test_presets_fill_the_fields_and_edited_settings_reach_the_engine(tmp_path, runs_root):
    engines = FakeChatEngines()
    app = make_app(tmp_path, runs_root=runs_root, open_chat_engine=engines)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_chat(pilot, app, runs_root)
        panel = screen.panel
        panel.choose_preset("factual")
        await wait_until(pilot, lambda: panel.field("temperature").value == "0.2", 5, "the factual preset")
        assert (panel.field("top_p").value, panel.field("top_k").value) == ("0.85", "20")
        panel.field("temperature").value = "0.35"
        await wait_until(pilot, lambda: panel.preset_select.value == "custom", 5, "custom after an edit")
        panel.field("max_new_tokens").value = "40"
        panel.query_one("#gen-system").value = "Talk like a pirate."
        await pilot.pause()
        await send(pilot, screen, "Hello")
        await wait_until(pilot, lambda: not screen.generating and engines.engines[0].calls, 5)
        call = engines.engines[0].calls[0]
        settings = call["settings"]
        assert (settings.temperature, settings.top_p, settings.top_k, settings.max_new_tokens) == (0.35, 0.85, 20, 40)
        assert call["messages"] == [{"role": "system", "content": "Talk like a pirate."},
                                    {"role": "user", "content": "Hello"}]


async def test_a_bad_setting_is_named_and_nothing_is_sent(tmp_path, runs_root):
    engines = FakeChatEngines()
    app = make_app(tmp_path, runs_root=runs_root, open_chat_engine=engines)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_chat(pilot, app, runs_root)
        screen.panel.field("top_p").value = "7"
        screen.panel.field("max_new_tokens").value = "lots"
        await send(pilot, screen, "Hello")
        await pilot.pause()
        message = " ".join(str(n.message) for n in app._notifications)
        assert "top_p = 7.0 is outside" in message and "max_new_tokens must be a whole number" in message
        assert engines.engines[0].calls == [] and screen.conversation.turns == []
        assert screen.panel.field("top_p").has_class("-invalid")


async def test_compare_streams_base_and_tuned_side_by_side(tmp_path, runs_root):
    engines = FakeChatEngines()
    app = make_app(tmp_path, runs_root=runs_root, open_chat_engine=engines)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_chat(pilot, app, runs_root)
        await pilot.press("ctrl+t")
        assert screen.panel.compare_switch.value
        await send(pilot, screen, "What is the capital of France?")
        await wait_until(pilot, lambda: not screen.generating and len(answers(screen)) == 2, 5, "both answers")
        row = screen.query_one(CompareRow)
        base, tuned = row.query(MessageBox)
        assert (base.role, base.text, tuned.role, tuned.text) == ("base", "Paris is the capital.", "tuned",
                                                                   "Ahoy! Paris it be.")
        assert base.region.y == tuned.region.y and base.region.x < tuned.region.x  # side by side
        assert [c["use_adapter"] for c in engines.engines[0].calls] == [False, True]
        assert screen.conversation.last_answer() == "Ahoy! Paris it be."


async def test_compare_needs_an_adapter(tmp_path, runs_root):
    engines = FakeChatEngines(has_adapter=False)
    app = make_app(tmp_path, runs_root=runs_root, open_chat_engine=engines)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_chat(pilot, app, runs_root)
        assert "compare mode unavailable" in text_of(screen.status)
        await pilot.press("ctrl+t")
        await send(pilot, screen, "Hi")
        await pilot.pause()
        assert "Compare mode needs an adapter" in " ".join(str(n.message) for n in app._notifications)
        assert engines.engines[0].calls == []


async def test_regenerate_clear_and_copy(tmp_path, runs_root):
    engines = FakeChatEngines()
    app = make_app(tmp_path, runs_root=runs_root, open_chat_engine=engines)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_chat(pilot, app, runs_root)
        await send(pilot, screen, "Hi")
        await wait_until(pilot, lambda: not screen.generating and len(answers(screen)) == 1, 5)
        await pilot.press("ctrl+r")
        await wait_until(pilot, lambda: len(engines.engines[0].calls) == 2 and not screen.generating, 5)
        await pilot.pause()
        calls = engines.engines[0].calls
        assert calls[1]["messages"] == calls[0]["messages"] == [{"role": "user", "content": "Hi"}]
        assert len(answers(screen)) == 1 and [t.role for t in screen.conversation.turns] == ["user", "assistant"]
        await pilot.press("ctrl+y")
        assert app.clipboard == "user: Hi\n\nassistant: Ahoy! Paris it be."
        await pilot.press("ctrl+n")
        await pilot.pause()
        assert screen.conversation.turns == [] and not screen.query(MessageBox)


async def test_escape_stops_an_answer_and_keeps_what_came(tmp_path, runs_root):
    hold = threading.Event()
    engines = FakeChatEngines(hold=hold)
    app = make_app(tmp_path, runs_root=runs_root, open_chat_engine=engines)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_chat(pilot, app, runs_root)
        await send(pilot, screen, "Hi")
        await wait_until(pilot, lambda: answers(screen) and answers(screen)[0].text == "Ahoy!", 5)
        await pilot.press("escape")
        hold.set()
        await wait_until(pilot, lambda: not screen.generating, 5)
        assert "stopped by you" in str(answers(screen)[0].border_subtitle)
        assert screen.conversation.turns[-1].content == "Ahoy!"


async def test_a_target_that_cannot_be_loaded_is_explained(tmp_path, runs_root):
    def refuse(target):
        from tuitune.errors import TuituneError

        raise TuituneError(f"Cannot load the model from {target.base}: no such folder.")

    app = make_app(tmp_path, runs_root=runs_root, open_chat_engine=refuse)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("f8")
        screen = app.screen
        screen.target_input.value = "no-such-model"
        screen.target_input.focus()
        await pilot.press("enter")
        await wait_until(pilot, lambda: "Could not load" in text_of(screen.status), 5)
        assert "no such folder" in text_of(screen.status)
        await send(pilot, screen, "Hi")
        await pilot.pause()
        assert "Load a model first" in " ".join(str(n.message) for n in app._notifications)
