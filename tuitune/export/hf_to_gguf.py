"""A focused Hugging Face -> GGUF writer for Llama-family models (llama, mistral, qwen2, qwen3), on gguf-py.

Tensor names come from gguf-py's own name map; q/k projections of the llama architecture are
permuted into llama.cpp's rotary layout (pairs of halves -> interleaved), as llama.cpp's converter
does; 1-D tensors stay float32; 2-D tensors take the requested type (f16, bf16, q8_0; a row width
q8_0 cannot block falls back to f16). Other architectures: export merged and use llama.cpp's script.
"""

from __future__ import annotations

import math
from pathlib import Path

from tuitune.errors import TuituneError
from tuitune.export.formats import Progress, no_progress

# transformers model_type -> (GGUF architecture, q/k permuted into llama.cpp's rotary layout)
ARCHITECTURES = {"llama": ("llama", True), "mistral": ("llama", True), "qwen2": ("qwen2", False),
                 "qwen3": ("qwen3", False)}
OUTTYPES = ("f32", "f16", "bf16", "q8_0")


def check_supported(config) -> None:
    model_type = getattr(config, "model_type", "?")
    if model_type not in ARCHITECTURES:
        raise TuituneError(f"tuitune's GGUF writer supports {', '.join(sorted(ARCHITECTURES))}; this model is "
                           f"{model_type!r}. Export the merged format, then convert that folder with llama.cpp's "
                           "convert_hf_to_gguf.py.")
    rope = _rope(config)
    if rope.get("rope_type", "default") not in ("default", "linear", "llama3"):
        raise TuituneError(f"RoPE scaling {rope.get('rope_type')!r} is not handled by tuitune's GGUF writer. Export "
                           "the merged format and convert it with llama.cpp's convert_hf_to_gguf.py.")


def write_gguf(model, tokenizer, path: Path, outtype: str, *, name: str, source_gguf: Path | None = None,
               progress: Progress = no_progress) -> list[str]:
    """Write `model` (a plain transformers causal LM) to `path`; notes for the report."""
    import gguf

    config = model.config
    check_supported(config)
    if outtype not in OUTTYPES:
        raise TuituneError(f"GGUF tensor type {outtype!r} is not one of {', '.join(OUTTYPES)}.")
    arch_name, permute_qk = ARCHITECTURES[config.model_type]
    writer = gguf.GGUFWriter(str(path), arch_name)
    _add_hparams(writer, config, outtype, name)
    notes = _add_tensors(writer, model, config, arch_name, permute_qk, outtype, progress)
    from tuitune.export.gguf_vocab import add_tokenizer

    notes += add_tokenizer(writer, tokenizer, source_gguf=source_gguf)
    progress(0.9, f"writing {path.name}")
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return notes


def _rope(config) -> dict:
    return dict(getattr(config, "rope_parameters", None) or getattr(config, "rope_scaling", None) or {})


def _head_dim(config) -> int:
    return getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads


def _add_hparams(writer, config, outtype: str, name: str) -> None:
    import gguf

    writer.add_type("model")
    writer.add_name(name)
    writer.add_context_length(config.max_position_embeddings)
    writer.add_embedding_length(config.hidden_size)
    writer.add_block_count(config.num_hidden_layers)
    writer.add_feed_forward_length(config.intermediate_size)
    writer.add_head_count(config.num_attention_heads)
    writer.add_head_count_kv(getattr(config, "num_key_value_heads", None) or config.num_attention_heads)
    writer.add_layer_norm_rms_eps(config.rms_norm_eps)
    rope = _rope(config)
    writer.add_rope_freq_base(float(rope.get("rope_theta", getattr(config, "rope_theta", 10000.0))))
    head_dim = _head_dim(config)
    writer.add_rope_dimension_count(head_dim)
    if head_dim != config.hidden_size // config.num_attention_heads:
        writer.add_key_length(head_dim)
        writer.add_value_length(head_dim)
    if rope.get("rope_type") == "linear":
        writer.add_rope_scaling_type(gguf.RopeScalingType.LINEAR)
        writer.add_rope_scaling_factor(float(rope["factor"]))
    writer.add_vocab_size(config.vocab_size)
    file_type = {"f32": gguf.LlamaFileType.ALL_F32, "f16": gguf.LlamaFileType.MOSTLY_F16,
                 "bf16": gguf.LlamaFileType.MOSTLY_BF16, "q8_0": gguf.LlamaFileType.MOSTLY_Q8_0}[outtype]
    writer.add_file_type(file_type)
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)


def _add_tensors(writer, model, config, arch_name: str, permute_qk: bool, outtype: str,
                 progress: Progress) -> list[str]:
    import gguf

    arch = next(a for a, n in gguf.MODEL_ARCH_NAMES.items() if n == arch_name)
    names = gguf.get_tensor_name_map(arch, config.num_hidden_layers)
    tied = bool(getattr(config, "tie_word_embeddings", False))
    state = model.state_dict()
    fallbacks = 0
    for index, (hf_name, tensor) in enumerate(state.items()):
        if hf_name == "lm_head.weight" and tied:
            continue  # llama.cpp reuses token_embd for the output when the file has no output.weight
        name = names.get_name(hf_name, try_suffixes=(".weight", ".bias"))
        if name is None:
            raise TuituneError(f"Tensor {hf_name} of this {config.model_type} model has no GGUF name. Export the "
                               "merged format and convert it with llama.cpp's convert_hf_to_gguf.py.")
        data = tensor.detach().float().cpu()
        if permute_qk and hf_name.endswith(("q_proj.weight", "q_proj.bias")):
            data = rotary_permute(data, config.num_attention_heads)
        elif permute_qk and hf_name.endswith(("k_proj.weight", "k_proj.bias")):
            data = rotary_permute(data, getattr(config, "num_key_value_heads", None) or config.num_attention_heads)
        fallbacks += _add_one(writer, name, data.numpy(), outtype)
        if index % 16 == 0:
            progress(0.1 + 0.8 * index / max(1, len(state)), f"converting tensors ({index}/{len(state)})")
    if _rope(config).get("rope_type") == "llama3":
        writer.add_tensor(gguf.TENSOR_NAMES[gguf.MODEL_TENSOR.ROPE_FREQS], llama3_rope_factors(config))
    return [f"{fallbacks} tensors kept in f16 (rows not a multiple of the q8_0 block)"] if fallbacks else []


def _add_one(writer, name: str, array, outtype: str) -> int:
    """Add one tensor in the requested type; 1 when it had to fall back to f16."""
    import gguf
    import numpy as np

    if array.ndim <= 1 or outtype == "f32":
        writer.add_tensor(name, array.astype(np.float32))
        return 0
    if outtype == "f16":
        writer.add_tensor(name, array.astype(np.float16))
        return 0
    qtype = gguf.GGMLQuantizationType.BF16 if outtype == "bf16" else gguf.GGMLQuantizationType.Q8_0
    block = gguf.GGML_QUANT_SIZES[qtype][0]
    if array.shape[-1] % block:
        writer.add_tensor(name, array.astype(np.float16))
        return 1
    writer.add_tensor(name, gguf.quants.quantize(array, qtype), raw_dtype=qtype)
    return 0


def rotary_permute(weight, n_heads: int):
    """HF's rotary layout (each head: first halves, then second halves) to llama.cpp's interleaved one."""
    rows = weight.shape[0]
    return (weight.reshape(n_heads, 2, rows // n_heads // 2, *weight.shape[1:])
            .swapaxes(1, 2).reshape(weight.shape))


def llama3_rope_factors(config):
    """Llama 3.1's frequency-dependent RoPE scaling, as the per-frequency divisors llama.cpp reads."""
    import numpy as np

    rope = _rope(config)
    dim = _head_dim(config)
    base = float(rope.get("rope_theta", getattr(config, "rope_theta", 10000.0)))
    factor = float(rope.get("factor", 8.0))
    low, high = float(rope.get("low_freq_factor", 1.0)), float(rope.get("high_freq_factor", 4.0))
    original = float(rope.get("original_max_position_embeddings", 8192))
    factors = []
    for i in range(0, dim, 2):
        wavelength = 2 * math.pi * base ** (i / dim)
        if wavelength < original / high:
            factors.append(1.0)
        elif wavelength > original / low:
            factors.append(factor)
        else:
            smooth = (original / wavelength - low) / (high - low)
            factors.append(1.0 / ((1 - smooth) / factor + smooth))
    return np.asarray(factors, dtype=np.float32)
