"""One stylesheet: app.tcss styles every screen and dialog; only reusable widgets keep intrinsic defaults."""

from __future__ import annotations

import ast

from tests.modules import modules

STYLE_ATTRIBUTES = {"CSS", "DEFAULT_CSS", "CSS_PATH"}


def screen_classes() -> dict[str, set[str]]:
    """Every Screen and dialog class of tuitune.ui, with the names its body assigns."""
    found = {}
    for module, path in modules().items():
        if not module.startswith("tuitune.ui"):
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.ClassDef):
                continue
            if not any(ast.unparse(base).split("[")[0].endswith("Screen") for base in node.bases):
                continue
            own = {target.id for item in node.body if isinstance(item, (ast.Assign, ast.AnnAssign))
                   for target in (item.targets if isinstance(item, ast.Assign) else [item.target])
                   if isinstance(target, ast.Name)}
            found[f"{module}.{node.name}"] = own
    return found


def test_no_screen_or_dialog_carries_its_own_css():
    screens = screen_classes()
    assert {"tuitune.ui.screens.monitor.MonitorScreen", "tuitune.ui.widgets.confirm.ConfirmModal"} <= set(screens)
    styled = sorted(name for name, own in screens.items() if own & STYLE_ATTRIBUTES)
    assert not styled, "style these in tuitune/ui/app.tcss: " + ", ".join(styled)


def test_the_app_reads_the_one_stylesheet():
    from tuitune.ui.app import TuituneApp

    assert TuituneApp.CSS_PATH == "app.tcss"
    assert "one stylesheet" in (modules()["tuitune.ui.app"].parent / "app.tcss").read_text(encoding="utf-8")
