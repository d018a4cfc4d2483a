"""Keep Python's cyclic garbage collector from walking the loaded libraries and model inside a step.

A full (generation 2) collection visits every object the collector tracks. Once torch, transformers,
PEFT and a model are loaded that is a few million objects, and a full collection that falls inside a
training step stalls the host for a few hundred milliseconds while the GPU runs dry (session 22,
llama-8b on an H100: one step in six or eight took 550 to 690 ms against 330 ms for the others).

`frozen()` collects once, then moves everything alive into the permanent generation, which later
collections skip; garbage made during training is still collected, in collections that now walk only
what training made. On the way out it unfreezes, so what was frozen can be collected again once the
caller lets go of it (a chat or an export in the same process must get the GPU memory back).
`freeze_again_after_warm_up` also freezes what the Trainer's set-up and the first two steps made (the
optimizer, the data loader, kernel autotuning, the layers' CUDA graphs, captured in step 2).

Earlier still, `preload_training_libraries` (the trainer child and each torchrun rank, before training)
imports torch, transformers, PEFT and TRL with the collector paused, then freezes them. While they
import, the heap grows to a few hundred thousand objects and the collector runs a full collection each
time it grows by a quarter, walking all of it again: 2.3 s of a 10.9 s import on the 2-core CI machine
(2026-12-07), finding next to nothing (modules, classes and functions live as long as the process).
Frozen, those objects are also skipped by the collections that loading the model and building the
Trainer trigger.
"""

from __future__ import annotations

import gc
import importlib
from contextlib import contextmanager

TRAINING_LIBRARIES = ("torch", "transformers", "peft", "trl")


def freeze_what_is_loaded() -> int:
    """Collect, then move every live object into the permanent generation; returns how many are frozen.
    Alone, for the rest of the process (the bench's measuring child, which exits after its steps)."""
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()


@contextmanager
def frozen():
    """Freeze the objects alive now for the `with` block; yields how many were frozen."""
    try:
        yield freeze_what_is_loaded()
    finally:
        gc.unfreeze()


WARM_UP_STEPS = 2  # a layer's graphs are captured the second time its batch shape is seen


def freeze_again_after_warm_up(trainer) -> None:
    """Give `trainer` a callback that collects and freezes once more when step WARM_UP_STEPS ends."""
    from transformers import TrainerCallback

    class FreezeAfterWarmUp(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step == WARM_UP_STEPS:
                freeze_what_is_loaded()
            return control

    trainer.add_callback(FreezeAfterWarmUp())


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
