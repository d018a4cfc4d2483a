"""The supervised fine-tuning recipe, top to bottom: plan, model, adapters, kernels, data, TRL, save."""

from __future__ import annotations

import logging
import shutil
import time
from pathlib import Path

from tuitune.config import Config
from tuitune.distributed_fields import SHARDED_WEIGHTS
from tuitune.errors import TuituneError
from tuitune.log_filter import keep_library_record
from tuitune.model_source import local_folder, resolve_model_source
from tuitune.objective import SFT
from tuitune.plan import Plan, resolve_plan
from tuitune.runs import RunDir
from tuitune.trainer.batch_facts import add_batch_facts
from tuitune.trainer.device import probe_device, torch_dtype
from tuitune.trainer.eval_data import split_off_eval
from tuitune.trainer.event_sink import ControlInbox, EventSink
from tuitune.trainer.run_loop import DATA_CACHE, Prepared, train_and_save


def train(config: Config, run: RunDir, sink: EventSink, inbox: ControlInbox,
          resume_from: str | None = None, on_trained=None) -> dict:
    """Run one SFT job; returns the `finished` summary. Raises TuituneError for user errors.

    `on_trained(model, tokenizer)`, if given, sees the trained model before the adapter is saved."""
    started = time.time()
    rank, plan, source, folder, tokenizer = begin(config, sink, "")
    # Bad data fails before a slow load; tokenized rows go to an Arrow file, memory-mapped.
    train_set, eval_set = build_datasets(config, tokenizer, sink, cache_dir=rank.data_cache(run.path / DATA_CACHE))
    model = load_model(folder, plan, config)
    model = add_adapters(model, config, plan)
    trainer = build_trainer(config, plan, model, tokenizer, train_set, eval_set, run, sink, inbox)
    # After the SFTTrainer exists: its __init__ installs TRL's own LM head, which ours must replace.
    kernels_note = apply_speedups(trainer.model, config, plan, sink)
    add_batch_facts(trainer, sink.log)  # what the patched model would read back from the GPU, found on the CPU
    prepared = Prepared(trainer, model, tokenizer, train_set, eval_set, source.display, folder, kernels_note, SFT)
    return train_and_save(prepared, config, plan, run, sink, started=started, resume_from=resume_from,
                          on_trained=on_trained)


def begin(config: Config, sink: EventSink, purpose: str):
    """What every recipe does first: the rank (one process, or one rank of a distributed run), the
    plan (its notes as warnings), the seed, library warnings routed to events, the model's source,
    local folder and tokenizer. `purpose` names the method in the log ("" for SFT)."""
    from transformers import set_seed

    from tuitune.trainer.distributed import current

    rank = current(config)
    plan = rank.adjust_plan(resolve_plan(config, probe_device()))
    for note in plan.notes:
        sink.warning(note)
    if plan.checkpointing_reason:
        sink.log(f"Gradient checkpointing auto: {plan.checkpointing_reason}.")
    set_seed(config.training.seed)
    _route_library_warnings(sink)
    source = resolve_model_source(config.model.name)
    sink.log(f"Loading {source.display} ({source.kind}) for {purpose + ' with ' if purpose else ''}"
             f"{plan.method.upper()} on {plan.device_name}")
    folder = local_folder(source)
    return rank, plan, source, folder, _load_tokenizer(folder)


def _load_tokenizer(folder: Path):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_model(folder: Path, plan: Plan, config: Config):
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    from tuitune.trainer.distributed import current

    rank = current(config)
    kwargs = {"dtype": torch_dtype(plan.dtype), "trust_remote_code": config.model.trust_remote_code}
    if plan.method == "qlora":
        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=torch_dtype(plan.dtype), **rank.quantization_kwargs(torch_dtype(plan.dtype)))
    if plan.device == "cuda":
        kwargs["device_map"] = rank.device_map(plan)
    try:
        model = AutoModelForCausalLM.from_pretrained(str(folder), **kwargs)
    except (OSError, ValueError) as exc:
        raise TuituneError(f"Cannot load the model from {folder}: {exc}") from None
    model.config.use_cache = False
    return model


def add_adapters(model, config: Config, plan: Plan, **lora_extra):
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
                      use_rslora=config.lora.use_rslora, **lora_extra)
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
    kernels_on = False
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
            kernels_on = report.supported
            if report.supported:
                note = f"on ({report.architecture}: " + ", ".join(f"{k} x{v}" for k, v in report.replaced.items()) + ")"
            else:
                note = f"stock path ({report.reason})"
                sink.warning(f"tuitune kernels do not support {report.architecture}: {report.reason}. "
                             "Training on the stock path.")
    if plan.device == "cuda" and plan.method == "qlora":
        sink.log(f"Dequantize once: {keep_dequantized_if_planned(model, plan, kernels_on)}.")
    from tuitune.trainer.mode_switch import skip_redundant_mode_switches

    skip_redundant_mode_switches(model)
    mode = plan.checkpointing
    try:
        from tuitune.trainer.activation_checkpointing import enable_checkpointing
    except ImportError:
        if mode != "none":
            model.enable_input_require_grads()
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    else:
        graphs = plan.cuda_graphs and kernels_on
        applied = enable_checkpointing(model, mode, cuda_graphs=graphs,
                                       graph_tokens=config.training.batch_size * config.model.max_seq_length)
        if applied != mode:
            sink.warning(f"Gradient checkpointing '{mode}' is not possible here; using '{applied}'.")
        if plan.device == "cuda":
            why = plan.cuda_graphs_reason if graphs or not plan.cuda_graphs else "off: tuitune's kernels are not on"
            sink.log(f"CUDA graphs of the layers: {why}.")
        if applied == "offloaded":
            from tuitune.trainer.embedding_offload import offload_input_embeddings
            from tuitune.trainer.head_offload import offload_output_head

            sink.log(f"Input embeddings: {offload_input_embeddings(model)}.")
            if config.training.distributed in SHARDED_WEIGHTS:  # the head is theirs to place
                sink.log(f"LM head: kept on the GPU ({config.training.distributed} shards it).")
            else:
                sink.log(f"LM head: {offload_output_head(model)}.")
                from tuitune.pool_lending import loss_borrows_the_pool
                from tuitune.trainer.loss_in_graph_pool import lend_graph_pool_to_loss

                if graphs and loss_borrows_the_pool():
                    sink.log(f"Loss memory: {lend_graph_pool_to_loss(model)}.")
    return note


def keep_dequantized_if_planned(model, plan: Plan, kernels_on: bool) -> str:
    """Keep the 4-bit base weights dequantized when the plan says so and the kernels (which read the
    kept copies) are on; say what happened."""
    if not plan.dequantize_once:
        return plan.dequantize_reason
    if not kernels_on:
        return "off: tuitune's kernels, which read the kept weights, are not on"
    from tuitune.trainer.dequantized_weights import keep_base_weights_dequantized

    return f"{plan.dequantize_reason}; {keep_base_weights_dequantized(model, torch_dtype(plan.dtype))}"


def build_datasets(config: Config, tokenizer, sink: EventSink, cache_dir: Path | None = None):
    from tuitune.data import build_training_dataset, load_rows, sample_dataset_path

    path = config.data.path or str(sample_dataset_path())
    fmt = None if config.data.format == "auto" else config.data.format
    loaded = load_rows(path, format=fmt, columns=config.data.columns, salvage=config.data.salvage)
    for note in loaded.notes:
        sink.warning(note)
    if cache_dir is not None:
        shutil.rmtree(cache_dir, ignore_errors=True)  # a previous attempt's files
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
        system_prompt=config.data.system_prompt or None, format=loaded.format, cache_dir=cache_dir)
    if len(dataset) == 0:
        raise TuituneError(f"No usable training rows in {path}. Run `tuitune data inspect {path}` to see why.")
    if config.data.eval_path:
        from tuitune.trainer.eval_data import eval_dataset_from_file

        return dataset, eval_dataset_from_file(config, tokenizer, sink, cache_dir)
    return split_off_eval(dataset, config)


def build_trainer(config: Config, plan: Plan, model, tokenizer, train_set, eval_set, run: RunDir,
                  sink: EventSink, inbox: ControlInbox):
    from trl import SFTConfig

    from tuitune.data import SFT_SETTINGS
    from tuitune.trainer.arguments import attach_events, common_arguments, graph_buckets
    from tuitune.trainer.deferred_metrics import sft_trainer_class

    args = SFTConfig(
        **common_arguments(config, plan, run, sink, model, eval_on=eval_set is not None),
        include_num_input_tokens_seen="non_padding",
        max_length=config.model.max_seq_length, packing=config.data.packing,
        remove_unused_columns=True, **SFT_SETTINGS, **graph_buckets(config, plan),
    )
    trainer = sft_trainer_class()(model=model, args=args, train_dataset=train_set, eval_dataset=eval_set,
                                  processing_class=tokenizer)
    attach_events(trainer, config, run, sink, inbox)
    return trainer


class _EventLogHandler(logging.Handler):
    def __init__(self, sink: EventSink):
        super().__init__(level=logging.WARNING)
        self.sink = sink

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = record.getMessage()
            if keep_library_record(record.name, record.levelno, text):  # deprecations: train.log only
                self.sink.log(text, level=record.levelname.lower())
        except Exception:
            pass


def _route_library_warnings(sink: EventSink) -> None:
    handler = _EventLogHandler(sink)
    for name in ("transformers", "peft", "trl", "tuitune"):
        logging.getLogger(name).addHandler(handler)
