"""Keep a frozen LM head in pinned CPU memory and bring it to the GPU for the loss only.

With tuitune's fused loss the LM head is read only by the forward pass: the fused loss computes the
hidden states' gradient there, so the backward pass (where a step's memory peaks) never reads the
head. A llama-8b head is 128,256 x 4,096 bf16 values, 1 GiB. `offload_output_head(model)` moves it
to pinned host memory; each forward pass starts copying it back on a side stream as the first
decoder layer begins (the copy overlaps the decoder's work), the loss waits for it, and the GPU copy
is dropped once the loss has used it. Not earlier: host-to-device copies share one copy engine, so
the input embeddings' rows (their own copy) and the attention mask's host read (transformers
synchronises there) would wait behind the whole head, with the GPU idle (llama-8b: 17 ms a step,
llama-1b: 8.5 ms, from the host profiles of 2026-12-05). A table shared with the input embeddings
(tied) moves for both: the input embeddings then gather their rows on the CPU (embedding_offload).

Only a frozen, bias-free ``nn.Linear`` head of a model whose loss tuitune's patcher fused is moved;
anything else that calls the head (generation) still works: the head's ``forward`` fetches the
table for that call. The return value says what happened and why.
"""

from __future__ import annotations

import types

import torch

_MARK = "_tuitune_head_stash"


class HeadStash:
    """The head's table in pinned host memory and, while a forward pass runs, its copy on the GPU."""

    def __init__(self, table: torch.Tensor, device: torch.device):
        self.table, self.device = table, device
        self.stream = torch.cuda.Stream(device)
        self.gpu: torch.Tensor | None = None
        self.ready: torch.cuda.Event | None = None
        self.starts_with_first_layer = False  # else the fused loss starts it as the forward begins
        self.allocate = None  # (shape, dtype) -> the GPU copy's tensor; None: the main stream's allocator
        self.starts_at_loss = False  # the copy starts when the loss takes it (its memory is lent: graphs)

    def start(self) -> None:
        """Begin copying the table to the GPU (once per forward pass)."""
        if self.gpu is not None:
            return
        main = torch.cuda.current_stream(self.device)
        # Allocated for the main stream, which reads and frees it (or lent from the graphs' pool); the
        # block may have been freed with kernels still queued that read it, so the copy waits for them.
        if self.allocate is None:
            self.gpu = torch.empty(self.table.shape, dtype=self.table.dtype, device=self.device)
        else:
            self.gpu = self.allocate(self.table.shape, self.table.dtype)
            self.gpu.record_stream(self.stream)
        self.stream.wait_stream(main)
        with torch.cuda.stream(self.stream):
            self.gpu.copy_(self.table, non_blocking=True)
            self.ready = torch.cuda.Event()
            self.ready.record(self.stream)

    def take(self) -> torch.Tensor:
        """The table on the GPU, ready for the main stream; the stash keeps no reference to it."""
        self.start()
        torch.cuda.current_stream(self.device).wait_event(self.ready)
        weight, self.gpu = self.gpu, None
        return weight


def head_stash(head) -> HeadStash | None:
    """The stash of an offloaded head, else None."""
    return head.__dict__.get(_MARK) if head is not None else None


def offload_output_head(model) -> str:
    """Move the LM head of ``model`` (a PEFT model or a transformers causal LM) to the CPU when that is
    safe; returns ``"offloaded"``, ``"offloaded with the tied input embeddings"``, ``"already offloaded"``
    or ``"kept on the GPU: <why>"``."""
    from tuitune.trainer.embedding_offload import (install_cpu_table, not_frozen_on_gpu, pinned_copy, placeholder,
                                                 shares_table)
    from tuitune.trainer.fused_loss_mark import fused_loss_installed

    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    head = base.get_output_embeddings() if hasattr(base, "get_output_embeddings") else None
    if head is None:
        return "kept on the GPU: the model has no LM head"
    if head_stash(head) is not None:
        return "already offloaded"
    if type(head) is not torch.nn.Linear:
        return f"kept on the GPU: {type(head).__name__} is not a plain linear layer (an adapter on the head?)"
    w = head.weight
    if head.bias is not None:
        return "kept on the GPU: the head has a bias"
    if not fused_loss_installed(base):
        return "kept on the GPU: the loss is not tuitune's fused loss, which reads the head in the forward pass only"
    refusal = not_frozen_on_gpu(w, "head", "head")
    if refusal:
        return refusal
    emb = base.get_input_embeddings()
    tied = shares_table(emb, w)
    if tied and (type(emb) is not torch.nn.Embedding or emb.max_norm is not None):
        return "kept on the GPU: the input embeddings share the table and cannot gather it on the CPU"
    table = pinned_copy(w)
    stash = head.__dict__[_MARK] = HeadStash(table, w.device)
    start_with_first_layer(base, stash)
    head.weight = placeholder(w)
    head.forward = types.MethodType(_forward, head)
    if tied:
        install_cpu_table(emb, table)
    del w
    torch.cuda.empty_cache()
    return "offloaded with the tied input embeddings" if tied else "offloaded"


def start_with_first_layer(base, stash) -> None:
    """Have the first decoder layer's forward start the head's copy (see the module doc); a model
    without decoder layers at ``.model.layers`` keeps the fused loss starting it."""
    from tuitune.trainer.activation_checkpointing import decoder_layers, recomputing

    try:
        layers = decoder_layers(base)
    except ValueError:
        return
    if not layers:
        return

    def start(module, args):
        if not recomputing() and not stash.starts_at_loss:  # a backward pass never reads the head
            stash.start()

    layers[0].register_forward_pre_hook(start)
    stash.starts_with_first_layer = True


def _forward(self, hidden: torch.Tensor) -> torch.Tensor:
    """Any caller but the fused loss (generation): fetch the table for this call."""
    return torch.nn.functional.linear(hidden, head_stash(self).take().to(hidden.dtype))
