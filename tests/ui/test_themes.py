"""Theme files and the settings file: tuitune's own themes, user themes, errors that name the problem."""

from __future__ import annotations

import pytest

from tests.ui.pilot import make_app
from tuitune.errors import TuituneError
from tuitune.themes.loader import bundled_themes, load_theme_file, theme_from_dict
from tuitune.ui.settings import Settings, load_settings, save_settings

pytestmark = pytest.mark.anyio


def test_tuitune_ships_a_dark_and_a_light_theme_with_chart_colours():
    themes = {theme.name: theme for theme in bundled_themes()}
    assert themes["tuitune-dark"].dark and not themes["tuitune-light"].dark
    for theme in themes.values():
        for variable in ("chart-loss", "chart-eval", "chart-lr", "fit-fits", "fit-tight", "fit-no"):
            assert variable in theme.variables, (theme.name, variable)


def test_a_bad_theme_file_reports_every_problem_at_once(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text('primary = "#12345"\ndark = "yes"\nshade = 3\n[variables]\nchart-loss = 5\n')
    with pytest.raises(TuituneError) as caught:
        load_theme_file(path)
    message = str(caught.value)
    for needle in (str(path), "name must be", "primary = '#12345' is not a colour", "dark must be true or false",
                   "unknown field(s) shade", "[variables]"):
        assert needle in message, needle


def test_a_minimal_theme_needs_only_name_and_primary():
    theme = theme_from_dict({"name": "mono", "primary": "#00aa00"}, "test")
    assert theme.name == "mono" and theme.primary == "#00aa00" and theme.dark


def test_settings_round_trip_and_errors(tmp_path):
    path = tmp_path / "settings.toml"
    assert load_settings(path) == Settings()
    save_settings(Settings(theme='odd "name"', keymap={"screen.gpu": "g,f2"}), path)
    assert load_settings(path) == Settings(theme='odd "name"', keymap={"screen.gpu": "g,f2"})
    assert not list(tmp_path.glob(".*.tmp"))  # the temp file of the atomic write is gone
    path.write_text("theme = 3\ncolour = 1\n")
    with pytest.raises(TuituneError, match="theme must be.*unknown setting\\(s\\) colour"):
        load_settings(path)
    path.write_text("theme = \n")
    with pytest.raises(TuituneError, match="not valid TOML"):
        load_settings(path)


async def test_a_broken_settings_file_is_a_warning_not_a_crash(tmp_path):
    from tuitune.paths import config_dir

    (config_dir()).mkdir(parents=True, exist_ok=True)
    (config_dir() / "settings.toml").write_text('theme = "gone-theme"\n')
    app = make_app(tmp_path)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.pause()
        assert app.theme == "tuitune-dark"
        assert any("gone-theme" in n.message for n in app._notifications)
