"""Named model shapes for `tuitune bench`, and the random-weight checkpoints built from them.

A checkpoint is built once per shape and cached under `tuitune.paths.cache_dir() / "bench"`; torch
and transformers are imported only when one is built.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

from tuitune.errors import TuituneError
from tuitune.paths import cache_dir


@dataclass(frozen=True)
class BenchShape:
    name: str
    hidden: int
    intermediate: int
    layers: int
    heads: int
    kv_heads: int
    vocab: int
    tied: bool
    context: int = 8192

    def model_spec(self):
        """The shape as a catalog ModelSpec, for the fit estimator."""
        from tuitune.catalog import ModelSpec, count_params

        spec = ModelSpec(self.name, "bench", "", 0.0, self.hidden, self.layers, self.heads, self.kv_heads,
                         self.intermediate, self.vocab, self.context, self.tied, "llama", source="local")
        return ModelSpec(**{**spec.__dict__, "params_b": count_params(spec) / 1e9})

    def llama_config(self) -> dict:
        return {
            "architectures": ["LlamaForCausalLM"],
            "model_type": "llama",
            "hidden_size": self.hidden,
            "intermediate_size": self.intermediate,
            "num_hidden_layers": self.layers,
            "num_attention_heads": self.heads,
            "num_key_value_heads": self.kv_heads,
            "vocab_size": self.vocab,
            "tie_word_embeddings": self.tied,
            "max_position_embeddings": self.context,
            "rms_norm_eps": 1e-5,
            "rope_theta": 500000.0,
            "hidden_act": "silu",
            "bos_token_id": 1,
            "eos_token_id": 2,
        }


SHAPES: dict[str, BenchShape] = {
    s.name: s
    for s in [
        BenchShape("llama-1b", 2048, 8192, 16, 32, 8, 128256, True),
        BenchShape("llama-8b", 4096, 14336, 32, 32, 8, 128256, False),
        # Small enough to train a few steps on two CPU cores in seconds (the CI test).
        BenchShape("tiny", 64, 176, 2, 4, 2, 512, True, context=1024),
    ]
}


def get_shape(name: str) -> BenchShape:
    shape = SHAPES.get(name)
    if shape is None:
        raise TuituneError(f"Unknown bench shape {name!r}. Shapes: {', '.join(SHAPES)}.")
    return shape


def bench_cache() -> Path:
    return cache_dir() / "bench"


def checkpoint_dir(shape: BenchShape) -> Path:
    return bench_cache() / shape.name


def build_checkpoint(shape: BenchShape, *, seed: int = 0) -> Path:
    """Write (once) a random-weight bf16 Llama checkpoint of `shape`; return its folder.

    The folder is written beside its final place and renamed, so an interrupted build never leaves
    a half-written checkpoint that a later run would trust.
    """
    folder = checkpoint_dir(shape)
    marker = folder / "tuitune-shape.json"
    if marker.is_file() and json.loads(marker.read_text()) == asdict(shape):
        return folder
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tmp = folder.with_name(folder.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.rmtree(folder, ignore_errors=True)
    torch.manual_seed(seed)
    config = LlamaConfig(**{k: v for k, v in shape.llama_config().items() if k != "architectures"})
    model = None
    for device in (["cuda"] if torch.cuda.is_available() else []) + ["cpu"]:
        previous = torch.get_default_dtype()
        torch.set_default_dtype(torch.bfloat16)  # initialise in bf16: no fp32 copy of an 8B model
        try:
            with torch.device(device):
                model = LlamaForCausalLM(config)
            break
        except torch.OutOfMemoryError:  # a small GPU: initialise on the CPU instead (slower)
            torch.cuda.empty_cache()
        finally:
            torch.set_default_dtype(previous)
    model.save_pretrained(tmp, safe_serialization=True)
    del model
    (tmp / "tuitune-shape.json").write_text(json.dumps(asdict(shape)))
    tmp.rename(folder)
    return folder


def main(argv: list[str]) -> int:
    """`python -m tuitune.bench.shapes NAME`: build the checkpoint (in its own process) and print it."""
    print(build_checkpoint(get_shape(argv[0])))
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(main(sys.argv[1:]))
