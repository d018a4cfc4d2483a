import warnings

import pytest
import torch

from tests.kernels.kernel_env import DTYPES, ON_GPU, gpu_shapes
from tests.kernels.tolerances import check
from tuitune.kernels import nf4_dequantize

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    bnb = pytest.importorskip("bitsandbytes")

# (out_features, in_features): not powers of two, a single row, a long row, and one whose bytes are
# not whole 32-bit words (the byte kernel's path)
SHAPES = [(96, 64), (1, 4096), (160, 1000), (64, 2048), (5, 36)] + gpu_shapes((8192, 2048), (2048, 8192))


def _quantized(shape, dtype, nested, device, quant_type="nf4"):
    w = torch.randn(shape, dtype=dtype) * 0.05
    p = bnb.nn.Params4bit(w, requires_grad=False, quant_type=quant_type, compress_statistics=nested,
                          blocksize=64)
    return w, p.to(device)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("nested", [True, False])
def test_nf4_matches_bitsandbytes(device, dtype, shape, nested):
    w, p = _quantized(shape, dtype, nested, device)
    ours = nf4_dequantize(p)
    theirs = bnb.functional.dequantize_4bit(p.data, p.quant_state)
    assert ours.dtype == dtype and ours.shape == w.shape
    check("nf4_dequantize.vs_bnb", ours, theirs.to(torch.float64), dtype)
    # and it really is the weight, up to 4-bit rounding (half the widest NF4 step is 0.152 of the block absmax)
    assert (ours.float().cpu() - w.float()).abs().max() <= 0.16 * w.abs().max()


def test_fp4_uses_the_same_path(device):
    _, p = _quantized((32, 128), torch.float32, True, device, quant_type="fp4")
    check("fp4_dequantize.vs_bnb", nf4_dequantize(p), bnb.functional.dequantize_4bit(p.data, p.quant_state).double(),
          torch.float32)


def test_later_dequantizations_reuse_the_kept_launch_and_follow_new_data(device):
    """Each weight's launch is worked out once (the autotuner's pick included) and kept on its
    quant_state; every later call, in either output dtype, must still read the weight as it is now."""
    w, p = _quantized((96, 256), torch.bfloat16, True, device)
    theirs = bnb.functional.dequantize_4bit(p.data, p.quant_state).double()
    for dtype in (torch.bfloat16, torch.float32):
        first = nf4_dequantize(p, dtype)  # this dtype's first launch goes through the autotuner
        assert p.quant_state._tuitune_word_launch.picked.get(dtype) is not None
        again = nf4_dequantize(p, dtype)  # later ones launch its pick directly
        assert again.dtype == dtype and torch.equal(again, first)
        check("nf4_dequantize.vs_bnb", again, theirs, torch.bfloat16)
    w2, p2 = _quantized((96, 256), torch.bfloat16, True, device)
    p.data, p.quant_state = p2.data, p2.quant_state  # a re-quantized weight: new storage, new state
    check("nf4_dequantize.vs_bnb", nf4_dequantize(p), bnb.functional.dequantize_4bit(p2.data, p2.quant_state).double(),
          torch.bfloat16)
    p.data = p.data.clone().bitwise_xor_(0x35)  # the same state over other codes, in new storage
    check("nf4_dequantize.vs_bnb", nf4_dequantize(p), bnb.functional.dequantize_4bit(p.data, p.quant_state).double(),
          torch.bfloat16)


@pytest.mark.skipif(ON_GPU, reason="bitsandbytes' CPU packed layout only exists on the CPU")
@pytest.mark.parametrize("dtype", DTYPES)
def test_nf4_reads_the_cpu_packed_layout(dtype):
    """An inference forward on an AVX512-BF16 CPU repacks the weight; training afterwards must see the same matrix."""
    from bitsandbytes.functional import _convert_weight_packed_for_cpu

    w, p = _quantized((96, 192), dtype, True, "cpu")
    before = nf4_dequantize(p)
    data, qs = _convert_weight_packed_for_cpu(p.data.clone(), p.quant_state)
    assert qs.packing_format_for_cpu
    p.data, p.quant_state = data, qs
    after = nf4_dequantize(p)
    assert after.dtype == dtype
    # the packed layout keeps bf16 scales: equal up to bf16 rounding of absmax
    check("nf4_dequantize.cpu_packed", after, before.double(), torch.bfloat16)


def test_nf4_rejects_a_plain_tensor(device):
    with pytest.raises(TypeError, match="Params4bit"):
        nf4_dequantize(torch.nn.Parameter(torch.zeros(4, 4, device=device)))


def test_a_kept_dequantized_copy_is_what_the_projections_read(device):
    """training.dequantize_once: the kept copy is the same matrix, read instead of dequantizing."""
    from tuitune.kernels import LoRAWeights, lora_o
    from tuitune.kernels.ops.nf4_dequantize import base_weight, drop_dequantized, keep_dequantized

    _, p = _quantized((64, 128), torch.bfloat16, True, device)
    fresh = base_weight(p, torch.bfloat16)
    x = torch.randn(5, 128, device=device, dtype=torch.bfloat16)
    before = lora_o(x, LoRAWeights(p))
    assert keep_dequantized(p, torch.bfloat16) == 64 * 128 * 2
    kept = base_weight(p, torch.bfloat16)
    assert kept is base_weight(p, torch.bfloat16) and torch.equal(kept, fresh)
    assert base_weight(p, torch.float32) is not kept and base_weight(p, torch.float32).dtype == torch.float32
    assert torch.equal(lora_o(x, LoRAWeights(p)), before)
    drop_dequantized(p)
    assert base_weight(p, torch.bfloat16) is not kept


def test_keeping_a_models_base_weights_dequantized_counts_each_weight_once(device):
    from tuitune.trainer.dequantized_weights import drop_base_weights_dequantized, keep_base_weights_dequantized

    class Holder(torch.nn.Module):
        def __init__(self, weight):
            super().__init__()
            self.weight = weight

    _, a = _quantized((64, 128), torch.bfloat16, True, device)
    _, b = _quantized((32, 64), torch.bfloat16, False, device)
    model = torch.nn.ModuleDict({"a": Holder(a), "alias": Holder(a), "b": Holder(b),
                                 "dense": torch.nn.Linear(8, 8)})
    said = keep_base_weights_dequantized(model, torch.bfloat16)
    assert said == f"2 4-bit base weights kept dequantized in bfloat16 ({(64 * 128 + 32 * 64) * 2 / 2**30:.2f} GiB)"
    assert a._tuitune_dense.shape == (64, 128) and b._tuitune_dense.dtype == torch.bfloat16
    drop_base_weights_dequantized(model)
    assert not hasattr(a, "_tuitune_dense") and not hasattr(b, "_tuitune_dense")
    assert keep_base_weights_dequantized(torch.nn.Linear(4, 4), torch.bfloat16) == "no 4-bit weights to keep dequantized"
