import warnings

import pytest
import torch

from tests.kernels import kernel_reference as ref
from tests.kernels.kernel_env import DTYPES, ON_GPU, gpu_shapes
from tests.kernels.tolerances import check
from tuitune.kernels import LoRAWeights, lora_mlp, lora_o, lora_qkv, nf4_dequantize

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    import bitsandbytes as bnb

# (tokens, hidden, intermediate, rank)
# widths of whole quantization blocks (64) have their 4-bit weights merged with the adapters; the others not
SHAPES = [(1, 64, 96, 8), (13, 96, 160, 16), (7, 128, 192, 8)] + gpu_shapes((4096, 2048, 8192, 16))


def _proj(out_f, in_f, dtype, device, base, rank, adapter_dtype, bias=False):
    w = torch.randn(out_f, in_f, device=device) / in_f**0.5
    if base == "nf4":
        p = bnb.nn.Params4bit(w.to(dtype).cpu(), requires_grad=False, quant_type="nf4", compress_statistics=True,
                              blocksize=64).to(device)
        dense64 = nf4_dequantize(p, torch.float64 if not ON_GPU else torch.float32).double()
        weight = p
    else:
        weight = w.to(dtype)
        dense64 = weight.double()
    b = (torch.randn(out_f, device=device) * 0.1).to(dtype) if bias else None
    a = (torch.randn(rank, in_f, device=device) / in_f**0.5).to(adapter_dtype).requires_grad_()
    bb = (torch.randn(out_f, rank, device=device) * 0.1).to(adapter_dtype).requires_grad_()
    return LoRAWeights(weight, b, a, bb, 2.0), dense64


def _ref_proj(x64, p, dense64):
    a64, b64 = ref.up(p.lora_a), ref.up(p.lora_b)
    bias = None if p.bias is None else p.bias.double()
    return ref.lora_linear(x64, dense64, bias, a64, b64, p.scaling), (a64, b64)


CASES = [(d, base, ad) for d in DTYPES for base in ("dense", "nf4") for ad in ("same", "float32")
         if not (d == torch.float32 and ad == "float32")]


@pytest.mark.parametrize("dtype,base,adapter", CASES)
@pytest.mark.parametrize("shape", SHAPES)
def test_lora_o(device, dtype, base, adapter, shape):
    n, hidden, inter, r = shape
    ad = dtype if adapter == "same" else torch.float32
    p, w64 = _proj(hidden, inter, dtype, device, base, r, ad)
    x = torch.randn(n, inter, device=device, dtype=dtype, requires_grad=True)
    y = lora_o(x, p, keep_dense=(base == "nf4"))
    dy = torch.randn_like(y)
    y.backward(dy)
    x64 = ref.up(x)
    y64, (a64, b64) = _ref_proj(x64, p, w64)
    y64.backward(dy.double())
    check(f"lora_o.{base}.y", y, y64, dtype)
    check(f"lora_o.{base}.dx", x.grad, x64.grad, dtype)
    check(f"lora_o.{base}.dA", p.lora_a.grad, a64.grad, dtype)
    check(f"lora_o.{base}.dB", p.lora_b.grad, b64.grad, dtype)


@pytest.mark.parametrize("dtype,base,adapter", CASES)
@pytest.mark.parametrize("shape", SHAPES)
def test_lora_o_replaying_its_kept_output_computes_only_the_backward(device, dtype, base, adapter, shape):
    n, hidden, inter, r = shape
    ad = dtype if adapter == "same" else torch.float32
    p, w64 = _proj(hidden, inter, dtype, device, base, r, ad)
    x = torch.randn(n, inter, device=device, dtype=dtype)
    with torch.no_grad():
        kept = lora_o(x, p)
    x.requires_grad_()
    y = lora_o(x, p, replay=kept)
    assert torch.equal(y, kept)
    dy = torch.randn_like(y)
    (y * 1.0).backward(dy)
    x64 = ref.up(x)
    y64, (a64, b64) = _ref_proj(x64, p, w64)
    y64.backward(dy.double())
    check(f"lora_o.replay.{base}.dx", x.grad, x64.grad, dtype)
    check(f"lora_o.replay.{base}.dA", p.lora_a.grad, a64.grad, dtype)
    check(f"lora_o.replay.{base}.dB", p.lora_b.grad, b64.grad, dtype)


def test_lora_o_refuses_a_replay_of_another_width(device):
    p, _ = _proj(8, 16, torch.float32, device, "dense", 4, torch.float32)
    with pytest.raises(ValueError, match="replay has 9 features, the projection 8"):
        lora_o(torch.randn(3, 16, device=device), p, replay=torch.zeros(3, 9, device=device))


@pytest.mark.parametrize("dtype,base,adapter", CASES)
@pytest.mark.parametrize("shape", SHAPES)
def test_lora_qkv_with_bias(device, dtype, base, adapter, shape):
    n, hidden, _, r = shape
    ad = dtype if adapter == "same" else torch.float32
    kv = hidden // 4 + 8
    projs = [_proj(o, hidden, dtype, device, base, r, ad, bias=True) for o in (hidden, kv, kv)]
    x = torch.randn(2, n, hidden, device=device, dtype=dtype, requires_grad=True)
    outs = lora_qkv(x, *(p for p, _ in projs), keep_dense=(base == "nf4"))
    grads = [torch.randn_like(o) for o in outs]
    torch.autograd.backward(outs, grads)
    x64 = ref.up(x)
    refs = [_ref_proj(x64, p, w64) for p, w64 in projs]
    torch.autograd.backward([y for y, _ in refs], [g.double() for g in grads])
    for name, out, (p, _), (y64, (a64, b64)) in zip("qkv", outs, projs, refs):
        check(f"lora_qkv.{base}.{name}", out, y64, dtype)
        check(f"lora_qkv.{base}.dA", p.lora_a.grad, a64.grad, dtype)
        check(f"lora_qkv.{base}.dB", p.lora_b.grad, b64.grad, dtype)
    check(f"lora_qkv.{base}.dx", x.grad, x64.grad, dtype)


@pytest.mark.parametrize("dtype,base,adapter", CASES)
@pytest.mark.parametrize("shape", SHAPES)
def test_lora_qkv_replaying_its_kept_outputs_computes_only_the_backward(device, dtype, base, adapter, shape):
    """The first pass of a checkpointed layer (no autograd) keeps q, k and v; the recompute replays them
    (no base GEMM) and the backward still gives the float64 reference's gradients."""
    n, hidden, _, r = shape
    ad = dtype if adapter == "same" else torch.float32
    kv = hidden // 4 + 8
    projs = [_proj(o, hidden, dtype, device, base, r, ad) for o in (hidden, kv, kv)]
    ps = [p for p, _ in projs]
    x = torch.randn(2, n, hidden, device=device, dtype=dtype)
    with torch.no_grad():
        kept = lora_qkv(x, *ps)
        recomputed = lora_qkv(x, *ps, keep_dense=True)
    for out, want in zip(kept, recomputed):  # what the recompute replaces, bit for bit
        assert torch.equal(out, want)
    x.requires_grad_()
    outs = lora_qkv(x, *ps, keep_dense=True, replay=kept)
    for out, want in zip(outs, kept):
        assert torch.equal(out, want)
    grads = [torch.randn_like(o) for o in outs]
    torch.autograd.backward([o * 1.0 for o in outs], grads)
    x64 = ref.up(x)
    refs = [_ref_proj(x64, p, w64) for p, w64 in projs]
    torch.autograd.backward([y for y, _ in refs], [g.double() for g in grads])
    for p, (_, (a64, b64)) in zip(ps, refs):
        check(f"lora_qkv.replay.{base}.dA", p.lora_a.grad, a64.grad, dtype)
        check(f"lora_qkv.replay.{base}.dB", p.lora_b.grad, b64.grad, dtype)
    check(f"lora_qkv.replay.{base}.dx", x.grad, x64.grad, dtype)


def test_lora_qkv_refuses_a_replay_of_another_width(device):
    ps = [_proj(o, 16, torch.float32, device, "dense", 4, torch.float32)[0] for o in (16, 8, 8)]
    replay = tuple(torch.zeros(3, o, device=device) for o in (16, 9, 8))
    with pytest.raises(ValueError, match="replay's k has 9 features, the projection 8"):
        lora_qkv(torch.randn(3, 16, device=device), *ps, replay=replay)


NF4_CASES = [c for c in CASES if c[1] == "nf4"]


@pytest.mark.parametrize("dtype,base,adapter", NF4_CASES)
@pytest.mark.parametrize("shape", SHAPES)
def test_lora_qkv_stacked_4bit_weights(device, dtype, base, adapter, shape):
    """Under recomputation (keep_dense) and without autograd, 4-bit q, k and v are dequantized into one
    buffer and projected by one base GEMM: the outputs are column blocks of one tensor, and outputs and
    gradients still match the float64 reference."""
    n, hidden, _, r = shape
    ad = dtype if adapter == "same" else torch.float32
    kv = hidden // 4 + 8
    projs = [_proj(o, hidden, dtype, device, base, r, ad) for o in (hidden, kv, kv)]
    ps = [p for p, _ in projs]
    x = torch.randn(2, n, hidden, device=device, dtype=dtype, requires_grad=True)
    outs = lora_qkv(x, *ps, keep_dense=True)
    assert len({o.untyped_storage().data_ptr() for o in outs}) == 1, "q, k and v should share one output"
    grads = [torch.randn_like(o) for o in outs]
    torch.autograd.backward(outs, grads)
    x64 = ref.up(x)
    refs = [_ref_proj(x64, p, w64) for p, w64 in projs]
    torch.autograd.backward([y for y, _ in refs], [g.double() for g in grads])
    for name, out, p, (y64, (a64, b64)) in zip("qkv", outs, ps, refs):
        check(f"lora_qkv.{base}.{name}", out, y64, dtype)
        check(f"lora_qkv.{base}.dA", p.lora_a.grad, a64.grad, dtype)
        check(f"lora_qkv.{base}.dB", p.lora_b.grad, b64.grad, dtype)
    check(f"lora_qkv.{base}.dx", x.grad, x64.grad, dtype)
    with torch.no_grad():
        plain = lora_qkv(x, *ps)
    assert len({o.untyped_storage().data_ptr() for o in plain}) == 1
    for out, want in zip(plain, outs):
        assert torch.equal(out, want)
    kept_for_the_step = lora_qkv(x, *ps)  # autograd on, no recomputation: separate outputs
    assert len({o.untyped_storage().data_ptr() for o in kept_for_the_step}) == 3


@pytest.mark.parametrize("merging", [True, False])
def test_a_stacked_group_with_a_projection_without_adapter(device, merging):
    """Merged weights carry their adapters, so a group with a projection that has none still runs one
    base GEMM. Unmerged, the one-GEMM path needs every output written first by its adapter: the group's
    stacked weights are then used as row blocks by separate GEMMs. The result is the same."""
    from tuitune.kernels.ops.lora_weights import project_group, set_merging, stacked_dense
    from tuitune.kernels.ops.nf4_dequantize import drop_dequantized, keep_dequantized

    dtype = torch.bfloat16 if ON_GPU else torch.float32
    (q, q64), (k, k64) = (_proj(o, 64, dtype, device, "nf4", 8, dtype) for o in (64, 24))
    v = LoRAWeights(_proj(24, 64, dtype, device, "nf4", 8, dtype)[0].weight)
    x = torch.randn(5, 64, device=device, dtype=dtype)
    old = set_merging(merging)
    try:
        with torch.no_grad():
            stacked = stacked_dense((q, k, v), dtype)
            assert stacked is not None and stacked.shape == (112, 64)
            ys, xas = project_group(x, (q, k, v), stacked=stacked)
            want, _ = project_group(x, (q, k, v))
    finally:
        set_merging(old)
    assert xas[2] is None and len({y.untyped_storage().data_ptr() for y in ys}) == (1 if merging else 3)
    x64 = ref.up(x)
    for y, w, p, w64 in zip(ys, want, (q, k), (q64, k64)):
        check("lora_qkv.nf4.q", y, w.double(), dtype)
        check("lora_qkv.nf4.q", y, _ref_proj(x64, p, w64)[0], dtype)
    keep_dequantized(k.weight, dtype)  # dequantized once already: stacking would copy it every call
    try:
        assert stacked_dense((q, k, v), dtype) is None
    finally:
        drop_dequantized(k.weight)


@pytest.mark.parametrize("dtype", DTYPES)
def test_lora_qkv_mixed_group(device, dtype):
    """A group whose adapters differ (ranks 8 and 4, scalings 2 and 0.5), one projection without an
    adapter, and one output that gets no gradient (its adapter's gradients must be zero)."""
    hidden, kv = 96, 40
    (q, q64), (k, k64) = _proj(hidden, hidden, dtype, device, "dense", 8, dtype), _proj(kv, hidden, dtype, device,
                                                                                      "dense", 4, dtype)
    k = LoRAWeights(k.weight, None, k.lora_a, k.lora_b, 0.5)
    v_w = (torch.randn(kv, hidden, device=device) / hidden**0.5).to(dtype)
    v = LoRAWeights(v_w)
    x = torch.randn(7, hidden, device=device, dtype=dtype, requires_grad=True)
    oq, ok, ov = lora_qkv(x, q, k, v)
    dq, dv = torch.randn_like(oq), torch.randn_like(ov)
    torch.autograd.backward([oq, ov], [dq, dv])
    x64 = ref.up(x)
    (q_ref, (qa64, qb64)), (k_ref, _) = _ref_proj(x64, q, q64), _ref_proj(x64, k, k64)
    v_ref = x64 @ v_w.double().t()
    torch.autograd.backward([q_ref, v_ref], [dq.double(), dv.double()])
    for name, out, want in (("q", oq, q_ref), ("k", ok, k_ref), ("v", ov, v_ref)):
        check(f"lora_qkv.dense.{name}", out, want, dtype)
    check("lora_qkv.dense.dA", q.lora_a.grad, qa64.grad, dtype)
    check("lora_qkv.dense.dB", q.lora_b.grad, qb64.grad, dtype)
    assert all(g is None or not g.any() for g in (k.lora_a.grad, k.lora_b.grad))
    check("lora_qkv.dense.dx", x.grad, x64.grad, dtype)


# (mode, rows per chunk): "saved" keeps gate/up; "deferred" recomputes them in the backward,
# chunk by chunk (a chunk of 5 rows splits every shape with more than 5 tokens unevenly).
MLP_MODES = [("saved", None), ("deferred", None), ("deferred", 5)]


@pytest.mark.parametrize("dtype,base,adapter", CASES)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("activation", ["swiglu", "geglu_tanh"])
@pytest.mark.parametrize("mode,chunk", MLP_MODES)
def test_lora_mlp(device, dtype, base, adapter, shape, activation, mode, chunk):
    n, hidden, inter, r = shape
    ad = dtype if adapter == "same" else torch.float32
    (g, g64), (u, u64), (d, d64) = (_proj(inter, hidden, dtype, device, base, r, ad),
                                    _proj(inter, hidden, dtype, device, base, r, ad),
                                    _proj(hidden, inter, dtype, device, base, r, ad))
    x = torch.randn(n, hidden, device=device, dtype=dtype, requires_grad=True)
    y = lora_mlp(x, g, u, d, activation=activation, mode=mode, chunk=chunk)
    dy = torch.randn_like(y)
    y.backward(dy)
    x64 = ref.up(x)
    gy, (ga, gb) = _ref_proj(x64, g, g64)
    uy, (ua, ub) = _ref_proj(x64, u, u64)
    h64 = ref.swiglu(gy, uy) if activation == "swiglu" else ref.geglu(gy, uy, "tanh")
    y64, (da, db) = _ref_proj(h64, d, d64)
    y64.backward(dy.double())
    tag = f"lora_mlp.{base}" if mode == "saved" else f"lora_mlp.{mode}.{base}"
    if mode == "saved":  # a deferred output's values are undefined by contract
        check(f"{tag}.y", y, y64, dtype)
        with torch.no_grad():  # the autograd-free chunked forward gives the same output
            check(f"{tag}.no_grad_chunked", lora_mlp(x, g, u, d, activation=activation, chunk=5), y64, dtype)
    check(f"{tag}.dx", x.grad, x64.grad, dtype)
    for p, a64, b64 in ((g, ga, gb), (u, ua, ub), (d, da, db)):
        check(f"{tag}.dA", p.lora_a.grad, a64.grad, dtype)
        check(f"{tag}.dB", p.lora_b.grad, b64.grad, dtype)


def test_lora_projection_without_adapter(device):
    w = torch.randn(24, 40, device=device)
    p = LoRAWeights(w)
    x = torch.randn(3, 40, device=device, requires_grad=True)
    y = lora_o(x, p)
    y.sum().backward()
    check("lora_o.no_adapter.y", y, x.double() @ w.double().t(), torch.float32)
    check("lora_o.no_adapter.dx", x.grad, torch.ones(3, 24, dtype=torch.float64) @ w.double().cpu(), torch.float32)


def test_lora_mlp_rejects_unknown_activation(device):
    p = LoRAWeights(torch.zeros(4, 4, device=device))
    with pytest.raises(ValueError, match="activation"):
        lora_mlp(torch.zeros(1, 4, device=device), p, p, p, activation="relu")


class _OpCount(torch.utils._python_dispatch.TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.ops: dict[str, int] = {}

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func.overloadpacket.__name__
        self.ops[name] = self.ops.get(name, 0) + 1
        return func(*args, **(kwargs or {}))


def _qkv_after_one_backward(device, dtype, lr: float):
    """q, k, v projections with float32 adapters used in ``dtype``, their SGD optimizer and the input,
    after one forward and backward (gradients in place, no step taken)."""
    projs = [_proj(o, 64, dtype, device, "dense", 8, torch.float32)[0] for o in (64, 24, 24)]
    optimizer = torch.optim.SGD([t for p in projs for t in (p.lora_a, p.lora_b)], lr=lr)
    x = torch.randn(2, 5, 64, device=device, dtype=dtype, requires_grad=True)
    outs = lora_qkv(x, *projs)
    torch.autograd.backward(outs, [torch.ones_like(o) for o in outs])
    return projs, optimizer, x


def test_after_an_optimizer_step_one_batched_copy_recasts_every_adapter(device):
    """float32 adapters used in bf16: the first forward after a step re-casts all six q/k/v adapter
    tensors in one copy (one launch, not six), later uses reuse them, and the new values are used."""
    dtype = torch.bfloat16
    projs, optimizer, x = _qkv_after_one_backward(device, dtype, lr=0.1)
    optimizer.step()
    after_step = _OpCount()
    with after_step:
        outs = lora_qkv(x, *projs)
    again = _OpCount()
    with again:
        lora_qkv(x, *projs)
    assert after_step.ops.get("_foreach_copy_") == 1 and "_to_copy" not in after_step.ops
    assert "_foreach_copy_" not in again.ops and "_to_copy" not in again.ops
    x64 = ref.up(x)
    for out, p in zip(outs, projs):
        want = ref.lora_linear(x64, p.weight.double(), None, ref.up(p.lora_a), ref.up(p.lora_b), p.scaling)
        check("lora_qkv.after_step", out, want, dtype)


def test_adapter_casts_are_retired_by_any_optimizer_step_even_without_a_version_bump(device):
    """bitsandbytes writes parameters through raw pointers (no version bump): an optimizer step of any
    kind still retires the kept bf16 casts."""
    dtype = torch.bfloat16
    p, w64 = _proj(32, 48, dtype, device, "dense", 4, torch.float32)
    x = torch.randn(6, 48, device=device, dtype=dtype)
    before = lora_o(x, p)
    p.lora_b.data.add_(1.0)  # `.data` writes do not bump the parameter's version counter
    torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.0).step()  # some optimizer stepped
    after = lora_o(x, p)
    want = ref.lora_linear(x.double(), w64, None, p.lora_a.double(), p.lora_b.double(), p.scaling)
    check("lora_o.after_raw_write", after, want, dtype)
    assert not torch.equal(before, after)


def test_a_groups_stacked_adapter_casts_are_one_buffer_that_a_refresh_alone_brings_up_to_date(device):
    """q, k and v's A casts are row views of one kept buffer: a forward concatenates nothing, and after
    an optimizer step the casts' refresh alone (all a CUDA graph's replay gets) updates the stack the
    graph reads."""
    from tuitune.kernels.ops.lora_weights import refresh_kept_casts, stacked_casts

    dtype = torch.bfloat16
    projs, optimizer, x = _qkv_after_one_backward(device, dtype, lr=0.5)
    a_mats = [p.lora_a for p in projs]
    stack = stacked_casts(a_mats, dtype)
    forward = _OpCount()
    with forward:
        lora_qkv(x, *projs)
    assert "cat" not in forward.ops
    assert stacked_casts(a_mats, dtype).data_ptr() == stack.data_ptr()
    before = stack.clone()
    optimizer.step()
    refresh_kept_casts()
    assert not torch.equal(stack, before)
    assert torch.equal(stack, torch.cat([a.detach().to(dtype) for a in a_mats]))


def test_an_adapter_in_one_groups_stack_is_concatenated_in_another_group(device):
    """An adapter's cast is a view of one stack only; asked for in another grouping, the casts are
    concatenated (the first stack stays what its graphs read) and the values are the adapters'."""
    from tuitune.kernels.ops.lora_weights import stacked_casts

    dtype = torch.bfloat16
    a = [(torch.randn(4, 32, device=device) / 6).requires_grad_() for _ in range(3)]
    first = stacked_casts(a[:2], dtype)
    other = stacked_casts([a[1], a[2]], dtype)
    assert torch.equal(other, torch.cat([a[1].detach().to(dtype), a[2].detach().to(dtype)]))
    assert stacked_casts(a[:2], dtype).data_ptr() == first.data_ptr()
    assert torch.equal(first, torch.cat([a[0].detach().to(dtype), a[1].detach().to(dtype)]))
