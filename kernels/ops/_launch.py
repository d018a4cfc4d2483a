"""Launch-time helpers shared by the kernel files: block sizes and grid shapes.

Under the Triton interpreter (TRITON_INTERPRET=1, the CPU test path) every program instance costs
about a millisecond and a half of Python, so the helpers choose few, large programs there; on a GPU
they choose the usual small tiles and one program per row block.
"""

from __future__ import annotations

import os

import torch


# Triton decides at decoration time whether a @triton.jit function is compiled or interpreted, and
# the kernel files import this module as they are decorated: the launch sizes follow that decision,
# not a later change of the environment. (A test module that set TRITON_INTERPRET=1 at import made
# every GPU kernel test collected after it launch the interpreter's huge tiles, compiled: a single
# cross-entropy case took 412 s on an H100.)
_INTERPRETED = os.environ.get("TRITON_INTERPRET", "0") == "1"


def interpreted() -> bool:
    """True when Triton runs kernels in its Python interpreter instead of compiling them."""
    return _INTERPRETED


def next_pow2(n: int) -> int:
    """Smallest power of two that is >= n (and >= 1)."""
    return 1 << max(0, int(n) - 1).bit_length()


def cdiv(a: int, b: int) -> int:
    return (a + b - 1) // b


def tile_elements() -> int:
    """How many elements one program should hold in a 2-D tile."""
    return 1 << 16 if interpreted() else 1 << 12


def rows_per_tile(n_cols_block: int, n_rows: int) -> int:
    """Rows per 2-D tile for kernels that hold whole rows (norms): a power of two, at least 1."""
    budget = max(1, tile_elements() // n_cols_block)
    return max(1, min(next_pow2(max(n_rows, 1)), 1 << (budget.bit_length() - 1)))


def reduction_programs(device: torch.device, n_row_blocks: int) -> int:
    """Number of programs for kernels that reduce over rows into per-program partial sums."""
    if interpreted() or device.type != "cuda":
        return max(1, min(n_row_blocks, 2))
    sms = torch.cuda.get_device_properties(device).multi_processor_count
    return max(1, min(n_row_blocks, 2 * sms))


def elementwise_block() -> int:
    return 1 << 16 if interpreted() else 1024


def as_rows(x: torch.Tensor) -> torch.Tensor:
    """View ``x`` as a 2-D (rows, last dim) tensor whose last dimension is contiguous."""
    if x.stride(-1) != 1:
        x = x.contiguous()
    x2 = x.reshape(-1, x.shape[-1])
    if x2.shape[0] > 1 and x2.stride(-1) != 1:
        x2 = x2.contiguous()
    return x2


def run_tuned(kernel, grid, args: tuple, consts: dict, picked: dict, key) -> None:
    """Launch the autotuned ``kernel`` on ``args`` (``consts``: its constexpr arguments), with the
    config the autotuner picked for ``key`` when ``picked`` holds one: Triton's autotuner rebuilds its
    key from every argument on every call, a host cost that a launch-bound step waits for. The first
    launch for a key goes through the autotuner and keeps its pick in ``picked``. ``grid``: a function
    of a config's meta-parameters, as for ``kernel[grid]``."""
    kept = picked.get(key)
    if kept is not None:
        launch_grid, kwargs = kept
        kernel.fn.run(*args, grid=launch_grid, warmup=False, **kwargs)
        return
    kernel[grid](*args, **consts)
    config = kernel.best_config
    if config.pre_hook is None:
        picked[key] = (grid(config.kwargs), {**config.all_kwargs(), **consts})


BENCH_CALLS = 10  # timed calls per config when the autotuner measures one (after one untimed call)


def bench_in_place(kernel_call, quantiles=(0.5, 0.2, 0.8)) -> list[float]:
    """The autotuner's timing of one config (``triton.autotune(..., do_bench=bench_in_place)``), in ms at
    ``quantiles``, without Triton's L2 flush between calls. That flush writes a 256 MB buffer, which
    is allocated while the first training step runs: on an H100 it raised llama-1b QLoRA's peak from
    1.44 to 1.59 GiB (2026-12-07). The kernels tuned here each stream more than the L2 holds, so
    their timings hardly depend on what it held before."""
    kernel_call()
    pairs = []
    for _ in range(BENCH_CALLS):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        kernel_call()
        end.record()
        pairs.append((start, end))
    torch.cuda.synchronize()
    return quantiles_of([s.elapsed_time(e) for s, e in pairs], quantiles)


def quantiles_of(times: list[float], quantiles) -> list[float]:
    """Each quantile of ``times`` (nearest rank)."""
    ordered = sorted(times)
    return [ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))] for q in quantiles]
