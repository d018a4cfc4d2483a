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
"""

from __future__ import annotations

import gc
from contextlib import contextmanager


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
