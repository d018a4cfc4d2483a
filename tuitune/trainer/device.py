"""What the hardware allows: device, method, compute dtype and optimizer, resolved from `auto`."""

from __future__ import annotations

from dataclasses import dataclass

from tuitune.config import Config
from tuitune.errors import TuituneError


@dataclass(frozen=True)
class Plan:
    device: str          # "cuda" | "cpu"
    device_name: str     # e.g. "NVIDIA H200" or "CPU (2 cores)"
    method: str          # "lora" | "qlora"
    dtype: str           # "bfloat16" | "float16" | "float32"
    optimizer: str       # a transformers `optim` name
    checkpointing: str   # "none" | "standard" | "offloaded"
    notes: tuple[str, ...] = ()


HF_OPTIMIZERS = {
    "adamw_8bit": "adamw_bnb_8bit",
    "paged_adamw_8bit": "paged_adamw_8bit",
    "adamw_torch": "adamw_torch",
    "sgd": "sgd",
}


def resolve_plan(config: Config) -> Plan:
    import os

    import torch

    notes: list[str] = []
    wanted = config.training.device
    has_cuda = torch.cuda.is_available()
    if wanted == "cuda" and not has_cuda:
        raise TuituneError("training.device is cuda but no CUDA GPU is visible (torch.cuda.is_available() "
                           "is False). Set training.device = \"auto\" or \"cpu\", or check the driver with "
                           "`tuitune gpu`.")
    device = "cuda" if (wanted == "cuda" or (wanted == "auto" and has_cuda)) else "cpu"
    if device == "cuda":
        device_name = torch.cuda.get_device_name(0)
    else:
        device_name = f"CPU ({os.cpu_count()} cores)"
        notes.append("No CUDA GPU: training on the CPU. Expect seconds per step; LoRA in float32 is used "
                     "unless you ask for QLoRA.")

    method = config.model.method
    if method == "auto":
        method = "qlora" if device == "cuda" else "lora"

    dtype = config.model.dtype
    if dtype == "auto":
        if device == "cuda":
            dtype = "bfloat16" if torch.cuda.is_bf16_supported() else "float16"
        else:
            dtype = "float32"
    elif device == "cpu" and dtype == "float16":
        raise TuituneError("model.dtype float16 is not usable for training on the CPU. "
                           "Use auto, float32 or bfloat16.")

    optimizer = config.training.optimizer
    if optimizer == "auto":
        optimizer = "adamw_8bit" if _bnb_optimizers_work() else "adamw_torch"
    if optimizer == "paged_adamw_8bit" and device == "cpu":
        notes.append("Paged optimizers need a GPU: using 8-bit AdamW instead.")
        optimizer = "adamw_8bit"
    if optimizer == "adamw_8bit" and not _bnb_optimizers_work():
        notes.append("bitsandbytes 8-bit AdamW is not available here: using torch AdamW.")
        optimizer = "adamw_torch"
    checkpointing = config.training.gradient_checkpointing
    if device == "cpu" and checkpointing != "none":
        # RAM is plentiful next to CPU time: recomputing activations would cost ~30% more per step.
        notes.append(f"Gradient checkpointing '{checkpointing}' is off on the CPU (it only saves memory).")
        checkpointing = "none"
    return Plan(device, device_name, method, dtype, HF_OPTIMIZERS[optimizer], checkpointing, tuple(notes))


def _bnb_optimizers_work() -> bool:
    try:
        import bitsandbytes  # noqa: F401
    except Exception:
        return False
    return True


def torch_dtype(name: str):
    import torch

    return {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}[name]
