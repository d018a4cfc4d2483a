"""What the hardware allows: device, method, dtype, optimizer, checkpointing and CUDA graphs, resolved
from `auto`.

Pure decisions over `DeviceFacts`, so the trainer (which probes the facts with torch, in
trainer/device.py) and the form's fit check (which reads them from the hardware snapshot) resolve
`auto` the same way.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass

from tuitune import catalog, dequantize_policy
from tuitune.checkpointing_policy import choose_checkpointing, estimate_mode
from tuitune.config import Config
from tuitune.errors import TuituneError
from tuitune.graphs_policy import GraphsChoice, choose_cuda_graphs, graphs_first
from tuitune.hardware import HardwareSnapshot

# tuitune's optimizer names (config choices, fit.OPTIMIZERS) -> transformers' `optim` names
HF_OPTIMIZERS = {
    "adamw_8bit": "adamw_bnb_8bit",
    "paged_adamw_8bit": "paged_adamw_8bit",
    "adamw_torch": "adamw_torch",
    "sgd": "sgd",
}
BF16_MIN_CAPABILITY = 8.0  # Ampere and later compute in bfloat16


@dataclass(frozen=True)
class DeviceFacts:
    """What the machine offers the trainer (it trains on the first visible CUDA device)."""

    has_cuda: bool
    gpu_name: str = ""
    bf16: bool = False
    bnb_optimizers: bool = False  # bitsandbytes' 8-bit optimizers can be used
    cpu_count: int | None = None
    free_gb: float | None = None  # free memory of the training GPU, when known


@dataclass(frozen=True)
class Plan:
    device: str          # "cuda" | "cpu"
    device_name: str     # e.g. "NVIDIA H200" or "CPU (2 cores)"
    method: str          # "lora" | "qlora"
    dtype: str           # "bfloat16" | "float16" | "float32"
    optimizer: str       # one of HF_OPTIMIZERS' keys
    checkpointing: str   # "none" | "standard" | "offloaded"
    notes: tuple[str, ...] = ()
    checkpointing_reason: str = ""  # why `auto` picked `checkpointing` (empty when it was asked for)
    cuda_graphs: bool = False  # replay the recomputed layers as CUDA graphs (tuitune.graphs_policy)
    cuda_graphs_reason: str = ""
    dequantize_once: bool = False  # keep the 4-bit base weights dequantized (tuitune.dequantize_policy)
    dequantize_reason: str = ""

    @property
    def hf_optimizer(self) -> str:
        """The transformers `optim` name of the optimizer."""
        return HF_OPTIMIZERS[self.optimizer]


def resolve_plan(config: Config, facts: DeviceFacts) -> Plan:
    """Resolve every `auto` of the config against the machine; TuituneError for impossible choices."""
    notes: list[str] = []
    wanted = config.training.device
    if wanted == "cuda" and not facts.has_cuda:
        raise TuituneError("training.device is cuda but no CUDA GPU is visible (torch.cuda.is_available() "
                           "is False). Set training.device = \"auto\" or \"cpu\", or check the driver with "
                           "`tuitune gpu`.")
    device = "cuda" if (wanted == "cuda" or (wanted == "auto" and facts.has_cuda)) else "cpu"
    if device == "cuda":
        device_name = facts.gpu_name
    else:
        device_name = f"CPU ({facts.cpu_count} cores)"
        notes.append("No CUDA GPU: training on the CPU. Expect seconds per step; LoRA in float32 is used "
                     "unless you ask for QLoRA.")

    method = config.model.method
    if method == "auto":
        method = "qlora" if device == "cuda" else "lora"

    dtype = config.model.dtype
    if dtype == "auto":
        if device == "cuda":
            dtype = "bfloat16" if facts.bf16 else "float16"
        else:
            dtype = "float32"
    elif device == "cpu" and dtype == "float16":
        raise TuituneError("model.dtype float16 is not usable for training on the CPU. "
                           "Use auto, float32 or bfloat16.")

    optimizer = config.training.optimizer
    if optimizer == "auto":
        optimizer = "adamw_8bit" if facts.bnb_optimizers else "adamw_torch"
    if optimizer == "paged_adamw_8bit" and device == "cpu":
        notes.append("Paged optimizers need a GPU: using 8-bit AdamW instead.")
        optimizer = "adamw_8bit"
    if optimizer == "adamw_8bit" and not facts.bnb_optimizers:
        notes.append("bitsandbytes 8-bit AdamW is not available here: using torch AdamW.")
        optimizer = "adamw_torch"
    checkpointing = config.training.gradient_checkpointing
    if device == "cpu" and checkpointing not in ("none", "auto"):
        # RAM is plentiful next to CPU time: recomputing activations would cost ~30% more per step.
        notes.append(f"Gradient checkpointing '{checkpointing}' is off on the CPU (it only saves memory).")
    reason, first, picked_dequantized = "", False, None
    if device == "cpu":
        checkpointing = "none"
    elif checkpointing == "auto":
        first = graphs_first(config, device) and facts.free_gb is not None
        offer = dequantize_policy.offered_to_auto(config, device=device, method=method)
        kept = config.training.dequantize_once == "on" and not dequantize_policy.why_not(
            config, device=device, method=method)
        choice = choose_checkpointing(config, method, optimizer, facts.free_gb, graphs_first=first,
                                      dequantized="offer" if offer else "on" if kept else "off")
        checkpointing, reason = choice.mode, choice.reason
        picked_dequantized = choice.dequantized if offer else None
    if reason and first:
        graphs = GraphsChoice(choice.cuda_graphs, ("on" if choice.cuda_graphs else "off") +
                              " (chosen with the checkpointing mode)")
    else:
        graphs = choose_cuda_graphs(config, device=device, method=method, optimizer=optimizer,
                                    checkpointing=checkpointing, free_gb=facts.free_gb)
    dequantized = dequantize_policy.choose_dequantize(
        config, device=device, method=method, checkpointing=checkpointing, free_gb=facts.free_gb,
        need_gb=_need_dequantized(config, method, optimizer, checkpointing, graphs.on),
        picked_by_auto=picked_dequantized)
    return Plan(device, device_name, method, dtype, optimizer, checkpointing, tuple(notes), reason,
                graphs.on, graphs.reason, dequantized.on, dequantized.reason)


def _need_dequantized(config: Config, method: str, optimizer: str, checkpointing: str, graphs: bool) -> float | None:
    """The run's memory estimate with the base weights kept dequantized, when the model's shapes are known."""
    spec = catalog.get_model(config.model.name)
    if spec is None or not spec.shape_known:
        return None
    return estimate_mode(config, spec, method, optimizer, checkpointing, graphs, dequantized=True).total_gb


def facts_from_snapshot(snapshot: HardwareSnapshot) -> DeviceFacts:
    """The facts as NVML sees them: GPU 0 is the first CUDA device (hardware keeps CUDA's order)."""
    if not snapshot.gpus:
        return DeviceFacts(False, bnb_optimizers=bnb_installed(), cpu_count=os.cpu_count())
    gpu = snapshot.gpus[0]
    try:
        bf16 = float(gpu.compute_capability or 0) >= BF16_MIN_CAPABILITY
    except ValueError:
        bf16 = False
    return DeviceFacts(True, gpu.name, bf16, bnb_installed(), os.cpu_count(), gpu.memory_free_gb)


def bnb_installed() -> bool:
    """Whether bitsandbytes is installed (found, not imported: importing it loads CUDA libraries)."""
    return importlib.util.find_spec("bitsandbytes") is not None
