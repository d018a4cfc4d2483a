"""Training runs with what was loaded frozen out of the garbage collector's walks, and lets go after; the
training libraries import with the collector paused, it comes back as it was, and what the imports made is
frozen; a missing library raises as it would have where first used."""

from __future__ import annotations

import gc
import weakref

import pytest
import transformers

from tests.trainer.test_training import run_training
from tuitune.trainer import collector_freeze
from tuitune.trainer.collector_freeze import frozen

pytestmark = pytest.mark.timeout(400)


class Node:
    """An object in a reference cycle: only the cyclic collector frees it."""

    def __init__(self):
        self.me = self


def test_frozen_freezes_for_the_block_only():
    with frozen() as count:
        assert count > 0
        assert gc.get_freeze_count() > 0  # less any frozen object that has died since (refcounts still free)
    assert gc.get_freeze_count() == 0


def test_cycles_made_inside_the_block_are_still_collected():
    with frozen():
        made = weakref.ref(Node())
        gc.collect()
        assert made() is None


def test_what_was_frozen_is_collected_once_the_block_ends():
    node = Node()
    loaded = weakref.ref(node)
    with frozen():
        del node
        gc.collect()
        assert loaded() is not None  # frozen: the collector skips it
    gc.collect()
    assert loaded() is None


def test_the_trainer_steps_with_the_collector_frozen(tiny_model_dir, tmp_path, monkeypatch):
    seen = []
    step = transformers.Trainer.training_step

    def counted(self, *args, **kwargs):
        seen.append(gc.get_freeze_count())
        return step(self, *args, **kwargs)

    monkeypatch.setattr(transformers.Trainer, "training_step", counted)
    run_training(tiny_model_dir, tmp_path, "frozen", **{"training.max_steps": 4})
    assert len(seen) == 4 and all(count > 100_000 for count in seen), seen
    # frozen again after the warm-up steps: what the set-up and the first steps made joins the frozen
    assert seen[2] > seen[1] and seen[3] <= seen[2], seen
    assert gc.get_freeze_count() == 0


@pytest.fixture
def recorded_imports(monkeypatch):
    seen = []

    def import_module(name):
        seen.append((name, gc.isenabled()))
        if name == "not_installed_anywhere":
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)

    monkeypatch.setattr(collector_freeze.importlib, "import_module", import_module)
    yield seen
    gc.unfreeze()
    gc.enable()


def test_libraries_import_with_the_collector_paused_then_everything_alive_is_frozen(recorded_imports):
    gc.unfreeze()
    collector_freeze.preload_training_libraries()
    assert recorded_imports == [(name, False) for name in ("torch", "transformers", "peft", "trl")]
    assert gc.isenabled()
    assert gc.get_freeze_count() > 1000


def test_a_disabled_collector_stays_disabled(recorded_imports):
    gc.disable()
    collector_freeze.preload_training_libraries()
    assert not gc.isenabled()


def test_a_missing_library_raises_and_the_collector_comes_back(recorded_imports, monkeypatch):
    monkeypatch.setattr(collector_freeze, "TRAINING_LIBRARIES", ("torch", "not_installed_anywhere", "trl"))
    gc.unfreeze()
    with pytest.raises(ModuleNotFoundError, match="not_installed_anywhere"):
        collector_freeze.preload_training_libraries()
    assert gc.isenabled()
    assert gc.get_freeze_count() == 0
    assert [name for name, _ in recorded_imports] == ["torch", "not_installed_anywhere"]
