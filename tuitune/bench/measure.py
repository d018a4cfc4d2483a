"""One bench process: load a checkpoint one way (stock or tuitune), train on random tokens, measure.

Run as `python -m tuitune.bench.measure JOB.json RESULT.json`. Each (batch, seq) point gets its own
peak-memory window; the first `warmup` steps of a point are left out of its timing. Everything
here imports torch, so it only ever runs in its own process.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from tuitune.quick_exit import freeze_at_exit

GIB = 1024**3


@dataclass
class Job:
    checkpoint: str
    vocab: int
    path: str = "hf"  # "hf": transformers + PEFT + bitsandbytes stock path; "tuitune": plus kernels
    method: str = "qlora"
    rank: int = 16
    points: list = field(default_factory=lambda: [[2, 2048, 5, 2]])  # [batch, seq, steps, warmup]
    seed: int = 0
    checkpointing: str = "standard"
    device: str = "auto"
    shape: str = ""  # when set, build the shape's checkpoint first if it is not cached yet
    profile_steps: int = 0  # when > 0, profile this many more steps of the first point (step_profile)
    memory_cap_gb: float = 0.0  # when > 0, cap this process's GPU memory (set_per_process_memory_fraction)
    memory_trace: bool = False  # trace one more step of the first point: what is alive at its peak (memory_peak)
    cuda_graphs: bool = False  # tuitune's path: replay checkpointed layers as CUDA graphs (layer_graphs)
    dequantized: bool = False  # tuitune's path: keep the 4-bit base weights dequantized (dequantized_weights)
    autocast: bool = False  # run each forward under bf16 autocast, as the Hugging Face Trainer does with bf16=True


def device_type(name: str) -> str:
    """"cuda" or "cpu": where a run asked to run on ``name`` ("auto", "cuda" or "cpu") runs."""
    import torch

    if name == "cpu" or (name == "auto" and not torch.cuda.is_available()):
        return "cpu"
    return "cuda"


def _device(job: Job):
    import torch

    return torch.device(device_type(job.device))


def _nvml_used_gb() -> float | None:
    """Device memory in use (all processes) before this process touches CUDA."""
    try:
        import pynvml

        pynvml.nvmlInit()
        visible = os.environ.get("CUDA_VISIBLE_DEVICES", "0").split(",")[0].strip() or "0"
        handle = (pynvml.nvmlDeviceGetHandleByIndex(int(visible)) if visible.isdigit()
                  else pynvml.nvmlDeviceGetHandleByUUID(visible))
        return pynvml.nvmlDeviceGetMemoryInfo(handle).used / GIB
    except Exception:
        return None


def load_model(job: Job, device):
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    on_gpu = device.type == "cuda"
    dtype = torch.bfloat16 if on_gpu else torch.float32
    kwargs = {"dtype": dtype, "attn_implementation": "sdpa"}
    if job.method == "qlora":
        from transformers import BitsAndBytesConfig

        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=dtype)
    model = AutoModelForCausalLM.from_pretrained(job.checkpoint, device_map={"": device}, **kwargs)
    model.config.use_cache = False
    for param in model.parameters():
        param.requires_grad_(False)
    lora = LoraConfig(r=job.rank, lora_alpha=job.rank, lora_dropout=0.0, bias="none", task_type="CAUSAL_LM",
                      target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"])
    report = {"kernels": "not used", "checkpointing": "none"}
    if job.checkpointing != "none" and job.path == "hf":
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.enable_input_require_grads()
        report["checkpointing"] = "hf"
    model = get_peft_model(model, lora)
    if job.path == "tuitune":
        report.update(_apply_tuitune(model, job.checkpointing, job.cuda_graphs, job.dequantized))
    return model, report


def _apply_tuitune(model, mode: str, cuda_graphs: bool = False, dequantized: bool = False) -> dict:
    """tuitune's patcher and checkpointing, when the installed tree has them; say what happened."""
    report = {}
    try:
        from tuitune.trainer.patching import apply_kernels
    except ImportError as exc:
        report["kernels"] = f"unavailable ({exc})"
    else:
        report["kernels"] = _describe_patch(apply_kernels(model))
    if dequantized:
        import torch

        from tuitune.trainer.dequantized_weights import keep_base_weights_dequantized

        report["dequantized"] = keep_base_weights_dequantized(model, torch.bfloat16)
    if mode == "none" and not cuda_graphs:
        return report
    try:
        from tuitune.trainer.activation_checkpointing import enable_checkpointing
    except ImportError as exc:
        if mode == "none":
            report["checkpointing"] = f"none (CUDA graphs unavailable: {exc})"
            return report
        model.base_model.model.gradient_checkpointing_enable(
            gradient_checkpointing_kwargs={"use_reentrant": False})
        model.base_model.model.enable_input_require_grads()
        report["checkpointing"] = f"hf (tuitune's unavailable: {exc})"
    else:
        result = enable_checkpointing(model, mode, cuda_graphs=cuda_graphs)
        report["checkpointing"] = f"tuitune {mode}: {_describe(result)}"
        if result == "offloaded":
            from tuitune.trainer.embedding_offload import offload_input_embeddings
            from tuitune.trainer.head_offload import offload_output_head

            report["input_embeddings"] = offload_input_embeddings(model)
            report["output_head"] = offload_output_head(model)
            from tuitune.pool_lending import loss_borrows_the_pool
            from tuitune.trainer.loss_in_graph_pool import lend_graph_pool_to_loss

            if cuda_graphs and loss_borrows_the_pool():
                report["loss_memory"] = lend_graph_pool_to_loss(model)
    return report


def _describe_patch(result) -> str:
    """'applied (what was replaced)' or 'not applied: why', from the patcher's report."""
    if getattr(result, "supported", True) is False:
        return f"not applied: {getattr(result, 'reason', None) or _describe(result)}"
    replaced = getattr(result, "replaced", None)
    if isinstance(replaced, dict):
        if not replaced:
            return f"not applied: {getattr(result, 'reason', None) or 'nothing replaced'}"
        return "applied (" + ", ".join(f"{k} {v}" for k, v in replaced.items()) + ")"
    return f"applied: {_describe(result)}"


def _describe(result) -> str:
    if result is None:
        return "ok"
    text = repr(result)
    return text if len(text) <= 300 else text[:297] + "..."


def _optimizer(model, device, path: str = "hf"):
    """bitsandbytes' 8-bit AdamW; tuitune's path runs the same update without a host wait per tensor."""
    import torch

    params = [p for p in model.parameters() if p.requires_grad]
    try:
        import bitsandbytes as bnb

        if path == "tuitune":
            from tuitune.trainer.optimizer import adamw_8bit

            return adamw_8bit(params, lr=2e-4, weight_decay=0.01), "adamw_8bit (no per-tensor sync)"
        return bnb.optim.AdamW8bit(params, lr=2e-4, weight_decay=0.01), "adamw_8bit"
    except Exception:  # bitsandbytes missing or without support for this device
        return torch.optim.AdamW(params, lr=2e-4, weight_decay=0.01), "adamw_torch"


def train_step(model, optimizer, ids, autocast: bool = False):
    """One optimizer step on ``ids`` (labels = inputs); returns the loss tensor. ``autocast``: the
    forward runs under bf16 autocast and the backward outside it, as in the Hugging Face Trainer
    (PEFT's float32 adapters then run their matmuls in bf16)."""
    import torch

    with torch.autocast(ids.device.type, dtype=torch.bfloat16, enabled=autocast):
        loss = model(input_ids=ids, labels=ids).loss
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return loss


def profile_point(model, optimizer, device, vocab: int, batch: int, seq: int, steps: int, seed: int,
                  rank: int, autocast: bool = False) -> dict:
    """The kernel-time breakdown of ``steps`` more steps (see step_profile)."""
    import torch

    from tuitune.trainer.profile_windows import profile_steps

    generator = torch.Generator().manual_seed(seed + 1)
    ids = torch.randint(0, vocab, (batch, seq), generator=generator).to(device)
    return profile_steps(lambda: train_step(model, optimizer, ids, autocast), steps, rank_max=max(rank, 64),
                         vocab=vocab, device=torch.device(device).type)


def memory_trace_point(model, optimizer, device, vocab: int, batch: int, seq: int, seed: int,
                       autocast: bool = False, pool=None) -> dict:
    """What is alive at the peak of one more step, and where it was allocated (memory_peak); ``pool``:
    a memory pool's id whose allocations are also left out of a second peak (``outside_pool_peak_gb``)."""
    import torch

    from tuitune.bench.memory_peak import trace_step

    generator = torch.Generator().manual_seed(seed + 2)
    ids = torch.randint(0, vocab, (batch, seq), generator=generator).to(device)
    return trace_step(lambda: train_step(model, optimizer, ids, autocast), pool=pool)


def run_point(model, optimizer, device, vocab: int, batch: int, seq: int, steps: int, warmup: int,
              seed: int, autocast: bool = False) -> dict:
    import torch

    on_gpu = device.type == "cuda"
    generator = torch.Generator().manual_seed(seed)
    if on_gpu:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        static_gb = torch.cuda.memory_allocated() / GIB
    losses, timed_tokens, timed_seconds, step_times = [], 0, 0.0, []
    warm_peak = 0.0
    model.train()
    for step in range(steps):
        ids = torch.randint(0, vocab, (batch, seq), generator=generator).to(device)
        if on_gpu:
            torch.cuda.synchronize()
        start = time.perf_counter()
        loss = train_step(model, optimizer, ids, autocast)
        if on_gpu:
            torch.cuda.synchronize()
        elapsed = time.perf_counter() - start
        losses.append(float(loss.detach()))
        if on_gpu and step == warmup - 1:
            # From here the timed window: one-time allocations of the warm-up (a CUDA graph's capture
            # runs beside the eager allocations it replaces) are not part of the steady state.
            warm_peak = torch.cuda.max_memory_allocated()
            torch.cuda.reset_peak_memory_stats()
        if step >= warmup:
            timed_tokens += batch * seq
            timed_seconds += elapsed
            step_times.append(elapsed)
    point = {
        "batch": batch, "seq": seq, "steps": steps, "warmup": warmup,
        "tokens_per_s": timed_tokens / timed_seconds if timed_seconds else None,
        "step_s": timed_seconds / (steps - warmup) if steps > warmup else None,
        "losses": losses,
        "step_times_s": step_times,
    }
    if on_gpu:
        free, total = torch.cuda.mem_get_info()
        point.update({
            "static_allocated_gb": static_gb,
            "peak_allocated_gb": max(warm_peak, torch.cuda.max_memory_allocated()) / GIB,
            "timed_peak_allocated_gb": torch.cuda.max_memory_allocated() / GIB,
            "peak_reserved_gb": torch.cuda.max_memory_reserved() / GIB,
            "reserved_gb": torch.cuda.memory_reserved() / GIB,
            "device_used_gb": (total - free) / GIB,
        })
    return point


def run(job: Job) -> dict:
    used_before = _nvml_used_gb()
    import torch

    device = _device(job)
    if job.shape:
        from tuitune.bench.shapes import build_checkpoint, get_shape

        job.checkpoint = str(build_checkpoint(get_shape(job.shape)))
        if device.type == "cuda":
            torch.cuda.empty_cache()
    torch.manual_seed(job.seed)
    if job.memory_cap_gb and device.type == "cuda":
        index = torch.cuda.current_device()
        total = torch.cuda.get_device_properties(index).total_memory
        torch.cuda.set_per_process_memory_fraction(min(1.0, job.memory_cap_gb * GIB / total), index)
    t0 = time.perf_counter()
    model, report = load_model(job, device)
    load_s = time.perf_counter() - t0
    optimizer, optimizer_name = _optimizer(model, device, job.path)
    if job.path == "tuitune":  # as `tuitune train` does (collector_freeze); the stock path keeps Python's default
        from tuitune.trainer.collector_freeze import freeze_what_is_loaded

        freeze_what_is_loaded()
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    result = {
        "path": job.path, "method": job.method, "rank": job.rank, "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
        "torch": torch.__version__, "optimizer": optimizer_name, "trainable_params": trainable,
        "load_s": load_s, **report, "autocast": "bf16 forward" if job.autocast else "off", "points": [],
    }
    for batch, seq, steps, warmup in job.points:
        try:
            point = run_point(model, optimizer, device, job.vocab, batch, seq, steps, warmup, job.seed, job.autocast)
        except torch.OutOfMemoryError:
            point = {"batch": batch, "seq": seq, "error": "out of memory"}
            optimizer.zero_grad(set_to_none=True)
        if job.profile_steps and device.type == "cuda" and "error" not in point and not result.get("profile"):
            try:
                result["profile"] = profile_point(model, optimizer, device, job.vocab, batch, seq,
                                                  job.profile_steps, job.seed, job.rank, job.autocast)
            except Exception as exc:  # a profiler failure must not lose the timed numbers
                result["profile_error"] = repr(exc)
        if job.memory_trace and device.type == "cuda" and "error" not in point and "memory_peak" not in result:
            try:
                result["memory_peak"] = memory_trace_point(model, optimizer, device, job.vocab, batch, seq, job.seed,
                                                           job.autocast)
            except Exception as exc:  # nor a failed trace
                result["memory_peak_error"] = f"failed: {exc!r}"
        elif job.memory_trace and device.type != "cuda":
            result["memory_peak_error"] = "not run: the allocator's history is CUDA's, and this ran on the CPU"
        if device.type == "cuda" and "reserved_gb" in point and used_before is not None:
            # CUDA context and library workspaces: device memory this process holds beyond the allocator's.
            point["context_gb"] = point["device_used_gb"] - used_before - point["reserved_gb"]
            point["measured_peak_gb"] = point["peak_reserved_gb"] + point["context_gb"]
        result["points"].append(point)
    if job.cuda_graphs:
        from tuitune.trainer.activation_checkpointing import layer_graphs

        graphs = layer_graphs(model)
        result["cuda_graphs"] = graphs.describe() if graphs is not None else "not applied"
        if device.type == "cuda" and graphs is not None:
            result["graph_pool_gb"] = graphs.pool_gb()  # runner.peak_gb adds it to the timed peak
        if device.type == "cuda" and graphs is not None and graphs.lends() and result["points"] \
                and "error" not in result["points"][0]:
            # Tensors lent from the pool count as allocated and the pool counts whole: the peak of what
            # lies outside the pool, from one traced step, plus the pool.
            batch, seq = job.points[0][:2]
            traced = memory_trace_point(model, optimizer, device, job.vocab, batch, seq, job.seed, job.autocast,
                                        pool=graphs.pool)
            result["graph_outside_pool_peak_gb"] = traced["outside_pool_peak_gb"]
    return result


def main(argv: list[str]) -> int:
    job_path, result_path = Path(argv[0]), Path(argv[1])
    job = Job(**json.loads(job_path.read_text()))
    result = run(job)
    result_path.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    freeze_at_exit()
    sys.exit(main(sys.argv[1:]))
