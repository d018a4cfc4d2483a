"""What the fused loss and the offloaded embeddings need to know about a batch, found on the CPU when
the batch is made, so that the step never waits for the GPU to tell them.

Three reads back from the GPU sat at the start of every step of the patched model, each a wait for
all the work queued before it (the previous step's backward and optimizer, once the log is read one
step late and the batches are copied without blocking):
- the fused loss's `nonzero` over the labels, for the rows that carry one (its count is read back);
- the offloaded input embeddings' copy of the token ids to the CPU, where the table is;
- transformers' test that the attention mask has no padding (`fast_all`), before it builds the mask.
While the host waits, the GPU runs dry; then it idles while the host launches the forward. Here the
collator answers all three while the batch is still on the CPU: the label rows travel to the GPU
with the batch's other tensors, and the token ids and the no-padding flag ride along in `HostFacts`,
which has no `to` or `pin_memory`, so the data loader and accelerate hand it over as it is.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

from tuitune.trainer.fused_loss_mark import fused_loss_installed

LABEL_ROWS = "label_rows"
HOST_FACTS = "host_facts"


@dataclass(frozen=True, eq=False)
class HostFacts:
    """A batch's facts that stay on the CPU."""

    input_ids: Any  # the token ids, a CPU tensor
    unpadded: bool  # the attention mask is all ones (or absent)
    targets: int | None = None  # how many loss targets the label rows index (None: no rows)

    def rows_fit(self, target) -> bool:
        """Whether label rows found with these facts index ``target`` (the loss's targets, on the GPU):
        a batch split after collation (context parallelism) would not match."""
        return self.targets is not None and self.targets == target.numel()


def loss_targets(labels, shift_labels) -> Any:
    """The causal-LM loss's targets: the collator's `shift_labels`, else the labels shifted by one. The
    fused loss and the label rows found here both index these."""
    return labels[:, 1:] if shift_labels is None else shift_labels


def _loss_targets(batch: dict) -> Any:
    """A batch's loss targets; None without labels of (batch, length)."""
    labels, shift_labels = batch.get("labels"), batch.get("shift_labels")
    if shift_labels is None and (labels is None or labels.dim() != 2):
        return None
    return loss_targets(labels, shift_labels)


def label_rows_of(batch: dict) -> Any:
    """The flat indices of the loss targets that carry a label, as the fused loss flattens them; None
    when the batch has no CPU labels."""
    target = _loss_targets(batch)
    if target is None or not _on_cpu(target):
        return None
    return (target.reshape(-1) != -100).nonzero().squeeze(1)


def host_facts_of(batch: dict) -> HostFacts | None:
    """The batch's token ids, whether it is unpadded, and how many loss targets it has (when its labels
    are on the CPU); None without CPU token ids."""
    ids, mask = batch.get("input_ids"), batch.get("attention_mask")
    if ids is None or not _on_cpu(ids) or (mask is not None and (not _on_cpu(mask) or mask.shape != ids.shape)):
        return None
    target = _loss_targets(batch)
    targets = target.numel() if target is not None and _on_cpu(target) else None
    return HostFacts(ids, mask is None or bool(mask.all()), targets)


def _on_cpu(tensor) -> bool:
    return hasattr(tensor, "device") and tensor.device.type == "cpu"


class BatchFactsCollator:
    """A collator whose batches also carry their label rows and host facts."""

    def __init__(self, collator):
        self.collator = collator

    def __call__(self, examples):
        batch = self.collator(examples)
        facts = host_facts_of(batch)
        if facts is not None:
            batch[HOST_FACTS] = facts
            if facts.targets is not None:
                batch[LABEL_ROWS] = label_rows_of(batch)
        return batch

    def __getattr__(self, name):  # TRL and the Trainer read the wrapped collator's settings
        if name == "collator":
            raise AttributeError(name)
        return getattr(self.collator, name)


def add_batch_facts(trainer, log=None) -> bool:
    """Wrap ``trainer``'s collator when its model computes the fused loss, which takes the facts (the
    stock forward would refuse the extra keys), and the batch reaches one model whole (torch's
    DataParallel would split the label rows as if they were a batch). Returns whether it did, and
    says so through ``log`` (a callable taking a line) when given."""
    if not fused_loss_installed(trainer.model) or isinstance(trainer.data_collator, BatchFactsCollator):
        return False
    if getattr(getattr(trainer, "args", None), "n_gpu", 1) > 1:
        return False
    trainer.data_collator = BatchFactsCollator(trainer.data_collator)
    if log is not None:
        log("Batch facts: each batch's label rows, token ids and padding are found on the CPU, so a step "
            "reads nothing back from the GPU at its start.")
    return True


@contextlib.contextmanager
def batch_facts_in_use(causal_lm, facts: HostFacts | None, kwargs: dict):
    """While ``causal_lm``'s decoder runs on ``kwargs`` (changed in place), transformers is told what it
    would read from the mask (an unpadded batch's mask is left out, as transformers leaves it once it
    has read that it is all ones; for a padded one, without a cache, its test whether SDPA's own causal
    mask would do can only say no), and offloaded input embeddings gather with the CPU token ids."""
    ids = kwargs.get("input_ids")
    if facts is None or ids is None or tuple(ids.shape) != tuple(facts.input_ids.shape):
        yield
        return
    from tuitune.trainer.embedding_offload import handing_host_ids

    mask = kwargs.get("attention_mask")
    plain_mask = getattr(mask, "ndim", None) == 2  # a (batch, length) padding mask, not a prepared 4D one
    if facts.unpadded and plain_mask:
        kwargs["attention_mask"] = None
    padded = plain_mask and not facts.unpadded and kwargs.get("cache") is None
    with handing_host_ids(causal_lm.get_input_embeddings(), facts.input_ids), _sdpa_mask_needed(padded):
        yield


@contextlib.contextmanager
def _sdpa_mask_needed(known: bool):
    """Within, transformers' test whether a mask can be left to SDPA's `is_causal` says no without
    reading the padding mask back (`known`: the batch is padded, so that is its answer)."""
    from transformers import masking_utils

    test = getattr(masking_utils, "_ignore_causal_mask_sdpa", None)
    if not known or test is None:
        yield
        return
    masking_utils._ignore_causal_mask_sdpa = lambda *args, **kwargs: False
    try:
        yield
    finally:
        masking_utils._ignore_causal_mask_sdpa = test
