"""Faults during training turned into a stop that loses nothing and a `failed` event that says what
to change: out of GPU memory (a checkpoint of the last finished step, and settings that fit by
tuitune's VRAM estimator), a loss that is not a number (the last good checkpoint kept, likely
causes named), and a full disk (the previous checkpoint intact, the partial one removed).

The recipe wraps `trainer.train()` in `guard(...)` and calls `raise_if_faulted(...)` after it;
the events callback (tuitune.trainer.callback) notices bad losses and signals while training runs.
"""

from __future__ import annotations

import contextlib
import errno
import math
import shutil
from pathlib import Path
from typing import Any, Iterator

from tuitune import catalog, fit
from tuitune.config import Config
from tuitune.errors import TuituneError
from tuitune.plan import Plan
from tuitune.runs import RunDir, checkpoint_step

OOM, NAN, DISK_FULL = "oom", "nan", "disk_full"
_DISK_FULL_ERRNOS = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)}


class TrainingFault(TuituneError):
    """Training stopped because of a fault. `kind` is oom, nan or disk_full; `checkpoint` the
    newest complete checkpoint (None when there is none)."""

    def __init__(self, kind: str, message: str, advice: str, checkpoint: str | None = None):
        super().__init__(message)
        self.kind, self.advice, self.checkpoint = kind, advice, checkpoint

    def event_fields(self) -> dict[str, Any]:
        """The fields of the run's `failed` event."""
        return {"kind": self.kind, "message": self.message, "advice": self.advice,
                "checkpoint": self.checkpoint}


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def is_out_of_memory(exc: BaseException) -> bool:
    return any(type(e).__name__ == "OutOfMemoryError" or "out of memory" in str(e).lower()
               for e in _chain(exc))


def is_disk_full(exc: BaseException) -> bool:
    return any((isinstance(e, OSError) and e.errno in _DISK_FULL_ERRNOS)
               or "no space left on device" in str(e).lower() for e in _chain(exc))


def gpu_total_gb() -> float | None:
    """Memory of the GPU the trainer uses (None without one)."""
    import torch

    if not torch.cuda.is_available():
        return None
    return torch.cuda.get_device_properties(0).total_memory / fit.GIB


def _gb(value: float) -> str:
    return f"{value:.2f} GB" if value < 10 else f"{value:.1f} GB"


def fitting_settings(spec: catalog.ModelSpec, config: Config, plan: Plan,
                     total_gb: float) -> tuple[float, list[tuple[str, float]]]:
    """The estimate of the current settings, and up to three sets of changes that fit `total_gb`
    by tuitune's estimator, as `--set` text with their estimate: first what trains the same
    examples with less memory (smaller batches with more accumulation, lighter checkpointing),
    then QLoRA, then shorter sequences."""
    t = config.training
    fused = config.training.use_kernels and fit.kernels_supported(spec)
    lighter = ("none", "standard", "offloaded")  # each keeps fewer activations on the GPU
    current = plan.checkpointing if plan.checkpointing in lighter else "standard"
    examples = t.batch_size * t.gradient_accumulation_steps

    def need(method: str, batch: int, seq: int, ckpt: str) -> float:
        return fit.estimate(spec, method, batch=batch, seq=seq, rank=config.lora.r,
                            checkpointing=ckpt, fused_loss=fused,
                            target_modules=config.lora.target_modules,
                            optimizer=plan.optimizer).total_gb

    def same_examples(method: str, seq: int) -> tuple[list[str], float] | None:
        """The least change of batch split and checkpointing that fits."""
        for ckpt in lighter[lighter.index(current):]:
            for batch in range(t.batch_size, 0, -1):
                if examples % batch:
                    continue
                gb = need(method, batch, seq, ckpt)
                if fit.fit_status(gb, total_gb) == "fits":
                    changes = []
                    if batch != t.batch_size:
                        changes += [f"training.batch_size={batch}",
                                    f"training.gradient_accumulation_steps={examples // batch}"]
                    if ckpt != current:
                        changes.append(f"training.gradient_checkpointing={ckpt}")
                    return changes, gb
        return None

    seq = config.model.max_seq_length
    now = need(plan.method, t.batch_size, seq, current)
    options: list[tuple[str, float]] = []
    found = same_examples(plan.method, seq)
    if found and found[0]:
        options.append((" ".join(found[0]), found[1]))
    if not found:  # nothing keeps these rows whole with this method: QLoRA, or shorter rows
        if plan.method != "qlora":
            qlora = same_examples("qlora", seq)
            if qlora:
                options.append((" ".join(["model.method=qlora"] + qlora[0]), qlora[1]))
        methods = [plan.method] + (["qlora"] if plan.method != "qlora" else [])
        for method in methods:
            shorter, fitted = seq // 2, None
            while shorter >= 64 and fitted is None:
                fitted = same_examples(method, shorter)
                shorter = shorter if fitted else shorter // 2
            if fitted:
                switch = [f"model.method={method}"] if method != plan.method else []
                options.append((" ".join(switch + [f"model.max_seq_length={shorter}"] + fitted[0]),
                                fitted[1]))
                break
    return now, options


def oom_advice(config: Config, plan: Plan, model_folder: Path | None, total_gb: float | None) -> str:
    spec = catalog.get_model(config.model.name)
    if spec is None and model_folder is not None:
        spec = catalog.spec_from_config(Path(model_folder), name=config.model.name)
    generic = ("Lower training.batch_size (raising training.gradient_accumulation_steps keeps the "
               "examples per step) or model.max_seq_length, set training.gradient_checkpointing = "
               "\"offloaded\", or use model.method = \"qlora\".")
    if spec is None or not spec.shape_known or not total_gb:
        return generic + " `tuitune models --vram GIB` shows what fits."
    now, options = fitting_settings(spec, config, plan, total_gb)
    where = f"the GPU's {_gb(total_gb)}"
    head = (f"tuitune's estimate for these settings is {_gb(now)} against {where}. ")
    if not options:
        return head + (f"No setting of this model fits by the estimate; `tuitune models --vram "
                       f"{total_gb:.0f}` lists the models that do.")
    listed = "; ".join(f"--set {' --set '.join(text.split())} (about {_gb(gb)})"
                       for text, gb in options)
    return head + f"Settings that fit: {listed}."


def nan_advice(config: Config, plan: Plan) -> str:
    t = config.training
    causes = []
    if t.learning_rate >= 5e-4:
        causes.append(f"the learning rate {t.learning_rate:g} is high for LoRA: try "
                      f"training.learning_rate={t.learning_rate / 4:g}")
    if plan.dtype == "float16":
        causes.append("float16 overflows easily: use model.dtype=bfloat16 where the GPU supports "
                      "it, or float32")
    if t.max_grad_norm == 0:
        causes.append("gradient clipping is off: set training.max_grad_norm=0.3")
    if t.warmup_steps == 0:
        causes.append("no warmup: set training.warmup_steps=5 or more")
    causes.append("a batch whose rows have no trained token (all masked) divides zero by zero: "
                  "`tuitune data inspect` lists rows with nothing to learn")
    return "Likely causes: " + "; ".join(causes) + "."


def _resume_hint(run: RunDir, checkpoint: Path | None, flags: str = "") -> str:
    if checkpoint is None:
        return f"Start the run again{' with ' + flags.strip() if flags else ''}."
    return f"Resume with `tuitune train --resume {run.name}{flags}`."


@contextlib.contextmanager
def guard(trainer: Any, callback: Any, config: Config, plan: Plan, run: RunDir,
          model_folder: Path | None = None) -> Iterator[None]:
    """Turn an out-of-memory error or a full disk inside the block into a TrainingFault, after
    saving what can be saved (out of memory) or removing what was half written (full disk)."""
    try:
        yield
    except BaseException as exc:  # noqa: BLE001 - re-raised unless it is one of ours
        if is_disk_full(exc):
            raise _after_disk_full(exc, trainer, run) from None
        if is_out_of_memory(exc):
            raise _after_oom(exc, trainer, callback, config, plan, run, model_folder) from None
        raise
    finally:
        callback.restore_signals()


def _after_oom(exc, trainer, callback, config, plan, run, model_folder) -> TrainingFault:
    import torch

    step = trainer.state.global_step
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    checkpoint = run.last_checkpoint()
    saved_note = ""
    if step > 0 and (checkpoint is None or checkpoint_step(checkpoint) < step):
        try:
            callback.save_checkpoint_now(trainer.state)
            checkpoint = run.last_checkpoint()
            saved_note = f" The finished steps were saved: {checkpoint}."
        except Exception as save_error:  # noqa: BLE001 - the OOM is what the user must hear of
            saved_note = (f" Saving a checkpoint after it failed too ({type(save_error).__name__}: "
                          f"{save_error}).")
    elif checkpoint is not None:
        saved_note = f" The newest checkpoint is {checkpoint}."
    detail = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
    message = f"The GPU ran out of memory in step {step + 1} ({detail}).{saved_note}"
    advice = oom_advice(config, plan, model_folder, gpu_total_gb())
    advice += " " + _resume_hint(run, checkpoint, " --set ...")
    return TrainingFault(OOM, message, advice, str(checkpoint) if checkpoint else None)


def _after_disk_full(exc, trainer, run: RunDir) -> TrainingFault:
    for partial in (run.path / ".hf").glob("checkpoint-*"):
        shutil.rmtree(partial, ignore_errors=True)
    for folder in run.incomplete_checkpoints():
        shutil.rmtree(folder, ignore_errors=True)
    checkpoint = run.last_checkpoint()
    try:
        free = shutil.disk_usage(run.path).free
        free_text = f"{free / fit.GIB:.2f} GB is free there now"
    except OSError:
        free_text = "its free space could not be read"
    kept = (f"The previous checkpoint {checkpoint} is intact." if checkpoint is not None
            else "No earlier checkpoint exists.")
    message = (f"The disk filled up while writing the run at step {trainer.state.global_step} "
               f"({exc}). The partial checkpoint was removed. {kept}")
    advice = f"Free space on the disk of {run.path} ({free_text}). " + _resume_hint(run, checkpoint)
    return TrainingFault(DISK_FULL, message, advice, str(checkpoint) if checkpoint else None)


def raise_if_faulted(callback: Any, config: Config, plan: Plan, run: RunDir) -> None:
    """After `trainer.train()` returns: a stop the callback made because of a fault becomes a
    TrainingFault (so no adapter is saved from spoilt weights)."""
    fault = getattr(callback, "fault", None)
    if fault is None:
        return
    checkpoint = run.last_checkpoint()
    kept = (f"The last good checkpoint, {checkpoint}, is kept." if checkpoint is not None else
            "No checkpoint was saved before it (training.save_steps > 0 keeps some).")
    value = fault.get("value")
    shown = "not a number" if value is None or math.isnan(value) else f"{value}"
    message = (f"The {fault.get('what', 'loss')} became {shown} at step {fault.get('step')}; "
               f"training stopped before saving the spoilt weights. {kept}")
    advice = nan_advice(config, plan) + " " + _resume_hint(run, checkpoint, " --set ...")
    raise TrainingFault(NAN, message, advice, str(checkpoint) if checkpoint else None)
