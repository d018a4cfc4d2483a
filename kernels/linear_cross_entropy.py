"""Linear projection to the vocabulary fused with cross-entropy, never holding the full logits.

The rows (tokens) are processed in chunks: for each chunk the logits ``hidden_chunk @ weight.T``
are formed, the cross-entropy kernels of ``chunked_cross_entropy.py`` reduce them to per-row loss,
log-sum-exp, entropy and arg-max flag, and the chunk is dropped. The backward pass forms each
chunk's logits again, lets the backward kernel overwrite them with ``dloss/dlogits`` (scaled by the
incoming per-row gradient), and turns them into the chunk's ``d hidden`` and the accumulated
``d weight``. Peak extra memory is one chunk of logits, whatever the sequence length.
"""

from __future__ import annotations

import torch

from ._launch import interpreted
from .chunked_cross_entropy import ce_rows_backward, ce_rows_forward


def _chunk_rows(n_rows: int, vocab: int) -> int:
    target = (1 << 20) if interpreted() else (1 << 24)
    return max(1, min(n_rows, target // max(vocab, 1)))


class FusedLinearCrossEntropyFunction(torch.autograd.Function):
    """``(hidden (N, H), weight (V, H), labels (N,))`` -> per-row ``(loss, entropy, is_top1)``.

    Only ``loss`` is differentiable (to ``hidden`` and, when it requires grad, ``weight``).
    """

    @staticmethod
    def forward(ctx, hidden, weight, labels, ignore_index, softcap):
        n_rows = hidden.shape[0]
        w = weight if weight.dtype == hidden.dtype else weight.to(hidden.dtype)
        chunk = _chunk_rows(n_rows, w.shape[0])
        dev = hidden.device
        loss = torch.empty(n_rows, dtype=torch.float32, device=dev)
        lse = torch.empty_like(loss)
        entropy = torch.empty_like(loss)
        top1 = torch.empty(n_rows, dtype=torch.bool, device=dev)
        for i in range(0, n_rows, chunk):
            j = min(i + chunk, n_rows)
            logits = hidden[i:j] @ w.t()
            loss[i:j], lse[i:j], entropy[i:j], top1[i:j] = ce_rows_forward(logits, labels[i:j], ignore_index, softcap)
        ctx.save_for_backward(hidden, weight, labels, lse)
        ctx.ignore_index, ctx.softcap, ctx.chunk = ignore_index, softcap, chunk
        ctx.mark_non_differentiable(entropy, top1)
        return loss, entropy, top1

    @staticmethod
    def backward(ctx, grad_loss, _grad_entropy, _grad_top1):
        hidden, weight, labels, lse = ctx.saved_tensors
        w = weight if weight.dtype == hidden.dtype else weight.to(hidden.dtype)
        n_rows, chunk = hidden.shape[0], ctx.chunk
        want_h, want_w = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        dh = torch.empty_like(hidden) if want_h else None
        dw = torch.zeros(weight.shape, dtype=torch.float32, device=weight.device) if want_w else None
        grad_loss = grad_loss.contiguous()
        for i in range(0, n_rows, chunk):
            j = min(i + chunk, n_rows)
            logits = hidden[i:j] @ w.t()
            dlogits = ce_rows_backward(logits, labels[i:j], lse[i:j], grad_loss[i:j], ctx.ignore_index,
                                       ctx.softcap, out=logits)
            if want_h:
                torch.matmul(dlogits, w, out=dh[i:j])
            if want_w:
                dw += (dlogits.t() @ hidden[i:j]).float()
        return dh, (dw.to(weight.dtype) if want_w else None), None, None, None


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
                                    ignore_index: int = -100, softcap: float | None = None):
    """Per-token ``(loss, entropy, is_top1)``, each shaped like ``labels``; 0 where ignored.

    ``loss`` is the negative log-likelihood (differentiable), ``entropy`` the softmax entropy and
    ``is_top1`` whether the label is the arg-max (both without gradient).
    """
    h2, lab = _prepare(hidden, weight, labels)
    loss, entropy, top1 = FusedLinearCrossEntropyFunction.apply(h2, weight, lab, int(ignore_index), softcap)
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
