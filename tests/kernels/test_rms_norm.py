import pytest
import torch

from tests.kernels import kernel_reference as ref
from tests.kernels.kernel_env import DTYPES, gpu_shapes
from tests.kernels.tolerances import check
from tuitune.kernels import rms_norm

SHAPES = [(1, 7), (3, 5, 33), (17, 1000), (2, 4096)] + gpu_shapes((4, 2048, 4096), (8192, 576))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("offset", [0.0, 1.0])
def test_rms_norm_forward_and_gradients(device, dtype, shape, offset):
    x = torch.randn(shape, device=device, dtype=dtype)
    w = (torch.randn(shape[-1], device=device) * 0.1 + (0.0 if offset else 1.0)).to(dtype).requires_grad_()
    xk = x.clone().requires_grad_()
    y = rms_norm(xk, w, 1e-6, offset=offset)
    assert y.dtype == dtype and y.shape == x.shape
    dy = torch.randn_like(y)
    y.backward(dy)
    x64, w64 = ref.up(x), ref.up(w)
    y64 = ref.rms_norm(x64, w64, 1e-6, offset)
    y64.backward(dy.to(torch.float64))
    check("rms_norm.y", y, y64, dtype)
    check("rms_norm.dx", xk.grad, x64.grad, dtype)
    check("rms_norm.dweight", w.grad, w64.grad, dtype)


def test_rms_norm_strided_input_and_fp32_weight(device):
    base = torch.randn(6, 10, 40, device=device, dtype=torch.bfloat16)
    x = base[:, ::2, :].requires_grad_()
    w = torch.randn(40, device=device, dtype=torch.float32, requires_grad=True)
    y = rms_norm(x, w, 1e-5)
    y.sum().backward()
    x64, w64 = ref.up(x), ref.up(w)
    ref.rms_norm(x64, w64, 1e-5).sum().backward()
    check("rms_norm.y", y, ref.rms_norm(x64, w64, 1e-5), torch.bfloat16)
    check("rms_norm.dx", x.grad, x64.grad, torch.bfloat16)
    assert w.grad.dtype == torch.float32


def test_rms_norm_rejects_mismatched_weight(device):
    with pytest.raises(ValueError, match="does not match"):
        rms_norm(torch.randn(2, 8, device=device), torch.ones(7, device=device), 1e-6)
