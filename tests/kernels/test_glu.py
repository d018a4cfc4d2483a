import pytest
import torch

from tests.kernels import kernel_reference as ref
from tests.kernels.kernel_env import DTYPES, gpu_shapes
from tests.kernels.tolerances import check
from tuitune.kernels import geglu, swiglu

SHAPES = [(1, 7), (3, 1000), (2, 7, 1536), (1, 70001)] + gpu_shapes((4, 2048, 8192))
ACTS = [("swiglu", None), ("geglu", "none"), ("geglu", "tanh")]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("kind,approx", ACTS)
def test_glu_forward_and_gradients(device, dtype, shape, kind, approx):
    g = (torch.randn(shape, device=device) * 3).to(dtype).requires_grad_()
    u = torch.randn(shape, device=device, dtype=dtype).requires_grad_()
    h = swiglu(g, u) if kind == "swiglu" else geglu(g, u, approximate=approx)
    assert h.dtype == dtype and h.shape == g.shape
    dh = torch.randn_like(h)
    h.backward(dh)
    g64, u64 = ref.up(g), ref.up(u)
    h64 = ref.swiglu(g64, u64) if kind == "swiglu" else ref.geglu(g64, u64, approx)
    h64.backward(dh.to(torch.float64))
    name = kind if approx is None else f"{kind}_{approx}"
    check(f"{name}.h", h, h64, dtype)
    check(f"{name}.dgate", g.grad, g64.grad, dtype)
    check(f"{name}.dup", u.grad, u64.grad, dtype)


def test_glu_extreme_gates_stay_finite(device):
    g = torch.tensor([-1e4, -80.0, 0.0, 80.0, 1e4], device=device).requires_grad_()
    u = torch.ones(5, device=device).requires_grad_()
    for out in (swiglu(g, u), geglu(g, u), geglu(g, u, approximate="tanh")):
        out.sum().backward()
        assert torch.isfinite(out).all() and torch.isfinite(g.grad).all()
        g.grad = None


def test_geglu_rejects_unknown_approximation(device):
    x = torch.randn(4, device=device)
    with pytest.raises(ValueError, match="approximate"):
        geglu(x, x, approximate="sigmoid")
