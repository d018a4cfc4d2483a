"""preload: the training libraries import with the collector paused, it comes back as it was, and what
the imports made is frozen; a missing library raises as it would have where first used."""

from __future__ import annotations

import gc

import pytest

from tuitune.trainer import preload


@pytest.fixture
def recorded_imports(monkeypatch):
    seen = []

    def import_module(name):
        seen.append((name, gc.isenabled()))
        if name == "not_installed_anywhere":
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)

    monkeypatch.setattr(preload.importlib, "import_module", import_module)
    yield seen
    gc.unfreeze()
    gc.enable()


def test_libraries_import_with_the_collector_paused_then_everything_alive_is_frozen(recorded_imports):
    gc.unfreeze()
    preload.preload_training_libraries()
    assert recorded_imports == [(name, False) for name in ("torch", "transformers", "peft", "trl")]
    assert gc.isenabled()
    assert gc.get_freeze_count() > 1000


def test_a_disabled_collector_stays_disabled(recorded_imports):
    gc.disable()
    preload.preload_training_libraries()
    assert not gc.isenabled()


def test_a_missing_library_raises_and_the_collector_comes_back(recorded_imports, monkeypatch):
    monkeypatch.setattr(preload, "TRAINING_LIBRARIES", ("torch", "not_installed_anywhere", "trl"))
    gc.unfreeze()
    with pytest.raises(ModuleNotFoundError, match="not_installed_anywhere"):
        preload.preload_training_libraries()
    assert gc.isenabled()
    assert gc.get_freeze_count() == 0
    assert [name for name, _ in recorded_imports] == ["torch", "not_installed_anywhere"]
