"""NF4 (and FP4) dequantization straight from bitsandbytes' own storage.

bitsandbytes stores a 4-bit weight of shape (N, K) as bytes holding two codes each (the first
element in the high nibble), one scale (``absmax``) per ``blocksize`` consecutive elements and a
16-entry code book (``quant_state.code``). With double quantization (``nested``) the scales are
themselves 8-bit codes: ``absmax = code2[q] * absmax2[block // blocksize2] + offset``.

On a CPU with AVX512-BF16, bitsandbytes rewrites a weight the first time it runs an inference
forward (``quant_state.packing_format_for_cpu``): rows in groups of 32, the two nibbles of a byte
taken from elements 32 apart, bf16 scales stored transposed (K / blocksize, N), not nested. Both
layouts are read here; the result is the same dense matrix.
"""

from __future__ import annotations

import math

import torch
import triton
import triton.language as tl

from ._launch import bench_in_place, cdiv, elementwise_block, interpreted, run_tuned


@triton.jit
def _block_scale(ABSMAX, CODE2, ABSMAX2, block, mask, blocksize2, offset, NESTED: tl.constexpr):
    """The float32 scale of each ``block`` index: its absmax, or under double quantization its 8-bit
    code read through the second level (``code2[q] * absmax2[block // blocksize2] + offset``)."""
    if NESTED:
        qa = tl.load(ABSMAX + block, mask=mask, other=0).to(tl.int32)
        scale = tl.load(CODE2 + qa, mask=mask, other=0.0) * tl.load(ABSMAX2 + block // blocksize2, mask=mask,
                                                                     other=0.0) + offset
    else:
        scale = tl.load(ABSMAX + block, mask=mask, other=0.0).to(tl.float32)
    return scale


@triton.jit
def _dequant_4bit(Q, CODE, ABSMAX, CODE2, ABSMAX2, OUT, n_elements, n_cols, blocksize, blocksize2, offset,
                  NESTED: tl.constexpr, CPU_PACKED: tl.constexpr, BLOCK: tl.constexpr):
    o = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = o < n_elements
    if CPU_PACKED:
        n = o // n_cols
        k = o % n_cols
        f = (((n // 32) * (n_cols // 2) + k // 2) * 32 + n % 32) * 2 + k % 2
        byte = tl.load(Q + (f // 64) * 32 + f % 32, mask=mask, other=0).to(tl.int32)
        nib = tl.where((f % 64) >= 32, byte >> 4, byte & 15)
        scale = tl.load(ABSMAX + (k // blocksize) * (n_elements // n_cols) + n, mask=mask, other=0.0).to(tl.float32)
    else:
        byte = tl.load(Q + o // 2, mask=mask, other=0).to(tl.int32)
        nib = tl.where(o % 2 == 0, byte >> 4, byte & 15)
        scale = _block_scale(ABSMAX, CODE2, ABSMAX2, o // blocksize, mask, blocksize2, offset, NESTED)
    value = tl.load(CODE + nib, mask=mask, other=0.0).to(tl.float32)
    tl.store(OUT + o, (value * scale).to(OUT.dtype.element_ty), mask=mask)


def _quant_state(weight):
    """The (data, quant_state) of a Params4bit, or of a Linear4bit's weight."""
    if hasattr(weight, "weight") and not hasattr(weight, "quant_state"):
        weight = weight.weight
    qs = getattr(weight, "quant_state", None)
    if qs is None:
        raise TypeError("nf4_dequantize: expected a bitsandbytes Params4bit (or Linear4bit) that has been "
                        f"quantized (moved to its device); got {type(weight).__name__} without a quant_state")
    return weight.data if isinstance(weight, torch.nn.Parameter) else weight, qs


def _byte_configs():
    if interpreted():
        return [triton.Config({"BLOCK_BYTES": 1 << 16})]
    return [triton.Config({"BLOCK_BYTES": b}, num_warps=w) for b, w in
            ((512, 4), (1024, 4), (2048, 4), (2048, 8), (4096, 8))]


@triton.autotune(configs=_byte_configs(), key=["n_bytes", "NESTED"], do_bench=bench_in_place)
@triton.jit
def _dequant_4bit_bytes(Q, CODE, ABSMAX, CODE2, ABSMAX2, OUT, n_bytes, blocksize, blocksize2, offset,
                        NESTED: tl.constexpr, BLOCK_BYTES: tl.constexpr):
    """The default byte layout, one byte (two elements) per lane: half the loads and index math."""
    b = tl.program_id(0).to(tl.int64) * BLOCK_BYTES + tl.arange(0, BLOCK_BYTES)
    mask = b < n_bytes
    byte = tl.load(Q + b, mask=mask, other=0).to(tl.int32)
    block = (b * 2) // blocksize  # both elements of a byte share a block (blocksize is even)
    scale = _block_scale(ABSMAX, CODE2, ABSMAX2, block, mask, blocksize2, offset, NESTED)
    hi = tl.load(CODE + (byte >> 4), mask=mask, other=0.0) * scale
    lo = tl.load(CODE + (byte & 15), mask=mask, other=0.0) * scale
    out = tl.interleave(hi, lo).to(OUT.dtype.element_ty)
    o = tl.program_id(0).to(tl.int64) * (2 * BLOCK_BYTES) + tl.arange(0, 2 * BLOCK_BYTES)
    tl.store(OUT + o, out, mask=o < 2 * n_bytes)


def _word_configs():
    if interpreted():
        return [triton.Config({"BLOCK_WORDS": 1 << 13})]
    return [triton.Config({"BLOCK_WORDS": b}, num_warps=w) for b, w in
            ((256, 4), (512, 4), (512, 8), (1024, 8), (2048, 8))]


@triton.autotune(configs=_word_configs(), key=["n_words", "NESTED"], do_bench=bench_in_place)
@triton.jit
def _dequant_4bit_words(Q, CODE, ABSMAX, CODE2, ABSMAX2, OUT, n_words, blocksize, blocksize2, offset,
                        NESTED: tl.constexpr, BLOCK_WORDS: tl.constexpr):
    """The default byte layout read as 32-bit words, eight elements per lane: a quarter of the byte
    kernel's loads and scale lookups, and one 16-byte store per lane (bf16)."""
    w = tl.program_id(0).to(tl.int64) * BLOCK_WORDS + tl.arange(0, BLOCK_WORDS)
    mask = w < n_words
    word = tl.load(Q + w, mask=mask, other=0)
    block = (w * 8) // blocksize  # all eight elements of a word share a block (blocksize % 8 == 0)
    scale = _block_scale(ABSMAX, CODE2, ABSMAX2, block, mask, blocksize2, offset, NESTED)
    # little-endian: element 2j is byte j's high nibble, element 2j + 1 its low nibble
    e = tl.arange(0, 8)
    shift = 8 * (e // 2) + 4 * (1 - e % 2)
    nib = (word[:, None] >> shift[None, :]) & 15
    value = tl.load(CODE + nib, mask=mask[:, None], other=0.0) * scale[:, None]
    o = w[:, None] * 8 + e[None, :]
    tl.store(OUT + o, value.to(OUT.dtype.element_ty), mask=mask[:, None])


class _Decoded:
    """What a launch needs from one quant_state, read once: bitsandbytes keeps the double
    quantization's offset as a one-element device tensor, and turning it into a float on every call
    would synchronise the GPU with the host every time a weight is dequantized."""

    __slots__ = ("code", "code2", "absmax2", "blocksize2", "offset", "nested", "packed")

    def __init__(self, qs, device):
        self.packed = bool(getattr(qs, "packing_format_for_cpu", False))
        self.nested = bool(qs.nested) and not self.packed
        self.code = qs.code.to(device=device, dtype=torch.float32)
        if self.nested:
            self.code2 = qs.state2.code.to(device=device, dtype=torch.float32)
            self.absmax2 = qs.state2.absmax.to(device=device, dtype=torch.float32)
            self.blocksize2 = int(qs.state2.blocksize)
            self.offset = float(qs.offset)
        else:
            self.code2, self.absmax2, self.blocksize2, self.offset = self.code, self.code, 1, 0.0


def _decoded(qs, device) -> _Decoded:
    cached = getattr(qs, "_tuitune_decoded", None)
    packed = bool(getattr(qs, "packing_format_for_cpu", False))
    if cached is None or cached.packed != packed or cached.code.device != device:
        cached = _Decoded(qs, device)
        try:
            qs._tuitune_decoded = cached
        except AttributeError:  # a quant_state that takes no new attributes: decode every time
            pass
    return cached


class _WordLaunch:
    """One weight's launch of the word kernel, worked out once and kept on its quant_state.

    A training step dequantizes every base weight two or three times, and on a launch-bound step
    (llama-1b: 224 dequantizations a step) the host cost of each launch is what the step waits for:
    the quant_state reads, the argument list and, above all, Triton's autotuner, which rebuilds its
    key from every argument on every call. After the autotuner's first pick for an output dtype, the
    kernel is launched with that pick directly (``_launch.run_tuned``)."""

    __slots__ = ("data_ptr", "absmax_ptr", "decoded", "shape", "device", "head", "tail", "n_words", "picked")

    def __init__(self, q: torch.Tensor, qs, d: _Decoded, n_elements: int):
        self.data_ptr, self.absmax_ptr, self.decoded = q.data_ptr(), qs.absmax.data_ptr(), d
        self.shape, self.device = tuple(qs.shape), q.device
        self.n_words = n_elements // 8
        self.head = (q.reshape(-1).view(torch.int32), d.code, qs.absmax, d.code2, d.absmax2)
        self.tail = (self.n_words, int(qs.blocksize), d.blocksize2, d.offset)
        self.picked: dict[torch.dtype, tuple[tuple, dict]] = {}

    def fits(self, q: torch.Tensor, qs, d: _Decoded) -> bool:
        """Whether the weight still lives where, and is read as, this launch was worked out for."""
        return d is self.decoded and q.data_ptr() == self.data_ptr and qs.absmax.data_ptr() == self.absmax_ptr

    def run(self, out: torch.Tensor) -> None:
        n_words = self.n_words
        run_tuned(_dequant_4bit_words, lambda meta: (cdiv(n_words, meta["BLOCK_WORDS"]),),
                  (*self.head, out, *self.tail), {"NESTED": self.decoded.nested}, self.picked, out.dtype)


def _word_launch(q: torch.Tensor, qs, d: _Decoded) -> _WordLaunch | None:
    """The kept word-kernel launch of this weight, or None when the word kernel cannot read it."""
    launch = getattr(qs, "_tuitune_word_launch", None)
    if launch is not None and launch.fits(q, qs, d):
        return launch
    n_elements = math.prod(qs.shape)
    if d.packed or n_elements % 8 or int(qs.blocksize) % 8 or not q.is_contiguous() or q.data_ptr() % 4:
        return None
    launch = _WordLaunch(q, qs, d, n_elements)
    try:
        qs._tuitune_word_launch = launch
    except AttributeError:  # a quant_state that takes no new attributes: work it out every time
        pass
    return launch


def nf4_dequantize(weight, dtype: torch.dtype | None = None, out: torch.Tensor | None = None) -> torch.Tensor:
    """Dense (N, K) matrix of a bitsandbytes 4-bit weight (``Params4bit`` or a ``Linear4bit``).

    Reads ``quant_state`` as bitsandbytes keeps it: block scales in float32 or double-quantized
    (8-bit codes with a second level of scales and an offset), the CUDA/default byte layout or the
    CPU AVX512 packed layout. ``dtype`` defaults to the dtype the weight was quantized from.
    ``out``: a contiguous (N, K) tensor to write into (its dtype wins over ``dtype``), for example
    rows of a buffer that stacks several weights.
    """
    data, qs = _quant_state(weight)
    q = data.view(torch.uint8) if data.dtype != torch.uint8 else data
    d = _decoded(qs, q.device)
    out_dtype = dtype or (getattr(qs, "original_dtype", qs.dtype) if d.packed else qs.dtype)
    shape = tuple(qs.shape)
    if out is not None:
        if tuple(out.shape) != shape or not out.is_contiguous() or out.device != q.device:
            raise ValueError(f"nf4_dequantize: out must be a contiguous {shape} tensor on {q.device}, "
                             f"got {tuple(out.shape)} on {out.device}")
        out_dtype = out.dtype
    launch = _word_launch(q, qs, d)
    if launch is not None:
        out = torch.empty(launch.shape, dtype=out_dtype, device=launch.device) if out is None else out
        launch.run(out)
        return out
    n_elements = math.prod(shape)
    out = torch.empty(shape, dtype=out_dtype, device=q.device) if out is None else out
    blocksize = int(qs.blocksize)
    if not d.packed and n_elements % 2 == 0 and blocksize % 2 == 0:
        n_bytes = n_elements // 2
        _dequant_4bit_bytes[lambda meta: (cdiv(n_bytes, meta["BLOCK_BYTES"]),)](
            q, d.code, qs.absmax, d.code2, d.absmax2, out, n_bytes, blocksize, d.blocksize2, d.offset,
            NESTED=d.nested)
        return out
    block = elementwise_block()
    _dequant_4bit[(cdiv(n_elements, block),)](
        q, d.code, qs.absmax, d.code2, d.absmax2, out, n_elements, shape[-1], blocksize, d.blocksize2, d.offset,
        NESTED=d.nested, CPU_PACKED=d.packed, BLOCK=block)
    return out


_KEPT_DENSE = "_tuitune_dense"


def keep_dequantized(weight, dtype: torch.dtype) -> int:
    """Dequantize a 4-bit weight once and keep the dense copy on it, for every later ``base_weight``
    of that dtype (no per-use dequantization, at 2 bytes per element in 16-bit). Returns the bytes
    kept (0 for a weight that is not 4-bit). ``drop_dequantized`` undoes it."""
    if getattr(weight, "quant_state", None) is None:
        return 0
    dense = nf4_dequantize(weight, dtype)
    setattr(weight, _KEPT_DENSE, dense)
    return dense.numel() * dense.element_size()


def has_kept_dense(weight) -> bool:
    """Whether ``keep_dequantized`` left a dense copy on this weight."""
    return getattr(weight, _KEPT_DENSE, None) is not None


def drop_dequantized(weight) -> None:
    weight.__dict__.pop(_KEPT_DENSE, None)


def base_weight(weight, dtype: torch.dtype) -> torch.Tensor:
    """A linear layer's weight as a dense matrix of ``dtype``: dequantized when it is 4-bit (or its
    kept dense copy, see ``keep_dequantized``)."""
    if getattr(weight, "quant_state", None) is not None:
        kept = getattr(weight, _KEPT_DENSE, None)
        if kept is not None and kept.dtype == dtype:
            return kept
        return nf4_dequantize(weight, dtype)
    return weight if weight.dtype == dtype else weight.to(dtype)
