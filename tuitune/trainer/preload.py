"""Import the training libraries with Python's cyclic collector paused, then freeze what they made.

While torch, transformers, PEFT and TRL import, the heap grows to a few hundred thousand objects, and
the collector runs a full collection each time it grows by a quarter, walking all of it again: 2.3 s of
a 10.9 s import on the 2-core CI machine (2026-12-07). The collections find next to nothing (modules,
classes and functions live as long as the process). Frozen afterwards, those objects are also skipped
by the full collections that loading the model and building the Trainer trigger. `collector_freeze`
freezes again before the first step and lets go of everything after training.
"""

from __future__ import annotations

import gc
import importlib

TRAINING_LIBRARIES = ("torch", "transformers", "peft", "trl")


def preload_training_libraries() -> None:
    """Import TRAINING_LIBRARIES without collections, then freeze every object alive. An import that
    fails raises here, as it would have where the library is first used."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        for name in TRAINING_LIBRARIES:
            importlib.import_module(name)
    finally:
        if was_enabled:
            gc.enable()
    gc.freeze()
