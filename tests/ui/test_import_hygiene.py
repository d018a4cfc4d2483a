"""Layering, checked in fresh interpreters: the UI and core import no ML stack; the trainer no Textual."""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = ("torch", "triton", "transformers", "peft", "trl", "datasets")
UI_AND_CORE = ("tuitune.ui.app", "tuitune.ui.commands", "tuitune.ui.screens.gpu", "tuitune.ui.screens.models",
               "tuitune.ui.screens.runs", "tuitune.ui.screens.help", "tuitune.ui.screens.dataset",
               "tuitune.ui.screens.hyperparams", "tuitune.ui.screens.monitor", "tuitune.themes.loader",
               "tuitune.config", "tuitune.catalog", "tuitune.fit", "tuitune.hardware", "tuitune.runs",
               "tuitune.events", "tuitune.data")
TRAINER_SIDE = ("tuitune.trainer.launcher", "tuitune.trainer.worker", "tuitune.trainer.sft",
                "tuitune.trainer.model_loading", "tuitune.trainer.callback", "tuitune.trainer.patching",
                "tuitune.kernels", "tuitune.kernels.rmsnorm")


def loaded_after_import(modules: tuple[str, ...]) -> set[str]:
    code = ("import importlib, json, sys\n"
            f"for name in {list(modules)!r}:\n"
            "    importlib.import_module(name)\n"
            "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return set(json.loads(result.stdout.strip().splitlines()[-1]))


def test_ui_and_core_do_not_import_the_ml_stack():
    loaded = loaded_after_import(UI_AND_CORE)
    assert "textual" in loaded  # the check itself works
    assert not loaded & set(HEAVY), sorted(loaded & set(HEAVY))


def test_trainer_and_kernels_do_not_import_textual():
    loaded = loaded_after_import(TRAINER_SIDE)
    assert "torch" in loaded and "triton" in loaded  # the check itself works
    assert "textual" not in loaded
