"""The app shell: modes and keys, help, themes and settings, palette, training start, the quit guard."""

from __future__ import annotations

import pytest

from tests.ui.pilot import SIZE, make_app, text_of, wait_until
from tuitune.errors import TuituneError
from tuitune.ui.app import TuituneApp, run_app
from tuitune.ui.screens import SCREENS

pytestmark = pytest.mark.anyio


async def test_every_screen_has_an_fkey_and_a_digit(tmp_path):
    app = make_app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        assert app.current_mode == "gpu"
        for entry in SCREENS:
            await pilot.press(entry.fkey)
            await pilot.pause()
            assert app.current_mode == entry.mode, entry.fkey
        # digits reach the app wherever no text field has focus (GPU, Models, Runs screens)
        for digit, mode in (("1", "gpu"), ("2", "models"), ("6", "runs"), ("1", "gpu")):
            await pilot.press(digit)
            await pilot.pause()
            assert app.current_mode == mode, digit


def test_no_binding_uses_a_tmux_prefix_and_all_have_ids_and_descriptions():
    classes = [TuituneApp] + [entry.screen for entry in SCREENS]
    for cls in classes:
        for binding in cls.BINDINGS:
            keys = binding.key.split(",")
            assert not {"ctrl+b", "ctrl+a"} & set(keys), (cls.__name__, binding.key)
    for binding in TuituneApp.BINDINGS:
        assert binding.id and binding.description, binding


async def test_f1_shows_the_key_map_and_escape_closes_it(tmp_path):
    from tuitune.ui.screens.help import HelpScreen

    app = make_app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("f1")
        await pilot.pause()
        assert isinstance(app.screen, HelpScreen)
        keys = text_of(app.screen.key_table())
        for needle in ("screen.runs.fkey", "app.quit", "runs.delete", "models.rescan", "Command palette"):
            assert needle in keys
        await pilot.press("escape")
        await pilot.pause()
        assert not isinstance(app.screen, HelpScreen)
        assert app.current_mode == "gpu"
        await pilot.press("f1")
        await pilot.press("f7")  # a screen key closes help on the way
        await pilot.pause()
        assert app.current_mode == "runs"
        await pilot.press("f2")
        await pilot.pause()
        assert not isinstance(app.screen, HelpScreen)


async def test_theme_switch_is_remembered_and_recolours_charts(tmp_path):
    from tuitune.ui.settings import load_settings
    from tuitune.ui.widgets.theme_colors import theme_colors

    app = make_app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        assert app.theme == "tuitune-dark"
        dark = theme_colors(app)
        app.theme = "tuitune-light"
        await pilot.pause()
        light = theme_colors(app)
        assert dark["loss"] != light["loss"] and dark["background"] != light["background"]
        app.theme = "nord"  # a built-in theme still gets every colour role
        await pilot.pause()
        assert set(theme_colors(app)) == set(light)
    assert load_settings().theme == "nord"
    again = make_app(tmp_path)
    async with again.run_test(size=SIZE):
        assert again.theme == "nord"


async def test_user_theme_file_is_loaded_and_a_bad_one_is_reported(tmp_path):
    from tuitune.paths import config_dir

    folder = config_dir() / "themes"
    folder.mkdir(parents=True)
    (folder / "mine.toml").write_text('name = "mine"\nprimary = "#ff00aa"\ndark = true\n')
    (folder / "broken.toml").write_text('name = "broken"\nprimary = "not-a-colour"\n')
    app = make_app(tmp_path, theme="mine")
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        assert app.theme == "mine"
        assert not (config_dir() / "settings.toml").exists()  # --theme is for this session only
        messages = [n.message for n in app._notifications]
        assert any("broken.toml" in m and "primary" in m for m in messages), messages


def test_unknown_theme_on_the_command_line_is_refused(tmp_path):
    with pytest.raises(TuituneError, match="tuitune-light"):
        make_app(tmp_path, theme="no-such-theme")


def test_run_app_passes_terminal_flags(monkeypatch):
    seen = {}

    def fake_run(self, **kwargs):
        seen.update(kwargs)
        return 0

    import tuitune.ui.app as app_module

    monkeypatch.setenv("TUITUNE_FAKE_GPU", "none")
    monkeypatch.setattr(TuituneApp, "run", fake_run)
    monkeypatch.setattr(app_module, "interactive_terminal", lambda: True)
    assert run_app(no_mouse=True, inline=True, theme="tuitune-light") == 0
    assert seen == {"mouse": False, "inline": True}


def test_without_a_terminal_the_app_says_what_to_use_instead(monkeypatch):
    import tuitune.ui.app as app_module

    monkeypatch.setattr(app_module, "interactive_terminal", lambda: False)
    with pytest.raises(TuituneError, match="needs an interactive terminal.*tuitune train"):
        run_app()


async def test_palette_switches_theme_and_screen(tmp_path):
    app = make_app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("ctrl+p")
        await pilot.pause()
        await pilot.press(*"Theme: tuitune-light")
        await pilot.pause(0.3)
        await pilot.press("enter")
        await pilot.pause()
        assert app.theme == "tuitune-light"
        await pilot.press("ctrl+p")
        await pilot.pause()
        await pilot.press(*"Go to Runs screen")
        await pilot.pause(0.3)
        await pilot.press("enter")
        await pilot.pause()
        assert app.current_mode == "runs"


async def test_palette_offers_tuitune_actions_and_runs(tmp_path, runs_root):
    from tuitune.ui.commands import TuituneCommands

    app = make_app(tmp_path, runs_root=runs_root)
    async with app.run_test(size=SIZE) as pilot:
        provider = TuituneCommands(app.screen)
        await provider.startup()
        names = [name for name, _, _ in provider.commands()]
        for wanted in ("Start training", "New config", "Load config…", "Save config…", "Theme: tuitune-light",
                       "Open run: 20251129-120000-qwen-chat", "Go to GPU screen"):
            assert wanted in names
        assert app.start_training() is app.live_handle
        await pilot.pause()
        live = {name: callback for name, callback, _ in provider.commands()}
        assert "Open the live run" in live
        live["Stop training"]()
        assert app.live_handle.controls == ["stop"]


async def test_start_training_creates_a_run_and_opens_the_monitor(tmp_path):
    app = make_app(tmp_path)
    trainer = app.spawn_trainer
    async with app.run_test(size=SIZE) as pilot:
        app.config.training.max_steps = 7
        handle = app.start_training()
        await wait_until(pilot, lambda: app.current_mode == "monitor" and app.screen.run_path is not None)
        assert handle is app.live_handle and handle is trainer.handles[0]
        call = trainer.calls[0]
        assert call.config.training.max_steps == 7 and call.resume_from is None
        run_path = call.run_dir.path
        assert run_path.parent == tmp_path / "runs" and (run_path / "config.toml").exists()
        assert app.screen.run_path == run_path
        assert app.start_training() is None  # one live run at a time
        assert len(trainer.calls) == 1


async def test_a_failing_spawn_is_a_toast_not_a_crash(tmp_path):
    def broken(config, run_dir, resume_from=None):
        raise TuituneError("no GPU memory left for this run")

    app = make_app(tmp_path, spawn_trainer=broken)
    async with app.run_test(size=SIZE) as pilot:
        assert app.start_training() is None
        await pilot.pause()
        assert any("no GPU memory" in n.message for n in app._notifications)
        assert app.is_running and app.live_handle is None


async def test_a_failing_worker_is_a_toast_not_a_crash(tmp_path):
    app = make_app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        def explode():
            raise RuntimeError("disk on fire")

        worker = app.run_worker(explode, thread=True, name="probe", exit_on_error=False)
        await wait_until(pilot, lambda: worker.is_finished, timeout=2)
        await pilot.pause()
        assert any("disk on fire" in n.message for n in app._notifications)
        assert app.is_running


async def test_quit_without_a_live_run_exits_at_once(tmp_path):
    app = make_app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("ctrl+q")
        await pilot.pause()
        assert not app.is_running


@pytest.mark.parametrize("key, stopped, detached", [("s", True, False), ("k", False, True)])
async def test_quit_with_a_live_run_asks_stop_or_keep(tmp_path, key, stopped, detached):
    from tuitune.ui.widgets.quit_dialog import QuitDialog

    app = make_app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        handle = app.start_training()
        await pilot.pause()
        await pilot.press("ctrl+q")
        await pilot.pause()
        assert isinstance(app.screen, QuitDialog)
        await pilot.press(key)
        await pilot.pause()
        assert not app.is_running
    assert (handle.controls == ["stop"]) is stopped
    assert handle.detached is detached


async def test_quit_dialog_cancel_keeps_the_app(tmp_path):
    from tuitune.ui.widgets.quit_dialog import QuitDialog

    app = make_app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        handle = app.start_training()
        await pilot.pause()
        await pilot.press("ctrl+q")
        await pilot.pause()
        await pilot.press("escape")
        await pilot.pause()
        assert app.is_running and not isinstance(app.screen, QuitDialog)
        assert handle.controls == [] and not handle.detached


async def test_save_and_load_config_through_the_prompt(tmp_path):
    target = tmp_path / "my-run.toml"
    app = make_app(tmp_path)
    received = []
    async with app.run_test(size=SIZE) as pilot:
        app.config_changed_signal.subscribe(app, received.append)
        app.config.lora.r = 64
        app.action_save_config()
        await pilot.pause()
        app.screen.path_input.value = str(target)
        await pilot.press("enter")
        await pilot.pause()
        assert target.exists() and "r = 64" in target.read_text()
        app.new_config()
        assert app.config.lora.r == 16
        app.action_load_config()
        await pilot.pause()
        app.screen.path_input.value = str(target)
        await pilot.press("enter")
        await pilot.pause()
        assert app.config.lora.r == 64 and app.config_path == target
        assert len(received) == 2  # new + load
        bad = tmp_path / "bad.toml"
        bad.write_text("[lora]\nr = 0\n")
        assert app.load_config_file(bad) is False
        await pilot.pause()
        assert app.config.lora.r == 64
        assert any("lora.r" in n.message for n in app._notifications)


async def test_keymap_from_settings_remaps_a_screen_key(tmp_path):
    from tuitune.ui.settings import Settings, save_settings

    save_settings(Settings(keymap={"screen.runs": "r"}))
    app = make_app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("r")
        await pilot.pause()
        assert app.current_mode == "runs"


async def test_toasts_show_square_brackets_as_written(tmp_path):
    """Toasts carry paths and rows: `[/]` (which markup cannot close) and `[INST]` show as written."""
    from textual.widgets._toast import Toast

    app = make_app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        app.screen.notify("data.jsonl row 3: [INST] hi [/INST] then [/]", severity="error")
        await wait_until(pilot, lambda: len(app._notifications))
        notification = list(app._notifications)[-1]
        assert not notification.markup
        assert Toast(notification).render().plain == "data.jsonl row 3: [INST] hi [/INST] then [/]"


@pytest.mark.parametrize("dialog", ["confirm", "quit"])
async def test_dialogs_show_square_brackets_as_written(tmp_path, dialog):
    from tuitune.ui.widgets.confirm import ConfirmModal
    from tuitune.ui.widgets.quit_dialog import QuitDialog

    modal = ConfirmModal("Delete run exp[/x][old]?") if dialog == "confirm" else QuitDialog("exp[/x][old]")
    app = make_app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        app.push_screen(modal)
        await wait_until(pilot, lambda: app.screen is modal and modal.is_mounted)
        await pilot.pause()
        assert "exp[/x][old]" in text_of(modal.question_label)
