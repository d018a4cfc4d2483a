import warnings

import pytest
import torch

from tests.kernels.kernel_env import DTYPES, ON_GPU
from tests.kernels.tolerances import check
from tuitune.kernels import nf4_dequantize

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    bnb = pytest.importorskip("bitsandbytes")

# (out_features, in_features): not powers of two, a single row, a long row, and one whose bytes are
# not whole 32-bit words (the byte kernel's path)
SHAPES = [(96, 64), (1, 4096), (160, 1000), (64, 2048), (5, 36)] + ([(8192, 2048), (2048, 8192)] if ON_GPU else [])


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
