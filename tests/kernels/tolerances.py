"""The one tolerance table of the kernel tests (FlagGems' discipline).

Every kernel output and gradient is compared with a float64 PyTorch reference computed from the
same (already rounded) inputs. An element passes when

    |actual - reference| <= ATOL[dtype] * max|reference| + RTOL[dtype] * |reference|

so the absolute part scales with the tensor's largest magnitude (a loss of 11.8 and a gradient of
1e-6 are judged on their own scales). ``check`` also records each comparison's max absolute error
and its max error relative to max|reference|; with KERNEL_ERRORS_JSON set, the kernel conftest
writes them there at the end of the session (that is where NOTES.md's kernel error tables come from).
"""

from __future__ import annotations

import torch

TOLERANCES: dict[torch.dtype, tuple[float, float]] = {
    # dtype: (ATOL relative to max|reference|, RTOL elementwise)
    torch.float32: (2e-5, 1e-4),
    torch.bfloat16: (1.5e-2, 2e-2),
}

RECORDED: list[dict] = []


def check(name: str, actual: torch.Tensor, reference: torch.Tensor, dtype: torch.dtype) -> None:
    """Assert ``actual`` matches the float64 ``reference`` within the table's tolerance for ``dtype``."""
    atol, rtol = TOLERANCES[dtype]
    a = actual.detach().to(torch.float64).cpu()
    r = reference.detach().to(torch.float64).cpu()
    assert a.shape == r.shape, f"{name}: shape {tuple(a.shape)} != reference {tuple(r.shape)}"
    assert torch.isfinite(a).all(), f"{name}: non-finite values"
    scale = r.abs().max().item() if r.numel() else 0.0
    err = (a - r).abs()
    max_abs = err.max().item() if err.numel() else 0.0
    max_rel = max_abs / scale if scale > 0 else max_abs
    RECORDED.append({"name": name, "dtype": str(dtype).removeprefix("torch."), "max_abs": max_abs,
                     "max_rel": max_rel})
    bound = atol * max(scale, 1e-30) + rtol * r.abs()
    bad = err > bound
    assert not bad.any(), (
        f"{name} ({dtype}): {int(bad.sum())} of {err.numel()} elements off; max abs error {max_abs:.3e}, "
        f"max error / max|ref| {max_rel:.3e} (atol {atol} x {scale:.3e}, rtol {rtol})")


# Whole-model comparisons (patched vs stock model, same weights, same dtype): the stock model is the
# reference, so both sides carry rounding. Same rule as above, per dtype.
MODEL_TOLERANCES: dict[torch.dtype, tuple[float, float]] = {
    torch.float32: (1e-4, 1e-3),
    torch.bfloat16: (4e-2, 5e-2),
}


def check_model(name: str, actual: torch.Tensor, stock: torch.Tensor, dtype: torch.dtype) -> None:
    """Assert a patched model's output or gradient matches the stock model's (MODEL_TOLERANCES)."""
    atol, rtol = MODEL_TOLERANCES[dtype]
    a = actual.detach().to(torch.float64).cpu()
    r = stock.detach().to(torch.float64).cpu()
    assert a.shape == r.shape, f"{name}: shape {tuple(a.shape)} != stock {tuple(r.shape)}"
    scale = r.abs().max().item() if r.numel() else 0.0
    err = (a - r).abs()
    max_abs = err.max().item() if err.numel() else 0.0
    RECORDED.append({"name": name, "dtype": str(dtype).removeprefix("torch."), "max_abs": max_abs,
                     "max_rel": max_abs / scale if scale > 0 else max_abs})
    bad = err > atol * max(scale, 1e-30) + rtol * r.abs()
    assert not bad.any(), (f"{name} ({dtype}): {int(bad.sum())} of {err.numel()} elements off; max abs error "
                           f"{max_abs:.3e} (scale {scale:.3e}, atol {atol}, rtol {rtol})")
