"""Activation checkpointing that keeps only each decoder layer's input, optionally in pinned CPU memory.

`enable_checkpointing(model, mode)` wraps the ``forward`` of every decoder layer instance:

- ``"none"``: layers run as written (any wrapping done before is removed); with CUDA graphs, each
  layer's forward and backward replay as graphs that keep its activations
  (tuitune.trainer.kept_layer_graphs); batches of other shapes run as standard, with graphs.
- ``"standard"``: in training, a layer runs without recording its graph and keeps only its input
  hidden states; the backward pass runs the layer again from that input and back-propagates
  through it (the RNG and autocast state of the first run are restored for the second).
- ``"offloaded"``: as standard, but the kept input is copied to pinned CPU memory on a side CUDA
  stream while the next layers compute, and copied back on that stream one layer ahead of the
  backward pass (while layer i recomputes, layer i-1's input is already on its way). With no CUDA
  device it falls back to ``"standard"``. The layer's q, k and v and its output projection's output
  (with TUITUNE_KEEP_ATTENTION=1 its attention output too) also go to the CPU with the input
  (`keep_block_output`), and the recompute pass replays them instead of running those projections'
  base GEMMs (and the attention forward); while pinned memory stays within `HOST_SHARE` of the host
  memory available when checkpointing was set up (past it, layers keep only their input).

It returns the mode actually applied, so the caller can warn when it differs from the request.
transformers' own ``gradient_checkpointing_enable`` must not also be on: it is turned off here.
"""

from __future__ import annotations

import threading
import types

import torch

from tuitune.fit import KEEP_ENTRY_LIMIT  # the largest entry that keeps block outputs (why: there)
from tuitune.trainer.layer_calls import (_CLASS_FORWARD, _INNER, OutputNotATensor, anchor, autocast_state,
                                         inner_forward, split_training_call)

MODES = ("none", "standard", "offloaded")
HOST_SHARE = 0.5  # of the host memory available at set-up, the most pinned memory kept block outputs may take
# A layer's kept block outputs, in bytes per byte of its input, until a layer has kept some (then the
# offloader knows): q, k and v (1.5 with a quarter as many key-value heads), the o_proj output, and
# with the attention kept its output and log-sum-exp.
_KEPT_PER_INPUT = 3.6
_OFFLOADER = "_tuitune_offloader"
_GRAPHS = "_tuitune_layer_graphs"


def _turn_off_transformers_checkpointing(base) -> None:
    """Under either name: newer transformers call it activation checkpointing and warn on the old one."""
    on = getattr(base, "is_activation_checkpointing", None)
    if on is None:
        on = getattr(base, "is_gradient_checkpointing", False)
    if on:
        (getattr(base, "activation_checkpointing_disable", None) or base.gradient_checkpointing_disable)()


def enable_checkpointing(model, mode: str, *, cuda_graphs: bool = False, graph_tokens: int | None = None,
                         keep_block_outputs: bool | None = None) -> str:
    """Set the activation checkpointing of ``model`` (a PEFT model or a transformers causal LM).

    ``cuda_graphs``: replay each checkpointed layer's forward and recompute + backward as CUDA
    graphs (tuitune.trainer.layer_graphs), or without recomputation each layer's forward and
    backward (tuitune.trainer.kept_layer_graphs); only on a CUDA device.
    ``graph_tokens``: the most tokens one batch holds, when known (sizes the graphs' shared buffers).
    ``keep_block_outputs``: keep the outputs the patched layers offer (`keep_block_output`) beside
    each layer's input, for the recompute pass to replay. Default: in offloaded mode without graphs,
    where they wait in CPU memory; standard mode would hold them on the GPU (tests ask for that).
    """
    if mode not in MODES:
        raise ValueError(f"gradient checkpointing mode must be one of {', '.join(MODES)}, got {mode!r}")
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    layers = decoder_layers(base)
    _turn_off_transformers_checkpointing(base)
    device = next(base.parameters()).device
    applied = "standard" if mode == "offloaded" and device.type != "cuda" else mode
    offloader = _Offloader(device) if applied == "offloaded" else None
    graphs, wrapper = None, None
    if cuda_graphs and _graphs_possible(device):
        if applied == "none":
            from . import kept_layer_graphs as kg

            graphs = kg.KeptGraphs(device, capacity_tokens=graph_tokens)
            wrapper = kg.make_forward(graphs, checkpointed=_make_forward(None, graphs.others))
        else:
            from . import layer_graphs as lg

            graphs = lg.ModelGraphs(device, capacity_tokens=graph_tokens)
    if keep_block_outputs is None:
        keep_block_outputs = applied == "offloaded"
    keep_block_outputs = keep_block_outputs and applied != "none" and graphs is None
    if applied != "none":
        wrapper = _make_forward(offloader, graphs, keep_block_outputs)
    for layer in layers:
        inner = layer.__dict__.pop(_INNER, None)  # undo an earlier wrapping
        if inner is _CLASS_FORWARD:
            del layer.__dict__["forward"]
        elif inner is not None:
            layer.forward = inner
        if wrapper is None:
            continue
        setattr(layer, _INNER, layer.__dict__.get("forward", _CLASS_FORWARD))
        layer.forward = types.MethodType(wrapper, layer)
    base.__dict__[_OFFLOADER] = offloader
    base.__dict__[_GRAPHS] = graphs
    return applied


def _graphs_possible(device: torch.device) -> bool:
    return device.type == "cuda"


def layer_graphs(model):
    """The model's ModelGraphs (tuitune.trainer.layer_graphs), or None when its layers are not graphed."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return base.__dict__.get(_GRAPHS)


def pinned_buffers(model) -> int:
    """How many pinned host buffers the model's offloaded checkpointing holds (0 when not offloaded)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    offloader = base.__dict__.get(_OFFLOADER)
    return offloader.buffers_made if offloader is not None else 0


_STATE = threading.local()  # autograd runs a backward pass on its own thread per device


def recomputing() -> bool:
    """True while a checkpointed layer runs again for its backward pass. The layer's output values
    are then never read (only its graph is), which the patched MLP uses to skip work."""
    return getattr(_STATE, "depth", 0) > 0


def keep_block_output(tag: str, tensors: tuple[torch.Tensor, ...]) -> bool:
    """Offer ``tensors``, computed inside a checkpointed layer's first pass, to be kept with the
    layer's input. True when kept: the recompute pass then gets them back from
    `replayed_block_output(tag)`, in the order offered. Only for values the recompute would compute
    again bit for bit."""
    kept = getattr(_STATE, "kept", None)
    if kept is None:
        return False
    kept.append((tag, tuple(tensors)))
    return True


def keeping_block_outputs() -> bool:
    """True inside a checkpointed layer's first pass whose outputs `keep_block_output` would keep."""
    return getattr(_STATE, "kept", None) is not None


def replayed_block_output(tag: str) -> tuple[torch.Tensor, ...] | None:
    """In a recompute pass, what its layer's first pass kept under ``tag`` next, else None."""
    replay = getattr(_STATE, "replay", None)
    if not replay or replay[0][0] != tag:
        return None
    return replay.pop(0)[1]


def _flatten(kept: list) -> tuple[list[torch.Tensor], list[tuple[str, int]]]:
    tensors = [t for _, ts in kept for t in ts]
    return tensors, [(tag, len(ts)) for tag, ts in kept]


def _unflatten(tensors, layout) -> list:
    kept, i = [], 0
    for tag, n in layout:
        kept.append((tag, tuple(tensors[i:i + n])))
        i += n
    return kept


def decoder_layers(base) -> list[torch.nn.Module]:
    backbone = getattr(base, "model", base)
    layers = getattr(backbone, "layers", None)
    if layers is None:
        raise ValueError(f"{type(base).__name__} has no decoder layers at .model.layers; cannot checkpoint it")
    return list(layers)


def _make_forward(offloader, graphs=None, keep_block_outputs: bool = False):
    def forward(self, *args, **kwargs):
        run_layer = inner_forward(self)
        if not (self.training and torch.is_grad_enabled()):
            return run_layer(*args, **kwargs)
        hidden, rest, kwargs = split_training_call(args, kwargs)

        def run(h):
            return run_layer(h, *rest, **kwargs)

        graphed = None if graphs is None else (graphs, self, run_layer, rest, kwargs)
        return _LayerCheckpoint.apply(run, offloader, graphed, keep_block_outputs, anchor(hidden.device), hidden)

    return forward


class _LayerCheckpoint(torch.autograd.Function):
    @staticmethod
    def forward(ctx, run, offloader, graphed, keep_block_outputs, anchor, hidden):
        dev = hidden.device
        ctx.run, ctx.offloader, ctx.graphed = run, offloader, graphed
        ctx.cpu_rng = torch.get_rng_state()
        ctx.cuda_rng = torch.cuda.get_rng_state(dev) if dev.type == "cuda" else None
        ctx.autocast = autocast_state(dev.type)
        out = None
        if graphed is not None:
            graphs, layer, run_layer, rest, kwargs = graphed
            out = graphs.forward(layer, run_layer, hidden, rest, kwargs, ctx.autocast)
        kept: list = []
        if keep_block_outputs and offloader is not None:
            keep_block_outputs = offloader.room_for(hidden)
        if out is None:
            _STATE.kept = kept if keep_block_outputs else None
            try:
                with torch.no_grad():
                    out = run(hidden)
            finally:
                _STATE.kept = None
        if not isinstance(out, torch.Tensor):
            raise OutputNotATensor(out)
        tensors, ctx.kept_layout = _flatten(kept)
        if offloader is not None:
            ctx.entry = offloader.save([hidden, *tensors])
        else:
            ctx.save_for_backward(hidden, *tensors)
        return out

    @staticmethod
    def backward(ctx, grad_out):
        if ctx.offloader is not None:
            hidden, *kept = ctx.offloader.load(ctx.entry)
            ctx.entry = None
        else:
            hidden, *kept = ctx.saved_tensors
        kept = _unflatten(kept, ctx.kept_layout)
        if ctx.graphed is not None:
            graphs, layer, run_layer, rest, kwargs = ctx.graphed
            ctx.graphed = None
            dx = graphs.backward(layer, run_layer, hidden, grad_out, rest, kwargs, ctx.autocast, _enter_recompute,
                                 _leave_recompute)
            if dx is not None:
                return None, None, None, None, None, (dx if ctx.needs_input_grad[5] else None)
        h = hidden.detach().requires_grad_(True)
        device_type, enabled, dtype = ctx.autocast
        devices = [h.device] if h.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices, device_type="cuda" if devices else "cpu"):
            torch.set_rng_state(ctx.cpu_rng)
            if ctx.cuda_rng is not None:
                torch.cuda.set_rng_state(ctx.cuda_rng, h.device)
            _enter_recompute(kept)
            try:
                with torch.enable_grad(), torch.autocast(device_type, dtype=dtype, enabled=enabled):
                    out = ctx.run(h)
            finally:
                _leave_recompute()
        del kept
        torch.autograd.backward(out, grad_out)
        return None, None, None, None, None, (h.grad if ctx.needs_input_grad[5] else None)


def _enter_recompute(replay: list | None = None) -> None:
    _STATE.depth = getattr(_STATE, "depth", 0) + 1
    _STATE.replay = replay


def _leave_recompute() -> None:
    _STATE.depth -= 1
    _STATE.replay = None


def _available_host_bytes() -> int:
    import psutil

    return psutil.virtual_memory().available


def _buffer_bytes(nbytes: int) -> int:
    """`nbytes` rounded up to the next of 8 steps per power of two (at most 12.5% more), at least 1 MiB."""
    nbytes = max(nbytes, 1 << 20)
    step = 1 << max(0, nbytes.bit_length() - 4)
    return -(-nbytes // step) * step


class _Entry:
    __slots__ = ("buffer", "cpu", "copied", "gpu", "fetched", "prev", "device")


_ALIGN = 512  # bytes: each tensor of an entry starts at this alignment in the entry's pinned buffer


def _offsets(tensors: list[torch.Tensor | None]) -> tuple[list[int], int]:
    """Where each tensor starts in an entry's buffer, and the bytes it needs (None entries take none)."""
    offsets, end = [], 0
    for t in tensors:
        offsets.append(end)
        if t is not None:
            end += -(-max(1, t.numel() * t.element_size()) // _ALIGN) * _ALIGN
    return offsets, max(end, 1)


class _Offloader:
    """Moves the tensors a checkpoint keeps (its layer's input, and the block outputs it replays) to
    pinned CPU memory and back on a side stream."""

    def __init__(self, device: torch.device, host_budget: int | None = None):
        self.device = device
        self.stream = torch.cuda.Stream(device)
        self.host_budget = _available_host_bytes() * HOST_SHARE if host_budget is None else host_budget
        self.pinned_bytes = 0  # all pinned buffers made, in use or free
        self.last: _Entry | None = None
        # The entry copied back ahead of its layer's backward. Its blocks belong to the main stream:
        # should that backward never run (an aborted step), the main stream must wait for the copy
        # before the blocks can be freed and handed out again (see `_settle`).
        self.in_flight: _Entry | None = None
        # Pinned host buffers kept across steps. Allocating pinned memory of a new size costs a
        # page-locking call that stalls the GPU's queue: with batches of varying length (unpacked
        # chat data) every step asked for new sizes and the step ran 3x slower (H200, 2026-12-02).
        self.free_buffers: list[torch.Tensor] = []  # flat uint8, sorted by size
        self.buffers_made = 0
        self.kept_per_input: float | None = None  # the most a layer has kept, per byte of its input

    def _pinned(self, tensors: list[torch.Tensor]) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """(buffer, a view per tensor): the smallest free buffer that holds them all, else a new one a
        little larger than asked, so that later, somewhat longer batches reuse it too."""
        offsets, nbytes = _offsets(tensors)
        for i, buf in enumerate(self.free_buffers):
            if buf.numel() >= nbytes:
                del self.free_buffers[i]
                break
        else:
            buf = torch.empty(_buffer_bytes(nbytes), dtype=torch.uint8, pin_memory=True)
            self.buffers_made += 1
            self.pinned_bytes += buf.numel()
        views = [None if t is None else buf[o:o + t.numel() * t.element_size()].view(t.dtype).view(t.shape)
                 for o, t in zip(offsets, tensors)]
        return buf, views

    def room_for(self, hidden: torch.Tensor, kept_per_input: float | None = None) -> bool:
        """Whether a layer whose input is ``hidden`` may also keep block outputs of about
        ``kept_per_input`` times its size (default: the most a layer has kept so far, or
        `_KEPT_PER_INPUT` before any has): the entry stays within `KEEP_ENTRY_LIMIT`, and a free buffer
        holds it or a new one stays within the host budget. Otherwise the layer keeps only its input,
        which always goes to the CPU."""
        kept_per_input = kept_per_input or self.kept_per_input or _KEPT_PER_INPUT
        nbytes = int(hidden.numel() * hidden.element_size() * (1 + kept_per_input))
        if nbytes > KEEP_ENTRY_LIMIT:
            return False
        if any(buf.numel() >= nbytes for buf in self.free_buffers):
            return True
        return self.pinned_bytes + _buffer_bytes(nbytes) <= self.host_budget

    def _give_back(self, buf: torch.Tensor) -> None:
        # Safe to reuse at once: the next write into it is a copy queued on self.stream, after the
        # copy out of it that was queued there first.
        self.free_buffers.append(buf)
        self.free_buffers.sort(key=torch.Tensor.numel)

    def _settle(self) -> None:
        """Order the main stream after a copy back whose layer never ran its backward."""
        e, self.in_flight = self.in_flight, None
        if e is not None and e.fetched is not None:
            torch.cuda.current_stream(self.device).wait_event(e.fetched)

    def save(self, tensors: list[torch.Tensor | None]) -> _Entry:
        """Start copying ``tensors`` (the first one a layer's input; None entries stay None) to pinned
        CPU memory; `load` brings them back."""
        self._settle()
        hidden, kept = tensors[0], tensors[1:]
        if kept:  # learn what a layer keeps beside its input, for `room_for`
            ratio = sum(t.numel() * t.element_size() for t in kept if t is not None) / max(1, hidden.nbytes)
            self.kept_per_input = max(self.kept_per_input or 0.0, ratio)
        main = torch.cuda.current_stream(self.device)
        e = _Entry()
        e.device = tensors[0].device  # the layer's input: always a tensor
        e.buffer, e.cpu = self._pinned(tensors)
        self.stream.wait_stream(main)  # the tensors are written by work queued so far on the main stream
        with torch.cuda.stream(self.stream):
            for cpu, t in zip(e.cpu, tensors):
                if t is not None:
                    cpu.copy_(t, non_blocking=True)
            e.copied = torch.cuda.Event()
            e.copied.record(self.stream)
        for t in tensors:
            if t is not None:
                t.record_stream(self.stream)  # keep t's memory alive until the copy has read it
        e.gpu, e.fetched, e.prev = None, None, self.last
        self.last = e
        return e

    def _fetch(self, e: _Entry) -> None:
        if e.gpu is not None or e.cpu is None:
            return
        # Allocated on the main stream, which reads and frees them: a block allocated on the side stream
        # and used on the main one (record_stream) stays allocated until the allocator sees the main
        # stream's use of it done, and the host runs several layers ahead of the GPU, so about eight
        # fetched inputs were alive at llama-8b's peak (256 MiB; H200, 2026-12-05). A block may
        # have been freed by the main stream with kernels still queued that read it, so the copy
        # waits for the main stream's work queued so far (one layer's backward ahead: still early).
        main = torch.cuda.current_stream(self.device)
        e.gpu = [None if c is None else torch.empty(c.shape, dtype=c.dtype, device=e.device) for c in e.cpu]
        self.stream.wait_stream(main)
        with torch.cuda.stream(self.stream):
            self.stream.wait_event(e.copied)
            for gpu, cpu in zip(e.gpu, e.cpu):
                if cpu is not None:
                    gpu.copy_(cpu, non_blocking=True)
            e.fetched = torch.cuda.Event()
            e.fetched.record(self.stream)
        self.in_flight = e

    def load(self, e: _Entry) -> list[torch.Tensor]:
        self._fetch(e)
        torch.cuda.current_stream(self.device).wait_event(e.fetched)
        if self.in_flight is e:
            self.in_flight = None
        prev, e.prev = e.prev, None
        if prev is not None:
            self._fetch(prev)  # the layer before runs its backward next: start its copy now
        tensors, e.gpu, e.cpu = e.gpu, None, None
        self._give_back(e.buffer)
        e.buffer = None
        if self.last is e:
            self.last = None
        return tensors
