"""The part every recipe shares once its TRL trainer is built: the optimizer without host waits,
announce, train under the fault guard, evaluate, keep the best, save the adapter, summarise.

The SFT, preference (DPO, ORPO) and continued-pretraining recipes call `train_and_save`; each builds its
own data, model and trainer first, so the recipe files still read top to bottom.
"""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from tuitune import events as ev
from tuitune.config import Config, to_toml
from tuitune.plan import Plan
from tuitune.runs import RunDir
from tuitune.steps import planned_steps
from tuitune.trainer import collector_freeze, faults
from tuitune.trainer.event_sink import EventSink
from tuitune.trainer.model_walks import skip_per_step_model_walks

DATA_CACHE = ".data"  # the run's tokenized training data (Arrow files), removed with .hf at the end


@dataclass
class Prepared:
    """What a recipe built before training."""

    trainer: Any
    model: Any
    tokenizer: Any
    train_set: Any
    eval_set: Any
    source_display: str
    folder: Path
    kernels_note: str
    objective: str


def train_and_save(prepared: Prepared, config: Config, plan: Plan, run: RunDir, sink: EventSink, *,
                   started: float, resume_from: str | None = None, on_trained: Callable | None = None,
                   save: Callable | None = None) -> dict:
    """Train, evaluate and save; returns the `finished` summary. `save(model, tokenizer, config, run)` writes
    the adapter (`save_adapter`); on a distributed run rank 0 writes it (RankContext.save_adapter)."""
    from tuitune.trainer.batches_ahead import BatchesAhead
    from tuitune.trainer.distributed import current

    rank = current(config)
    trainer, model = prepared.trainer, prepared.model
    if plan.device == "cuda":
        from tuitune.trainer.optimizer import use_in_trainer

        use_in_trainer(trainer)  # the same 8-bit AdamW updates, without a host wait per tensor
    skip_per_step_model_walks(trainer, rank.mode)
    BatchesAhead.install(trainer)  # the next step's batches are fetched before this step's log waits
    collector_freeze.freeze_again_after_warm_up(trainer)
    if plan.device == "cuda":
        _count_peak_outside_a_lent_pool(model)
    trainable, total = _parameter_counts(model)
    sink.emit(
        ev.STARTED, config=config.to_dict(), model=prepared.source_display, method=plan.method, dtype=plan.dtype,
        device=plan.device_name, trainable_params=trainable, total_params=total,
        max_steps=trainer.state.max_steps or planned_steps(config.training, len(prepared.train_set)),
        rows=len(prepared.train_set), eval_rows=len(prepared.eval_set) if prepared.eval_set is not None else 0,
        kernels=prepared.kernels_note, resumed_from=resume_from, objective=prepared.objective,
    )
    callback = trainer.tuitune_callback
    callback.best.patience = config.training.early_stopping_patience
    # Out of memory, a full disk or a loss that is not a number end in a TrainingFault that says what was
    # kept and what to change (tuitune.trainer.faults).
    with faults.guard(trainer, callback, config, plan, run, prepared.folder), collector_freeze.frozen():
        result = trainer.train(resume_from_checkpoint=resume_from)
    faults.raise_if_faulted(callback, config, plan, run)
    stopped = callback.stopped
    evaluated_last = callback.best.last_step == trainer.state.global_step
    if prepared.eval_set is not None and not stopped and not callback.early_stopped and not evaluated_last:
        trainer.evaluate()  # its eval event comes from the callback's on_log
    restored = _restore_best(trainer.model, callback.best, sink, rank.mode)
    if on_trained is not None:
        on_trained(trainer.model, prepared.tokenizer)
    with faults.guard(trainer, callback, config, plan, run, prepared.folder):
        adapter_dir = rank.save_adapter(trainer, prepared.tokenizer, config, run, save or save_adapter)
    if rank.is_main:  # rank 0 alone writes the run
        mark_best_adapter(trainer, adapter_dir, sink)
    peak_parts = peak_parts_of_a_lent_pool(model) if plan.device == "cuda" else None
    peak = _peak_gpu_memory_gb(model, peak_parts) if plan.device == "cuda" else None
    return {
        "final_loss": callback.last_loss, "train_loss": result.training_loss,
        "steps": trainer.state.global_step, "max_steps": trainer.state.max_steps,
        "runtime_s": time.time() - started, "adapter_path": str(adapter_dir), "stopped": stopped,
        "stop_signal": callback.stop_signal, "early_stopped": callback.early_stopped,
        "best_step": callback.best.best_step, "best_eval_loss": callback.best.best_loss,
        "adapter_from_step": restored, "objective": prepared.objective,
        "peak_gpu_memory_gb": peak, "peak_gpu_memory_parts": peak_parts,
        "tokens_seen": trainer.state.num_input_tokens_seen,
    }


def _count_peak_outside_a_lent_pool(model) -> None:
    """Where the loss borrows the layer graphs' pool, keep the peak outside it (outside_pool_peak)."""
    from tuitune.trainer.activation_checkpointing import layer_graphs

    graphs = layer_graphs(model)
    if graphs is not None and graphs.lends():
        from tuitune.trainer.outside_pool_peak import OutsidePoolPeak

        graphs.outside_peak = OutsidePoolPeak.on_device(graphs.device)


def _peak_gpu_memory_gb(model, lent_parts: dict[str, float] | None) -> float:
    """The run's peak allocated GPU memory, plus the pool of the layers' CUDA graphs if they have one:
    between replays the allocator counts none of it as allocated, yet nothing else can use it. Where
    the loss borrows the pool (loss_in_graph_pool), the peak from `lent_parts`
    (peak_parts_of_a_lent_pool) instead of the allocator's, which counts the borrowed tensors a second
    time."""
    if lent_parts is not None:
        return max(lent_parts["before_training_gb"], lent_parts["outside_pool_gb"] + lent_parts["pool_gb"])
    import torch

    from tuitune.trainer.activation_checkpointing import layer_graphs

    graphs = layer_graphs(model)
    return torch.cuda.max_memory_allocated() / 1024 ** 3 + (graphs.pool_gb() if graphs is not None else 0.0)


def peak_parts_of_a_lent_pool(model) -> dict[str, float] | None:
    """Where the loss borrowed the graphs' pool, what the run's peak was made of (GiB): the allocator's
    peak before the first step (loading, and the pool reserved), the peak outside the pool during
    training, and the pool. The peak is the larger of the first and the sum of the other two."""
    from tuitune.trainer.activation_checkpointing import layer_graphs

    graphs = layer_graphs(model)
    outside = None if graphs is None else graphs.outside_peak
    if outside is None:
        return None
    return {"before_training_gb": outside.before / 1024 ** 3, "outside_pool_gb": outside.bytes() / 1024 ** 3,
            "pool_gb": graphs.pool_gb()}


def save_adapter(model, tokenizer, config: Config, run: RunDir) -> Path:
    """Write adapter/ atomically: adapter weights, tokenizer and the resolved config."""
    target = run.adapter_dir
    tmp = target.with_name(f".{target.name}.tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(str(tmp))
    tokenizer.save_pretrained(str(tmp))
    (tmp / "tuitune.toml").write_text(to_toml(config, commented=True), encoding="utf-8")
    if target.exists():
        shutil.rmtree(target)
    os.replace(tmp, target)
    shutil.rmtree(run.path / ".hf", ignore_errors=True)
    shutil.rmtree(run.path / DATA_CACHE, ignore_errors=True)
    return target


def _parameter_counts(model) -> tuple[int, int]:
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    return trainable, total


def mark_best_adapter(trainer, adapter_dir: Path, sink: EventSink) -> None:
    """When the final evaluation (after the last step, no checkpoint of its own) was the best, the saved
    adapter is the best: mark it so (BEST, best.json) and say so in a checkpoint event."""
    best = trainer.tuitune_callback.best.saved(trainer.state.global_step, adapter_dir)
    if best:
        sink.emit(ev.CHECKPOINT, step=best["step"], path=str(adapter_dir), best=True, eval_loss=best["eval_loss"])


def _restore_best(model, best, sink: EventSink, mode: str) -> int | None:
    """restore_best, except where the weights are split over the ranks (a whole adapter cannot be loaded
    into one rank's shard): there the adapter keeps the last weights, and the warning says where the best is."""
    from tuitune.distributed_plan import SHARDED

    if mode not in SHARDED:
        return restore_best(model, best, sink)
    folder = best.checkpoint_to_restore()
    if folder is not None:
        sink.warning(f"The adapter keeps the last weights: under training.distributed = {mode} the best "
                     f"checkpoint is not loaded back into the model; it stays in {folder}.")
    return None


def restore_best(model, best, sink: EventSink) -> int | None:
    """With early stopping, load the best checkpoint's adapter weights into `model` so the saved adapter is
    the best one; returns its step, or None when the last weights stay."""
    folder = best.checkpoint_to_restore()
    if folder is None or best.best_step is None:
        return None
    weights = folder / "adapter_model.safetensors"
    if not weights.exists():
        sink.warning(f"The best checkpoint {folder.name} has no adapter weights; the adapter keeps the last weights.")
        return None
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    set_peft_model_state_dict(model, load_file(str(weights)))
    sink.log(f"Adapter restored from the best checkpoint {folder.name} (eval loss {best.best_loss:.4f}).")
    return best.best_step
