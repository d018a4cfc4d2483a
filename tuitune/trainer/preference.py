"""The preference-tuning recipe, top to bottom: pairs, model, adapters, TRL's DPO or ORPO trainer, kernels, save.

DPO's reference is the same model with its adapter disabled (no second copy in memory); ORPO needs no
reference. Both score sequences through the model's fused LM head (`fused_lm_head=True`): TRL's chunked
one on the stock path, tuitune's fused linear cross-entropy with the kernels on, so the full logits
are never materialised (`tuitune.trainer.orpo` adapts TRL's ORPO trainer to that head).
"""

from __future__ import annotations

import time

from tuitune.config import Config
from tuitune.errors import TuituneError
from tuitune.objective import DPO, ORPO
from tuitune.plan import Plan
from tuitune.runs import RunDir
from tuitune.trainer.arguments import attach_events, common_arguments, graph_buckets
from tuitune.trainer.eval_data import split_off_eval
from tuitune.trainer.event_sink import ControlInbox, EventSink
from tuitune.trainer.run_loop import Prepared, train_and_save
from tuitune.trainer.sft import add_adapters, apply_speedups, begin, load_model


def train(config: Config, run: RunDir, sink: EventSink, inbox: ControlInbox, resume_from: str | None = None,
          on_trained=None, *, objective: str = DPO) -> dict:
    """Run one DPO or ORPO job; returns the `finished` summary. Raises TuituneError for user errors."""
    started = time.time()
    _, plan, source, folder, tokenizer = begin(config, sink, objective.upper())
    train_set, eval_set = build_pair_datasets(config, tokenizer, sink)
    model = load_model(folder, plan, config)
    model = add_adapters(model, config, plan)
    trainer = build_preference_trainer(objective, config, plan, model, tokenizer, train_set, eval_set, run, sink,
                                       inbox)
    kernels_note = apply_speedups(trainer.model, config, plan, sink)
    prepared = Prepared(trainer, model, tokenizer, train_set, eval_set, source.display, folder, kernels_note,
                        objective)
    return train_and_save(prepared, config, plan, run, sink, started=started, resume_from=resume_from,
                          on_trained=on_trained)


def pair_record(row, tokenizer, system_prompt: str | None) -> dict:
    """One pair as TRL reads it: conversational when the tokenizer has a chat template, else plain text."""
    from tuitune.data.rendering import generation_prompt, has_chat_template, with_system_prompt

    if has_chat_template(tokenizer):
        return {"prompt": with_system_prompt(row.messages, system_prompt), "chosen": row.chosen,
                "rejected": row.rejected}
    reply = lambda turns: "\n".join(t["content"] for t in turns)  # noqa: E731
    return {"prompt": generation_prompt(row.messages, tokenizer, system_prompt=system_prompt),
            "chosen": reply(row.chosen), "rejected": reply(row.rejected)}


def _pairs(path: str, config: Config, tokenizer, sink: EventSink, *, limit: int = 0):
    from datasets import Dataset

    from tuitune.data import load_rows

    loaded = load_rows(path, format="preference", columns=config.data.columns, salvage=config.data.salvage)
    for note in loaded.notes:
        sink.warning(note)
    if loaded.problems:
        sink.warning(f"{len(loaded.problems)} problem(s) in {path}; first: {loaded.problems[0]}. "
                     f"`tuitune data inspect {path}` lists them all.")
    system = config.data.system_prompt or None
    records = []
    for row in loaded.rows:
        if limit and len(records) >= limit:
            break
        records.append(pair_record(row, tokenizer, system))
    if not records:
        raise TuituneError(f"No usable preference pairs in {path}. Run `tuitune data inspect {path}` to see why.")
    sink.log(f"Data: {path} ({loaded.format_reason}); {len(records)} pairs")
    return Dataset.from_list(records)


def build_pair_datasets(config: Config, tokenizer, sink: EventSink):
    """(train, eval or None) datasets of prompt/chosen/rejected, split by data.eval_fraction or read from
    data.eval_path."""
    from tuitune.data import sample_dataset_path

    path = config.data.path or str(sample_dataset_path())
    dataset = _pairs(path, config, tokenizer, sink, limit=config.data.max_rows)
    if config.data.eval_path:
        return dataset, _pairs(config.data.eval_path, config, tokenizer, sink)
    return split_off_eval(dataset, config, unit="pairs")


def build_preference_trainer(objective: str, config: Config, plan: Plan, model, tokenizer, train_set, eval_set,
                             run: RunDir, sink: EventSink, inbox: ControlInbox):
    t = config.training
    common = common_arguments(config, plan, run, sink, model, eval_on=eval_set is not None)
    if objective == ORPO:
        from trl.experimental.orpo import ORPOConfig

        from tuitune.trainer.orpo import FusedHeadORPOTrainer

        args = ORPOConfig(**common, beta=t.orpo_lambda, max_length=config.model.max_seq_length,
                          remove_unused_columns=False)
        trainer = FusedHeadORPOTrainer(model=model, args=args, train_dataset=train_set, eval_dataset=eval_set,
                                       processing_class=tokenizer)
    elif objective == DPO:
        from trl import DPOConfig, DPOTrainer

        args = DPOConfig(**common, beta=t.dpo_beta, loss_type=[t.dpo_loss], max_length=config.model.max_seq_length,
                         precompute_ref_log_probs=False, include_num_input_tokens_seen="non_padding",
                         **graph_buckets(config, plan))
        trainer = DPOTrainer(model=model, args=args, train_dataset=train_set, eval_dataset=eval_set,
                             processing_class=tokenizer)
        _reference_is_the_base(trainer)
    else:
        raise ValueError(f"not a preference objective: {objective}")
    attach_events(trainer, config, run, sink, inbox)
    return trainer


def _reference_is_the_base(trainer) -> None:
    """TRL copies an adapter it is handed into a frozen "ref" adapter (for re-training an existing one). Ours
    is fresh (B = 0), so the base with the adapter disabled is the same reference: drop the copy and TRL
    disables the adapter for the reference pass instead, with no second set of weights."""
    model = trainer.model
    if "ref" in getattr(model, "peft_config", {}):
        model.delete_adapter("ref")
        model.set_adapter("default")
