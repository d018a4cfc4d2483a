"""The continued-pretraining recipe, top to bottom: plain text packed into full sequences, adapters, and
optionally the embeddings and LM head trained at their own lower learning rate.

With `training.embedding_learning_rate` > 0 the input embeddings and the LM head become PEFT
`modules_to_save` (kept tied when the model ties them): full trainable copies saved inside the adapter,
so chat and export load them with it. Their optimizer group gets the lower rate; the adapters keep
`training.learning_rate`.
"""

from __future__ import annotations

import copy
import time
import types

from tuitune.config import Config
from tuitune.objective import CPT
from tuitune.runs import RunDir
from tuitune.trainer.batch_facts import add_batch_facts
from tuitune.trainer.event_sink import ControlInbox, EventSink
from tuitune.trainer.run_loop import Prepared, train_and_save
from tuitune.trainer.sft import (DATA_CACHE, add_adapters, apply_speedups, begin, build_datasets, build_trainer,
                                 load_model)


def train(config: Config, run: RunDir, sink: EventSink, inbox: ControlInbox, resume_from: str | None = None,
          on_trained=None) -> dict:
    """Run one continued-pretraining job; returns the `finished` summary."""
    started = time.time()
    config = cpt_config(config)
    rank, plan, source, folder, tokenizer = begin(config, sink, "continued pretraining")
    train_set, eval_set = build_datasets(config, tokenizer, sink, cache_dir=rank.data_cache(run.path / DATA_CACHE))
    model = load_model(folder, plan, config)
    embedding_lr = config.training.embedding_learning_rate
    model = add_adapters(model, config, plan, **embedding_modules(model) if embedding_lr else {})
    trainer = build_trainer(config, plan, model, tokenizer, train_set, eval_set, run, sink, inbox)
    if embedding_lr:
        give_embeddings_their_rate(trainer, embedding_lr)
        sink.log(f"Embeddings and LM head train at {embedding_lr:g} (adapters at {config.training.learning_rate:g}).")
    kernels_note = apply_speedups(trainer.model, config, plan, sink)
    add_batch_facts(trainer, sink.log)  # what the patched model would read back from the GPU, found on the CPU
    prepared = Prepared(trainer, model, tokenizer, train_set, eval_set, source.display, folder, kernels_note, CPT)
    return train_and_save(prepared, config, plan, run, sink, started=started, resume_from=resume_from,
                          on_trained=on_trained)


def cpt_config(config: Config) -> Config:
    """The run's config as continued pretraining uses it: packing on (documents run into each other, as in
    pretraining), every token trained."""
    config = copy.deepcopy(config)
    config.data.packing = True
    config.data.responses_only = False
    return config


def embedding_modules(model) -> dict:
    """LoraConfig fields that make the input embeddings and the LM head trainable copies (tied if tied)."""
    wanted = {id(model.get_input_embeddings()): None, id(model.get_output_embeddings()): None}
    names = sorted({name.rsplit(".", 1)[-1] for name, module in model.named_modules() if id(module) in wanted})
    tied = bool(getattr(model.config, "tie_word_embeddings", False))
    return {"modules_to_save": names, "ensure_weight_tying": tied}


def embedding_parameter_ids(model) -> set[int]:
    """The trainable embedding and LM-head copies PEFT made (`modules_to_save`)."""
    return {id(p) for name, p in model.named_parameters() if p.requires_grad and "modules_to_save" in name}


def give_embeddings_their_rate(trainer, learning_rate: float) -> None:
    """Make the trainer's optimizer put the embedding copies in their own group at `learning_rate`."""
    stock = trainer.create_optimizer

    def create_optimizer(self, model=None):
        optimizer = stock(model)
        ids = embedding_parameter_ids(self.model)
        if not ids or getattr(optimizer, "_tuitune_embedding_group", False):
            return optimizer
        moved_groups = []
        for group in optimizer.param_groups:
            moved = [p for p in group["params"] if id(p) in ids]
            if moved:
                group["params"] = [p for p in group["params"] if id(p) not in ids]
                moved_groups.append({**{k: v for k, v in group.items() if k != "params"}, "params": moved,
                                     "lr": learning_rate})
        for group in moved_groups:
            optimizer.add_param_group(group)
        optimizer._tuitune_embedding_group = True
        return optimizer

    trainer.create_optimizer = types.MethodType(create_optimizer, trainer)
