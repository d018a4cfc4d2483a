"""Before a run starts: whether it fits the GPU the trainer will use, and whether its data path exists.

The GPU fit resolves `auto` through tuitune.plan against the hardware snapshot, exactly as the trainer
resolves it against the devices torch sees, then asks the estimator (tuitune.fit) about GPU 0, the
device the trainer trains on.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from tuitune import catalog, fit
from tuitune.checkpointing_policy import estimate_mode
from tuitune.config import Config
from tuitune.data.hub import looks_like_hub_name
from tuitune.errors import TuituneError
from tuitune.hardware import HardwareSnapshot
from tuitune.plan import DeviceFacts, Plan, bnb_installed, facts_from_snapshot, resolve_plan


@dataclass(frozen=True)
class FitCheck:
    """Whether the config fits the trainer's GPU: `refusal` is None when the run may start."""

    summary: str
    refusal: str | None


def check_fit(config: Config, snapshot: HardwareSnapshot) -> FitCheck:
    """The plan's estimate against GPU 0's free memory (no limit when the plan trains on the CPU)."""
    try:
        plan = resolve_plan(config, facts_from_snapshot(snapshot))
    except TuituneError as exc:
        return FitCheck(f"cannot train here: {exc.message}", exc.message)
    if plan.device == "cpu":
        return FitCheck("CPU training: no GPU memory limit", None)
    free = snapshot.gpus[0].memory_free_gb
    if free is None:
        return FitCheck(f"fit unknown: {plan.device_name} does not report its free memory", None)
    spec = catalog.get_model(config.model.name)
    if spec is None:
        return FitCheck(f"fit unknown: {config.model.name} is not in the catalog ({free:.1f} GB free)", None)
    estimate = planned_estimate(config, spec, plan)
    status = fit.fit_status(estimate.total_gb, free)
    auto = " (auto)" if plan.checkpointing_reason else ""
    text = (f"{plan.method}, {memory_policy(plan)}{auto}: needs {estimate.total_gb:.1f} GB of "
            f"{free:.1f} GB free ({status})")
    if status == "does not fit":
        return FitCheck(text, f"the run does not fit the GPU: {plan.method} {spec.name} at batch "
                              f"{config.training.batch_size} x {config.model.max_seq_length} tokens needs about "
                              f"{estimate.total_gb:.1f} GB and {free:.1f} GB is free. Lower the batch size or "
                              "max_seq_length, pick qlora, or set training.gradient_checkpointing to auto or offloaded.")
    return FitCheck(text, None)


def planned_estimate(config: Config, spec: catalog.ModelSpec, plan: Plan) -> fit.FitEstimate:
    """The estimator's figure for the run as planned: its method, optimizer, checkpointing mode, CUDA
    graphs and kept dequantized weights."""
    return estimate_mode(config, spec, plan.method, plan.optimizer, plan.checkpointing, plan.cuda_graphs,
                         plan.dequantize_once)


def memory_policy(plan: Plan) -> str:
    """How the plan trades memory for speed, in words: "none checkpointing, base weights dequantized once"."""
    text = f"{plan.checkpointing} checkpointing"
    text += " with CUDA graphs" if plan.cuda_graphs else ""
    return text + (", base weights dequantized once" if plan.dequantize_once else "")


def gpu_plan(config: Config, free_gb: float | None = None) -> Plan:
    """The plan the trainer would make for this config on a CUDA GPU (planning for a GPU not at hand),
    with `free_gb` of it free when given (then `auto` resolves against that budget, as in a run)."""
    on_gpu = replace(config, training=replace(config.training, device="cuda"))
    return resolve_plan(on_gpu, DeviceFacts(True, "GPU", bf16=True, bnb_optimizers=bnb_installed(), free_gb=free_gb))


def planned_fit_for_model(config: Config, spec: catalog.ModelSpec, model: str, method: str,
                          free_gb: float) -> tuple[Plan, fit.FitEstimate]:
    """What the trainer would plan for another model (`model`: its catalog name or local path, `spec`
    its shapes) and method in `free_gb` GB, the rest of the config as it is, and that plan's estimate
    (the Models screen's rows)."""
    other = replace(config, model=replace(config.model, name=model, method=method))
    plan = gpu_plan(other, free_gb)
    return plan, planned_estimate(other, spec, plan)


def data_path_problems(config: Config) -> list[str]:
    """A dataset path that is neither a file or folder here nor a hub name (`owner/name`)."""
    path = config.data.path
    if not path or Path(path).expanduser().exists() or looks_like_hub_name(path):
        return []
    return [f"data.path {path} does not exist; pick a file on the Dataset screen or fix the path"]
