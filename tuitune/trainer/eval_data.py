"""The evaluation set: a separate file (`data.eval_path`) tokenized exactly like the training data, or a
fraction held out of the training set (`data.eval_fraction`)."""

from __future__ import annotations

from pathlib import Path

from tuitune.config import Config
from tuitune.errors import TuituneError
from tuitune.steps import eval_rows
from tuitune.trainer.event_sink import EventSink


def eval_dataset_from_file(config: Config, tokenizer, sink: EventSink, cache_dir: Path | None = None):
    """The eval dataset (input_ids, completion_mask) of data.eval_path, in the training data's format."""
    from tuitune.data import build_training_dataset, load_rows

    path = config.data.eval_path
    fmt = None if config.data.format == "auto" else config.data.format
    loaded = load_rows(path, format=fmt, columns=config.data.columns, salvage=config.data.salvage)
    for note in loaded.notes:
        sink.warning(f"data.eval_path: {note}")
    if loaded.problems:
        sink.warning(f"{len(loaded.problems)} problem(s) in the eval file {path}; first: {loaded.problems[0]}.")
    try:
        dataset = build_training_dataset(
            loaded.rows, tokenizer, max_seq_length=config.model.max_seq_length,
            responses_only=config.data.responses_only, packing=config.data.packing,
            system_prompt=config.data.system_prompt or None, format=loaded.format,
            cache_dir=None if cache_dir is None else Path(cache_dir) / "eval")
    except TuituneError as exc:
        raise TuituneError(f"data.eval_path {path}: {exc.message}") from None
    sink.log(f"Eval data: {path} ({loaded.format}); {len(dataset)} rows")
    return dataset


def split_off_eval(dataset, config: Config, unit: str = "rows"):
    """``(train, eval)``: ``data.eval_fraction`` of ``dataset`` held out (seeded by ``training.seed``), or
    ``(dataset, None)`` when the fraction is 0. ``unit`` names the dataset's items in the error."""
    fraction = config.data.eval_fraction
    if fraction <= 0:
        return dataset, None
    n_eval = eval_rows(len(dataset), fraction)
    if len(dataset) - n_eval < 1:
        raise TuituneError(f"data.eval_fraction {fraction} leaves no training {unit} out of {len(dataset)}. "
                           "Lower it.")
    split = dataset.train_test_split(test_size=n_eval, seed=config.training.seed)
    return split["train"], split["test"]
