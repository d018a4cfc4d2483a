"""The gated activation with the adapters' rank-r terms added inside the kernel, against float64."""

import pytest
import torch
import torch.nn.functional as F

from tests.kernels import kernel_reference as ref
from tests.kernels.kernel_env import DTYPES, gpu_shapes
from tests.kernels.tolerances import check
from tuitune.kernels.ops.lora_glu import lora_glu_backward_in_place, lora_glu_forward

# (rows, intermediate, rank of gate, up, down; 0 = no adapter)
SHAPES = [(1, 40, (8, 8, 8)), (37, 200, (16, 16, 16)), (70, 130, (4, 0, 24)), (9, 64, (0, 0, 0))] + gpu_shapes(
    (4096, 14336, (16, 16, 16)))
ACTS = {"swiglu": F.silu, "geglu": F.gelu, "geglu_tanh": lambda g: F.gelu(g, approximate="tanh")}


def _factors(n, inter, r, dtype, device):
    if not r:
        return None, None
    xa_all = torch.randn(n, r + 3, device=device, dtype=dtype)  # a column slice, as project_group gives
    return xa_all[:, 1:r + 1], (torch.randn(inter, r, device=device) * 0.3).to(dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("activation", list(ACTS))
def test_lora_glu_forward_and_backward(device, dtype, shape, activation):
    n, inter, (rg, ru, rd) = shape
    g, u, dh = (torch.randn(n, inter, device=device, dtype=dtype) for _ in range(3))
    xa_g, b_g = _factors(n, inter, rg, dtype, device)
    xa_u, b_u = _factors(n, inter, ru, dtype, device)
    dyb = torch.randn(n, rd, device=device, dtype=dtype) if rd else None
    a_d = (torch.randn(rd, inter, device=device) * 0.3).to(dtype) if rd else None

    g64, u64 = ref.up(g), ref.up(u)
    gf = g64 + (xa_g.double() @ b_g.double().t() if rg else 0)
    uf = u64 + (xa_u.double() @ b_u.double().t() if ru else 0)
    h64 = ACTS[activation](gf) * uf
    dh64 = dh.double() + (dyb.double() @ a_d.double() if rd else 0)
    h64.backward(dh64)

    h = lora_glu_forward(g, u, xa_g, b_g, xa_u, b_u, activation)
    check(f"lora_glu.{activation}.h", h, h64, dtype)
    dg, du, h_again = lora_glu_backward_in_place(dh.clone(), g.clone(), u.clone(), xa_g, b_g, xa_u, b_u, dyb, a_d,
                                                 activation)
    check(f"lora_glu.{activation}.dgate", dg, g64.grad, dtype)
    check(f"lora_glu.{activation}.dup", du, u64.grad, dtype)
    assert torch.equal(h_again, h)


def test_lora_glu_refuses_mismatched_shapes(device):
    g = torch.randn(4, 8, device=device)
    with pytest.raises(ValueError, match="must be contiguous and of one shape"):
        lora_glu_forward(g, torch.randn(4, 9, device=device), None, None, None, None)
