"""The transformers TrainingArguments every recipe shares (batching, schedule, optimizer, precision,
logging, checkpointing, evaluation), as keyword arguments for TRL's SFT/DPO/ORPO config classes."""

from __future__ import annotations

from typing import Any

from tuitune.config import Config
from tuitune.plan import Plan
from tuitune.runs import RunDir
from tuitune.trainer.event_sink import EventSink
from tuitune.trainer.reporting import report_targets


def graph_buckets(config: Config, plan: Plan) -> dict[str, Any]:
    """Padded batches of few lengths when the layers are graphed (SFT's and DPO's collators take
    ``pad_to_multiple_of``): a graph replays only a batch shape it has seen, and batches padded to their
    longest row rarely repeat one. Packed rows are not graphed (tuitune.graphs_policy)."""
    if not plan.cuda_graphs or config.data.packing:
        return {}
    from tuitune.trainer.layer_graphs import BUCKET_TOKENS

    return {"pad_to_multiple_of": min(BUCKET_TOKENS, config.model.max_seq_length)}


def common_arguments(config: Config, plan: Plan, run: RunDir, sink: EventSink, model, *,
                     eval_on: bool) -> dict[str, Any]:
    """The shared arguments, plus the engine's (DDP, FSDP2, DeepSpeed) on a rank of a distributed run."""
    from tuitune.trainer.distributed import current

    t = config.training
    return dict(
        output_dir=str(run.path / ".hf"),
        per_device_train_batch_size=t.batch_size, per_device_eval_batch_size=t.batch_size,
        gradient_accumulation_steps=t.gradient_accumulation_steps,
        learning_rate=t.learning_rate, lr_scheduler_type=t.lr_scheduler, warmup_steps=t.warmup_steps,
        weight_decay=t.weight_decay, max_grad_norm=t.max_grad_norm, optim=plan.hf_optimizer, seed=t.seed,
        data_seed=t.seed, max_steps=t.max_steps if t.max_steps > 0 else -1, num_train_epochs=t.num_epochs,
        logging_steps=t.logging_steps, save_strategy="steps" if t.save_steps else "no",
        save_steps=t.save_steps or 500, save_total_limit=None,
        eval_strategy=("steps" if t.eval_steps else "no") if eval_on else "no",
        eval_steps=t.eval_steps or None,
        bf16=plan.dtype == "bfloat16" and plan.device == "cuda",
        fp16=plan.dtype == "float16" and plan.device == "cuda",
        use_cpu=plan.device == "cpu", disable_tqdm=True,
        logging_nan_inf_filter=False,  # a loss that is not a number must show, and stop the run
        **_checkpointing_off(),  # tuitune's own checkpointing is applied by sft.apply_speedups
        dataloader_num_workers=0,
        # batches copied to the GPU without waiting for it (from pinned memory, the Trainer's default):
        # a blocking copy would wait for the step before, which the lagged log no longer does
        accelerator_config={"non_blocking": plan.device == "cuda"},
        **report_targets(t.report_to, run, sink.warning),
        **current(config).trainer_kwargs(model, plan),
    )


def _checkpointing_off() -> dict[str, bool]:
    """Turn off the Trainer's activation checkpointing (TRL's configs default it on), under the name this
    transformers knows (newer releases renamed it `activation_checkpointing` and warn on the old name)."""
    import dataclasses

    from transformers import TrainingArguments

    names = {field.name for field in dataclasses.fields(TrainingArguments)}
    return {"activation_checkpointing" if "activation_checkpointing" in names else "gradient_checkpointing": False}


def attach_events(trainer, config: Config, run: RunDir, sink: EventSink, inbox) -> None:
    """Give `trainer` tuitune's events callback (progress, controls, checkpoints, best; on a rank of a
    distributed run, the one that keeps the ranks in step) and drop the printer."""
    from transformers.trainer_callback import PrinterCallback

    from tuitune.trainer.distributed import current

    t = config.training
    callback = current(config).events_callback(config, run, sink, inbox,
                                               save_total_limit=config.output.save_total_limit,
                                               samples_per_step=t.batch_size * t.gradient_accumulation_steps)
    trainer.add_callback(callback)
    trainer.remove_callback(PrinterCallback)  # step numbers live in events.jsonl
    callback.trainer = trainer
    trainer.tuitune_callback = callback
    if t.profile_steps and current(config).is_main:
        from tuitune.trainer.profile_callback import StepProfileCallback

        model_config = getattr(trainer.model, "config", None)
        trainer.add_callback(StepProfileCallback(
            run, t.profile_steps, next(trainer.model.parameters()).device.type,
            rank_max=max(config.lora.r, 64), vocab=getattr(model_config, "vocab_size", 0) or 0, log=sink.log))
