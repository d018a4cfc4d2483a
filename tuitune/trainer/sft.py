"""The supervised fine-tuning recipe, top to bottom: plan, model, adapters, kernels, data, TRL, save."""

from __future__ import annotations

import logging
import os
import shutil
import time
from pathlib import Path

from tuitune import events as ev
from tuitune.config import Config, to_toml
from tuitune.errors import TuituneError
from tuitune.runs import RunDir
from tuitune.trainer.device import Plan, resolve_plan, torch_dtype
from tuitune.trainer.event_sink import ControlInbox, EventSink
from tuitune.trainer.model_loading import local_folder, resolve_model_source


def train(config: Config, run: RunDir, sink: EventSink, inbox: ControlInbox,
          resume_from: str | None = None, on_trained=None) -> dict:
    """Run one SFT job; returns the `finished` summary. Raises TuituneError for user errors.

    `on_trained(model, tokenizer)`, if given, sees the trained model before the adapter is saved."""
    import torch
    from transformers import set_seed

    started = time.time()
    plan = resolve_plan(config)
    for note in plan.notes:
        sink.warning(note)
    set_seed(config.training.seed)
    _route_library_warnings(sink)

    source = resolve_model_source(config.model.name)
    sink.log(f"Loading {source.display} ({source.kind}) for {plan.method.upper()} on {plan.device_name}")
    folder = local_folder(source)
    tokenizer = _load_tokenizer(folder)
    train_set, eval_set = build_datasets(config, tokenizer, sink)  # bad data fails before a slow load
    model = load_model(folder, plan, config)
    model = add_adapters(model, config, plan)
    if config.data.packing and getattr(model.config, "_attn_implementation", "") != "flash_attention_2":
        sink.warning("data.packing with this attention implementation "
                     f"({getattr(model.config, '_attn_implementation', 'unknown')}) lets packed examples "
                     "attend to each other; install flash-attn for isolated packing, or turn packing off.")
    trainer = build_trainer(config, plan, model, tokenizer, train_set, eval_set, run, sink, inbox)
    # After the SFTTrainer exists: its __init__ installs TRL's own LM head, which ours must replace.
    kernels_note = apply_speedups(trainer.model, config, plan, sink)
    trainable, total = _parameter_counts(model)
    sink.emit(
        ev.STARTED, config=config.to_dict(), model=source.display, method=plan.method, dtype=plan.dtype,
        device=plan.device_name, trainable_params=trainable, total_params=total,
        max_steps=trainer.state.max_steps or _planned_steps(config, len(train_set)), rows=len(train_set),
        eval_rows=len(eval_set) if eval_set is not None else 0, kernels=kernels_note,
        resumed_from=resume_from,
    )
    callback = trainer.tuitune_callback
    result = trainer.train(resume_from_checkpoint=resume_from)
    stopped = callback.stopped

    if eval_set is not None and not stopped:
        metrics = trainer.evaluate()
        sink.emit(ev.EVAL, step=trainer.state.global_step, eval_loss=metrics.get("eval_loss"))
    if on_trained is not None:
        on_trained(trainer.model, tokenizer)
    adapter_dir = save_adapter(trainer.model, tokenizer, config, run)
    peak = torch.cuda.max_memory_allocated() / 1024 ** 3 if plan.device == "cuda" else None
    return {
        "final_loss": callback.last_loss, "train_loss": result.training_loss,
        "steps": trainer.state.global_step, "max_steps": trainer.state.max_steps,
        "runtime_s": time.time() - started, "adapter_path": str(adapter_dir), "stopped": stopped,
        "peak_gpu_memory_gb": peak, "tokens_seen": trainer.state.num_input_tokens_seen,
    }


def _load_tokenizer(folder: Path):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_model(folder: Path, plan: Plan, config: Config):
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    kwargs = {"dtype": torch_dtype(plan.dtype), "trust_remote_code": config.model.trust_remote_code}
    if plan.method == "qlora":
        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=torch_dtype(plan.dtype))
    if plan.device == "cuda":
        kwargs["device_map"] = {"": 0}
    try:
        model = AutoModelForCausalLM.from_pretrained(str(folder), **kwargs)
    except (OSError, ValueError) as exc:
        raise TuituneError(f"Cannot load the model from {folder}: {exc}") from None
    model.config.use_cache = False
    return model


def add_adapters(model, config: Config, plan: Plan):
    from peft import LoraConfig, get_peft_model

    present = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
    targets = [m for m in config.lora.target_modules if m in present]
    missing = [m for m in config.lora.target_modules if m not in present]
    if not targets:
        raise TuituneError(f"lora.target_modules ({', '.join(config.lora.target_modules)}) names no module of "
                           f"this model. Its linear layers include: {', '.join(sorted(_linear_names(model)))}.")
    if missing:
        logging.getLogger("tuitune").warning("LoRA targets not in this model, skipped: %s", ", ".join(missing))
    for param in model.parameters():
        param.requires_grad_(False)
    lora = LoraConfig(r=config.lora.r, lora_alpha=config.lora.alpha, lora_dropout=config.lora.dropout,
                      target_modules=targets, bias="none", task_type="CAUSAL_LM",
                      use_rslora=config.lora.use_rslora)
    model = get_peft_model(model, lora)
    if plan.method == "lora" and plan.dtype != "float32":
        # Adapter weights train in float32 for stable updates; the frozen base stays in 16-bit.
        for name, param in model.named_parameters():
            if param.requires_grad:
                param.data = param.data.float()
    return model


def _linear_names(model) -> set[str]:
    import torch

    return {name.rsplit(".", 1)[-1] for name, module in model.named_modules()
            if isinstance(module, torch.nn.Linear)}


def apply_speedups(model, config: Config, plan: Plan, sink: EventSink) -> str:
    """Swap in tuitune's kernels and set up activation checkpointing; say what happened."""
    note = "off (training.use_kernels = false)"
    if config.training.use_kernels and plan.device != "cuda":
        note = "stock path (Triton kernels need a CUDA GPU)"
    elif config.training.use_kernels:
        try:
            from tuitune.trainer.patching import apply_kernels
        except ImportError as exc:
            note = f"unavailable ({exc})"
            sink.warning(f"tuitune kernels are unavailable ({exc}); training on the stock path.")
        else:
            report = apply_kernels(model)
            if report.supported:
                note = f"on ({report.architecture}: " + ", ".join(f"{k} x{v}" for k, v in report.replaced.items()) + ")"
            else:
                note = f"stock path ({report.reason})"
                sink.warning(f"tuitune kernels do not support {report.architecture}: {report.reason}. "
                             "Training on the stock path.")
    mode = plan.checkpointing
    try:
        from tuitune.trainer.activation_checkpointing import enable_checkpointing
    except ImportError:
        if mode != "none":
            model.enable_input_require_grads()
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    else:
        applied = enable_checkpointing(model, mode)
        if applied != mode:
            sink.warning(f"Gradient checkpointing '{mode}' is not possible here; using '{applied}'.")
    return note


def build_datasets(config: Config, tokenizer, sink: EventSink):
    from tuitune.data import build_training_dataset, load_rows, sample_dataset_path

    path = config.data.path or str(sample_dataset_path())
    fmt = None if config.data.format == "auto" else config.data.format
    loaded = load_rows(path, format=fmt)
    if loaded.format == "preference":
        raise TuituneError(f"{path} holds preference pairs (prompt/chosen/rejected), which train with DPO; "
                           "tuitune's SFT recipe needs instructions, conversations or plain text.")
    rows = loaded.rows[: config.data.max_rows] if config.data.max_rows else loaded.rows
    sink.log(f"Data: {path} ({loaded.format}: {loaded.format_reason}); {len(rows)} rows")
    if loaded.problems:
        sink.warning(f"{len(loaded.problems)} problem(s) in {path}; first: {loaded.problems[0]}. "
                     f"`tuitune data inspect {path}` lists them all.")
    dataset = build_training_dataset(
        rows, tokenizer, max_seq_length=config.model.max_seq_length,
        responses_only=config.data.responses_only, packing=config.data.packing,
        system_prompt=config.data.system_prompt or None, format=loaded.format)
    if len(dataset) == 0:
        raise TuituneError(f"No usable training rows in {path}. Run `tuitune data inspect {path}` to see why.")
    if config.data.eval_fraction > 0:
        n_eval = max(1, int(len(dataset) * config.data.eval_fraction))
        if len(dataset) - n_eval < 1:
            raise TuituneError(f"data.eval_fraction {config.data.eval_fraction} leaves no training rows "
                               f"out of {len(dataset)}. Lower it.")
        split = dataset.train_test_split(test_size=n_eval, seed=config.training.seed)
        return split["train"], split["test"]
    return dataset, None


def build_trainer(config: Config, plan: Plan, model, tokenizer, train_set, eval_set, run: RunDir,
                  sink: EventSink, inbox: ControlInbox):
    from trl import SFTConfig, SFTTrainer

    from tuitune.data import SFT_SETTINGS

    from tuitune.trainer.callback import EventsCallback

    t = config.training
    eval_on = eval_set is not None
    args = SFTConfig(
        output_dir=str(run.path / ".hf"),
        per_device_train_batch_size=t.batch_size, per_device_eval_batch_size=t.batch_size,
        gradient_accumulation_steps=t.gradient_accumulation_steps,
        learning_rate=t.learning_rate, lr_scheduler_type=t.lr_scheduler, warmup_steps=t.warmup_steps,
        weight_decay=t.weight_decay, max_grad_norm=t.max_grad_norm, optim=plan.optimizer, seed=t.seed,
        data_seed=t.seed, max_steps=t.max_steps if t.max_steps > 0 else -1, num_train_epochs=t.num_epochs,
        logging_steps=t.logging_steps, save_strategy="steps" if t.save_steps else "no",
        save_steps=t.save_steps or 500, save_total_limit=None,
        eval_strategy=("steps" if t.eval_steps else "no") if eval_on else "no",
        eval_steps=t.eval_steps or None,
        bf16=plan.dtype == "bfloat16" and plan.device == "cuda",
        fp16=plan.dtype == "float16" and plan.device == "cuda",
        use_cpu=plan.device == "cpu", report_to="none", disable_tqdm=True,
        gradient_checkpointing=False,  # handled by apply_speedups
        include_num_input_tokens_seen="non_padding", dataloader_num_workers=0,
        max_length=config.model.max_seq_length, packing=config.data.packing,
        remove_unused_columns=True, **SFT_SETTINGS,
    )
    callback = EventsCallback(run, sink, inbox, save_total_limit=config.output.save_total_limit,
                              samples_per_step=t.batch_size * t.gradient_accumulation_steps)
    trainer = SFTTrainer(model=model, args=args, train_dataset=train_set, eval_dataset=eval_set,
                         processing_class=tokenizer, callbacks=[callback])
    # Step numbers live in events.jsonl; the printer would repeat them as dicts in train.log.
    from transformers.trainer_callback import PrinterCallback

    trainer.remove_callback(PrinterCallback)
    callback.trainer = trainer
    trainer.tuitune_callback = callback
    return trainer


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
    return target


def _parameter_counts(model) -> tuple[int, int]:
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    return trainable, total


def _planned_steps(config: Config, rows: int) -> int:
    t = config.training
    if t.max_steps > 0:
        return t.max_steps
    per_step = t.batch_size * t.gradient_accumulation_steps
    return max(1, int(-(-rows // per_step) * t.num_epochs))


class _EventLogHandler(logging.Handler):
    def __init__(self, sink: EventSink):
        super().__init__(level=logging.WARNING)
        self.sink = sink

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.sink.log(record.getMessage(), level=record.levelname.lower())
        except Exception:
            pass


def _route_library_warnings(sink: EventSink) -> None:
    handler = _EventLogHandler(sink)
    for name in ("transformers", "peft", "trl", "tuitune"):
        logging.getLogger(name).addHandler(handler)
