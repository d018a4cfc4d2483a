"""CUDA graphs of decoder layers that keep their activations (no recomputation): a forward graph and a
backward graph per layer, replayed instead of a few hundred launches each.

tuitune.trainer.layer_graphs graphs checkpointed layers: there a layer's recompute and backward
share one graph, so every graph frees what it allocates and one layer's working set serves all.
Without recomputation a layer's forward must leave its saved activations for its backward, which
runs after every later layer's forward. So here each layer has buffers of its own, allocated in the
graphs' pool while its forward graph is captured and held from then on:

- its input (a leaf that requires grad, the start of the layer's autograd graph),
- everything its autograd graph saves for the backward pass, and its output.

Each replay of the forward graph rewrites them in place; the backward graph, captured from
``torch.autograd.grad`` over that autograd graph (kept with ``retain_graph``), reads them and adds
the adapters' gradients into their kept ``.grad`` tensors, as the recompute graph does. That is the
same memory as eager training without recomputation, less the allocator's slack.

Only one input signature is graphed this way per model (the first seen twice): a second one would
hold a second copy of every layer's activations. Calls of other signatures, and each signature's
first sighting (the warm-up: Triton autotuning, cuBLAS handles), run checkpointed instead, their
recompute and backward replayed by the recompute graphs of tuitune.trainer.layer_graphs (``others``,
on the same capture stream): batches of other lengths cost one layer's working set more, not a
second set of activations, and still replay. A layer whose backward would reach a trainable tensor
it does not own, or with dropout, runs as written, as does everything after a capture failed.

Every training forward of a wrapped layer that runs as written does so on the capture stream, and
the recompute graphs share that stream. Autograd runs a leaf's gradient accumulation on the stream
that was current when the leaf was first used, and a training loop often still holds the last
step's loss, and with it those nodes, while the next step's forward is captured: the captured graph
reuses them. Had they been made on another stream, the backward capture would have to make that
stream wait on the capture, which CUDA refuses ("operation would make the legacy stream depend on a
capturing blocking stream") and which breaks the capture.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from tuitune.trainer import layer_graphs as lg
from tuitune.trainer.backward_reach import reaches_outside
from tuitune.trainer.layer_calls import OutputNotATensor, anchor, autocast_state, inner_forward, split_training_call


@dataclass
class _Kept:
    """One layer's graphs of the kept signature and the buffers they read and write."""
    x: torch.Tensor  # the layer's input: a leaf that requires grad, held
    out: torch.Tensor | None = None  # the output, whose autograd graph holds the saved activations
    forward: object = None  # the captured forward graph
    backward: object = None  # the captured backward graph, once the first backward pass has run


CHECKPOINT = "checkpoint"  # ticket(): run this call checkpointed, with the recompute graphs (``others``)


@dataclass
class Ticket:
    """What a layer call's forward and backward need: its graphs and the signature's buffers."""
    entry: lg._LayerGraphs
    kept: _Kept
    statics: lg._Statics
    leaves: list


def _load(kept: _Kept, statics: lg._Statics, hidden: torch.Tensor, leaves: list) -> None:
    """Copy a call's input and arguments into the buffers the forward graph reads, through ``.data``:
    the autograd graph recorded at capture saved these tensors, and an ordinary in-place copy would
    bump their version, so the backward pass (its capture, or the eager fallback) would refuse them
    as modified since the forward."""
    kept.x.data.copy_(hidden)
    statics.load_leaves(leaves, untracked=True)


class KeptGraphs(lg.ModelGraphs):
    """The forward and backward CUDA graphs of one model's layers when nothing is recomputed."""

    def __init__(self, device: torch.device, capacity_tokens: int | None = None):
        super().__init__(device, capacity_tokens)
        self.key: tuple | None = None  # the one signature graphed
        self.kept: dict[int, _Kept] = {}  # id(layer) -> its kept graphs and buffers
        self.others = lg.ModelGraphs(device, capacity_tokens, stream_from=self)  # other signatures, recomputed

    def ticket(self, layer, run_layer, hidden, rest, kwargs, autocast) -> Ticket | str | None:
        """The layer's graphs for this call, captured now if this is the signature's second sighting;
        CHECKPOINT: run it checkpointed (another signature holds the buffers, or this is the warm-up);
        None: run the layer as written."""
        call = self._entry(layer, hidden, rest, kwargs, autocast)
        if call is None:
            return None
        entry, key, leaves, spec = call
        kept = self.kept.get(id(layer))
        if kept is None or key != self.key:
            if self.key not in (None, key) or entry.seen.get(key, 0) < 2:
                return CHECKPOINT
            statics = self._statics(key, hidden, leaves, spec)
            kept = self._capture_forward(layer, entry, key, run_layer, hidden, statics, leaves, autocast)
            if kept is None:
                return None
            self.key = key
        return Ticket(entry, kept, self.statics[key], leaves)

    def run_forward(self, t: Ticket, hidden: torch.Tensor) -> torch.Tensor:
        """Replay the layer's forward on ``hidden``; its output (a copy: the graph's is rewritten)."""
        _load(t.kept, t.statics, hidden, t.leaves)
        self._fresh_casts()
        t.kept.forward.replay()
        return t.kept.out.detach().clone()

    def run_backward(self, t: Ticket, grad_out: torch.Tensor) -> torch.Tensor:
        """Replay the layer's backward for ``grad_out``: the input's gradient (adapter gradients go
        into their ``.grad``); captured at its first call, computed eagerly if that capture failed."""
        statics, kept, entry = t.statics, t.kept, t.entry
        statics.io.copy_(grad_out)
        entry.bind_grads()
        if kept.backward is None and not self.failed:
            def body(accumulate=True):
                self._backward_body(entry, kept, statics, accumulate)

            kept.backward = self._capture(body, warm=lambda: body(accumulate=False),
                                          reload=lambda: statics.io.copy_(grad_out))
            if kept.backward is not None:
                entry.backward[self.key] = kept.backward
            # The warm-up ran this backward once, and a backward may consume what its forward saved
            # (lora_mlp overwrites its saved gate and up with their gradients): recompute it.
            self._fresh_casts()
            kept.forward.replay()
        if kept.backward is None:  # the capture failed: the autograd graph is still there
            self._backward_body(entry, kept, statics)
        else:
            self._fresh_casts()
            kept.backward.replay()
        return statics.io.clone()

    def run_eagerly(self, run_layer, hidden, rest, kwargs):
        """The layer's training forward, not replayed: on the capture stream (see the module doc)."""
        with self.on_capture_stream() as main:
            out = run_layer(hidden, *rest, **kwargs)
        if main is not None and isinstance(out, torch.Tensor):
            out.record_stream(main)  # made on the capture stream, read on the main one
        return out

    def refuse(self, layer, reason: str) -> None:
        """Run ``layer`` as written from now on (it was seen, so it has an entry)."""
        self.layers[id(layer)].refused = reason

    def describe(self) -> str:
        text = super().describe().replace("recompute + backward", "backward, activations kept")
        if self.others.failed or self.others.captured:
            text += f"; other batch shapes, checkpointed: {self.others.describe()}"
        return text

    def pool_gb(self) -> float:
        return super().pool_gb() + self.others.pool_gb()

    # ---------------------------------------------------------------- internals

    def _capture_forward(self, layer, entry, key, run_layer, hidden, statics, leaves, autocast) -> _Kept | None:
        x = torch.empty_strided(hidden.shape, hidden.stride(), dtype=hidden.dtype, device=hidden.device)
        kept = _Kept(x.requires_grad_(True))

        def load():
            _load(kept, statics, hidden, leaves)

        def output():
            return self._forward_output(run_layer, kept, statics, autocast)

        load()
        with self.on_capture_stream():
            probe = output()
        if not isinstance(probe, torch.Tensor):
            reason = f"the layer returns a {type(probe).__name__}, not a tensor"
        else:
            reason = reaches_outside(probe, [*entry.params, kept.x])
        del probe
        if reason is not None:
            entry.refused = reason
            return None
        graph = self._capture(lambda: setattr(kept, "out", output()), warm=output, reload=load)
        if graph is None:
            return None
        kept.forward = entry.forward[key] = graph
        self.kept[id(layer)] = kept
        return kept

    @staticmethod
    def _forward_output(run_layer, kept: _Kept, statics: lg._Statics, autocast) -> torch.Tensor:
        rest, kwargs = statics.arguments()
        device_type, enabled, dtype = autocast
        with torch.enable_grad(), torch.autocast(device_type, dtype=dtype, enabled=enabled, cache_enabled=False):
            return run_layer(kept.x, *rest, **kwargs)

    @staticmethod
    def _backward_body(entry: lg._LayerGraphs, kept: _Kept, statics: lg._Statics, accumulate: bool = True) -> None:
        grads = torch.autograd.grad(kept.out, [kept.x, *entry.params], statics.io, retain_graph=True,
                                    allow_unused=True)
        statics.io.copy_(grads[0])
        if accumulate:
            entry.add_grads(grads[1:])


def make_forward(graphs: KeptGraphs, checkpointed):
    """A decoder layer's forward (bound by enable_checkpointing) that replays its graphs in training.
    ``checkpointed``: the checkpointed forward (tuitune.trainer.activation_checkpointing, with
    ``graphs.others``) for the calls these graphs do not replay."""
    def forward(self, *args, **kwargs):
        run_layer = inner_forward(self)
        if not (self.training and torch.is_grad_enabled()):
            return run_layer(*args, **kwargs)
        hidden, rest, kwargs = split_training_call(args, kwargs)
        ticket = graphs.ticket(self, run_layer, hidden, rest, kwargs, autocast_state(hidden.device.type))
        if ticket is CHECKPOINT:
            try:
                return checkpointed(self, hidden, *rest, **kwargs)
            except OutputNotATensor as exc:  # checkpointing keeps one tensor: run it as written from now on
                graphs.refuse(self, f"the layer returns a {exc.kind}, not a tensor")
                return graphs.run_eagerly(run_layer, hidden, rest, kwargs)
        if ticket is None:
            return graphs.run_eagerly(run_layer, hidden, rest, kwargs)
        return _KeptLayer.apply(graphs, ticket, anchor(hidden.device), hidden)

    return forward


class _KeptLayer(torch.autograd.Function):
    """One layer in the model's autograd graph: its forward and backward are the layer's graphs. The
    anchor (an empty tensor that requires grad) makes it part of the graph when its input is not."""

    @staticmethod
    def forward(ctx, graphs, ticket, anchor, hidden):
        ctx.graphs, ctx.ticket = graphs, ticket
        return graphs.run_forward(ticket, hidden)

    @staticmethod
    def backward(ctx, grad_out):
        dx = ctx.graphs.run_backward(ctx.ticket, grad_out)
        ctx.ticket = None
        return None, None, None, (dx if ctx.needs_input_grad[3] else None)
