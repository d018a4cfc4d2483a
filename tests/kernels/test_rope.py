import pytest
import torch

from tests.kernels import kernel_reference as ref
from tests.kernels.kernel_env import DTYPES, gpu_shapes
from tests.kernels.tolerances import check
from tuitune.kernels import rope

# (batch, q_heads, kv_heads, seq, head_dim, rotary_dim)
SHAPES = [(1, 1, 1, 1, 8, 8), (2, 4, 2, 7, 64, 64), (3, 5, 1, 9, 96, 64), (1, 9, 3, 33, 64, 64)]
SHAPES += gpu_shapes((4, 32, 8, 2048, 64, 64), (2, 32, 8, 1000, 128, 128))


def _angles(positions, rot, device):
    inv = 1.0 / (10000 ** (torch.arange(0, rot, 2, dtype=torch.float64, device=device) / rot))
    f = positions.to(torch.float64)[..., None] * inv
    emb = torch.cat((f, f), dim=-1)
    return emb.cos(), emb.sin()


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
def test_rope_forward_and_gradients(device, dtype, shape):
    b, hq, hk, s, d, rot = shape
    # q/k as Hugging Face builds them: a (batch, seq, heads, dim) projection viewed as (batch, heads, seq, dim)
    q = torch.randn(b, s, hq, d, device=device, dtype=dtype).transpose(1, 2).detach().requires_grad_()
    k = torch.randn(b, s, hk, d, device=device, dtype=dtype).transpose(1, 2).detach().requires_grad_()
    pos = torch.arange(s, device=device).expand(b, s)
    cos, sin = _angles(pos, rot, device)
    qo, ko = rope(q, k, cos.to(dtype), sin.to(dtype))
    dq, dk = torch.randn_like(qo), torch.randn_like(ko)
    (qo * dq).sum().backward(inputs=[q, k], retain_graph=True)
    (ko * dk).sum().backward(inputs=[q, k])
    q64, k64 = ref.up(q), ref.up(k)
    c64, s64 = cos.to(dtype).double()[:, None], sin.to(dtype).double()[:, None]
    qr, kr = ref.rope(q64, k64, c64, s64)
    ((qr * dq.double()).sum() + (kr * dk.double()).sum()).backward()
    check("rope.q", qo, qr, dtype)
    check("rope.k", ko, kr, dtype)
    check("rope.dq", q.grad, q64.grad, dtype)
    check("rope.dk", k.grad, k64.grad, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_rope_position_ids_for_packed_sequences(device, dtype):
    b, hq, hk, s, d = 2, 4, 2, 12, 32
    q = torch.randn(b, hq, s, d, device=device, dtype=dtype, requires_grad=True)
    k = torch.randn(b, hk, s, d, device=device, dtype=dtype, requires_grad=True)
    # two packed documents per row: positions restart at 0
    pos = torch.tensor([[0, 1, 2, 3, 4, 0, 1, 2, 3, 4, 5, 6], [0, 1, 2, 0, 1, 2, 3, 4, 5, 6, 7, 8]], device=device)
    table_cos, table_sin = _angles(torch.arange(64, device=device), d, device)
    qo, ko = rope(q, k, table_cos.to(dtype), table_sin.to(dtype), position_ids=pos)
    (qo.sum() + 2 * ko.sum()).backward()
    q64, k64 = ref.up(q), ref.up(k)
    c64 = table_cos.to(dtype).double()[pos][:, None]
    s64 = table_sin.to(dtype).double()[pos][:, None]
    qr, kr = ref.rope(q64, k64, c64, s64)
    (qr.sum() + 2 * kr.sum()).backward()
    check("rope_packed.q", qo, qr, dtype)
    check("rope_packed.k", ko, kr, dtype)
    check("rope_packed.dq", q.grad, q64.grad, dtype)
    check("rope_packed.dk", k.grad, k64.grad, dtype)


def test_rope_rejects_mismatched_angles(device):
    q = torch.randn(1, 2, 5, 8, device=device)
    cos = torch.randn(1, 6, 8, device=device)
    with pytest.raises(ValueError, match="does not fit"):
        rope(q, q, cos, cos)
