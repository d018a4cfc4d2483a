import pytest
import torch

from tests.kernels import kernel_reference as ref
from tests.kernels.kernel_env import DTYPES, gpu_shapes
from tests.kernels.tolerances import check
from tuitune.kernels import fused_linear_cross_entropy
from tuitune.kernels.ops.fused_linear_cross_entropy import fused_linear_cross_entropy_rows, logits_buffer_shape

# (tokens, hidden, vocab)
SHAPES = [(1, 16, 7), (13, 48, 1000), (3, 64, 128256)] + gpu_shapes((4096, 2048, 128256), (1000, 576, 49152))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("softcap", [None, 30.0])
def test_fused_linear_cross_entropy_forward_and_gradients(device, dtype, shape, softcap):
    n, h, v = shape
    x = torch.randn(n, h, device=device).to(dtype).requires_grad_()
    w = (torch.randn(v, h, device=device) / h**0.5).to(dtype).requires_grad_()
    labels = torch.randint(0, v, (n,), device=device)
    if n > 2:
        labels[0] = -100
    loss = fused_linear_cross_entropy(x, w, labels, softcap=softcap)
    loss.backward()
    x64, w64 = ref.up(x), ref.up(w)
    r = ref.cross_entropy(x64 @ w64.t(), labels, softcap=softcap)
    r.backward()
    check("fused_linear_ce.loss", loss, r, dtype)
    check("fused_linear_ce.dhidden", x.grad, x64.grad, dtype)
    check("fused_linear_ce.dweight", w.grad, w64.grad, dtype)


def test_fused_linear_cross_entropy_rows_metrics_and_frozen_weight(device):
    n, h, v = 2 * 9, 32, 301
    x = torch.randn(2, 9, h, device=device, requires_grad=True)
    w = torch.randn(v, h, device=device)  # frozen, like a LoRA run's lm_head
    labels = torch.randint(0, v, (2, 9), device=device)
    labels[1, :4] = -100
    loss, entropy, top1 = fused_linear_cross_entropy_rows(x, w, labels)
    assert loss.shape == labels.shape and not entropy.requires_grad and top1.dtype == torch.bool
    logits = (x.detach().double() @ w.double().t())
    logp = logits.log_softmax(-1)
    valid = labels != -100
    ent_ref = -(logp.exp() * logp).sum(-1) * valid
    top_ref = (logits.argmax(-1) == labels) & valid
    check("fused_linear_ce.entropy", entropy, ent_ref, torch.float32)
    assert torch.equal(top1, top_ref)
    (loss.sum() / valid.sum()).backward()
    x64 = ref.up(x)
    ref.cross_entropy(x64 @ w.double().t(), labels).backward()
    check("fused_linear_ce.dhidden", x.grad, x64.grad, torch.float32)
    assert n == loss.numel()


def test_fused_linear_cross_entropy_chunks_many_rows(device, monkeypatch):
    import tuitune.kernels.ops.fused_linear_cross_entropy as flce

    monkeypatch.setattr(flce, "_chunk_rows", lambda n, v: 5)  # force several chunks
    x = torch.randn(23, 20, device=device, requires_grad=True)
    w = torch.randn(50, 20, device=device, requires_grad=True)
    labels = torch.randint(0, 50, (23,), device=device)
    fused_linear_cross_entropy(x, w, labels).backward()
    x64, w64 = ref.up(x), ref.up(w)
    ref.cross_entropy(x64 @ w64.t(), labels).backward()
    check("fused_linear_ce.dhidden", x.grad, x64.grad, torch.float32)
    check("fused_linear_ce.dweight", w.grad, w64.grad, torch.float32)


def test_a_logits_buffer_handed_in_gives_the_same_rows_and_must_fit(device, monkeypatch):
    """The caller's memory for the logits chunk (the graphs' pool, loss_in_graph_pool) changes nothing."""
    import tuitune.kernels.ops.fused_linear_cross_entropy as flce

    monkeypatch.setattr(flce, "_chunk_rows", lambda n, v: 4)  # several chunks through the one buffer
    x = torch.randn(11, 24, device=device, requires_grad=True)
    w = torch.randn(37, 24, device=device)
    labels = torch.randint(0, 37, (11,), device=device)
    labels[3] = -100
    want = fused_linear_cross_entropy_rows(x, w, labels)
    (want[0].sum()).backward()
    want_dx, x.grad = x.grad.clone(), None
    assert logits_buffer_shape(11, w) == (4, 37) and logits_buffer_shape(3, w) == (3, 37)
    buffer = torch.full(logits_buffer_shape(11, w), float("nan"), device=device)
    got = fused_linear_cross_entropy_rows(x, w, labels, logits_buffer=buffer)
    (got[0].sum()).backward()
    for a, b in zip(got, want):
        assert torch.equal(a, b)
    assert torch.equal(x.grad, want_dx)
    with pytest.raises(ValueError, match="logits_buffer must be a contiguous"):
        fused_linear_cross_entropy_rows(x, w, labels, logits_buffer=torch.empty(5, 37, device=device))
