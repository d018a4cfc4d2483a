"""Which tokens of a batch carry a label, found on the CPU when the batch is made.

The fused loss (patching._fused_loss_forward) runs the vocabulary projection only on the rows that
carry a label. Found on the GPU, those rows cost a `nonzero`, whose count the host must read back: a
wait for every kernel queued before it. With the log read one step late (lagged_log.py) and the batches
copied without blocking, that read is the step's only wait, and it sits at the step's start, so the GPU
idles while the host launches the forward. Here the collator finds the rows while the labels are still
on the CPU; the batch carries them to the GPU with its other tensors, and the loss reads no count back.
"""

from __future__ import annotations

from typing import Any

LABEL_ROWS = "label_rows"


def label_rows_of(batch: dict) -> Any:
    """The flat indices of the loss targets that carry a label (the labels shifted by one, or the
    collator's `shift_labels`), as the fused loss flattens them; None when the batch has no CPU labels."""
    target = batch.get("shift_labels")
    if target is None:
        labels = batch.get("labels")
        target = None if labels is None or labels.dim() != 2 else labels[:, 1:]
    if target is None or not hasattr(target, "device") or target.device.type != "cpu":
        return None
    return (target.reshape(-1) != -100).nonzero().squeeze(1)


class LabelRowsCollator:
    """A collator whose batches also carry their label rows (under `LABEL_ROWS`)."""

    def __init__(self, collator):
        self.collator = collator

    def __call__(self, examples):
        batch = self.collator(examples)
        rows = label_rows_of(batch)
        if rows is not None:
            batch[LABEL_ROWS] = rows
        return batch

    def __getattr__(self, name):  # TRL and the Trainer read the wrapped collator's settings
        if name == "collator":
            raise AttributeError(name)
        return getattr(self.collator, name)


def add_label_rows(trainer) -> bool:
    """Wrap ``trainer``'s collator when its model computes the fused loss, which reads the rows;
    the stock forward would refuse the extra key. Returns whether it did."""
    model = trainer.model
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    if base.__dict__.get("_tuitune_forward") is None or isinstance(trainer.data_collator, LabelRowsCollator):
        return False
    trainer.data_collator = LabelRowsCollator(trainer.data_collator)
    return True
