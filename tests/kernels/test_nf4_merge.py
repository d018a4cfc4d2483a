import warnings

import pytest
import torch

from tests.kernels import kernel_reference as ref
from tests.kernels.kernel_env import DTYPES, ON_GPU, gpu_shapes
from tests.kernels.tolerances import check
from tuitune.kernels import LoRAWeights, lora_o, nf4_dequantize
from tuitune.kernels.ops.lora_weights import cast_adapter, set_merging, stacked_casts
from tuitune.kernels.ops.nf4_merge import merge_supported, nf4_merge
from tuitune.kernels.ops.nf4_dequantize import drop_dequantized, keep_dequantized

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    bnb = pytest.importorskip("bitsandbytes")

# (out_features, in_features, rank): one row, rows and columns that fill no tile, a rank below the
# dot's 16 and one above it (24: padded to 32), and llama-8b's gate on a GPU
SHAPES = [(1, 64, 4), (37, 192, 8), (130, 320, 24), (96, 1088, 16)] + gpu_shapes((14336, 4096, 16), (1024, 4096, 16))


def _weight(n, k, dtype, nested, device):
    w = torch.randn(n, k, dtype=dtype) / k**0.5
    return bnb.nn.Params4bit(w, requires_grad=False, quant_type="nf4", compress_statistics=nested,
                             blocksize=64).to(device)


# the autotuner's pick, and each way of building a tile forced on a small one (several tiles a row): the
# scales per byte or per block, the codes read as words, the dot accumulating into the tile, both
TILES = [None, {"BLOCK_N": 16, "BLOCK_K": 128, "BY_BYTE": True}, {"BLOCK_N": 16, "BLOCK_K": 128, "BY_BYTE": False},
         {"BLOCK_N": 16, "BLOCK_K": 128, "WORDS": True}, {"BLOCK_N": 16, "BLOCK_K": 128, "ACC": True},
         {"BLOCK_N": 16, "BLOCK_K": 128, "WORDS": True, "ACC": True}]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("nested", [True, False])
@pytest.mark.parametrize("tile", TILES, ids=["autotuned", "by-byte", "by-block", "words", "acc", "words-acc"])
def test_merge_is_the_dequantized_weight_plus_the_scaled_adapter(device, dtype, shape, nested, tile, monkeypatch):
    from tuitune.kernels.ops import nf4_merge as module

    n, k, r = shape
    p = _weight(n, k, dtype, nested, device)
    a = (torch.randn(r, k, device=device) / k**0.5).to(dtype)
    b = (torch.randn(n, r, device=device) * 0.1).to(dtype)
    monkeypatch.setattr(module, "_FORCED", tile)
    merged = nf4_merge(p, a, b, 2.0)
    assert merged.dtype == dtype and merged.shape == (n, k)
    want = nf4_dequantize(p, torch.float32).double() + 2.0 * b.double() @ a.double()
    check("nf4_merge.w", merged, want, dtype)


def test_merge_writes_rows_of_a_stack_and_reads_strided_adapters(device):
    """q's merged rows land in their block of a stacked buffer, and A may be a row view of a stacked
    cast (q, k and v's A share one buffer): neither is copied."""
    dtype = torch.bfloat16 if ON_GPU else torch.float32
    p = _weight(40, 128, dtype, True, device)
    a_all = torch.randn(24, 256, device=device, dtype=dtype)[:, ::2] / 10  # strided columns
    b = torch.randn(40, 8, device=device, dtype=dtype)
    stack = torch.full((72, 128), 7.0, device=device, dtype=dtype)
    out = nf4_merge(p, a_all[8:16], b, 0.5, out=stack[16:56])
    assert out.data_ptr() == stack[16:56].data_ptr()
    want = nf4_dequantize(p, torch.float32).double() + 0.5 * b.double() @ a_all[8:16].double()
    check("nf4_merge.w", stack[16:56], want, dtype)
    assert (stack[:16] == 7).all() and (stack[56:] == 7).all()


def test_a_kept_merge_launch_serves_only_what_it_was_worked_out_for(device):
    """The second merge of a weight reuses the launch kept on its quant_state; another adapter, scaling
    or weight storage gets a launch of its own, and every result is the merge of what was passed."""
    dtype = torch.bfloat16 if ON_GPU else torch.float32
    p = _weight(40, 128, dtype, True, device)
    a = torch.randn(8, 128, device=device, dtype=dtype) / 10
    b = torch.randn(40, 8, device=device, dtype=dtype)

    def want(a, b, scaling):
        return nf4_dequantize(p, torch.float32).double() + scaling * b.double() @ a.double()

    check("nf4_merge.w", nf4_merge(p, a, b, 1.0), want(a, b, 1.0), dtype)
    kept = p.quant_state._tuitune_merge_launch
    check("nf4_merge.w", nf4_merge(p, a, b, 1.0), want(a, b, 1.0), dtype)
    assert p.quant_state._tuitune_merge_launch is kept
    a.mul_(3)  # the same tensor, new values: read at the next launch
    check("nf4_merge.w", nf4_merge(p, a, b, 1.0), want(a, b, 1.0), dtype)
    assert p.quant_state._tuitune_merge_launch is kept
    a2 = a.clone() * -1
    check("nf4_merge.w", nf4_merge(p, a2, b, 1.0), want(a2, b, 1.0), dtype)
    check("nf4_merge.w", nf4_merge(p, a2, b, 0.25), want(a2, b, 0.25), dtype)
    wide = torch.zeros(8, 256, device=device, dtype=dtype)
    wide[:, ::2] = a2  # the same values read through another stride
    check("nf4_merge.w", nf4_merge(p, wide[:, ::2], b, 0.25), want(a2, b, 0.25), dtype)
    moved = p.quant_state._tuitune_merge_launch
    p.data = p.data.clone()  # new storage, same contents
    check("nf4_merge.w", nf4_merge(p, wide[:, ::2], b, 0.25), want(a2, b, 0.25), dtype)
    assert p.quant_state._tuitune_merge_launch is not moved


def test_merge_rejects_an_adapter_that_does_not_fit(device):
    p = _weight(32, 64, torch.float32, True, device)
    with pytest.raises(ValueError, match="do not fit"):
        nf4_merge(p, torch.zeros(4, 32, device=device), torch.zeros(32, 4, device=device), 1.0)


def test_which_projections_merge(device):
    dtype = torch.bfloat16 if ON_GPU else torch.float32
    p = _weight(32, 64, dtype, True, device)
    a, b = torch.zeros(4, 64, device=device), torch.zeros(32, 4, device=device)
    assert merge_supported(p) and LoRAWeights(p, None, a, b).merges()
    assert not LoRAWeights(p).merges()  # no adapter
    assert not LoRAWeights(torch.zeros(32, 64, device=device), None, a, b).merges()  # dense base
    keep_dequantized(p, dtype)  # kept dense: merging would cost a copy every use
    try:
        assert not LoRAWeights(p, None, a, b).merges()
    finally:
        drop_dequantized(p)
    old = set_merging(False)
    try:
        assert not LoRAWeights(p, None, a, b).merges()
    finally:
        set_merging(old)
    ragged = _weight(32, 96, dtype, True, device)  # rows of 1.5 quantization blocks: not merged
    a96 = torch.zeros(4, 96, device=device)
    assert not merge_supported(ragged) and not LoRAWeights(ragged, None, a96, b).merges()
    with pytest.raises(ValueError, match="merge_supported"):
        nf4_merge(ragged, a96, b, 1.0)


@pytest.mark.parametrize("dtype", DTYPES)
def test_a_merged_projection_trains_like_an_unmerged_one(device, dtype):
    """Same output and gradients with and without merging (forward, input and adapter gradients)."""
    n, k, r = 48, 192, 8
    p = _weight(n, k, dtype, True, device)
    a = (torch.randn(r, k, device=device) / k**0.5).requires_grad_()
    b = (torch.randn(n, r, device=device) * 0.1).requires_grad_()
    proj = LoRAWeights(p, None, a, b, 2.0)
    x = torch.randn(2, 9, k, device=device, dtype=dtype)
    dy = torch.randn(2, 9, n, device=device, dtype=dtype)
    results = {}
    for merging in (True, False):
        old = set_merging(merging)
        try:
            xg = x.clone().requires_grad_()
            y = lora_o(xg, proj)
            y.backward(dy)
            results[merging] = (y.detach(), xg.grad, a.grad.clone(), b.grad.clone())
            a.grad = b.grad = None
        finally:
            set_merging(old)
    x64 = ref.up(x)
    a64, b64 = ref.up(a), ref.up(b)
    y64 = ref.lora_linear(x64, nf4_dequantize(p, torch.float32).double(), None, a64, b64, 2.0)
    y64.backward(dy.double())
    for merging, (y, dx, da, db) in results.items():
        check("lora_o.merged.y", y, y64, dtype)
        check("lora_o.merged.dx", dx, x64.grad, dtype)
        check("lora_o.merged.dA", da, a64.grad, dtype)
        check("lora_o.merged.dB", db, b64.grad, dtype)


class _CountGEMMs(torch.utils._python_dispatch.TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.count = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func.overloadpacket in (torch.ops.aten.mm, torch.ops.aten.addmm, torch.ops.aten.addmm_):
            self.count += 1
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("merging,gemms", [(True, 1), (False, 3)])
def test_merging_leaves_one_gemm_for_an_inference_forward(device, merging, gemms):
    """Without gradients, a merged projection is one GEMM; unmerged it is the rank-r product, the
    adapter's GEMM writing the output and the base GEMM adding into it."""
    dtype = torch.bfloat16 if ON_GPU else torch.float32
    p = _weight(32, 64, dtype, True, device)
    proj = LoRAWeights(p, None, torch.randn(4, 64, device=device), torch.randn(32, 4, device=device), 1.0)
    x = torch.randn(3, 64, device=device, dtype=dtype)
    old = set_merging(merging)
    try:
        with torch.no_grad(), _CountGEMMs() as counted:
            lora_o(x, proj)
    finally:
        set_merging(old)
    assert counted.count == gemms


def test_a_merged_weight_follows_the_adapter_after_an_optimizer_step(device):
    """The merge reads the kept casts of A and B, which an optimizer step retires: the next forward
    merges the new adapter."""
    dtype = torch.bfloat16 if ON_GPU else torch.float32
    p = _weight(32, 64, dtype, True, device)
    a = torch.nn.Parameter(torch.randn(4, 64, device=device) / 8)
    b = torch.nn.Parameter(torch.zeros(32, 4, device=device))
    proj = LoRAWeights(p, None, a, b, 1.0)
    x = torch.randn(3, 64, device=device, dtype=dtype)
    before = lora_o(x, proj)
    opt = torch.optim.SGD([a, b], lr=1.0)
    lora_o(x.requires_grad_(), proj).sum().backward()
    opt.step()
    assert cast_adapter(b, dtype).abs().sum() > 0 and stacked_casts([a], dtype) is cast_adapter(a, dtype)
    after = lora_o(x.detach(), proj)
    want = ref.lora_linear(x.double(), nf4_dequantize(p, torch.float32).double(), None, a.double(), b.double(), 1.0)
    assert not torch.equal(after, before)
    check("lora_o.merged.y", after, want, dtype)


def test_the_autotuned_kernels_time_their_configs_without_a_flush_buffer():
    """Triton's default timing allocates a 256 MB L2-flush buffer while the first step runs, which
    counts in that run's peak memory; the 4-bit kernels time their configs in place."""
    from tuitune.kernels.ops import _launch, nf4_dequantize as dq, nf4_merge as merge

    for kernel in (merge._dequant_merge, dq._dequant_4bit_words, dq._dequant_4bit_bytes):
        assert kernel.do_bench is _launch.bench_in_place
    assert _launch.quantiles_of([5.0, 1.0, 3.0, 2.0, 4.0], (0.5, 0.2, 0.8)) == [3.0, 2.0, 4.0]
    assert _launch.quantiles_of([7.0], (0.5, 0.0, 1.0)) == [7.0, 7.0, 7.0]


@pytest.mark.skipif(not ON_GPU, reason="the autotuner times configs on a GPU only")
def test_autotuning_a_new_shape_allocates_no_more_than_its_output(device):
    from tuitune.kernels.ops import nf4_merge as merge

    n, k = 520, 768  # a shape no other test tunes
    p = _weight(n, k, torch.bfloat16, True, device)
    a = torch.randn(16, k, device=device, dtype=torch.bfloat16)
    b = torch.randn(n, 16, device=device, dtype=torch.bfloat16)
    merge._PICKED.clear()
    merge._dequant_merge.cache.clear()
    torch.cuda.synchronize()
    before = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    merge.nf4_merge(p, a, b, 1.0)
    torch.cuda.synchronize()
    assert torch.cuda.max_memory_allocated() - before <= n * k * 2 + (8 << 20)


def test_the_tile_variants_join_the_autotuner_only_when_asked_and_words_only_where_they_fit(monkeypatch):
    from tuitune.kernels.ops import nf4_merge as module

    monkeypatch.setattr(module, "interpreted", lambda: False)
    monkeypatch.delenv("TUITUNE_MERGE_VARIANTS", raising=False)
    plain = module._configs()
    assert not any(c.kwargs["WORDS"] or c.kwargs["ACC"] for c in plain)
    monkeypatch.setenv("TUITUNE_MERGE_VARIANTS", "1")
    every = module._configs()
    described = [(c.kwargs["BLOCK_N"], c.kwargs["BLOCK_K"], c.num_warps, c.kwargs["BY_BYTE"], c.kwargs["WORDS"],
                  c.kwargs["ACC"]) for c in every]
    assert len(set(described)) == len(described) > len(plain)
    assert all(k % module.MIN_BLOCK_K == 0 for _, k, *_ in described)
    assert any(words and acc for *_, words, acc in described)
    unaligned = module._words_only_where_they_fit(every, {}, WORDS_OK=False)
    assert unaligned and not any(c.kwargs["WORDS"] for c in unaligned)
    assert module._words_only_where_they_fit(every, {}, WORDS_OK=True) == every
