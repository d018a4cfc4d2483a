"""What `tuitune chat X` / `tuitune export X` talk to: a run, an adapter folder, a model, or a .gguf file.

Pure Python (reads config files only), so the UI can resolve and describe a target before any load.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from tuitune.errors import TuituneError


@dataclass(frozen=True)
class ChatTarget:
    kind: str               # adapter | model | gguf
    base: str               # model source: catalog name, folder, .gguf file or hub id
    adapter: Path | None    # the PEFT adapter folder (kind "adapter")
    label: str              # for people: "run 2025...-x", "adapter /path", "model smollm2"
    run: Path | None = None  # the run folder, when the target came from a run
    method: str = "lora"    # lora | qlora: how the run trained (QLoRA bases load in 4-bit on a GPU)

    @property
    def gguf(self) -> Path | None:
        return Path(self.base) if self.kind == "gguf" else None

    @property
    def has_adapter(self) -> bool:
        return self.adapter is not None


def resolve_target(ref: str, runs_root=None) -> ChatTarget:
    """A run (name or folder), an adapter folder, a .gguf file (or a folder holding one), or a model."""
    from tuitune.paths import runs_root as runs_root_path
    from tuitune.runs import CONFIG_FILE, RunDir

    path = Path(ref).expanduser()
    if (path / "adapter_config.json").exists():
        return ChatTarget("adapter", adapter_base(path), path, f"adapter {path}", method=_adapter_method(path))
    gguf = _gguf_file(path)
    if gguf is not None:
        return ChatTarget("gguf", str(gguf), None, f"GGUF {gguf.name}")
    if (path / "config.json").exists():
        return ChatTarget("model", str(path), None, f"model {path}")
    exact = [p for p in (path, runs_root_path(runs_root) / ref) if (p / CONFIG_FILE).exists()]
    if exact:
        return _run_target(RunDir(exact[0]))
    if not _is_model_name(ref):  # a model name wins over a run whose folder name merely contains it
        try:
            run = RunDir.open(ref, runs_root)
        except TuituneError:
            run = None
        if run is not None:
            return _run_target(run)
    return ChatTarget("model", ref, None, f"model {ref}")


def _is_model_name(ref: str) -> bool:
    from tuitune.catalog import get_model
    from tuitune.model_source import EMBEDDED_NAMES

    return ref.strip().lower() in EMBEDDED_NAMES or get_model(ref) is not None


def _run_target(run) -> ChatTarget:
    from tuitune import events as ev
    from tuitune.runs import ADAPTER

    adapter = run.path / ADAPTER
    if not (adapter / "adapter_config.json").exists():
        checkpoints = run.checkpoints()
        if not checkpoints:
            raise TuituneError(f"Run {run.name} has no adapter yet ({adapter} is missing and no checkpoint is "
                               "complete). Wait for a checkpoint or pick a finished run (`tuitune runs`).")
        adapter = checkpoints[-1]
    config = run.load_config()
    method = next((e.get("method") for e in run.events() if e.get("type") == ev.STARTED and e.get("method")),
                  config.model.method)
    return ChatTarget("adapter", config.model.name, adapter, f"run {run.name}", run=run.path,
                      method="qlora" if method == "qlora" else "lora")


def _gguf_file(path: Path) -> Path | None:
    if path.is_file() and path.suffix.lower() == ".gguf":
        return path.resolve()
    if path.is_dir() and not (path / "config.json").exists():
        found = sorted(path.glob("*.gguf"))
        if len(found) == 1:
            return found[0].resolve()
        if len(found) > 1:
            names = ", ".join(p.name for p in found[:4])
            raise TuituneError(f"{path} holds {len(found)} .gguf files ({names}); pass one of them.")
    return None


def adapter_base(adapter: Path) -> str:
    """The base model an adapter belongs to: the run config saved beside it, else adapter_config.json."""
    config = adapter / "tuitune.toml"
    if config.exists():
        from tuitune.config import load_config

        return load_config(config).model.name
    try:
        data = json.loads((adapter / "adapter_config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise TuituneError(f"{adapter / 'adapter_config.json'} cannot be read ({exc}). Re-save the adapter "
                           "with PEFT's save_pretrained.") from None
    base = data.get("base_model_name_or_path")
    if not base:
        raise TuituneError(f"{adapter / 'adapter_config.json'} does not say which base model it belongs to "
                           "(base_model_name_or_path is empty). Set it to the base model's folder or hub id.")
    return base


def _adapter_method(adapter: Path) -> str:
    config = adapter / "tuitune.toml"
    if config.exists():
        from tuitune.config import load_config

        return "qlora" if load_config(config).model.method == "qlora" else "lora"
    return "lora"
