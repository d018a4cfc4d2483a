"""CUDA graphs of checkpointed decoder layers: one replay instead of a few hundred kernel launches.

Under activation checkpointing each decoder layer runs twice per step: once without a graph of
its own (forward) and once more with one, followed at once by its backward (recompute +
backward). On a small model both are launch-bound: llama-1b's step spends about twice as long
in Python and launches as the GPU spends in kernels (H200, 2026-12-05). Here each of the two is
captured once per layer into a CUDA graph and replayed after that, so a layer costs a handful of
launches per step instead of ~180.

How a layer's two graphs see the world:
- Inputs are copied into static buffers shared by every layer (the hidden states, the gradient of
  the layer's output, and each tensor argument such as RoPE's cos and sin); outputs are written to
  one shared buffer and cloned out. So the graphs' memory is one layer's working set, in one pool
  that every graph of the model shares (a graph frees all it allocates before its capture ends, so
  any replay order is safe).
- The recompute graph adds the adapters' gradients into each parameter's ``.grad`` itself. Those
  tensors must keep their address: before a replay, a parameter whose ``.grad`` was set to None
  (``zero_grad``) gets its kept buffer back, zeroed.
- Adapter casts (kernels/ops/lora_weights.py keeps a bf16 copy of each float32 adapter) are read by
  address in the graphs; they are brought up to date once after every optimizer step, before the
  first replay.

A call is replayed only when it looks exactly like the captured one (shapes, dtypes, every
non-tensor argument, autocast); the first sighting of a signature runs eagerly (it is the warm-up:
Triton autotuning, cuBLAS handles), the second is captured. Not graphed, so run as before: packed
rows (their boundaries change every batch), arguments that are neither tensors nor plain values
(a KV cache), layers with dropout (a replay could not reproduce the forward's mask in the
recompute), layers whose backward would reach a trainable tensor they do not own, more than
``MAX_SIGNATURES`` signatures, and every call after a capture failed (reported once).
"""

from __future__ import annotations

import threading
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field

import torch
from torch.utils._pytree import tree_flatten, tree_unflatten

from tuitune.trainer.backward_reach import reaches_outside
from tuitune.trainer.layer_calls import autocast_state

# Distinct input signatures graphed per model. With batches padded to a multiple of BUCKET_TOKENS
# (the SFT trainer does that when it graphs) a 2,048-token model sees at most 8 lengths, plus the
# shorter last batch of an epoch.
MAX_SIGNATURES = 10
BUCKET_TOKENS = 256
_PACKED_KEYS = ("cu_seq_lens_q", "cu_seq_lens_k", "cu_seqlens_q", "cu_seqlens_k")
_PLAIN = (bool, int, float, str, type(None), torch.dtype, torch.device)


def graphable_layer(layer: torch.nn.Module) -> str | None:
    """Why ``layer`` cannot be graphed, or None when it can."""
    for name, m in layer.named_modules():
        if isinstance(m, torch.nn.Dropout) and m.p > 0:
            return f"dropout {m.p} in {name or 'the layer'}"
        if float(getattr(m, "attention_dropout", 0.0) or 0.0) > 0:
            return f"attention dropout in {name or 'the layer'}"
    return None


def call_signature(hidden: torch.Tensor, rest: tuple, kwargs: dict, autocast: tuple | None = None) -> tuple | None:
    """What a replay must match, or None when this call cannot be graphed. ``autocast`` is the
    forward's ``(device type, enabled, dtype)``, the ambient one when None."""
    return _signature(hidden, kwargs, *tree_flatten((rest, kwargs)), autocast)


def _signature(hidden: torch.Tensor, kwargs: dict, leaves: list, spec, autocast: tuple | None) -> tuple | None:
    """`call_signature` of arguments already flattened into ``leaves`` and ``spec``."""
    if any(kwargs.get(k) is not None for k in _PACKED_KEYS):
        return None
    parts = []
    for leaf in leaves:
        if isinstance(leaf, torch.Tensor):
            if leaf.device != hidden.device or leaf.requires_grad:
                return None
            parts.append(("t", tuple(leaf.shape), leaf.dtype, leaf.stride()))
        elif isinstance(leaf, _PLAIN):
            parts.append(("v", type(leaf).__name__, leaf))
        else:
            return None
    if autocast is None:
        autocast = autocast_state(hidden.device.type)
    return (tuple(hidden.shape), hidden.dtype, hidden.device, str(spec), tuple(parts), tuple(autocast))


@dataclass
class _Statics:
    """Buffers one signature's graphs read and write, shared by every layer."""
    x: torch.Tensor  # the layer's input
    io: torch.Tensor  # the forward's output; in the backward, the output's gradient, then the input's
    leaves: list  # the other arguments, tensors replaced by static copies
    spec: object
    sources: list = field(default_factory=list)  # (tensor, version) last copied into each static leaf

    def load_leaves(self, leaves: list, untracked: bool = False) -> None:
        """Copy the call's tensor arguments in; ``untracked``: through ``.data``, leaving the static
        tensors' versions as they were (tuitune.trainer.kept_layer_graphs needs that)."""
        for i, (static, leaf) in enumerate(zip(self.leaves, leaves)):
            if not isinstance(static, torch.Tensor):
                continue
            last = self.sources[i]
            if last is not None and last[0] is leaf and last[1] == leaf._version:
                continue  # the same tensor as for the layer before (RoPE's cos and sin, the mask)
            (static.data if untracked else static).copy_(leaf)
            self.sources[i] = (leaf, leaf._version)

    def arguments(self):
        return tree_unflatten(self.leaves, self.spec)


class _LayerGraphs:
    """One layer's captured graphs, per signature."""

    def __init__(self, layer: torch.nn.Module):
        self.params = [p for p in layer.parameters() if p.requires_grad]
        self.grads: list[torch.Tensor] | None = None  # the kept .grad tensors the graphs add into
        self.forward: dict[tuple, torch.cuda.CUDAGraph] = {}
        self.backward: dict[tuple, torch.cuda.CUDAGraph] = {}
        self.seen: dict[tuple, int] = {}
        self.refused: str | None = graphable_layer(layer)

    def bind_grads(self) -> None:
        """Point every parameter's ``.grad`` at its kept buffer (zeroed where it was None)."""
        if self.grads is None:
            self.grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in self.params]
            for p, g in zip(self.params, self.grads):
                p.grad = g
            return
        zero = []
        for p, g in zip(self.params, self.grads):
            if p.grad is g:
                continue
            if p.grad is None:
                zero.append(g)
            else:  # someone put another tensor there: carry its value over
                g.copy_(p.grad)
            p.grad = g
        if zero:
            torch._foreach_zero_(zero)

    def add_grads(self, grads) -> None:
        """Add a backward's parameter gradients (None where unused) into the kept ``.grad`` tensors."""
        pairs = [(b, g) for b, g in zip(self.grads, grads) if g is not None]
        if pairs:
            torch._foreach_add_([b for b, _ in pairs], [g for _, g in pairs])


class ModelGraphs:
    """The CUDA graphs of one model's checkpointed layers (see the module doc)."""

    def __init__(self, device: torch.device, capacity_tokens: int | None = None,
                 stream_from: ModelGraphs | None = None):
        """``capacity_tokens``: the most tokens a batch can hold (batch size x max length), when known,
        so that every signature's buffers fit in the first pair allocated. ``stream_from``: graphs whose
        capture stream these share (autograd must not hand gradients between two capture streams)."""
        self.device = device
        self.capacity_tokens = capacity_tokens
        self.pool = torch.cuda.graph_pool_handle() if device.type == "cuda" else None
        self.mempool = None  # a torch.cuda.MemPool once lend_to_loss made the pool one
        self.outside_peak = None  # an OutsidePoolPeak the trainer sets on a run that lends the pool
        self.statics: dict[tuple, _Statics] = {}
        self._flat: list[torch.Tensor] = []  # flat (x, io) buffers the signatures' views share
        self.layers: dict[int, _LayerGraphs] = {}
        self.failed: str | None = None
        self.captured = 0
        self._cast_steps = -1
        self._stream: torch.cuda.Stream | None = None
        self._stream_from = stream_from
        self._lock = threading.Lock()

    # ---------------------------------------------------------------- what the checkpoint calls

    def forward(self, layer, run_layer, hidden, rest, kwargs, autocast):
        """The layer's output without a graph of its own, replayed when captured; None: run it eagerly."""
        call = self._entry(layer, hidden, rest, kwargs, autocast)
        if call is None:
            return None
        entry, key, leaves, spec = call
        graph = entry.forward.get(key)
        if graph is None and entry.seen.get(key, 0) < 2:
            return None  # the first sighting is the warm-up
        statics = self._statics(key, hidden, leaves, spec)
        self._load(statics, hidden, None, leaves)
        if graph is None:
            body = lambda: self._forward_body(run_layer, statics, autocast)  # noqa: E731
            graph = self._capture(body, warm=body, reload=lambda: self._load(statics, hidden, None, leaves))
            if graph is None:
                return None
            entry.forward[key] = graph
        self._fresh_casts()
        graph.replay()
        return statics.io.clone()

    def backward(self, layer, run_layer, hidden, grad_out, rest, kwargs, autocast, enter, leave):
        """Recompute + backward of the layer from its input ``hidden``: the input's gradient (adapter
        gradients go into their ``.grad``), or None when it has no graph (run it eagerly)."""
        if self.outside_peak is not None:
            self.outside_peak.replaying()
        # the forward's autocast state, not the backward's: a trainer's autocast covers only the forward
        call = self._entry(layer, hidden, rest, kwargs, autocast, count=False)
        if call is None or call[1] not in call[0].forward:
            return None  # graphed only where the forward was: the same warm-up and signature
        entry, key, leaves, spec = call
        statics = self._statics(key, hidden, leaves, spec)
        self._load(statics, hidden, grad_out, leaves)
        graph = entry.backward.get(key)
        if graph is None:
            reason = self._reaches_outside(entry, run_layer, statics, autocast, enter, leave)
            if reason is not None:
                entry.refused = reason
                return None
            entry.bind_grads()

            def body(accumulate=True):
                self._backward_body(entry, run_layer, statics, autocast, enter, leave, accumulate)

            graph = self._capture(body, warm=lambda: body(accumulate=False),
                                  reload=lambda: self._load(statics, hidden, grad_out, leaves))
            if graph is None:
                return None
            entry.backward[key] = graph
        entry.bind_grads()
        self._fresh_casts()
        graph.replay()
        return statics.io.clone()

    def lend_to_loss(self, nbytes: int) -> str | None:
        """Let the loss phase borrow up to ``nbytes`` of the graphs' pool (``lent_empty``); None when
        done, else why not. Between the last forward replay and the first backward replay no graph
        runs, so the pool's memory is idle while the loss needs the most (the LM head, a logits chunk).
        The pool becomes a ``MemPool`` holding one segment of ``nbytes``, reserved on the capture stream
        (the caching allocator hands a free block only to the stream it was allocated on) before any
        capture, which then carves its blocks out of it. Only tensors that die before the next replay
        may be lent: a replay writes over whatever the pool holds."""
        if self.device.type != "cuda":
            return "no CUDA device"
        if self.captured or self.failed:
            return "graphs were captured already"
        if not hasattr(torch.cuda, "MemPool") or not hasattr(torch.cuda, "use_mem_pool"):
            return "this torch has no torch.cuda.MemPool"
        self.mempool = torch.cuda.MemPool()
        self.pool = self.mempool.id
        self.lent_empty((int(nbytes),), torch.uint8)  # dropped at once; its segment stays in the pool
        return None

    def lent_empty(self, shape, dtype: torch.dtype) -> torch.Tensor:
        """A new tensor in the graphs' pool (see ``lend_to_loss``), for use on the current stream. The
        caller drops it before the next replay (the backward's first)."""
        if self.outside_peak is not None:
            self.outside_peak.lending()
        main = torch.cuda.current_stream(self.device)
        stream = self.capture_stream()
        stream.wait_stream(main)
        with torch.cuda.stream(stream), torch.cuda.use_mem_pool(self.mempool):
            tensor = torch.empty(shape, dtype=dtype, device=self.device)
        tensor.record_stream(main)  # not reused for the capture stream before main's work on it is done
        if self.outside_peak is not None:
            self.outside_peak.lent(tensor)
        return tensor

    def lends(self) -> bool:
        return self.mempool is not None

    def pool_gb(self) -> float:
        """Device memory this model's graphs hold in their pool and no tensor holds between replays:
        reserved, not counted as allocated (``max_memory_allocated`` leaves it out), and of no use to
        anything else. (Tensors the graphs keep, such as kept activations, count as allocated.)"""
        if self.pool is None:
            return 0.0
        segments = torch.cuda.memory_snapshot()
        return sum(s["total_size"] - s.get("allocated_size", 0) for s in segments
                   if tuple(s.get("segment_pool_id", (0, 0))) == tuple(self.pool)) / 1024**3

    def describe(self) -> str:
        if self.failed:
            return f"off after a capture failed ({self.failed})"
        refused = {e.refused for e in self.layers.values() if e.refused}
        forward = sum(len(e.forward) for e in self.layers.values())
        backward = sum(len(e.backward) for e in self.layers.values())
        text = f"{self.captured} captured ({forward} forward, {backward} recompute + backward)"
        return text + (f"; not graphed: {', '.join(sorted(refused))}" if refused else "")

    # ---------------------------------------------------------------- internals

    def _entry(self, layer, hidden, rest, kwargs, autocast, count=True):
        """``(layer's graphs, signature, flattened arguments, their spec)``, or None: run it eagerly."""
        if self.failed or hidden.device != self.device:
            return None
        entry = self.layers.get(id(layer))
        if entry is None:
            entry = self.layers[id(layer)] = _LayerGraphs(layer)
        if entry.refused:
            return None
        leaves, spec = tree_flatten((rest, kwargs))
        key = _signature(hidden, kwargs, leaves, spec, autocast)
        if key is None:
            return None
        if key not in self.statics and len(self.statics) >= MAX_SIGNATURES:
            return None
        if count:
            entry.seen[key] = entry.seen.get(key, 0) + 1
        return entry, key, leaves, spec

    def _statics(self, key, hidden, leaves, spec) -> _Statics:
        s = self.statics.get(key)
        if s is None:
            static_leaves = [torch.empty_strided(t.shape, t.stride(), dtype=t.dtype, device=t.device)
                             if isinstance(t, torch.Tensor) else t for t in leaves]
            x, io = self._shared_views(hidden)
            s = self.statics[key] = _Statics(x, io, static_leaves, spec, [None] * len(leaves))
        return s

    def _shared_views(self, hidden: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Input and output buffers for a signature: views of flat buffers every signature shares (only
        one layer's graph runs at a time). A graph keeps the addresses it was captured with, so a larger
        signature gets a larger pair of its own instead of growing the old one."""
        n = hidden.numel()
        for pair in self._flat:
            if pair.shape[1] >= n and pair.dtype == hidden.dtype:
                break
        else:
            capacity = (self.capacity_tokens or 0) * hidden.shape[-1]
            pair = torch.empty((2, max(n, capacity)), dtype=hidden.dtype, device=hidden.device)
            self._flat.append(pair)
        return pair[0, :n].view(hidden.shape), pair[1, :n].view(hidden.shape)

    def _load(self, statics: _Statics, hidden, grad_out, leaves) -> None:
        statics.x.copy_(hidden)
        if grad_out is not None:
            statics.io.copy_(grad_out)
        statics.load_leaves(leaves)

    def _fresh_casts(self) -> None:
        """Bring the kept bf16 adapter casts up to date once per optimizer step (graphs read them)."""
        from tuitune.kernels.ops import lora_weights

        if lora_weights.optimizer_steps() != self._cast_steps:
            lora_weights.refresh_kept_casts()
            self._cast_steps = lora_weights.optimizer_steps()

    @staticmethod
    def _forward_body(run_layer, statics: _Statics, autocast) -> None:
        rest, kwargs = statics.arguments()
        device_type, enabled, dtype = autocast
        with torch.no_grad(), torch.autocast(device_type, dtype=dtype, enabled=enabled, cache_enabled=False):
            out = run_layer(statics.x, *rest, **kwargs)
            statics.io.copy_(out)

    @staticmethod
    def _recompute(run_layer, statics: _Statics, autocast, enter, leave):
        """The layer again from the static input, recording its graph: ``(input, output)``."""
        rest, kwargs = statics.arguments()
        h = statics.x.detach().requires_grad_(True)
        device_type, enabled, dtype = autocast
        enter()
        try:
            with torch.enable_grad(), torch.autocast(device_type, dtype=dtype, enabled=enabled, cache_enabled=False):
                out = run_layer(h, *rest, **kwargs)
        finally:
            leave()
        return h, out

    @staticmethod
    def _backward_body(entry: _LayerGraphs, run_layer, statics: _Statics, autocast, enter, leave,
                       accumulate: bool = True) -> None:
        h, out = ModelGraphs._recompute(run_layer, statics, autocast, enter, leave)
        grads = torch.autograd.grad(out, [h, *entry.params], statics.io, allow_unused=True)
        del out
        statics.io.copy_(grads[0])
        if accumulate:
            entry.add_grads(grads[1:])

    def _reaches_outside(self, entry, run_layer, statics, autocast, enter, leave) -> str | None:
        """Why the layer's backward cannot be graphed: it would reach a trainable tensor the layer
        does not own (its gradient would be lost). Runs the recompute once, outside any graph."""
        h, out = self._recompute(run_layer, statics, autocast, enter, leave)
        return reaches_outside(out, [*entry.params, h])

    def capture_stream(self) -> torch.cuda.Stream:
        """The side stream graphs are captured on (made at first use, or ``stream_from``'s)."""
        if self._stream is None:
            self._stream = (self._stream_from.capture_stream() if self._stream_from is not None
                            else torch.cuda.Stream(self.device))
        return self._stream

    @contextmanager
    def on_capture_stream(self):
        """Run the body on the capture stream, after the current stream's work and before its next;
        yields the current stream (None off CUDA, where there are no streams)."""
        if self.device.type != "cuda":
            yield None
            return
        main = torch.cuda.current_stream(self.device)
        stream = self.capture_stream()
        stream.wait_stream(main)
        try:
            with torch.cuda.stream(stream):
                yield main
        finally:
            main.wait_stream(stream)

    def _capture(self, body, warm, reload):
        """Warm ``body`` up on the capture stream (cuBLAS's workspace for that stream, autograd's lazy
        set-up), then capture it; None (and graphs off from now on) when either fails."""
        with self._lock:
            graph = torch.cuda.CUDAGraph()
            main = torch.cuda.current_stream(self.device)
            stream = self.capture_stream()
            try:
                self._fresh_casts()
                with self.on_capture_stream():
                    warm()
                reload()  # the warm-up wrote over the buffers the graph reads
                peak = nullcontext() if self.outside_peak is None else self.outside_peak.capture()
                with peak, torch.cuda.graph(graph, pool=self.pool, stream=stream, capture_error_mode="thread_local"):
                    body()
                main.wait_stream(stream)
            except Exception as exc:  # noqa: BLE001 - any capture failure: run eagerly from now on
                self.failed = _first_error(exc)
                torch.cuda.synchronize(self.device)
                return None
            self.captured += 1
            return graph  # captured, not run: the caller replays it


def _first_error(exc: BaseException) -> str:
    """``Type: first line`` of the error that broke a capture. CUDA reports a capture invalidated by
    an earlier call only as "operation failed due to a previous error during capture" when the
    capture ends; the earlier call's own error, which names the cause, is the exception's context."""
    while exc.__context__ is not None and "previous error during capture" in str(exc):
        exc = exc.__context__
    first_line = str(exc).splitlines()[0][:200] if str(exc) else ""
    return f"{type(exc).__name__}: {first_line}"

