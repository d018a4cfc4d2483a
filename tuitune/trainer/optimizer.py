"""bitsandbytes' 8-bit AdamW without a device synchronisation after every parameter.

bitsandbytes' ``Optimizer8bit.step`` calls ``torch.cuda.synchronize()`` after updating each
parameter (needed for its paged, unified-memory states, whose updates are asynchronous to the
stream). With ordinary device tensors every update is ordered on the current stream anyway, so those
waits only stall the host: a LoRA on a 32-layer model has 448 adapter tensors, hence 448 waits per
step, each leaving the GPU idle while the host launches the next update. `without_host_waits(cls)`
runs the same update kernels in the same order, and synchronises only when a state is paged; the
trainer gives it to transformers' Trainer (`use_in_trainer`), the bench calls `adamw_8bit`.

Even without waits, bitsandbytes' Python costs about 40 microseconds of host time per tensor
(configuration merge, device checks, the torch.library dispatch, pointer wrapping) for a kernel that
runs for about 6: the GPU idled some 10 ms per llama-8b step while the host queued the 448 updates
(the host profiles of 2026-12-05). A CUDA tensor with 8-bit blockwise states and no per-parameter
override is therefore updated by calling bitsandbytes' own kernel entry point for its algorithm and
gradient dtype directly, with the arguments its update step would pass; the kernel, and so every
result, is the same. Anything else (32-bit states of small tensors, overrides, other devices) goes
through bitsandbytes' update step.
"""

from __future__ import annotations

import ctypes as ct

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
            direct = self.__dict__.setdefault("_tuitune_direct", {})
            for gindex, group in enumerate(self.param_groups):
                for pindex, p in enumerate(group["params"]):
                    if p.grad is None:
                        continue
                    state = self.state[p]
                    if len(state) == 0:
                        self.init_state(group, p, gindex, pindex)
                    if id(p) not in direct:
                        direct[id(p)] = blockwise_kernels(self, state, p, gindex, pindex)
                    kernels = direct[id(p)]
                    if not (kernels and update_directly(self, kernels, group, p, state)):
                        self.update_step(group, p, gindex, pindex)
            return loss

    Streamed.__name__ = Streamed.__qualname__ = f"{optimizer_cls.__name__}Streamed"
    # transformers' Trainer keeps embeddings' states in 32 bits only for a class whose name says
    # "bitsandbytes" (create_optimizer); continued pretraining trains the embeddings.
    Streamed.__module__ = optimizer_cls.__module__
    _STREAMED[optimizer_cls] = Streamed
    return Streamed


_GRAD_DTYPES = {torch.float32: 0, torch.float16: 1, torch.bfloat16: 2}  # bitsandbytes' order of entry points


def blockwise_kernels(optimizer, state: dict, p: torch.Tensor, gindex: int, pindex: int):
    """bitsandbytes' entry points (fp32, fp16, bf16 gradients) of ``optimizer``'s 8-bit blockwise
    update, when ``p`` may be updated through them directly (see the module doc); else None."""
    if not (p.is_cuda and p.is_contiguous() and state.get("state1") is not None
            and state["state1"].dtype == torch.uint8 and "qmap1" in state):
        return None
    if (gindex, pindex) in optimizer.mng.index2config or id(p) in optimizer.mng.pid2config:
        return None
    if optimizer.optimizer_name != "adam" or "state2" not in state:
        return None  # the arguments below are Optimizer2State's for Adam(W); other algorithms keep bitsandbytes' step
    try:
        from bitsandbytes.backends.cuda.ops import str2optimizer8bit_blockwise
    except Exception:  # noqa: BLE001 - another bitsandbytes layout: its own update step
        return None
    return str2optimizer8bit_blockwise.get(optimizer.optimizer_name)


def _pointer(t: torch.Tensor | None):
    return None if t is None else ct.c_void_p(t.data_ptr())


def update_directly(optimizer, kernels, group: dict, p: torch.Tensor, state: dict) -> bool:
    """One update of ``p`` through bitsandbytes' kernel entry point, with the arguments of its
    ``Optimizer2State.update_step`` (blockwise branch); False (nothing done) where that step must run."""
    index = _GRAD_DTYPES.get(p.grad.dtype)
    if index is None or not p.is_contiguous() or p.device.index != torch.cuda.current_device():
        return False
    grad = p.grad if p.grad.is_contiguous() else p.grad.contiguous()
    p.grad = grad
    state["step"] += 1
    # kept on the optimizer, not in its state: the state is what checkpoints save
    kept_args = optimizer.__dict__.setdefault("_tuitune_arguments", {})
    kept = kept_args.get(id(p))
    if kept is None or not kept.fits(optimizer, group, p, state):
        kept = kept_args[id(p)] = _UpdateArguments(optimizer, group, p, state)
    kernels[index](*kept.for_step(grad, state["step"], group["lr"]))
    return True


_STATE_TENSORS = ("state1", "state2", "qmap1", "qmap2", "absmax1", "absmax2")


class _UpdateArguments:
    """The ctypes argument list of one parameter's update, built once: only the gradient's address,
    the step and the learning rate change from step to step (the 224 updates of a llama-1b step
    otherwise build some 4,000 ctypes objects on a host the step waits for). Rebuilt when the
    parameter, its states or the group's other settings change."""

    __slots__ = ("arguments", "grad", "step", "lr", "sources", "settings")

    def __init__(self, optimizer, group: dict, p: torch.Tensor, state: dict):
        betas = group["betas"]
        self.sources = self._sources(p, state)
        self.settings = self._settings(optimizer, group)
        self.grad, self.step, self.lr = ct.c_void_p(), ct.c_int32(), ct.c_float()
        self.arguments = (
            _pointer(p), self.grad, _pointer(state["state1"]), _pointer(state.get("state2")),
            ct.c_float(betas[0]), ct.c_float(betas[1]), ct.c_float(betas[2] if len(betas) >= 3 else 0.0),
            ct.c_float(group.get("alpha", 0.0)), ct.c_float(group["eps"]), self.step,
            self.lr, _pointer(state["qmap1"]), _pointer(state.get("qmap2")),
            _pointer(state["absmax1"]), _pointer(state.get("absmax2")), ct.c_float(group["weight_decay"]),
            ct.c_float(1.0), ct.c_bool(optimizer.args.skip_zeros), ct.c_int32(p.numel()),
        )

    @staticmethod
    def _sources(p: torch.Tensor, state: dict) -> tuple:
        return (p.data_ptr(), p.numel(), *(state.get(k) for k in _STATE_TENSORS))

    @staticmethod
    def _settings(optimizer, group: dict) -> tuple:
        return (tuple(group["betas"]), group.get("alpha", 0.0), group["eps"], group["weight_decay"],
                optimizer.args.skip_zeros)

    def fits(self, optimizer, group: dict, p: torch.Tensor, state: dict) -> bool:
        sources = self._sources(p, state)
        return (sources[:2] == self.sources[:2] and all(a is b for a, b in zip(sources[2:], self.sources[2:]))
                and self._settings(optimizer, group) == self.settings)

    def for_step(self, grad: torch.Tensor, step: int, lr: float) -> tuple:
        self.grad.value, self.step.value, self.lr.value = grad.data_ptr(), step, lr
        return self.arguments


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
