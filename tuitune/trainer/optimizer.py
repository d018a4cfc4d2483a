"""bitsandbytes' 8-bit AdamW without a device synchronisation after every parameter.

bitsandbytes' ``Optimizer8bit.step`` calls ``torch.cuda.synchronize()`` after updating each
parameter (needed for its paged, unified-memory states, whose updates are asynchronous to the
stream). With ordinary device tensors every update is ordered on the current stream anyway, so those
waits only stall the host: a LoRA on a 32-layer model has 448 adapter tensors, hence 448 waits per
step, each leaving the GPU idle while the host launches the next update. `without_host_waits(cls)`
runs the same update kernels in the same order, and synchronises only when a state is paged; the
trainer gives it to transformers' Trainer (`use_in_trainer`), the bench calls `adamw_8bit`.
"""

from __future__ import annotations

import torch

_STREAMED: dict[type, type] = {}


def without_host_waits(optimizer_cls: type) -> type:
    """A subclass of a bitsandbytes 8-bit optimizer class whose ``step`` makes the same updates in the
    same order but synchronises with the device only when a state is paged."""
    if optimizer_cls in _STREAMED:
        return _STREAMED[optimizer_cls]

    class Streamed(optimizer_cls):
        @torch.no_grad()
        def step(self, closure=None):
            if self.is_paged:
                return super().step(closure)
            loss = None
            if closure is not None:
                with torch.enable_grad():
                    loss = closure()
            if not self.initialized:
                self.check_overrides()
                self.to_gpu()
                self.initialized = True
            for gindex, group in enumerate(self.param_groups):
                for pindex, p in enumerate(group["params"]):
                    if p.grad is None:
                        continue
                    if len(self.state[p]) == 0:
                        self.init_state(group, p, gindex, pindex)
                    self.update_step(group, p, gindex, pindex)
            return loss

    Streamed.__name__ = Streamed.__qualname__ = f"{optimizer_cls.__name__}Streamed"
    # transformers' Trainer keeps embeddings' states in 32 bits only for a class whose name says
    # "bitsandbytes" (create_optimizer); continued pretraining trains the embeddings.
    Streamed.__module__ = optimizer_cls.__module__
    _STREAMED[optimizer_cls] = Streamed
    return Streamed


def adamw_8bit(params, **kwargs):
    """An 8-bit AdamW (bitsandbytes) that does not wait for the device after each parameter."""
    import bitsandbytes as bnb

    return without_host_waits(bnb.optim.AdamW8bit)(params, **kwargs)


def use_in_trainer(trainer) -> str | None:
    """Give a transformers Trainer whose optimizer is a bitsandbytes 8-bit one (not paged) the same
    optimizer without host waits; returns its class name, or None when the optimizer is another."""
    cls, kwargs = trainer.get_optimizer_cls_and_kwargs(trainer.args, trainer.model)
    if not (cls.__module__.startswith("bitsandbytes") and kwargs.get("optim_bits") == 8
            and not kwargs.get("is_paged")):
        return None
    streamed = without_host_waits(cls)
    trainer.optimizer_cls_and_kwargs = (streamed, kwargs)
    return streamed.__name__
