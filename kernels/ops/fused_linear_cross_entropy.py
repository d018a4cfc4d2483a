"""Linear projection to the vocabulary fused with cross-entropy, never holding the full logits.

The rows (tokens) are processed in chunks: for each chunk the logits ``hidden_chunk @ weight.T``
are formed in one buffer that every chunk reuses, and the cross-entropy kernels of
``cross_entropy.py`` reduce them to per-row loss, log-sum-exp, entropy and arg-max flag. Peak extra
memory is one chunk of logits, whatever the sequence length.

When ``hidden`` needs a gradient, the forward pass also turns each chunk's logits into
``d loss_row / d logits`` in place (for a unit gradient per row) and keeps ``d hidden`` for a unit
gradient: the backward pass only scales its rows by the incoming per-row gradient (the row
gradient is linear in it), so the vocabulary GEMM is not run a second time. A trainable ``weight``
(rare: a trained LM head) is served by a backward pass that forms each chunk's logits again.
"""

from __future__ import annotations

import torch

from ._launch import interpreted
from .cross_entropy import ce_rows_backward, ce_rows_forward


def _chunk_rows(n_rows: int, vocab: int) -> int:
    target = (1 << 20) if interpreted() else (1 << 26)
    return max(1, min(n_rows, target // max(vocab, 1)))


def _logits_buffer(rows: int, weight: torch.Tensor) -> torch.Tensor:
    """One chunk's logits, reused by every chunk: a fresh product per chunk would hold two chunks at once
    (the next product is allocated before the previous one's last reference goes)."""
    return torch.empty(rows, weight.shape[0], dtype=weight.dtype, device=weight.device)


def logits_buffer_shape(n_rows: int, weight: torch.Tensor) -> tuple[int, int]:
    """The shape of the logits buffer the forward pass uses for ``n_rows`` rows against ``weight``
    (vocab, H), for a caller that hands its own in (``logits_buffer=``)."""
    return max(1, min(_chunk_rows(n_rows, weight.shape[0]), n_rows)), weight.shape[0]


class FusedLinearCrossEntropyFunction(torch.autograd.Function):
    """``(hidden (N, H), weight (V, H), labels (N,))`` -> per-row ``(loss, entropy, is_top1)``.

    Only ``loss`` is differentiable (to ``hidden`` and, when it requires grad, ``weight``).
    """

    @staticmethod
    def forward(ctx, hidden, weight, labels, ignore_index, softcap, logits_buffer=None):
        n_rows = hidden.shape[0]
        w = weight if weight.dtype == hidden.dtype else weight.to(hidden.dtype)
        chunk = _chunk_rows(n_rows, w.shape[0])
        dev = hidden.device
        want_h, want_w = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        loss = torch.empty(n_rows, dtype=torch.float32, device=dev)
        lse = torch.empty_like(loss)
        entropy = torch.empty_like(loss)
        top1 = torch.empty(n_rows, dtype=torch.bool, device=dev)
        dh_unit = torch.empty_like(hidden) if want_h else None
        unit = torch.ones(min(chunk, n_rows), dtype=torch.float32, device=dev) if want_h else None
        buffer = _logits_buffer(min(chunk, n_rows), w) if logits_buffer is None else logits_buffer
        for i in range(0, n_rows, chunk):
            j = min(i + chunk, n_rows)
            logits = torch.matmul(hidden[i:j], w.t(), out=buffer[:j - i])
            loss[i:j], lse[i:j], entropy[i:j], top1[i:j] = ce_rows_forward(logits, labels[i:j], ignore_index, softcap)
            if want_h:
                dlogits = ce_rows_backward(logits, labels[i:j], lse[i:j], unit[:j - i], ignore_index, softcap,
                                           out=logits)
                torch.matmul(dlogits, w, out=dh_unit[i:j])
        ctx.save_for_backward(dh_unit, hidden if want_w else None, weight if want_w else None, labels, lse)
        ctx.ignore_index, ctx.softcap, ctx.chunk = ignore_index, softcap, chunk
        ctx.mark_non_differentiable(entropy, top1)
        return loss, entropy, top1

    @staticmethod
    def backward(ctx, grad_loss, _grad_entropy, _grad_top1):
        dh_unit, hidden, weight, labels, lse = ctx.saved_tensors
        want_h, want_w = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        grad_loss = grad_loss.contiguous()
        dh = (dh_unit * grad_loss.unsqueeze(1)).to(dh_unit.dtype) if want_h else None
        dw = None
        if want_w:
            w = weight if weight.dtype == hidden.dtype else weight.to(hidden.dtype)
            n_rows, chunk = hidden.shape[0], ctx.chunk
            dw = torch.zeros(weight.shape, dtype=torch.float32, device=weight.device)
            buffer = _logits_buffer(min(chunk, n_rows), w)
            for i in range(0, n_rows, chunk):
                j = min(i + chunk, n_rows)
                logits = torch.matmul(hidden[i:j], w.t(), out=buffer[:j - i])
                dlogits = ce_rows_backward(logits, labels[i:j], lse[i:j], grad_loss[i:j], ctx.ignore_index,
                                           ctx.softcap, out=logits)
                dw += (dlogits.t() @ hidden[i:j]).float()
            dw = dw.to(weight.dtype)
        return dh, dw, None, None, None, None


def _prepare(hidden, weight, labels):
    if hidden.shape[:-1] != labels.shape:
        raise ValueError(f"fused_linear_cross_entropy: labels {tuple(labels.shape)} do not match hidden "
                         f"{tuple(hidden.shape)}")
    if weight.dim() != 2 or weight.shape[1] != hidden.shape[-1]:
        raise ValueError(f"fused_linear_cross_entropy: weight {tuple(weight.shape)} is not (vocab, "
                         f"{hidden.shape[-1]})")
    h2 = hidden.reshape(-1, hidden.shape[-1])
    if not h2.is_contiguous():
        h2 = h2.contiguous()
    return h2, labels.reshape(-1).contiguous()


def fused_linear_cross_entropy_rows(hidden: torch.Tensor, weight: torch.Tensor, labels: torch.Tensor, *,
                                    ignore_index: int = -100, softcap: float | None = None,
                                    logits_buffer: torch.Tensor | None = None):
    """Per-token ``(loss, entropy, is_top1)``, each shaped like ``labels``; 0 where ignored.

    ``loss`` is the negative log-likelihood (differentiable), ``entropy`` the softmax entropy and
    ``is_top1`` whether the label is the arg-max (both without gradient). ``logits_buffer``: the
    forward pass's logits chunk, shaped ``logits_buffer_shape(rows, weight)`` in ``hidden``'s dtype,
    when the caller provides the memory (nothing that outlives the forward pass is put in it).
    """
    h2, lab = _prepare(hidden, weight, labels)
    if logits_buffer is not None:
        want = logits_buffer_shape(h2.shape[0], weight)
        if tuple(logits_buffer.shape) != want or logits_buffer.dtype != h2.dtype or not logits_buffer.is_contiguous():
            raise ValueError(f"fused_linear_cross_entropy: logits_buffer must be a contiguous {want} {h2.dtype} "
                             f"tensor, got {tuple(logits_buffer.shape)} {logits_buffer.dtype}")
    loss, entropy, top1 = FusedLinearCrossEntropyFunction.apply(h2, weight, lab, int(ignore_index), softcap,
                                                                logits_buffer)
    shape = labels.shape
    return loss.view(shape), entropy.view(shape), top1.view(shape)


def fused_linear_cross_entropy(hidden: torch.Tensor, weight: torch.Tensor, labels: torch.Tensor, *,
                               ignore_index: int = -100, softcap: float | None = None) -> torch.Tensor:
    """Mean cross-entropy of ``hidden @ weight.T`` against ``labels`` over the non-ignored tokens.

    ``hidden``: (..., H); ``weight``: (vocab, H) (an ``lm_head`` weight); ``labels``: (...), already
    aligned with ``hidden`` (shift them yourself for next-token prediction). ``softcap`` applies
    Gemma 2's final-logit soft-capping. The full (tokens, vocab) logits are never materialised.
    Returns a float32 scalar (0 when every label is ignored).
    """
    loss, _, _ = fused_linear_cross_entropy_rows(hidden, weight, labels, ignore_index=ignore_index, softcap=softcap)
    count = (labels != ignore_index).sum().clamp(min=1)
    return loss.sum() / count
