import pytest
import torch

from tests.kernels import kernel_reference as ref
from tests.kernels.kernel_env import DTYPES, gpu_shapes
from tests.kernels.tolerances import check
from tuitune.kernels import cross_entropy

# (rows, vocab)
SHAPES = [(1, 7), (5, 1000), (3, 128256)] + gpu_shapes((4096, 128256), (1000, 49152))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("softcap", [None, 30.0])
def test_cross_entropy_forward_and_gradient(device, dtype, shape, softcap):
    n, v = shape
    logits = (torch.randn(n, v, device=device) * 4).to(dtype).requires_grad_()
    labels = torch.randint(0, v, (n,), device=device)
    if n > 2:
        labels[1] = -100
    loss = cross_entropy(logits, labels, softcap=softcap)
    loss.backward()
    l64 = ref.up(logits)
    r = ref.cross_entropy(l64, labels, softcap=softcap)
    r.backward()
    check("cross_entropy.loss", loss, r, dtype)
    check("cross_entropy.dlogits", logits.grad, l64.grad, dtype)


def test_cross_entropy_custom_ignore_index_and_3d(device):
    logits = torch.randn(2, 5, 50, device=device, requires_grad=True)
    labels = torch.randint(0, 50, (2, 5), device=device)
    labels[0, :3] = 7
    loss = cross_entropy(logits, labels, ignore_index=7)
    loss.backward()
    l64 = ref.up(logits)
    r = ref.cross_entropy(l64, labels, ignore_index=7)
    r.backward()
    check("cross_entropy.loss", loss, r, torch.float32)
    check("cross_entropy.dlogits", logits.grad, l64.grad, torch.float32)


def test_cross_entropy_all_ignored_is_zero(device):
    logits = torch.randn(3, 11, device=device, requires_grad=True)
    loss = cross_entropy(logits, torch.full((3,), -100, device=device))
    loss.backward()
    assert loss.item() == 0.0 and logits.grad.abs().max().item() == 0.0
