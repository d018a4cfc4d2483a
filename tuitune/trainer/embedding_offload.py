"""Keep a frozen input-embedding table in pinned CPU memory and send only the looked-up rows.

A Llama-8B's input embeddings are 128,256 x 4,096 bf16 values: 1 GiB of GPU memory for a table of
which a training step reads a few thousand rows. `offload_input_embeddings(model)` moves the table
to pinned host memory and replaces the embedding module's ``forward`` with a CPU gather into a
pinned buffer followed by one asynchronous copy of the rows to the GPU (about 32 MB for 4,096
tokens). The module keeps an empty placeholder parameter on the GPU, so ``model.device`` and the
modules that ask it still see the GPU.

With ``TUITUNE_EMBED_GATHER=device`` the GPU gathers the rows itself, reading the pinned table across
PCIe (a CUDA view of host memory, `device_view`): the host neither waits for the ids nor copies rows,
so the step's first layer is queued at once.

Only a table that is frozen, untied (an LM head sharing it needs it on the GPU for the loss) and on
a CUDA device is moved; the return value says what happened and why.
"""

from __future__ import annotations

import contextlib
import os
import types

import torch

_MARK = "_tuitune_cpu_table"


def offload_input_embeddings(model) -> str:
    """Move the input embeddings of ``model`` (a PEFT model or a transformers model) to the CPU when
    that is safe; returns ``"offloaded"``, ``"already offloaded"`` or ``"kept on the GPU: <why>"``."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    emb = base.get_input_embeddings()
    if emb.__dict__.get(_MARK) is not None:
        return "already offloaded"
    if type(emb) is not torch.nn.Embedding and not isinstance(emb, torch.nn.Embedding):
        return f"kept on the GPU: {type(emb).__name__} is not a plain embedding"
    w = emb.weight
    refusal = not_frozen_on_gpu(w, "table", "embeddings")
    if refusal:
        return refusal
    if shares_table(base.get_output_embeddings() if hasattr(base, "get_output_embeddings") else None, w):
        return "kept on the GPU: the LM head shares the table"
    if emb.max_norm is not None:
        return "kept on the GPU: max_norm renormalises rows in place"
    install_cpu_table(emb, pinned_copy(w))
    del w
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return "offloaded"


def shares_table(module, w: torch.Tensor) -> bool:
    """Whether ``module`` (an embedding or LM head, or None) holds its weight in ``w``'s storage (tied)."""
    weight = getattr(module, "weight", None) if module is not None else None
    return weight is not None and weight.data_ptr() == w.data_ptr()


def not_frozen_on_gpu(w: torch.Tensor, what: str, owner: str) -> str | None:
    """Why ``w`` cannot wait in host memory (it is not a frozen CUDA tensor), else None."""
    if w.requires_grad:
        return f"kept on the GPU: the {owner} is trained"
    if w.device.type != "cuda":
        return f"kept on the GPU: the {what} is on the {w.device.type}"
    return None


def pinned_copy(w: torch.Tensor) -> torch.Tensor:
    """``w``'s values in pinned host memory."""
    table = torch.empty(w.shape, dtype=w.dtype, pin_memory=True)
    table.copy_(w.detach())
    return table


def placeholder(w: torch.Tensor) -> torch.nn.Parameter:
    """An empty frozen parameter on ``w``'s device, so ``model.device`` and its askers still see it."""
    return torch.nn.Parameter(torch.empty((0, w.shape[1]), dtype=w.dtype, device=w.device), requires_grad=False)


def install_cpu_table(emb: torch.nn.Embedding, table: torch.Tensor) -> None:
    """Make ``emb`` gather its rows from ``table`` (pinned host memory, the same values as its weight)
    and leave an empty placeholder on its device. Also used by head_offload for a tied table."""
    emb.__dict__[_MARK] = table
    wanted = os.environ.get("TUITUNE_EMBED_GATHER", "host") == "device"
    emb.__dict__["_tuitune_device_view"] = device_view(table, emb.weight.device) if wanted else None
    emb.weight = placeholder(emb.weight)
    emb.forward = types.MethodType(_forward, emb)


class _HostArray:
    """Pinned host memory offered to `torch.as_tensor` as a CUDA array (v3 of the interface)."""

    def __init__(self, raw: torch.Tensor):
        self.raw = raw  # kept alive by the view, through this object
        self.__cuda_array_interface__ = {"shape": tuple(raw.shape), "typestr": "<i2", "strides": None,
                                         "data": (raw.data_ptr(), False), "version": 3, "stream": None}


def device_view(table: torch.Tensor, device: torch.device) -> torch.Tensor | None:
    """A CUDA tensor over ``table``'s pinned host memory, which the GPU's kernels read across PCIe
    (unified addressing); None where that is not possible (no CUDA device, memory not pinned, an
    element size other than 2 bytes, or a driver that does not map it)."""
    if device.type != "cuda" or not table.is_pinned() or table.element_size() != 2:
        return None
    try:
        view = torch.as_tensor(_HostArray(table.view(torch.int16)), device=device).view(table.dtype)
    except (RuntimeError, TypeError, ValueError):
        return None
    return view if view.device == device and view.data_ptr() == table.data_ptr() else None


@contextlib.contextmanager
def handing_host_ids(emb: torch.nn.Module, ids: torch.Tensor):
    """Within, ``emb``'s CPU table (if it has one) gathers its next call's rows with ``ids``, the same
    token ids already on the CPU (batch_facts), rather than copying the GPU's ids back: a wait for all
    the GPU's queued work."""
    if emb.__dict__.get(_MARK) is None:
        yield
        return
    emb.__dict__["_tuitune_host_ids"] = ids
    try:
        yield
    finally:
        emb.__dict__.pop("_tuitune_host_ids", None)


def _forward(self, input_ids: torch.Tensor) -> torch.Tensor:
    table: torch.Tensor = self.__dict__[_MARK]
    device = self.weight.device
    view = self.__dict__.get("_tuitune_device_view")
    if view is not None:
        return view.index_select(0, input_ids.reshape(-1).to(device)).view(*input_ids.shape, table.shape[1])
    host = self.__dict__.pop("_tuitune_host_ids", None)
    ids = host.reshape(-1) if host is not None and host.shape == input_ids.shape else input_ids.reshape(-1).to("cpu")
    n = ids.numel()
    # Two row buffers, used in turn: the host may gather a step's rows before the GPU has copied the
    # previous step's out of the other (nothing makes it wait for the GPU in between).
    slots = self.__dict__.setdefault("_tuitune_row_slots", [None, None])
    turn = self.__dict__["_tuitune_turn"] = 1 - self.__dict__.get("_tuitune_turn", 1)
    rows, copied = slots[turn] or (None, None)
    if rows is None or rows.shape[0] < n:
        rows = torch.empty((max(n, 1), table.shape[1]), dtype=table.dtype, pin_memory=torch.cuda.is_available())
    elif copied is not None:
        copied.synchronize()  # this buffer's copy, two calls ago, must be done before it is written again
    torch.index_select(table, 0, ids, out=rows[:n])
    out = rows[:n].to(device, non_blocking=True)
    copied = None
    if device.type == "cuda":
        copied = torch.cuda.Event()
        copied.record()
    slots[turn] = (rows, copied)
    return out.view(*input_ids.shape, table.shape[1])
