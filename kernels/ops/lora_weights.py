"""What a fused LoRA projection needs to know about one linear layer, as plain tensors.

``y = x @ W.T + bias + scaling * (x @ A.T) @ B.T`` with ``W`` frozen (a dense tensor or a
bitsandbytes ``Params4bit``, dequantized on the fly and never kept), ``bias`` frozen or None, and
the adapter ``A`` (r, in), ``B`` (out, r) trainable (or both None: a projection without adapter).
This module knows nothing about PEFT; the trainer's patcher reads PEFT layers into it.

Every matrix product runs in the activations' dtype. The adapter may be stored in float32 (PEFT's
master copy, which the optimizer updates); the activations are never cast, only the two small
rank-r matrices, and that cast is kept until the adapter changes (``adapter_casts``).

Where a weight is not merged (below), the adapter's rank-r GEMM writes the output first and the
base GEMM adds into it (``addmm_`` with ``beta=1``): the compute-bound base GEMM reads the output in
its epilogue for free, where adding the adapter last would be a memory-bound pass reading and
writing the whole output. Projections
that share an input (q, k and v; gate and up) get their rank-r products from one GEMM, and in the
backward pass their dA from one GEMM and their input-gradient shares from one GEMM.

A 4-bit base weight is dequantized at each use, and with an adapter it is dequantized *merged*
(``W + scaling * B @ A``, ``nf4_merge``): the projection is then one GEMM with that matrix, forward and
backward, and the adapter's own passes over the activations go away (the rank-r GEMM writing the
output and the base GEMM reading it back; the input gradient's rank-r share likewise). The rank-r
products are still formed where a gradient needs them. Every weight a caller hands to these functions
(``ws``, ``stacked``) is ``LoRAWeights.effective`` of its projection: merged exactly when ``merges``.
``TUITUNE_MERGE_ADAPTERS=0`` turns merging off (the weights are then dequantized plain).

The LoRA scaling rides on the two rank-r products, ``xa = scaling * x @ A.T`` in the forward and
``dyb = scaling * dy @ B`` in the backward (the GEMMs' ``alpha``), so every gradient GEMM gives its
gradient as it is: no scaling pass over dA, dB or dx afterwards (two launches per projection on a
launch-bound step).
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass

import torch

from .adapter_casts import cast_adapter, optimizer_steps, refresh_kept_casts, stacked_casts  # noqa: F401
from .nf4_dequantize import base_weight, has_kept_dense, nf4_dequantize
from .nf4_merge import merge_supported, nf4_merge

_MERGE = os.environ.get("TUITUNE_MERGE_ADAPTERS", "1") != "0"


def set_merging(on: bool) -> bool:
    """Turn merged dequantization (see the module doc) on or off for this process; returns the old
    setting. For A/B measurements and tests; the default comes from ``TUITUNE_MERGE_ADAPTERS``."""
    global _MERGE
    old, _MERGE = _MERGE, bool(on)
    return old


@dataclass(frozen=True)
class LoRAWeights:
    weight: torch.Tensor
    bias: torch.Tensor | None = None
    lora_a: torch.Tensor | None = None
    lora_b: torch.Tensor | None = None
    scaling: float = 1.0

    @property
    def out_features(self) -> int:
        qs = getattr(self.weight, "quant_state", None)
        return int(qs.shape[0]) if qs is not None else int(self.weight.shape[0])

    @property
    def in_features(self) -> int:
        qs = getattr(self.weight, "quant_state", None)
        return int(qs.shape[1]) if qs is not None else int(self.weight.shape[1])

    def dense(self, dtype: torch.dtype) -> torch.Tensor:
        return base_weight(self.weight, dtype)

    def merges(self) -> bool:
        """Whether this projection's GEMMs use its base weight merged with its adapter: a 4-bit weight
        dequantized at each use anyway (not kept dense), in a layout ``nf4_merge`` reads, with an
        adapter held as plain tensors (a sharded DTensor adapter is cast on its own, every time)."""
        return _MERGE and self._mergeable and not has_kept_dense(self.weight)

    @functools.cached_property
    def _mergeable(self) -> bool:
        """What of ``merges`` never changes for these tensors (asked several times a projection, on a
        step that may wait for the host)."""
        return (self.lora_a is not None and merge_supported(self.weight)
                and type(self.lora_a) in (torch.Tensor, torch.nn.Parameter)
                and type(self.lora_b) in (torch.Tensor, torch.nn.Parameter))

    def effective(self, dtype: torch.dtype, out: torch.Tensor | None = None) -> torch.Tensor:
        """The weight this projection's GEMMs use, in ``dtype``: merged when ``merges``, else the base
        weight dense. ``out``: rows of a stacked buffer to dequantize into (4-bit weights only)."""
        if self.merges():
            a, b = self.adapter(dtype)
            return nf4_merge(self.weight, a, b, self.scaling, out=out)
        if out is not None:
            return nf4_dequantize(self.weight, dtype, out=out)
        return self.dense(dtype)

    def adapter(self, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """``(A, B)`` in ``dtype`` (a cast of the two small matrices when they are stored wider)."""
        return cast_adapter(self.lora_a, dtype), cast_adapter(self.lora_b, dtype)


def _uniform_scaling(ps) -> float | None:
    """The projections' common LoRA scaling, or None when they differ."""
    scalings = {p.scaling for p in ps}
    return scalings.pop() if len(scalings) == 1 else None


def scaled_mm(a: torch.Tensor, b: torch.Tensor, scaling: float = 1.0) -> torch.Tensor:
    """``scaling * a @ b`` in a new buffer, by one GEMM (its ``alpha``). The buffer is never read
    (``beta=0`` ignores its uninitialised values), and a base GEMM may add into it afterwards."""
    return a.new_empty((a.shape[0], b.shape[1])).addmm_(a, b, beta=0.0, alpha=scaling)


def stacked_dense(ps, dtype: torch.dtype) -> torch.Tensor | None:
    """The effective weights (``LoRAWeights.effective``) of 4-bit projections that share an input,
    dequantized into the row blocks of one (sum of outputs, in) buffer, so that
    ``project_group(..., stacked=...)`` runs one base GEMM for the group; None when any weight is not
    4-bit or is kept dense already (a stack would be a copy)."""
    if len(ps) < 2:
        return None
    weights = [p.weight for p in ps]
    if any(getattr(w, "quant_state", None) is None or has_kept_dense(w) for w in weights):
        return None
    buffer = torch.empty((sum(p.out_features for p in ps), ps[0].in_features), dtype=dtype,
                         device=weights[0].device)
    for p, block in zip(ps, row_blocks(buffer, ps)):
        p.effective(dtype, out=block)
    return buffer


def row_blocks(stacked: torch.Tensor, ps) -> list[torch.Tensor]:
    """Each projection's weight as its rows of a ``stacked_dense`` buffer."""
    blocks, offset = [], 0
    for p in ps:
        blocks.append(stacked[offset:offset + p.out_features])
        offset += p.out_features
    return blocks


def project_group(x2: torch.Tensor, ps, ws=None, stacked: torch.Tensor | None = None, need_xa: bool = True):
    """Forward of projections that share the input ``x2`` (q, k, v; gate and up; or one alone).

    Returns ``(ys, xas)``: each projection's output and its ``scaling * x @ A.T`` (None without adapter,
    and None for a merging projection when ``need_xa`` is False: nothing will take its gradient).
    The rank-r products of all adapters come from one GEMM (``x2`` is read once; each ``xa`` is a
    column slice of its result). A merging projection's output is one GEMM with its merged weight. An
    output of a projection that does not merge is first written by its adapter's rank-r GEMM, then the
    base GEMM adds into it (``beta=1``): the base GEMM is compute-bound and reads the output in its
    epilogue at no visible cost, where adding the adapter afterwards would be a separate,
    memory-bound pass reading and writing the whole output. ``ws``: effective weights the caller holds
    (or None entries: formed here, one at a time, and dropped after use). ``stacked``: the group's
    effective weights as one ``stacked_dense`` buffer (``ws`` default to its row blocks); when no
    projection has a bias, the outputs are then column blocks of one buffer written by one base GEMM
    (fewer, larger launches; a caller must accept outputs whose rows are strided, and that any one of
    them keeps all alive).
    """
    merging = [p.merges() for p in ps]
    if stacked is not None:
        ws = ws if ws is not None else row_blocks(stacked, ps)
        all_merge = all(m or p.lora_a is None for p, m in zip(ps, merging))
        none_merge = not any(merging) and all(p.lora_a is not None for p in ps)
        if any(p.bias is not None for p in ps) or not (all_merge or none_merge):
            stacked = None
    ws = ws if ws is not None else (None,) * len(ps)
    xas = rank_products(x2, ps, skip=[m and not need_xa for m in merging])
    if stacked is not None:
        return _project_stacked(x2, ps, xas, stacked, merged=not none_merge), xas
    ys = []
    for p, w, xa, merged in zip(ps, ws, xas, merging):
        w = p.effective(x2.dtype) if w is None else w
        bias = p.bias.to(x2.dtype) if p.bias is not None else None
        if p.lora_a is None or merged:
            ys.append(torch.addmm(bias, x2, w.t()) if bias is not None else x2 @ w.t())
            continue
        b = cast_adapter(p.lora_b, x2.dtype)
        if bias is not None:
            y = torch.addmm(bias, xa, b.t())
        else:
            y = scaled_mm(xa, b.t())
        ys.append(y.addmm_(x2, w.t()))
    return ys, xas


def rank_products(x2: torch.Tensor, ps, skip=None) -> list[torch.Tensor | None]:
    """Each projection's ``scaling * x @ A.T`` (None without adapter, or where ``skip`` says so), all
    from one GEMM of ``x2`` (each is a column slice of its result)."""
    skip = skip if skip is not None else (False,) * len(ps)
    with_adapter = [p for p, s in zip(ps, skip) if p.lora_a is not None and not s]
    xas: list[torch.Tensor | None] = [None] * len(ps)
    if not with_adapter:
        return xas
    a_all = stacked_casts([p.lora_a for p in with_adapter], x2.dtype)
    scaling = _uniform_scaling(with_adapter)
    xa_all = scaled_mm(x2, a_all.t(), 1.0 if scaling is None else scaling)
    offset = 0
    for i, p in enumerate(ps):
        if p.lora_a is not None and not skip[i]:
            r = p.lora_a.shape[0]
            xas[i] = xa_all[:, offset:offset + r]
            if scaling is None and p.scaling != 1.0:
                xas[i].mul_(p.scaling)
            offset += r
    return xas


def _project_stacked(x2: torch.Tensor, ps, xas, stacked: torch.Tensor, merged: bool) -> list[torch.Tensor]:
    """The outputs of the group as column blocks of one buffer, from one base GEMM over the stacked
    weights: ``merged`` (every adapter is in its weight) writes them at once; otherwise every
    projection has an adapter, whose rank-r GEMM writes its block first, and the base GEMM adds in."""
    if merged:
        y = x2 @ stacked.t()
    else:
        y = x2.new_empty((x2.shape[0], stacked.shape[0]))
    ys, offset = [], 0
    for p, xa in zip(ps, xas):
        block = y[:, offset:offset + p.out_features]
        if not merged:
            block.addmm_(xa, cast_adapter(p.lora_b, x2.dtype).t(), beta=0.0)
        ys.append(block)
        offset += p.out_features
    if not merged:
        y.addmm_(x2, stacked.t())
    return ys


def project(x2: torch.Tensor, p: LoRAWeights, w: torch.Tensor | None = None, need_xa: bool = True):
    """Forward of one projection on 2-D ``x2``; returns ``(y, x @ A.T or None)``.

    ``w``: the projection's effective weight in ``x2``'s dtype, when the caller already has it.
    """
    ys, xas = project_group(x2, (p,), (w,), need_xa=need_xa)
    return ys[0], xas[0]


def project_group_backward(dys, x2: torch.Tensor | None, xas, ps, need_dx: bool = True, ws=None,
                           dx_out: torch.Tensor | None = None):
    """Gradients of projections that shared the input ``x2``: ``(dx or None, [(dA, dB) or (None, None)])``.

    ``dys``: each output's gradient (None: that output got none). ``ws``: effective weights, as in
    ``project_group``. The input gradient is written into ``dx_out`` when given (its old values are not
    read), else into a new buffer: first the rank-r share of every adapter that is not merged into its
    weight, in one GEMM (``beta=0``, so nothing is read), then each base GEMM adds into it. ``x2`` is
    needed only for dA, which come from one GEMM for the whole group. dA and dB come back in each
    adapter's own dtype.
    """
    ws = ws if ws is not None else (None,) * len(ps)
    live = [i for i, dy in enumerate(dys) if dy is not None]
    grads: list[tuple] = [(None, None)] * len(ps)
    adapted = [i for i in live if ps[i].lora_a is not None]
    dtype = dys[live[0]].dtype if live else None
    dyb_all = None
    if adapted:
        n = dys[adapted[0]].shape[0]
        dyb_all = dys[adapted[0]].new_empty((n, sum(ps[i].lora_a.shape[0] for i in adapted)))
        offset = 0
        for i in adapted:
            r = ps[i].lora_a.shape[0]
            dyb_all[:, offset:offset + r].addmm_(dys[i], cast_adapter(ps[i].lora_b, dtype), beta=0.0,
                                                 alpha=ps[i].scaling)
            grads[i] = (None, matmul_as(dys[i].t(), xas[i], ps[i].lora_b.dtype))
            offset += r
    dx = None
    if need_dx and live:
        n = dys[live[0]].shape[0]
        dx = dx_out if dx_out is not None else dys[live[0]].new_empty((n, ps[live[0]].in_features))
        first = True
        unmerged = [i for i in adapted if not ps[i].merges()]
        if unmerged and len(unmerged) == len(adapted):
            dx.addmm_(dyb_all, stacked_casts([ps[i].lora_a for i in adapted], dtype), beta=0.0)
            first = False
        elif unmerged:
            offset = 0
            for i in adapted:
                r = ps[i].lora_a.shape[0]
                if i in unmerged:
                    dx.addmm_(dyb_all[:, offset:offset + r], cast_adapter(ps[i].lora_a, dtype),
                              beta=0.0 if first else 1.0)
                    first = False
                offset += r
        for i in live:
            w = ws[i] if ws[i] is not None else ps[i].effective(dtype)
            dx.addmm_(dys[i], w, beta=0.0 if first else 1.0)
            first = False
    elif need_dx and dx_out is not None:
        dx = dx_out.zero_()
    if adapted:
        a_dtypes = {ps[i].lora_a.dtype for i in adapted}
        d_a_all = matmul_as(dyb_all.t(), x2, a_dtypes.pop()) if len(a_dtypes) == 1 else dyb_all.t() @ x2
        offset = 0
        for i in adapted:
            r = ps[i].lora_a.shape[0]
            grads[i] = (d_a_all[offset:offset + r].to(ps[i].lora_a.dtype), grads[i][1])
            offset += r
    return dx, grads


def project_backward(dy: torch.Tensor, x2: torch.Tensor | None, xa: torch.Tensor | None, p: LoRAWeights,
                     need_dx: bool = True, w: torch.Tensor | None = None, dx_out: torch.Tensor | None = None):
    """Gradients of one projection: ``(dx or None, dA or None, dB or None)``; see ``project_group_backward``."""
    dx, ((d_a, d_b),) = project_group_backward((dy,), x2, (xa,), (p,), need_dx=need_dx, ws=(w,), dx_out=dx_out)
    return dx, d_a, d_b


_WIDE_MM: bool | None = None  # whether this torch's CUDA GEMM writes float32 from 16-bit inputs (mm.dtype)


def matmul_as(a: torch.Tensor, b: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """``a @ b`` as ``dtype``. An adapter gradient from 16-bit activations, wanted in float32 (PEFT's
    master copy), comes out of the CUDA GEMM itself in float32: no cast kernel after it (fourteen
    launches a decoder layer's backward, which a launch-bound step waits for) and no rounding to
    16 bits on the way."""
    global _WIDE_MM
    if (dtype == torch.float32 and a.dtype in (torch.bfloat16, torch.float16) and a.is_cuda
            and _WIDE_MM is not False):
        try:
            out = torch.mm(a, b, out_dtype=torch.float32)
        except (RuntimeError, TypeError):  # a torch without mm.dtype on CUDA
            _WIDE_MM = False
        else:
            _WIDE_MM = True
            return out
    return (a @ b).to(dtype)


def adapters(*projections: LoRAWeights) -> list[torch.Tensor | None]:
    """The A, B tensors of each projection, flattened, for ``autograd.Function.apply``."""
    out: list[torch.Tensor | None] = []
    for p in projections:
        out += [p.lora_a, p.lora_b]
    return out


def as_2d(x: torch.Tensor) -> torch.Tensor:
    x2 = x.reshape(-1, x.shape[-1])
    return x2 if x2.is_contiguous() else x2.contiguous()
