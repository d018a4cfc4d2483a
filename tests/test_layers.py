"""The shape of the code, kept: no import circles, imports only down the layers (tests.modules.LAYERS), small
modules, no screen importing another screen."""

from __future__ import annotations

from tests.modules import cycles, import_graph, layer_of, modules, upward_imports

MAX_LINES = 450


def test_no_import_circle():
    found = cycles(import_graph())
    assert not found, "import circles:\n" + "\n".join(" <-> ".join(group) for group in found)


def test_imports_point_down_the_layers():
    found = upward_imports(import_graph())
    assert not found, "imports against the layers (ui/cli > tools > trainer > core > kernels):\n" + "\n".join(found)


def test_no_module_is_over_450_lines():
    long = {module: n for module, path in modules().items()
            if (n := len(path.read_text(encoding="utf-8").splitlines())) > MAX_LINES}
    assert not long, f"modules over {MAX_LINES} lines: {long}"


def test_the_checks_see_the_code_as_it_is():
    graph = import_graph()
    assert "tuitune.trainer.launcher" in graph["tuitune.ui.app"]                       # a top-level import
    assert "tuitune.model_source" in graph["tuitune.data.inspection"]                  # one inside a function
    assert "tuitune.trainer.child" in graph["tuitune.trainer.launcher"]
    assert {layer_of("tuitune.ui.screens.monitor"), layer_of("tuitune.kernels"), layer_of("tuitune.runs"),
            layer_of("tuitune.trainer.sft"), layer_of("tuitune.bench.runner")} == {
        "ui/cli", "kernels", "core", "trainer", "tools"}


def test_a_circle_and_an_upward_import_are_reported():
    graph = {"tuitune.runs": {"tuitune.ui.app"}, "tuitune.ui.app": {"tuitune.runs"},
             "tuitune.kernels.rms_norm": {"tuitune.config"}, "tuitune.config": set()}
    assert cycles(graph) == [["tuitune.runs", "tuitune.ui.app"]]
    assert upward_imports(graph) == ["tuitune.kernels.rms_norm (kernels) imports tuitune.config (core)",
                                     "tuitune.runs (core) imports tuitune.ui.app (ui/cli)"]


def test_no_screen_imports_another_screen():
    graph = import_graph()
    screen_modules = [name for name in graph if name.startswith("tuitune.ui.screens.")]
    found = sorted(f"{name} imports {target}" for name in screen_modules for target in graph[name]
                   if target in screen_modules)
    assert not found, "screens share through app state and core modules, never each other:\n" + "\n".join(found)
