"""A 4-bit base weight dequantized with its LoRA adapter merged in: ``W + scaling * B @ A``, one kernel.

The fused projections dequantize every 4-bit base weight at each use anyway. Writing the merged
matrix instead of the plain one costs the kernel a rank-r ``tl.dot`` per tile (the adapter's rows and
columns come from cache), and saves the projection every pass over its activations that the adapter
needs on its own: the forward's rank-r GEMM that writes the output before the base GEMM adds into it
(one write and one read of the output), and the backward's input-gradient share (one write and one
read of the input gradient). At llama-8b's shapes that is about 1.8 GB of memory traffic a layer.

The merged matrix is rounded to the activations' dtype once, like the plain dequantized weight; the
adapter's gradients still come from the exact rank-r products (``lora_weights``).
"""

from __future__ import annotations

import os

import torch
import triton
import triton.language as tl

from ._launch import bench_in_place, cdiv, interpreted, next_pow2, run_tuned
from .nf4_dequantize import _block_scale, _decoded, _quant_state


PLAIN = {"BY_BYTE": False, "WORDS": False, "ACC": False}


def _configs():
    if interpreted():
        return [triton.Config({"BLOCK_N": 64, "BLOCK_K": 256, **PLAIN})]
    # (32, 128, 4) holds 72 registers a thread where (64, 128, 4), call54's fastest, holds 152 (ptxas for
    # sm_90a, docs/device/merge_registers.py): more warps in flight for a kernel bound by memory.
    tiles = ((32, 128, 4), (32, 256, 4), (64, 128, 4), (64, 256, 4), (64, 256, 8), (128, 128, 8), (128, 256, 8))
    configs = [triton.Config({"BLOCK_N": n, "BLOCK_K": k, **PLAIN, "BY_BYTE": by_byte}, num_warps=w)
               for n, k, w in tiles for by_byte in (False, True)]
    if variants_wanted():
        configs += [triton.Config({"BLOCK_N": n, "BLOCK_K": k, **PLAIN, "WORDS": words, "ACC": acc}, num_warps=w)
                    for n, k, w in ((16, 128, 2), (32, 128, 2), (32, 128, 4), (64, 128, 2), (64, 128, 4))
                    for words, acc in ((False, False), (True, False), (False, True), (True, True))
                    if words or acc or (n, k, w) not in tiles]
    return configs


def variants_wanted() -> bool:
    """``TUITUNE_MERGE_VARIANTS=1``: let the autotuner also try the smaller tiles and the two other ways
    of building a tile (WORDS, ACC; see ``_dequant_merge``). On call54's H100 the smallest tile of the
    default list was the fastest and still 30 us slower than the plain dequantization per llama-8b MLP
    weight; docs/device/merge_bandwidth.py times each of them. Off until measured."""
    return os.environ.get("TUITUNE_MERGE_VARIANTS", "0") == "1"


def _words_only_where_they_fit(configs, named_args, **kwargs):
    """Drop the WORDS configs for a weight whose codes cannot be read as aligned 32-bit words."""
    if kwargs.get("WORDS_OK", False):
        return configs
    return [c for c in configs if not c.kwargs.get("WORDS")]


MIN_BLOCK_K = 128  # the narrowest tile of the configs: a quantization block never straddles two tiles


@triton.autotune(configs=_configs(), key=["N", "K", "NESTED", "R", "BS", "WORDS_OK"], do_bench=bench_in_place,
                 prune_configs_by={"early_config_prune": _words_only_where_they_fit})
@triton.jit
def _dequant_merge(Q, CODE, ABSMAX, CODE2, ABSMAX2, A, B, OUT, N, K, offset, scaling,
                   stride_an, stride_ak, stride_bn, stride_br, stride_on, r,
                   NESTED: tl.constexpr, BS: tl.constexpr, BS2: tl.constexpr, R: tl.constexpr, IEEE: tl.constexpr,
                   WORDS_OK: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, BY_BYTE: tl.constexpr,
                   WORDS: tl.constexpr, ACC: tl.constexpr):
    """One (BLOCK_N, BLOCK_K) tile of the merged weight. K is a multiple of BS and BLOCK_K of BS, so a
    tile holds whole quantization blocks. ``BY_BYTE`` looks each byte's scale up on its own (cached
    loads); otherwise one scale per (row, block) is loaded and broadcast over the block by reshaping
    the tile (fewer loads, a layout shuffle). ``WORDS`` reads the codes as 32-bit words, eight elements
    a lane, as the plain word dequantization does (``WORDS_OK``: the codes are 4-byte aligned and a
    block holds whole words). ``ACC`` has the rank-r dot accumulate into the dequantized tile instead
    of adding its result to it. The autotuner picks whichever runs faster."""
    n = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)
    row = n < N
    if WORDS:
        base = _words_tile(Q, CODE, ABSMAX, CODE2, ABSMAX2, n, row, K, offset, NESTED, BS, BS2, BLOCK_N, BLOCK_K)
    else:
        base = _bytes_tile(Q, CODE, ABSMAX, CODE2, ABSMAX2, n, row, K, offset, NESTED, BS, BS2, BLOCK_N, BLOCK_K,
                           BY_BYTE)
    k = tl.program_id(1) * BLOCK_K + tl.arange(0, BLOCK_K)
    rr = tl.arange(0, R)
    b_tile = tl.load(B + n[:, None] * stride_bn + rr[None, :] * stride_br, mask=row[:, None] & (rr[None, :] < r),
                     other=0.0)
    a_tile = tl.load(A + rr[:, None] * stride_an + k[None, :] * stride_ak, mask=(rr[:, None] < r) & (k[None, :] < K),
                     other=0.0)
    if IEEE:  # float32 adapters (and the interpreter, whose 16-bit dot is not exact): no TF32
        b_tile = b_tile.to(tl.float32)
        a_tile = a_tile.to(tl.float32)
    if ACC:
        out = scaling * tl.dot(b_tile, a_tile, acc=base * (1.0 / scaling), input_precision="ieee" if IEEE else None)
    else:
        out = base + scaling * tl.dot(b_tile, a_tile, input_precision="ieee" if IEEE else None)
    tl.store(OUT + n[:, None].to(tl.int64) * stride_on + k[None, :], out.to(OUT.dtype.element_ty),
             mask=row[:, None] & (k[None, :] < K))


@triton.jit
def _bytes_tile(Q, CODE, ABSMAX, CODE2, ABSMAX2, n, row, K, offset, NESTED: tl.constexpr, BS: tl.constexpr,
                BS2: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, BY_BYTE: tl.constexpr):
    """The dequantized (BLOCK_N, BLOCK_K) tile in float32, from bytes split into two nibble tensors."""
    half = tl.program_id(1) * (BLOCK_K // 2) + tl.arange(0, BLOCK_K // 2)  # byte columns
    byte_mask = row[:, None] & (half[None, :] < K // 2)
    byte = tl.load(Q + n[:, None].to(tl.int64) * (K // 2) + half[None, :], mask=byte_mask, other=0).to(tl.int32)
    hi = tl.load(CODE + (byte >> 4), mask=byte_mask, other=0.0)
    lo = tl.load(CODE + (byte & 15), mask=byte_mask, other=0.0)
    if BY_BYTE:
        block = n[:, None].to(tl.int64) * (K // BS) + half[None, :] // (BS // 2)
        scale = _block_scale(ABSMAX, CODE2, ABSMAX2, block, byte_mask, BS2, offset, NESTED)  # BS2: a shift
        hi = hi * scale
        lo = lo * scale
    else:
        kb = tl.program_id(1) * (BLOCK_K // BS) + tl.arange(0, BLOCK_K // BS)
        block = n[:, None].to(tl.int64) * (K // BS) + kb[None, :]
        scale = _block_scale(ABSMAX, CODE2, ABSMAX2, block, row[:, None] & (kb[None, :] < K // BS), BS2, offset,
                             NESTED)
        hi = tl.reshape(tl.reshape(hi, [BLOCK_N, BLOCK_K // BS, BS // 2]) * scale[:, :, None],
                        [BLOCK_N, BLOCK_K // 2])
        lo = tl.reshape(tl.reshape(lo, [BLOCK_N, BLOCK_K // BS, BS // 2]) * scale[:, :, None],
                        [BLOCK_N, BLOCK_K // 2])
    return tl.interleave(hi, lo)  # element 2j is byte j's high nibble


@triton.jit
def _words_tile(Q, CODE, ABSMAX, CODE2, ABSMAX2, n, row, K, offset, NESTED: tl.constexpr, BS: tl.constexpr,
                BS2: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr):
    """The dequantized (BLOCK_N, BLOCK_K) tile in float32, from 32-bit words of eight codes each."""
    kb = tl.program_id(1) * (BLOCK_K // BS) + tl.arange(0, BLOCK_K // BS)
    block = n[:, None].to(tl.int64) * (K // BS) + kb[None, :]
    scale = _block_scale(ABSMAX, CODE2, ABSMAX2, block, row[:, None] & (kb[None, :] < K // BS), BS2, offset, NESTED)
    w = tl.program_id(1) * (BLOCK_K // 8) + tl.arange(0, BLOCK_K // 8)
    word = tl.load(Q.to(tl.pointer_type(tl.int32)) + n[:, None].to(tl.int64) * (K // 8) + w[None, :],
                   mask=row[:, None] & (w[None, :] < K // 8), other=0)
    e = tl.arange(0, 8)
    shift = 8 * (e // 2) + 4 * (1 - e % 2)  # little-endian: element 2j is byte j's high nibble
    value = tl.load(CODE + ((word[:, :, None] >> shift[None, None, :]) & 15))
    value = tl.reshape(value, [BLOCK_N, BLOCK_K // BS, BS // 8, 8]) * scale[:, :, None, None]
    return tl.reshape(value, [BLOCK_N, BLOCK_K])


def merge_supported(weight) -> bool:
    """Whether ``nf4_merge`` can read this 4-bit weight's storage: bitsandbytes' default layout, a
    power-of-two block size that divides both a row and the narrowest tile (so a tile's blocks are
    whole and never straddle rows), and double-quantization blocks of a power of two."""
    qs = getattr(weight, "quant_state", None)
    if qs is None or getattr(qs, "packing_format_for_cpu", False):
        return False
    k, bs = int(qs.shape[1]), int(qs.blocksize)
    if bs < 2 or bs & (bs - 1) or MIN_BLOCK_K % bs or k % bs:
        return False
    if qs.nested:
        bs2 = int(qs.state2.blocksize)
        return bs2 > 0 and not bs2 & (bs2 - 1)
    return True


_FORCED: dict | None = None  # a tile config every launch uses instead of the autotuner's (tests: each scale path)
_PICKED: dict[tuple, tuple] = {}  # the autotuner's pick per (shape, nesting, block sizes, rank, dtype, device)


class _MergeLaunch:
    """One weight's merge with one adapter, worked out once and kept on its quant_state (as
    ``nf4_dequantize._WordLaunch`` keeps the plain dequantization's). A launch-bound step (llama-1b:
    about 220 merges a step) waits for each call's checks and argument list; a kept launch serves the
    next call after comparing pointers. It holds the tensors it read, so a pointer that compares equal
    is still theirs."""

    __slots__ = ("weight_ptr", "absmax_ptr", "decoded", "adapter", "a", "b", "scaling", "shape", "head", "mid",
                 "r", "consts", "key")

    def __init__(self, q: torch.Tensor, qs, d, a: torch.Tensor, b: torch.Tensor, scaling: float):
        self.weight_ptr, self.absmax_ptr, self.decoded = q.data_ptr(), qs.absmax.data_ptr(), d
        self.a, self.b, self.scaling = a, b, scaling
        self.adapter = _adapter_layout(a, b)
        n_out, k_in = (int(s) for s in qs.shape)
        self.shape, self.r = (n_out, k_in), int(a.shape[0])
        self.head = (q, d.code, qs.absmax, d.code2, d.absmax2, a, b)
        self.mid = (n_out, k_in, d.offset, float(scaling), a.stride(0), a.stride(1), b.stride(0), b.stride(1))
        words_ok = q.data_ptr() % 4 == 0 and k_in % 8 == 0 and int(qs.blocksize) % 8 == 0 and q.is_contiguous()
        self.consts = {"NESTED": d.nested, "BS": int(qs.blocksize), "BS2": d.blocksize2,
                       "R": max(16, next_pow2(self.r)), "IEEE": a.dtype == torch.float32 or interpreted(),
                       "WORDS_OK": words_ok}
        self.key = (n_out, k_in, d.nested, self.consts["BS"], self.consts["BS2"], self.consts["R"], a.dtype, q.device,
                    words_ok)

    def serves(self, weight, qs, a: torch.Tensor, b: torch.Tensor, scaling: float) -> bool:
        """Whether this launch reads exactly what a merge of ``weight`` with ``a``, ``b``, ``scaling`` would."""
        return (scaling == self.scaling and _adapter_layout(a, b) == self.adapter
                and weight.data_ptr() == self.weight_ptr and qs.absmax.data_ptr() == self.absmax_ptr
                and getattr(qs, "_tuitune_decoded", None) is self.decoded)

    def output(self, out: torch.Tensor | None) -> torch.Tensor:
        """``out`` checked, or a new (N, K) tensor of the adapter's dtype."""
        if out is None:
            return torch.empty(self.shape, dtype=self.a.dtype, device=self.a.device)
        _check_out(out, *self.shape)
        return out

    def args(self, out: torch.Tensor) -> tuple:
        """The kernel's arguments up to its constexprs, writing into ``out``."""
        return (*self.head, out, *self.mid, out.stride(0), self.r)

    def run(self, out: torch.Tensor | None) -> torch.Tensor:
        n_out, k_in = self.shape
        out = self.output(out)
        run_tuned(_dequant_merge, lambda meta: (cdiv(n_out, meta["BLOCK_N"]), cdiv(k_in, meta["BLOCK_K"])),
                  self.args(out), self.consts, _PICKED, self.key)
        return out


def _adapter_layout(a: torch.Tensor, b: torch.Tensor) -> tuple:
    return a.data_ptr(), a.shape, a.stride(), a.dtype, b.data_ptr(), b.shape, b.stride()


def _check_out(out: torch.Tensor, n_out: int, k_in: int) -> None:
    if tuple(out.shape) != (n_out, k_in) or out.stride(1) != 1:
        raise ValueError(f"nf4_merge: out must be ({n_out}, {k_in}) with contiguous rows, got {tuple(out.shape)}")


def nf4_merge(weight, lora_a: torch.Tensor, lora_b: torch.Tensor, scaling: float,
              out: torch.Tensor | None = None) -> torch.Tensor:
    """``dequantize(weight) + scaling * lora_b @ lora_a`` as a dense (N, K) matrix of ``lora_a``'s dtype.

    ``weight``: a bitsandbytes 4-bit ``Params4bit`` that ``merge_supported`` accepts; ``lora_a`` (r, K)
    and ``lora_b`` (N, r) in the dtype wanted (the activations'). ``out``: an (N, K) tensor with
    contiguous rows to write into (rows of a stacked buffer), else a new one.
    """
    qs = getattr(weight, "quant_state", None)
    kept = getattr(qs, "_tuitune_merge_launch", None)
    if kept is not None and _FORCED is None and kept.serves(weight, qs, lora_a, lora_b, scaling):
        return kept.run(out)
    data, qs = _quant_state(weight)
    q = data.view(torch.uint8) if data.dtype != torch.uint8 else data
    n_out, k_in = (int(s) for s in qs.shape)
    r = int(lora_a.shape[0])
    if tuple(lora_a.shape) != (r, k_in) or tuple(lora_b.shape) != (n_out, r) or lora_a.dtype != lora_b.dtype:
        raise ValueError(f"nf4_merge: adapter shapes {tuple(lora_a.shape)} and {tuple(lora_b.shape)} "
                         f"({lora_a.dtype}, {lora_b.dtype}) do not fit a ({n_out}, {k_in}) weight")
    if out is not None:
        _check_out(out, n_out, k_in)
    if not merge_supported(weight):
        raise ValueError("nf4_merge: this weight's layout or block size is not one merge_supported accepts")
    launch = _MergeLaunch(q, qs, _decoded(qs, q.device), lora_a, lora_b, float(scaling))
    if _FORCED is not None:
        out = launch.output(out)
        _dequant_merge.fn[(cdiv(n_out, _FORCED["BLOCK_N"]), cdiv(k_in, _FORCED["BLOCK_K"]))](
            *launch.args(out), **launch.consts, **{**PLAIN, **_FORCED})
        return out
    if isinstance(weight, torch.Tensor):  # a Params4bit (a Linear4bit is read through the module, every call)
        try:
            qs._tuitune_merge_launch = launch
        except AttributeError:  # a quant_state that takes no new attributes: work it out every call
            pass
    return launch.run(out)
