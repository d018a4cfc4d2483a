"""The model catalog: published shapes of the families tuitune knows, plus models found on disk.

Pure Python and fast to import. Shapes come from each model's `config.json`; parameter counts are
computed from the shapes (`count_params`) so a local model gets the same arithmetic as a listed one.
"""

from __future__ import annotations

import json
import os
import struct
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Iterable

from tuitune.paths import converted_models_dir

EMBEDDED_DEFAULT = "smollm2-135m-instruct"


@dataclass(frozen=True)
class ModelSpec:
    name: str
    family: str
    hf_id: str
    params_b: float
    hidden: int
    layers: int
    heads: int
    kv_heads: int
    intermediate: int
    vocab: int
    context: int
    tied_embeddings: bool
    architecture: str
    num_experts: int = 1
    experts_per_token: int = 1
    source: str = "catalog"
    path: str | None = None
    head_dim: int = 0  # 0: hidden // heads (Gemma 2 differs)
    expert_intermediate: int = 0  # MoE feed-forward width when it differs from `intermediate`

    @property
    def attn_head_dim(self) -> int:
        if self.head_dim:
            return self.head_dim
        return self.hidden // self.heads if self.heads else 0

    @property
    def shape_known(self) -> bool:
        return bool(self.hidden and self.layers and self.heads and self.intermediate and self.vocab)

    @property
    def params_label(self) -> str:
        if self.params_b <= 0:
            return "?"
        if self.params_b < 1:
            return f"{self.params_b * 1000:.0f}M"
        return f"{self.params_b:.1f}B" if self.params_b < 10 else f"{self.params_b:.0f}B"


def count_params(spec: ModelSpec) -> int:
    """Parameters implied by the shapes (decoder-only transformer with gated MLP)."""
    h, hd = spec.hidden, spec.attn_head_dim
    q_out, kv_out = spec.heads * hd, spec.kv_heads * hd
    attn = h * q_out + 2 * h * kv_out + q_out * h
    if spec.architecture == "qwen2":
        attn += q_out + 2 * kv_out  # q/k/v biases
    ffn_width = spec.expert_intermediate or spec.intermediate
    if spec.num_experts > 1:
        mlp = spec.num_experts * 3 * h * ffn_width + h * spec.num_experts  # experts + router
    else:
        mlp = 3 * h * spec.intermediate
    norms = (4 if spec.architecture == "gemma2" else 2) * h
    embed = spec.vocab * h
    head = 0 if spec.tied_embeddings else spec.vocab * h
    return spec.layers * (attn + mlp + norms) + embed + head + h


def _m(name, family, hf_id, hidden, layers, heads, kv_heads, intermediate, vocab, context, tied,
       arch, params_b=None, **extra) -> ModelSpec:
    spec = ModelSpec(name, family, hf_id, 0.0, hidden, layers, heads, kv_heads, intermediate, vocab,
                     context, tied, arch, **extra)
    return replace(spec, params_b=round(params_b if params_b else count_params(spec) / 1e9, 3))


# Values from each model's published config.json.
CATALOG: list[ModelSpec] = [
    _m(EMBEDDED_DEFAULT, "SmolLM2", "HuggingFaceTB/SmolLM2-135M-Instruct",
       576, 30, 9, 3, 1536, 49152, 8192, True, "llama", source="embedded"),
    _m("llama-3.2-1b", "Llama 3.2", "meta-llama/Llama-3.2-1B-Instruct",
       2048, 16, 32, 8, 8192, 128256, 131072, True, "llama"),
    _m("llama-3.2-3b", "Llama 3.2", "meta-llama/Llama-3.2-3B-Instruct",
       3072, 28, 24, 8, 8192, 128256, 131072, True, "llama"),
    _m("llama-3.1-8b", "Llama 3.1", "meta-llama/Llama-3.1-8B-Instruct",
       4096, 32, 32, 8, 14336, 128256, 131072, False, "llama"),
    _m("llama-3.1-70b", "Llama 3.1", "meta-llama/Llama-3.1-70B-Instruct",
       8192, 80, 64, 8, 28672, 128256, 131072, False, "llama"),
    _m("llama-3-8b", "Llama 3", "meta-llama/Meta-Llama-3-8B-Instruct",
       4096, 32, 32, 8, 14336, 128256, 8192, False, "llama"),
    _m("llama-3-70b", "Llama 3", "meta-llama/Meta-Llama-3-70B-Instruct",
       8192, 80, 64, 8, 28672, 128256, 8192, False, "llama"),
    _m("mistral-7b", "Mistral", "mistralai/Mistral-7B-Instruct-v0.3",
       4096, 32, 32, 8, 14336, 32768, 32768, False, "mistral"),
    _m("mixtral-8x7b", "Mixtral", "mistralai/Mixtral-8x7B-Instruct-v0.1",
       4096, 32, 32, 8, 14336, 32000, 32768, False, "mixtral", num_experts=8, experts_per_token=2),
    _m("phi-3-mini", "Phi-3", "microsoft/Phi-3-mini-4k-instruct",
       3072, 32, 32, 32, 8192, 32064, 4096, False, "phi3"),
    _m("phi-3.5-mini", "Phi-3.5", "microsoft/Phi-3.5-mini-instruct",
       3072, 32, 32, 32, 8192, 32064, 131072, False, "phi3"),
    _m("qwen2-0.5b", "Qwen2", "Qwen/Qwen2-0.5B-Instruct",
       896, 24, 14, 2, 4864, 151936, 32768, True, "qwen2"),
    _m("qwen2-1.5b", "Qwen2", "Qwen/Qwen2-1.5B-Instruct",
       1536, 28, 12, 2, 8960, 151936, 32768, True, "qwen2"),
    _m("qwen2-7b", "Qwen2", "Qwen/Qwen2-7B-Instruct",
       3584, 28, 28, 4, 18944, 152064, 32768, False, "qwen2"),
    _m("qwen2-72b", "Qwen2", "Qwen/Qwen2-72B-Instruct",
       8192, 80, 64, 8, 29568, 152064, 32768, False, "qwen2"),
    _m("qwen2.5-0.5b", "Qwen2.5", "Qwen/Qwen2.5-0.5B-Instruct",
       896, 24, 14, 2, 4864, 151936, 32768, True, "qwen2"),
    _m("qwen2.5-1.5b", "Qwen2.5", "Qwen/Qwen2.5-1.5B-Instruct",
       1536, 28, 12, 2, 8960, 151936, 32768, True, "qwen2"),
    _m("qwen2.5-3b", "Qwen2.5", "Qwen/Qwen2.5-3B-Instruct",
       2048, 36, 16, 2, 11008, 151936, 32768, True, "qwen2"),
    _m("qwen2.5-7b", "Qwen2.5", "Qwen/Qwen2.5-7B-Instruct",
       3584, 28, 28, 4, 18944, 152064, 32768, False, "qwen2"),
    _m("qwen2.5-14b", "Qwen2.5", "Qwen/Qwen2.5-14B-Instruct",
       5120, 48, 40, 8, 13824, 152064, 32768, False, "qwen2"),
    _m("qwen2.5-32b", "Qwen2.5", "Qwen/Qwen2.5-32B-Instruct",
       5120, 64, 40, 8, 27648, 152064, 32768, False, "qwen2"),
    _m("qwen2.5-72b", "Qwen2.5", "Qwen/Qwen2.5-72B-Instruct",
       8192, 80, 64, 8, 29568, 152064, 32768, False, "qwen2"),
    _m("gemma-2-2b", "Gemma 2", "google/gemma-2-2b-it",
       2304, 26, 8, 4, 9216, 256000, 8192, True, "gemma2", head_dim=256),
    _m("gemma-2-9b", "Gemma 2", "google/gemma-2-9b-it",
       3584, 42, 16, 8, 14336, 256000, 8192, True, "gemma2", head_dim=256),
    _m("gemma-2-27b", "Gemma 2", "google/gemma-2-27b-it",
       4608, 46, 32, 16, 36864, 256000, 8192, True, "gemma2", head_dim=128),
    _m("yi-6b", "Yi", "01-ai/Yi-6B-Chat",
       4096, 32, 32, 4, 11008, 64000, 4096, False, "llama"),
    _m("yi-34b", "Yi", "01-ai/Yi-34B-Chat",
       7168, 60, 56, 8, 20480, 64000, 4096, False, "llama"),
    # Multi-head latent attention and shared experts do not fit the plain formula: the published
    # total (15.7B; 2.4B active) is used for the weights, the shapes below for activations.
    _m("deepseek-v2-lite", "DeepSeek-V2", "deepseek-ai/DeepSeek-V2-Lite-Chat",
       2048, 27, 16, 16, 10944, 102400, 163840, False, "deepseek_v2", params_b=15.7,
       num_experts=64, experts_per_token=6, expert_intermediate=1408),
]

_BY_NAME = {spec.name: spec for spec in CATALOG}


def get_model(name: str) -> ModelSpec | None:
    """A catalog entry by name or hub id (case-insensitive); a model folder or .gguf file by path;
    a model found on disk (`find_local_models`) by its name."""
    key = name.strip().lower()
    for spec in CATALOG:
        if spec.name == key or spec.hf_id.lower() == key:
            return spec
    path = Path(name.strip()).expanduser()
    try:
        if path.is_dir() and (path / "config.json").is_file():
            return spec_from_config(path, name=path.name)
        if path.is_file() and path.suffix.lower() == ".gguf":
            return spec_from_gguf(path)
    except OSError:
        pass
    for spec in find_local_models():
        if spec.name.lower() == key or (spec.path and os.path.abspath(spec.path) == os.path.abspath(name)):
            return spec
    return None


def all_models(extra_dirs: Iterable[str | Path] = ()) -> list[ModelSpec]:
    return list(CATALOG) + find_local_models(extra_dirs)


# ---------------------------------------------------------------- local discovery


def hf_hub_cache() -> Path:
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    return Path.home() / ".cache" / "huggingface" / "hub"


def find_local_models(extra_dirs: Iterable[str | Path] = ()) -> list[ModelSpec]:
    """Models on disk: the Hugging Face cache, tuitune's converted models, and folders named here.

    Unreadable or odd entries are skipped, never raised: discovery feeds a table, not a loader.
    """
    found: list[ModelSpec] = []
    seen: set[str] = set()

    def add(spec: ModelSpec | None) -> None:
        if spec is not None and spec.path not in seen:
            seen.add(spec.path)
            found.append(spec)

    hub = hf_hub_cache()
    for repo in _sorted_dirs(hub):
        if not repo.name.startswith("models--"):
            continue
        hub_id = repo.name[len("models--"):].replace("--", "/")
        snapshots = [s for s in _sorted_dirs(repo / "snapshots") if (s / "config.json").is_file()]
        if snapshots:
            newest = max(snapshots, key=lambda s: (s / "config.json").stat().st_mtime)
            add(spec_from_config(newest, name=hub_id, hf_id=hub_id))
    for folder in _sorted_dirs(converted_models_dir()):
        if (folder / "config.json").is_file():
            add(spec_from_config(folder, name=folder.name))
    for extra in extra_dirs:
        for spec in _scan_user_dir(Path(extra).expanduser()):
            add(spec)
    return found


def _sorted_dirs(path: Path) -> list[Path]:
    try:
        return sorted(p for p in path.iterdir() if p.is_dir())
    except OSError:
        return []


def _scan_user_dir(path: Path) -> list[ModelSpec]:
    if path.is_file() and path.suffix.lower() == ".gguf":
        spec = spec_from_gguf(path)
        return [spec] if spec else []
    if not path.is_dir():
        return []
    specs: list[ModelSpec] = []
    candidates = [path] + _sorted_dirs(path)
    for folder in candidates:
        if (folder / "config.json").is_file():
            spec = spec_from_config(folder, name=folder.name)
            if spec:
                specs.append(spec)
        try:
            ggufs = sorted(folder.glob("*.gguf"))
        except OSError:
            ggufs = []
        for file in ggufs:
            spec = spec_from_gguf(file)
            if spec:
                specs.append(spec)
    return specs


def _text_config(config: dict) -> dict:
    inner = config.get("text_config")
    return {**config, **inner} if isinstance(inner, dict) else config


def _int(value) -> int:
    try:
        return int(value or 0)
    except (TypeError, ValueError):
        return 0


def spec_from_config(folder: Path, *, name: str, hf_id: str = "") -> ModelSpec | None:
    """A ModelSpec from a Hugging Face `config.json` (None when it cannot be read)."""
    try:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(config, dict):
        return None
    c = _text_config(config)
    arch = str(c.get("model_type") or "unknown")
    heads = _int(c.get("num_attention_heads"))
    experts = _int(c.get("num_local_experts") or c.get("n_routed_experts") or c.get("num_experts")) or 1
    tied_default = arch.startswith("gemma")  # transformers' per-architecture default
    spec = ModelSpec(
        name=name,
        family=arch,
        hf_id=hf_id or str(c.get("_name_or_path") or ""),
        params_b=0.0,
        hidden=_int(c.get("hidden_size") or c.get("n_embd") or c.get("d_model")),
        layers=_int(c.get("num_hidden_layers") or c.get("n_layer")),
        heads=heads,
        kv_heads=_int(c.get("num_key_value_heads")) or heads,
        intermediate=_int(c.get("intermediate_size") or c.get("n_inner")),
        vocab=_int(c.get("vocab_size")),
        context=_int(c.get("max_position_embeddings") or c.get("n_positions")),
        tied_embeddings=bool(c.get("tie_word_embeddings", tied_default)),
        architecture=arch,
        num_experts=experts,
        experts_per_token=_int(c.get("num_experts_per_tok")) or 1,
        source="local",
        path=str(folder),
        head_dim=_int(c.get("head_dim")),
        expert_intermediate=_int(c.get("moe_intermediate_size")),
    )
    if spec.shape_known:
        spec = replace(spec, params_b=round(count_params(spec) / 1e9, 3))
    return spec


# GGUF: read the key/value header and the tensor directory only (the tensors are not touched).
_GGUF_SCALARS = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}
_STRING, _ARRAY = 8, 9


def read_gguf_header(path: Path) -> tuple[dict, dict[str, int]]:
    """(metadata with arrays replaced by their length, {tensor name: element count})."""
    with open(path, "rb") as f:
        def read(fmt: str):
            size = struct.calcsize("<" + fmt)
            data = f.read(size)
            if len(data) != size:
                raise ValueError("truncated GGUF header")
            return struct.unpack("<" + fmt, data)[0]

        def read_str() -> str:
            n = read("Q")
            if n > 1 << 24:
                raise ValueError("implausible GGUF string length")
            return f.read(n).decode("utf-8", errors="replace")

        def skip_value(vtype: int):
            if vtype == _STRING:
                return read_str()
            if vtype == _ARRAY:
                inner, count = read("I"), read("Q")
                if inner == _STRING:
                    for _ in range(count):
                        f.seek(read("Q"), 1)
                elif inner in _GGUF_SCALARS:
                    f.seek(struct.calcsize("<" + _GGUF_SCALARS[inner]) * count, 1)
                else:
                    raise ValueError("nested GGUF arrays are not expected in a header")
                return count
            if vtype in _GGUF_SCALARS:
                return read(_GGUF_SCALARS[vtype])
            raise ValueError(f"unknown GGUF value type {vtype}")

        if f.read(4) != b"GGUF":
            raise ValueError("not a GGUF file")
        version = read("I")
        if version < 2:
            raise ValueError("GGUF version 1 is not supported")
        n_tensors, n_kv = read("Q"), read("Q")
        meta = {}
        for _ in range(n_kv):
            key = read_str()
            meta[key] = skip_value(read("I"))
        tensors = {}
        for _ in range(n_tensors):
            tname = read_str()
            n_dims = read("I")
            count = 1
            for _ in range(n_dims):
                count *= read("Q")
            read("I")  # ggml type
            read("Q")  # offset
            tensors[tname] = count
    return meta, tensors


def spec_from_gguf(path: Path) -> ModelSpec | None:
    try:
        meta, tensors = read_gguf_header(path)
    except (OSError, ValueError, struct.error):
        return None
    arch = str(meta.get("general.architecture") or "unknown")

    def key(name: str) -> int:
        return _int(meta.get(f"{arch}.{name}"))

    heads = key("attention.head_count")
    vocab = key("vocab_size") or _int(meta.get("tokenizer.ggml.tokens"))
    return ModelSpec(
        name=path.name,
        family=str(meta.get("general.basename") or arch),
        hf_id="",
        params_b=round(sum(tensors.values()) / 1e9, 3),
        hidden=key("embedding_length"),
        layers=key("block_count"),
        heads=heads,
        kv_heads=key("attention.head_count_kv") or heads,
        intermediate=key("feed_forward_length"),
        vocab=vocab,
        context=key("context_length"),
        tied_embeddings="output.weight" not in tensors,
        architecture=arch,
        num_experts=key("expert_count") or 1,
        experts_per_token=key("expert_used_count") or 1,
        source="local",
        path=str(path),
    )
