"""Layering, checked in fresh interpreters: the UI and the core import no ML stack; the trainer and the
kernels no Textual. Every module of those layers is imported (tests.modules finds them)."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.modules import layer_of, modules

HEAVY = ("torch", "triton", "transformers", "peft", "trl", "datasets")
NOT_IMPORTABLE = ("tuitune.__main__",)  # `python -m tuitune`: importing it runs the command


def modules_of(*layers: str) -> list[str]:
    return [name for name in modules() if layer_of(name) in layers and name not in NOT_IMPORTABLE]


def loaded_after_import(names: list[str]) -> set[str]:
    code = ("import importlib, json, sys\n"
            f"for name in {names!r}:\n"
            "    importlib.import_module(name)\n"
            "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stderr
    return set(json.loads(result.stdout.strip().splitlines()[-1]))


def test_ui_and_core_do_not_import_the_ml_stack():
    names = modules_of("ui/cli", "core")
    assert "tuitune.ui.app" in names and "tuitune.model_source" in names
    loaded = loaded_after_import(names)
    assert "textual" in loaded  # the check itself works
    assert not loaded & set(HEAVY), sorted(loaded & set(HEAVY))


def test_trainer_and_kernels_do_not_import_textual():
    names = modules_of("trainer", "kernels")
    assert "tuitune.trainer.sft" in names and "tuitune.kernels" in names
    loaded = loaded_after_import(names)
    assert "torch" in loaded and "triton" in loaded  # the check itself works
    assert "textual" not in loaded
